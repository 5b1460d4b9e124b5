"""Foreign or damaged model files and unwritable outputs: one clear error, never a traceback (issue 11)."""

from __future__ import annotations

import errno
import json
import os
import zipfile

import nibabel as nib
import numpy as np
import pytest

from ctseg_helpers.cli import main
from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.model.settings import SETTINGS_MEMBER, ModelSettings, load_model, read_settings, save_model

GOOD_SETTINGS = ModelSettings(16, 1).to_dict()


def _save_tiny(path, *, with_lambda: bool = False):
    """A 16 x 16 model with 2 filters (background and one ROI), saved with ctseg settings."""
    from ctseg_helpers.tf_setup import configure_tensorflow

    configure_tensorflow()
    import keras

    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs) if with_lambda else inputs
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(x))
    return save_model(model, path, ModelSettings(16, 1))


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("model") / "good.keras")


def _rewrite(source, target, *, drop=(), replace=None):
    """Copy the members of ``source`` into a new archive ``target``, dropping or replacing some."""
    replace = replace or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for item in src.infolist():
            if item.filename not in drop:
                out.writestr(item, replace.get(item.filename, src.read(item.filename)))
    return target


_DROP = object()


def _settings(**changes) -> bytes:
    """The good settings as JSON with some keys changed, or dropped when set to ``_DROP``."""
    data = {**GOOD_SETTINGS, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not _DROP}).encode()


def _broken(kind, good, tmp_path):
    """Write one kind of broken model file next to the test and return its path."""
    path = tmp_path / f"{kind}.keras"
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_a_zip":
        path.write_bytes(b"this is a text file someone renamed to .keras\n")
    elif kind == "no_config":
        _rewrite(good, path, drop=("config.json",))
    elif kind == "damaged_weights":
        _rewrite(good, path, replace={"model.weights.h5": b"not hdf5 at all"})
    else:
        member = {
            "settings_not_json": b"{input_shape: 16",
            "settings_not_an_object": b"[16, 1]",
            "settings_missing_key": _settings(input_shape=_DROP),
            "settings_wrong_type": _settings(input_shape="large"),
            "settings_invalid_value": _settings(num_labels=0),
            "settings_wrong_normalization": _settings(normalization="CT"),
        }[kind]
        _rewrite(good, path, replace={SETTINGS_MEMBER: member})
    return path


SETTINGS_CASES = [
    (
        "truncated",
        r"truncated.keras: is not a complete Keras model file \(truncated or damaged\?.*copy it again or "
        r"retrain",
    ),
    ("not_a_zip", r"not_a_zip.keras: not a .keras model file \(not a zip archive.*give a model saved by ctseg"),
    ("no_config", r"no_config.keras: not a .keras model file \(a zip archive without config.json\)"),
    ("settings_not_json", r"settings_not_json.keras: its ctseg settings \(ctseg_settings.json\) are not valid JSON"),
    ("settings_not_an_object", r"settings_not_an_object.keras: .* hold a list, not a JSON object; the file is damaged"),
    ("settings_missing_key", r"settings_missing_key.keras: .* lack the key 'input_shape'; .*copy it again or retrain"),
    ("settings_wrong_type", r"settings_wrong_type.keras: .* are invalid \(invalid literal for int\(\)"),
    ("settings_invalid_value", r"settings_invalid_value.keras: .* are invalid \(num_labels must be at least 1"),
    ("settings_wrong_normalization", r"settings_wrong_normalization.keras: .* are invalid \("),
]


@pytest.mark.parametrize(("kind", "message"), SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_broken_model_files_are_refused_before_keras_runs(good_model, tmp_path, kind, message):
    path = _broken(kind, good_model, tmp_path)
    with pytest.raises(CtsegDataError, match=message):
        read_settings(path)
    with pytest.raises(CtsegDataError, match=message):
        load_model(path)


def test_damaged_weights_are_named_by_load_model(good_model, tmp_path):
    path = _broken("damaged_weights", good_model, tmp_path)
    read_settings(path)  # the settings are intact
    with pytest.raises(
        CtsegDataError,
        match=r"damaged_weights.keras: is not a complete Keras model file "
        r"\(truncated or damaged\? Keras says: .*copy it again or retrain",
    ):
        load_model(path)


def test_a_lambda_layer_is_refused_in_safe_mode(tmp_path):
    path = _save_tiny(tmp_path / "lambda.keras", with_lambda=True)
    with pytest.raises(
        CtsegDataError,
        match=r"lambda.keras: holds a Lambda layer \(arbitrary code\), which ctseg "
        r"refuses to load in safe mode; only load models you trained with ctseg",
    ):
        load_model(path)


def test_other_code_refused_by_safe_mode_is_named(good_model, monkeypatch):
    import keras

    def refuse(*args, **kwargs):
        raise ValueError("Requested the deserialization of a custom function; pass `safe_mode=False` to allow it")

    monkeypatch.setattr(keras.saving, "load_model", refuse)
    with pytest.raises(
        CtsegDataError,
        match=r"good.keras: holds code \(Requested the deserialization of a custom "
        r"function.*\), which ctseg refuses to load in safe mode",
    ):
        load_model(good_model)


def test_an_unreadable_model_is_left_to_the_command_line(good_model, monkeypatch):
    import keras

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(good_model))

    monkeypatch.setattr(keras.saving, "load_model", deny)
    with pytest.raises(PermissionError):
        load_model(good_model)


@pytest.mark.parametrize("kind", ["truncated", "damaged_weights"])
def test_segment_volume_prints_one_line_for_a_broken_model(good_model, tmp_path, capsys, kind):
    path = _broken(kind, good_model, tmp_path)
    status = main(["segment-volume", str(path), str(tmp_path / "in.h5"), str(tmp_path / "out.h5")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith(f"error: {path}: is not a complete Keras model file") and "\n" not in err


# ------------------------------------------------------------------ unwritable outputs


def _small_nifti(path):
    nib.save(nib.Nifti1Image(np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3), np.eye(4)), path)
    return path


def test_convert_into_a_read_only_folder_prints_one_line(tmp_path, capsys, monkeypatch):
    src = _small_nifti(tmp_path / "scan.nii")
    folder = tmp_path / "read_only"
    folder.mkdir()
    out = folder / "scan.h5"
    if os.geteuid() == 0:  # root writes anywhere: make h5py refuse the file as it does for a user
        import h5py

        real_file = h5py.File

        def refusing_file(name, mode="r", **kwargs):
            if mode == "w":
                raise PermissionError(
                    errno.EACCES,
                    "Unable to synchronously create file (unable to open file: "
                    f"name = '{name}', errno = 13, "
                    "error message = 'Permission denied')",
                )
            return real_file(name, mode, **kwargs)

        monkeypatch.setattr(h5py, "File", refusing_file)
    folder.chmod(0o555)
    try:
        status = main(["convert", str(src), str(out)])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err == (
        f"error: {out}: Permission denied; choose an output folder you can write to (or make the input readable)"
    )
    assert not out.exists()
