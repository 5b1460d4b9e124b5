"""``ctseg convert`` and ``ctseg segment-volume`` end to end."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from ctseg_helpers.cli import main
from ctseg_helpers.io.datafile import DataFile
from tests.dicom_geometry import dicom_world_ras, oblique_orientation, voxel_world


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.segment.tiny_model import make_tiny_model_file

    return make_tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.keras", input_shape=16, fit_mode="pad")


@pytest.fixture
def ct_h5(tmp_path):
    """HU from -400 to 392: the tiny model's classes change at -150 HU and +150 HU."""
    vol = (np.random.default_rng(0).integers(0, 100, (10, 20, 24)) * 8 - 400).astype(np.int16)
    path = tmp_path / "ct.h5"
    with DataFile.create(path, vol.shape, vol.dtype) as out:
        out.write_block((0, 0, 0), vol)
    expected = ((vol > -150).astype(np.uint8) + (vol > 150)).astype(np.uint8)
    return path, expected


def labels(path):
    with h5py.File(path, "r") as f:
        return f["labels"][:]


# ------------------------------------------------------------------ convert
def test_convert_a_tiff_stack(tmp_path, capsys):
    vol = np.arange(6 * 10 * 12, dtype=np.uint16).reshape(6, 10, 12)
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    code = main(
        [
            "convert",
            str(tmp_path / "stack.tif"),
            str(tmp_path / "out.h5"),
            "--chunk-shape",
            "2,5,6",
            "--compression",
            "lzf",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "tiff-stack volume of shape 6x10x12 uint16" in out and "chunks 2x5x6" in out
    with h5py.File(tmp_path / "out.h5") as f:
        np.testing.assert_array_equal(f["data"][:], vol)
        assert f["data"].compression == "lzf"

    assert main(["convert", str(tmp_path / "stack.tif"), str(tmp_path / "out.h5")]) == 2
    assert "out.h5 exists already; choose another name or pass --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "convert",
                str(tmp_path / "stack.tif"),
                str(tmp_path / "out.h5"),
                "--overwrite",
                "--chunk-mb",
                "0.5",
                "--compression",
                "none",
                "--dataset",
                "scan",
            ]
        )
        == 0
    )
    with h5py.File(tmp_path / "out.h5") as f:
        assert list(f) == ["scan"] and f["scan"].compression is None
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "stack.tif"), str(tmp_path / "o2.h5"), "--chunk-shape", "2,5"]) == 2
    assert "chunk shape must be three positive integers 'z,y,x'" in capsys.readouterr().err


NEVER = "ctseg never replaces such files, even with --overwrite (overwrite=True): move it away or choose another"


def test_convert_overwrite_replaces_only_its_own_unchanged_output(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 4, 4), np.uint8), photometric="minisblack")
    mine = tmp_path / "mine.h5"
    with h5py.File(mine, "w") as f:
        f["data"] = np.arange(4)
    before = mine.read_bytes()
    assert main(["convert", str(tmp_path / "stack.tif"), str(mine), "--overwrite"]) == 2
    assert f"mine.h5: not written by ctseg; {NEVER} output name" in capsys.readouterr().err
    assert mine.read_bytes() == before

    out = tmp_path / "out.h5"
    assert main(["convert", str(tmp_path / "stack.tif"), str(out)]) == 0
    assert main(["convert", str(tmp_path / "stack.tif"), str(out), "--overwrite", "--dataset", "scan"]) == 0
    with h5py.File(out, "r") as f:
        assert list(f) == ["scan"]
    with h5py.File(out, "a") as f:  # the user notes something in it
        f.attrs["my_note"] = "checked"
    edited = out.read_bytes()
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "stack.tif"), str(out), "--overwrite"]) == 2
    assert f"out.h5: changed since ctseg wrote it; {NEVER} output name" in capsys.readouterr().err
    assert out.read_bytes() == edited


def test_convert_chunk_options_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "a.tif", "b.h5", "--chunk-mb", "1", "--chunk-shape", "1,2,3"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ------------------------------------------------------------------ segment-volume
def test_segment_volume_local_then_resume_and_refusals(tiny_model, ct_h5, tmp_path, capsys):
    path, expected = ct_h5
    out = tmp_path / "labels.h5"
    args = ["segment-volume", str(tiny_model), str(path), str(out), "--axes", "0,2", "--max-gb", "0.001"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} [labels]: shape 10x20x24, axes 0,2" in text
    np.testing.assert_array_equal(labels(out), expected)

    assert main(args) == 0
    assert "is complete already (same settings); nothing to do" in capsys.readouterr().out

    assert main(args[:4] + ["--axes", "1"]) == 2
    assert "holds a run with different settings (axes); it is not resumed" in capsys.readouterr().err
    assert main(args[:4] + ["--axes", "1", "--overwrite", "--crop", "2:8,:,:"]) == 0
    cropped = expected.copy()
    cropped[:2] = 0
    cropped[8:] = 0
    np.testing.assert_array_equal(labels(out), cropped)


def test_segment_volume_tiles_with_the_overlap_and_blend_given(tiny_model, ct_h5, tmp_path, capsys):
    """--overlap and --blend reach the segmenter and the run's record; other values are another run."""
    import json

    path, expected = ct_h5
    out = tmp_path / "labels.h5"
    args = ["segment-volume", str(tiny_model), str(path), str(out), "--mode", "tile"]
    assert main([*args, "--overlap", "0.5", "--blend", "hann"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(labels(out), expected)  # the stand-in model works per pixel
    with h5py.File(out, "r") as f:
        record = json.loads(next(v for k, v in f.attrs.items() if k not in ("complete", "rotate_fill")))
    assert json.dumps(record).count('"overlap": 0.5') == 1 and json.dumps(record).count('"blend": "hann"') == 1
    capsys.readouterr()
    assert main([*args, "--overlap", "0.25", "--blend", "hann"]) == 2
    assert "holds a run with different settings" in capsys.readouterr().err


def test_segment_volume_overwrite_replaces_only_its_own_unchanged_output(tiny_model, ct_h5, tmp_path, capsys):
    path, expected = ct_h5
    mine = tmp_path / "mine.h5"
    with h5py.File(mine, "w") as f:
        f["labels"] = np.zeros((2, 2), np.uint8)
    before = mine.read_bytes()
    assert main(["segment-volume", str(tiny_model), str(path), str(mine), "--overwrite"]) == 2
    assert f"mine.h5: not written by ctseg; {NEVER} output name" in capsys.readouterr().err
    assert mine.read_bytes() == before

    out = tmp_path / "labels.h5"
    assert main(["segment-volume", str(tiny_model), str(path), str(out)]) == 0
    assert main(["segment-volume", str(tiny_model), str(path), str(out), "--crop", "2:8,:,:", "--overwrite"]) == 0
    assert labels(out)[:2].max() == 0
    with h5py.File(out, "a") as f:  # the user corrects the labels by hand
        f["labels"][0] = expected[0]
    edited = out.read_bytes()
    capsys.readouterr()
    assert main(["segment-volume", str(tiny_model), str(path), str(out), "--overwrite"]) == 2
    assert f"labels.h5: changed since ctseg wrote it; {NEVER} output name" in capsys.readouterr().err
    assert out.read_bytes() == edited


def test_segment_volume_on_a_dask_scheduler_equals_local(tiny_model, ct_h5, tmp_path, capsys):
    from dask.distributed import LocalCluster

    path, expected = ct_h5
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        code = main(
            [
                "segment-volume",
                str(tiny_model),
                str(path),
                str(tmp_path / "dask.h5"),
                "--axes",
                "1",
                "--dask-scheduler",
                cluster.scheduler_address,
                "--dask-plane-chunk",
                "12",
                "--dask-halo",
                "2",
            ]
        )
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(labels(tmp_path / "dask.h5"), expected)


def test_segment_volume_errors(tiny_model, ct_h5, tmp_path, capsys):
    path, _ = ct_h5
    out = str(tmp_path / "o.h5")
    cases = [
        (["--axes", "0,3"], "axes must be distinct values among 0, 1, 2"),
        (["--crop", "1:2"], "crop must be three ranges 'z0:z1,y0:y1,x0:x1'"),
        (["--dask-plane-chunk", "64"], "--dask-plane-chunk applies to Dask runs only; add --dask-scheduler"),
        (["--crop", "5:50,:,:"], "crop 5:50 on axis 0 is empty or outside the volume"),
    ]
    for extra, message in cases:
        assert main(["segment-volume", str(tiny_model), str(path), out, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["segment-volume", str(tmp_path / "none.keras"), str(path), out]) == 2
    assert "none.keras: model file not found" in capsys.readouterr().err
    assert main(["segment-volume", str(tiny_model), str(tmp_path / "missing.h5"), out]) == 2
    assert "missing.h5: no such file or folder" in capsys.readouterr().err


def _damaged_h5(tmp_path):
    """A gzip-chunked volume (one chunk per slice) whose bytes are overwritten in the middle."""
    vol = (np.random.default_rng(1).integers(0, 100, (20, 32, 32)) * 8 - 400).astype(np.int16)
    path = tmp_path / "damaged.h5"
    with DataFile.create(path, vol.shape, vol.dtype, chunk_shape=(1, 32, 32), compression="gzip") as out:
        out.write_block((0, 0, 0), vol)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = b"\xab" * 400
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("dask", [False, True], ids=["local", "dask"])
def test_segment_volume_on_a_damaged_file_names_it_without_a_traceback(tiny_model, tmp_path, capsys, dask):
    path = _damaged_h5(tmp_path)
    args = ["segment-volume", str(tiny_model), str(path), str(tmp_path / "o.h5")]
    if dask:
        from dask.distributed import LocalCluster

        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
            code = main([*args, "--dask-scheduler", cluster.scheduler_address])
    else:
        code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert f"{path}: the voxels [" in err
    assert "of dataset 'data' cannot be read" in err
    assert "the file is damaged" in err and "copy it again from its source" in err


def test_a_read_the_system_refuses_is_left_to_the_caller():
    from ctseg_helpers.io.datafile import damaged_read_error

    refused = PermissionError(13, "Permission denied", "x.h5")
    assert damaged_read_error("x.h5", "data", (slice(0, 1),) * 3, refused) is refused
    decoded = damaged_read_error("x.h5", "data", (slice(0, 2), slice(3, 5), slice(0, 8)), OSError("filter failed"))
    assert str(decoded).startswith("x.h5: the voxels [0:2, 3:5, 0:8] of dataset 'data' cannot be read (filter failed)")


# ------------------------------------------------------------------ segment-volume --nifti
@pytest.fixture
def dicom_h5(tmp_path, capsys):
    """An oblique CT series (4 slices of 20 x 24, HU -400..392) converted by 'ctseg convert'."""
    from ctseg_helpers.io.dicom_write import write_dicom_series

    vol = (np.random.default_rng(0).integers(0, 100, (4, 20, 24)) * 8 - 400).astype(np.float32)
    write_dicom_series(
        tmp_path / "dcm",
        vol,
        pixel_spacing_mm=(0.7, 1.3),
        slice_thickness_mm=2.5,
        origin_mm=(12.5, -30.0, 44.0),
        orientation=oblique_orientation(),
        names=["IM_0004", "IM_0003", "IM_0002", "IM_0001"],
    )
    assert main(["convert", str(tmp_path / "dcm"), str(tmp_path / "scan.h5")]) == 0
    assert "position and orientation recorded (affine_ras)" in capsys.readouterr().out
    return tmp_path / "scan.h5", ((vol > -150).astype(np.uint8) + (vol > 150)).astype(np.uint8)


def test_segment_volume_nifti_lies_on_the_dicom_scan(tiny_model, dicom_h5, tmp_path, capsys):
    import nibabel as nib

    from ctseg_helpers.io.dicom import scan_dicom_folder
    from ctseg_helpers.io.nifti import reorder_affine

    path, expected = dicom_h5
    out, nifti = tmp_path / "labels.h5", tmp_path / "labels.nii.gz"
    assert main(["segment-volume", str(tiny_model), str(path), str(out), "--nifti", str(nifti)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {nifti} [NIfTI labels, on the scan's position and orientation]" in text
    img = nib.load(nifti)
    data = np.asanyarray(img.dataobj)
    with h5py.File(path, "r") as f:
        affine_zyx = f["data"].attrs["affine_ras"]
    # NIfTI voxel (i, j, k) = OUT.h5 labels[k, j, i], with the recorded affine in that order
    np.testing.assert_array_equal(data, labels(out).transpose(2, 1, 0))
    np.testing.assert_array_equal(labels(out), expected)
    np.testing.assert_allclose(img.affine, reorder_affine(affine_zyx, (2, 1, 0)), atol=1e-5)
    # ... so every label voxel sits on its DICOM pixel (the files in stacking order)
    world = voxel_world(img.affine, data.shape)  # (i, j, k, 3)
    for k, dicom_file in enumerate(scan_dicom_folder(tmp_path / "dcm").series[0].files):
        np.testing.assert_allclose(world[:, :, k].transpose(1, 0, 2), dicom_world_ras(dicom_file), atol=1e-3)

    # a complete run, confirmed again: the NIfTI exists, so --overwrite is needed (and redoes the labels)
    assert main(["segment-volume", str(tiny_model), str(path), str(out), "--nifti", str(nifti)]) == 2
    assert f"{nifti} exists already; choose another NIfTI name, or pass --overwrite" in capsys.readouterr().err
    assert main(["segment-volume", str(tiny_model), str(path), str(out), "--nifti", str(tmp_path / "b.nii")]) == 0
    assert "is complete already (same settings); nothing to do" in (text := capsys.readouterr().out)
    assert f"wrote {tmp_path / 'b.nii'} [NIfTI labels" in text
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "b.nii").dataobj), data)


def test_segment_volume_nifti_with_spacing_only_warns(tiny_model, ct_h5, tmp_path, capsys, caplog):
    import nibabel as nib

    path, expected = ct_h5
    with h5py.File(path, "a") as f:
        f["data"].attrs["spacing_mm"] = (3.0, 0.5, 0.6)
    nifti = tmp_path / "labels.nii.gz"
    with caplog.at_level("WARNING"):
        assert main(["segment-volume", str(tiny_model), str(path), str(tmp_path / "o.h5"), "--nifti", str(nifti)]) == 0
    assert f"wrote {nifti} [NIfTI labels, voxel size only: position and orientation unknown]" in capsys.readouterr().out
    assert "only the voxel size (spacing_mm) is known" in caplog.text
    img = nib.load(nifti)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), expected.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, np.diag([0.6, 0.5, 3.0, 1.0]), atol=1e-6)


def test_segment_volume_nifti_refusals(tiny_model, tmp_path, capsys):
    vol = (np.arange(3 * 16 * 16) % 200 - 100).reshape(3, 16, 16).astype(np.int16)
    tifffile.imwrite(tmp_path / "stack.tif", vol, photometric="minisblack")
    assert main(["convert", str(tmp_path / "stack.tif"), str(tmp_path / "scan.h5")]) == 0
    capsys.readouterr()
    out, nifti = tmp_path / "o.h5", tmp_path / "labels.nii.gz"
    args = ["segment-volume", str(tiny_model), str(tmp_path / "scan.h5"), str(out), "--nifti", str(nifti)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "scan.h5 [data]: the scan's voxel size and position are unknown" in err
    assert "convert the scan with 'ctseg convert' from its DICOM or NIfTI files (TIFF carries neither)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()

    with h5py.File(tmp_path / "scan.h5", "a") as f:  # the user adds the voxel size
        f["data"].attrs["spacing_mm"] = (2.0, 1.0, 1.0)
    nifti.write_bytes(b"the user's own file")
    assert main(args) == 2
    assert f"{nifti} exists already; choose another NIfTI name" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2
    assert f"labels.nii.gz: not written by ctseg; {NEVER} NIfTI name" in capsys.readouterr().err
    assert nifti.read_bytes() == b"the user's own file" and not out.exists()
    assert main([*args[:-1], str(tmp_path / "labels.mha")]) == 2
    assert "labels.mha: the NIfTI output's name must end in .nii.gz or .nii" in capsys.readouterr().err
