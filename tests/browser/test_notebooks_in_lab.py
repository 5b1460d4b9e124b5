"""The three notebooks as a researcher sees them in JupyterLab, in a real browser (Chromium).

Each test opens a notebook in JupyterLab, runs it with the menus (choosing the DICOM folder in
test.ipynb's chooser with the mouse), checks what the page shows, then saves, closes (shutting
the kernel down) and reopens it, and checks again: the widgets must show from the state saved
with the notebook, never "Error displaying widget". Screenshots of every step are written to
tests/browser/artifacts/<test name>/; with ``CTSEG_UPDATE_SCREENSHOTS=1`` the user manual's
screenshots (docs/figures/lab_*.png) are written too (``scripts/notebook_screenshots.py``).

They skip, saying why, without Playwright or Chromium (``make test-browser-tools``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from tests.browser.lab import ARTIFACTS, MANUAL_FIGURES, NotebookPage

pytestmark = pytest.mark.slow

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _figure(nb: NotebookPage, update: bool, name: str, element) -> None:
    """A step's screenshot of ``element``, also written as docs/figures/<name> when ``update``."""
    path = nb.shot(Path(name).stem, element)
    if update:
        MANUAL_FIGURES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, MANUAL_FIGURES / name)
        print(f"wrote {MANUAL_FIGURES / name}")


def _check_page(nb: NotebookPage, known_overflow: str | None = None) -> list[str]:
    """No error output, no widget that failed to show, no widget running past its output area.

    Widgets running past it whose CSS classes include ``known_overflow`` (a known problem) are
    returned instead.
    """
    assert nb.error_outputs() == []
    assert nb.widget_errors() == []
    overflowing = nb.outputs_overflowing()
    known = [o for o in overflowing if known_overflow and known_overflow in o]
    assert [o for o in overflowing if o not in known] == []
    return known


def _outputs(notebook) -> list:
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def _widgets_without_state(path: Path) -> list:
    """The widget outputs of the saved notebook at ``path`` whose widget's state was not saved with it."""
    saved = nbformat.read(path, as_version=4)
    state = saved.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [
        o for o in _outputs(saved) if WIDGET_VIEW in o.get("data", {}) and o.data[WIDGET_VIEW].model_id not in state
    ]


def _check_saved(path: Path, widgets: bool = True) -> None:
    """The saved notebook: no error output, and the state of every widget it shows (some, if ``widgets``)."""
    outputs = _outputs(nbformat.read(path, as_version=4))
    assert [o for o in outputs if o.get("output_type") == "error"] == []
    assert _widgets_without_state(path) == []
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs) or not widgets


def _save_close_reopen(nb: NotebookPage) -> None:
    nb.save()
    nb.shot("saved")
    shutil.copy(nb.server.root / nb.path, nb.shots / Path(nb.path).name)  # the saved notebook, for a look
    nb.close_and_shut_down()
    nb.reopen_from_file_browser()
    nb.shot("reopened")


def _done(nb: NotebookPage) -> None:
    print(f"screenshots of {nb.path} in {nb.shots}:")
    for seconds, path in nb.steps:
        print(f"  {seconds:6.1f} s  {path.name}")


def test_segment_a_folder_chosen_with_the_mouse(lab, page, shots, update_screenshots):
    nb = NotebookPage(page, lab, "notebooks/test.ipynb", shots).open()
    nb.shot("opened")
    segment_cell = nb.cell_with("run = run_segmentation(")
    nb.run_above(segment_cell)
    chooser = nb.cell_with("pick_folder(")
    assert "No folder chosen yet." in chooser.inner_text()
    nb.shot("chooser", chooser)
    assert nb.outputs_overflowing() == []

    # data/ -> phantom/ -> test/ -> dicoms/, one click each, then "Use this folder"
    folder_box = chooser.locator(".widget-text input")
    for name in ("phantom", "test", "dicoms"):
        chooser.locator("select option", has_text=f"{name}/").click()
        page.wait_for_function("([box, end]) => box.value.endsWith(end)", arg=[folder_box.element_handle(), f"/{name}"])
    assert "4 of them DICOM files" in chooser.inner_text()
    chooser.get_by_role("button", name="Use this folder").click()
    chosen = lab.root / "data" / "phantom" / "test" / "dicoms"
    chooser.get_by_text(f"Chosen: {chosen}").wait_for()
    _figure(nb, update_screenshots, "lab_test_chooser.png", chooser.locator(".jp-OutputArea"))

    nb.run_from(segment_cell)
    nb.shot("segmented")
    text = nb.text()
    assert "4 slice(s) segmented" in text
    animation = nb.cell_with("run.show_animation()")
    image = animation.locator(".jp-OutputArea img").first
    assert image.get_attribute("src").startswith(("data:image/webp;base64", "data:image/gif;base64"))
    assert image.evaluate("(img) => img.complete && img.naturalWidth > 0")
    nb.shot("animation", animation.locator(".jp-OutputArea"))  # the tiny model's: not one for the manual
    table = nb.cell_with("table_view(run.area_view())").locator(".jp-OutputArea table")
    assert "slice number 1" in table.inner_text() and "phantom_test_0004.dcm" in table.inner_text()
    assert "vertebral body" in table.inner_text() and "std" in table.inner_text()
    _figure(nb, update_screenshots, "lab_test_areas.png", table)
    measures = nb.cell_with("table_view(run.measures_view()").locator(".jp-OutputArea table").inner_text()
    assert "vertebral body_mean_hu" in measures and "uncertainty_entropy" in measures
    check = nb.cell_with("run.slices_to_check(").locator(".jp-OutputArea").inner_text()
    assert "reasons" in check or "phantom_test_" in check
    assert "volume_ml" in nb.cell_with("run.volume_report()").inner_text()
    _check_page(nb)

    _save_close_reopen(nb)
    chooser = nb.cell_with("pick_folder(")
    assert f"Chosen: {chosen}" in chooser.inner_text()  # the chooser, from the saved widget state
    assert "slice number 1" in nb.text()
    _check_page(nb)
    _check_saved(lab.root / "notebooks" / "test.ipynb")
    _done(nb)


def test_train_a_tiny_model(lab, page, shots, update_screenshots):
    nb = NotebookPage(page, lab, "notebooks/train.ipynb", shots).open()
    nb.shot("opened")
    nb.run_all()
    nb.shot("trained")
    text = nb.text()
    assert "GPU enabled:" in text
    assert "Training plan (cpu):" in text
    assert "Completed epochs: 2/2" in text
    assert "Checkpoint -> Model saved at 2/2 epochs" in text
    batch = nb.cell_with("show_batch(").locator(".jp-OutputArea img").first
    assert batch.evaluate("(img) => img.complete && img.naturalWidth > 0")
    curves = nb.cell_with("plot_result(").locator(".jp-OutputArea img").first
    assert curves.evaluate("(img) => img.complete && img.naturalWidth > 0")
    _figure(
        nb, update_screenshots, "lab_train_status.png", nb.cell_with("result = train_model(").locator(".jp-OutputArea")
    )
    nb.shot("curves", nb.cell_with("plot_result(").locator(".jp-OutputArea"))  # 2 epochs: not for the manual
    _check_page(nb)
    assert (lab.root / "trained_model" / "browser_2.keras").is_file()

    _save_close_reopen(nb)
    assert "Completed epochs: 2/2" in nb.text()
    assert nb.error_outputs() == [] and nb.outputs_overflowing() == []
    saved = lab.root / "notebooks" / "train.ipynb"
    # one progress bar serves every epoch and stays (leave=True in a notebook): saved with its state
    assert _widgets_without_state(saved) == []
    _check_page(nb)
    _check_saved(saved)
    _done(nb)


def test_visualize_with_manual_labels(lab, page, shots, update_screenshots):
    nb = NotebookPage(page, lab, "notebooks/visualize.ipynb", shots).open()
    nb.run_all()
    nb.shot("ran")
    assert "a volume: 4 slices 5 mm apart" in nb.text()
    browser = nb.cell_with("browser.case_browser(").locator(".jp-OutputArea")
    assert "1 / 4" in browser.inner_text() and browser.locator("img").count() == 3  # image, prediction, truth
    _figure(nb, update_screenshots, "lab_visualize_browser.png", browser)
    # move the slice slider one step with the keyboard, as a user does after clicking its handle
    browser.locator(".widget-slider .noUi-handle, .jupyter-widget-slider .noUi-handle").first.click()
    page.keyboard.press("ArrowRight")
    browser.get_by_text("2 / 4").wait_for()
    nb.shot("browser_slice_2", browser)
    metrics = nb.cell_with("evaluate_case(").locator(".jp-OutputArea")
    assert "dice" in metrics.inner_text() and "vertebral body" in metrics.inner_text()
    _figure(nb, update_screenshots, "lab_visualize_metrics.png", metrics)
    grid = nb.cell_with("plots.sample_stack_grid(").locator(".jp-OutputArea img").first
    assert grid.evaluate("(img) => img.complete && img.naturalWidth > 0")
    nb.shot("sample_grid", nb.cell_with("plots.sample_stack_grid(").locator(".jp-OutputArea"))
    # the slice browser's ROI check boxes wrap onto a second line rather than run past the output area
    _check_page(nb)
    for name in ("animation.gif", "sample_grid.png", "metrics.csv", "slice_areas.csv", "surfaces_3d.png"):
        assert (lab.root / "predictions" / "visualize" / name).is_file(), name

    _save_close_reopen(nb)
    reopened = nb.cell_with("browser.case_browser(").locator(".jp-OutputArea")
    assert "2 / 4" in reopened.inner_text()  # the slice browser as it was left, from the saved state
    assert reopened.locator("img").count() == 3
    _check_page(nb)
    _check_saved(lab.root / "notebooks" / "visualize.ipynb")
    _done(nb)


def test_artifacts_are_ignored_by_git():
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
    assert "/" + ARTIFACTS.relative_to(Path(__file__).resolve().parents[2]).as_posix() + "/" in ignored
