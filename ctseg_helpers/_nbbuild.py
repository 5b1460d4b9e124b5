"""Build the committed notebooks from plain cell lists (used by ``notebooks/_build_*.py``).

Notebooks are generated, not hand-edited, so they are committed without outputs and with
stable cell ids, and their diffs stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: Cell kinds: markdown, code, and the one code cell tagged ``parameters`` for papermill.
KINDS = ("md", "code", "params")


def build_notebook(cells: Iterable[tuple[str, str]], id_prefix: str) -> nbformat.NotebookNode:
    """A notebook without outputs from ``(kind, source)`` pairs; ids are ``<id_prefix>-NN``."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        if kind not in KINDS:
            raise ValueError(f"cell kind must be one of {KINDS}, got {kind!r}")
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{id_prefix}-{index:02d}"
    nbformat.validate(nb)
    return nb


def write_notebook(notebook: nbformat.NotebookNode, path: str | Path) -> Path:
    """Write ``notebook`` to ``path`` and return the path."""
    path = Path(path)
    nbformat.write(notebook, path)
    return path
