"""Areas (mm²) and volumes (mL) on hand-built masks with exactly known answers."""

import logging

import numpy as np
import pandas as pd
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.measure.area import (
    AREA_INDEX_NAME,
    area_table,
    check_label_names,
    pixel_spacings_mm,
    roi_areas_mm2,
    stack_spacing_mm,
    volume_table,
)


def square(size=10, shape=(40, 40), value=1, at=(5, 5)):
    mask = np.zeros(shape, np.uint8)
    mask[at[0] : at[0] + size, at[1] : at[1] + size] = value
    return mask


def test_a_10x10_square_at_half_a_millimetre_is_25_mm2():
    np.testing.assert_array_equal(roi_areas_mm2(square(), (0.5, 0.5), 1), [25.0])


def test_areas_use_row_and_column_spacing_and_count_each_label():
    labels = square(10, value=1)
    labels[20:24, 20:35] = 2  # 4 x 15 = 60 pixels
    areas = roi_areas_mm2(labels, (0.5, 2.0), 3)
    np.testing.assert_array_equal(areas, [100 * 1.0, 60 * 1.0, 0.0])
    assert areas.dtype == np.float64


def test_empty_and_boolean_masks():
    np.testing.assert_array_equal(roi_areas_mm2(np.zeros((5, 5), int), (1, 1), 2), [0.0, 0.0])
    np.testing.assert_array_equal(roi_areas_mm2(square().astype(bool), (0.25, 0.25), 1), [6.25])


@pytest.mark.parametrize(
    ("labels", "spacing", "num", "error", "message"),
    [
        (
            np.zeros((2, 5, 5), int),
            (1, 1),
            1,
            CtsegDataError,
            r"a label map must be 2D \(M, N\), got shape \(2, 5, 5\)",
        ),
        (np.zeros((5, 5), float), (1, 1), 1, CtsegDataError, "a label map must hold integers, got dtype float64"),
        (square(value=3), (1, 1), 2, CtsegDataError, "label map holds values 0..3 but num_labels=2 allows only 0..2"),
        (np.full((3, 3), -1), (1, 1), 2, CtsegDataError, "label map holds values -1..-1"),
        (square(), (1, 0), 1, CtsegSettingsError, r"pixel_spacing_mm must be two positive numbers in mm, got \(1, 0\)"),
        (square(), (1, np.nan), 1, CtsegSettingsError, "pixel_spacing_mm must be two positive numbers in mm"),
        (square(), 1.0, 1, CtsegSettingsError, r"pixel_spacing_mm must be \(row, col\) in mm, got 1.0"),
        (square(), (1, 1), 0, CtsegSettingsError, "num_labels must be at least 1, got 0"),
    ],
)
def test_bad_input_is_refused(labels, spacing, num, error, message):
    with pytest.raises(error, match=message):
        roi_areas_mm2(labels, spacing, num)


# ------------------------------------------------------------------ pixel spacing and its fallback


def test_pixel_spacing_is_used_as_given():
    spacings = pixel_spacings_mm([[0.5, 0.6], [0.5, 0.6]], (256, 256))
    np.testing.assert_array_equal(spacings, [[0.5, 0.6], [0.5, 0.6]])


def test_fov_and_matrix_size_fill_in_a_missing_pixel_spacing():
    spacings = pixel_spacings_mm([[np.nan, np.nan], None], (256, 256), fov=320, matrix_size=256)
    np.testing.assert_array_equal(spacings, [[1.25, 1.25], [1.25, 1.25]])
    spacings = pixel_spacings_mm([[np.nan, np.nan]], (200, 100), fov=(300, 200))
    np.testing.assert_array_equal(spacings, [[1.5, 2.0]])


def test_disagreeing_fov_warns_and_pixel_spacing_wins(caplog):
    with caplog.at_level(logging.WARNING):
        spacings = pixel_spacings_mm([[1.3, 1.3]], (256, 256), fov=320, matrix_size=256, source="scan_dir")
    np.testing.assert_array_equal(spacings, [[1.3, 1.3]])
    assert (
        "scan_dir: PixelSpacing [1.3, 1.3] mm differs from fov/matrix_size = [1.25, 1.25] mm by up to 3.8%; "
        "using PixelSpacing"
    ) in caplog.text


def test_fov_within_1_percent_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING):
        pixel_spacings_mm([[1.255, 1.255]], (256, 256), fov=320, matrix_size=256)
    assert caplog.text == ""


def test_missing_spacing_without_fov_says_what_to_set():
    with pytest.raises(
        CtsegDataError,
        match=r"scan_dir: 1 of 2 slice\(s\) have no PixelSpacing; give the field of "
        r"view with fov \(mm\) and matrix_size",
    ):
        pixel_spacings_mm([[1.0, 1.0], [np.nan, np.nan]], (64, 64), source="scan_dir")


def test_matrix_size_must_match_the_images_when_it_is_used():
    with pytest.raises(CtsegSettingsError, match="scan_dir: matrix_size=512 but the images are 256x256 pixels"):
        pixel_spacings_mm([[np.nan, np.nan]], (256, 256), fov=320, matrix_size=512, source="scan_dir")
    with pytest.raises(CtsegSettingsError, match=r"fov must be a positive number or a \(rows, cols\) pair, got -3"):
        pixel_spacings_mm([[np.nan, np.nan]], (256, 256), fov=-3)


def test_stack_spacing_is_the_one_rule_of_io_geometry():
    from ctseg_helpers.io import geometry

    assert stack_spacing_mm is geometry.stack_spacing_mm  # tested in tests/io/test_geometry.py
    assert stack_spacing_mm([17.5, 10.0, 15.0, 12.5]) == 2.5


# ------------------------------------------------------------------ the table


def three_slices():
    labels = np.zeros((3, 40, 40), np.uint8)
    labels[0] = square(10, value=1)  # 100 px
    labels[1] = square(6, value=1)  # 36 px
    labels[1, 30:35, 30:35] = 2  # 25 px
    labels[2, 0:2, 0:2] = 2  # 4 px
    return labels


def test_area_table_has_the_manual_shape():
    table = area_table(
        three_slices(),
        (0.5, 0.5),
        ["LV", "myocardium"],
        files=["/scans/IM_1.dcm", "/scans/IM_2.dcm", "/scans/IM_3.dcm"],
        positions_mm=[0.0, 8.0, 16.0],
    )
    assert list(table.index) == ["slice number 1", "slice number 2", "slice number 3", "mean", "std"]
    assert table.index.name == AREA_INDEX_NAME == "slice (areas in mm2)"
    assert list(table.columns) == ["file", "slice_position_mm", "LV", "myocardium"]
    assert list(table["file"]) == ["IM_1.dcm", "IM_2.dcm", "IM_3.dcm", "", ""]
    np.testing.assert_array_equal(table["LV"].iloc[:3], [25.0, 9.0, 0.0])
    np.testing.assert_array_equal(table["myocardium"].iloc[:3], [0.0, 6.25, 1.0])
    assert table.loc["mean", "LV"] == pytest.approx(34 / 3)
    assert table.loc["std", "LV"] == pytest.approx(np.std([25.0, 9.0, 0.0], ddof=1))
    assert np.isnan(table.loc["mean", "slice_position_mm"])
    np.testing.assert_array_equal(table["slice_position_mm"].iloc[:3], [0.0, 8.0, 16.0])


def test_area_table_uses_each_slices_own_spacing():
    table = area_table(three_slices()[:2], [[0.5, 0.5], [1.0, 2.0]], ["LV", "myo"])
    np.testing.assert_array_equal(table["LV"].iloc[:2], [25.0, 72.0])
    assert list(table["file"]) == ["", "", "", ""]


def test_area_table_of_one_slice_has_nan_std_and_of_none_nan_rows():
    one = area_table(three_slices()[:1], (1, 1), ["LV", "myo"])
    assert one.loc["mean", "LV"] == 100 and np.isnan(one.loc["std", "LV"])
    empty = area_table(np.zeros((0, 4, 4), np.uint8), (1, 1), ["LV"])
    assert list(empty.index) == ["mean", "std"] and empty["LV"].isna().all()


def test_area_table_csv_round_trip(tmp_path):
    table = area_table(three_slices(), (0.5, 0.5), ["LV", "myocardium"], files=["a.dcm", "b.dcm", "c.dcm"])
    table.to_csv(tmp_path / "areas.csv")
    back = pd.read_csv(tmp_path / "areas.csv", index_col=0)
    assert back.shape == (5, 4)
    assert list(back.columns) == ["file", "slice_position_mm", "LV", "myocardium"]
    assert back.loc["mean", "myocardium"] == pytest.approx(table.loc["mean", "myocardium"])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "labels_list is empty"),
        (["LV", "LV"], r"labels_list has repeated names: \['LV', 'LV'\]"),
        (["file", "x"], r"labels_list may not use the column name\(s\) \['file'\]"),
    ],
)
def test_bad_names_are_refused(names, message):
    with pytest.raises(CtsegSettingsError, match=message):
        area_table(three_slices(), (1, 1), names)


def test_too_few_names_for_the_label_values_names_the_file():
    with pytest.raises(CtsegDataError, match="IM_2.dcm: label map holds values 0..2 but num_labels=1"):
        area_table(three_slices(), (1, 1), ["LV"], files=["IM_1.dcm", "IM_2.dcm", "IM_3.dcm"])
    # ... and says how many names were given for how many ROIs, with an example
    with pytest.raises(
        CtsegDataError,
        match=r"1 ROI name\(s\) \['LV'\] given for label values up to 2: give one "
        r"name per ROI, label 1 first, e.g. \['ROI 1', 'ROI 2'\] "
        r"\(or \['background', 'ROI 1', 'ROI 2'\]\)",
    ):
        area_table(three_slices(), (1, 1), ["LV"])


# ------------------------------------------------------------------ label names: background first or not


def test_a_first_name_background_is_dropped_with_an_info_line(caplog):
    with caplog.at_level(logging.INFO, logger="ctseg_helpers.io.label_names"):
        names = check_label_names(["Background", "lv_cavity", "lv_myocardium"], 2)
    assert names == ("lv_cavity", "lv_myocardium")
    assert (
        "labels_list starts with 'Background', the name of label 0: dropped, so label 1 is 'lv_cavity'" in caplog.text
    )
    # without a number of ROIs (only label values tell), a leading background is always label 0
    assert check_label_names(["background", "LV"]) == ("LV",)
    # names without background are kept as they are
    assert check_label_names(["LV", "myo"], 2) == ("LV", "myo")


def test_area_table_with_background_first_names_label_1_correctly():
    table = area_table(three_slices(), (0.5, 0.5), ["background", "LV", "myocardium"])
    assert list(table.columns) == ["file", "slice_position_mm", "LV", "myocardium"]
    np.testing.assert_array_equal(table["LV"].iloc[:3], [25.0, 9.0, 0.0])


@pytest.mark.parametrize(
    ("names", "num_labels", "message"),
    [
        (
            ["a", "b", "c"],
            2,
            r"labels_list has 3 name\(s\) \['a', 'b', 'c'\] but there are 2 ROI\(s\); give one name "
            r"per ROI, label 1 first, e.g. \['ROI 1', 'ROI 2'\] "
            r"\(or \['background', 'ROI 1', 'ROI 2'\]\)",
        ),
        (
            ["background", "a", "b", "c"],
            2,
            r"labels_list has 4 name\(s\) \['background', 'a', 'b', 'c'\] but there "
            r"are 2 ROI\(s\)",
        ),
        (
            ["background", "a"],
            2,
            r"labels_list \['background', 'a'\] names label 1 'background', but the background is "
            r"label 0 and not an ROI",
        ),
        (["a", "Background"], None, r"names label 2 'Background', but the background is label 0"),
        (
            ["background"],
            None,
            r"labels_list \['background'\] names only the background \(label 0\): add one name per "
            r"ROI after it",
        ),
        ("LV", None, r"labels_list must be a list of names, e.g. \['LV'\], got the string 'LV'"),
        (["a", " "], None, r"labels_list \['a', ' '\]: name 2 is empty; give every ROI a name"),
        (["series", "a"], None, r"labels_list may not use the column name\(s\) \['series'\]"),
    ],
)
def test_label_names_that_do_not_fit_are_refused(names, num_labels, message):
    with pytest.raises(CtsegSettingsError, match=message):
        check_label_names(names, num_labels)


def test_the_count_message_can_say_where_the_count_comes_from():
    with pytest.raises(
        CtsegSettingsError,
        match=r"--label-names has 1 name\(s\) \['a'\] but --num-labels is 2; give "
        r"one name per ROI, label 1 first, e.g. \['x', 'y'\]",
    ):
        check_label_names(["a"], 2, setting="--label-names", counted="--num-labels is 2", example=["x", "y"])


def test_area_table_of_several_series_names_each_slices_series():
    series = [(1, "1.2.3", "T1 axial"), (1, "1.2.3", "T1 axial"), (2, "4.5.6", "")]
    table = area_table(
        three_slices(), (0.5, 0.5), ["LV", "myocardium"], files=["a.dcm", "b.dcm", "c.dcm"], series=series
    )
    assert list(table.columns) == [
        "series",
        "series_uid",
        "series_description",
        "file",
        "slice_position_mm",
        "LV",
        "myocardium",
    ]
    assert list(table["series"]) == [1, 1, 2, "", ""]
    assert list(table["series_uid"]) == ["1.2.3", "1.2.3", "4.5.6", "", ""]
    assert list(table["series_description"]) == ["T1 axial", "T1 axial", "", "", ""]
    assert table.loc["mean", "LV"] == pytest.approx(34 / 3)  # over the slices of all series
    # volumes ignore the series columns
    assert volume_table(table, 8.0).loc["LV", "volume_ml"] == pytest.approx(34 * 8 / 1000)
    with pytest.raises(CtsegSettingsError, match="3 label maps but the series of 2 slices"):
        area_table(three_slices(), (0.5, 0.5), ["LV", "myocardium"], series=series[:2])


def test_mismatched_lengths_are_refused():
    with pytest.raises(
        CtsegSettingsError,
        match=r"pixel_spacing_mm must be \(row, col\) or one pair per slice \(3, "
        r"2\); got shape \(2, 2\)",
    ):
        area_table(three_slices(), [[1, 1], [1, 1]], ["LV", "myo"])
    with pytest.raises(CtsegSettingsError, match="3 label maps but 2 file names and 3 positions"):
        area_table(three_slices(), (1, 1), ["LV", "myo"], files=["a", "b"])


def test_volume_is_the_sum_of_areas_times_slice_spacing_in_ml():
    table = area_table(three_slices(), (0.5, 0.5), ["LV", "myocardium"])
    volumes = volume_table(table, 8.0)
    assert list(volumes.index) == ["LV", "myocardium"] and volumes.index.name == "roi"
    assert volumes.loc["LV", "volume_ml"] == pytest.approx((25 + 9 + 0) * 8 / 1000)
    assert volumes.loc["myocardium", "volume_ml"] == pytest.approx((6.25 + 1.0) * 8 / 1000)
    assert volumes.loc["LV", "slices_with_roi"] == 2
    assert (volumes["slice_spacing_mm"] == 8.0).all()
    with pytest.raises(CtsegSettingsError, match="slice_spacing_mm must be a positive distance in mm, got 0"):
        volume_table(table, 0)
