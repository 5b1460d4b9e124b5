"""visualize.ipynb executed end to end with papermill on a tiny synthetic scan."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.io.dicom_write import write_dicom_series

papermill = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "visualize.ipynb"
LABELS = ["disc", "ring"]


def _scan(root: Path) -> dict:
    k, size = 5, 32
    yy, xx = np.mgrid[:size, :size]
    truth = np.zeros((k, size, size), np.uint8)
    images = np.full((k, size, size), -800.0)
    for s in range(k):
        r = 4 + s
        disc = (yy - 16) ** 2 + (xx - 16) ** 2 <= r**2
        ring = ((yy - 16) ** 2 + (xx - 16) ** 2 <= (r + 3) ** 2) & ~disc
        truth[s][ring] = 2
        truth[s][disc] = 1
    images[truth == 1] = 40.0
    images[truth == 2] = 300.0
    pred = truth.copy()
    pred[2] = np.roll(truth[2], 2, axis=1)
    pred[3][pred[3] == 1] = 0  # a missed disc: an abrupt jump
    names = [f"vol_{s:03d}" for s in range(k)]
    dicom_dir = root / "dicoms"
    write_dicom_series(dicom_dir, images, names=names, pixel_spacing_mm=(0.9, 0.9), slice_thickness_mm=3.0)
    for folder, stack in (("pred", pred), ("truth", truth)):
        (root / folder).mkdir()
        for name, labels in zip(names, stack, strict=True):
            Image.fromarray(labels).save(root / folder / f"{name}.png")
    return {
        "dicom_dir": str(dicom_dir),
        "prediction_dir": str(root / "pred"),
        "truth_dir": str(root / "truth"),
        "labels_list": LABELS,
        "output_dir": str(root / "out"),
        "n_grid_samples": 4,
        "histogram_bins": 30,
        "animation_interval_ms": 100,
        "animation_max_frames": 3,
    }


def _run(tmp_path, parameters) -> nbformat.NotebookNode:
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False
    )
    return nbformat.read(out, as_version=4)


def _text(nb) -> str:
    return json.dumps([cell.get("outputs", []) for cell in nb.cells])


def _outputs(nb, mime: str) -> list:
    return [
        output["data"][mime]
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if mime in output.get("data", {})
    ]


def test_notebook_is_committed_clean_and_matches_its_generator():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("dicom_dir", "prediction_dir", "truth_dir", "labels_list", "output_dir"):
        assert f"{name} =" in tagged[0].source
    for cell in code:
        for word in ("def ", "class ", "global "):
            assert word not in cell.source


@pytest.mark.slow
def test_visualize_with_truth_on_a_volume(tmp_path):
    parameters = _scan(tmp_path)
    nb = _run(tmp_path, parameters)
    text = _text(nb)
    assert "a volume: 5 slices 3 mm apart" in text
    assert "application/vnd.jupyter.widget-view+json" in text  # the slice browser
    # The slice browser and the progress bars show again when the saved notebook is opened.
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shown = [view["model_id"] for view in _outputs(nb, "application/vnd.jupyter.widget-view+json")]
    assert shown and all(model_id in state for model_id in shown)
    # The animation: one small image, no reference outside the notebook, the GIF named.
    (preview,) = [html for html in map("".join, _outputs(nb, "text/html")) if "data:image/webp;base64" in html]
    assert "3 of 5 slices shown (one in 2) at 400 × " in preview
    assert str(Path(parameters["output_dir"]) / "animation.gif") in preview
    assert not any(reference in preview for reference in ("http://", "https://", "//cdn", "<script"))
    out = Path(parameters["output_dir"])
    for name in (
        "animation.gif",
        "histogram.png",
        "sample_grid.png",
        "surfaces_3d.png",
        "bland_altman.png",
        "area_vs_slice.png",
        "slice_areas.csv",
        "metrics.csv",
        "summary.csv",
        "agreement.csv",
        "volume_metrics.csv",
    ):
        assert (out / name).is_file(), name
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 10 and set(metrics["roi"]) == set(LABELS)
    assert metrics.loc[(metrics["file"] == "vol_003") & (metrics["roi"] == "disc"), "dice"].item() == 0.0
    areas = pd.read_csv(out / "slice_areas.csv")
    flagged = areas[(areas["source"] == "prediction") & (areas["roi"] == "disc") & areas["jump"]]
    assert flagged["slice_index"].tolist() == [3, 4]
    # running again must not replace what the first run saved
    with pytest.raises(papermill.PapermillExecutionError, match="exists already"):
        _run(tmp_path, parameters)


@pytest.mark.slow
def test_visualize_without_truth(tmp_path):
    parameters = _scan(tmp_path)
    parameters["truth_dir"] = None
    nb = _run(tmp_path, parameters)
    text = _text(nb)
    assert "no metrics" in text and "no area agreement" in text
    out = Path(parameters["output_dir"])
    assert (out / "area_vs_slice.png").is_file() and (out / "surfaces_3d.png").is_file()
    assert not (out / "metrics.csv").exists()
