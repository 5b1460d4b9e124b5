"""Model ensembles: the ensemble file, finding the members, shared settings, averaged probabilities."""

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError
from ctseg_helpers.model.settings import ModelSettings, read_settings, save_model
from ctseg_helpers.prepare.normalize import Normalization
from ctseg_helpers.segment import ensemble
from ctseg_helpers.segment.ensemble import (
    ENSEMBLE_SUFFIX,
    averaged_predict_fn,
    load_ensemble,
    read_ensemble_settings,
    resolve_model_files,
    write_ensemble,
)

SIZE = 16
SETTINGS = ModelSettings(
    input_shape=SIZE,
    num_labels=2,
    label_names=("inner", "outer"),
    normalization=Normalization("CT", (-500.0, 500.0)),
    fit_mode="pad",
)


@pytest.fixture(scope="module")
def tiny_models():
    """Two tiny networks (1x1 softmax convolutions, 3 classes) with different random weights."""
    from ctseg_helpers.tf_setup import configure_tensorflow

    configure_tensorflow()
    import keras

    models = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((SIZE, SIZE, 1))
        outputs = keras.layers.Conv2D(3, 1, activation="softmax", bias_initializer="random_normal")(inputs)
        models.append(keras.Model(inputs, outputs))
    return models


@pytest.fixture(scope="module")
def saved_folds(tmp_path_factory, tiny_models):
    """The two tiny models saved as fold models; their settings differ only in ``extra``."""
    folder = tmp_path_factory.mktemp("saved_folds")
    for k, model in enumerate(tiny_models, start=1):
        settings = dataclasses.replace(SETTINGS, extra={"fold": k})
        save_model(model, folder / f"heart_fold{k}_best.keras", settings)
    return folder


@pytest.fixture
def folds(tmp_path, saved_folds):
    """A fresh copy of the two fold models in ``tmp_path / "out"`` (tests add files beside them)."""
    out = tmp_path / "out"
    shutil.copytree(saved_folds, out)
    return [out / "heart_fold1_best.keras", out / "heart_fold2_best.keras"]


# ------------------------------------------------------------------ write_ensemble


def test_write_ensemble_stores_members_relative_to_its_folder(folds):
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds, extra={"folds": 2})
    assert path == folds[0].parent / "heart.ensemble.json"
    assert json.loads(path.read_text()) == {
        "format": "ctseg-ensemble",
        "version": 1,
        "members": ["heart_fold1_best.keras", "heart_fold2_best.keras"],
        "postprocessing": None,
        "extra": {"folds": 2},
    }
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "heart.ensemble.json",
        "heart_fold1_best.keras",
        "heart_fold2_best.keras",
    ]  # no temporary file left behind


def test_write_ensemble_members_in_other_folders_are_relative_too(folds, tmp_path):
    path = write_ensemble(tmp_path / "ensembles" / "heart.ensemble.json", folds)
    assert json.loads(path.read_text())["members"] == ["../out/heart_fold1_best.keras", "../out/heart_fold2_best.keras"]
    assert resolve_model_files(path)[0] == folds


def test_relative_members_survive_moving_the_folder(folds, tmp_path):
    write_ensemble(folds[0].parent / "heart.ensemble.json", folds, postprocessing={"largest_component": True})
    moved = tmp_path / "elsewhere" / "models"
    shutil.move(folds[0].parent, moved)
    members, record = resolve_model_files(moved / "heart.ensemble.json")
    assert members == [moved / "heart_fold1_best.keras", moved / "heart_fold2_best.keras"]
    assert record["postprocessing"] == {"largest_component": True}
    assert resolve_model_files(moved) == (members, record)


def test_write_ensemble_refuses_an_existing_file_unless_overwrite(folds):
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds)
    with pytest.raises(CtsegSettingsError, match="heart.ensemble.json exists already; .*overwrite=True"):
        write_ensemble(path, folds[:1])
    assert len(json.loads(path.read_text())["members"]) == 2
    write_ensemble(path, folds[:1], overwrite=True)
    assert json.loads(path.read_text())["members"] == ["heart_fold1_best.keras"]


def test_write_ensemble_refuses_a_name_without_the_suffix(folds):
    with pytest.raises(CtsegSettingsError, match=r"heart.json: an ensemble file name must end in '\.ensemble\.json'"):
        write_ensemble(folds[0].parent / "heart.json", folds)


def test_write_ensemble_refuses_members_that_are_not_keras_files(folds):
    weights = folds[0].parent / "heart_fold1.weights.h5"
    weights.write_bytes(b"not a model")
    path = folds[0].parent / "heart.ensemble.json"
    with pytest.raises(CtsegSettingsError, match=r"member .*heart_fold1.weights.h5 is not a '\.keras' model file"):
        write_ensemble(path, [weights, folds[1]])
    with pytest.raises(CtsegSettingsError, match=r"member .*heart_fold3_best.keras does not exist; save the fold"):
        write_ensemble(path, [*folds, folds[0].parent / "heart_fold3_best.keras"])
    with pytest.raises(CtsegSettingsError, match="needs at least one member model; none was given"):
        write_ensemble(path, [])
    with pytest.raises(CtsegSettingsError, match="member .*heart_fold1_best.keras is given twice"):
        write_ensemble(path, [folds[0], folds[1], folds[0].parent / "." / folds[0].name])
    assert not path.exists()


def test_write_ensemble_refuses_postprocessing_and_extra_that_are_not_json_objects(folds):
    path = folds[0].parent / "heart.ensemble.json"
    with pytest.raises(CtsegSettingsError, match="postprocessing must be a dict or None, got str"):
        write_ensemble(path, folds, postprocessing="largest component")
    with pytest.raises(CtsegSettingsError, match="extra must be a dict or None, got list"):
        write_ensemble(path, folds, extra=["folds", 2])
    with pytest.raises(CtsegSettingsError, match=r"must hold only JSON values .*not JSON serializable"):
        write_ensemble(path, folds, extra={"when": object()})
    assert sorted(p.name for p in path.parent.iterdir()) == ["heart_fold1_best.keras", "heart_fold2_best.keras"]


# ------------------------------------------------------------------ resolve_model_files


def test_resolve_a_keras_file_is_that_model_alone(folds):
    assert resolve_model_files(folds[1]) == ([folds[1]], None)
    assert resolve_model_files(str(folds[1])) == ([folds[1]], None)


def test_resolve_refuses_missing_paths_and_other_files(folds):
    folder = folds[0].parent
    with pytest.raises(CtsegDataError, match="heart_fold3_best.keras: model file not found"):
        resolve_model_files(folder / "heart_fold3_best.keras")
    with pytest.raises(CtsegDataError, match="lung.ensemble.json: ensemble file not found"):
        resolve_model_files(folder / "lung.ensemble.json")
    with pytest.raises(CtsegDataError, match=r"nowhere: not found; pass a '\.keras' model, a '\*\.ensemble\.json'"):
        resolve_model_files(folder / "nowhere")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(CtsegDataError, match=r"notes.txt: not a model; pass a '\.keras' model"):
        resolve_model_files(folder / "notes.txt")


def test_resolve_an_ensemble_file_and_the_folder_holding_it(folds):
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds[::-1], extra={"folds": 2})
    members, record = resolve_model_files(path)
    assert members == folds[::-1]  # the file's order, not the names' order
    assert record["format"] == "ctseg-ensemble" and record["extra"] == {"folds": 2}
    assert resolve_model_files(folds[0].parent) == (members, record)


def test_resolve_a_folder_with_several_ensembles_asks_for_one(folds):
    folder = folds[0].parent
    write_ensemble(folder / "heart.ensemble.json", folds)
    write_ensemble(folder / "aorta.ensemble.json", folds[:1])
    message = r"out holds 2 ensemble files \(aorta.ensemble.json, heart.ensemble.json\); pass one of them"
    with pytest.raises(CtsegSettingsError, match=message):
        resolve_model_files(folder)
    assert resolve_model_files(folder / "aorta.ensemble.json")[0] == folds[:1]


def test_resolve_a_folder_without_ensemble_file_takes_its_best_models_in_natural_order(folds):
    folder = folds[0].parent
    shutil.copy(folds[0], folder / "heart_fold10_best.keras")
    shutil.copy(folds[0], folder / "heart_fold1_last.keras")  # not a best model: left out
    members, record = resolve_model_files(folder)
    assert [m.name for m in members] == ["heart_fold1_best.keras", "heart_fold2_best.keras", "heart_fold10_best.keras"]
    assert record is None


def test_resolve_a_folder_without_models_says_what_it_should_hold(tmp_path):
    folder = tmp_path / "empty_run"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"")  # not a fold model
    message = (
        r"empty_run: no model found; a model folder should hold one '<name>\.ensemble\.json' file .* "
        r"or fold models named '\*_best\.keras'; or pass a '\.keras' model file itself"
    )
    with pytest.raises(CtsegDataError, match=message):
        resolve_model_files(folder)


def _write_record(folder, **changes):
    record = {
        "format": "ctseg-ensemble",
        "version": 1,
        "members": ["heart_fold1_best.keras"],
        "postprocessing": None,
        "extra": {},
    }
    record.update(changes)
    path = folder / f"heart{ENSEMBLE_SUFFIX}"
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "nnunet"}, r"not a ctseg ensemble file \(format 'nnunet', expected 'ctseg-ensemble'\); write it"),
        ({"version": 2}, r"ensemble file version 2 is not supported \(this ctseg reads version 1\); update ctseg or"),
        ({"version": "1"}, r"ensemble file version '1' is not supported"),
        ({"members": []}, r"'members' must be a non-empty list of '\.keras' file names, got \[\]; write it"),
        ({"members": ["heart_fold1_best.h5"]}, r"'members' must be a non-empty list .*got \['heart_fold1_best.h5'\]"),
        ({"postprocessing": "largest"}, r"'postprocessing' must be an object or null, got 'largest'; write it"),
        (
            {"members": ["heart_fold1_best.keras", "heart_fold7_best.keras", "heart_fold8_best.keras"]},
            r"member model\(s\) not found: \S*heart_fold7_best.keras, \S*heart_fold8_best.keras; keep the fold models",
        ),
    ],
)
def test_resolve_refuses_a_wrong_ensemble_file(folds, changes, message):
    path = _write_record(folds[0].parent, **changes)
    with pytest.raises(CtsegDataError, match=message) as info:
        resolve_model_files(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(CtsegDataError, match=message):
        resolve_model_files(path.parent)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"not a valid ensemble file, the JSON cannot be read \(.*\); write it again with"),
        ("[1, 2]", r"not a ctseg ensemble file \(format 'list', expected 'ctseg-ensemble'\)"),
        ('{"members": []}', r"not a ctseg ensemble file \(format None, expected 'ctseg-ensemble'\)"),
    ],
)
def test_resolve_refuses_an_ensemble_file_that_is_not_one(folds, text, message):
    path = folds[0].parent / f"heart{ENSEMBLE_SUFFIX}"
    path.write_text(text)
    with pytest.raises(CtsegDataError, match=f"{re.escape(str(path))}: {message}"):
        resolve_model_files(path)


# ------------------------------------------------------------------ read_ensemble_settings


def test_settings_of_a_keras_file_are_its_stored_settings(folds):
    assert read_ensemble_settings(folds[1]) == read_settings(folds[1])
    assert read_ensemble_settings(folds[1]).extra == {"fold": 2}


def test_settings_of_an_ensemble_are_the_first_members_with_the_member_list(folds):
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds)
    settings = read_ensemble_settings(path)
    assert settings == dataclasses.replace(
        SETTINGS, extra={"fold": 1, "ensemble_members": [str(folds[0]), str(folds[1])]}
    )  # members' "extra" differs (fold 1, fold 2) and that is allowed
    assert read_settings(folds[0]).extra == {"fold": 1}  # the member's own settings are untouched
    assert read_ensemble_settings(folds[0].parent) == settings


def test_settings_of_a_folder_of_fold_models(folds):
    settings = read_ensemble_settings(folds[0].parent)
    assert settings.extra["ensemble_members"] == [str(folds[0]), str(folds[1])]
    assert settings.num_labels == 2 and settings.input_shape == SIZE


def test_members_may_differ_in_postprocessing_and_the_ensembles_own_replaces_it(tiny_models, folds):
    for k, (model, chosen) in enumerate(zip(tiny_models, ({"fill_holes": True}, None), strict=True)):
        settings = dataclasses.replace(SETTINGS, postprocessing=chosen, extra={"fold": k + 1})
        save_model(model, folds[k], settings, overwrite=True)
    assert read_ensemble_settings(folds[0].parent).postprocessing == {"fill_holes": True}  # no record: the first's
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds, postprocessing={"largest_component": True})
    assert read_ensemble_settings(path) == dataclasses.replace(
        SETTINGS,
        postprocessing={"largest_component": True},
        extra={"fold": 1, "ensemble_members": [str(folds[0]), str(folds[1])]},
    )
    assert read_settings(folds[0]).postprocessing == {"fill_holes": True}  # the member file is untouched


@dataclasses.dataclass(frozen=True)
class _SettingsWithoutPostprocessing:
    """Stand-in for settings that have no postprocessing field (as before it was added)."""

    input_shape: int
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"input_shape": self.input_shape, "extra": self.extra}


def _stand_in_settings(monkeypatch, by_name):
    monkeypatch.setattr(ensemble, "read_settings", lambda path: by_name[path.name])


def test_ensemble_postprocessing_is_left_out_when_the_settings_have_no_such_field(folds, monkeypatch, caplog):
    _stand_in_settings(monkeypatch, {f.name: _SettingsWithoutPostprocessing(SIZE) for f in folds})
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds, postprocessing={"largest_component": True})
    settings = read_ensemble_settings(path)
    assert settings == _SettingsWithoutPostprocessing(SIZE, extra={"ensemble_members": [str(f) for f in folds]})
    assert "the ensemble's postprocessing is ignored; this ctseg has no postprocessing setting" in caplog.text


def test_members_must_agree_on_settings_and_the_first_difference_is_named(tiny_models, folds):
    odd = dataclasses.replace(SETTINGS, label_names=("lumen", "wall"), fit_mode="resize")
    save_model(tiny_models[1], folds[1], odd, overwrite=True)
    message = (
        r"the ensemble's models were trained with different settings: "
        r"label_names=\['inner', 'outer'\] in \S*heart_fold1_best.keras "
        r"but label_names=\['lumen', 'wall'\] in \S*heart_fold2_best.keras; all members must share"
    )
    with pytest.raises(CtsegSettingsError, match=message):
        read_ensemble_settings(folds[0].parent)
    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds)
    with pytest.raises(CtsegSettingsError, match=f"{re.escape(str(path))}: {message}"):
        read_ensemble_settings(path)


@dataclasses.dataclass(frozen=True)
class _LaterSettings(ModelSettings):
    """ModelSettings as they may grow: a setting added after this module was written."""

    patch_overlap: float = 0.5

    def to_dict(self) -> dict:
        return {**super().to_dict(), "patch_overlap": self.patch_overlap}


def test_settings_are_compared_key_by_key_including_keys_added_later(folds, monkeypatch):
    _stand_in_settings(
        monkeypatch,
        {
            folds[0].name: _LaterSettings(input_shape=SIZE, num_labels=2, patch_overlap=0.5),
            folds[1].name: _LaterSettings(input_shape=SIZE, num_labels=2, patch_overlap=0.25),
        },
    )
    with pytest.raises(CtsegSettingsError, match=r"patch_overlap=0.5 in \S*fold1_best.keras but patch_overlap=0.25 in"):
        read_ensemble_settings(folds[0].parent)


# ------------------------------------------------------------------ averaged_predict_fn


def test_averaged_predict_fn_returns_the_exact_mean_of_its_members():
    batch = np.zeros((2, 4, 4, 1), dtype=np.float32)
    first = np.broadcast_to(np.array([0.125, 0.5, 0.375], dtype=np.float32), (2, 4, 4, 3)).copy()
    second = np.broadcast_to(np.array([0.375, 0.25, 0.375]), (2, 4, 4, 3))  # float64: cast to float32
    average = averaged_predict_fn(iter([lambda x: first, lambda x: second]))
    proba = average(batch)
    assert proba.dtype == np.float32 and proba.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(proba, np.broadcast_to(np.array([0.25, 0.375, 0.375], np.float32), (2, 4, 4, 3)))
    assert first[0, 0, 0, 0] == 0.125  # a member's output is not summed into in place


def test_averaged_predict_fn_gives_its_members_probabilities_for_the_views():
    batch = np.zeros((1, 2, 2, 1), np.float32)
    first, second = np.full((1, 2, 2, 2), 0.25), np.full((1, 2, 2, 2), 0.75)
    average = averaged_predict_fn([lambda x: first, lambda x: second])
    assert len(average.members) == 2
    members = average.member_probabilities(batch)
    assert [p.dtype for p in members] == [np.float32, np.float32]
    np.testing.assert_array_equal(members[1], second)
    np.testing.assert_array_equal(average(batch), 0.5)


def test_averaged_predict_fn_of_one_member_is_that_member():
    def member(x):
        return x

    assert averaged_predict_fn([member]) is member


def test_averaged_predict_fn_refuses_no_members():
    with pytest.raises(CtsegSettingsError, match="an ensemble needs at least one prediction function; none was given"):
        averaged_predict_fn([])


def test_averaged_predict_fn_refuses_members_with_different_outputs():
    average = averaged_predict_fn([lambda x: np.zeros((1, 4, 4, 3)), lambda x: np.zeros((1, 4, 4, 2))])
    with pytest.raises(
        CtsegSettingsError,
        match=r"ensemble member 2 returned probabilities of shape \(1, 4, 4, 2\), "
        r"member 1 returned \(1, 4, 4, 3\)",
    ):
        average(np.zeros((1, 4, 4, 1), np.float32))


# ------------------------------------------------------------------ load_ensemble


def test_load_ensemble_averages_the_members_keras_predictions(folds, tiny_models):
    from ctseg_helpers.segment.segmenter import keras_predict_fn

    path = write_ensemble(folds[0].parent / "heart.ensemble.json", folds)
    models, settings, members = load_ensemble(path)
    assert members == folds
    assert settings == read_ensemble_settings(path)
    assert len(models) == 2
    x = np.random.default_rng(0).random((3, SIZE, SIZE, 1), dtype=np.float32)
    own = [np.asarray(m.predict(x, verbose=0)) for m in models]
    for loaded, original in zip(own, tiny_models, strict=True):  # each member is the model saved as it
        np.testing.assert_allclose(loaded, np.asarray(original(x)), atol=1e-6)
    assert not np.allclose(own[0], own[1], atol=1e-3)  # the members really differ
    average = averaged_predict_fn([keras_predict_fn(m, settings.input_shape, settings.num_labels + 1) for m in models])
    np.testing.assert_allclose(average(x), (own[0] + own[1]) / 2, atol=1e-6)


def test_load_ensemble_of_a_keras_file_is_one_model(folds):
    models, settings, members = load_ensemble(folds[1])
    assert len(models) == 1 and members == [folds[1]]
    assert settings == read_settings(folds[1])


def test_load_ensemble_checks_settings_before_loading_any_model(tiny_models, folds, monkeypatch):
    save_model(tiny_models[1], folds[1], dataclasses.replace(SETTINGS, num_labels=1, label_names=()), overwrite=True)

    def must_not_load(path, **kwargs):
        raise AssertionError(f"{path} was loaded")

    monkeypatch.setattr(ensemble, "load_model", must_not_load)
    with pytest.raises(CtsegSettingsError, match=r"different settings: num_labels=2 in \S+ but num_labels=1 in"):
        load_ensemble(folds[0].parent)
