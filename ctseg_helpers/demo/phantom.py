"""A synthetic lumbar CT phantom, written as real DICOM with label images.

The phantom imitates an axial CT cross-section at the level of the lumbar spine (L2-L4), the
slice body-composition studies measure. Every slice holds air, a CT table, skin, subcutaneous
fat, the abdominal wall, visceral fat with bowel loops (soft-tissue walls, fluid or gas), the
aorta and vena cava, kidneys on the upper slices, the vertebral body (cortical rim and
trabecular bone), the posterior arch around the spinal canal, the psoas, quadratus lumborum and
the multifidus-erector spinae muscles. Six of these are labelled, as in the manual's example
table (:data:`PHANTOM_LABELS`):

=====  ==================================
value  ROI
=====  ==================================
1      vertebral body
2      right psoas major
3      left psoas major
4      right multifidus-erector spinae
5      left multifidus-erector spinae
6      subcutaneous fat (skin to the muscle wall)
=====  ==================================

Images follow the DICOM patient coordinate convention: the image's left side is the patient's
right, the top is anterior. Unlabelled muscles (abdominal wall, quadratus lumborum) have the
same density as the labelled ones, so a network has to learn shape and position, not a
threshold. Each patient (one DICOM series) has its own body habitus, pixel spacing and
position on the table; within a patient the anatomy changes smoothly from slice to slice
(the psoas grows towards the pelvis, the kidneys end), and every slice gets its own jitter in
shape, position, density, partial-volume blur and correlated noise. Everything derives from one
``numpy.random.Generator`` seeded by the caller, so a seed always gives the same pixels and
labels (the DICOM UIDs are fresh on every run, as they must be).

Labels are drawn on the same pixel grid as the image, so the area of every ROI on every slice
is known exactly: pixel count x row spacing x column spacing. :func:`make_phantom_dataset`
writes these areas next to the labels (``true_areas.csv``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.dicom_write import write_dicom_series
from ctseg_helpers.measure.area import area_table

logger = logging.getLogger(__name__)

#: ROI names for label values 1..6, the example table of the user manual.
PHANTOM_LABELS: tuple[str, ...] = (
    "vertebral body",
    "right psoas major",
    "left psoas major",
    "right multifidus-erector spinae",
    "left multifidus-erector spinae",
    "subcutaneous fat",
)

#: File that marks a folder as a phantom written by ctseg (and records how it was made).
PHANTOM_INFO = "phantom.json"
#: Name of the exact-area table in each split folder.
TRUE_AREAS = "true_areas.csv"

_SLICE_THICKNESS_MM = 5.0
_HU_MIN, _HU_MAX = -1024.0, 3071.0


@dataclass(frozen=True)
class PhantomSlice:
    """One synthetic CT slice with its labels.

    Attributes
    ----------
    hu : ndarray of shape (size, size) and dtype float32
        Hounsfield units, rounded to integers (the values the DICOM file stores).
    labels : ndarray of shape (size, size) and dtype uint8
        0 background, 1..6 the ROIs of :data:`PHANTOM_LABELS`.
    pixel_spacing_mm : float
        Row and column spacing (square pixels), in mm.
    """

    hu: np.ndarray
    labels: np.ndarray
    pixel_spacing_mm: float

    def areas_mm2(self) -> np.ndarray:
        """Exact area of ROIs 1..6 in mm², shape (6,), float64."""
        counts = np.bincount(self.labels.ravel(), minlength=len(PHANTOM_LABELS) + 1)
        return counts[1 : len(PHANTOM_LABELS) + 1].astype(np.float64) * self.pixel_spacing_mm**2


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _patient(rng: np.random.Generator) -> dict:
    """Body habitus of one synthetic patient (all lengths in mm, densities in HU)."""
    body_a = _uniform(rng, 135, 170)  # half width
    body_b = _uniform(rng, 95, 120)  # half depth
    return {
        "body_a": body_a,
        "body_b": body_b,
        "body_p": _uniform(rng, 2.2, 3.0),  # superellipse exponent (2 = ellipse)
        "fat_ant": _uniform(rng, 10, 38),
        "fat_lat": _uniform(rng, 8, 30),
        "fat_post": _uniform(rng, 8, 26),
        "wall_mm": _uniform(rng, 7, 12),
        "vb_rx": _uniform(rng, 20, 26),
        "vb_ry": _uniform(rng, 14, 18),
        "canal_r": _uniform(rng, 7, 9.5),
        "psoas_rx0": _uniform(rng, 8, 12),
        "psoas_grow": _uniform(rng, 5, 9),
        "psoas_ry": _uniform(rng, 13, 19),
        "es_rx": _uniform(rng, 23, 30),
        "es_ry": _uniform(rng, 19, 25),
        "shift_mm": rng.uniform(-12, 12, size=2),
        "angle_deg": _uniform(rng, -6, 6),
        "fat_hu": _uniform(rng, -115, -85),
        "muscle_hu": _uniform(rng, 35, 55),
        "trabecular_hu": _uniform(rng, 140, 260),
        "cortical_hu": _uniform(rng, 650, 950),
        "n_bowel": int(rng.integers(6, 12)),
        "z0_mm": round(_uniform(rng, -180, -120), 1),
        "fov_margin": _uniform(rng, 1.15, 1.3),
    }


def _ellipse(
    u: np.ndarray, v: np.ndarray, cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0
) -> np.ndarray:
    """Boolean mask of a (rotated) ellipse evaluated at body coordinates (u, v) in mm."""
    t = math.radians(angle_deg)
    du, dv = u - cx, v - cy
    a = (du * math.cos(t) + dv * math.sin(t)) / rx
    b = (-du * math.sin(t) + dv * math.cos(t)) / ry
    return a * a + b * b <= 1.0


def _superellipse(u, v, a, b, p):
    return np.abs(u / a) ** p + np.abs(v / b) ** p <= 1.0


def _slice(rng: np.random.Generator, pat: dict, level: float, size: int, spacing_mm: float) -> PhantomSlice:
    """Draw one slice; ``level`` runs from 0 (upper lumbar) to 1 (lower lumbar)."""
    jit = lambda s: 1.0 + rng.uniform(-s, s)  # noqa: E731 - tiny local helper
    half = (size - 1) / 2.0
    coords = (np.arange(size) - half) * spacing_mm
    y, x = np.meshgrid(coords, coords, indexing="ij")  # x to image right, y down (posterior)
    shift = pat["shift_mm"] + rng.uniform(-4, 4, size=2)
    angle = math.radians(pat["angle_deg"] + rng.uniform(-3, 3))
    xs, ys = x - shift[0], y - shift[1]
    u = xs * math.cos(angle) + ys * math.sin(angle)  # body coordinates
    v = -xs * math.sin(angle) + ys * math.cos(angle)

    a, b, p = pat["body_a"] * jit(0.03), pat["body_b"] * jit(0.03), pat["body_p"]
    body = _superellipse(u, v, a, b, p)
    inside_skin = _superellipse(u, v, a - 2.0, b - 2.0, p)
    # Fat thickness varies around the body: anterior, lateral, posterior.
    theta = np.arctan2(v, u)
    ant, lat, post = (pat[k] * jit(0.08) for k in ("fat_ant", "fat_lat", "fat_post"))
    sin_t = np.sin(theta)
    fat_t = lat + np.where(sin_t < 0, (ant - lat) * sin_t**2, (post - lat) * sin_t**2)
    depth = ndimage.distance_transform_edt(inside_skin) * spacing_mm  # mm below the skin
    inner = inside_skin & (depth > fat_t)  # inside the subcutaneous fat layer
    cavity = inner & (depth > fat_t + pat["wall_mm"] * jit(0.1))

    # Spine, placed from the posterior inner wall.
    v_back = b - post - 2.0
    es_rx, es_ry = pat["es_rx"] * jit(0.06), pat["es_ry"] * jit(0.06)
    es_cy = v_back - es_ry * 0.9
    canal_r = pat["canal_r"] * jit(0.05)
    canal_cy = es_cy - es_ry * 0.55 - canal_r
    vb_rx, vb_ry = pat["vb_rx"] * jit(0.05), pat["vb_ry"] * jit(0.05)
    vb_cy = canal_cy - canal_r - 3.0 - vb_ry
    canal = _ellipse(u, v, 0.0, canal_cy, canal_r, canal_r * 0.85)
    arch = _ellipse(u, v, 0.0, canal_cy + 1.0, canal_r + 4.5, canal_r + 3.5) & ~canal
    spinous = (np.abs(u) < 3.0 * jit(0.1)) & (v > canal_cy) & (v < v_back - 4.0)
    transverse = (np.abs(v - canal_cy + 2.0) < 2.5) & (np.abs(u) < vb_rx + 12.0 - 6.0 * level)
    vb = _ellipse(u, v, 0.0, vb_cy, vb_rx, vb_ry) & ~_ellipse(
        u, v, 0.0, vb_cy + vb_ry + canal_r * 0.6, canal_r * 1.4, canal_r
    )
    vb_inner = ndimage.binary_erosion(vb, iterations=max(1, round(2.5 / spacing_mm)))
    posterior_bone = (arch | spinous | transverse) & ~vb & ~canal

    # Muscles.
    ps_rx = (pat["psoas_rx0"] + pat["psoas_grow"] * level) * jit(0.08)
    ps_ry = pat["psoas_ry"] * jit(0.06)
    ps_cx = vb_rx + ps_rx * 0.75 + 1.0
    ps_cy = vb_cy + rng.uniform(-2, 4)
    ps_angle = 25.0 + rng.uniform(-8, 8)
    psoas_r = _ellipse(u, v, -ps_cx, ps_cy, ps_rx, ps_ry, ps_angle)
    psoas_l = _ellipse(u, v, ps_cx, ps_cy, ps_rx, ps_ry, -ps_angle)
    es_cx = es_rx * 0.95 + 3.0
    es_r = _ellipse(u, v, -es_cx, es_cy, es_rx, es_ry, -8.0) & inner
    es_l = _ellipse(u, v, es_cx, es_cy, es_rx, es_ry, 8.0) & inner
    ql_cx = es_cx + es_rx * 0.8 + 10.0
    ql_cy = es_cy - es_ry * 0.6
    ql = _ellipse(u, v, -ql_cx, ql_cy, 14.0, 9.0, 30.0) | _ellipse(u, v, ql_cx, ql_cy, 14.0, 9.0, -30.0)

    # Organs in the visceral cavity.
    aorta = _ellipse(u, v, 8.0, vb_cy - vb_ry - 12.0, 10.0 * jit(0.1), 10.0 * jit(0.1))
    ivc = _ellipse(u, v, -18.0, vb_cy - vb_ry - 10.0, 12.0 * jit(0.1), 8.0 * jit(0.1))
    kidney_r = max(0.0, 1.0 - 1.6 * level)  # kidneys fade out towards the lower slices
    kidneys = np.zeros_like(body)
    if kidney_r > 0.15:
        kx, ky = ps_cx + ps_rx + 28.0, ps_cy - 4.0
        kidneys = _ellipse(u, v, -kx, ky, 26.0 * kidney_r + 4, 18.0 * kidney_r + 3, 40.0) | _ellipse(
            u, v, kx, ky, 26.0 * kidney_r + 4, 18.0 * kidney_r + 3, -40.0
        )

    hu = np.full((size, size), -1000.0)
    # CT table below the patient.
    table_top = shift[1] + b + 12.0
    table = (y > table_top) & (y < table_top + 10.0) & (np.abs(x - shift[0]) < 0.8 * a + 40.0)
    hu[table] = -350.0
    hu[body] = 30.0  # skin
    muscle_hu = pat["muscle_hu"] + rng.uniform(-6, 6)
    fat_hu = pat["fat_hu"] + rng.uniform(-8, 8)
    hu[inside_skin] = fat_hu
    hu[inner] = muscle_hu  # abdominal wall (unlabelled muscle)
    hu[cavity] = fat_hu + 10.0  # visceral fat
    # Bowel loops: soft-tissue walls with fluid or gas.
    for _ in range(pat["n_bowel"]):
        r = rng.uniform(7, 18)
        ang = rng.uniform(-math.pi, 0.15 * math.pi)  # mostly anterior and lateral
        rad = rng.uniform(0.25, 0.75)
        cx, cy = rad * (a - ant - 20) * math.cos(ang), rad * (b - ant - 20) * math.sin(ang) - 10
        loop = _ellipse(u, v, cx, cy, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 180)) & cavity
        hu[loop] = 35.0
        lumen = _ellipse(u, v, cx, cy, r - 2.5, (r - 2.5) * 0.8) & loop
        hu[lumen] = -850.0 if rng.random() < 0.5 else rng.uniform(5, 25)
    hu[kidneys & cavity] = 30.0
    hu[(aorta | ivc) & cavity] = 40.0
    hu[(psoas_r | psoas_l | ql) & inner] = muscle_hu
    hu[es_r | es_l] = muscle_hu - 4.0
    hu[posterior_bone] = pat["cortical_hu"] * 0.8
    hu[canal] = 15.0
    hu[vb] = pat["cortical_hu"] * jit(0.1)
    trab = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 1.0)
    hu[vb_inner] = pat["trabecular_hu"] * jit(0.15) + 60.0 * trab[vb_inner]

    # Labels: each ROI where its tissue is drawn; bone and the canal drawn over a muscle are not muscle.
    not_bone = ~(posterior_bone | canal | vb)
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[body & ~inner] = 6  # skin included: at CT resolution it is part of the fat's outer edge
    labels[es_r & not_bone] = 4
    labels[es_l & not_bone] = 5
    labels[psoas_r & inner & not_bone] = 2
    labels[psoas_l & inner & not_bone] = 3
    labels[vb] = 1
    # A psoas drawn over the kidney or a vessel shows muscle wherever it is labelled.
    hu[(labels == 2) | (labels == 3)] = muscle_hu

    # Scanner: partial-volume blur, correlated noise, then integer HU as stored.
    hu = ndimage.gaussian_filter(hu, 0.5 + rng.uniform(0, 0.3))
    sigma = rng.uniform(10, 25)
    noise = rng.normal(0.0, sigma, (size, size)) + ndimage.gaussian_filter(
        rng.normal(0.0, 2.5 * sigma, (size, size)), 1.2
    )
    hu = np.clip(np.round(hu + noise), _HU_MIN, _HU_MAX).astype(np.float32)
    return PhantomSlice(hu=hu, labels=labels, pixel_spacing_mm=spacing_mm)


def phantom_series(n_slices: int, *, size: int = 128, seed: int | np.random.Generator = 0):
    """Draw the slices of one synthetic patient.

    Parameters
    ----------
    n_slices : int
        Number of contiguous axial slices (5 mm apart, upper to lower lumbar).
    size : int
        Rows and columns of each slice, at least 32.
    seed : int or numpy.random.Generator

    Returns
    -------
    slices : list of PhantomSlice
        All with the same pixel spacing (the patient's field of view / ``size``).
    info : dict
        The patient's parameters (mm, HU) and ``pixel_spacing_mm``.

    Raises
    ------
    CtsegSettingsError
        If ``n_slices`` < 1 or ``size`` < 32.
    """
    if n_slices < 1:
        raise CtsegSettingsError(f"a phantom series needs at least 1 slice, got n_slices={n_slices}")
    if size < 32:
        raise CtsegSettingsError(f"phantom slices need at least 32 x 32 pixels, got size={size}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pat = _patient(rng)
    # Spacing rounded to 1/10000 mm, so the PixelSpacing written to the file is exact.
    spacing_mm = round(2.0 * pat["body_a"] * pat["fov_margin"] / size, 4)
    levels = np.linspace(0.0, 1.0, n_slices) if n_slices > 1 else np.array([0.5])
    slices = [_slice(rng, pat, float(level), size, spacing_mm) for level in levels]
    info = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in pat.items()}
    info["pixel_spacing_mm"] = spacing_mm
    return slices, info


def make_phantom_dataset(
    out_dir: str | Path,
    *,
    n_train: int = 48,
    n_test: int = 12,
    size: int = 128,
    seed: int = 0,
    slices_per_patient: int = 8,
) -> dict:
    """Write a synthetic lumbar CT dataset in the training layout, with exact areas.

    Layout (same file stem for image and label)::

        <out_dir>/phantom.json                 how it was made, label names, spacing
        <out_dir>/train/dicoms/<name>.dcm      CT Image Storage, HU via RescaleIntercept
        <out_dir>/train/labels/<name>.png      uint8, 0 background, 1..6 (PHANTOM_LABELS)
        <out_dir>/train/true_areas.csv         exact area of every ROI on every slice (mm²), in
                                               the shape of the segmentation's area table
        <out_dir>/test/dicoms/... test/labels/... test/true_areas.csv

    The training slices come from several synthetic patients (one DICOM series each, named
    ``phantom_p01_0001`` ...), so validation can be split by patient; the test folder holds one
    further patient as a single series of contiguous slices (``phantom_test_0001`` ...),
    the kind of folder a user selects for segmentation.

    Parameters
    ----------
    out_dir : path
        Folder to create. It must not exist or be empty: nothing is ever overwritten.
    n_train, n_test : int
        Number of training and test slices (n_train >= 1, n_test >= 1).
    size : int
        Rows and columns of every slice (>= 32); the pixel spacing follows from each
        patient's field of view (about 2.5-3.5 mm at 128 pixels).
    seed : int
        Same seed, same pixels, labels and areas.
    slices_per_patient : int
        Training slices per synthetic patient (the last patient may have fewer).

    Returns
    -------
    dict
        The content of ``phantom.json``: settings, label names, and per series the file
        stems and pixel spacing.

    Raises
    ------
    CtsegDataError
        If ``out_dir`` exists and is not empty, or is a file.
    CtsegSettingsError
        If a count or the size is out of range.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CtsegDataError(
            f"{out_dir} exists and is not empty; the phantom never overwrites data: "
            "choose a new folder or move that one away"
        )
    if n_train < 1 or n_test < 1:
        raise CtsegSettingsError(
            f"the phantom needs at least 1 training and 1 test slice, got n_train={n_train}, n_test={n_test}"
        )
    if slices_per_patient < 1:
        raise CtsegSettingsError(f"slices_per_patient must be at least 1, got {slices_per_patient}")
    if size < 32:
        raise CtsegSettingsError(f"phantom slices need at least 32 x 32 pixels, got size={size}")
    rng = np.random.default_rng(seed)
    counts = [slices_per_patient] * (n_train // slices_per_patient)
    if n_train % slices_per_patient:
        counts.append(n_train % slices_per_patient)
    plan = [("train", f"phantom_p{i + 1:02d}", n) for i, n in enumerate(counts)]
    plan.append(("test", "phantom_test", n_test))

    info = {
        "generator": "ctseg_helpers.demo.phantom.make_phantom_dataset",
        "seed": seed,
        "size": size,
        "n_train": n_train,
        "n_test": n_test,
        "slices_per_patient": slices_per_patient,
        "modality": "CT",
        "slice_thickness_mm": _SLICE_THICKNESS_MM,
        "label_names": list(PHANTOM_LABELS),
        "series": [],
    }
    tables: dict[str, dict[str, list]] = {
        split: {"labels": [], "spacing": [], "files": [], "positions": []} for split in ("train", "test")
    }
    for split, prefix, n in plan:
        slices, patient = phantom_series(n, size=size, seed=rng)
        names = [f"{prefix}_{k + 1:04d}" for k in range(n)]
        spacing = patient["pixel_spacing_mm"]
        origin = (-(size - 1) / 2.0 * spacing, -(size - 1) / 2.0 * spacing, patient["z0_mm"])
        paths = write_dicom_series(
            out_dir / split / "dicoms",
            np.stack([s.hu for s in slices]),
            pixel_spacing_mm=(spacing, spacing),
            slice_thickness_mm=_SLICE_THICKNESS_MM,
            modality="CT",
            names=names,
            origin_mm=origin,
            series_description=f"ctseg lumbar phantom {prefix}",
            patient_id=prefix.upper(),
        )
        _write_labels(out_dir / split / "labels", names, [s.labels for s in slices])
        table = tables[split]
        table["labels"] += [s.labels for s in slices]
        table["spacing"] += [(spacing, spacing)] * n
        table["files"] += paths
        table["positions"] += [origin[2] + k * _SLICE_THICKNESS_MM for k in range(n)]
        info["series"].append(
            {
                "split": split,
                "prefix": prefix,
                "n_slices": n,
                "pixel_spacing_mm": spacing,
                "files": [p.name for p in paths],
            }
        )
        logger.info("phantom: wrote %d %s slices of %s (%.4f mm pixels)", n, split, prefix, spacing)
    for split, t in tables.items():
        area_table(
            t["labels"], np.array(t["spacing"]), PHANTOM_LABELS, files=t["files"], positions_mm=t["positions"]
        ).to_csv(out_dir / split / TRUE_AREAS)
    (out_dir / PHANTOM_INFO).write_text(json.dumps(info, indent=2))
    return info


def read_true_areas(split_dir: str | Path) -> pd.DataFrame:
    """Read ``<split_dir>/true_areas.csv`` (per-slice rows only, indexed by file name).

    Raises
    ------
    CtsegDataError
        If the file does not exist (the folder is not a ctseg phantom).
    """
    path = Path(split_dir) / TRUE_AREAS
    if not path.is_file():
        raise CtsegDataError(f"{path} not found: known areas exist only for a phantom made by ctseg")
    df = pd.read_csv(path, index_col=0)
    df = df[df.index.str.startswith("slice number")]
    return df.set_index("file")


def _write_labels(folder: Path, names: list[str], labels: list[np.ndarray]) -> None:
    from PIL import Image  # noqa: PLC0415 - only needed here

    folder.mkdir(parents=True, exist_ok=True)
    for name, lab in zip(names, labels, strict=True):
        path = folder / f"{name}.png"
        if path.exists():  # write_dicom_series already refuses; labels follow the same rule
            raise CtsegDataError(f"{path} exists already; the phantom never overwrites data")
        Image.fromarray(np.ascontiguousarray(lab, dtype=np.uint8)).save(path)


__all__ = [
    "PHANTOM_INFO",
    "PHANTOM_LABELS",
    "TRUE_AREAS",
    "PhantomSlice",
    "make_phantom_dataset",
    "phantom_series",
    "read_true_areas",
]
