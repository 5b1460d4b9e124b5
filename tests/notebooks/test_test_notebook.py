"""test.ipynb: structure, and an end-to-end papermill run on a tiny model and a small DICOM series."""

import ast
import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from ctseg_helpers.io.dicom_write import write_dicom_series
from tests.segment.tiny_model import make_tiny_model_file

SECTIONS = [
    "## Imports",
    "## Settings",
    "## Generate Segmentation Predictions",
    "## Calculate Cross-Sectional Area",
    "## Check these slices",
]
PARAMETERS = {"labels_list", "model_filename", "input_shape", "fov", "matrix_size", "dicom_dir", "output_dir"}


@pytest.fixture(scope="module")
def notebook_path(repo_root):
    return repo_root / "notebooks" / "test.ipynb"


def test_notebook_structure(notebook_path):
    nb = nbformat.read(notebook_path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    headings = [
        line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("## ")
    ]
    assert headings == SECTIONS
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {
        t.id for node in ast.walk(ast.parse(tagged[0].source)) if isinstance(node, ast.Assign) for t in node.targets
    }
    assert PARAMETERS <= names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
            tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith("%")))
            assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Global)) for n in ast.walk(tree))


@pytest.fixture()
def small_case(tmp_path):
    model = make_tiny_model_file(tmp_path / "model" / "tiny.keras", label_names=("soft", "bright"))
    images = np.full((3, 40, 48), -1000.0)
    images[:, 4:14, 4:24] = 0.0  # 200 px label 1 on every slice
    images[2, 20:30, 20:30] = 400.0  # 100 px label 2 on slice 3
    write_dicom_series(tmp_path / "scan", images, pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=2.0)
    return model, tmp_path / "scan"


@pytest.mark.slow
def test_notebook_runs_end_to_end_with_papermill(notebook_path, small_case, tmp_path):
    import papermill

    model, scan = small_case
    out_nb = tmp_path / "test_out.ipynb"
    papermill.execute_notebook(
        str(notebook_path),
        str(out_nb),
        cwd=str(notebook_path.parent),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "labels_list": ["soft", "bright"],
            "model_filename": str(model),
            "input_shape": 32,
            "fov": 24.0,
            "matrix_size": 48,
            "dicom_dir": str(scan),
            "output_dir": str(tmp_path / "pred"),
        },
    )
    runs = list((tmp_path / "pred").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    areas = pd.read_csv(run_dir / "areas.csv", index_col=0)
    np.testing.assert_allclose(areas["soft"].iloc[:3], 50.0)
    np.testing.assert_allclose(areas["bright"].iloc[:3], [0.0, 0.0, 25.0])
    assert (run_dir / "animation.gif").is_file() and len(list((run_dir / "overlays").glob("*.jpg"))) == 3
    executed = nbformat.read(out_nb, as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "data:image/webp;base64" in outputs or "data:image/gif;base64" in outputs  # the embedded animation
    assert "slice number 1" in outputs and "text/html" in outputs  # the area table
    assert "volume_ml" in outputs
    # no folder chooser when dicom_dir is set
    assert _picker_cell(executed).outputs == []


@pytest.mark.slow
def test_notebook_segments_every_series_of_a_folder(notebook_path, small_case, tmp_path):
    import papermill

    model, scan = small_case
    second = np.full((2, 30, 30), -1000.0)
    second[:, 2:12, 2:7] = 0.0  # 50 px label 1
    write_dicom_series(
        scan,
        second,
        pixel_spacing_mm=(1.0, 1.0),
        slice_thickness_mm=3.0,
        names=["other_1", "other_2"],
        series_description="second",
    )
    out_nb = tmp_path / "test_out.ipynb"
    papermill.execute_notebook(
        str(notebook_path),
        str(out_nb),
        cwd=str(notebook_path.parent),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "labels_list": ["background", "soft", "bright"],
            "model_filename": str(model),
            "dicom_dir": str(scan),
            "output_dir": str(tmp_path / "pred"),
            "previews": False,
        },
    )
    (run_dir,) = (tmp_path / "pred").iterdir()
    areas = pd.read_csv(run_dir / "areas.csv", index_col=0)
    assert list(areas.columns[:3]) == ["series", "series_uid", "series_description"]
    assert list(areas["series"].iloc[:5]) == [1, 1, 1, 2, 2]
    np.testing.assert_allclose(areas["soft"].iloc[:5], [50.0, 50.0, 50.0, 50.0, 50.0])
    assert (run_dir / "animation_series1.gif").is_file() and (run_dir / "animation_series2.gif").is_file()
    volumes = pd.read_csv(run_dir / "volumes.csv")
    assert sorted(volumes["series"].unique()) == [1, 2]
    executed = nbformat.read(out_nb, as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "5 slice(s) of 2 series segmented" in outputs  # 3 + 2 slices, and the summary says so
    assert "series 2 &#x27;second&#x27;" in outputs  # the second series' animation, under its heading
    assert "series_description" in outputs and "volume_ml" in outputs


@pytest.mark.slow
def test_notebook_without_dicom_dir_shows_the_chooser_and_asks_for_a_folder(notebook_path, small_case, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    model, scan = small_case
    out_nb = tmp_path / "test_out.ipynb"
    with pytest.raises(PapermillExecutionError, match="no folder chosen yet: pick the folder in the chooser above"):
        papermill.execute_notebook(
            str(notebook_path),
            str(out_nb),
            cwd=str(notebook_path.parent),
            kernel_name="python3",
            progress_bar=False,
            parameters={
                "model_filename": str(model),
                "input_shape": 32,
                "labels_list": None,
                "dicom_dir": None,
                "browse_from": str(tmp_path),
                "output_dir": str(tmp_path / "pred"),
            },
        )
    executed = nbformat.read(out_nb, as_version=4)
    assert "application/vnd.jupyter.widget-view+json" in json.dumps(_picker_cell(executed).outputs)
    assert not (tmp_path / "pred").exists()


def _picker_cell(nb):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "pick_folder(" in c.source]
    return cell
