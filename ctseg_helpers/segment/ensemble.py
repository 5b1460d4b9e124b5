"""Ensembles of models whose probabilities are averaged (nnU-Net style fold ensembles).

``ctseg train --folds K`` trains K models on patient-wise folds and saves them beside one
small JSON file that names them::

    OUT/heart_fold1_best.keras
    OUT/heart_fold2_best.keras
    OUT/heart.ensemble.json     {"format": "ctseg-ensemble", "version": 1,
                                 "members": ["heart_fold1_best.keras", "heart_fold2_best.keras"],
                                 "postprocessing": null, "extra": {}}

Member paths are stored relative to the ensemble file's folder, so the folder can be moved or
copied as a whole. Wherever a model is asked for, a user may give a ``.keras`` file, an
``.ensemble.json`` file or the folder holding them (:func:`resolve_model_files`).

Reading files and settings (:func:`resolve_model_files`, :func:`read_ensemble_settings`) does
not import TensorFlow; :func:`load_ensemble` does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.naming import natural_key
from ctseg_helpers.model.settings import ModelSettings, load_model, read_settings

logger = logging.getLogger(__name__)

#: File name ending of an ensemble file (``<name>.ensemble.json``).
ENSEMBLE_SUFFIX = ".ensemble.json"
#: Value of the "format" key of an ensemble file.
ENSEMBLE_FORMAT = "ctseg-ensemble"
#: Newest ensemble file version this code reads and the one it writes.
ENSEMBLE_VERSION = 1
#: Fold models found in a folder without an ensemble file.
FOLD_MODEL_PATTERN = "*_best.keras"
#: Settings keys that members of an ensemble may hold different values for.
#: (``pixel_spacing_mm`` is the median spacing of each fold's own training slices, for information;
#: the spacing the models work at, ``target_spacing_mm``, must agree.)
_KEYS_ALLOWED_TO_DIFFER = ("extra", "postprocessing", "pixel_spacing_mm")

_WHAT_A_MODEL_FOLDER_HOLDS = (
    f"a model folder should hold one '<name>{ENSEMBLE_SUFFIX}' file (written by 'ctseg train --folds') "
    f"or fold models named '{FOLD_MODEL_PATTERN}'; or pass a '.keras' model file itself"
)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_ensemble(
    path: str | Path,
    members: Sequence[str | Path],
    *,
    postprocessing: dict | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an ensemble file naming its member models.

    Parameters
    ----------
    path : str or Path
        The ensemble file, ending in ``.ensemble.json``; its folder is created if needed.
    members : sequence of str or Path
        Existing ``.keras`` model files, in the order they are averaged. They are stored
        relative to ``path``'s folder.
    postprocessing : dict or None
        Post-processing chosen for the ensemble as a whole (JSON-serialisable).
    extra : dict or None
        Free-form details (folds, patients per fold); JSON-serialisable.
    overwrite : bool
        Replace an existing ensemble file.

    Returns
    -------
    Path
        ``path``. The file is written atomically: a reader never sees half of it.

    Raises
    ------
    CtsegSettingsError
        If ``path`` does not end in ``.ensemble.json`` or exists and ``overwrite`` is False;
        if ``members`` is empty, names a file twice, names a file that does not exist or is not
        a ``.keras`` file; if ``postprocessing`` or ``extra`` is not a dict (or None) or cannot
        be written as JSON.
    """
    path = Path(path)
    if not path.name.endswith(ENSEMBLE_SUFFIX) or path.name == ENSEMBLE_SUFFIX:
        raise CtsegSettingsError(
            f"{path}: an ensemble file name must end in '{ENSEMBLE_SUFFIX}' (e.g. 'heart{ENSEMBLE_SUFFIX}')"
        )
    if path.exists() and not overwrite:
        raise CtsegSettingsError(f"{path} exists already; choose another name or pass overwrite=True")
    members = [Path(m) for m in members]
    _check_members_to_write(path, members)
    for name, value in (("postprocessing", postprocessing), ("extra", extra)):
        if value is not None and not isinstance(value, dict):
            raise CtsegSettingsError(f"{path}: {name} must be a dict or None, got {type(value).__name__}")
    folder = path.parent
    record = {
        "format": ENSEMBLE_FORMAT,
        "version": ENSEMBLE_VERSION,
        "members": [_relative_posix(member, folder) for member in members],
        "postprocessing": postprocessing,
        "extra": dict(extra or {}),
    }
    try:
        text = json.dumps(record, indent=2)
    except (TypeError, ValueError) as exc:
        raise CtsegSettingsError(
            f"{path}: postprocessing and extra must hold only JSON values "
            f"(dicts, lists, str, numbers, bool, None): {exc}"
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, text + "\n")
    return path


def _check_members_to_write(path: Path, members: list[Path]) -> None:
    if not members:
        raise CtsegSettingsError(f"{path}: an ensemble needs at least one member model; none was given")
    seen = set()
    for member in members:
        if member.suffix != ".keras":
            raise CtsegSettingsError(
                f"{path}: member {member} is not a '.keras' model file; give the saved fold models"
            )
        if not member.is_file():
            raise CtsegSettingsError(
                f"{path}: member {member} does not exist; save the fold models before the ensemble file"
            )
        key = os.path.normcase(os.path.abspath(member))
        if key in seen:
            raise CtsegSettingsError(f"{path}: member {member} is given twice; each model must appear once")
        seen.add(key)


def _relative_posix(member: Path, folder: Path) -> str:
    """``member`` relative to ``folder``, with '/' separators (absolute if on another drive)."""
    try:
        relative = os.path.relpath(os.path.abspath(member), os.path.abspath(folder))
    except ValueError:  # Windows: another drive has no relative path
        return Path(os.path.abspath(member)).as_posix()
    return Path(relative).as_posix()


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def resolve_model_files(path: str | Path) -> tuple[list[Path], dict | None]:
    """The model files behind a ``.keras`` file, an ensemble file or a model folder.

    Parameters
    ----------
    path : str or Path
        - a ``.keras`` file: that model alone;
        - an ``.ensemble.json`` file: its members, resolved against the file's folder;
        - a folder: the one ``*.ensemble.json`` file it holds; without one, every
          ``*_best.keras`` file in it, in natural name order (fold2 before fold10).

    Returns
    -------
    (list of Path, dict or None)
        The member files, and the ensemble record (the parsed JSON) or None when there is no
        ensemble file.

    Raises
    ------
    CtsegDataError
        If ``path`` does not exist or is another kind of file; if an ensemble file is not valid
        JSON, is not a ctseg ensemble, is of a newer version or names missing members; if a
        folder holds neither an ensemble file nor fold models.
    CtsegSettingsError
        If a folder holds several ensemble files (pass one of them).
    """
    path = Path(path)
    if path.is_dir():
        return _resolve_folder(path)
    if path.name.endswith(ENSEMBLE_SUFFIX):
        if not path.is_file():
            raise CtsegDataError(f"{path}: ensemble file not found")
        return _read_ensemble_file(path)
    if path.suffix == ".keras":
        if not path.is_file():
            raise CtsegDataError(f"{path}: model file not found")
        return [path], None
    if not path.exists():
        raise CtsegDataError(f"{path}: not found; pass a '.keras' model, a '*{ENSEMBLE_SUFFIX}' file or a model folder")
    raise CtsegDataError(f"{path}: not a model; pass a '.keras' model, a '*{ENSEMBLE_SUFFIX}' file or a model folder")


def _resolve_folder(folder: Path) -> tuple[list[Path], dict | None]:
    ensembles = sorted((p for p in folder.glob(f"*{ENSEMBLE_SUFFIX}") if p.is_file()), key=natural_key)
    if len(ensembles) > 1:
        names = ", ".join(p.name for p in ensembles)
        raise CtsegSettingsError(
            f"{folder} holds {len(ensembles)} ensemble files ({names}); pass one of them instead of the folder"
        )
    if ensembles:
        return _read_ensemble_file(ensembles[0])
    folds = sorted((p for p in folder.glob(FOLD_MODEL_PATTERN) if p.is_file()), key=natural_key)
    if not folds:
        raise CtsegDataError(f"{folder}: no model found; {_WHAT_A_MODEL_FOLDER_HOLDS}")
    return folds, None


def _read_ensemble_file(path: Path) -> tuple[list[Path], dict]:
    redo = "write it again with ctseg_helpers.segment.ensemble.write_ensemble or 'ctseg train --folds'"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CtsegDataError(f"{path}: not a valid ensemble file, the JSON cannot be read ({exc}); {redo}") from exc
    if not isinstance(record, dict) or record.get("format") != ENSEMBLE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CtsegDataError(
            f"{path}: not a ctseg ensemble file (format {found!r}, expected {ENSEMBLE_FORMAT!r}); {redo}"
        )
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= ENSEMBLE_VERSION:
        raise CtsegDataError(
            f"{path}: ensemble file version {version!r} is not supported (this ctseg reads version "
            f"{ENSEMBLE_VERSION}); update ctseg or {redo}"
        )
    names = record.get("members")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.endswith(".keras") for n in names):
        raise CtsegDataError(
            f"{path}: 'members' must be a non-empty list of '.keras' file names, got {names!r}; {redo}"
        )
    postprocessing = record.get("postprocessing")
    if postprocessing is not None and not isinstance(postprocessing, dict):
        raise CtsegDataError(f"{path}: 'postprocessing' must be an object or null, got {postprocessing!r}; {redo}")
    members = [Path(os.path.normpath(path.parent / name)) for name in names]
    missing = [m for m in members if not m.is_file()]
    if missing:
        listed = ", ".join(str(m) for m in missing)
        raise CtsegDataError(
            f"{path}: member model(s) not found: {listed}; keep the fold models beside the ensemble file "
            "(move or copy the folder as a whole)"
        )
    return members, record


def read_ensemble_settings(path: str | Path) -> ModelSettings:
    """Settings of a model, an ensemble file or a model folder, without loading any model.

    Every member's stored settings are read (no TensorFlow) and must agree on everything but
    ``extra`` and ``postprocessing``.

    Returns
    -------
    ModelSettings
        For a ``.keras`` file, exactly its stored settings. For an ensemble, the first
        member's settings with ``extra["ensemble_members"]`` listing the member files, and
        with the ensemble file's ``postprocessing`` when it has one.

    Raises
    ------
    CtsegDataError
        As :func:`resolve_model_files`, or if a member has no ctseg settings.
    CtsegSettingsError
        If members disagree (the message names the first differing setting, both values and
        both files), or as :func:`resolve_model_files`.
    """
    path = Path(path)
    if path.suffix == ".keras" and not path.is_dir():
        return read_settings(path)
    members, record = resolve_model_files(path)
    return _ensemble_settings(path, members, record)


def _ensemble_settings(path: Path, members: list[Path], record: dict | None) -> ModelSettings:
    first = read_settings(members[0])
    reference = first.to_dict()
    for member in members[1:]:
        _check_agree(path, members[0], reference, member, read_settings(member).to_dict())
    settings = first
    postprocessing = (record or {}).get("postprocessing")
    if postprocessing is not None:
        if any(f.name == "postprocessing" for f in dataclasses.fields(settings)):
            settings = dataclasses.replace(settings, postprocessing=postprocessing)
        else:
            logger.warning(
                "%s: the ensemble's postprocessing is ignored; this ctseg has no postprocessing setting", path
            )
    extra = dict(settings.extra)
    extra["ensemble_members"] = [str(m) for m in members]
    return dataclasses.replace(settings, extra=extra)


_MISSING = "<missing>"


def _check_agree(path: Path, first: Path, reference: dict, member: Path, values: dict) -> None:
    keys = list(reference) + [k for k in values if k not in reference]
    for key in keys:
        if key in _KEYS_ALLOWED_TO_DIFFER:
            continue
        a, b = reference.get(key, _MISSING), values.get(key, _MISSING)
        if a != b:
            raise CtsegSettingsError(
                f"{path}: the ensemble's models were trained with different settings: {key}={a!r} in {first} "
                f"but {key}={b!r} in {member}; all members must share their settings (retrain or remove one)"
            )


# --------------------------------------------------------------------------------------------
# Predicting
# --------------------------------------------------------------------------------------------


PredictFn = Callable[[np.ndarray], np.ndarray]


class AveragedPredictFn:
    """The ``predict_fn`` of an ensemble: the mean of its members' probabilities.

    Called like any ``predict_fn``; :meth:`member_probabilities` gives each member's
    probabilities for the same batch instead (one network pass per member, as the mean takes),
    so the Segmenter can measure how much the members disagree without predicting twice.

    Attributes
    ----------
    members : tuple of callable
        The members' prediction functions, in member order.
    """

    def __init__(self, members: Sequence[PredictFn]):
        self.members = tuple(members)

    def member_probabilities(self, batch: np.ndarray) -> list[np.ndarray]:
        """Each member's probabilities (B, S, S, C), float32, for a batch (B, S, S, 1).

        Raises
        ------
        CtsegSettingsError
            If members return probabilities of different shapes.
        """
        first = np.asarray(self.members[0](batch), dtype=np.float32)
        out = [first]
        for k, fn in enumerate(self.members[1:], start=2):
            proba = np.asarray(fn(batch), dtype=np.float32)
            if proba.shape != first.shape:
                raise CtsegSettingsError(
                    f"ensemble member {k} returned probabilities of shape {proba.shape}, member 1 returned "
                    f"{first.shape}; all members must output the same classes at the same input size"
                )
            out.append(proba)
        return out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        probas = self.member_probabilities(batch)
        total = np.array(probas[0], dtype=np.float32)  # a copy: summed in place below
        for proba in probas[1:]:
            total += proba
        total /= np.float32(len(probas))
        return total


def averaged_predict_fn(predict_fns: Iterable[PredictFn]) -> PredictFn:
    """One ``predict_fn`` that averages the probabilities of several.

    Parameters
    ----------
    predict_fns : iterable of callable
        Each ``fn(batch)`` returns probabilities of shape (B, S, S, C) for a batch
        (B, S, S, 1), as :func:`~ctseg_helpers.segment.segmenter.keras_predict_fn` does.

    Returns
    -------
    callable
        ``fn(batch) -> ndarray of shape (B, S, S, C), dtype float32``: the mean of the members'
        probabilities (an :class:`AveragedPredictFn`, whose ``member_probabilities(batch)``
        gives each member's). With one member, that member's function itself.

    Raises
    ------
    CtsegSettingsError
        If ``predict_fns`` is empty, or (when called) members return different shapes.
    """
    fns = list(predict_fns)
    if not fns:
        raise CtsegSettingsError("an ensemble needs at least one prediction function; none was given")
    if len(fns) == 1:
        return fns[0]
    return AveragedPredictFn(fns)


def load_ensemble(path: str | Path) -> tuple[list, ModelSettings, list[Path]]:
    """Load every model of a ``.keras`` file, an ensemble file or a model folder (Keras safe mode).

    Returns
    -------
    (list of keras.Model, ModelSettings, list of Path)
        The models in member order, their shared settings (see :func:`read_ensemble_settings`)
        and the member files.

    Raises
    ------
    CtsegDataError, CtsegSettingsError
        As :func:`read_ensemble_settings`; settings are checked before any model is loaded.
    """
    path = Path(path)
    if path.suffix == ".keras" and not path.is_dir():
        members, settings = [path], read_settings(path)
    else:
        members, record = resolve_model_files(path)
        settings = _ensemble_settings(path, members, record)
    models = []
    for member in members:
        if len(members) > 1:  # a single model is not an ensemble to report on
            logger.info("loading ensemble member %s", member)
        models.append(load_model(member)[0])
    return models, settings, members


__all__ = [
    "ENSEMBLE_SUFFIX",
    "AveragedPredictFn",
    "averaged_predict_fn",
    "load_ensemble",
    "read_ensemble_settings",
    "resolve_model_files",
    "write_ensemble",
]
