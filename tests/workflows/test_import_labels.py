"""import_labels: a NIfTI label volume into the training layout (workflows/import_labels.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom import read_dicom_series
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.io.nifti import write_series_nifti
from ctseg_helpers.io.written import written_by_ctseg
from ctseg_helpers.prepare.dataset import read_pairs
from ctseg_helpers.workflows.import_labels import import_labels

NEVER = "ctseg never replaces such files, even with --overwrite (overwrite=True): move it away or"


def _volume(path, series, labels):
    return write_series_nifti(
        path,
        labels,
        series.image_positions_mm,
        series.positions_mm,
        series.orientation,
        series.pixel_spacing_mm,
        slice_thickness_mm=series.slice_thickness_mm,
    )


@pytest.fixture()
def corrected(tmp_path):
    """4 slices of 6 x 8 (IM_0001..IM_0004); ROI 1 on slices 1 and 3, ROI 2 on slice 3, slices 2 and 4 empty."""
    write_dicom_series(
        tmp_path / "scan",
        np.full((4, 6, 8), 40.0),
        pixel_spacing_mm=(0.5, 0.75),
        names=[f"IM_{k:04d}" for k in (1, 2, 3, 4)],
    )
    series = read_dicom_series(tmp_path / "scan")
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[0, 1:3, 2:5] = 1
    labels[2, 0:2, 0:2] = 1
    labels[2, 4:6, 6:8] = 2
    return tmp_path, series, labels, _volume(tmp_path / "corrected.nii.gz", series, labels)


def test_every_slice_is_written_and_read_back_as_training_pairs(corrected):
    root, series, labels, path = corrected
    result = import_labels(path, root / "scan", root / "train")
    assert [p.name for p in result.dicom_paths] == ["IM_0001.dcm", "IM_0002.dcm", "IM_0003.dcm", "IM_0004.dcm"]
    assert [p.name for p in result.label_paths] == ["IM_0001.png", "IM_0002.png", "IM_0003.png", "IM_0004.png"]
    assert result.roi_slices == {1: 2, 2: 1} and result.n_empty == 2
    assert result.summary() == (
        f"4 of 4 slice(s) -> {root / 'train'} (dicoms/, labels/): ROI 1 on 2, ROI 2 on 1, 2 without ROI"
    )
    assert str(result) == result.summary()
    for source, copy in zip(series.files, result.dicom_paths, strict=True):
        assert copy.read_bytes() == source.read_bytes() and written_by_ctseg(copy)
    raw = read_pairs(root / "train", num_labels=2, progress=False)
    assert raw.names == ["IM_0001", "IM_0002", "IM_0003", "IM_0004"]
    for k in range(4):
        np.testing.assert_array_equal(raw.labels[k], labels[k])
        np.testing.assert_array_equal(raw.images[k], series.images[k])
    assert Image.open(result.label_paths[2]).mode == "L"


def test_slices_with_labels_only_and_a_prefix(corrected):
    root, _, labels, path = corrected
    result = import_labels(path, root / "scan", root / "train", slices_with_labels_only=True, prefix="p02_")
    assert [p.name for p in result.label_paths] == ["p02_IM_0001.png", "p02_IM_0003.png"]
    assert result.n_empty == 0
    assert result.summary().startswith("2 of 4 slice(s) -> ")
    raw = read_pairs(root / "train", num_labels=2, progress=False)
    assert raw.names == ["p02_IM_0001", "p02_IM_0003"]
    np.testing.assert_array_equal(raw.labels[1], labels[2])


def test_an_empty_volume_with_slices_with_labels_only_is_refused(corrected):
    root, series, labels, _ = corrected
    empty = _volume(root / "empty.nii.gz", series, np.zeros_like(labels))
    with pytest.raises(
        CtsegDataError, match=r"empty\.nii\.gz: no slice of the series in .*scan holds a label .*leave out"
    ):
        import_labels(empty, root / "scan", root / "train", slices_with_labels_only=True)
    assert not (root / "train").exists()


def test_bad_prefixes_and_an_output_inside_the_scan_are_refused(corrected):
    root, _, _, path = corrected
    for prefix in (".hidden_", "a/b", " p"):
        with pytest.raises(CtsegSettingsError, match=f"prefix {prefix!r} cannot start a file name"):
            import_labels(path, root / "scan", root / "train", prefix=prefix)
    with pytest.raises(CtsegSettingsError, match="the output folder is inside the DICOM folder"):
        import_labels(path, root / "scan", root / "scan" / "train")


def test_overwrite_replaces_only_an_earlier_import_and_removes_its_stale_pairs(corrected):
    root, series, labels, path = corrected
    out = root / "train"
    import_labels(path, root / "scan", out)
    with pytest.raises(
        CtsegSettingsError, match=r"IM_0001\.dcm exists already; pass --overwrite to replace an earlier"
    ):
        import_labels(path, root / "scan", out)
    # the ROI of slice 1 removed in a second correction: its pair goes, with --overwrite
    labels[0] = 0
    second = _volume(root / "second.nii.gz", series, labels)
    result = import_labels(second, root / "scan", out, slices_with_labels_only=True, overwrite=True)
    assert [p.name for p in result.removed] == [
        "IM_0001.dcm", "IM_0001.png", "IM_0002.dcm", "IM_0002.png", "IM_0004.dcm", "IM_0004.png"
    ]  # fmt: skip
    assert result.summary().endswith("; 6 file(s) of an earlier import removed")
    assert sorted(p.name for p in (out / "labels").iterdir() if not p.name.startswith(".")) == ["IM_0003.png"]
    assert read_pairs(out, num_labels=2, progress=False).names == ["IM_0003"]
    # a label map edited by hand is never replaced
    Image.fromarray(np.ones((6, 8), np.uint8)).save(out / "labels" / "IM_0003.png")
    never = re.escape(f"IM_0003.png: changed since ctseg wrote it; {NEVER} choose another output folder or --prefix")
    with pytest.raises(CtsegSettingsError, match=never):
        import_labels(second, root / "scan", out, overwrite=True)


def test_stale_pairs_a_user_changed_are_left_in_place(corrected, caplog):
    root, series, labels, path = corrected
    out = root / "train"
    import_labels(path, root / "scan", out)
    Image.fromarray(np.ones((6, 8), np.uint8)).save(out / "labels" / "IM_0002.png")  # corrected by hand
    result = import_labels(path, root / "scan", out, slices_with_labels_only=True, overwrite=True)
    assert [p.name for p in result.removed] == ["IM_0004.dcm", "IM_0004.png"]
    assert (out / "dicoms" / "IM_0002.dcm").exists() and (out / "labels" / "IM_0002.png").exists()
    assert "slice IM_0002 is not imported this time, but its files there were not written by ctseg" in caplog.text


def test_a_file_that_would_pair_under_another_name_is_refused(corrected):
    root, _, _, path = corrected
    (root / "train" / "labels").mkdir(parents=True)
    np.save(root / "train" / "labels" / "IM_0002.npy", np.zeros((6, 8), np.uint8))
    with pytest.raises(CtsegSettingsError, match=r"IM_0002\.npy: would pair with slice IM_0002 written by this import"):
        import_labels(path, root / "scan", root / "train")
    assert not (root / "train" / "dicoms").exists()
    (root / "train" / "labels" / "IM_0002.npy").unlink()
    (root / "train" / "dicoms").mkdir()
    (root / "train" / "dicoms" / "IM_0003").write_bytes(b"")  # a DICOM file without suffix
    with pytest.raises(CtsegSettingsError, match=r"dicoms/IM_0003: would pair with slice IM_0003 written by this"):
        import_labels(path, root / "scan", root / "train")
