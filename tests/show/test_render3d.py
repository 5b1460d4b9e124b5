"""Marching-cubes surfaces with spacing: exact extents of hand-built volumes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.show import render3d


def _box_volume():
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[1:5, 2:8, 3:9] = 1  # 4 slices x 6 rows x 6 cols
    labels[0:2, 0:2, 0:2] = 2  # touches the volume's edge
    return labels


def test_surface_extent_carries_anisotropic_spacing():
    spacing = (5.0, 0.8, 0.6)
    surfaces = render3d.roi_surfaces(_box_volume(), spacing, ["box", "corner"])
    assert [s.name for s in surfaces] == ["box", "corner"]
    box = surfaces[0]
    low, high = box.vertices_mm.min(axis=0), box.vertices_mm.max(axis=0)
    # level 0.5 lies half a voxel outside the outermost voxel centres
    np.testing.assert_allclose(low, [0.5 * 5.0, 1.5 * 0.8, 2.5 * 0.6], atol=1e-5)
    np.testing.assert_allclose(high, [4.5 * 5.0, 7.5 * 0.8, 8.5 * 0.6], atol=1e-5)
    assert box.step_size == 1 and box.faces.shape[1] == 3
    corner = surfaces[1]
    # padding closes the surface at the array edge: it reaches half a voxel beyond index 0
    np.testing.assert_allclose(corner.vertices_mm.min(axis=0), [-2.5, -0.4, -0.3], atol=1e-5)


def test_a_small_roi_far_from_the_origin_is_meshed_in_place():
    """Only the ROI's bounding box is meshed; vertices stay in the volume's frame (mm)."""
    spacing = np.array([3.0, 0.7, 0.5])
    small = np.zeros((4, 6, 6), np.uint8)
    small[1:3, 2:5, 1:4] = 1
    big = np.zeros((40, 200, 300), np.uint8)
    big[20:24, 100:106, 250:256] = small
    (near,) = render3d.roi_surfaces(small, spacing)
    (far,) = render3d.roi_surfaces(big, spacing)
    assert far.faces.shape == near.faces.shape
    np.testing.assert_allclose(far.vertices_mm, near.vertices_mm + np.array([20, 100, 250]) * spacing, atol=1e-4)
    np.testing.assert_allclose(far.vertices_mm.min(axis=0), (np.array([21, 102, 251]) - 0.5) * spacing, atol=1e-4)


def test_closed_surface_volume_matches_voxel_count_roughly():
    zz, yy, xx = np.mgrid[:20, :20, :20]
    ball = ((zz - 10) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 <= 49).astype(np.uint8)
    (surface,) = render3d.roi_surfaces(ball, (2.0, 1.0, 1.0))
    v = surface.vertices_mm[surface.faces]
    volume = abs(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum()) / 6.0
    assert volume == pytest.approx(ball.sum() * 2.0, rel=0.08)


def test_absent_roi_skipped_and_face_limit():
    labels = np.zeros((4, 30, 30), np.uint8)
    labels[:, 5:25, 5:25] = 2
    surfaces = render3d.roi_surfaces(labels, 1.0, ["missing", "square"], max_faces=300)
    assert [s.label for s in surfaces] == [2]
    assert len(surfaces[0].faces) <= 300 and surfaces[0].step_size > 1


def test_render_figure_one_panel_per_roi_or_together():
    fig = render3d.render_volume(_box_volume(), (5.0, 0.8, 0.6), ["box", "corner"])
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["box", "corner"]
    assert all(len(ax.collections) == 1 for ax in fig.axes)
    assert fig.axes[0].get_zlabel() == "z: slices (mm)"
    # each panel is zoomed on its ROI, in mm
    np.testing.assert_allclose(fig.axes[0].get_xlim(), (2.5 * 0.6, 8.5 * 0.6), atol=1e-5)
    np.testing.assert_allclose(fig.axes[1].get_xlim(), (-0.3, 1.5 * 0.6), atol=1e-5)
    together = render3d.render_volume(_box_volume(), (5.0, 0.8, 0.6), ["box", "corner"], separate=False)
    ax = together.axes[0]
    assert len(together.axes) == 1 and len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["box", "corner"]
    empty = render3d.render_surfaces([])
    assert "no ROI" in empty.axes[0].texts[0].get_text()


def test_render_case_checks_volume():
    labels = _box_volume()
    volume_case = SimpleNamespace(
        prediction=labels, truth=None, label_names=("box", "corner"), volume_spacing_mm=lambda: (5.0, 0.8, 0.6)
    )
    assert isinstance(render3d.render_case(volume_case), Figure)
    with pytest.raises(CtsegDataError, match="no truth label maps to render"):
        render3d.render_case(volume_case, source="truth")
    with pytest.raises(CtsegDataError, match="source must be 'prediction' or 'truth'"):
        render3d.render_case(volume_case, source="both")


def test_errors():
    with pytest.raises(CtsegDataError, match="at least 2 slices"):
        render3d.roi_surfaces(np.ones((1, 4, 4)), 1.0)
    with pytest.raises(CtsegDataError, match="at least 2 slices"):
        render3d.roi_surfaces(np.ones((4, 4)), 1.0)
    with pytest.raises(CtsegDataError, match=r"three positive numbers \(slice, row, col\)"):
        render3d.roi_surfaces(np.ones((2, 4, 4)), (1.0, 1.0))
    with pytest.raises(CtsegDataError, match="three positive numbers"):
        render3d.roi_surfaces(np.ones((2, 4, 4)), (1.0, 0.0, 1.0))
