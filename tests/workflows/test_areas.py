"""ctseg areas' workflow: label maps on disk paired with their DICOM files by name, then measured."""

import logging
import math

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.measure.area import slice_rows
from ctseg_helpers.workflows.areas import areas_from_folders, find_label_files
from tests.measure.test_area import square, three_slices


@pytest.fixture()
def labelled_series(tmp_path):
    from PIL import Image

    from ctseg_helpers.io.dicom_write import write_dicom_series

    images = np.full((3, 40, 40), -1000.0)
    write_dicom_series(
        tmp_path / "dicoms", images, pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=8.0, names=["IM_1", "IM_2", "IM_3"]
    )
    (tmp_path / "labels").mkdir()
    for name, lab in zip(["IM_1", "IM_2", "IM_3"], three_slices(), strict=True):
        Image.fromarray(lab).save(tmp_path / "labels" / f"{name}.png")
    return tmp_path


def test_areas_from_folders_matches_labels_to_dicom_by_name(labelled_series):
    table, volumes = areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"])
    assert list(table["file"].iloc[:3]) == ["IM_1.dcm", "IM_2.dcm", "IM_3.dcm"]
    np.testing.assert_array_equal(table["LV"].iloc[:3], [25.0, 9.0, 0.0])
    np.testing.assert_allclose(table["slice_position_mm"].iloc[:3], [0.0, 8.0, 16.0])
    assert volumes.loc["LV", "volume_ml"] == pytest.approx(34 * 8 / 1000)


def test_areas_from_folders_uses_fov_when_pixel_spacing_is_absent(labelled_series):
    import pydicom

    for path in sorted((labelled_series / "dicoms").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.raises(CtsegDataError, match=r"3 of 3 slice\(s\) have no PixelSpacing"):
        areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"])
    table, _ = areas_from_folders(
        labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"], fov=40.0, matrix_size=40
    )
    np.testing.assert_array_equal(table["LV"].iloc[:3], [100.0, 36.0, 0.0])


def test_areas_from_folders_leaves_out_unlabelled_slices_with_a_warning(labelled_series, caplog):
    (labelled_series / "labels" / "IM_2.png").unlink()
    (labelled_series / "labels" / "other.png").write_bytes((labelled_series / "labels" / "IM_1.png").read_bytes())
    with caplog.at_level(logging.WARNING):
        table, volumes = areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myo"])
    assert list(table["file"].iloc[:2]) == ["IM_1.dcm", "IM_3.dcm"]
    assert volumes is None  # the middle position is unlabelled: no volume from slices 16 mm apart
    assert "1 of 3 DICOM file(s) have no label map" in caplog.text
    assert "1 label map(s) match no DICOM file, e.g. other" in caplog.text


def test_areas_from_folders_of_two_series_name_the_series_and_give_each_its_volumes(labelled_series):
    from PIL import Image

    from ctseg_helpers.io.dicom_write import write_dicom_series

    # a second, smaller series (2 slices 4 mm apart) in the same folder: series 2 as 'ctseg inspect' lists it
    write_dicom_series(
        labelled_series / "dicoms",
        np.full((2, 40, 40), -1000.0),
        pixel_spacing_mm=(1.0, 1.0),
        slice_thickness_mm=4.0,
        names=["B_1", "B_2"],
        series_description="second scan",
    )
    for name in ("B_1", "B_2"):
        Image.fromarray(square(5)).save(labelled_series / "labels" / f"{name}.png")
    table, volumes = areas_from_folders(
        labelled_series / "labels", labelled_series / "dicoms", ["background", "LV", "myocardium"]
    )
    rows = slice_rows(table)
    assert list(rows["series"]) == [1, 1, 1, 2, 2]
    assert list(rows["series_description"]) == ["ctseg series"] * 3 + ["second scan"] * 2
    assert list(rows["file"]) == ["IM_1.dcm", "IM_2.dcm", "IM_3.dcm", "B_1.dcm", "B_2.dcm"]
    np.testing.assert_array_equal(rows["LV"], [25.0, 9.0, 0.0, 25.0, 25.0])
    assert list(volumes.columns[:3]) == ["series", "series_uid", "series_description"]
    by_series = volumes.reset_index().set_index(["series", "roi"])["volume_ml"]
    assert by_series[(1, "LV")] == pytest.approx(34 * 8 / 1000)
    assert by_series[(2, "LV")] == pytest.approx(50 * 4 / 1000)
    assert by_series[(2, "myocardium")] == 0.0


def test_areas_from_folders_errors(labelled_series, tmp_path):
    with pytest.raises(CtsegDataError, match="nope: no such label folder; check the path"):
        areas_from_folders(tmp_path / "nope", labelled_series / "dicoms", ["LV", "myo"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CtsegDataError, match="empty: no label files .* in the folder; select the folder that holds"):
        find_label_files(empty)
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "unrelated.npy", np.zeros((40, 40), np.uint8))
    with pytest.raises(
        CtsegDataError,
        match=r"none of its 1 label maps is named like a DICOM file in .*dicoms \(e.g. "
        r"IM_1.png for IM_1.dcm\)",
    ):
        areas_from_folders(other, labelled_series / "dicoms", ["LV", "myo"])
    np.save(other / "IM_1.npy", np.zeros((30, 40), np.uint8))
    with pytest.raises(CtsegDataError, match="IM_1.npy: label map is 30x40 but its image IM_1.dcm is 40x40"):
        areas_from_folders(other, labelled_series / "dicoms", ["LV", "myo"])
    with pytest.raises(CtsegDataError, match="dicoms: no series with SeriesInstanceUID 1.2.3; it holds "):
        areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myo"], series_uid="1.2.3")
    np.save(labelled_series / "labels" / "IM_1.npy", np.zeros((40, 40), np.uint8))
    with pytest.raises(CtsegDataError, match=r"two label files for slice 'IM_1' \(IM_1.npy and IM_1.png\); keep one"):
        find_label_files(labelled_series / "labels")


def test_areas_on_real_sunnybrook_labels_match_pixel_counts(sunnybrook):
    from ctseg_helpers.io.dicom import read_dicom_file
    from ctseg_helpers.io.labels import read_label

    split = sunnybrook / "lv_myo" / "train"
    table, volumes = areas_from_folders(split / "labels", split / "dicoms", ["LV blood pool", "LV myocardium"])
    assert table["file"].iloc[:28].str.startswith("SCD0000").all()
    assert len(table) == 28 + 2
    # three patients' series: each row names its series, and each series (every position labelled once) has
    # its own volumes
    assert list(table.columns[:3]) == ["series", "series_uid", "series_description"]
    assert slice_rows(table)["series"].nunique() == 3 and volumes["series"].nunique() == 3
    blood_pool = volumes.loc["LV blood pool", "volume_ml"]
    assert len(blood_pool) == 3 and (blood_pool.between(50, 500)).all()  # a left ventricle holds some 100 mL
    first = split / "dicoms" / table["file"].iloc[0]
    spacing = read_dicom_file(first).pixel_spacing_mm
    label = read_label(split / "labels" / (first.stem + ".png"), 2)
    assert table["LV blood pool"].iloc[0] == pytest.approx((label == 1).sum() * spacing[0] * spacing[1])
    # a left-ventricle blood pool cross-section is some cm², not mm² or m²
    assert 100 < table.loc["mean", "LV blood pool"] < 5000


# ------------------------------------------------------------------ pixel values and shape columns


def test_areas_from_folders_adds_pixel_values_fat_fraction_and_shape_for_ct(labelled_series):
    from ctseg_helpers.io.dicom_write import write_dicom_series

    images = np.full((3, 40, 40), 40.0)
    images[:, :9, :] = -100.0  # label 1 of IM_1 spans rows 5..14: 40 of its 100 pixels are fat
    write_dicom_series(
        labelled_series / "dicoms",
        images,
        pixel_spacing_mm=(0.5, 0.5),
        slice_thickness_mm=8.0,
        names=["IM_1", "IM_2", "IM_3"],
        overwrite=True,
    )
    table, volumes = areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"])
    assert list(table.columns[:4]) == ["file", "slice_position_mm", "LV", "myocardium"]  # as before
    first = table.loc["slice number 1"]
    assert first["LV_mean_hu"] == pytest.approx(0.4 * -100 + 0.6 * 40)
    assert first["LV_median_hu"] == 40.0 and first["LV_fat_fraction"] == 0.4
    assert first["LV_perimeter_mm"] == pytest.approx(18 + math.sqrt(2))
    assert first["LV_max_diameter_mm"] == pytest.approx(5 * math.sqrt(2))
    assert list(volumes.index) == ["LV", "myocardium"]  # volumes of the ROIs only
    table, _ = areas_from_folders(
        labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"], fat_window_hu=(0, 100)
    )
    assert table.loc["slice number 1", "LV_fat_fraction"] == pytest.approx(0.6)


def test_areas_from_folders_without_measures_has_the_area_columns_only(labelled_series):
    table, _ = areas_from_folders(
        labelled_series / "labels", labelled_series / "dicoms", ["LV", "myocardium"], measures=False
    )
    assert list(table.columns) == ["file", "slice_position_mm", "LV", "myocardium"]


def test_areas_from_folders_fat_window_errors(labelled_series, tmp_path):
    labels, dicoms = labelled_series / "labels", labelled_series / "dicoms"
    with pytest.raises(CtsegSettingsError, match=r"fat_window_hu must be two finite numbers in HU with low < high"):
        areas_from_folders(labels, dicoms, ["LV", "myo"], fat_window_hu=(-30, -190))
    with pytest.raises(
        CtsegSettingsError,
        match=r"a fat window \(fat_window_hu, --fat-window\) needs the intensity columns: leave out "
        r"measures=False \(--areas-only\)",
    ):
        areas_from_folders(labels, dicoms, ["LV", "myo"], measures=False, fat_window_hu=(-190, -30))
    mr = cine_series(tmp_path / "cine")
    with pytest.raises(
        CtsegSettingsError,
        match=r"dicoms: a fat window \(fat_window_hu, --fat-window\) is in Hounsfield units, but the labelled "
        "series are MR, not all CT: leave the fat window out",
    ):
        areas_from_folders(mr / "labels", mr / "dicoms", ["LV"], fat_window_hu=(-190, -30))


def cine_series(root):
    """An MR cine series: 2 positions 8 mm apart x 2 phases (P1_*, P2_*), label 1 of 100 | 36 pixels."""
    from PIL import Image

    from ctseg_helpers.io.dicom_write import write_dicom_series

    for phase in (1, 2):
        write_dicom_series(
            root / "dicoms",
            np.full((2, 40, 40), 300.0),
            pixel_spacing_mm=(0.5, 0.5),
            slice_thickness_mm=8.0,
            modality="MR",
            names=[f"P{phase}_1", f"P{phase}_2"],
            series_uid="1.2.826.0.1.3680043.8.498.1",
            rescale_intercept=0.0,
        )
    (root / "labels").mkdir()
    for phase, size in ((1, 10), (2, 6)):
        for k in (1, 2):
            Image.fromarray(square(size)).save(root / "labels" / f"P{phase}_{k}.png")
    return root


def test_areas_of_a_cine_series_summarise_each_position_over_its_phases(tmp_path):
    root = cine_series(tmp_path)
    table, volumes = areas_from_folders(root / "labels", root / "dicoms", ["LV"])
    assert volumes is None
    assert list(table.index[4:]) == ["mean @ 0 mm", "std @ 0 mm", "mean @ 8 mm", "std @ 8 mm"]
    assert table.loc["mean @ 8 mm", "LV"] == pytest.approx((25 + 9) / 2)
    assert table.loc["std @ 8 mm", "LV"] == pytest.approx(np.std([25, 9], ddof=1))
    assert table.loc["mean @ 0 mm", "LV_mean_signal"] == 300.0
    assert "LV_fat_fraction" not in table.columns


def test_areas_of_ct_and_mr_series_together_name_the_unit_signal_with_a_warning(labelled_series, caplog):
    root = cine_series(labelled_series / "mr")
    for path in (root / "dicoms").iterdir():
        (labelled_series / "dicoms" / path.name).write_bytes(path.read_bytes())
    for path in (root / "labels").iterdir():
        (labelled_series / "labels" / path.name).write_bytes(path.read_bytes())
    with caplog.at_level(logging.WARNING):
        table, _ = areas_from_folders(labelled_series / "labels", labelled_series / "dicoms", ["LV", "myo"])
    assert "the labelled series are of different modalities (CT, MR)" in caplog.text
    assert "LV_mean_signal" in table.columns and "LV_fat_fraction" not in table.columns
    assert slice_rows(table)["series"].nunique() == 2
