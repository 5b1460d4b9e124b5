"""Segment a DICOM folder and write everything a user looks at, in one run folder.

:func:`run_segmentation` is the one entry point used by ``test.ipynb``, ``ctseg segment`` and
the demo. It checks the user's settings against the model before any work, reads the series,
segments it with :class:`~ctseg_helpers.segment.segmenter.Segmenter`, measures the ROI areas
at native resolution and writes, under ``out_dir/<folder name>_<YYYYmmdd-HHMMSS>/``::

    labels/<dicom name>.png     label map per slice, lossless, values 0..N (0 = background)
    overlays/<dicom name>.jpg   preview: the slice with coloured ROIs
    animation.gif               all slices with the coloured ROIs and a legend
    areas.csv                   ROI area per slice (mm²) with mean and std rows
    volumes.csv                 ROI volumes (mL), only when the slices form a 3D stack
    run.json                    what was run: model, settings, source folder, outputs

Existing runs are never touched: each run gets a new folder. With ``overwrite=True`` the run
goes to ``out_dir/<folder name>/`` and replaces the files an earlier run wrote there (other
files in that folder are left alone). Outputs carry no patient name or ID from the DICOM
headers unless asked (``include_patient_id``); they are named after the DICOM folder and files,
so pass ``run_name`` when the folder's name itself identifies the patient.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError

logger = logging.getLogger(__name__)

#: File name suffixes of DICOM files dropped when naming outputs after them.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")

LABELS_SUBDIR = "labels"
OVERLAYS_SUBDIR = "overlays"
AREAS_CSV = "areas.csv"
VOLUMES_CSV = "volumes.csv"
ANIMATION_GIF = "animation.gif"
RUN_JSON = "run.json"


def output_stem(dicom_path: str | Path) -> str:
    """Name of a slice's outputs: the DICOM file name without a DICOM suffix.

    ``IM_0001.dcm`` -> ``IM_0001``; names without a DICOM suffix are kept whole
    (``1.2.840.113619.2.1`` stays as it is, ``IM0001`` too).
    """
    name = Path(dicom_path).name
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in DICOM_SUFFIXES else name


def output_stems(files: Sequence[str | Path]) -> list[str]:
    """:func:`output_stem` of each file, made unique (``name``, ``name_2``, ...) with a warning."""
    bases = [output_stem(path) for path in files]
    taken = set(bases)  # a new name must not be another file's own name (its PNG would be overwritten)
    stems, used = [], set()
    for stem in bases:
        if stem in used:
            k = 2
            while f"{stem}_{k}" in taken or f"{stem}_{k}" in used:
                k += 1
            logger.warning("two DICOM files are both named %s; the second one's outputs are named %s_%d",
                           stem, stem, k)
            stem = f"{stem}_{k}"
        used.add(stem)
        stems.append(stem)
    return stems


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "series"


def make_run_dir(out_dir: str | Path, name: str, *, overwrite: bool = False, now: _dt.datetime | None = None) -> Path:
    """Create the folder of one run.

    Parameters
    ----------
    out_dir : path
        Parent folder (``predictions``), created if needed.
    name : str
        Run name, usually the DICOM folder's name; unsafe characters become ``_``.
    overwrite : bool
        False: a new folder ``<name>_<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... appended if that
        exists). True: the folder ``<name>``, reused; the outputs of an earlier run in it are
        removed, nothing else.

    Raises
    ------
    CtsegSettingsError
        If ``out_dir`` (or the run folder) exists and is not a folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CtsegSettingsError(f"{out_dir}: output folder is a file; choose a folder for the predictions")
    base = _safe_name(name)
    if overwrite:
        run_dir = out_dir / base
        if run_dir.exists() and not run_dir.is_dir():
            raise CtsegSettingsError(f"{run_dir}: exists and is not a folder; remove it or choose another output folder")
        _remove_previous_outputs(run_dir)
    else:
        stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        run_dir = out_dir / f"{base}_{stamp}"
        counter = 1
        while run_dir.exists():
            counter += 1
            run_dir = out_dir / f"{base}_{stamp}-{counter}"
    (run_dir / LABELS_SUBDIR).mkdir(parents=True, exist_ok=True)
    return run_dir


def _remove_previous_outputs(run_dir: Path) -> None:
    """Delete exactly the files an earlier ctseg run recorded in ``run_dir/run.json``.

    Anything else in the folder stays. A non-empty folder without such a record (a folder
    ctseg never wrote, or one written by a ctseg that did not record its files) is refused, so
    ``overwrite`` can never delete a user's own files.
    """
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    files = _recorded_files(run_dir)
    root = run_dir.resolve()
    removed = 0
    for relative in files:
        path = (run_dir / relative).resolve()
        if root not in path.parents:  # a record naming files outside its own folder is ignored
            continue
        if path.is_file():
            path.unlink()
            removed += 1
    if removed:
        logger.info("%s: replaced %d file(s) of an earlier run (overwrite=True)", run_dir, removed)


def _recorded_files(run_dir: Path) -> list[str]:
    record_path = run_dir / RUN_JSON
    try:
        record = json.loads(record_path.read_text())
        files = record["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError("files is not a list of names")
    except (OSError, ValueError, KeyError, TypeError):
        raise CtsegSettingsError(
            f"{run_dir}: holds files that no ctseg run recorded (no {RUN_JSON} listing what it wrote); overwrite "
            "replaces only the files of an earlier ctseg run, so nothing was changed. Choose another run name "
            "or output folder, or move those files away"
        ) from None
    return files


def write_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label map as a lossless 8-bit greyscale PNG holding the label values 0..N.

    Raises
    ------
    CtsegDataError
        If ``labels`` is not 2D or holds values outside 0..255.
    """
    from PIL import Image  # noqa: PLC0415

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CtsegDataError(f"{path}: a label map must be 2D (M, N), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise CtsegDataError(f"{path}: label values {labels.min()}..{labels.max()} do not fit an 8-bit PNG (0..255)")
    path = Path(path)
    Image.fromarray(labels.astype(np.uint8)).save(path, format="PNG", optimize=False, compress_level=3)
    return path


def write_overlay_jpg(
    path: str | Path, image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.45, quality: int = 90
) -> Path:
    """Write a JPG preview: the grey slice with the ROIs in their label colours (show/colors.py)."""
    from PIL import Image  # noqa: PLC0415

    from ctseg_helpers.show.colors import overlay  # noqa: PLC0415

    rgb = np.round(overlay(image, labels, alpha) * 255).astype(np.uint8)
    path = Path(path)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality)
    return path


def write_table_csv(table: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write an area or volume table as CSV (index included, 4 decimals).

    Raises
    ------
    CtsegSettingsError
        If the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CtsegSettingsError(f"{path} exists already; choose another file name or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, float_format="%.4f")
    return path


@dataclass
class SegmentationRun:
    """What :func:`run_segmentation` produced.

    Attributes
    ----------
    run_dir : Path
        The run's folder.
    files : list of Path
        Source DICOM files, in stacking order.
    label_paths, overlay_paths : list of Path
        One label PNG and one preview JPG per slice (``overlay_paths`` empty without previews).
    areas : pandas.DataFrame
        Area table (mm²), see :func:`ctseg_helpers.measure.area.area_table`.
    volumes : pandas.DataFrame or None
        ROI volumes (mL) when the slices form a 3D stack.
    areas_csv, volumes_csv, animation_gif, run_json : Path or None
    label_names : tuple of str
    images : ndarray of shape (K, M, N), float32
        The slices as read (rescaled values).
    labels : ndarray of shape (K, M, N), uint8
        The label maps.
    pixel_spacing_mm : ndarray of shape (K, 2)
        Spacing used for the areas.
    """

    run_dir: Path
    files: list[Path]
    label_paths: list[Path]
    overlay_paths: list[Path]
    areas: pd.DataFrame
    volumes: pd.DataFrame | None
    areas_csv: Path
    volumes_csv: Path | None
    animation_gif: Path | None
    run_json: Path
    label_names: tuple[str, ...]
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_spacing_mm: np.ndarray = field(repr=False)
    volume_note: str = ""

    def animation_html(self, **kwargs) -> str:
        """The slices with their ROIs as an interactive HTML animation (for a notebook)."""
        from ctseg_helpers.show.animation import make_animation, to_html  # noqa: PLC0415

        anim = make_animation(self.images, self.labels, list(self.label_names), title=self.run_dir.name, **kwargs)
        return to_html(anim)

    def show_animation(self, **kwargs):
        """Display object of :meth:`animation_html` (the last line of a notebook cell shows it)."""
        from IPython.display import HTML  # noqa: PLC0415

        return HTML(self.animation_html(**kwargs))

    def volume_report(self):
        """The volume table (mL), or a sentence saying why there is none (for a notebook)."""
        if self.volumes is not None:
            return self.volumes
        from IPython.display import Markdown  # noqa: PLC0415

        return Markdown(f"No ROI volumes: {self.volume_note}.")

    def summary(self) -> str:
        """A few lines saying what was written where."""
        lines = [f"{len(self.files)} slice(s) segmented -> {self.run_dir}",
                 f"  label maps: {self.run_dir / LABELS_SUBDIR}/ (PNG, values 0..{len(self.label_names)})"]
        if self.overlay_paths:
            lines.append(f"  previews:   {self.run_dir / OVERLAYS_SUBDIR}/ (JPG)")
        if self.animation_gif:
            lines.append(f"  animation:  {self.animation_gif}")
        lines.append(f"  areas (mm2): {self.areas_csv}")
        if self.volumes_csv:
            lines.append(f"  volumes (mL): {self.volumes_csv}")
        return "\n".join(lines)


def check_settings(
    model_settings,
    *,
    labels_list: Sequence[str] | None = None,
    input_shape: int | None = None,
    source: str | Path = "model",
) -> tuple[str, ...]:
    """Check the user's settings against a model's stored settings; return the ROI names.

    Parameters
    ----------
    model_settings : ModelSettings
    labels_list : sequence of str, optional
        ROI names (background excluded); default: the names stored with the model, else
        ``ROI 1``, ``ROI 2``, ...
    input_shape : int, optional
        The input size the user expects; must equal the model's.

    Raises
    ------
    CtsegSettingsError
        If ``input_shape`` or the number of names differs from the model's, stating both values.
    """
    if input_shape is not None and int(input_shape) != model_settings.input_shape:
        raise CtsegSettingsError(
            f"{source}: input_shape={input_shape} in your settings but the model was trained with "
            f"input_shape={model_settings.input_shape}; set input_shape = {model_settings.input_shape}"
        )
    if labels_list is None:
        names = tuple(model_settings.label_names) or tuple(f"ROI {i + 1}" for i in range(model_settings.num_labels))
    else:
        if isinstance(labels_list, str):
            raise CtsegSettingsError(
                f"labels_list must be a list of names, e.g. ['{labels_list}'], got the string {labels_list!r}"
            )
        names = tuple(str(n) for n in labels_list)
        if len(names) != model_settings.num_labels:
            raise CtsegSettingsError(
                f"{source}: labels_list has {len(names)} name(s) {list(names)} but the model was trained with "
                f"{model_settings.num_labels} label(s)"
                + (f" {list(model_settings.label_names)}" if model_settings.label_names else "")
                + "; give one name per ROI, background excluded"
            )
        stored = tuple(model_settings.label_names)
        if stored and names != stored:
            logger.warning("%s: labels_list %s differs from the names the model was trained with %s; using yours",
                           source, list(names), list(stored))
    from ctseg_helpers.measure.area import _check_names  # noqa: PLC0415

    _check_names(names)
    return names


def run_segmentation(
    model_path: str | Path,
    dicom_dir: str | Path,
    out_dir: str | Path = "predictions",
    labels_list: Sequence[str] | None = None,
    fov: float | Sequence[float] | None = None,
    matrix_size: int | Sequence[int] | None = None,
    *,
    input_shape: int | None = None,
    series_uid: str | None = None,
    mode: str | None = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 8,
    tta: bool = False,
    overwrite: bool = False,
    run_name: str | None = None,
    previews: bool = True,
    animation: bool = True,
    include_patient_id: bool = False,
    progress: bool = True,
    segmenter=None,
) -> SegmentationRun:
    """Segment a DICOM series with a trained model and write label maps, previews, animation and areas.

    Parameters
    ----------
    model_path : path
        A ``.keras`` model saved by ctseg (loaded in Keras safe mode).
    dicom_dir : path
        Folder holding one DICOM series (or pass ``series_uid``).
    out_dir : path
        Parent folder of the run folders (``predictions``).
    labels_list : sequence of str, optional
        ROI names, label 1 first; must have one name per ROI the model knows.
    fov, matrix_size : optional
        Field of view (mm) and image size (pixels), used when a slice has no PixelSpacing.
    input_shape : int, optional
        Checked against the model's input size when given.
    mode, overlap, blend, batch_size, tta
        See :class:`~ctseg_helpers.segment.segmenter.Segmenter`; ``mode`` defaults to the
        model's training fit.
    overwrite : bool
        Write to ``out_dir/<name>`` replacing an earlier run's outputs there, instead of a new
        time-stamped folder.
    run_name : str, optional
        Name of the run folder (default: the DICOM folder's name).
    previews, animation : bool
        Write the JPG previews / the animated GIF.
    include_patient_id : bool
        Record the DICOM PatientID in ``run.json`` (off by default).
    progress : bool
        Show a progress bar.
    segmenter : Segmenter, optional
        A Segmenter already built from ``model_path`` (:meth:`Segmenter.from_model_file`), to
        segment many folders with one model load; ``mode`` ... ``tta`` are then its own.

    Returns
    -------
    SegmentationRun

    Raises
    ------
    CtsegSettingsError
        Settings that disagree with the model (before anything is read or written).
    CtsegDataError
        An unusable model file or DICOM folder, or slices without spacing and no ``fov``.
    """
    from ctseg_helpers.io.dicom import read_dicom_series  # noqa: PLC0415
    from ctseg_helpers.measure.area import _rows, area_table, pixel_spacings_mm, volume_table  # noqa: PLC0415
    from ctseg_helpers.segment.ensemble import read_ensemble_settings  # noqa: PLC0415
    from ctseg_helpers.segment.segmenter import Segmenter, mode_for_fit  # noqa: PLC0415

    model_path = Path(model_path)
    settings = read_ensemble_settings(model_path)
    names = check_settings(settings, labels_list=labels_list, input_shape=input_shape, source=model_path)
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise CtsegDataError(f"{dicom_dir}: DICOM folder not found; pick the folder that holds the scan's .dcm files")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CtsegSettingsError(f"{out_dir}: output folder is a file; choose a folder for the predictions")
    name = run_name or dicom_dir.resolve().name
    if overwrite and (out_dir / _safe_name(name)).resolve() == dicom_dir.resolve():
        # overwrite reuses out_dir/<name>: that would write into (and clear labels/*.png of) the scan's folder
        raise CtsegSettingsError(
            f"{dicom_dir}: with overwrite the run folder would be the DICOM folder itself, and files there "
            "(e.g. manual label maps in labels/) would be replaced; choose another output folder or a run_name"
        )
    if dicom_dir.resolve() in (out_dir.resolve(), *out_dir.resolve().parents):
        raise CtsegSettingsError(
            f"{out_dir}: the output folder is inside the DICOM folder {dicom_dir} being segmented; predictions "
            "are never written into a folder the run reads: choose an output folder outside it"
        )

    series = read_dicom_series(dicom_dir, series_uid=series_uid, progress=progress)
    images = np.asarray(series.images, dtype=np.float32)
    files = [Path(f) for f in series.files]
    n_slices = len(files)
    spacings = pixel_spacings_mm(
        _rows(series.pixel_spacing_mm, n_slices, 2), images.shape[1:], fov=fov, matrix_size=matrix_size, source=dicom_dir
    )
    positions = _rows(series.positions_mm, n_slices)
    stems = output_stems(files)

    if segmenter is None:
        segmenter = Segmenter.from_model_file(
            model_path, mode=mode or mode_for_fit(settings.fit_mode), overlap=overlap, blend=blend,
            batch_size=batch_size, tta=tta,
        )
    elif (segmenter.input_shape, segmenter.num_classes) != (settings.input_shape, settings.num_labels + 1):
        raise CtsegSettingsError(
            f"the segmenter given takes input_shape={segmenter.input_shape} with {segmenter.num_classes} classes "
            f"but {model_path} has input_shape={settings.input_shape} with {settings.num_labels + 1}: "
            "build it with Segmenter.from_model_file(model_path)"
        )
    labels = segmenter.segment(images, pixel_spacing_mm=spacings, progress=progress)

    run_dir = make_run_dir(out_dir, name, overwrite=overwrite)
    label_paths = [
        write_label_png(run_dir / LABELS_SUBDIR / f"{stem}.png", lab) for stem, lab in zip(stems, labels, strict=True)
    ]
    overlay_paths = []
    if previews:
        (run_dir / OVERLAYS_SUBDIR).mkdir(exist_ok=True)
        overlay_paths = [
            write_overlay_jpg(run_dir / OVERLAYS_SUBDIR / f"{stem}.jpg", image, lab)
            for stem, image, lab in zip(stems, images, labels, strict=True)
        ]

    areas = area_table(labels, spacings, names, files=files, positions_mm=positions)
    areas_csv = write_table_csv(areas, run_dir / AREAS_CSV)
    slice_spacing = series.slice_spacing_mm if series.is_volume else None
    volumes = volume_table(areas, slice_spacing) if slice_spacing else None
    volume_note = "" if volumes is not None else _no_volume_reason(series, n_slices)
    volumes_csv = write_table_csv(volumes, run_dir / VOLUMES_CSV) if volumes is not None else None

    animation_gif = None
    if animation and n_slices:
        from ctseg_helpers.show.animation import make_animation, save_gif  # noqa: PLC0415

        anim = make_animation(images, labels, list(names), title=run_dir.name)
        animation_gif = save_gif(anim, run_dir / ANIMATION_GIF)

    record = {
        "ctseg_version": _version(),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "model": str(model_path.resolve()),
        "model_settings": settings.to_dict(),
        "dicom_dir": str(dicom_dir.resolve()),
        "series_uid": getattr(series, "series_uid", None),
        "series_description": getattr(series, "series_description", None),
        "n_slices": n_slices,
        "label_names": list(names),
        "segmenter": {"mode": segmenter.mode, "overlap": segmenter.overlap, "blend": segmenter.blend,
                      "batch_size": segmenter.batch_size, "tta": segmenter.tta,
                      "target_spacing_mm": segmenter.target_spacing_mm,
                      "postprocessing": segmenter.postprocessing.to_dict() if segmenter.postprocessing else None},
        "fov": fov,
        "matrix_size": matrix_size,
        "slice_spacing_mm": slice_spacing,
        "skipped_files": [[str(p), str(reason)] for p, reason in (getattr(series, "skipped", None) or [])],
        "outputs": {"labels": LABELS_SUBDIR, "overlays": OVERLAYS_SUBDIR if previews else None, "areas": AREAS_CSV,
                    "volumes": VOLUMES_CSV if volumes_csv else None, "animation": ANIMATION_GIF if animation_gif else None},
    }
    if include_patient_id:
        from ctseg_helpers.io.dicom import read_dicom_file  # noqa: PLC0415

        record["patient_id"] = read_dicom_file(files[0]).patient_id if files else None
    written = [*label_paths, *overlay_paths, areas_csv, volumes_csv, animation_gif]
    record["files"] = sorted(str(Path(p).relative_to(run_dir).as_posix()) for p in written if p is not None)
    record["files"].append(RUN_JSON)
    run_json = run_dir / RUN_JSON
    tmp = run_dir / (RUN_JSON + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default))
    tmp.replace(run_json)  # atomic: a record is either the old one or the whole new one
    logger.info("segmentation of %s written to %s", dicom_dir, run_dir)
    return SegmentationRun(
        run_dir=run_dir, files=files, label_paths=label_paths, overlay_paths=overlay_paths, areas=areas,
        volumes=volumes, areas_csv=areas_csv, volumes_csv=volumes_csv, animation_gif=animation_gif,
        run_json=run_json, label_names=names, images=images, labels=labels, pixel_spacing_mm=spacings,
        volume_note=volume_note,
    )


def _no_volume_reason(series, n_slices: int) -> str:
    if n_slices < 2:
        return "a single slice has no volume"
    if getattr(series, "n_phases", 1) > 1:
        return (f"the series is a cine series ({series.n_positions} slice positions x {series.n_phases} phases), "
                "not one 3D stack")
    if np.isnan(np.asarray(series.positions_mm, dtype=float)).any():
        return "the slice positions are unknown (no ImagePositionPatient/ImageOrientationPatient)"
    return "the slice positions are not equally spaced, so the slices do not form one 3D stack"


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _version() -> str:
    from ctseg_helpers import __version__  # noqa: PLC0415

    return __version__


__all__ = [
    "SegmentationRun",
    "check_settings",
    "make_run_dir",
    "output_stem",
    "output_stems",
    "run_segmentation",
    "write_label_png",
    "write_overlay_jpg",
    "write_table_csv",
]
