"""The train notebook's fine-tuning step: skipped until a model is given (the run itself:
tests/train/test_finetune.py)."""

from __future__ import annotations

import pytest

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.workflows.finetune import finetune_step


def test_without_a_model_the_step_is_skipped_with_a_line_saying_what_to_set(capsys):
    assert finetune_step(None, None, epochs=3) is None
    assert capsys.readouterr().out == (
        "Fine-tuning skipped: set finetune_model_path (and finetune_data_dir) in the settings cell to run it\n"
    )


def test_a_model_without_corrected_slices_is_refused(tmp_path):
    with pytest.raises(CtsegSettingsError, match=r"finetune_data_dir is not set: give the folder of slices corrected"):
        finetune_step(tmp_path / "unet_best.keras", None)


def test_roi_pixels_outside_the_models_hu_window_are_counted_and_warned_about(tmp_path, caplog):
    """A CT model normalised to 249..351 HU sees a disc at 100 HU as 249: fine-tuning cannot teach it."""
    from types import SimpleNamespace

    import numpy as np

    from ctseg_helpers.prepare.normalize import Normalization
    from ctseg_helpers.workflows.finetune import _warn_outside_window, window_shares

    image = np.full((10, 10), 300.0)
    image[:, 5:] = 100.0  # the right half of the slice: outside the window
    label = np.zeros((10, 10), np.uint8)
    label[2:8, 0:5] = 1  # 30 px, all inside
    label[2:8, 5:10] = 2  # 30 px, all outside
    label[0, 0:2] = 2  # 2 px inside: 30 of 32 outside
    raw = SimpleNamespace(images=[image], labels=[label])
    settings = SimpleNamespace(
        normalization=Normalization(modality="CT", hu_window=(249.0, 351.0)), num_labels=2, label_names=("a", "b")
    )
    shares = window_shares(raw, settings)
    assert shares[1] == 0.0 and shares[2] == 30 / 32
    _warn_outside_window(raw, settings, tmp_path)
    assert "94 % of the b pixels lie outside the model's HU window (249 to 351 HU)" in caplog.text
    assert "of the a pixels" not in caplog.text
    mr = SimpleNamespace(normalization=Normalization(modality="MR"), num_labels=2, label_names=("a", "b"))
    assert window_shares(raw, mr) == {}
