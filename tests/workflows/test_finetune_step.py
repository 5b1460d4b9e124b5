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
