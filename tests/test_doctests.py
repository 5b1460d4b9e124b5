"""The examples in the docstrings of the training-recipe, file-naming and slice-geometry modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "ctseg_helpers.io.geometry",
    "ctseg_helpers.io.naming",
    "ctseg_helpers.measure.area",
    "ctseg_helpers.model.loss_names",
    "ctseg_helpers.prepare.plan",
    "ctseg_helpers.prepare.resample",
    "ctseg_helpers.segment.postprocess",
    "ctseg_helpers.train.distribute",
    "ctseg_helpers.train.loop",
    "ctseg_helpers.train.system",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
