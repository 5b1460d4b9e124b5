"""The demo: phantom -> train.ipynb -> test.ipynb -> visualize.ipynb, then the area error.

:func:`run_demo` is what ``ctseg demo`` and ``make demo`` run. It

1. checks the setup (Python, the packages, a Jupyter kernel, the three notebooks and the
   settings each notebook accepts), before any long work;
2. writes the synthetic lumbar CT phantom (:mod:`ctseg_helpers.demo.phantom`) into
   ``data/phantom`` -- or reuses a phantom written there before; a folder that holds anything
   else is never touched;
3. executes the three notebooks with papermill, with short CPU-friendly settings, exactly as a
   user would run them from JupyterLab (the notebooks' own ``parameters`` cell is overridden);
4. compares the areas the trained model measured on the test slices with the phantom's exactly
   known areas.

Everything a run produces is in one new folder (default ``predictions/demo_<timestamp>``)::

    notebooks/train.ipynb, test.ipynb, visualize.ipynb   executed, with their outputs
    model/        checkpoints, demo_best.keras, training history and curves
    segmentation/ the test notebook's run folder: label PNGs, overlays, GIF, areas.csv
    visualize/    the visualize notebook's figures and tables
    area_error.csv                                       measured vs known areas per ROI
    demo_summary.json                                    settings, timings and the area error

The executed notebooks keep the state of their widgets (progress bars, the folder chooser, the
slice browser) in their metadata, so they show as they were when opened in JupyterLab later
(without it JupyterLab shows "Error displaying widget: model not found" in their place); a
widget output without a saved state is reduced to the text the kernel sent with it.

The demo never replaces a file: ``out_dir`` must be new or empty and may not be (or be inside)
the phantom folder it reads. The tables it writes itself are recorded as ctseg's own
(:mod:`ctseg_helpers.io.written`), as training records the models and ``run.json`` lists the
segmentation's files.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.demo.phantom import (
    PHANTOM_INFO,
    PHANTOM_LABELS,
    make_phantom_dataset,
    read_true_areas,
)
from ctseg_helpers.errors import CtsegDataError, CtsegError, CtsegSettingsError
from ctseg_helpers.io.naming import has_dicom_suffix
from ctseg_helpers.io.written import check_outside_inputs, record_written

logger = logging.getLogger(__name__)

#: The folder of the ctseg checkout (holding notebooks/, data/, predictions/).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Notebook -> parameters the demo must be able to set (checked before anything runs).
REQUIRED_PARAMETERS = {
    "train": ("main_dir", "model_filename", "model_dir", "input_shape", "num_labels", "epochs"),
    "test": ("labels_list", "model_filename", "input_shape", "dicom_dir", "output_dir"),
    "visualize": ("dicom_dir", "prediction_dir", "truth_dir", "labels_list", "output_dir"),
}

#: Augmentation overrides for ROIs that differ between the patient's right and left.
_LATERAL_SAFE_AUGMENTATION = {"p_flip": 0.0, "p_rot90": 0.0}

_PACKAGES = ("tensorflow", "keras", "papermill", "ipykernel", "nbformat", "pydicom", "matplotlib")

#: MIME type of a widget in a notebook's outputs, and of the widgets' saved state in its metadata.
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def _cli(help: str, **spelling) -> dict:
    """Field metadata: how ``ctseg demo`` offers the setting (keys: :mod:`ctseg_helpers.cli.options`)."""
    return {"cli": {"help": help, **spelling}}


class DemoError(CtsegError):
    """A step of the demo failed; the message says which, and where its notebook is."""


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is. The defaults finish within 15 minutes on 2 CPU cores.

    Each field's metadata says how ``ctseg demo`` offers it (:mod:`ctseg_helpers.cli.options`).

    Attributes
    ----------
    data_dir : Path or None
        Phantom folder; default ``<repo>/data/phantom``.
    out_dir : Path or None
        New folder for everything the run writes; default ``<repo>/predictions/demo_<timestamp>``.
    n_train, n_test : int
        Phantom slices for training and testing.
    size : int
        Rows and columns of the phantom slices, also the network's ``input_shape``.
    epochs, batch_size, learning_rate, batches_per_epoch
        Training settings passed to train.ipynb (an epoch is ``batches_per_epoch`` batches of
        patches; the learning rate decays over ``epochs`` or ``max_train_minutes``, whichever
        ends first).
    seed : int
        Seed of the phantom (and of training, where the notebook accepts one).
    max_train_minutes : float or None
        Training stops (with a checkpoint) after the epoch that passes this time, so the demo
        keeps to its time on a slow or busy machine; None (or 0) trains all epochs.
    notebooks_dir : Path or None
        Folder holding train/test/visualize.ipynb; default ``<repo>/notebooks``.
    """

    data_dir: Path | None = field(
        default=None, metadata=_cli("phantom folder (default: data/phantom in the checkout)", type="path")
    )
    out_dir: Path | None = field(
        default=None,
        metadata=_cli("new folder for the run (default: predictions/demo_<timestamp>)", flags="--out", type="path"),
    )
    n_train: int = field(
        default=48, metadata=_cli("phantom training slices (default %(default)s)", flags="--slices", type="int")
    )
    n_test: int = field(
        default=12, metadata=_cli("phantom test slices (default %(default)s)", flags="--test-slices", type="int")
    )
    size: int = field(
        default=128,
        metadata=_cli("slice rows/columns and network input shape (multiple of 16; default %(default)s)", type="int"),
    )
    epochs: int = field(default=30, metadata=_cli("training epochs (default %(default)s)", type="int"))
    batch_size: int = field(default=8, metadata=_cli("training batch size (default %(default)s)", type="int"))
    learning_rate: float = field(
        default=2e-3, metadata=_cli("peak Adam learning rate (default %(default)s)", type="float")
    )
    batches_per_epoch: int = field(
        default=50, metadata=_cli("patch batches per epoch (default %(default)s)", type="int")
    )
    seed: int = field(default=0, metadata=_cli("phantom and training seed (default %(default)s)", type="int"))
    max_train_minutes: float | None = field(
        default=8.0,
        metadata=_cli(
            "stop training after the epoch that passes this time (default %(default)s; 0 = no limit)", type="float"
        ),
    )
    notebooks_dir: Path | None = field(
        default=None,
        metadata=_cli(
            "folder holding train/test/visualize.ipynb (default: notebooks/ in the checkout)",
            flags="--notebooks",
            type="path",
        ),
    )

    def __post_init__(self):
        for name in ("n_train", "n_test", "epochs", "batch_size", "batches_per_epoch"):
            if getattr(self, name) < 1:
                raise CtsegSettingsError(f"demo setting {name} must be at least 1, got {getattr(self, name)}")
        if self.max_train_minutes == 0:  # as the command line spells "no limit"
            object.__setattr__(self, "max_train_minutes", None)
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise CtsegSettingsError(
                f"max_train_minutes must be positive, or 0 or None for no limit, got {self.max_train_minutes}"
            )
        if self.size < 32 or self.size % 16:
            raise CtsegSettingsError(
                f"demo size must be a multiple of 16 and at least 32 (the U-Net pools 4 times), got {self.size}"
            )


@dataclass
class DemoResult:
    """Where everything is, and how well the demo model measured the phantom.

    Attributes
    ----------
    out_dir, data_dir, model_path, segmentation_dir, visualize_dir : Path
    notebooks : dict of str to Path
        Executed notebooks by step name (``train``, ``test``, ``visualize``).
    area_csv, animation, area_error_csv : Path
    area_error : pandas.DataFrame
        Per ROI (index): ``true_mean_mm2``, ``measured_mean_mm2``, ``mean_abs_error_mm2``,
        ``mean_abs_error_pct``, ``bias_pct`` (measured minus true, relative) and ``dice``
        (over the whole test stack); last row ``all ROIs`` averages the rows above.
    phantom_created : bool
        False when an existing phantom was reused.
    timings_s : dict of str to float
        Wall-clock seconds per step.
    """

    out_dir: Path
    data_dir: Path
    model_path: Path
    segmentation_dir: Path
    visualize_dir: Path
    notebooks: dict[str, Path]
    area_csv: Path
    animation: Path | None
    area_error_csv: Path
    area_error: pd.DataFrame
    phantom_created: bool
    timings_s: dict[str, float] = field(default_factory=dict)


def run_demo(settings: DemoSettings | None = None, *, progress: bool = True) -> DemoResult:
    """Run the whole demo; see the module docstring for the steps and the output folder.

    Parameters
    ----------
    settings : DemoSettings, optional
    progress : bool
        Show papermill's cell progress bars.

    Returns
    -------
    DemoResult

    Raises
    ------
    CtsegError
        Setup incomplete (missing package, kernel or notebook, a notebook without a setting the
        demo needs), the data folder holding something that is not a phantom, the output
        folder not empty or inside the data folder, or a notebook failing (:class:`DemoError`, naming the saved
        notebook that shows the failing cell).
    """
    settings = settings or DemoSettings()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notebooks_dir = Path(settings.notebooks_dir or REPO_ROOT / "notebooks")
    data_dir = Path(settings.data_dir or REPO_ROOT / "data" / "phantom").resolve()
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    out_dir = Path(settings.out_dir or REPO_ROOT / "predictions" / f"demo_{stamp}").resolve()

    accepted = check_setup(notebooks_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CtsegDataError(
            f"{out_dir} exists and is not empty; the demo writes into a new folder: choose another --out"
        )
    check_outside_inputs(out_dir, {"phantom data (--data-dir)": data_dir}, error_type=CtsegDataError)

    t0 = time.perf_counter()
    created = prepare_phantom(data_dir, settings)
    timings["phantom"] = time.perf_counter() - t0

    nb_out = out_dir / "notebooks"
    model_dir = out_dir / "model"
    seg_dir = out_dir / "segmentation"
    vis_dir = out_dir / "visualize"
    for folder in (nb_out, model_dir, seg_dir, vis_dir):
        folder.mkdir(parents=True, exist_ok=True)
    labels = list(PHANTOM_LABELS)

    t0 = time.perf_counter()
    _execute(
        notebooks_dir,
        "train",
        nb_out,
        accepted["train"],
        {
            "main_dir": str(data_dir),
            "model_filename": "demo",
            "model_dir": str(model_dir),
            "input_shape": settings.size,
            "num_labels": len(labels),
            "label_names": labels,
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "batches_per_epoch": settings.batches_per_epoch,
            "learning_rate": settings.learning_rate,
            "print_checkpoint": max(1, settings.epochs // 10),
            "save_checkpoint": settings.epochs,
            "augment": True,
            # Flips and 90-degree turns would swap the patient's right and left: the phantom labels
            # right and left muscles separately, so only orientation-preserving changes are used.
            "augment_options": dict(_LATERAL_SAFE_AUGMENTATION),
            "max_minutes": settings.max_train_minutes,
            "resume": False,
            "overwrite": False,
            "seed": settings.seed,
        },
        progress,
    )
    timings["train.ipynb"] = time.perf_counter() - t0
    model_path = model_dir / "demo_best.keras"
    if not model_path.is_file():
        raise DemoError(
            f"train.ipynb finished but wrote no {model_path.name} in {model_dir}; "
            f"open {nb_out / 'train.ipynb'} to see what it did"
        )

    fov_mm, matrix = _fov_and_matrix(data_dir)
    t0 = time.perf_counter()
    _execute(
        notebooks_dir,
        "test",
        nb_out,
        accepted["test"],
        {
            "labels_list": labels,
            "model_filename": str(model_path),
            "input_shape": settings.size,
            "fov": fov_mm,
            "matrix_size": matrix,
            "dicom_dir": str(data_dir / "test" / "dicoms"),
            "output_dir": str(seg_dir),
            "run_name": "phantom_test",
        },
        progress,
    )
    timings["test.ipynb"] = time.perf_counter() - t0
    area_csv = _one(seg_dir, "areas.csv", "test.ipynb", nb_out)
    run_dir = area_csv.parent
    animation = next(iter(sorted(run_dir.rglob("*.gif"))), None)
    pred_labels = run_dir / "labels"

    t0 = time.perf_counter()
    _execute(
        notebooks_dir,
        "visualize",
        nb_out,
        accepted["visualize"],
        {
            "dicom_dir": str(data_dir / "test" / "dicoms"),
            "prediction_dir": str(pred_labels),
            "truth_dir": str(data_dir / "test" / "labels"),
            "labels_list": labels,
            "output_dir": str(vis_dir),
        },
        progress,
    )
    timings["visualize.ipynb"] = time.perf_counter() - t0

    error = area_error(area_csv, data_dir / "test", pred_labels)
    error_csv = out_dir / "area_error.csv"
    error.to_csv(error_csv, float_format="%.4g")
    record_written(error_csv)
    timings["total"] = time.perf_counter() - started
    (out_dir / "demo_summary.json").write_text(
        json.dumps(
            {
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
                "data_dir": str(data_dir),
                "phantom_created": created,
                "timings_s": {k: round(v, 1) for k, v in timings.items()},
                "area_error": json.loads(error.to_json(orient="index")),
            },
            indent=2,
        )
    )
    record_written(out_dir / "demo_summary.json")
    return DemoResult(
        out_dir=out_dir,
        data_dir=data_dir,
        model_path=model_path,
        segmentation_dir=run_dir,
        visualize_dir=vis_dir,
        notebooks={k: nb_out / f"{k}.ipynb" for k in REQUIRED_PARAMETERS},
        area_csv=area_csv,
        animation=animation,
        area_error_csv=error_csv,
        area_error=error,
        phantom_created=created,
        timings_s=timings,
    )


def check_setup(notebooks_dir: Path) -> dict[str, set[str]]:
    """Check everything the demo needs before any long work.

    Returns
    -------
    dict
        Notebook step name -> names in its ``parameters`` cell.

    Raises
    ------
    CtsegError
        Naming what is missing and how to get it.
    """
    if sys.version_info < (3, 11):  # noqa: UP036 - the demo may be started with another Python than the package's
        raise CtsegError(f"ctseg needs Python 3.11 or newer, this is {sys.version.split()[0]}; run `make setup`")
    missing = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise CtsegError(
            f"packages missing from this environment: {', '.join(missing)}; "
            "run `make setup` (or `pip install -r requirements.txt`)"
        )
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: PLC0415

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel as exc:
        raise CtsegError(
            "no 'python3' Jupyter kernel found; run `make setup` or `python -m ipykernel install --sys-prefix`"
        ) from exc
    import papermill  # noqa: PLC0415

    accepted = {}
    for step, required in REQUIRED_PARAMETERS.items():
        path = notebooks_dir / f"{step}.ipynb"
        if not path.is_file():
            raise CtsegError(
                f"{path} not found; the demo runs the notebooks of a ctseg checkout: "
                "run it from a clone of the repository (or pass --notebooks DIR)"
            )
        names = set(papermill.inspect_notebook(str(path)))
        lacking = [name for name in required if name not in names]
        if lacking:
            raise CtsegError(
                f"{path}: its 'parameters' cell lacks {', '.join(lacking)}, which the demo "
                "sets; restore the notebook from the repository (git checkout notebooks/)"
            )
        accepted[step] = names
    return accepted


def prepare_phantom(data_dir: Path, settings: DemoSettings) -> bool:
    """Write the phantom into ``data_dir``, or reuse the phantom already there.

    Returns
    -------
    bool
        True when the phantom was written now.

    Raises
    ------
    CtsegDataError
        If ``data_dir`` holds anything but a ctseg phantom (it is never overwritten), or a
        phantom of another size, number of slices or seed.
    """
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        info_path = data_dir / PHANTOM_INFO
        if not info_path.is_file():
            raise CtsegDataError(
                f"{data_dir} already holds data that is not a ctseg phantom; the demo never "
                "overwrites it: pass another --data-dir (e.g. data/phantom_demo)"
            )
        info = json.loads(info_path.read_text())
        if info.get("size") != settings.size:
            raise CtsegDataError(
                f"{data_dir} holds a phantom of {info.get('size')} x {info.get('size')} pixels, not "
                f"{settings.size}; pass --size {info.get('size')} or another --data-dir"
            )
        made = (info.get("n_train"), info.get("n_test"), info.get("seed"))
        if made != (settings.n_train, settings.n_test, settings.seed):
            raise CtsegDataError(
                f"{data_dir} holds a phantom of {made[0]} training and {made[1]} test slices made with seed "
                f"{made[2]}, not {settings.n_train} and {settings.n_test} with seed {settings.seed}; pass "
                f"--slices {made[0]} --test-slices {made[1]} --seed {made[2]} to use it, or another --data-dir "
                "for a new phantom"
            )
        logger.info(
            "demo: using the phantom already in %s (%s training, %s test slices)",
            data_dir,
            info.get("n_train"),
            info.get("n_test"),
        )
        return False
    logger.info("demo: writing the phantom into %s", data_dir)
    make_phantom_dataset(
        data_dir, n_train=settings.n_train, n_test=settings.n_test, size=settings.size, seed=settings.seed
    )
    return True


def area_error(area_csv: Path, truth_split_dir: Path, pred_labels_dir: Path | None = None) -> pd.DataFrame:
    """Compare measured areas with the phantom's exact areas, per ROI.

    Parameters
    ----------
    area_csv : Path
        The segmentation's area table (rows ``slice number 1`` ..., a file-name column, one
        column per ROI name in mm²; summary rows are ignored).
    truth_split_dir : Path
        Phantom split folder with ``true_areas.csv`` and ``labels/``.
    pred_labels_dir : Path, optional
        Predicted label PNGs (same stems); when given, Dice per ROI over the stack is added.

    Returns
    -------
    pandas.DataFrame
        See :attr:`DemoResult.area_error`.

    Raises
    ------
    CtsegDataError
        If the table lacks an ROI column or a file name column, or names files the phantom does
        not have.
    """
    truth = read_true_areas(truth_split_dir)
    table = pd.read_csv(area_csv, index_col=0)
    table = table[table.index.astype(str).str.startswith("slice number")]
    file_col = next(
        (c for c in table.columns if str(c).lower() in ("file", "filename", "file_name", "dicom_file")), None
    )
    if file_col is None:
        raise CtsegDataError(f"{area_csv}: no file name column (file); cannot match slices to the phantom")
    missing = [name for name in PHANTOM_LABELS if name not in table.columns]
    if missing:
        raise CtsegDataError(
            f"{area_csv}: no column for {', '.join(missing)}; the demo expects one column per phantom ROI"
        )
    files = table[file_col].map(lambda f: Path(str(f)).name if has_dicom_suffix(str(f)) else f"{Path(str(f)).name}.dcm")
    unknown = sorted(set(files) - set(truth.index))
    if unknown:
        raise CtsegDataError(f"{area_csv}: {len(unknown)} file(s) the phantom does not have, e.g. {unknown[0]}")
    measured = table[list(PHANTOM_LABELS)].astype(float).to_numpy()
    true = truth.loc[files, list(PHANTOM_LABELS)].astype(float).to_numpy()
    rows = {
        "true_mean_mm2": true.mean(axis=0),
        "measured_mean_mm2": measured.mean(axis=0),
        "mean_abs_error_mm2": np.abs(measured - true).mean(axis=0),
        "mean_abs_error_pct": 100.0 * (np.abs(measured - true) / true).mean(axis=0),
        "bias_pct": 100.0 * ((measured - true) / true).mean(axis=0),
    }
    if pred_labels_dir is not None:
        rows["dice"] = _dice_per_roi(list(files), Path(pred_labels_dir), Path(truth_split_dir) / "labels")
    out = pd.DataFrame(rows, index=list(PHANTOM_LABELS))
    out.loc["all ROIs"] = out.mean(axis=0)
    out.index.name = "roi"
    return out


def _dice_per_roi(files: list[str], pred_dir: Path, truth_dir: Path) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415

    from ctseg_helpers.measure.metrics import dice  # noqa: PLC0415

    stems = [Path(f).stem for f in files]
    for stem in stems:
        if not (pred_dir / f"{stem}.png").is_file():
            raise CtsegDataError(f"{pred_dir}: predicted label {stem}.png not found")
    pred = np.stack([np.asarray(Image.open(pred_dir / f"{s}.png")) for s in stems])
    truth = np.stack([np.asarray(Image.open(truth_dir / f"{s}.png")) for s in stems])
    return np.array([dice(pred == v, truth == v) for v in range(1, len(PHANTOM_LABELS) + 1)])


def _fov_and_matrix(data_dir: Path) -> tuple[float, int]:
    """Field of view (mm) and matrix of the phantom's test series, for the notebook's fallback."""
    info = json.loads((data_dir / PHANTOM_INFO).read_text())
    test = [s for s in info["series"] if s["split"] == "test"][0]
    return float(test["pixel_spacing_mm"] * info["size"]), int(info["size"])


def _execute(notebooks_dir: Path, step: str, nb_out: Path, accepted: set[str], wanted: dict, progress: bool) -> Path:
    import papermill  # noqa: PLC0415
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415

    params = {k: v for k, v in wanted.items() if k in accepted}
    skipped = sorted(set(wanted) - accepted)
    if skipped:
        logger.debug("%s.ipynb has no parameter(s) %s; its defaults apply", step, ", ".join(skipped))
    target = nb_out / f"{step}.ipynb"
    logger.info("demo: running %s.ipynb -> %s", step, target)
    pm_logger = logging.getLogger("papermill")
    level = pm_logger.level
    pm_logger.setLevel(max(level, logging.WARNING))  # its INFO lines repeat what the demo logs
    try:
        # store_widget_state (nbclient's default, set here so that it stays on): the widgets' state
        # goes into the saved notebook's metadata, and JupyterLab can draw them when it is opened
        papermill.execute_notebook(
            str(notebooks_dir / f"{step}.ipynb"),
            str(target),
            parameters=params,
            cwd=str(notebooks_dir),
            kernel_name="python3",
            progress_bar=progress,
            log_output=False,
            store_widget_state=True,
        )
    except PapermillExecutionError as exc:
        raise DemoError(
            f"{step}.ipynb failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}; "
            f"open {target} to see the cell and its output"
        ) from exc
    finally:
        pm_logger.setLevel(level)
        if target.is_file():
            _keep_widgets_displayable(target)
    return target


def _keep_widgets_displayable(path: Path) -> int:
    """Reduce each widget output whose state the notebook lacks to the text sent with it.

    JupyterLab draws a widget output from the state saved in the notebook's metadata; without
    it the output reads "Error displaying widget: model not found". Such an output keeps its
    other representations (the kernel sends a ``text/plain`` one with every widget, e.g. a
    progress bar's text). Returns the number of outputs changed; the file is rewritten only then.
    """
    import nbformat  # noqa: PLC0415

    nb = nbformat.read(path, as_version=4)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW_MIME)
            if view is not None and view.get("model_id") and view["model_id"] not in state:
                del output["data"][WIDGET_VIEW_MIME]
                output["data"].setdefault("text/plain", "(a widget, shown only while the notebook ran)")
                changed += 1
    if changed:
        logger.debug("%s: %d widget output(s) without saved state, kept as text", path, changed)
        nbformat.write(nb, path)
    return changed


def _one(folder: Path, name: str, step: str, nb_out: Path) -> Path:
    found = sorted(folder.rglob(name))
    if not found:
        raise DemoError(f"{step} finished but wrote no {name} under {folder}; open {nb_out / step} to see what it did")
    return found[-1]


def format_summary(result: DemoResult) -> str:
    """Text the command line prints at the end: where everything is, and the area error."""
    err = result.area_error
    lines = [
        "",
        f"ctseg demo finished in {result.timings_s.get('total', float('nan')) / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result.timings_s.items() if k != 'total')})",
        f"  phantom data      {result.data_dir}{'' if result.phantom_created else ' (reused)'}",
        f"  trained model     {result.model_path}",
        f"  segmentation      {result.segmentation_dir}",
        f"  area table        {result.area_csv}",
        f"  animation         {result.animation}",
        f"  visualize output  {result.visualize_dir}",
        "  executed notebooks (open in JupyterLab to see their outputs):",
        *[f"    {path}" for path in result.notebooks.values()],
        "",
        f"Measured area vs the phantom's exact area on the test slices (saved in {result.area_error_csv}):",
        err.to_string(
            formatters={c: (lambda v: f"{v:.3f}") if c == "dice" else (lambda v: f"{v:.1f}") for c in err.columns}
        ),
        "",
        f"Mean absolute area error over the six ROIs: {err.loc['all ROIs', 'mean_abs_error_pct']:.1f} %",
    ]
    return "\n".join(lines)


__all__ = [
    "DemoError",
    "DemoResult",
    "DemoSettings",
    "REQUIRED_PARAMETERS",
    "area_error",
    "check_setup",
    "format_summary",
    "prepare_phantom",
    "run_demo",
]
