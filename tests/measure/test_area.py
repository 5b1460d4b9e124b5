"""Areas (mm²) and volumes (mL) on hand-built masks with exactly known answers."""

import logging
import math

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
    roi_columns,
    slice_rows,
    stack_spacing_mm,
    summary_rows,
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


# ------------------------------------------------------------------ pixel values and shape columns


def ct_slices():
    """three_slices' pixel values: -100 HU (fat) on the top 4 rows of every slice, 40 HU elsewhere."""
    images = np.full((3, 40, 40), 40.0)
    images[:, :9, :] = -100.0  # label 1 of slice 1 spans rows 5..14: 40 of its 100 pixels are fat
    return images


def test_area_table_with_ct_images_adds_each_rois_measures_after_the_areas():
    table = area_table(three_slices(), (0.5, 0.5), ["LV", "myocardium"], images=ct_slices(), modality="CT", shape=True)
    measures = ["mean_hu", "sd_hu", "median_hu", "fat_fraction", "perimeter_mm", "max_diameter_mm"]
    assert list(table.columns) == [
        "file",
        "slice_position_mm",
        "LV",
        "myocardium",
        *[f"LV_{m}" for m in measures],
        *[f"myocardium_{m}" for m in measures],
    ]
    first = table.loc["slice number 1"]
    assert first["LV"] == 25.0
    assert first["LV_mean_hu"] == pytest.approx(0.4 * -100 + 0.6 * 40)
    assert first["LV_sd_hu"] == pytest.approx(math.sqrt(0.4 * 0.6) * 140)
    assert first["LV_median_hu"] == 40.0 and first["LV_fat_fraction"] == 0.4
    assert first["LV_perimeter_mm"] == pytest.approx(18 + math.sqrt(2))
    assert first["LV_max_diameter_mm"] == pytest.approx(5 * math.sqrt(2))
    # myocardium is absent from slice 1: NaN pixel values, 0 perimeter and diameter
    assert np.isnan(first[[f"myocardium_{m}" for m in measures[:4]]].to_numpy(float)).all()
    assert first["myocardium_perimeter_mm"] == 0.0 and first["myocardium_max_diameter_mm"] == 0.0
    # summary rows: NaN left out of the mean and std (pixel values), 0 counted (areas, shape)
    myo_fat = table["myocardium_fat_fraction"].iloc[:3].to_numpy(float)
    assert np.isnan(myo_fat[0]) and myo_fat[2] == 1.0  # its 4 pixels of slice 3 lie in rows 0..1: fat
    assert table.loc["mean", "myocardium_fat_fraction"] == pytest.approx(np.nanmean(myo_fat))
    assert table.loc["std", "myocardium_fat_fraction"] == pytest.approx(np.nanstd(myo_fat, ddof=1))
    perimeters = table["LV_perimeter_mm"].iloc[:3].to_numpy(float)
    assert perimeters[2] == 0.0 and table.loc["mean", "LV_perimeter_mm"] == pytest.approx(perimeters.mean())
    assert table.loc["mean", "LV"] == pytest.approx(34 / 3)  # the areas as without images


def test_area_table_with_mr_images_names_the_unit_signal_and_has_no_fat_fraction():
    table = area_table(three_slices(), (0.5, 0.5), ["LV", "myo"], images=ct_slices(), modality="MR")
    assert list(table.columns[2:]) == [
        "LV",
        "myo",
        "LV_mean_signal",
        "LV_sd_signal",
        "LV_median_signal",
        "myo_mean_signal",
        "myo_sd_signal",
        "myo_median_signal",
    ]
    assert table.loc["slice number 1", "LV_median_signal"] == 40.0
    one = area_table(three_slices()[:1], (0.5, 0.5), ["LV", "myo"], images=ct_slices()[:1])  # modality unknown
    assert "LV_mean_signal" in one.columns and np.isnan(one.loc["std", "LV_mean_signal"])  # std of one slice


def test_area_table_fat_window_of_the_user():
    table = area_table(
        three_slices(), (0.5, 0.5), ["LV", "myo"], images=ct_slices(), modality="CT", fat_window_hu=(0, 100)
    )
    assert table.loc["slice number 1", "LV_fat_fraction"] == pytest.approx(0.6)  # now the 40 HU pixels


def test_area_table_measure_errors():
    labels, images = three_slices(), ct_slices()
    with pytest.raises(CtsegSettingsError, match=r"fat_window_hu=\(-190, -30\) needs the images"):
        area_table(labels, (1, 1), ["LV", "myo"], modality="CT", fat_window_hu=(-190, -30))
    with pytest.raises(
        CtsegSettingsError,
        match=r"fat_window_hu=\(-190, -30\) is a window of Hounsfield units, but the images are MR, not CT: "
        "leave the fat window out",
    ):
        area_table(labels, (1, 1), ["LV", "myo"], images=images, modality="MR", fat_window_hu=(-190, -30))
    with pytest.raises(CtsegSettingsError, match="the images are of unknown modality, not CT"):
        area_table(labels, (1, 1), ["LV", "myo"], images=images, fat_window_hu=(-190, -30))
    with pytest.raises(CtsegSettingsError, match="fat_window_hu must be two finite numbers in HU with low < high"):
        area_table(labels, (1, 1), ["LV", "myo"], images=images, modality="CT", fat_window_hu=(0, 0))
    with pytest.raises(CtsegSettingsError, match="3 label maps but 2 images"):
        area_table(labels, (1, 1), ["LV", "myo"], images=images[:2])
    with pytest.raises(CtsegDataError, match="b.dcm: the image is 40x39 pixels but its label map is 40x40"):
        area_table(
            labels,
            (1, 1),
            ["LV", "myo"],
            files=["a.dcm", "b.dcm", "c.dcm"],
            images=[images[0], images[1, :, :39], images[2]],
        )


def test_volumes_and_roi_columns_leave_the_measure_columns_out(tmp_path):
    table = area_table(three_slices(), (0.5, 0.5), ["LV", "myocardium"], images=ct_slices(), shape=True)
    assert roi_columns(table) == ["LV", "myocardium"]
    joined = table.copy()
    joined["uncertainty_entropy"] = 0.5  # a column joined on later is no ROI either
    assert roi_columns(slice_rows(joined)) == ["LV", "myocardium"]
    assert list(volume_table(joined, 8.0).index) == ["LV", "myocardium"]
    table.to_csv(tmp_path / "areas.csv")
    assert roi_columns(pd.read_csv(tmp_path / "areas.csv", index_col=0)) == ["LV", "myocardium"]  # by name
    volumes = volume_table(table, 8.0)
    assert list(volumes.index) == ["LV", "myocardium"]
    assert volumes.loc["LV", "volume_ml"] == pytest.approx((25 + 9 + 0) * 8 / 1000)


# --------------------------------------------------------------------------- cine summary rows


def cine_slices():
    """Two positions (0 and 10 mm) x two phases; label 1 of 100, 36 | 100, 0 pixels."""
    labels = np.zeros((4, 40, 40), np.uint8)
    labels[0] = labels[2] = square(10)
    labels[1] = square(6)
    return labels


def test_a_cine_table_has_mean_and_std_rows_per_position_over_its_phases():
    table = area_table(cine_slices(), (0.5, 0.5), ["LV"], positions_mm=[0.0, 0.004, 10.0, 10.0])
    assert list(table.index[4:]) == ["mean @ 0 mm", "std @ 0 mm", "mean @ 10 mm", "std @ 10 mm"]
    assert table.loc["mean @ 0 mm", "LV"] == pytest.approx((25 + 9) / 2)
    assert table.loc["std @ 0 mm", "LV"] == pytest.approx(np.std([25, 9], ddof=1))
    assert table.loc["mean @ 10 mm", "LV"] == pytest.approx(12.5)
    assert table.loc["mean @ 0 mm", "slice_position_mm"] == pytest.approx(0.002)  # the mean of its phases
    assert table.loc["std @ 10 mm", "slice_position_mm"] == 10.0
    assert len(slice_rows(table)) == 4
    assert list(summary_rows(table, "mean").index) == ["mean @ 0 mm", "mean @ 10 mm"]
    assert list(summary_rows(table, "std").index) == ["std @ 0 mm", "std @ 10 mm"]
    assert len(summary_rows(table)) == 4


def test_cine_rows_follow_the_order_positions_appear_and_name_unknown_positions():
    table = area_table(cine_slices(), (0.5, 0.5), ["LV"], positions_mm=[-2.5, np.nan, -12.25, -2.5])
    assert list(summary_rows(table, "mean").index) == ["mean @ -2.5 mm", "mean @ unknown position", "mean @ -12.25 mm"]
    assert table.loc["mean @ -2.5 mm", "LV"] == pytest.approx(12.5)
    assert np.isnan(table.loc["mean @ unknown position", "slice_position_mm"])


def test_cine_rows_of_several_series_name_their_series():
    series = [(1, "1.2.1", "cine A")] * 2 + [(2, "1.2.2", "cine B")] * 2
    table = area_table(cine_slices(), (0.5, 0.5), ["LV"], positions_mm=[5.0, 5.0, 5.0, 5.0], series=series)
    assert list(summary_rows(table).index) == [
        "mean series 1 @ 5 mm",
        "std series 1 @ 5 mm",
        "mean series 2 @ 5 mm",
        "std series 2 @ 5 mm",
    ]
    assert table.loc["mean series 2 @ 5 mm", "series_description"] == "cine B"
    assert table.loc["mean series 2 @ 5 mm", "LV"] == pytest.approx(12.5)


def test_distinct_positions_keep_the_pooled_mean_and_std_rows():
    table = area_table(cine_slices(), (0.5, 0.5), ["LV"], positions_mm=[0.0, 10.0, 20.0, 40.0])
    assert list(table.index[4:]) == ["mean", "std"]
    assert list(summary_rows(table, "mean").index) == ["mean"]
    series = [(1, "u1", "a")] * 2 + [(2, "u2", "b")] * 2
    table = area_table(cine_slices(), (0.5, 0.5), ["LV"], positions_mm=[0.0, 10.0, 0.0, 10.0], series=series)
    assert list(table.index[4:]) == ["mean", "std"]  # the same positions in two series are no cine
    assert table.loc["mean", "series"] == ""


def test_summary_rows_refuses_another_kind_of_row():
    with pytest.raises(CtsegSettingsError, match="which must be 'mean', 'std' or None, got 'median'"):
        summary_rows(area_table(cine_slices(), (1, 1), ["LV"]), "median")
