"""train.ipynb runs end to end with small parameters (papermill)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest


def _notebook_path(repo_root):
    return repo_root / "notebooks" / "train.ipynb"


def test_committed_notebook_has_no_outputs_and_one_parameters_cell(repo_root):
    notebook = nbformat.read(_notebook_path(repo_root), as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in (
        "main_dir",
        "model_filename",
        "model_dir",
        "input_shape",
        "num_labels",
        "label_names",
        "epochs",
        "batch_size",
        "learning_rate",
        "print_checkpoint",
        "save_checkpoint",
        "augment",
        "resume",
        "overwrite",
        "folds",
        "target_spacing_mm",
        "batches_per_epoch",
        "postprocessing",
        "loss_options",
        "lr_schedule",
        "max_minutes",
        "mixed_precision",
        "devices",
    ):
        assert f"\n{name} = " in "\n" + tagged[0].source, name
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert not any(word in c.source for c in code for word in ("def ", "class ", "global "))
    headings = [
        c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown" and c.source.startswith("## ")
    ]
    assert headings == [
        "## Imports",
        "## Systems Characteristics",
        "## Settings",
        "## Data Pre-Visualization",
        "## Model Training",
        "## Training Performance Evaluation",
        "## Fine-tuning with corrected slices",
    ]


def test_notebook_trains_on_sunnybrook(sunnybrook, repo_root, tmp_path):
    papermill = pytest.importorskip("papermill")
    out_dir = tmp_path / "trained_model"
    executed = tmp_path / "train.ipynb"
    papermill.execute_notebook(
        str(_notebook_path(repo_root)),
        str(executed),
        cwd=str(repo_root / "notebooks"),
        kernel_name="python3",
        parameters=dict(
            main_dir=str(sunnybrook / "lv_myo"),
            model_filename="nb",
            model_dir=str(out_dir),
            input_shape=64,
            num_labels=2,
            label_names=["LV blood pool", "LV myocardium"],
            epochs=2,
            batch_size=8,
            learning_rate=3e-3,
            print_checkpoint=1,
            save_checkpoint=2,
            augment=True,
            levels=2,
            base_filters=4,
            max_slices=12,
            resume=False,
            overwrite=False,
            batches_per_epoch=2,
            validation_fraction=0.4,
        ),
        progress_bar=False,
    )
    text = json.dumps(nbformat.read(executed, as_version=4).cells)
    assert "GPU enabled:" in text
    assert "Completed epochs: 2/2 | Dice+CE loss:" in text
    assert "Training plan (cpu):" in text and "Post-processing chosen on the validation slices" in text
    assert "Checkpoint -> Model saved at 2/2 epochs" in text
    assert re.search(r"images: \(\d, 64, 64, 1\) float32, labels: \(\d, 64, 64\) uint8", text)
    assert "GPU enabled: False" in text or "GPU enabled: True" in text
    assert (out_dir / "nb_2.keras").is_file() and (out_dir / "nb_curves.png").is_file()
