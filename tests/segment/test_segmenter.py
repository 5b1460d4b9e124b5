"""Segmenter: stitching checked exactly with stand-in prediction functions, plus a tiny Keras model."""

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.prepare.normalize import Normalization
from ctseg_helpers.segment.patches import BLEND_MODES
from ctseg_helpers.segment.segmenter import Segmenter, SegmentSettings


def identity(batch):
    """Channel 0 = the input itself, channel 1 = its complement."""
    return np.concatenate([batch, 1.0 - batch], axis=-1)


class Recorder:
    """Stand-in that records the batch shapes it was called with."""

    def __init__(self, fn=identity):
        self.fn = fn
        self.shapes = []

    def __call__(self, batch):
        self.shapes.append(batch.shape)
        return self.fn(batch)


def ramp(rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    return rng.random((rows, cols), dtype=np.float32)


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize("shape", [(300, 217), (64, 64), (40, 23), (65, 130), (3, 300, 217)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_identity_predict_fn_returns_the_input_in_tile_mode(blend, shape, overlap):
    images = ramp(*shape[-2:]) if len(shape) == 2 else np.stack([ramp(*shape[1:]) + i for i in range(shape[0])]) / 3
    seg = Segmenter(identity, input_shape=64, num_classes=2, overlap=overlap, blend=blend, batch_size=5)
    proba = seg.predict_proba(images)
    assert proba.shape == images.shape + (2,) and proba.dtype == np.float32
    np.testing.assert_allclose(proba[..., 0], images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, atol=1e-5)


def test_constant_predict_fn_gives_constant_probabilities_everywhere():
    const = np.array([0.2, 0.5, 0.3], np.float32)
    seg = Segmenter(lambda b: np.broadcast_to(const, b.shape[:3] + (3,)), input_shape=32, num_classes=3, blend="hann")
    proba = seg.predict_proba(np.zeros((2, 77, 45)))
    np.testing.assert_allclose(proba, np.broadcast_to(const, proba.shape), rtol=1e-6)
    assert np.all(seg.segment(np.zeros((2, 77, 45))) == 1)


def test_overlaps_are_blended_not_overwritten_by_the_last_patch():
    # Each patch predicts its own call number as the probability of class 1: with blending the
    # result varies smoothly between patches instead of taking the last patch's value.
    calls = []

    def numbered(batch):
        calls.append(1)
        value = len(calls) / 10.0
        return np.concatenate([np.full_like(batch, 1 - value), np.full_like(batch, value)], axis=-1)

    seg = Segmenter(numbered, input_shape=32, num_classes=2, overlap=0.5, blend="average", batch_size=1)
    proba = seg.predict_proba(np.zeros((32, 48)))
    # Patches at columns 0 and 16 overlap on columns 16..31: the plain mean of 0.1 and 0.2.
    np.testing.assert_allclose(proba[:, :16, 1], 0.1, rtol=1e-6)
    np.testing.assert_allclose(proba[:, 16:32, 1], 0.15, rtol=1e-6)
    np.testing.assert_allclose(proba[:, 32:, 1], 0.2, rtol=1e-6)


def test_segment_is_the_argmax_as_uint8():
    images = np.stack([ramp(50, 70), 1 - ramp(50, 70)])
    seg = Segmenter(identity, input_shape=32, num_classes=2)
    labels = seg.segment(images)
    assert labels.dtype == np.uint8 and labels.shape == images.shape
    np.testing.assert_array_equal(labels, (images < 0.5).astype(np.uint8))
    np.testing.assert_array_equal(seg.segment_slices(images[0]), labels[0])


def test_segment_matches_the_argmax_of_predict_proba_across_slice_groups(monkeypatch):
    """Slices are processed in groups (and the argmax slice by slice): every slice lands in its place."""
    import ctseg_helpers.segment.segmenter as segmenter_module

    def three_classes(batch):
        # class 0 wins above 0.35, class 1 below 0.25, class 2 in between
        return np.concatenate([batch, 0.6 - batch, np.full_like(batch, 0.35)], axis=-1)

    # room for two 40 x 32 slices (23 columns padded to the 32-pixel input) of 3 classes
    monkeypatch.setattr(segmenter_module, "_ACCUMULATOR_BYTES", 2 * 40 * 32 * 3 * 4)
    images = np.stack([ramp(40, 23) * (k + 1) / 5 for k in range(5)])
    seg = Segmenter(three_classes, input_shape=32, num_classes=3)
    assert seg._group_size(images.shape[1:]) == 2
    labels = seg.segment(images)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.argmax(seg.predict_proba(images), axis=-1))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_patches_of_several_slices_share_batches():
    rec = Recorder()
    seg = Segmenter(rec, input_shape=32, num_classes=2, batch_size=8)
    seg.segment(np.zeros((20, 32, 32)))
    assert [s[0] for s in rec.shapes] == [8, 8, 4]
    assert all(s[1:] == (32, 32, 1) for s in rec.shapes)
    assert all(isinstance(s, tuple) for s in rec.shapes)


def test_tta_averages_the_four_flips_in_probability_space():
    # A stand-in whose class-1 probability is a row ramp whatever the input: up-down flips
    # reverse it, so the flip average is exactly 0.5 everywhere.
    def row_ramp(batch):
        rows = np.linspace(0, 1, batch.shape[1], dtype=np.float32)[None, :, None, None]
        p1 = np.broadcast_to(rows, batch.shape)
        return np.concatenate([1 - p1, p1], axis=-1)

    rec = Recorder(row_ramp)
    seg = Segmenter(rec, input_shape=16, num_classes=2, tta=True)
    proba = seg.predict_proba(np.zeros((16, 16)))
    np.testing.assert_allclose(proba[..., 1], 0.5, atol=1e-6)
    assert len(rec.shapes) == 4
    tta_identity = Segmenter(identity, input_shape=16, num_classes=2, tta=True).predict_proba(ramp(40, 21))
    np.testing.assert_allclose(tta_identity[..., 0], ramp(40, 21), rtol=1e-5, atol=1e-6)


def test_normalization_is_applied_to_raw_values():
    hu = np.array([[-1000.0, 0.0], [500.0, 3000.0]], np.float32)
    seg = Segmenter(identity, input_shape=4, num_classes=2, normalization=Normalization("CT", (-1000.0, 1000.0)))
    np.testing.assert_allclose(seg.predict_proba(hu)[..., 0], [[0.0, 0.5], [0.75, 1.0]], atol=1e-6)


def test_resize_mode_maps_probabilities_back_to_native_resolution():
    rec = Recorder()
    seg = Segmenter(rec, input_shape=32, num_classes=2, mode="resize", batch_size=4)
    images = np.stack([ramp(300, 217)] * 5)
    proba = seg.predict_proba(images)
    assert proba.shape == (5, 300, 217, 2)
    assert [s[0] for s in rec.shapes] == [4, 1] and rec.shapes[0][1:] == (32, 32, 1)
    # a smooth image survives down- and up-sampling closely
    yy, xx = np.mgrid[0:300, 0:217]
    smooth = ((yy / 299.0 + xx / 216.0) / 2).astype(np.float32)
    back = seg.predict_proba(smooth)[..., 0]
    assert np.abs(back - smooth)[5:-5, 5:-5].max() < 0.01
    # at the input size nothing is resized: exact
    exact = ramp(32, 32)
    np.testing.assert_array_equal(seg.predict_proba(exact)[..., 0], exact)


def test_nan_pixels_are_segmented_as_zero_with_a_warning(caplog):
    image = ramp(20, 20)
    image[3, 4] = np.nan
    proba = Segmenter(identity, input_shape=8, num_classes=2).predict_proba(image)
    assert proba[3, 4, 0] == 0 and np.isfinite(proba).all()
    assert "NaN or infinite" in caplog.text


def test_wrong_output_shape_of_predict_fn_is_reported():
    seg = Segmenter(identity, input_shape=16, num_classes=3)
    with pytest.raises(CtsegSettingsError, match=r"returned shape \(1, 16, 16, 2\).*expected \(1, 16, 16, 3\)"):
        seg.segment(np.zeros((16, 16)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": 0}, "input_shape must be a positive number of pixels, got 0"),
        ({"num_classes": 1}, r"num_classes must be at least 2 \(background \+ one ROI\), got 1"),
        ({"mode": "crop"}, "mode must be 'tile' or 'resize', got 'crop'"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"overlap": 1.0}, "overlap must be a fraction"),
        ({"blend": "max"}, "blend must be one of"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    settings = {"input_shape": 16, "num_classes": 2} | kwargs
    with pytest.raises(CtsegSettingsError, match=message):
        Segmenter(identity, **settings)


def test_the_defaults_are_those_of_segment_settings():
    seg = Segmenter(identity, input_shape=16, num_classes=2)
    defaults = SegmentSettings()
    assert (seg.overlap, seg.blend, seg.batch_size, seg.tta) == (0.25, "gaussian", 8, False)
    assert (seg.overlap, seg.blend, seg.batch_size, seg.tta) == (
        defaults.overlap,
        defaults.blend,
        defaults.batch_size,
        defaults.tta,
    )
    assert defaults.mode is None and seg.mode == "tile"  # None: as the model was trained (from_model_file)
    with pytest.raises(AttributeError):  # frozen: one set of defaults for everyone
        defaults.overlap = 0.5


def test_predict_fn_must_be_callable():
    with pytest.raises(CtsegSettingsError, match="predict_fn must be callable"):
        Segmenter("model.keras", input_shape=16, num_classes=2)


def test_bad_images_are_refused():
    seg = Segmenter(identity, input_shape=16, num_classes=2)
    with pytest.raises(
        CtsegDataError,
        match=r"images must be one slice \(M, N\) or a stack \(K, M, N\); got shape "
        r"\(2, 3, 4, 5\)",
    ):
        seg.segment(np.zeros((2, 3, 4, 5)))
    with pytest.raises(CtsegDataError, match="images must hold real numbers, got dtype <U1"):
        seg.segment(np.array([["a"]]))
    with pytest.raises(CtsegDataError, match=r"images have an empty side: shape \(0, 5\)"):
        seg.segment(np.zeros((0, 5)))


def test_an_empty_stack_gives_empty_results():
    seg = Segmenter(identity, input_shape=16, num_classes=2)
    assert seg.segment(np.zeros((0, 20, 20))).shape == (0, 20, 20)
    assert seg.predict_proba(np.zeros((0, 20, 20))).shape == (0, 20, 20, 2)


# ---------------------------------------------------------------- with a tiny saved Keras model


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    from tests.segment.tiny_model import make_tiny_model_file

    return make_tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.keras", fit_mode="pad")


def test_from_model_file_takes_settings_from_the_model(tiny_model_file):
    seg = Segmenter.from_model_file(tiny_model_file, blend="hann")
    assert (seg.input_shape, seg.num_classes, seg.mode, seg.blend) == (32, 3, "tile", "hann")
    assert seg.settings.label_names == ("inner", "outer")
    images = np.random.default_rng(0).normal(0, 300, (3, 45, 70)).astype(np.float32)
    proba = seg.predict_proba(images)
    assert proba.shape == (3, 45, 70, 3)
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    # The tiny model is 1x1 convolutions: it maps each pixel alone, so stitched output equals
    # the per-pixel softmax of the model's weights applied to the whole slice at once.
    from ctseg_helpers.prepare.normalize import normalize_image

    kernel, bias = seg.model.layers[-1].get_weights()
    logits = normalize_image(images, seg.normalization)[..., None] * kernel.reshape(-1) + bias
    direct = np.exp(logits - logits.max(-1, keepdims=True))
    direct /= direct.sum(-1, keepdims=True)
    np.testing.assert_allclose(proba, direct, atol=1e-5)
    assert Segmenter.from_model_file(tiny_model_file, mode="resize").mode == "resize"


def test_from_model_file_refuses_a_different_input_shape(tiny_model_file):
    with pytest.raises(
        CtsegSettingsError, match="input_shape=64 was given but the model was trained with input_shape=32"
    ):
        Segmenter.from_model_file(tiny_model_file, input_shape=64)
    with pytest.raises(
        CtsegSettingsError, match="num_classes=2 was given but the model was trained with num_classes=3"
    ):
        Segmenter.from_model_file(tiny_model_file, num_classes=2)


def test_a_model_whose_shape_disagrees_with_its_settings_is_refused(tmp_path):
    from tests.segment.tiny_model import make_tiny_model_file

    path = make_tiny_model_file(tmp_path / "lying.keras", stored_num_labels=3)
    with pytest.raises(
        CtsegSettingsError,
        match=r"the network outputs 3 channels, but its settings say 3 label\(s\), "
        r"i.e. 4 channels",
    ):
        Segmenter.from_model_file(path)
    path = make_tiny_model_file(tmp_path / "lying_input.keras", stored_input_shape=48)
    with pytest.raises(
        CtsegSettingsError,
        match=r"the network takes inputs of shape \(None, 32, 32, 1\), but its "
        r"settings say input_shape=48",
    ):
        Segmenter.from_model_file(path)


@pytest.mark.parametrize("views", ["flips", "rotations", "all"])
def test_every_tta_view_is_mapped_back_exactly(views):
    # An identity network returns its input: every view turned back must give the slice itself,
    # on a non-square slice that is tiled, so a view mapped back wrongly would show.
    image = np.random.default_rng(0).random((40, 21)).astype(np.float32)

    def identity_proba(batch):
        return np.concatenate([1 - batch, batch], axis=-1)

    rec = Recorder(identity_proba)
    proba = Segmenter(rec, input_shape=16, num_classes=2, tta=True, tta_views=views).predict_proba(image)
    np.testing.assert_allclose(proba[..., 1], image, rtol=1e-5, atol=1e-6)
    per_view = {"flips": 4, "rotations": 4, "all": 8}[views]
    assert len(rec.shapes) % per_view == 0


def test_rotation_tta_averages_the_four_quarter_turns():
    # class-1 probability = a row ramp whatever the input: averaged over quarter turns, each
    # pixel gets the mean of the ramp at its 4 rotated positions.
    def row_ramp(batch):
        rows = np.linspace(0, 1, batch.shape[1], dtype=np.float32)[None, :, None, None]
        p1 = np.broadcast_to(rows, batch.shape)
        return np.concatenate([1 - p1, p1], axis=-1)

    proba = Segmenter(row_ramp, input_shape=16, num_classes=2, tta=True, tta_views="rotations").predict_proba(
        np.zeros((16, 16))
    )
    ramp16 = np.broadcast_to(np.linspace(0, 1, 16)[:, None], (16, 16))
    expected = np.mean([np.rot90(ramp16, k) for k in range(4)], axis=0)
    np.testing.assert_allclose(proba[..., 1], expected, atol=1e-6)


def test_tta_views_follow_the_training_augmentation():
    from ctseg_helpers.segment.segmenter import tta_views_for

    assert tta_views_for({"enabled": True, "p_affine": 0.3, "max_rotation_deg": 180.0}) == "rotations"
    assert tta_views_for({"enabled": True, "p_affine": 0.3, "max_rotation_deg": 30.0}) == "flips"
    assert tta_views_for({"enabled": True, "p_rot90": 0.5, "p_flip": 0.5}) == "all"
    assert tta_views_for({"enabled": False, "p_affine": 0.3, "max_rotation_deg": 180.0}) == "flips"
    with pytest.raises(CtsegSettingsError, match=r"tta_views must be one of \['flips', 'rotations', 'all'\], got 'x'"):
        Segmenter(identity, input_shape=16, num_classes=2, tta_views="x")


# ------------------------------------------------------------------ labels and probabilities from one pass


@pytest.mark.parametrize("mode", ["tile", "resize"])
def test_predict_gives_segment_and_predict_proba_from_one_pass(mode):
    from ctseg_helpers.segment.postprocess import PostProcessing

    images = np.stack([ramp(50, 37), ramp(50, 37) ** 2, 1 - ramp(50, 37)])
    calls = Recorder()
    seg = Segmenter(
        calls, input_shape=32, num_classes=2, mode=mode, postprocessing=PostProcessing(largest_foreground=True)
    )
    prediction = seg.predict(images, pixel_spacing_mm=(1.0, 1.0))
    n_calls = len(calls.shapes)
    np.testing.assert_array_equal(prediction.labels, seg.segment(images))
    np.testing.assert_allclose(prediction.proba, seg.predict_proba(images), atol=1e-6)
    assert len(calls.shapes) == 3 * n_calls  # predict, segment and predict_proba: one pass each
    assert prediction.labels.dtype == np.uint8 and prediction.proba.dtype == np.float32
    assert prediction.dissent is None and prediction.disagreement is None and prediction.n_views == 1
    # post-processing changes the labels only: without it they are the arg-max of the probabilities
    raw = seg.predict(images, postprocess=False)
    np.testing.assert_array_equal(raw.labels, np.argmax(prediction.proba, axis=-1))
    assert seg.predict(images[0]).labels.shape == (1, 50, 37)  # one slice: a stack of one


def test_predict_groups_keep_only_a_few_slices_at_a_time(monkeypatch):
    from ctseg_helpers.segment import segmenter as module

    monkeypatch.setattr(module, "_ACCUMULATOR_BYTES", 40 * 40 * 2 * 4 * 2)  # two slices per group
    images = np.stack([ramp(40, 40) * (k + 1) / 5 for k in range(5)])
    seg = Segmenter(identity, input_shape=40, num_classes=2)
    groups = list(seg.predict_groups(images))
    assert [g.start for g in groups] == [0, 2, 4] and [len(g.labels) for g in groups] == [2, 2, 1]
    whole = seg.predict(images)
    np.testing.assert_array_equal(np.concatenate([g.labels for g in groups]), whole.labels)
    np.testing.assert_array_equal(np.concatenate([g.proba for g in groups]), whole.proba)


def left_half(batch):
    """ROI (0.9) on the left half of every patch, background (0.9) on the right: views disagree."""
    size = batch.shape[2]
    roi = np.where(np.arange(size) < size // 2, 0.9, 0.1).astype(np.float32)
    roi = np.broadcast_to(roi, batch.shape[:3])
    return np.stack([1 - roi, roi], axis=-1)


def test_views_count_the_tta_views_that_disagree_with_the_consensus():
    seg = Segmenter(left_half, input_shape=16, num_classes=2, tta=True, tta_views="flips")
    assert seg.n_views == 4
    image = ramp(16, 16)
    prediction = seg.predict(image, views=True)
    # original and up-down mirror say ROI on the left, the left-right mirrors on the right: a 50/50
    # mean everywhere, whose arg-max (background) two of the four views contradict on every pixel
    np.testing.assert_allclose(prediction.proba, 0.5, atol=1e-6)
    np.testing.assert_array_equal(prediction.dissent, 2)
    np.testing.assert_allclose(prediction.disagreement, 0.5)
    np.testing.assert_allclose(prediction.proba, seg.predict_proba(image)[None], atol=1e-6)
    assert seg.predict(image).dissent is None  # only when asked
    single = Segmenter(left_half, input_shape=16, num_classes=2)
    assert single.n_views == 1 and single.predict(image, views=True).dissent is None  # one view: nothing to compare


@pytest.mark.parametrize("mode", ["tile", "resize"])
def test_views_of_an_ensemble_are_its_members_times_the_tta_views(mode):
    from ctseg_helpers.segment.ensemble import averaged_predict_fn

    def right_half(batch):
        return left_half(batch)[:, :, ::-1]

    seg = Segmenter(averaged_predict_fn([left_half, right_half]), input_shape=16, num_classes=2, mode=mode)
    assert seg.n_views == 2
    images = np.stack([ramp(16, 16), ramp(16, 16)])
    prediction = seg.predict(images, views=True, pixel_spacing_mm=(1.0, 1.0))
    np.testing.assert_array_equal(prediction.dissent, 1)  # one member of two contradicts the 50/50 consensus
    with_tta = Segmenter(averaged_predict_fn([left_half, left_half]), input_shape=16, num_classes=2, tta=True)
    assert with_tta.n_views == 8
    np.testing.assert_array_equal(with_tta.predict(images, views=True).dissent, 4)


def test_views_with_resampling_to_the_target_spacing():
    seg = Segmenter(left_half, input_shape=16, num_classes=2, tta=True, target_spacing_mm=(1.0, 1.0))
    prediction = seg.predict(ramp(20, 20), pixel_spacing_mm=(0.8, 0.8), views=True)
    assert prediction.dissent.shape == (1, 20, 20) and prediction.proba.shape == (1, 20, 20, 2)
    expected = seg.predict_proba(ramp(20, 20), pixel_spacing_mm=(0.8, 0.8))[None]
    np.testing.assert_allclose(prediction.proba, expected, atol=1e-6)


def test_views_check_each_members_output_shape():
    from ctseg_helpers.segment.ensemble import averaged_predict_fn

    seg = Segmenter(averaged_predict_fn([left_half, left_half]), input_shape=16, num_classes=3)
    with pytest.raises(CtsegSettingsError, match=r"the prediction function returned shape \(1, 16, 16, 2\)"):
        seg.predict(ramp(16, 16), views=True)
