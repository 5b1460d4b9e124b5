"""What ctseg wrote, so that ``overwrite`` only ever replaces ctseg's own files.

The rule (nothing a user wrote is ever lost): ``--overwrite`` (``overwrite=True``) replaces a
file only when an earlier ctseg run wrote it and nobody changed it since. A file ctseg did not
write, or one changed after ctseg wrote it, is refused with a message naming it, even with
``overwrite``; the user moves it away or chooses another output.

How ctseg knows its own files
-----------------------------
**A manifest per output folder.** Right after ctseg finishes writing a file it calls
:func:`record_written`, which notes the file's name, size (bytes) and modification time
(``st_mtime_ns``) in ``.ctseg-written.json`` in the same folder::

    {"format": "ctseg-written", "version": 1,
     "files": {"areas.csv": {"size": 1234, "mtime_ns": 1718000000123456789}}}

:func:`check_replaceable` accepts a file for replacing only when its entry matches its size
and modification time now (a regular file; a link or a folder at that path never matches).
A file written beside its place and renamed there is recorded just before the rename
(:func:`rename_recorded`), so that a run killed at any moment leaves none of its files in
place unrecorded.
The manifest is replaced atomically (written beside it, then renamed), its name starts with a
dot so label-folder readers skip it, and it travels with its folder (``cp -a``, ``rsync -a``
keep size and times). Limits, all on the safe side: a file copied without its times, or whose
entry was lost when two ctseg runs recorded into one folder at the same moment, counts as
changed and is refused; an edit that keeps the size within the file system's time resolution
(1-2 s on FAT, some network shares) would go unnoticed.

**Files whose content says so.** A file that ctseg rewrites in place while it runs, and that is
left unfinished when a run is interrupted (the resumable HDF5 output of
:func:`~ctseg_helpers.workflows.volume.segment_volume`), cannot match a record made before the
interruption. Callers pass ``own_file``, a test of the file's content, consulted only for a
file the manifest has no entry for: ``segment_volume`` accepts an HDF5 file carrying its
settings attribute (``ctseg_volume_settings``) and ``complete = False``, i.e. an unfinished
ctseg run. It removes the file's entry when it starts a new output and records the output
when the run finishes, so a finished output changed afterwards has a mismatching entry and is
refused whatever it holds. ``ctseg convert`` writes its HDF5 output in one go (an interrupted
conversion removes it) and uses the manifest alone.

Outputs are also never written into (or into a folder inside) a folder the same command reads
(:func:`check_outside_inputs`), so a run cannot mix its outputs into its own inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from ctseg_helpers.errors import CtsegSettingsError

logger = logging.getLogger(__name__)

#: Name of the manifest kept in every folder ctseg writes outputs into.
MANIFEST_NAME = ".ctseg-written.json"
_FORMAT = "ctseg-written"
_VERSION = 1

#: Middle of the message refusing a file that is not ctseg's own.
NEVER_REPLACED = "ctseg never replaces such files, even with --overwrite (overwrite=True)"


def _read_manifest(folder: Path) -> dict[str, dict]:
    """The ``files`` entries of ``folder``'s manifest; empty when there is none or it is unusable."""
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("%s cannot be read (%s); the files it listed count as not written by ctseg", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == _FORMAT else None
    if not isinstance(files, dict):
        logger.warning("%s is not a ctseg manifest; the files it listed count as not written by ctseg", path)
        return {}
    return {name: entry for name, entry in files.items() if isinstance(entry, dict)}


def _write_manifest(folder: Path, files: dict[str, dict]) -> None:
    """Replace ``folder``'s manifest atomically (removed when no file is left in it)."""
    path = folder / MANIFEST_NAME
    if not files:
        path.unlink(missing_ok=True)
        return
    tmp = folder / f"{MANIFEST_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(
            json.dumps({"format": _FORMAT, "version": _VERSION, "files": dict(sorted(files.items()))}, indent=1),
            encoding="utf-8",
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _by_folder(paths) -> dict[Path, list[Path]]:
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        path = Path(path).absolute()
        groups.setdefault(path.parent, []).append(path)
    return groups


def _fingerprint(path: Path) -> dict | None:
    """Size and modification time of a regular file (not following a link); None otherwise."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def record_written(*paths: str | Path) -> None:
    """Record files ctseg has just finished writing, each in its folder's manifest.

    Call it right after the file is complete (closed, renamed into place); a file changed after
    this call counts as changed by someone else.

    Raises
    ------
    FileNotFoundError
        If a path is not a regular file (a caller's mistake: only written files are recorded).
    """
    for folder, files in _by_folder(paths).items():
        manifest = _read_manifest(folder)
        for path in files:
            fingerprint = _fingerprint(path)
            if fingerprint is None:
                raise FileNotFoundError(f"{path}: no such file to record as written by ctseg")
            manifest[path.name] = fingerprint
        _write_manifest(folder, manifest)


def rename_recorded(tmp: str | Path, path: str | Path) -> Path:
    """Rename a file ctseg has just finished writing into place, recorded from the moment it is there.

    ``record_written`` after a rename leaves a moment in which the file is in place but not yet
    recorded: a run killed then (``kill -9``, a power cut) leaves a file that counts as not
    written by ctseg, which a rerun with ``overwrite`` refuses. Here the record comes first,
    with ``tmp``'s size and modification time, which the rename keeps; a run killed before the
    rename leaves ``tmp`` beside a missing ``path`` (its entry vouches for nothing there).

    Parameters
    ----------
    tmp : path
        The finished file, in the folder of ``path``.
    path : path
        Where it goes; must not exist (delete the file it replaces first).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileNotFoundError
        If ``tmp`` is not a regular file.
    FileExistsError
        If ``path`` exists (a caller's mistake, as the next one).
    ValueError
        If ``tmp`` is in another folder.
    """
    tmp, path = Path(tmp).absolute(), Path(path).absolute()
    if tmp.parent != path.parent:
        raise ValueError(f"{tmp}: must be in the folder of {path} to be renamed into place")
    if os.path.lexists(path):
        raise FileExistsError(f"{path}: exists; delete the file it replaces before renaming {tmp.name} into place")
    fingerprint = _fingerprint(tmp)
    if fingerprint is None:
        raise FileNotFoundError(f"{tmp}: no such file to rename into place")
    manifest = _read_manifest(path.parent)
    manifest[path.name] = fingerprint
    manifest.pop(tmp.name, None)
    _write_manifest(path.parent, manifest)
    os.replace(tmp, path)
    return path


def forget_written(*paths: str | Path) -> None:
    """Remove files from their folders' manifests (after ctseg deleted them)."""
    for folder, files in _by_folder(paths).items():
        manifest = _read_manifest(folder)
        if any(path.name in manifest for path in files):
            for path in files:
                manifest.pop(path.name, None)
            _write_manifest(folder, manifest)


def written_by_ctseg(path: str | Path) -> bool:
    """True when ``path`` is a file recorded by :func:`record_written` and unchanged since."""
    path = Path(path).absolute()
    entry = _read_manifest(path.parent).get(path.name)
    return entry is not None and entry == _fingerprint(path)


def check_replaceable(
    path: str | Path,
    overwrite: bool,
    *,
    what_to_do: str = "choose another name or pass --overwrite",
    instead: str = "choose another output",
    own_file: Callable[[Path], bool] | None = None,
    error_type: type[Exception] = CtsegSettingsError,
) -> bool:
    """Check that ctseg may write ``path``: it is missing, or ``overwrite`` and ctseg's own.

    Parameters
    ----------
    path : path
        The output file about to be written.
    overwrite : bool
        The user's ``--overwrite`` / ``overwrite=True``.
    what_to_do : str
        End of the message for an existing file without ``overwrite``.
    instead : str
        What else to do, at the end of the message refusing a file that is not ctseg's own
        (after "move it away or").
    own_file : callable, optional
        ``own_file(path) -> bool``: True when the file's content shows it is ctseg's own
        unfinished output (see the module documentation); tried only for a regular file the
        manifest has no entry for (a recorded file that changed is refused whatever it holds).
    error_type : exception class
        Raised on refusal (the caller's usual error for its outputs).

    Returns
    -------
    bool
        True when the file exists (and may be replaced), False when it is missing.

    Raises
    ------
    error_type
        ``"<path> exists already; <what_to_do>"`` when the file exists and ``overwrite`` is
        False; ``"<path>: not written by ctseg; ctseg never replaces such files, even with
        --overwrite (overwrite=True): move it away or <instead>"`` (or ``changed since ctseg
        wrote it``) with ``overwrite`` when the file is not ctseg's own, unchanged.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return False
    if not overwrite:
        raise error_type(f"{path} exists already; {what_to_do}")
    absolute = path.absolute()
    entry = _read_manifest(absolute.parent).get(absolute.name)
    if entry is not None and entry == _fingerprint(absolute):
        return True
    if entry is None and own_file is not None and path.is_file() and not path.is_symlink() and own_file(path):
        return True
    reason = "not written by ctseg" if entry is None else "changed since ctseg wrote it"
    raise error_type(f"{path}: {reason}; {NEVER_REPLACED}: move it away or {instead}")


def check_outside_inputs(
    out_dir: str | Path,
    inputs: Mapping[str, str | Path | None],
    *,
    error_type: type[Exception] = CtsegSettingsError,
) -> None:
    """Refuse an output folder that is, or is inside, a folder the command reads.

    Parameters
    ----------
    out_dir : path
        Where the command writes.
    inputs : mapping of str to path or None
        What each input folder is (``"manual label"``) -> the folder; None entries are skipped.

    Raises
    ------
    error_type
        Naming the output folder and the input folder it is in.
    """
    out = Path(out_dir).resolve()
    for what, folder in inputs.items():
        if folder is None:
            continue
        folder_resolved = Path(folder).resolve()
        if folder_resolved == out or folder_resolved in out.parents:
            where = "is" if folder_resolved == out else "is inside"
            raise error_type(
                f"{out_dir}: the output folder {where} the {what} folder {folder}, which this command reads; "
                "ctseg never writes into a folder it reads: choose an output folder outside it"
            )


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, as hex, read in pieces of ``chunk_bytes`` (identifies a model).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     file_sha256(f.name)[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "MANIFEST_NAME",
    "NEVER_REPLACED",
    "check_outside_inputs",
    "check_replaceable",
    "file_sha256",
    "forget_written",
    "record_written",
    "rename_recorded",
    "written_by_ctseg",
]
