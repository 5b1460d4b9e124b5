import numpy as np
import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.prepare.normalize import Normalization, normalize_image


def test_ct_window_clips_and_scales_hounsfield_units():
    image = np.array([[-2000.0, -1000.0], [0.0, 3000.0]])
    out = normalize_image(image, Normalization("CT", (-1000.0, 1000.0)))
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.5, 1.0]])
    assert out.dtype == np.float32


def test_mr_percentile_scaling_is_per_image_and_robust_to_outliers():
    image = np.linspace(0, 100, 10_000).reshape(100, 100)
    image[0, 0] = 1e6  # one hot pixel must not compress the rest
    out = normalize_image(image, Normalization("MR", percentiles=(1.0, 99.0)))
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.45 < out[50, 50] < 0.55
    stack = normalize_image(np.stack([image, image * 10]), Normalization("MR"))
    np.testing.assert_allclose(stack[0], stack[1], atol=1e-6)


def test_constant_mr_image_does_not_divide_by_zero():
    out = normalize_image(np.full((4, 4), 7.0), Normalization("MR"))
    assert np.isfinite(out).all()


def test_for_modality_maps_dicom_modalities():
    assert Normalization.for_modality("ct").modality == "CT"
    assert Normalization.for_modality("MR").modality == "MR"
    assert Normalization.for_modality(None).modality == "MR"


def test_round_trip_through_dict():
    norm = Normalization("CT", (-160.0, 240.0), (2.0, 98.0))
    assert Normalization.from_dict(norm.to_dict()) == norm


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modality": "PET"}, "modality must be 'CT' or 'MR', got 'PET'"),
        ({"hu_window": (100.0, -100.0)}, r"hu_window must be \(low, high\) with low < high"),
        ({"percentiles": (50.0, 10.0)}, "percentiles must satisfy 0 <= low < high <= 100"),
    ],
)
def test_invalid_normalization_is_refused(kwargs, message):
    with pytest.raises(CtsegSettingsError, match=message):
        Normalization(**kwargs)
