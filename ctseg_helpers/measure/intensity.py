"""Pixel values and shape of each ROI on a slice: mean, SD, median, fat fraction, perimeter, diameter.

NumPy and SciPy only. Everything here computes from one slice's arrays; the table of all slices is
:func:`ctseg_helpers.measure.area.area_table` (with ``images=`` and ``shape=True``).

Conventions used throughout
---------------------------
*Pixel values.* ``image`` holds the slice's pixel values as ctseg reads them from DICOM
(:attr:`ctseg_helpers.io.dicom.DicomImage.pixels`): the modality rescale applied, so Hounsfield
units (HU) for CT and the scanner's signal intensity (arbitrary units, no absolute scale) for MR
and other modalities. Column names carry the unit (:func:`intensity_unit`): ``mean_hu``,
``sd_hu``, ``median_hu`` for CT, ``mean_signal``, ``sd_signal``, ``median_signal`` for anything
else (MR, or a modality that is not known).

*SD.* The standard deviation of the ROI's pixel values is the population SD (``ddof=0``; the
ROI's pixels are all the pixels there are), as radiomics software (IBSI, PyRadiomics) defines
it. The ``std`` rows of an area table, by contrast, are the sample SD over slices (``ddof=1``).

*Spacing.* ``pixel_spacing_mm`` is ``(row, col)`` in mm, DICOM ``PixelSpacing`` order. Shape
measures scale the row and column coordinates by their own spacing before measuring, so
anisotropic pixels are handled.

*Perimeter.* The length in mm of the ROI's boundary as marching squares traces it: the
contours of :func:`skimage.measure.find_contours` at level 0.5 of the mask padded with
background (the tests check this), their lengths summed here cell by cell of 2 x 2 pixel
centres, which is much faster. The contour is a polygon through the midpoints between
neighbouring ROI and background pixel centres, so a straight edge lies on the pixel edges and
a corner is cut by a diagonal of half a pixel. A 10 x 10 pixel square at 0.5 mm measures
``4 x 9 x 0.5 + 4 x 0.5 x sqrt(0.5² + 0.5²) = 18 + sqrt(2) = 19.414`` mm (its pixel-edge
outline would be 20 mm). On a curved boundary the
polygon follows the pixel staircase, so it is longer than the smooth outline the pixels
approximate: a digitised disc of radius 50 pixels measures 5.9 % more than ``2 pi r``, one of
radius 10 pixels 9.5 % more. Compare perimeters measured at similar resolution. Every boundary
counts: a ring's perimeter is the sum of its outer and inner boundaries, and separate pieces of
an ROI add up.

*Maximum diameter.* The largest distance in mm between two points of the ROI taken as the union
of its pixel squares (each pixel ``spacing`` wide, centred on its pixel centre), i.e. between two
pixel *corners* (the maximum Feret diameter). A 10 x 10 pixel square at 0.5 mm has maximum
diameter ``5 x sqrt(2) = 7.071`` mm (between pixel centres it would be ``4.5 x sqrt(2)``); a
single pixel has the diameter of its diagonal. Computed on the convex hull of the corners of
each row's first and last ROI pixel, so its cost grows with the ROI's height, not its area.

*Fat fraction* (CT only). The share of the ROI's pixels whose value lies in a Hounsfield window,
both ends included; by default :data:`FAT_WINDOW_HU` = -190 to -30 HU, the window that
body-composition studies use for adipose tissue on CT (Mitsiopoulos et al., J Appl Physiol
1998; Shen et al., J Appl Physiol 2004). The window is a convention, not a property of the
scan: set another when the study protocol says so. Every pixel of a slice has the same area, so
the share of pixels is the share of area.

*Empty ROI.* An ROI absent from the slice has NaN mean, SD, median and fat fraction (there is no
pixel value to average), and perimeter 0.0 and maximum diameter 0.0 (like its area 0.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError

#: Hounsfield window of adipose tissue on CT (low, high), both ends included: the convention of
#: body-composition studies (Mitsiopoulos et al. 1998; Shen et al. 2004).
FAT_WINDOW_HU = (-190.0, -30.0)

#: Intensity measures, in column order; each column name ends in the unit (:func:`intensity_unit`).
INTENSITY_MEASURES = ("mean", "sd", "median")

#: Name of the fat fraction measure (0..1, share of the ROI's pixels within the fat window).
FAT_FRACTION = "fat_fraction"

#: Shape measures, in column order (mm).
SHAPE_MEASURES = ("perimeter_mm", "max_diameter_mm")


def intensity_unit(modality: str | None) -> str:
    """The unit word of intensity column names: ``"hu"`` for CT, ``"signal"`` otherwise.

    Parameters
    ----------
    modality : str or None
        DICOM ``Modality`` (``"CT"``, ``"MR"``, ...); None or ``""`` when not known.

    Examples
    --------
    >>> intensity_unit("CT"), intensity_unit("MR"), intensity_unit(None)
    ('hu', 'signal', 'signal')
    """
    return "hu" if is_ct(modality) else "signal"


def common_modality(modalities) -> str | None:
    """The one DICOM ``Modality`` of several series (upper case), or None when they differ or none is known.

    A table holds one unit per column, so images of several series are measured as CT (``_hu``,
    fat fraction) only when all are CT.

    Examples
    --------
    >>> common_modality(["CT", "ct"]), common_modality(["CT", "MR"]), common_modality([""])
    ('CT', None, None)
    """
    kinds = {str(m or "").strip().upper() for m in modalities}
    if len(kinds) != 1:
        return None
    return kinds.pop() or None


def is_ct(modality: str | None) -> bool:
    """Whether a DICOM ``Modality`` is CT, so pixel values are in HU (case and spaces ignored)."""
    return str(modality or "").strip().upper() == "CT"


def measure_names(unit: str | None = None, *, fat: bool = False, shape: bool = False) -> list[str]:
    """Names of the measures :func:`roi_measures` returns, in its column order.

    Parameters
    ----------
    unit : str or None
        :func:`intensity_unit` of the images; None for no intensity measures.
    fat : bool
        Include :data:`FAT_FRACTION` (needs ``unit="hu"``).
    shape : bool
        Include :data:`SHAPE_MEASURES`.

    Examples
    --------
    >>> measure_names("hu", fat=True, shape=True)
    ['mean_hu', 'sd_hu', 'median_hu', 'fat_fraction', 'perimeter_mm', 'max_diameter_mm']
    >>> measure_names("signal")
    ['mean_signal', 'sd_signal', 'median_signal']
    """
    names = [f"{m}_{unit}" for m in INTENSITY_MEASURES] if unit is not None else []
    if fat:
        names.append(FAT_FRACTION)
    if shape:
        names += list(SHAPE_MEASURES)
    return names


def check_fat_window(window_hu, setting: str = "fat_window_hu") -> tuple[float, float]:
    """A fat window as ``(low, high)`` in HU, checked.

    Parameters
    ----------
    window_hu : (float, float)
        Lowest and highest HU counted as fat, both included.
    setting : str
        The setting named in messages (``"--fat-window"`` on the command line).

    Raises
    ------
    CtsegSettingsError
        If it is not two finite numbers with low < high.

    Examples
    --------
    >>> check_fat_window([-190, -30])
    (-190.0, -30.0)
    """
    try:
        low, high = (float(v) for v in window_hu)
    except (TypeError, ValueError) as exc:
        raise CtsegSettingsError(
            f"{setting} must be two numbers (low, high) in HU, e.g. -190 -30; got {window_hu!r}"
        ) from exc
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise CtsegSettingsError(
            f"{setting} must be two finite numbers in HU with low < high, e.g. -190 -30; got {window_hu!r}"
        )
    return low, high


def roi_intensity(image: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Mean, SD (population, ``ddof=0``) and median of the pixel values inside a mask.

    Parameters
    ----------
    image : ndarray of shape (M, N), any real dtype
        Pixel values (HU for CT, signal for MR).
    mask : ndarray of shape (M, N) and dtype bool (or any; non-zero is inside)

    Returns
    -------
    (float, float, float)
        In the image's unit; all NaN when the mask is empty.

    Raises
    ------
    CtsegDataError
        If the shapes differ.

    Examples
    --------
    >>> image = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> roi_intensity(image, image > 1)
    (3.0, 0.816496580927726, 3.0)
    """
    values = _values(image, mask)
    if not values.size:
        return np.nan, np.nan, np.nan
    return float(values.mean()), float(values.std()), float(np.median(values))


def fat_fraction(image: np.ndarray, mask: np.ndarray, window_hu: Sequence[float] = FAT_WINDOW_HU) -> float:
    """Share of the mask's pixels whose value lies in ``window_hu`` (both ends included).

    Parameters
    ----------
    image : ndarray of shape (M, N)
        CT pixel values in HU.
    mask : ndarray of shape (M, N)
        The ROI; non-zero is inside.
    window_hu : (float, float)
        Lowest and highest HU counted as fat; default :data:`FAT_WINDOW_HU` (-190, -30).

    Returns
    -------
    float
        0..1; NaN when the mask is empty.

    Raises
    ------
    CtsegDataError
        If the shapes differ.
    CtsegSettingsError
        As :func:`check_fat_window`.

    Examples
    --------
    >>> fat_fraction(np.array([[-100.0, 40.0], [-190.0, -30.0]]), np.ones((2, 2), bool))
    0.75
    """
    low, high = check_fat_window(window_hu)
    values = _values(image, mask)
    if not values.size:
        return np.nan
    return float(np.count_nonzero((values >= low) & (values <= high)) / values.size)


def perimeter_mm(mask: np.ndarray, pixel_spacing_mm: Sequence[float]) -> float:
    """Boundary length of a mask in mm, by marching squares (see the module documentation).

    Parameters
    ----------
    mask : ndarray of shape (M, N); non-zero is inside
    pixel_spacing_mm : (float, float)
        Row and column spacing in mm.

    Returns
    -------
    float
        Sum of the lengths of all the mask's boundaries (outer and holes) in mm; 0.0 when empty.

    Raises
    ------
    CtsegDataError
        If ``mask`` is not 2D.
    CtsegSettingsError
        If the spacing is not two positive finite numbers.

    Examples
    --------
    >>> mask = np.zeros((12, 12), bool); mask[1:11, 1:11] = True
    >>> round(perimeter_mm(mask, (0.5, 0.5)), 4)  # 18 + sqrt(2)
    19.4142
    """
    mask = _mask(mask)
    row_mm, col_mm = check_pixel_spacing(pixel_spacing_mm)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not rows.size:
        return 0.0
    padded = np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] != 0, 1).view(np.uint8)
    # marching squares cell by cell: each 2 x 2 cell of pixel centres holds 0, 1 or 2 segments of
    # the contour, whose lengths depend only on which of its corners are inside
    case = padded[:-1, :-1] | (padded[:-1, 1:] << 1) | (padded[1:, :-1] << 2) | (padded[1:, 1:] << 3)
    counts = np.bincount(case.ravel(), minlength=16)
    return float(counts @ _segment_lengths(row_mm, col_mm))


def _segment_lengths(row_mm: float, col_mm: float) -> np.ndarray:
    """Contour length (mm) in a 2 x 2 cell by case: top-left inside 1, top-right 2, bottom-left 4, bottom-right 8."""
    corner = float(np.hypot(row_mm / 2, col_mm / 2))  # a half-pixel diagonal cutting one corner off
    lengths = np.zeros(16)
    lengths[[1, 2, 4, 8, 14, 13, 11, 7]] = corner  # one corner differs from the other three
    lengths[[3, 12]] = col_mm  # top or bottom pair inside: a segment along the row
    lengths[[5, 10]] = row_mm  # left or right pair inside: a segment along the column
    lengths[[6, 9]] = 2 * corner  # diagonal pairs (saddle): two corners cut, whichever way it is resolved
    return lengths


def max_diameter_mm(mask: np.ndarray, pixel_spacing_mm: Sequence[float]) -> float:
    """Largest distance in mm between two pixel corners of a mask (maximum Feret diameter).

    Parameters
    ----------
    mask : ndarray of shape (M, N); non-zero is inside
    pixel_spacing_mm : (float, float)
        Row and column spacing in mm.

    Returns
    -------
    float
        In mm; 0.0 when the mask is empty. Pieces of a mask count together: the diameter of two
        separate blobs spans both.

    Raises
    ------
    CtsegDataError
        If ``mask`` is not 2D.
    CtsegSettingsError
        If the spacing is not two positive finite numbers.

    Examples
    --------
    >>> mask = np.zeros((12, 12), bool); mask[1:11, 1:11] = True
    >>> round(max_diameter_mm(mask, (0.5, 0.5)), 4)  # 5 * sqrt(2)
    7.0711
    """
    mask = _mask(mask)
    row_mm, col_mm = check_pixel_spacing(pixel_spacing_mm)
    rows = np.nonzero(mask.any(axis=1))[0]
    if not rows.size:
        return 0.0
    # the convex hull of the ROI's pixel squares is that of each row's first and last pixel's corners
    inside = mask[rows]
    first = np.argmax(inside, axis=1)
    last = mask.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    r = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    c = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    points = np.column_stack([r * row_mm, c * col_mm])
    hull = points[ConvexHull(points).vertices]
    diff = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((diff**2).sum(axis=-1).max()))


def roi_measures(
    labels: np.ndarray,
    pixel_spacing_mm: Sequence[float],
    num_labels: int,
    *,
    image: np.ndarray | None = None,
    fat_window_hu: Sequence[float] | None = None,
    shape: bool = False,
) -> np.ndarray:
    """Intensity and shape measures of every ROI of one label map.

    Parameters
    ----------
    labels : ndarray of shape (M, N) and integer dtype
        Label map; 0 is background, 1..num_labels the ROIs (values are not checked here: see
        :func:`ctseg_helpers.measure.area.roi_areas_mm2`).
    pixel_spacing_mm : (float, float)
        Row and column spacing in mm.
    num_labels : int
        Number of ROIs.
    image : ndarray of shape (M, N), optional
        The slice's pixel values; gives the intensity measures (mean, SD, median).
    fat_window_hu : (float, float), optional
        Gives the fat fraction in this HU window (needs ``image``, which must be CT in HU).
    shape : bool
        Give the perimeter and maximum diameter.

    Returns
    -------
    ndarray of shape (num_labels, n_measures) and dtype float64
        Row ``k - 1`` for label ``k``; columns in the order of :func:`measure_names` (intensity
        if ``image``, fat fraction if ``fat_window_hu``, shape if ``shape``). Empty ROIs as the
        module documentation says.

    Raises
    ------
    CtsegDataError
        If ``labels`` is not 2D, or ``image`` is not the same size.
    CtsegSettingsError
        If ``fat_window_hu`` is given without ``image``, or as :func:`check_fat_window`; if the
        spacing is not two positive finite numbers.

    Examples
    --------
    >>> labels = np.zeros((4, 4), np.uint8); labels[1:3, 1:3] = 1
    >>> roi_measures(labels, (1.0, 1.0), 2, image=np.full((4, 4), -100.0), fat_window_hu=(-190, -30))
    array([[-100.,    0., -100.,    1.],
           [  nan,   nan,   nan,   nan]])
    """
    labels = _mask(labels, what="a label map")
    spacing = check_pixel_spacing(pixel_spacing_mm)
    if fat_window_hu is not None:
        if image is None:
            raise CtsegSettingsError("fat_window_hu needs the images (pixel values in HU) to measure a fat fraction")
        window = check_fat_window(fat_window_hu)
    if image is not None:
        image = np.asarray(image)
        if image.shape != labels.shape:
            raise CtsegDataError(
                f"the image is {'x'.join(map(str, image.shape))} pixels but its label map is "
                f"{'x'.join(map(str, labels.shape))}: they must be the same slice"
            )
    n_measures = (3 if image is not None else 0) + (fat_window_hu is not None) + (2 if shape else 0)
    out = np.full((num_labels, n_measures), np.nan)
    if shape:
        out[:, n_measures - 2 :] = 0.0
    boxes = ndimage.find_objects(np.asarray(labels, dtype=np.int64) if labels.dtype == bool else labels, num_labels)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # a background margin for the contour
        mask = labels[box] == k
        values = []
        if image is not None:
            values += roi_intensity(image[box], mask)
        if fat_window_hu is not None:
            values.append(fat_fraction(image[box], mask, window))
        if shape:
            values += [perimeter_mm(mask, spacing), max_diameter_mm(mask, spacing)]
        out[k - 1] = values
    return out


def _mask(mask, what: str = "a mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise CtsegDataError(f"{what} must be 2D (M, N), got shape {mask.shape}")
    return mask


def _values(image, mask) -> np.ndarray:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.shape != mask.shape:
        raise CtsegDataError(f"the image has shape {image.shape} but the mask {mask.shape}: they must be the same size")
    return image[mask.astype(bool, copy=False)].astype(np.float64, copy=False)


def check_pixel_spacing(pixel_spacing_mm) -> tuple[float, float]:
    """``(row, col)`` pixel spacing in mm as two floats, checked (areas use it too).

    Raises
    ------
    CtsegSettingsError
        If it is not two positive finite numbers.
    """
    try:
        row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    except (TypeError, ValueError) as exc:
        raise CtsegSettingsError(f"pixel_spacing_mm must be (row, col) in mm, got {pixel_spacing_mm!r}") from exc
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise CtsegSettingsError(f"pixel_spacing_mm must be two positive numbers in mm, got {pixel_spacing_mm!r}")
    return row_mm, col_mm


__all__ = [
    "FAT_FRACTION",
    "FAT_WINDOW_HU",
    "INTENSITY_MEASURES",
    "SHAPE_MEASURES",
    "check_fat_window",
    "check_pixel_spacing",
    "common_modality",
    "fat_fraction",
    "intensity_unit",
    "is_ct",
    "max_diameter_mm",
    "measure_names",
    "perimeter_mm",
    "roi_intensity",
    "roi_measures",
]
