"""Choose a folder on the Jupyter server from a notebook, with ipywidgets only.

Works in JupyterLab in a browser also when the server runs on another machine (a cluster,
a workstation reached over SSH): it browses the *server's* folders, where the data and the
kernel are, unlike a desktop file dialog (tkinter), which would open on the server's screen.

Click a folder in the list to open it, ``..`` to go up, or type a path and press Enter; then
click **Use this folder**. In a notebook::

    folder = pick_folder(dicom_dir, start="../data")   # shows the chooser only if dicom_dir is None
    ...
    run_segmentation(model_filename, folder.path, ...)  # clear error if nothing was chosen yet
"""

from __future__ import annotations

import logging
from pathlib import Path

from ctseg_helpers.errors import CtsegSettingsError
from ctseg_helpers.io.naming import DICOM_SUFFIXES, has_dicom_suffix

logger = logging.getLogger(__name__)

_UP = ".."


def _existing_folder(start: str | Path) -> Path:
    path = Path(start).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path.resolve()


class ChosenFolder:
    """A folder fixed in advance (``dicom_dir`` set in the notebook's parameters); shows no widget."""

    def __init__(self, path: str | Path):
        self.selected = Path(path)

    @property
    def path(self) -> Path:
        """The folder."""
        return self.selected

    def __repr__(self) -> str:
        return f"ChosenFolder({str(self.selected)!r})"


class FolderPicker:
    """Browse the server's folders and choose one.

    Parameters
    ----------
    start : path
        Folder shown first; if it does not exist, its nearest existing parent.
    title : str
        Text above the chooser.
    show_hidden : bool
        List folders whose names start with a dot.

    Attributes
    ----------
    current : Path
        The folder being shown.
    selected : Path or None
        The chosen folder, None until **Use this folder** is clicked.
    widget : ipywidgets.VBox
        The chooser (displayed by the notebook).
    """

    def __init__(self, start: str | Path = ".", *, title: str = "Choose a folder", show_hidden: bool = False):
        import ipywidgets as w  # noqa: PLC0415

        self.show_hidden = show_hidden
        self.current = _existing_folder(start)
        self.selected: Path | None = None
        self._callbacks = []
        self._title = w.HTML(f"<b>{title}</b>")
        # Width "auto" in a box that stretches its children: the text box and the list fill the output
        # area, margins included (width 100% plus a widget's margin ran past its right edge).
        self._path = w.Text(
            value=str(self.current), description="Folder:", continuous_update=False, layout=w.Layout(width="auto")
        )
        self._list = w.Select(options=[], rows=12, layout=w.Layout(width="auto"))
        self._up = w.Button(description="Up", icon="arrow-up", tooltip="Go to the parent folder")
        self._choose = w.Button(
            description="Use this folder", button_style="primary", icon="check", tooltip="Choose the folder shown above"
        )
        self._info = w.HTML()
        self._status = w.HTML("No folder chosen yet.")
        self._path.observe(self._on_path, names="value")
        self._list.observe(self._on_pick, names="value")
        self._up.on_click(lambda _: self.go_to(self.current.parent))
        self._choose.on_click(lambda _: self.choose())
        self.widget = w.VBox(
            [self._title, self._path, self._list, w.HBox([self._up, self._choose]), self._info, self._status],
            layout=w.Layout(align_items="stretch", max_width="100%"),
        )
        self._refresh()

    # -------------------------------------------------------------- actions

    def go_to(self, folder: str | Path) -> None:
        """Show ``folder`` (relative paths are taken from the folder shown now)."""
        target = Path(folder).expanduser()
        if not target.is_absolute():
            target = self.current / target
        target = target.resolve()
        if not target.is_dir():
            self._info.value = f"<span style='color:#b00'>{target} is not a folder</span>"
            self._set_path_text()
            return
        previous = self.current
        self.current = target
        if not self._refresh():
            self.current = previous
            self._refresh(message=f"<span style='color:#b00'>cannot open {target}: permission denied</span>")

    def choose(self, folder: str | Path | None = None) -> Path:
        """Choose ``folder`` (default: the folder shown) and tell the callbacks."""
        if folder is not None:
            self.go_to(folder)
        self.selected = self.current
        self._status.value = f"Chosen: <code>{self.selected}</code>"
        logger.info("folder chosen: %s", self.selected)
        for callback in self._callbacks:
            callback(self.selected)
        return self.selected

    def on_choose(self, callback) -> None:
        """Call ``callback(path)`` each time a folder is chosen."""
        self._callbacks.append(callback)

    @property
    def path(self) -> Path:
        """The chosen folder.

        Raises
        ------
        CtsegSettingsError
            If no folder has been chosen yet.
        """
        if self.selected is None:
            raise CtsegSettingsError(
                "no folder chosen yet: pick the folder in the chooser above, click 'Use this folder', "
                "then run this cell again (or set dicom_dir in the settings cell)"
            )
        return self.selected

    # -------------------------------------------------------------- display

    def _ipython_display_(self):
        from IPython.display import display  # noqa: PLC0415

        display(self.widget)

    def __repr__(self) -> str:
        selected = str(self.selected) if self.selected else None
        return f"FolderPicker(current={str(self.current)!r}, selected={selected!r})"

    # -------------------------------------------------------------- internals

    def subfolders(self) -> list[str]:
        """Names of the folders inside the folder shown, sorted case-insensitively."""
        names = [
            p.name for p in self.current.iterdir() if p.is_dir() and (self.show_hidden or not p.name.startswith("."))
        ]
        return sorted(names, key=str.lower)

    def _refresh(self, message: str | None = None) -> bool:
        try:
            names = self.subfolders()
            files = [p for p in self.current.iterdir() if p.is_file()]
        except OSError:
            return False
        options = ([_UP] if self.current != self.current.parent else []) + [f"{n}/" for n in names]
        self._list.unobserve(self._on_pick, names="value")
        self._list.options = options
        self._list.value = None
        self._list.observe(self._on_pick, names="value")
        self._set_path_text()
        n_dicom = sum(1 for p in files if has_dicom_suffix(p))
        self._info.value = message or (
            f"{len(names)} folder(s) and {len(files)} file(s) here"
            + (f", {n_dicom} of them DICOM files ({'/'.join(DICOM_SUFFIXES)})" if n_dicom else "")
        )
        return True

    def _set_path_text(self) -> None:
        self._path.unobserve(self._on_path, names="value")
        self._path.value = str(self.current)
        self._path.observe(self._on_path, names="value")

    def _on_path(self, change) -> None:
        if change["new"]:
            self.go_to(change["new"])

    def _on_pick(self, change) -> None:
        picked = change["new"]
        if picked is None:
            return
        self.go_to(self.current.parent if picked == _UP else self.current / picked.rstrip("/"))


def pick_folder(path: str | Path | None = None, *, start: str | Path = ".", title: str = "Choose the DICOM folder"):
    """A folder given in advance, or a chooser shown in the notebook.

    Parameters
    ----------
    path : path or None
        When set (papermill, command line), it is used as it is and nothing is displayed.
    start : path
        Where the chooser starts when ``path`` is None.
    title : str
        Text above the chooser.

    Returns
    -------
    ChosenFolder or FolderPicker
        Both have ``.path``; a picker's raises a clear error until a folder is chosen.
    """
    if path is not None:
        return ChosenFolder(path)
    picker = FolderPicker(start, title=title)
    try:
        from IPython import get_ipython  # noqa: PLC0415
        from IPython.display import display  # noqa: PLC0415
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return picker
    if get_ipython() is not None:
        display(picker.widget)
    return picker


__all__ = ["ChosenFolder", "FolderPicker", "pick_folder"]
