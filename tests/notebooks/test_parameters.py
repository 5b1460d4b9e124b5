"""The notebooks' parameters cells hold the defaults of the settings they pass on.

``notebooks/train.py`` passes its parameters to :class:`TrainConfig`, ``notebooks/test.py`` to
``run_segmentation`` (the :class:`SegmentSettings` among them); each parameter's value in the
parameters cell must be the default of the setting it is passed to, so a notebook run and a
``ctseg`` run with no options agree. Read from the scripts with :mod:`ast`, nothing is run.
"""

from __future__ import annotations

import ast
import os
from dataclasses import MISSING, fields

import pytest

from ctseg_helpers.segment.segmenter import SegmentSettings
from ctseg_helpers.train.loop import TrainConfig


def _parameters(script: str) -> dict:
    """The settings of the cell tagged ``parameters``: name -> literal value."""
    cell = script.split('# %% tags=["parameters"]\n', 1)[1].split("\n# %%", 1)[0]
    values = {}
    for node in ast.parse(cell).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _passed_to(script: str, function: str) -> dict:
    """The keyword arguments of the call to ``function`` that come from the parameters cell alone."""
    parameters = _parameters(script)
    calls = [
        node
        for node in ast.walk(ast.parse(script))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == function
    ]
    assert len(calls) == 1, f"one call of {function} expected"
    passed = {}
    for keyword in calls[0].keywords:
        used = {n.id for n in ast.walk(keyword.value) if isinstance(n, ast.Name)} - {"tuple"}
        if used <= parameters.keys():  # e.g. tuple(label_names), {"enabled": augment, **augment_options}
            passed[keyword.arg] = eval(
                compile(ast.Expression(keyword.value), "<parameters>", "eval"),  # noqa: S307
                {"__builtins__": {"tuple": tuple}},
                dict(parameters),
            )
    return passed


def _path_from_repo(notebook_path: str) -> str:
    """A path given relative to notebooks/, as seen from the checkout (where ``ctseg`` runs)."""
    return os.path.normpath(os.path.join("notebooks", notebook_path))


def test_train_notebook_parameters_are_the_train_config_defaults(repo_root):
    passed = _passed_to((repo_root / "notebooks" / "train.py").read_text(encoding="utf-8"), "TrainConfig")
    assert {"epochs", "learning_rate", "augmentation", "out_dir", "mixed_precision"} <= passed.keys()
    defaults = {f.name: f for f in fields(TrainConfig)}
    required = [name for name in passed if defaults[name].default is defaults[name].default_factory is MISSING]
    assert required == ["main_dir"]
    default = TrainConfig(main_dir="data")
    # through TrainConfig, so that a list is compared as the tuple and a dict as the AugmentConfig it becomes
    notebook = TrainConfig(main_dir="data", **{k: v for k, v in passed.items() if k not in ("main_dir", "out_dir")})
    for name in passed.keys() - {"main_dir", "out_dir"}:
        assert getattr(notebook, name) == getattr(default, name), (
            f"notebooks/train.py sets {name} = {getattr(notebook, name)!r}, TrainConfig's default is "
            f"{getattr(default, name)!r}: make them the same"
        )
    assert _path_from_repo(passed["out_dir"]) == os.path.normpath(default.out_dir), (
        f"notebooks/train.py writes to {passed['out_dir']!r} (from notebooks/), TrainConfig's default out_dir is "
        f"{default.out_dir!r} (from the checkout): make them the same folder"
    )


def test_train_notebook_finetune_parameters_are_the_finetune_config_defaults(repo_root):
    from ctseg_helpers.train.finetune import FinetuneConfig

    passed = _passed_to((repo_root / "notebooks" / "train.py").read_text(encoding="utf-8"), "finetune_step")
    assert {"old_data", "epochs", "learning_rate", "max_minutes", "overwrite"} <= passed.keys()
    default = FinetuneConfig("model.keras", "data")
    for name, value in passed.items():
        assert value == getattr(default, name), (
            f"notebooks/train.py passes {name}={value!r} to finetune_step, FinetuneConfig's default is "
            f"{getattr(default, name)!r}: make them the same"
        )


def test_test_notebook_parameters_are_the_segment_settings_defaults(repo_root):
    passed = _passed_to((repo_root / "notebooks" / "test.py").read_text(encoding="utf-8"), "run_segmentation")
    default = SegmentSettings()
    for f in fields(SegmentSettings):
        assert f.name in passed, f"notebooks/test.py has no parameter for the segment setting {f.name}"
        assert passed[f.name] == getattr(default, f.name), (
            f"notebooks/test.py sets {f.name} = {passed[f.name]!r}, SegmentSettings' default is "
            f"{getattr(default, f.name)!r}: make them the same"
        )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('x = 1\n# %% tags=["parameters"]\nepochs = 5  # few\n\n# %%\nf(epochs=epochs, seed=seed)\n', None),
        ('# %% tags=["parameters"]\nepochs = 5\nimport os\n', "import os"),
    ],
)
def test_parameters_are_read_from_the_tagged_cell_only(script, message):
    if message is None:
        assert _parameters(script) == {"epochs": 5}
        assert _passed_to(script, "f") == {"epochs": 5}  # seed is not a parameter
    else:
        with pytest.raises(AssertionError, match=message):
            _parameters(script)
