"""``ctseg import-labels``: a corrected NIfTI label volume into a training folder, from a terminal."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ctseg_helpers.cli import main
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.nifti import write_series_nifti
from ctseg_helpers.prepare.dataset import read_pairs


@pytest.fixture()
def scans(tmp_path):
    """Two series in one folder (3 slices of 5 x 6 each, the second 10 mm higher); a corrected volume for the
    first, its axes flipped."""
    for name, uid, z_mm in (("a", "1.2.3.1", 0.0), ("b", "1.2.3.2", 10.0)):
        write_dicom_series(
            tmp_path / "scans",
            np.zeros((3, 5, 6)),
            names=[f"{name}{k}" for k in (1, 2, 3)],
            series_uid=uid,
            origin_mm=(0.0, 0.0, z_mm),
        )
    series = read_dicom_series(tmp_path / "scans", "1.2.3.1")
    labels = np.zeros((3, 5, 6), np.uint8)
    labels[1, 1:4, 2:5] = 2
    path = write_series_nifti(
        tmp_path / "ctseg.nii.gz",
        labels,
        series.image_positions_mm,
        series.positions_mm,
        series.orientation,
        series.pixel_spacing_mm,
    )
    flipped = tmp_path / "corrected.nii.gz"
    nib.save(nib.load(path).as_reoriented(np.array([[0, -1], [2, 1], [1, -1]], dtype=float)), flipped)
    return tmp_path, labels, flipped


def test_import_then_train_reads_the_pairs(scans, capsys):
    root, labels, path = scans
    args = ["import-labels", str(path), str(root / "scans"), str(root / "train"), "--series-uid", "1.2.3.1"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"3 of 3 slice(s) -> {root / 'train'} (dicoms/, labels/): ROI 2 on 1, 2 without ROI"
    raw = read_pairs(root / "train", num_labels=2, progress=False)
    assert raw.names == ["a1", "a2", "a3"]
    for k in range(3):
        np.testing.assert_array_equal(raw.labels[k], labels[k])
    # again: refused without --overwrite, replaced with it; --labelled-only keeps the slice with an ROI
    assert main(args) == 2
    assert "a1.dcm exists already; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--labelled-only", "--overwrite", "--num-labels", "2"]) == 0
    assert capsys.readouterr().out.startswith("1 of 3 slice(s) -> ")
    assert read_pairs(root / "train", num_labels=2, progress=False).names == ["a2"]


def test_messages_and_exit_status(scans, capsys):
    root, _, path = scans
    base = ["import-labels", str(path), str(root / "scans"), str(root / "train")]
    assert main(base) == 2
    assert "the folder holds 2 series; pick one with series_uid= (or --series-uid)" in capsys.readouterr().err
    assert main([*base, "--series-uid", "1.2.3.2"]) == 2  # the volume belongs to the other series
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the label volume (shape (6, 3, 5)) does not cover the scan in ")
    assert "30 of 30 pixels of slice b1.dcm lie outside it" in err and "in 3D Slicer export it to a labelmap" in err
    assert main([*base, "--series-uid", "1.2.3.1", "--num-labels", "1"]) == 2
    assert "label values 2 at slice a2.dcm are outside 0..1" in capsys.readouterr().err
    assert main([*base, "--series-uid", "1.2.3.1", "--prefix", "../x"]) == 2
    assert "prefix '../x' cannot start a file name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--num-labels", "0"])
    assert "expected a positive whole number, got 0" in capsys.readouterr().err
