"""Each committed notebook is generated from its paired percent script (Jupytext).

``notebooks/<name>.py`` is the source a reviewer reads and the linter checks; ``<name>.ipynb``
is written from it with ``make notebooks`` (``jupytext --sync``) and committed without outputs.
"""

from __future__ import annotations

import nbformat
import pytest

NAMES = ("train", "test", "visualize")


def _cells(nb):
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_paired_script(name, repo_root):
    jupytext = pytest.importorskip("jupytext")
    script = jupytext.read(repo_root / "notebooks" / f"{name}.py")
    committed = nbformat.read(repo_root / "notebooks" / f"{name}.ipynb", as_version=4)
    assert _cells(committed) == _cells(script), f"run 'make notebooks' (jupytext --sync notebooks/{name}.py)"
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name, repo_root):
    nb = nbformat.read(repo_root / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for cell in code:  # thin notebooks: one helper call per step
        for word in ("def ", "class ", "global "):
            assert word not in cell.source, f"{name}.ipynb: move the code with {word.strip()!r} into ctseg_helpers"
