"""Pixel values, fat fraction and shape of ROIs on hand-built slices with exactly known answers."""

import math

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.measure.intensity import (
    FAT_WINDOW_HU,
    check_fat_window,
    common_modality,
    fat_fraction,
    intensity_unit,
    max_diameter_mm,
    measure_names,
    perimeter_mm,
    roi_intensity,
    roi_measures,
)


def square(size=10, shape=(20, 20), at=(5, 5)):
    mask = np.zeros(shape, bool)
    mask[at[0] : at[0] + size, at[1] : at[1] + size] = True
    return mask


def disc(radius, pad=5):
    size = 2 * radius + 2 * pad + 1
    rows, cols = np.mgrid[:size, :size]
    centre = radius + pad
    return (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2


# ------------------------------------------------------------------------------- pixel values


def test_mean_sd_and_median_of_the_pixels_inside_the_roi():
    image = np.zeros((4, 4))
    image[0, :] = [1.0, 2.0, 3.0, 10.0]
    mask = np.zeros((4, 4), bool)
    mask[0, :] = True
    mean, sd, median = roi_intensity(image, mask)
    assert mean == 4.0
    assert sd == pytest.approx(math.sqrt((9 + 4 + 1 + 36) / 4))  # population SD, ddof=0
    assert median == 2.5
    assert roi_intensity(image, mask.astype(np.uint8)) == (mean, sd, median)  # any non-zero is inside


def test_an_empty_roi_has_nan_pixel_values_and_fat_fraction():
    image = np.full((5, 5), -100.0)
    empty = np.zeros((5, 5), bool)
    assert all(math.isnan(v) for v in roi_intensity(image, empty))
    assert math.isnan(fat_fraction(image, empty))


def test_fat_fraction_is_the_share_of_roi_pixels_in_the_window_both_ends_included():
    image = np.full((20, 20), 1000.0)  # outside the ROI: never counted
    mask = square(10)
    roi = image[mask].reshape(10, 10)
    roi[:] = 50.0
    roi[:4, :] = -100.0  # 40 of 100 ROI pixels are fat
    image[mask] = roi.ravel()
    assert fat_fraction(image, mask) == 0.4
    roi[4, :5] = FAT_WINDOW_HU[0]  # -190: in
    roi[4, 5:] = FAT_WINDOW_HU[1]  # -30: in
    roi[5, :5] = -190.5  # out
    roi[5, 5:] = -29.5  # out
    image[mask] = roi.ravel()
    assert fat_fraction(image, mask) == 0.5
    assert fat_fraction(image, mask, (-190, 40)) == 0.55  # another window: the -29.5 HU pixels too, not 50 HU


def test_fat_window_and_unit_names():
    assert FAT_WINDOW_HU == (-190.0, -30.0)
    assert check_fat_window((-150, -50)) == (-150.0, -50.0)
    assert intensity_unit("CT") == intensity_unit(" ct ") == "hu"
    assert intensity_unit("MR") == intensity_unit("") == intensity_unit(None) == "signal"
    assert common_modality(["MR", " mr"]) == "MR" and common_modality([]) is None
    assert common_modality(["CT", "MR"]) is None and common_modality([None, None]) is None
    assert measure_names(None, shape=True) == ["perimeter_mm", "max_diameter_mm"]
    assert measure_names("hu", fat=True) == ["mean_hu", "sd_hu", "median_hu", "fat_fraction"]


@pytest.mark.parametrize(
    ("window", "setting", "message"),
    [
        (
            (-30, -190),
            "fat_window_hu",
            r"fat_window_hu must be two finite numbers in HU with low < high, e.g. -190 -30; got \(-30, -190\)",
        ),
        ((-30, np.inf), "--fat-window", r"--fat-window must be two finite numbers in HU with low < high"),
        (-100, "fat_window_hu", r"fat_window_hu must be two numbers \(low, high\) in HU, e.g. -190 -30; got -100"),
        ((-190, -100, -30), "fat_window_hu", r"fat_window_hu must be two numbers \(low, high\) in HU"),
        (("low", "high"), "fat_window_hu", r"fat_window_hu must be two numbers \(low, high\) in HU"),
    ],
)
def test_a_bad_fat_window_is_refused(window, setting, message):
    with pytest.raises(CtsegSettingsError, match=message):
        check_fat_window(window, setting)


def test_image_and_mask_must_be_the_same_size():
    with pytest.raises(CtsegDataError, match=r"the image has shape \(4, 4\) but the mask \(4, 5\)"):
        roi_intensity(np.zeros((4, 4)), np.zeros((4, 5), bool))


# ---------------------------------------------------------------------------------- perimeter


def test_a_10x10_square_at_half_a_millimetre_has_perimeter_18_plus_sqrt2_mm():
    # marching squares: straight edges on the pixel edges (4 x 9 pixels), each corner cut by a half-pixel diagonal
    assert perimeter_mm(square(10), (0.5, 0.5)) == pytest.approx(18 + math.sqrt(2), abs=1e-12)


def test_perimeter_with_anisotropic_pixels_scales_rows_and_columns_apart():
    # 10 x 10 pixels of 0.5 mm (rows) x 2 mm (cols): 2 x 9 x 2 + 2 x 9 x 0.5 straight, corners (0.25, 1) mm
    expected = 2 * 18 + 2 * 4.5 + 4 * math.hypot(0.25, 1.0)
    assert perimeter_mm(square(10), (0.5, 2.0)) == pytest.approx(expected, abs=1e-12)


def test_perimeter_of_a_ring_adds_its_inner_boundary_and_of_pieces_adds_them_up():
    ring = square(10, shape=(20, 20))
    ring[8:12, 8:12] = False  # a 4 x 4 hole: inner boundary 4 x 3 + 4 x sqrt(0.5)
    outer, inner = 36 + 4 * math.sqrt(0.5), 12 + 4 * math.sqrt(0.5)
    assert perimeter_mm(ring, (1, 1)) == pytest.approx(outer + inner)
    two = square(4, shape=(20, 20), at=(1, 1)) | square(4, shape=(20, 20), at=(10, 10))
    assert perimeter_mm(two, (1, 1)) == pytest.approx(2 * (12 + 4 * math.sqrt(0.5)))


def test_perimeter_of_a_roi_touching_the_image_edge_and_of_one_pixel():
    assert perimeter_mm(np.ones((10, 10), bool), (0.5, 0.5)) == pytest.approx(18 + math.sqrt(2))
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    assert perimeter_mm(one, (1, 1)) == pytest.approx(4 * math.sqrt(0.5))


def test_perimeter_is_the_length_of_scikit_images_marching_squares_contours():
    from skimage.measure import find_contours

    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.random()  # saddles included
        spacing = rng.uniform(0.2, 3.0, size=2)
        contours = find_contours(np.pad(mask, 1).astype(float), 0.5)
        expected = sum(np.sqrt(((np.diff(c, axis=0) * spacing) ** 2).sum(axis=1)).sum() for c in contours)
        assert perimeter_mm(mask, spacing) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_perimeter_of_a_digitised_disc_follows_the_pixel_staircase():
    # documented bias: longer than 2 pi r on curved boundaries (5.9 % at r = 50 px, 9.5 % at r = 10 px)
    assert perimeter_mm(disc(50), (1, 1)) / (2 * math.pi * 50) == pytest.approx(1.0585, abs=5e-4)
    assert perimeter_mm(disc(10), (1, 1)) / (2 * math.pi * 10) == pytest.approx(1.0945, abs=5e-4)


# --------------------------------------------------------------------------- maximum diameter


def test_a_10x10_square_at_half_a_millimetre_has_maximum_diameter_5_sqrt2_mm():
    # between the outer pixel corners; between pixel centres it would be 4.5 sqrt(2)
    assert max_diameter_mm(square(10), (0.5, 0.5)) == pytest.approx(5 * math.sqrt(2), abs=1e-12)


def test_maximum_diameter_with_anisotropic_pixels():
    assert max_diameter_mm(square(10), (0.5, 2.0)) == pytest.approx(math.hypot(5.0, 20.0), abs=1e-12)
    line = np.zeros((5, 30), bool)
    line[2, 3:23] = True  # one row of 20 pixels of 0.5 x 2 mm: 40 mm long, 0.5 mm high
    assert max_diameter_mm(line, (0.5, 2.0)) == pytest.approx(math.hypot(0.5, 40.0), abs=1e-12)


def test_maximum_diameter_of_a_disc_a_pixel_and_two_pieces():
    # a digitised disc of radius 50 px spans 101 pixels across; corners stick out a little further
    assert 101.0 <= max_diameter_mm(disc(50), (1, 1)) <= 101.0 * 1.01
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    assert max_diameter_mm(one, (0.5, 2.0)) == pytest.approx(math.hypot(0.5, 2.0))
    two = np.zeros((20, 20), bool)
    two[0, 0] = two[19, 19] = True  # pieces count together
    assert max_diameter_mm(two, (1, 1)) == pytest.approx(20 * math.sqrt(2))


def test_an_empty_roi_has_perimeter_and_diameter_0():
    assert perimeter_mm(np.zeros((5, 5), bool), (1, 1)) == 0.0
    assert max_diameter_mm(np.zeros((5, 5), bool), (1, 1)) == 0.0


@pytest.mark.parametrize("measure", [perimeter_mm, max_diameter_mm])
def test_shape_measures_refuse_a_3d_mask_and_a_bad_spacing(measure):
    with pytest.raises(CtsegDataError, match=r"a mask must be 2D \(M, N\), got shape \(2, 5, 5\)"):
        measure(np.zeros((2, 5, 5), bool), (1, 1))
    with pytest.raises(CtsegSettingsError, match=r"pixel_spacing_mm must be two positive numbers in mm, got \(1, 0\)"):
        measure(square(), (1, 0))
    with pytest.raises(CtsegSettingsError, match=r"pixel_spacing_mm must be \(row, col\) in mm, got 1.0"):
        measure(square(), 1.0)


# ------------------------------------------------------------------------- all ROIs of a slice


def test_roi_measures_gives_every_roi_in_measure_names_order():
    labels = np.zeros((20, 20), np.uint8)
    labels[square(10)] = 1
    labels[0:2, 0:3] = 2  # 6 pixels touching the image edge
    image = np.full((20, 20), 40.0)
    image[5:9, 5:15] = -100.0  # 40 of label 1's 100 pixels
    out = roi_measures(labels, (0.5, 0.5), 3, image=image, fat_window_hu=FAT_WINDOW_HU, shape=True)
    assert out.shape == (3, len(measure_names("hu", fat=True, shape=True)))
    mean, sd, median, fat, perimeter, diameter = out[0]
    assert mean == pytest.approx(0.4 * -100 + 0.6 * 40)
    assert sd == pytest.approx(math.sqrt(0.4 * 0.6) * 140)
    assert median == 40.0 and fat == 0.4
    assert perimeter == pytest.approx(18 + math.sqrt(2)) and diameter == pytest.approx(5 * math.sqrt(2))
    # 2 x 3 pixels of 0.5 mm: straight edges 2 x 0.5 + 2 x 1 mm, corners 4 x sqrt(2) x 0.25 mm
    assert out[1].tolist() == pytest.approx([40.0, 0.0, 40.0, 0.0, 3 + math.sqrt(2), math.hypot(1.0, 1.5)])
    assert np.isnan(out[2, :4]).all() and out[2, 4:].tolist() == [0.0, 0.0]  # label 3 is absent
    assert roi_measures(labels, (0.5, 0.5), 2).shape == (2, 0)
    assert roi_measures(square(10), (0.5, 0.5), 1, shape=True)[0, 1] == pytest.approx(5 * math.sqrt(2))  # a bool mask


def test_roi_measures_errors():
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(CtsegSettingsError, match="fat_window_hu needs the images"):
        roi_measures(labels, (1, 1), 1, fat_window_hu=FAT_WINDOW_HU)
    with pytest.raises(CtsegDataError, match="the image is 4x5 pixels but its label map is 4x4"):
        roi_measures(labels, (1, 1), 1, image=np.zeros((4, 5)))
    with pytest.raises(CtsegDataError, match=r"a label map must be 2D \(M, N\), got shape \(4,\)"):
        roi_measures(np.zeros(4, np.uint8), (1, 1), 1)
