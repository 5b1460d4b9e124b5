"""3D surface rendering of segmented ROIs (marching cubes), for stacks that form a volume.

Surfaces are extracted with :func:`skimage.measure.marching_cubes` at level 0.5 of each ROI's
binary mask, with the voxel spacing in mm, so the rendering has true proportions (slices are
often much further apart than pixels). The mask is padded by one background voxel on every
side so that surfaces touching the stack's first or last slice are closed. Surfaces are drawn
with matplotlib's ``Poly3DCollection``; that is slow above some 10⁵ triangles, so the marching
step grows until each surface has at most ``max_faces`` triangles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from numbers import Real

import numpy as np
from matplotlib.figure import Figure

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.show.colors import label_color

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surface:
    """A triangle mesh of one ROI.

    Attributes
    ----------
    label : int
        ROI label value.
    name : str
    vertices_mm : ndarray of shape (V, 3) and dtype float32
        Vertex coordinates in mm along the array axes (slice, row, col), origin at the centre
        of voxel (0, 0, 0).
    faces : ndarray of shape (F, 3) and integer dtype
        Vertex indices of each triangle.
    step_size : int
        Marching-cubes step used (1 = full resolution).
    """

    label: int
    name: str
    vertices_mm: np.ndarray
    faces: np.ndarray
    step_size: int


def _check_volume(labels, spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] < 2:
        raise CtsegDataError(
            f"a 3D rendering needs a volume of shape (slices, rows, cols) with at least 2 slices, got "
            f"shape {labels.shape}"
        )
    spacing = np.full(3, float(spacing_mm)) if isinstance(spacing_mm, Real) else np.asarray(spacing_mm, float).ravel()
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CtsegDataError(f"spacing_mm must be three positive numbers (slice, row, col) in mm, got {spacing_mm!r}")
    return labels, spacing


def roi_surfaces(labels, spacing_mm, label_names=None, max_faces: int = 20_000) -> list[Surface]:
    """Marching-cubes surface of every ROI present in a label volume.

    Parameters
    ----------
    labels : ndarray of shape (K, M, N) and integer dtype
        Label volume, K >= 2 equally spaced slices; 0 is background.
    spacing_mm : float or (float, float, float)
        (slice, row, col) voxel spacing in mm.
    label_names : sequence of str, optional
        Names, label 1 first; default ``ROI 1`` ...
    max_faces : int
        Largest number of triangles per surface; the marching step is increased until the
        surface fits (coarser mesh).

    Returns
    -------
    list of Surface
        One per ROI value present, label order; absent ROIs are skipped (logged).

    Raises
    ------
    CtsegDataError
        If the volume has fewer than 2 slices, is not 3D, or the spacing is not 3 positive
        numbers.
    """
    from skimage.measure import marching_cubes  # noqa: PLC0415

    labels, spacing = _check_volume(labels, spacing_mm)
    top = int(labels.max()) if labels.size else 0
    names = list(label_names) if label_names is not None else [f"ROI {v}" for v in range(1, top + 1)]
    surfaces = []
    for value in range(1, max(top, len(names)) + 1):
        name = names[value - 1] if value - 1 < len(names) else f"ROI {value}"
        mask = labels == value
        if not mask.any():
            logger.info("ROI %s is absent from the volume; no surface", name)
            continue
        # only the ROI's bounding box (plus one voxel of padding that closes the surface at the
        # array's edge) is meshed: a float32 copy of the whole scan per ROI would not fit for a large CT
        low = np.array([np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[[0, -1]] for a in range(3)])
        box = mask[tuple(slice(lo, hi + 1) for lo, hi in low)]
        padded = np.pad(box, 1).astype(np.float32)
        del mask
        step = 1
        while True:
            vertices, faces, _normals, _values = marching_cubes(
                padded, level=0.5, spacing=tuple(spacing), step_size=step, allow_degenerate=False
            )
            if len(faces) <= max_faces or step >= max(box.shape):
                break
            step += 1
        # back to the volume's frame: the box's first voxel, less the padding voxel
        vertices = (vertices + (low[:, 0] - 1) * spacing).astype(np.float32)
        surfaces.append(Surface(value, name, vertices, faces, step))
    return surfaces


def render_surfaces(
    surfaces: list[Surface],
    title: str = "3D surfaces",
    separate: bool = True,
    alpha: float = 0.6,
    elev: float = 25.0,
    azim: float = -60.0,
    columns: int = 3,
) -> Figure:
    """Draw ROI surfaces with true proportions.

    Parameters
    ----------
    surfaces : list of Surface
        From :func:`roi_surfaces`.
    title : str
    separate : bool
        One 3D panel per ROI (default; nested ROIs stay visible), each zoomed on its ROI, or
        all ROIs in one panel. Every panel keeps true proportions; the axes are in mm.
    alpha : float
        Surface opacity, 0..1.
    elev, azim : float
        View angles in degrees.
    columns : int
        Panels per row when ``separate``.

    Returns
    -------
    Figure
        x = column direction, y = row direction, z = slice direction, all in mm. With no
        surface, the figure says "no ROI in the volume".
    """
    from matplotlib.patches import Patch  # noqa: PLC0415
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: PLC0415

    if not surfaces:
        figure = Figure(figsize=(6, 5), layout="constrained")
        ax = figure.add_subplot(projection="3d")
        ax.text2D(0.5, 0.5, "no ROI in the volume", ha="center", transform=ax.transAxes)
        ax.set_title(title)
        return figure
    groups = [[s] for s in surfaces] if separate else [surfaces]
    columns = max(1, min(int(columns), len(groups)))
    rows = int(np.ceil(len(groups) / columns))
    figure = Figure(figsize=(4.6 * columns, 4.3 * rows + 0.4), layout="constrained")
    for index, group in enumerate(groups):
        ax = figure.add_subplot(rows, columns, index + 1, projection="3d")
        xyz_all = [s.vertices_mm[:, [2, 1, 0]] for s in group]  # (col, row, slice) -> x, y, z
        low = np.min([xyz.min(axis=0) for xyz in xyz_all], axis=0)
        high = np.max([xyz.max(axis=0) for xyz in xyz_all], axis=0)
        extent = np.maximum(high - low, 1e-3)
        handles = []
        for surface in group:
            xyz = surface.vertices_mm[:, [2, 1, 0]]
            mesh = Poly3DCollection(xyz[surface.faces], alpha=alpha, linewidths=0)
            colour = label_color(surface.label)
            mesh.set_facecolor(colour)
            mesh.set_edgecolor("none")
            ax.add_collection3d(mesh)
            handles.append(Patch(color=colour, label=surface.name))
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(high[1], low[1])  # rows grow downwards in the image
        ax.set_zlim(low[2], high[2])
        ax.set_box_aspect(tuple(extent))
        ax.set_xlabel("x: columns (mm)", fontsize=8)
        ax.set_ylabel("y: rows (mm)", fontsize=8)
        ax.set_zlabel("z: slices (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.view_init(elev=elev, azim=azim)
        if separate:
            ax.set_title(group[0].name)
        else:
            ax.legend(handles=handles, loc="upper left", fontsize=8)
    figure.suptitle(title)
    return figure


def render_volume(labels, spacing_mm, label_names=None, max_faces: int = 20_000, **kwargs) -> Figure:
    """:func:`roi_surfaces` and :func:`render_surfaces` in one call.

    Raises
    ------
    CtsegDataError
        As :func:`roi_surfaces`.
    """
    surfaces = roi_surfaces(labels, spacing_mm, label_names, max_faces)
    return render_surfaces(surfaces, **kwargs)


def render_case(case, source: str = "prediction", max_faces: int = 20_000, separate: bool = True) -> Figure:
    """3D surfaces of a :class:`ctseg_helpers.measure.evaluation.Case`'s prediction or truth.

    Parameters
    ----------
    case : Case
    source : {"prediction", "truth"}
    max_faces : int
        As :func:`roi_surfaces`.
    separate : bool
        As :func:`render_surfaces`.

    Raises
    ------
    CtsegDataError
        If the slices do not form a volume (the message says why), ``source`` is unknown or the
        case has no label maps of that source.
    """
    if source not in ("prediction", "truth"):
        raise CtsegDataError(f"source must be 'prediction' or 'truth', got {source!r}")
    labels = case.prediction if source == "prediction" else case.truth
    if labels is None:
        raise CtsegDataError(f"the case has no {source} label maps to render")
    spacing = case.volume_spacing_mm()
    return render_volume(
        labels,
        spacing,
        case.label_names,
        max_faces,
        separate=separate,
        title=f"3D surfaces ({source}), voxel {spacing[0]:.3g} x {spacing[1]:.3g} x {spacing[2]:.3g} mm",
    )


__all__ = ["Surface", "roi_surfaces", "render_surfaces", "render_volume", "render_case"]
