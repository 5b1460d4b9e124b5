"""Settings a trained model carries with it, and saving/loading models with them.

A ``.keras`` file is a zip archive; ctseg adds one member, ``ctseg_settings.json``, holding
:class:`ModelSettings`. Keras ignores the extra member, so the file stays a plain Keras model,
and :func:`load_model` returns the model together with its settings so the segmentation side
can check a user's settings against the ones the model was trained with.

Models always load in Keras safe mode: a model file someone sends cannot run code.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.io.label_names import check_label_names
from ctseg_helpers.prepare.normalize import Normalization

SETTINGS_MEMBER = "ctseg_settings.json"


@dataclass(frozen=True)
class ModelSettings:
    """What a model was trained with.

    Attributes
    ----------
    input_shape : int
        Side of the square network input in pixels (e.g. 256).
    num_labels : int
        Number of ROIs; the network outputs ``num_labels + 1`` classes (0 = background).
    label_names : tuple of str
        One name per ROI, label 1 first; empty when the user gave none.
    normalization : Normalization
        How raw pixel values were mapped to 0..1.
    fit_mode : {"patch", "resize", "pad"}
        How the network saw the training slices: ``"patch"``, random patches of ``input_shape``
        at ``target_spacing_mm`` (segmentation then tiles each slice resampled to that spacing);
        ``"resize"`` / ``"pad"``, whole slices fitted into ``input_shape`` (bilinear resize for
        images and nearest neighbour for labels, or zero padding / centre crop).
    pixel_spacing_mm : (float, float) or None
        Median training pixel spacing (row, col), for information.
    extra : dict
        Free-form details (epochs trained, architecture options, the training plan).
    target_spacing_mm : (float, float) or None
        Pixel spacing the network works at; slices are resampled to it before segmenting and
        the probabilities back to the slice's own grid. None: the slices' own pixels.
    postprocessing : dict or None
        :class:`ctseg_helpers.segment.postprocess.PostProcessing` as a dict, chosen on validation
        data; applied to every segmentation. None or empty: none.
    """

    input_shape: int
    num_labels: int
    label_names: tuple[str, ...] = ()
    normalization: Normalization = field(default_factory=Normalization)
    fit_mode: str = "resize"
    pixel_spacing_mm: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)
    target_spacing_mm: tuple[float, float] | None = None
    postprocessing: dict | None = None

    def __post_init__(self):
        if self.input_shape < 1:
            raise CtsegSettingsError(f"input_shape must be a positive integer, got {self.input_shape}")
        if self.num_labels < 1:
            raise CtsegSettingsError(f"num_labels must be at least 1, got {self.num_labels}")
        if self.label_names:  # the manual's list with "background" first is accepted too
            object.__setattr__(
                self,
                "label_names",
                check_label_names(
                    self.label_names, self.num_labels, setting="label_names", counted=f"num_labels={self.num_labels}"
                ),
            )
        if self.fit_mode not in ("patch", "resize", "pad"):
            raise CtsegSettingsError(f"fit_mode must be 'patch', 'resize' or 'pad', got {self.fit_mode!r}")
        if self.target_spacing_mm is not None and (
            len(self.target_spacing_mm) != 2 or not all(float(v) > 0 for v in self.target_spacing_mm)
        ):
            raise CtsegSettingsError(
                f"target_spacing_mm must be two positive numbers (row, col) or None, got {self.target_spacing_mm!r}"
            )

    def to_dict(self) -> dict:
        return {
            "input_shape": self.input_shape,
            "num_labels": self.num_labels,
            "label_names": list(self.label_names),
            "normalization": self.normalization.to_dict(),
            "fit_mode": self.fit_mode,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "extra": self.extra,
            "target_spacing_mm": list(self.target_spacing_mm) if self.target_spacing_mm else None,
            "postprocessing": self.postprocessing or None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelSettings:
        spacing = data.get("pixel_spacing_mm")
        return cls(
            input_shape=int(data["input_shape"]),
            num_labels=int(data["num_labels"]),
            label_names=tuple(data.get("label_names") or ()),
            normalization=Normalization.from_dict(data["normalization"]),
            fit_mode=data.get("fit_mode", "resize"),
            pixel_spacing_mm=tuple(spacing) if spacing else None,
            extra=dict(data.get("extra") or {}),
            target_spacing_mm=(
                tuple(float(v) for v in data["target_spacing_mm"]) if data.get("target_spacing_mm") else None
            ),
            postprocessing=dict(data["postprocessing"]) if data.get("postprocessing") else None,
        )


def save_model(model, path: str | Path, settings: ModelSettings, *, overwrite: bool = False) -> Path:
    """Save a Keras model in the native ``.keras`` format with its settings inside.

    Raises
    ------
    CtsegSettingsError
        If ``path`` does not end in ``.keras``, or it exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise CtsegSettingsError(f"{path}: models are saved in the native format, use a '.keras' file name")
    if path.exists() and not overwrite:
        raise CtsegSettingsError(f"{path} exists already; choose another name or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as archive:
        archive.writestr(SETTINGS_MEMBER, json.dumps(settings.to_dict(), indent=2))
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written model
    return path


def update_settings(path: str | Path, settings: ModelSettings) -> Path:
    """Replace the ctseg settings stored in a ``.keras`` file, leaving the network untouched.

    The archive is rewritten beside the original and renamed over it (atomic).

    Raises
    ------
    CtsegDataError
        If the file is missing or not a ``.keras`` archive.
    """
    path = Path(path)
    if not path.is_file():
        raise CtsegDataError(f"{path}: model file not found")
    tmp = path.with_name(path.name + ".tmp.keras")
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                if item.filename != SETTINGS_MEMBER:
                    target.writestr(item, source.read(item.filename))
            target.writestr(SETTINGS_MEMBER, json.dumps(settings.to_dict(), indent=2))
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise _not_a_model_error(path, exc) from exc
    tmp.replace(path)
    return path


def read_settings(path: str | Path) -> ModelSettings:
    """Read the settings stored in a ``.keras`` file without loading the model (no TensorFlow).

    Raises
    ------
    CtsegDataError
        If the file does not exist, is not a ``.keras`` archive (not a zip, truncated, no
        ``config.json``), has no ctseg settings, or its settings are not valid JSON, lack a
        required key or hold a value of the wrong type. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CtsegDataError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive.namelist())
            text = archive.read(SETTINGS_MEMBER)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _not_a_model_error(path, exc) from exc
    return _parse_settings(path, text)


def _not_a_model_error(path: Path, exc: Exception) -> CtsegDataError:
    """The error for a file that zipfile cannot read: damaged if it starts like a zip, else foreign."""
    with open(path, "rb") as f:
        starts_like_zip = f.read(4) == b"PK\x03\x04"
    if starts_like_zip:
        return CtsegDataError(
            f"{path}: is not a complete Keras model file (truncated or damaged? {exc}); copy it again or retrain"
        )
    return CtsegDataError(f"{path}: not a .keras model file (not a zip archive); give a model saved by ctseg training")


def _check_members(path: Path, names: list[str]) -> None:
    if "config.json" not in names:
        raise CtsegDataError(
            f"{path}: not a .keras model file (a zip archive without config.json); give a model saved by ctseg training"
        )
    if SETTINGS_MEMBER not in names:
        raise CtsegDataError(
            f"{path}: this .keras file has no ctseg settings; it was not saved by ctseg "
            "(train it with ctseg, or add settings with ctseg_helpers.model.settings.save_model)"
        )


def _parse_settings(path: Path, text: bytes) -> ModelSettings:
    """ModelSettings from the archive's settings member, with errors that name the file."""
    fix = "the file is damaged or was edited by hand: copy it again or retrain"
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CtsegDataError(
            f"{path}: its ctseg settings ({SETTINGS_MEMBER}) are not valid JSON ({exc}); {fix}"
        ) from exc
    if not isinstance(data, dict):
        raise CtsegDataError(
            f"{path}: its ctseg settings ({SETTINGS_MEMBER}) hold a {type(data).__name__}, not a JSON object; {fix}"
        )
    try:
        return ModelSettings.from_dict(data)
    except KeyError as exc:
        raise CtsegDataError(f"{path}: its ctseg settings ({SETTINGS_MEMBER}) lack the key {exc}; {fix}") from exc
    except (TypeError, ValueError, AttributeError) as exc:  # CtsegSettingsError is a ValueError
        raise CtsegDataError(f"{path}: its ctseg settings ({SETTINGS_MEMBER}) are invalid ({exc}); {fix}") from exc


def load_model(path: str | Path, *, compile: bool = False):
    """Load a ctseg model and its settings, in Keras safe mode.

    Uncompiled (for segmenting), a model trained with deep supervision comes back with its
    full-resolution output only (:func:`ctseg_helpers.model.unet.inference_model`); compiled
    (to resume training), with all its outputs.

    Returns
    -------
    (keras.Model, ModelSettings)

    Raises
    ------
    CtsegDataError
        As :func:`read_settings`; or if Keras cannot rebuild the model (damaged weights,
        unknown layers) or refuses it in safe mode (a ``Lambda`` layer holds arbitrary code).
        The message names the file.
    """
    path = Path(path)
    settings = read_settings(path)
    from ctseg_helpers.tf_setup import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    # Importing the losses and metrics registers them, so compiled models reload by name.
    import ctseg_helpers.model.losses  # noqa: F401, PLC0415

    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except PermissionError:
        raise  # the command line says which file cannot be read
    except (ValueError, TypeError, KeyError, AttributeError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _keras_load_error(path, exc) from exc
    if not compile:  # for segmenting: a deeply supervised network's full-resolution output only
        from ctseg_helpers.model.unet import inference_model  # noqa: PLC0415

        model = inference_model(model)
    return model, settings


def _keras_load_error(path: Path, exc: Exception) -> CtsegDataError:
    """The error for a model Keras refuses: safe mode (code in the file) or a damaged file."""
    text = str(exc).strip()
    first_line = text.splitlines()[0][:200] if text else type(exc).__name__
    if "safe_mode" in text:
        what = "a Lambda layer (arbitrary code)" if "Lambda" in text else f"code ({first_line})"
        return CtsegDataError(
            f"{path}: holds {what}, which ctseg refuses to load in safe mode; only load models you trained with ctseg"
        )
    return CtsegDataError(
        f"{path}: is not a complete Keras model file (truncated or damaged? Keras says: {first_line}); "
        "copy it again or retrain"
    )
