"""The examples in the package's docstrings run and hold: every module that has any is tested."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ctseg_helpers

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(ctseg_helpers.__path__, "ctseg_helpers.")
    if not info.name.endswith("__main__")
)

#: Modules whose pure helpers must keep a runnable example (the docs point readers to them).
MUST_HAVE_EXAMPLES = {
    "ctseg_helpers.io.geometry",
    "ctseg_helpers.io.label_names",
    "ctseg_helpers.io.naming",
    "ctseg_helpers.model.loss_names",
    "ctseg_helpers.prepare.plan",
    "ctseg_helpers.prepare.resample",
    "ctseg_helpers.segment.postprocess",
    "ctseg_helpers.segment.segmenter",
    "ctseg_helpers.train.distribute",
    "ctseg_helpers.train.loop",
    "ctseg_helpers.train.system",
}


def _examples(name: str) -> int:
    module = importlib.import_module(name)
    return sum(len(t.examples) for t in doctest.DocTestFinder().find(module))


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_modules_that_must_have_examples_have_them():
    assert MUST_HAVE_EXAMPLES <= set(WITH_EXAMPLES), sorted(MUST_HAVE_EXAMPLES - set(WITH_EXAMPLES))


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
