"""segment_volume: slabs along each axis, vote/mean, crop, rotation, resume, disk check."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import ctseg_helpers.workflows.volume as volume_mod
from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.datafile import DataFile
from ctseg_helpers.io.written import written_by_ctseg
from ctseg_helpers.segment.segmenter import Segmenter
from ctseg_helpers.workflows.volume import (
    parse_axes,
    parse_crop,
    resolve_crop,
    segment_volume,
    slab_ranges_todo,
    slab_thickness,
)
from tests.segment.test_blocks import THRESHOLD, make_segmenter, threshold_fn


def left_half_fn(batch):
    """Class 1 (p = 230/255) in the left half of each patch's columns, else p(class 1) = 51/255."""
    size = batch.shape[2]
    p = np.where(np.arange(size) < size // 2, 230 / 255, 51 / 255).astype(np.float32)
    p = np.broadcast_to(p, batch.shape[:3])
    return np.stack([1 - p, p], axis=-1)


class FailingFn:
    """Counts calls and raises on call number ``fail_on`` (1-based), to interrupt a run."""

    def __init__(self, fn, fail_on=None):
        self.fn, self.fail_on, self.calls = fn, fail_on, 0

    def __call__(self, batch):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RuntimeError("injected failure")
        return self.fn(batch)


@pytest.fixture
def random_volume(tmp_path):
    vol = np.random.default_rng(0).integers(0, 100, (20, 24, 28)).astype(np.int16)
    path = tmp_path / "in.h5"
    with DataFile.create(path, vol.shape, vol.dtype, chunk_shape=(8, 8, 8), compression="gzip") as out:
        out.write_block((0, 0, 0), vol)
    return path, vol


@pytest.fixture
def cube(tmp_path):
    """A 16^3 volume: with input_shape 16 every slice is exactly one patch."""
    path = tmp_path / "cube.h5"
    with DataFile.create(path, (16, 16, 16), np.float32) as out:
        out.write_block((0, 0, 0), np.zeros((16, 16, 16), np.float32))
    return path


def read_labels(path, name="labels"):
    with h5py.File(path, "r") as f:
        return f[name][:]


# half for slabs (3 bytes per voxel: int16 input, uint8 labels; 21 with probabilities kept), half
# for the segmenter (28 bytes per pixel with 2 classes): several slabs per axis, one slice at a time
SMALL_GB = 60e3 / 1e9


# ------------------------------------------------------------------ exact results
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_each_axis_gives_the_exact_threshold(random_volume, tmp_path, axis):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    result = segment_volume(make_segmenter(threshold_fn), path, out, axes=(axis,), max_gb=SMALL_GB, progress=False)
    assert result.complete and result.slabs_done > 1
    labels = read_labels(out)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, (vol > THRESHOLD).astype(np.uint8))


def test_slabs_follow_the_memory_cap(random_volume, tmp_path):
    path, _ = random_volume
    per_voxel = 2 + 1  # int16 input, uint8 labels
    cap = 2 * 10 * 24 * 28 * per_voxel / 1e9  # half of it holds 10 slices along axis 0
    result = segment_volume(make_segmenter(threshold_fn), path, tmp_path / "o.h5", max_gb=cap, progress=False)
    assert result.slabs_done == 3  # 10 rounded down to the chunk side 8: 0-8, 8-16, 16-20


def test_three_axis_vote_is_the_majority(cube, tmp_path):
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(left_half_fn), cube, out, axes=(0, 1, 2), progress=False)
    z, y, x = np.indices((16, 16, 16))
    # slices along axes 0 and 1 have x as columns, slices along axis 2 have y: two votes for x < 8
    np.testing.assert_array_equal(read_labels(out, "axis0/labels"), x < 8)
    np.testing.assert_array_equal(read_labels(out, "axis1/labels"), x < 8)
    np.testing.assert_array_equal(read_labels(out, "axis2/labels"), y < 8)
    np.testing.assert_array_equal(read_labels(out), x < 8)
    proba = read_labels(out, "axis2/proba")
    assert proba.shape == (16, 16, 16, 2) and proba.dtype == np.uint8
    np.testing.assert_array_equal(proba[..., 1], np.where(y < 8, 230, 51))


@pytest.mark.parametrize("combine", ["vote", "mean"])
def test_two_axis_ties_go_to_the_higher_summed_probability(cube, tmp_path, combine):
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(left_half_fn), cube, out, axes=(0, 2), combine=combine, progress=False)
    _, y, x = np.indices((16, 16, 16))
    # where the axes disagree the confident "1" (0.9) beats the unconfident "0" (0.8): summed
    # quantised probabilities 230 + 51 for class 1 against 25 + 204 for class 0, so the union,
    # not CTSegNet's intersection
    np.testing.assert_array_equal(read_labels(out), (x < 8) | (y < 8))


def test_crop_keeps_the_input_shape_with_zeros_outside(random_volume, tmp_path):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(1, 2), crop="2:18,:,-20:", progress=False)
    expected = np.zeros_like(vol, dtype=np.uint8)
    expected[2:18, :, 8:] = vol[2:18, :, 8:] > THRESHOLD
    np.testing.assert_array_equal(read_labels(out), expected)
    assert read_labels(out, "axis1/labels").shape == (16, 24, 20)


def test_rotation_by_90_degrees_is_exact_and_the_side_file_is_removed(random_volume, tmp_path):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(0, 2), rotate_deg=90, progress=False)
    np.testing.assert_array_equal(read_labels(out), vol > THRESHOLD)
    assert read_labels(out, "axis2/labels").shape == (20, 28, 24)  # the rotated frame
    assert not Path(str(out) + ".rotated-input.h5").exists()


def test_oblique_rotation_nearly_matches(tmp_path):
    z, y, x = np.indices((8, 40, 48))
    vol = (100 * (((y - 20) / 15.0) ** 2 + ((x - 24) / 12.0) ** 2 < 1)).astype(np.float32)
    path = tmp_path / "ellipse.h5"
    with DataFile.create(path, vol.shape, vol.dtype) as f:
        f.write_block((0, 0, 0), vol)
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(threshold_fn, 32), path, out, axes=(0,), rotate_deg=30, progress=False)
    labels = read_labels(out)
    truth = vol > THRESHOLD
    assert labels.sum() > 0
    assert (labels != truth).mean() < 0.01  # only boundary voxels move by resampling


# ------------------------------------------------------------------ pure helpers
def test_parsers_and_slab_helpers():
    assert parse_axes("2, 0") == (2, 0)
    assert parse_axes([1]) == (1,)
    for bad in ("0,0", "3", "", "x"):
        with pytest.raises(CtsegSettingsError, match="axes must be distinct values among 0, 1, 2"):
            parse_axes(bad)
    assert parse_crop("1:5,:,-3:") == ((1, 5), (None, None), (-3, None))
    assert parse_crop(None) is None
    for bad in ("1:5,:", "1:5,:,a:b", "1,2,3"):
        with pytest.raises(CtsegSettingsError, match="crop must be three ranges 'z0:z1,y0:y1,x0:x1'"):
            parse_crop(bad)
    assert resolve_crop(((1, 5), (None, None), (-3, None)), (10, 20, 30)) == ((1, 5), (0, 20), (27, 30))
    with pytest.raises(CtsegSettingsError, match="crop 5:5 on axis 0 is empty or outside the volume"):
        resolve_crop(((5, 5), (None, None), (None, None)), (10, 20, 30))
    with pytest.raises(CtsegSettingsError, match="one \\(start, stop\\) range per axis"):
        resolve_crop(((0, 1),), (10, 20, 30))
    assert slab_ranges_todo(np.array([1, 0, 0, 0, 1, 0, 0], np.uint8), 2) == [(1, 3), (3, 4), (5, 7)]
    assert slab_thickness((100, 10, 10), 0, 1, 5000 / 1e9, align=16) == 48
    with pytest.raises(
        CtsegSettingsError,
        match=r"more than the 1e-09 GB allowed for a slab; raise max_gb "
        r"\(--max-gb\) or crop",
    ):
        slab_thickness((100, 10, 10), 0, 1, 1e-9)


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("axes", [(1,), (0, 2)])
def test_resume_after_an_injected_failure_does_not_redo_finished_slabs(random_volume, tmp_path, axes):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    reference = FailingFn(threshold_fn)
    segment_volume(make_segmenter(reference), path, tmp_path / "ref.h5", axes=axes, max_gb=SMALL_GB, progress=False)
    total_calls = reference.calls
    failing = FailingFn(threshold_fn, fail_on=int(total_calls * 0.8))  # in a later slab
    with pytest.raises(RuntimeError, match="injected failure"):
        segment_volume(make_segmenter(failing), path, out, axes=axes, max_gb=SMALL_GB, progress=False)
    with h5py.File(out, "r") as f:
        assert not f.attrs["complete"]
        done = sum(int(f[f"progress/axis{a}"][:].sum()) for a in axes)
    assert done > 0
    resumed = FailingFn(threshold_fn)
    result = segment_volume(make_segmenter(resumed), path, out, axes=axes, max_gb=SMALL_GB, progress=False)
    assert result.slices_skipped == done
    n_slices = sum(vol.shape[a] for a in axes)
    # the finished slices cost nothing again: the resumed run does the remaining share of the calls
    assert resumed.calls <= total_calls * (n_slices - done) / n_slices + 1
    np.testing.assert_array_equal(read_labels(out), vol > THRESHOLD)
    np.testing.assert_array_equal(read_labels(out), read_labels(tmp_path / "ref.h5"))

    again = FailingFn(threshold_fn)
    result = segment_volume(make_segmenter(again), path, out, axes=axes, max_gb=SMALL_GB, progress=False)
    assert result.already_complete and again.calls == 0


def test_resume_with_rotation(random_volume, tmp_path):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    failing = FailingFn(threshold_fn, fail_on=3)
    with pytest.raises(RuntimeError, match="injected failure"):
        segment_volume(make_segmenter(failing), path, out, axes=(1,), rotate_deg=90, max_gb=SMALL_GB, progress=False)
    assert Path(str(out) + ".rotated-input.h5").exists()
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(1,), rotate_deg=90, max_gb=SMALL_GB, progress=False)
    np.testing.assert_array_equal(read_labels(out), vol > THRESHOLD)
    assert not Path(str(out) + ".rotated-input.h5").exists()


# ------------------------------------------------------------------ refusals
def test_overwrite_replaces_an_unfinished_run_recognised_by_its_content(random_volume, tmp_path):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="injected failure"):
        segment_volume(
            make_segmenter(FailingFn(threshold_fn, fail_on=2)), path, out, axes=(1,), max_gb=SMALL_GB, progress=False
        )
    assert not written_by_ctseg(out)  # rewritten in place while it ran: no record can vouch for it
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(0,), overwrite=True, progress=False)
    np.testing.assert_array_equal(read_labels(out), vol > THRESHOLD)
    assert written_by_ctseg(out)  # finished: recorded


def test_a_finished_run_changed_afterwards_is_never_replaced(random_volume, tmp_path):
    path, _ = random_volume
    out = tmp_path / "out.h5"
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(0,), progress=False)
    with h5py.File(out, "a") as f:
        f["labels"][0] = 0
        f.attrs["complete"] = False  # even when it claims to be unfinished: its labels were edited
    edited = out.read_bytes()
    with pytest.raises(CtsegDataError, match="out.h5: changed since ctseg wrote it; ctseg never replaces such files"):
        segment_volume(make_segmenter(threshold_fn), path, out, axes=(1,), overwrite=True, progress=False)
    assert out.read_bytes() == edited


def test_a_leftover_rotation_side_file_is_replaced_only_when_it_is_ctsegs(random_volume, tmp_path):
    path, vol = random_volume
    out = tmp_path / "out.h5"
    side = tmp_path / "out.h5.rotated-input.h5"
    side.write_text("my notes")
    with pytest.raises(CtsegDataError, match="out.h5.rotated-input.h5: not written by ctseg"):
        segment_volume(make_segmenter(threshold_fn), path, out, axes=(1,), rotate_deg=90, progress=False)
    assert side.read_text() == "my notes"
    side.unlink()
    with pytest.raises(RuntimeError, match="injected failure"):  # leaves ctseg's side file behind
        segment_volume(
            make_segmenter(FailingFn(threshold_fn, fail_on=3)),
            path,
            out,
            axes=(1,),
            rotate_deg=90,
            max_gb=SMALL_GB,
            progress=False,
        )
    assert side.exists()
    out.unlink()  # the user deletes the unfinished output: the side file is a leftover, replaced
    segment_volume(make_segmenter(threshold_fn), path, out, axes=(1,), rotate_deg=90, progress=False)
    np.testing.assert_array_equal(read_labels(out), vol > THRESHOLD)
    assert not side.exists()


def test_existing_outputs_are_never_silently_replaced(random_volume, tmp_path):
    path, vol = random_volume
    seg = make_segmenter(threshold_fn)
    out = tmp_path / "out.h5"
    segment_volume(seg, path, out, axes=(0,), progress=False)
    with pytest.raises(CtsegDataError, match=r"out.h5 holds a run with different settings \(axes\); it is not resumed"):
        segment_volume(seg, path, out, axes=(1,), progress=False)
    with pytest.raises(CtsegDataError, match=r"different settings \(model\)"):
        segment_volume(seg, path, out, axes=(0,), model_id="another", progress=False)
    from ctseg_helpers.prepare.normalize import Normalization

    mr = Segmenter(
        threshold_fn, input_shape=16, num_classes=2, mode="tile", batch_size=4, normalization=Normalization("MR")
    )
    with pytest.raises(CtsegDataError, match=r"different settings \(normalization\)"):
        segment_volume(mr, path, out, axes=(0,), progress=False)
    segment_volume(seg, path, out, axes=(1,), overwrite=True, progress=False)
    with h5py.File(out, "r") as f:
        assert '"axes": [1]' in f.attrs["ctseg_volume_settings"]

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(CtsegDataError, match="foreign.h5 exists and was not written by ctseg segment-volume"):
        segment_volume(seg, path, foreign, progress=False)
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(out.read_bytes()[:3000])  # an HDF5 signature, then nothing usable
    with pytest.raises(
        CtsegDataError,
        match="damaged.h5 exists but cannot be opened as HDF5 .*ctseg cannot tell that "
        "it wrote it, so it never replaces it: delete it yourself",
    ):
        segment_volume(seg, path, damaged, axes=(1,), progress=False)
    for name in ("foreign.h5", "damaged.h5"):  # nor with overwrite
        before = (tmp_path / name).read_bytes()
        with pytest.raises(CtsegDataError, match=f"{name}: not written by ctseg; ctseg never replaces such files"):
            segment_volume(seg, path, tmp_path / name, overwrite=True, progress=False)
        assert (tmp_path / name).read_bytes() == before
    text = tmp_path / "notes.h5"
    text.write_text("keep me")
    with pytest.raises(CtsegDataError, match="notes.h5 exists and is not an HDF5 file; ctseg never replaces it"):
        segment_volume(seg, path, text, progress=False)
    with pytest.raises(CtsegDataError, match="notes.h5: not written by ctseg"):
        segment_volume(seg, path, text, overwrite=True, progress=False)
    assert text.read_text() == "keep me"
    with pytest.raises(CtsegDataError, match="in.h5: the output cannot be the input file"):
        segment_volume(seg, path, path, overwrite=True, progress=False)
    with DataFile.open(path) as f:
        np.testing.assert_array_equal(f.read_full(), vol)


def test_not_enough_disk_fails_before_any_work(random_volume, tmp_path, monkeypatch):
    path, _ = random_volume
    calls = FailingFn(threshold_fn)

    class Usage:
        free = 1000

    monkeypatch.setattr(volume_mod.shutil, "disk_usage", lambda folder: Usage)
    out = tmp_path / "out.h5"
    with pytest.raises(CtsegDataError, match=r"not enough free disk for the output: up to 0.00 GB .* 0.00 GB are free"):
        segment_volume(make_segmenter(calls), path, out, axes=(0, 1), progress=False)
    assert calls.calls == 0 and not out.exists()
    segment_volume(make_segmenter(calls), path, out, axes=(0, 1), check_disk=False, progress=False)
    assert out.exists()


def test_bad_settings(random_volume, tmp_path):
    path, _ = random_volume
    seg = make_segmenter(threshold_fn)
    with pytest.raises(CtsegSettingsError, match="combine must be 'vote' or 'mean', got 'median'"):
        segment_volume(seg, path, tmp_path / "o.h5", combine="median", progress=False)
    with pytest.raises(CtsegSettingsError, match="max_gb must be a positive number of GB, got 0"):
        segment_volume(seg, path, tmp_path / "o.h5", max_gb=0, progress=False)
    with pytest.raises(CtsegSettingsError, match="needs .* GB of working memory, more than the 5e-08 GB allowed"):
        segment_volume(seg, path, tmp_path / "o.h5", max_gb=1e-7, progress=False)
    with pytest.raises(CtsegDataError, match="missing.h5: no such file or folder"):
        segment_volume(seg, tmp_path / "missing.h5", tmp_path / "o2.h5", progress=False)


def test_the_models_post_processing_reaches_the_combination_of_several_axes(random_volume, tmp_path):
    from ctseg_helpers.segment.postprocess import keep_largest_component

    path, vol = random_volume
    plain = tmp_path / "plain.h5"
    segment_volume(make_segmenter(threshold_fn), path, plain, axes=(1, 2), progress=False)
    without = read_labels(plain)
    one_region = np.stack([keep_largest_component(p > 0) for p in without]).astype(np.uint8)
    assert not np.array_equal(without, one_region)  # random noise: many regions per slice
    segmenter = Segmenter(
        threshold_fn,
        input_shape=16,
        num_classes=2,
        mode="tile",
        batch_size=4,
        postprocessing={"largest_foreground": True},
    )
    out = tmp_path / "out.h5"
    segment_volume(segmenter, path, out, axes=(1, 2), progress=False)
    combined = read_labels(out)
    # every axial slice of the result holds one connected region: the post-processing ran last
    np.testing.assert_array_equal(combined, np.stack([keep_largest_component(p > 0) for p in combined]))
    assert combined.any() and (combined <= without).all()


# ------------------------------------------------------------------ non-finite voxels
def above_half_fn(batch):
    """Class 1 where the normalised value is above 0.5."""
    p = (batch[..., 0] > 0.5).astype(np.float32)
    return np.stack([1 - p, p], axis=-1)


def write_volume(path, vol):
    with DataFile.create(path, vol.shape, vol.dtype, chunk_shape=(8, 8, 8)) as out:
        out.write_block((0, 0, 0), vol)
    return path


@pytest.mark.parametrize(("axes", "rotate_deg"), [((0,), 0.0), ((0, 1, 2), 0.0), ((1,), 30.0)])
def test_nonfinite_voxels_are_segmented_as_the_minimum_with_one_warning(tmp_path, caplog, axes, rotate_deg):
    from ctseg_helpers.prepare.normalize import Normalization

    vol = np.random.default_rng(5).uniform(10.0, 90.0, (24, 16, 16)).astype(np.float32)
    holes = vol.copy()
    holes[16:, 3, 4] = np.nan  # only in the second slab along axis 0: found after a clean slab
    holes[20, 9, 9] = np.inf
    filled = np.where(np.isfinite(holes), holes, vol.min())
    path, reference = write_volume(tmp_path / "holes.h5", holes), write_volume(tmp_path / "filled.h5", filled)
    seg = Segmenter(
        above_half_fn, input_shape=16, num_classes=2, mode="tile", batch_size=4, normalization=Normalization("MR")
    )
    options = {"axes": axes, "rotate_deg": rotate_deg, "max_gb": SMALL_GB, "progress": False}
    with caplog.at_level("WARNING"):
        result = segment_volume(seg, path, tmp_path / "out.h5", **options)
    assert result.slabs_done > 1
    warnings = [r.getMessage() for r in caplog.records if "NaN" in r.getMessage()]
    assert warnings == [
        f"{path}: 9 of {vol.size} voxels are NaN or infinite; they are replaced by the minimum "
        f"finite value {vol.min():g}"
    ]
    segment_volume(seg, reference, tmp_path / "ref.h5", **options)
    labels = read_labels(tmp_path / "out.h5")
    np.testing.assert_array_equal(labels, read_labels(tmp_path / "ref.h5"))
    assert labels[16:].any()  # unreplaced, the NaN would blank the normalised slices that hold one


def test_a_volume_of_nan_is_refused(tmp_path):
    path = write_volume(tmp_path / "nan.h5", np.full((4, 16, 16), np.nan, np.float32))
    with pytest.raises(CtsegDataError, match="nan.h5: every voxel is NaN or infinite; there is no image"):
        segment_volume(make_segmenter(threshold_fn), path, tmp_path / "out.h5", progress=False)
