"""`ctseg demo`: the orchestration with stand-in notebooks, the area error, and the real run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctseg_helpers.cli import main
from ctseg_helpers.demo.phantom import PHANTOM_LABELS, make_phantom_dataset
from ctseg_helpers.demo.run import (
    DemoError,
    DemoSettings,
    area_error,
    check_setup,
    format_summary,
    prepare_phantom,
    run_demo,
)
from ctseg_helpers.errors import CtsegDataError, CtsegError, CtsegSettingsError
from ctseg_helpers.io.written import written_by_ctseg

# Stand-in notebooks: the real notebooks' parameters, and a body that writes what the real
# notebook writes. The "segmentation" copies the true labels, so the measured areas are exact.
_PARAMS = {
    "train": 'main_dir = "../data"\nmodel_filename = "m"\nmodel_dir = "../trained_model"\n'
    "input_shape = 256\nnum_labels = 1\nlabel_names = []\nepochs = 500\nbatch_size = 4\n"
    "learning_rate = 1e-3\nprint_checkpoint = 10\nsave_checkpoint = 100\naugment = True\n"
    "resume = False\noverwrite = False\n",
    "test": 'labels_list = []\nmodel_filename = ""\ninput_shape = 256\nfov = 400\nmatrix_size = 512\n'
    'dicom_dir = ""\noutput_dir = "../predictions"\n',
    "visualize": 'dicom_dir = ""\nprediction_dir = ""\ntruth_dir = None\nlabels_list = []\noutput_dir = ""\n',
}
_BODY = {
    "train": "from pathlib import Path\nimport json\n"
    "Path(model_dir).mkdir(parents=True, exist_ok=True)\n"
    "Path(model_dir, model_filename + '_best.keras').write_text(json.dumps(\n"
    "    dict(main_dir=main_dir, input_shape=input_shape, num_labels=num_labels,\n"
    "         label_names=label_names, epochs=epochs)))\n",
    "test": "from pathlib import Path\nimport shutil\n"
    "from ctseg_helpers.demo.phantom import read_true_areas\n"
    "from ctseg_helpers.measure.area import area_table\n"
    "run = Path(output_dir, 'run_1')\n"
    "shutil.copytree(Path(dicom_dir).parent / 'labels', run / 'labels')\n"
    "t = read_true_areas(Path(dicom_dir).parent)\n"
    "from PIL import Image\nimport numpy as np\n"
    "maps = [np.asarray(Image.open(run / 'labels' / f.replace('.dcm', '.png'))) for f in t.index]\n"
    "sp = (fov / matrix_size, fov / matrix_size)\n"
    "area_table(maps, sp, labels_list, files=list(t.index)).to_csv(run / 'areas.csv')\n"
    "(run / 'animation.gif').write_bytes(b'GIF89a')\n",
    "visualize": "from pathlib import Path\nPath(output_dir, 'seen.txt').write_text(prediction_dir)\n",
}


def _notebook(path, params, body):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def standin_notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for step in _PARAMS:
        _notebook(folder / f"{step}.ipynb", _PARAMS[step], _BODY[step])
    return folder


def _small(tmp_path, notebooks, **kwargs):
    return DemoSettings(
        data_dir=tmp_path / "data" / "phantom",
        out_dir=tmp_path / "out",
        n_train=3,
        n_test=2,
        size=64,
        epochs=2,
        batches_per_epoch=2,
        notebooks_dir=notebooks,
        **kwargs,
    )


@pytest.mark.slow
def test_run_demo_passes_settings_and_measures_the_area_error(tmp_path, standin_notebooks):
    result = run_demo(_small(tmp_path, standin_notebooks), progress=False)
    out = tmp_path / "out"
    assert result.out_dir == out and result.phantom_created
    for step in ("train", "test", "visualize"):
        executed = nbformat.read(out / "notebooks" / f"{step}.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    model = json.loads(result.model_path.read_text())
    assert model == {
        "main_dir": str(tmp_path / "data" / "phantom"),
        "input_shape": 64,
        "num_labels": 6,
        "label_names": list(PHANTOM_LABELS),
        "epochs": 2,
    }
    assert result.area_csv == out / "segmentation" / "run_1" / "areas.csv"
    assert result.animation == out / "segmentation" / "run_1" / "animation.gif"
    assert (out / "visualize" / "seen.txt").read_text() == str(out / "segmentation" / "run_1" / "labels")
    # The stand-in segmentation is perfect: zero area error, Dice 1.
    err = pd.read_csv(result.area_error_csv, index_col=0)
    assert list(err.index) == [*PHANTOM_LABELS, "all ROIs"]
    np.testing.assert_allclose(err["mean_abs_error_mm2"], 0.0, atol=1e-6)
    np.testing.assert_allclose(err["dice"], 1.0)
    summary = json.loads((out / "demo_summary.json").read_text())
    assert written_by_ctseg(result.area_error_csv) and written_by_ctseg(out / "demo_summary.json")
    assert summary["phantom_created"] is True and set(summary["timings_s"]) >= {"train.ipynb", "total"}
    text = format_summary(result)
    assert str(result.model_path) in text and "Mean absolute area error over the six ROIs: 0.0 %" in text

    # A second run reuses the phantom and never touches it.
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "data" / "phantom").rglob("*"))
    again = run_demo(replace(_small(tmp_path, standin_notebooks), out_dir=tmp_path / "out2"), progress=False)
    assert not again.phantom_created
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "data" / "phantom").rglob("*")) == before


@pytest.mark.slow
def test_a_failing_notebook_names_its_saved_copy(tmp_path, standin_notebooks):
    _notebook(standin_notebooks / "train.ipynb", _PARAMS["train"], "raise RuntimeError('no GPU memory')")
    with pytest.raises(
        DemoError, match=r"train.ipynb failed in cell .*RuntimeError: no GPU memory; open .*train.ipynb"
    ):
        run_demo(_small(tmp_path, standin_notebooks), progress=False)
    assert (tmp_path / "out" / "notebooks" / "train.ipynb").is_file()


@pytest.mark.slow
def test_a_notebook_that_writes_no_model_is_reported(tmp_path, standin_notebooks):
    _notebook(standin_notebooks / "train.ipynb", _PARAMS["train"], "x = 1")
    with pytest.raises(DemoError, match="train.ipynb finished but wrote no demo_best.keras"):
        run_demo(_small(tmp_path, standin_notebooks), progress=False)


@pytest.mark.slow
def test_a_segmentation_without_area_table_is_reported(tmp_path, standin_notebooks):
    _notebook(standin_notebooks / "test.ipynb", _PARAMS["test"], "x = 1")
    with pytest.raises(DemoError, match="test.ipynb finished but wrote no areas.csv"):
        run_demo(_small(tmp_path, standin_notebooks), progress=False)


def test_setup_check_needs_the_notebooks(tmp_path, standin_notebooks):
    assert set(check_setup(standin_notebooks)) == {"train", "test", "visualize"}
    with pytest.raises(CtsegError, match="visualize.ipynb not found; the demo runs the notebooks of a ctseg checkout"):
        (standin_notebooks / "visualize.ipynb").unlink()
        check_setup(standin_notebooks)


def test_setup_check_names_missing_parameters(standin_notebooks):
    _notebook(standin_notebooks / "test.ipynb", "labels_list = []\n", "x = 1")
    with pytest.raises(CtsegError, match=r"test.ipynb: its 'parameters' cell lacks model_filename, input_shape"):
        check_setup(standin_notebooks)


def test_output_folder_must_be_new(tmp_path, standin_notebooks):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("mine")
    with pytest.raises(CtsegDataError, match="out exists and is not empty; the demo writes into a new folder"):
        run_demo(_small(tmp_path, standin_notebooks), progress=False)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("inside", ["", "demo_run"])
def test_output_folder_in_the_phantom_folder_is_refused(tmp_path, standin_notebooks, inside):
    settings = replace(_small(tmp_path, standin_notebooks), out_dir=tmp_path / "data" / "phantom" / inside)
    with pytest.raises(
        CtsegDataError,
        match=r"the output folder (is|is inside) the phantom data \(--data-dir\) "
        "folder .*which this command reads",
    ):
        run_demo(settings, progress=False)
    assert not (tmp_path / "data").exists()


def test_prepare_phantom_never_overwrites_user_data(tmp_path):
    data = tmp_path / "phantom"
    (data / "train" / "dicoms").mkdir(parents=True)
    (data / "train" / "dicoms" / "scan.dcm").write_bytes(b"a user's scan")
    with pytest.raises(
        CtsegDataError, match="already holds data that is not a ctseg phantom; the demo never overwrites"
    ):
        prepare_phantom(data, DemoSettings(size=64))
    assert (data / "train" / "dicoms" / "scan.dcm").read_bytes() == b"a user's scan"


def test_prepare_phantom_reuses_a_phantom_of_the_same_settings_only(tmp_path):
    data = tmp_path / "phantom"
    assert prepare_phantom(data, DemoSettings(size=64, n_train=2, n_test=1)) is True
    assert prepare_phantom(data, DemoSettings(size=64, n_train=2, n_test=1)) is False
    with pytest.raises(CtsegDataError, match="holds a phantom of 64 x 64 pixels, not 128; pass --size 64"):
        prepare_phantom(data, DemoSettings(size=128))
    # asked for other slices or another seed: never a silent reuse of the phantom that is there
    message = (
        "holds a phantom of 2 training and 1 test slices made with seed 0, not 4 and 1 with seed 0; pass "
        "--slices 2 --test-slices 1 --seed 0 to use it, or another --data-dir for a new phantom"
    )
    with pytest.raises(CtsegDataError, match=message):
        prepare_phantom(data, DemoSettings(size=64, n_train=4, n_test=1))
    with pytest.raises(CtsegDataError, match="made with seed 0, not 2 and 1 with seed 3"):
        prepare_phantom(data, DemoSettings(size=64, n_train=2, n_test=1, seed=3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(epochs=0), "epochs must be at least 1"),
        (dict(n_test=0), "n_test must be at least 1"),
        (dict(size=72), "multiple of 16 and at least 32"),
        (dict(size=16), "multiple of 16 and at least 32"),
    ],
)
def test_demo_settings_are_checked(kwargs, message):
    with pytest.raises(CtsegSettingsError, match=message):
        DemoSettings(**kwargs)


@pytest.fixture(scope="module")
def phantom_test_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("ph") / "phantom"
    make_phantom_dataset(out, n_train=1, n_test=3, size=32, seed=1)
    return out / "test"


def _measured(split, scale=1.0, file_col="file"):
    truth = pd.read_csv(split / "true_areas.csv", index_col=0)
    table = truth.rename(columns={"file": file_col})
    rows = table.index.str.startswith("slice number")
    table.loc[rows, list(PHANTOM_LABELS)] = table.loc[rows, list(PHANTOM_LABELS)].astype(float) * scale
    return table


def test_area_error_is_exact_for_a_known_bias(tmp_path, phantom_test_split):
    csv = tmp_path / "areas.csv"
    _measured(phantom_test_split, scale=1.1).to_csv(csv)
    err = area_error(csv, phantom_test_split)
    np.testing.assert_allclose(err["mean_abs_error_pct"], 10.0)
    np.testing.assert_allclose(err["bias_pct"], 10.0)
    np.testing.assert_allclose(err["measured_mean_mm2"], 1.1 * err["true_mean_mm2"])
    assert "dice" not in err.columns


def test_area_error_adds_dice_from_label_maps(tmp_path, phantom_test_split):
    csv = tmp_path / "areas.csv"
    _measured(phantom_test_split).to_csv(csv)
    pred = tmp_path / "labels"
    shutil.copytree(phantom_test_split / "labels", pred)
    first = sorted(pred.glob("*.png"))[0]
    Image.fromarray(np.zeros_like(np.asarray(Image.open(first)))).save(first)  # one empty prediction
    err = area_error(csv, phantom_test_split, pred)
    assert (err.loc[list(PHANTOM_LABELS), "dice"] < 1.0).all()
    assert (err.loc[list(PHANTOM_LABELS), "dice"] > 0.3).all()
    first.unlink()
    with pytest.raises(CtsegDataError, match=f"predicted label {first.name} not found"):
        area_error(csv, phantom_test_split, pred)


def test_area_error_explains_a_table_it_cannot_use(tmp_path, phantom_test_split):
    csv = tmp_path / "areas.csv"
    _measured(phantom_test_split, file_col="image").to_csv(csv)
    with pytest.raises(CtsegDataError, match="no file name column"):
        area_error(csv, phantom_test_split)
    _measured(phantom_test_split).drop(columns=["subcutaneous fat"]).to_csv(csv)
    with pytest.raises(CtsegDataError, match="no column for subcutaneous fat"):
        area_error(csv, phantom_test_split)
    table = _measured(phantom_test_split)
    table.iloc[0, 0] = "someone_else.dcm"
    table.to_csv(csv)
    with pytest.raises(CtsegDataError, match="1 file\\(s\\) the phantom does not have, e.g. someone_else.dcm"):
        area_error(csv, phantom_test_split)


def test_cli_reports_a_bad_setting_as_one_line(capsys):
    assert main(["demo", "--size", "50"]) == 2
    assert "error: demo size must be a multiple of 16" in capsys.readouterr().err


@pytest.mark.slow
def test_ctseg_demo_runs_the_real_notebooks_end_to_end(tmp_path, repo_root, capsys):
    notebooks = repo_root / "notebooks"
    absent = [n for n in ("train", "test", "visualize") if not (notebooks / f"{n}.ipynb").is_file()]
    if absent:
        pytest.skip(f"notebooks not in this checkout yet: {', '.join(absent)}")
    out = tmp_path / "demo"
    status = main(
        [
            "demo",
            "--data-dir",
            str(tmp_path / "phantom"),
            "--out",
            str(out),
            "--slices",
            "6",
            "--test-slices",
            "3",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--size",
            "64",
            "--no-progress",
            "--batches-per-epoch",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    for step in ("train", "test", "visualize"):
        executed = nbformat.read(out / "notebooks" / f"{step}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), step
    assert (out / "model" / "demo_best.keras").is_file()
    area_csv = next((out / "segmentation").rglob("areas.csv"))
    run_dir = area_csv.parent
    assert len(list((run_dir / "labels").glob("*.png"))) == 3
    assert list(run_dir.rglob("*.gif"))
    table = pd.read_csv(area_csv, index_col=0)
    assert set(PHANTOM_LABELS) <= set(table.columns)
    err = pd.read_csv(out / "area_error.csv", index_col=0)
    assert list(err.index) == [*PHANTOM_LABELS, "all ROIs"]
    assert np.isfinite(err["mean_abs_error_mm2"]).all()
    assert str(out / "model" / "demo_best.keras") in printed
    assert "Mean absolute area error over the six ROIs" in printed


def test_max_train_minutes_must_be_positive_or_0_or_none_for_no_limit():
    with pytest.raises(CtsegSettingsError, match="max_train_minutes must be positive, or 0 or None for no limit"):
        DemoSettings(max_train_minutes=-1)
    assert DemoSettings(max_train_minutes=None).max_train_minutes is None
    assert DemoSettings(max_train_minutes=0).max_train_minutes is None


def test_setup_check_names_an_old_python(monkeypatch, standin_notebooks):
    import ctseg_helpers.demo.run as run_module

    monkeypatch.setattr(run_module.sys, "version_info", (3, 10, 4))
    with pytest.raises(CtsegError, match="ctseg needs Python 3.11 or newer"):
        check_setup(standin_notebooks)


def test_setup_check_names_missing_packages(monkeypatch, standin_notebooks):
    import ctseg_helpers.demo.run as run_module

    real = run_module.importlib.util.find_spec
    monkeypatch.setattr(
        run_module.importlib.util, "find_spec", lambda name, *a: None if name == "papermill" else real(name, *a)
    )
    with pytest.raises(CtsegError, match="packages missing from this environment: papermill; run `make setup`"):
        check_setup(standin_notebooks)


def test_setup_check_needs_a_jupyter_kernel(monkeypatch, standin_notebooks):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def no_kernel(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", no_kernel)
    with pytest.raises(CtsegError, match="no 'python3' Jupyter kernel found"):
        check_setup(standin_notebooks)


def test_executed_notebooks_keep_the_state_of_their_widgets(tmp_path):
    from ctseg_helpers.demo.run import WIDGET_STATE_MIME, WIDGET_VIEW_MIME, _execute

    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(
        folder / "widgets.ipynb",
        "steps = 1\n",
        "import ipywidgets\nfrom IPython.display import display\nfrom tqdm.auto import tqdm\n"
        "display(ipywidgets.IntProgress(value=3, max=5))\n"
        "for _ in tqdm(range(steps), desc='steps'):\n    pass\n",
    )
    out = tmp_path / "out"
    out.mkdir()
    executed = nbformat.read(_execute(folder, "widgets", out, {"steps"}, {"steps": 3}, progress=False), as_version=4)
    state = executed.metadata["widgets"][WIDGET_STATE_MIME]["state"]
    shown = [
        output.data[WIDGET_VIEW_MIME]["model_id"]
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if WIDGET_VIEW_MIME in output.get("data", {})
    ]
    assert len(shown) == 2 and all(model_id in state for model_id in shown)
    assert {state[model_id]["model_name"] for model_id in shown} == {"IntProgressModel", "HBoxModel"}  # tqdm: HBox
    bar = next(state[m]["state"] for m in state if state[m]["model_name"] == "FloatProgressModel")
    assert bar["value"] == bar["max"] == 3


def test_a_widget_output_without_saved_state_keeps_its_text(tmp_path):
    from ctseg_helpers.demo.run import WIDGET_STATE_MIME, WIDGET_VIEW_MIME, _keep_widgets_displayable

    def view(model_id, text):
        return nbformat.v4.new_output(
            "display_data",
            data={WIDGET_VIEW_MIME: {"model_id": model_id, "version_major": 2, "version_minor": 0}, "text/plain": text},
        )

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("bars")]
    nb.cells[0].outputs = [
        view("closed", "steps: 100%|##########| 3/3"),
        view("kept", "IntProgress(value=3, max=5)"),
        view("", "hidden on purpose"),
    ]
    nb.metadata["widgets"] = {
        WIDGET_STATE_MIME: {
            "version_major": 2,
            "version_minor": 0,
            "state": {
                "kept": {
                    "model_name": "IntProgressModel",
                    "model_module": "@jupyter-widgets/controls",
                    "model_module_version": "2.0.0",
                    "state": {"value": 3, "max": 5},
                }
            },
        }
    }
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    assert _keep_widgets_displayable(path) == 1
    closed, kept, hidden = nbformat.read(path, as_version=4).cells[0].outputs
    assert dict(closed.data) == {"text/plain": "steps: 100%|##########| 3/3"}
    assert kept.data[WIDGET_VIEW_MIME]["model_id"] == "kept" and hidden.data[WIDGET_VIEW_MIME]["model_id"] == ""
    assert _keep_widgets_displayable(path) == 0
