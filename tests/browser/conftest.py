"""Fixtures of the browser tests: a working folder with tiny data and notebooks, JupyterLab, Chromium.

The working folder imitates a checkout as a researcher has it (``data/``, ``trained_model/``,
``notebooks/``, ``predictions/``): the three notebooks are copied into ``notebooks/`` with small
settings injected after their ``parameters`` cell (as papermill does), so that the relative
paths of their defaults keep their meaning. It holds a 64 x 64 phantom
(:mod:`ctseg_helpers.demo.phantom`), a tiny saved model (tests/segment/tiny_model.py) and, for
visualize.ipynb, predicted label maps that differ a little from the phantom's true ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.browser.lab import ARTIFACTS, CHROMIUM_ARGS, REPO, LabServer, chromium_path, missing_browser_tools

#: Small settings of each notebook (paths relative to the working folder's notebooks/).
PARAMETERS = {
    "train": {
        "main_dir": "../data/phantom",
        "model_filename": "browser",
        "model_dir": "../trained_model",
        "num_labels": 6,
        "input_shape": 64,
        "epochs": 2,
        "batch_size": 4,
        "batches_per_epoch": 2,
        "levels": 2,
        "base_filters": 4,
        "max_slices": 12,
        "validation_fraction": 0.34,
        "print_checkpoint": 1,
        "save_checkpoint": 2,
    },
    "test": {
        "model_filename": "../trained_model/tiny.keras",
        "labels_list": None,  # the names stored with the model
        "dicom_dir": None,  # the folder chooser
        "browse_from": "../data",
    },
    "visualize": {
        "dicom_dir": "../data/phantom/test/dicoms",
        "prediction_dir": "../data/predicted_labels",
        "truth_dir": "../data/phantom/test/labels",
        "output_dir": "../predictions/visualize",
        "n_grid_samples": 4,
        "histogram_bins": 30,
        "animation_max_frames": 4,
    },
}


@pytest.fixture(scope="session")
def browser_tools() -> None:
    """Skip, saying why, when Playwright or Chromium is missing."""
    reason = missing_browser_tools()
    if reason:
        pytest.skip(reason)


def _write_notebooks(root: Path) -> None:
    from papermill.iorw import load_notebook_node, write_ipynb
    from papermill.parameterize import parameterize_notebook

    from ctseg_helpers.demo.phantom import PHANTOM_LABELS

    parameters = {name: dict(values) for name, values in PARAMETERS.items()}
    parameters["train"]["label_names"] = list(PHANTOM_LABELS)
    parameters["visualize"]["labels_list"] = list(PHANTOM_LABELS)
    # test.ipynb keeps its relative default output_dir ("../predictions") beside the chooser's absolute
    # path: the combination that once failed with "ValueError: ... is not in the subpath of ...".
    (root / "notebooks").mkdir()
    for name, values in parameters.items():
        notebook = parameterize_notebook(load_notebook_node(str(REPO / "notebooks" / f"{name}.ipynb")), values)
        write_ipynb(notebook, str(root / "notebooks" / f"{name}.ipynb"))


def _write_predicted_labels(root: Path) -> None:
    """The phantom's true label maps, changed a little: the vertebral body shifted on slice 2, missing on 4."""
    from PIL import Image

    truth_dir = root / "data" / "phantom" / "test" / "labels"
    out = root / "data" / "predicted_labels"
    out.mkdir()
    for k, path in enumerate(sorted(truth_dir.glob("*.png")), start=1):
        labels = np.asarray(Image.open(path)).copy()
        body = labels == 1
        if k == 2:
            labels[body] = 0
            labels[np.roll(body, 2, axis=1) & (labels == 0)] = 1
        elif k == 4:
            labels[body] = 0
        Image.fromarray(labels).save(out / path.name)


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory, browser_tools, update_screenshots) -> Path:
    """The working folder: tiny data, a tiny model and the notebooks with small settings.

    For the manual's screenshots it is <temp>/ctseg-screenshots/ctseg, a path that reads well in them.
    """
    from ctseg_helpers.demo.phantom import PHANTOM_LABELS, make_phantom_dataset
    from tests.segment.tiny_model import make_tiny_model_file

    if update_screenshots:
        parent = Path(tempfile.gettempdir()) / "ctseg-screenshots"
        shutil.rmtree(parent, ignore_errors=True)
        root = parent / "ctseg"
        root.mkdir(parents=True)
    else:
        root = tmp_path_factory.mktemp("lab")
    make_phantom_dataset(root / "data" / "phantom", n_train=12, n_test=4, size=64, slices_per_patient=4)
    make_tiny_model_file(root / "trained_model" / "tiny.keras", num_labels=6, label_names=PHANTOM_LABELS)
    _write_predicted_labels(root)
    _write_notebooks(root)
    return root


@pytest.fixture(scope="session")
def lab(lab_root) -> LabServer:
    """JupyterLab serving the working folder (stopped after the session)."""
    server = LabServer(lab_root, ARTIFACTS / "jupyterlab.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium(browser_tools):
    """Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path()), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(chromium, lab, request):
    """A fresh browser page; on failure its screenshot is kept in the artefacts folder."""
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"FAILED_{request.node.name}.png"
        page.screenshot(path=str(path))
        print(f"screenshot of the failure: {path}")
    context.close()
    lab.shut_down_kernels()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


@pytest.fixture(scope="session")
def update_screenshots() -> bool:
    """Whether the user manual's screenshots (docs/figures/lab_*.png) are written too."""
    return os.environ.get("CTSEG_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture()
def shots(request) -> Path:
    """This test's screenshot folder, emptied first: tests/browser/artifacts/<test name>/."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
