"""segment_volume(nifti_path=...): the labels as a NIfTI volume placed with the input's affine_ras."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

import ctseg_helpers.io.nifti as nifti_mod
from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import DataFile
from ctseg_helpers.io.nifti import reorder_affine
from ctseg_helpers.io.written import written_by_ctseg
from ctseg_helpers.workflows.volume import segment_volume
from tests.segment.test_blocks import THRESHOLD, make_segmenter, threshold_fn

#: An oblique voxel-to-world matrix of (z, y, x) indices, as ctseg convert records it.
AFFINE_ZYX = np.array(
    [
        [0.0, 0.6, -0.3, -20.0],
        [0.5, 0.0, 1.1, 35.5],
        [2.4, 0.1, 0.0, 7.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def make_input(path, attrs=None, shape=(6, 16, 20)):
    vol = np.random.default_rng(0).integers(0, 100, shape).astype(np.int16)
    with DataFile.create(path, vol.shape, vol.dtype, attrs=attrs) as out:
        out.write_block((0, 0, 0), vol)
    return path, (vol > THRESHOLD).astype(np.uint8)


def read_nifti(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img


def run(in_path, out_path, **kw):
    return segment_volume(make_segmenter(threshold_fn), in_path, out_path, progress=False, **kw)


def world(affine, shape):
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return grid @ affine[:3, :3].T + affine[:3, 3]


def test_the_nifti_holds_the_labels_placed_with_affine_ras(tmp_path):
    path, expected = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX, "spacing_mm": (2.4, 0.6, 1.1)})
    result = run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    assert result.nifti_path == tmp_path / "labels.nii.gz" and result.nifti_placed
    data, img = read_nifti(result.nifti_path)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["labels"][:], expected)
    # NIfTI voxel (i, j, k) is labels[k, j, i], at the same point in space
    assert data.dtype == np.uint8 and data.shape == (20, 16, 6)
    np.testing.assert_array_equal(data, expected.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, reorder_affine(AFFINE_ZYX, (2, 1, 0)), atol=1e-6)
    np.testing.assert_allclose(world(img.affine, data.shape), world(AFFINE_ZYX, expected.shape).transpose(2, 1, 0, 3))
    assert (int(img.header["sform_code"]), int(img.header["qform_code"])) == (1, 1)
    assert img.header.get_intent()[0] == "label" and written_by_ctseg(result.nifti_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and "nii" in p.name] == []


def test_a_cropped_run_keeps_the_input_grid(tmp_path):
    path, expected = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX})
    result = run(path, tmp_path / "out.h5", crop="1:4,:,2:", nifti_path=tmp_path / "labels.nii")
    data, img = read_nifti(result.nifti_path)
    expected[:1], expected[4:], expected[:, :, :2] = 0, 0, 0
    np.testing.assert_array_equal(data, expected.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, reorder_affine(AFFINE_ZYX, (2, 1, 0)), atol=1e-6)


def test_spacing_only_gives_a_diagonal_affine_and_a_warning(tmp_path, caplog):
    path, expected = make_input(tmp_path / "in.h5", {"spacing_mm": (2.5, 0.7, 0.8)})
    with caplog.at_level("WARNING"):
        result = run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    assert not result.nifti_placed
    assert "only the voxel size (spacing_mm) is known, not the scan's position and orientation" in caplog.text
    assert "viewers will not overlay it on the original scan" in caplog.text
    data, img = read_nifti(result.nifti_path)
    np.testing.assert_array_equal(data, expected.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, np.diag([0.8, 0.7, 2.5, 1.0]), atol=1e-6)


def test_a_complete_run_only_writes_the_nifti(tmp_path):
    path, expected = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX})
    run(path, tmp_path / "out.h5")
    before = (tmp_path / "out.h5").read_bytes()
    result = run(path, tmp_path / "out.h5", nifti_path=tmp_path / "sub" / "labels.nii.gz")
    assert result.already_complete and result.slabs_done == 0
    np.testing.assert_array_equal(read_nifti(tmp_path / "sub" / "labels.nii.gz")[0], expected.transpose(2, 1, 0))
    assert (tmp_path / "out.h5").read_bytes() == before


def test_no_geometry_is_refused_before_any_work(tmp_path):
    path, _ = make_input(tmp_path / "in.h5")
    message = (
        r"in.h5 \[data\]: the scan's voxel size and position are unknown \(no affine_ras or spacing_mm attribute\), "
        "so its labels cannot be written as NIfTI; convert the scan with 'ctseg convert' from its DICOM or NIfTI "
        r"files \(TIFF carries neither\), or leave out --nifti"
    )
    with pytest.raises(CtsegSettingsError, match=message):
        run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    tiffs = tmp_path / "tiffs"  # a TIFF series input has no attributes at all
    with DataFile.create(tiffs, (3, 16, 16), np.uint8) as out:
        out.write_block((0, 0, 0), np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(CtsegSettingsError, match="tiffs: the scan's voxel size and position are unknown"):
        run(tiffs, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "labels.nii.gz").exists()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"affine_ras": np.eye(3)}, r"in.h5 \[data\]: attribute affine_ras is not a 4 x 4 voxel-to-world matrix"),
        ({"affine_ras": np.zeros((4, 4))}, "attribute affine_ras is not a 4 x 4 voxel-to-world matrix"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, r"in.h5 \[data\]: attribute spacing_mm is not three positive voxel sizes"),
        ({"spacing_mm": (1.0, 1.0)}, "attribute spacing_mm is not three positive voxel sizes in mm"),
    ],
)
def test_malformed_geometry_attributes_are_refused(tmp_path, attrs, message):
    path, _ = make_input(tmp_path / "in.h5", attrs)
    with pytest.raises(CtsegDataError, match=message + ".*convert the scan again with 'ctseg convert'"):
        run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    assert not (tmp_path / "out.h5").exists()


def test_name_and_memory_refusals(tmp_path):
    path, _ = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX})
    with pytest.raises(CtsegSettingsError, match="labels.nrrd: the NIfTI output's name must end in .nii.gz or .nii"):
        run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nrrd")
    with pytest.raises(
        CtsegSettingsError,
        match=r"labels.nii.gz: the label volume \(0.00 GB as uint8\) is larger than the memory cap of 1e-06 GB "
        r"\(max_gb, --max-gb\), and a NIfTI is written from memory in one piece: raise --max-gb, use ctseg's "
        "HDF5 output, or crop the scan before converting it",
    ):
        run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz", max_gb=1e-6)
    assert not (tmp_path / "out.h5").exists()


NEVER = "ctseg never replaces such files, even with --overwrite (overwrite=True): move it away or choose another"


def test_overwrite_replaces_only_ctsegs_own_unchanged_nifti(tmp_path):
    path, expected = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX})
    nifti = tmp_path / "labels.nii.gz"
    nifti.write_bytes(b"the user's file")
    with pytest.raises(CtsegDataError, match="labels.nii.gz exists already; choose another NIfTI name, or pass "):
        run(path, tmp_path / "out.h5", nifti_path=nifti)
    with pytest.raises(CtsegDataError, match=r"labels.nii.gz: not written by ctseg; ctseg never replaces such files"):
        run(path, tmp_path / "out.h5", nifti_path=nifti, overwrite=True)
    assert nifti.read_bytes() == b"the user's file" and not (tmp_path / "out.h5").exists()

    nifti.unlink()
    run(path, tmp_path / "out.h5", nifti_path=nifti)
    with pytest.raises(CtsegDataError, match="exists already; .* which starts out.h5 again too"):
        run(path, tmp_path / "out.h5", nifti_path=nifti)
    result = run(path, tmp_path / "out.h5", nifti_path=nifti, overwrite=True, crop="0:2,:,:")
    assert not result.already_complete
    expected[2:] = 0
    np.testing.assert_array_equal(read_nifti(nifti)[0], expected.transpose(2, 1, 0))
    img = nib.load(nifti)  # the user edits the labels
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), nifti)
    edited = nifti.read_bytes()
    with pytest.raises(CtsegDataError, match=r"labels.nii.gz: changed since ctseg wrote it; ctseg never replaces"):
        run(path, tmp_path / "out.h5", nifti_path=nifti, overwrite=True)
    assert nifti.read_bytes() == edited


def test_a_failed_nifti_write_leaves_no_file(tmp_path, monkeypatch):
    path, _ = make_input(tmp_path / "in.h5", {"affine_ras": AFFINE_ZYX})

    def broken(path, labels, affine):
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(nifti_mod, "write_volume_nifti", broken)
    with pytest.raises(KeyboardInterrupt):
        run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir() if "nii" in p.name) == []
    monkeypatch.undo()
    result = run(path, tmp_path / "out.h5", nifti_path=tmp_path / "labels.nii.gz")  # the labels are done
    assert result.already_complete and result.nifti_path.exists()
