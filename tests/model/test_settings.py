import zipfile

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.model.settings import ModelSettings, load_model, read_settings, save_model, update_settings
from ctseg_helpers.prepare.normalize import Normalization


def _tiny_model():
    from ctseg_helpers.tf_setup import configure_tensorflow

    configure_tensorflow()
    import keras

    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    return keras.Model(inputs, outputs)


def test_settings_round_trip_through_dict():
    settings = ModelSettings(64, 2, ("cavity", "myo"), Normalization("MR"), "pad", (1.3, 1.3), {"epochs": 3})
    assert ModelSettings.from_dict(settings.to_dict()) == settings


def test_saved_model_reloads_with_its_settings_in_safe_mode(tmp_path):
    model = _tiny_model()
    settings = ModelSettings(16, 2, ("a", "b"), Normalization("CT", (-200.0, 300.0)))
    path = save_model(model, tmp_path / "m.keras", settings)
    assert "ctseg_settings.json" in zipfile.ZipFile(path).namelist()
    assert read_settings(path) == settings
    loaded, loaded_settings = load_model(path)
    batch = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert loaded_settings == settings


def test_save_refuses_to_overwrite_and_other_suffixes(tmp_path):
    model = _tiny_model()
    settings = ModelSettings(16, 2)
    save_model(model, tmp_path / "m.keras", settings)
    with pytest.raises(CtsegSettingsError, match="exists already"):
        save_model(model, tmp_path / "m.keras", settings)
    save_model(model, tmp_path / "m.keras", settings, overwrite=True)
    with pytest.raises(CtsegSettingsError, match="use a '.keras' file name"):
        save_model(model, tmp_path / "m.h5", settings)


def test_read_settings_errors_name_the_file(tmp_path):
    with pytest.raises(CtsegDataError, match="missing.keras: model file not found"):
        read_settings(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CtsegDataError, match="junk.keras: not a .keras model file"):
        read_settings(junk)
    plain = tmp_path / "plain.keras"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(CtsegDataError, match="plain.keras: this .keras file has no ctseg settings"):
        read_settings(plain)


def test_update_settings_names_a_foreign_or_damaged_file(tmp_path):
    with pytest.raises(CtsegDataError, match="missing.keras: model file not found"):
        update_settings(tmp_path / "missing.keras", ModelSettings(16, 1))
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CtsegDataError, match=r"junk.keras: not a .keras model file \(not a zip archive\)"):
        update_settings(junk, ModelSettings(16, 1))
    cut = tmp_path / "cut.keras"
    cut.write_bytes(b"PK\x03\x04" + bytes(60))  # a zip's first bytes, then nothing of use
    with pytest.raises(CtsegDataError, match=r"cut.keras: is not a complete Keras model file \(truncated or damaged\?"):
        update_settings(cut, ModelSettings(16, 1))
    assert not (tmp_path / "cut.keras.tmp.keras").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": 0, "num_labels": 1}, "input_shape must be a positive integer"),
        ({"input_shape": 8, "num_labels": 0}, "num_labels must be at least 1"),
        (
            {"input_shape": 8, "num_labels": 2, "label_names": ("a",)},
            r"label_names has 1 name\(s\) \[.a.\] but "
            r"num_labels=2",
        ),
        ({"input_shape": 8, "num_labels": 1, "fit_mode": "crop"}, "fit_mode must be 'patch', 'resize' or 'pad'"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(CtsegSettingsError, match=message):
        ModelSettings(**kwargs)
