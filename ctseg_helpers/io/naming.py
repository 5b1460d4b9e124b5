"""File names: which files are DICOM or label maps, how slices and their outputs are named.

A slice and everything that belongs to it share one file stem: ``IM_0001.dcm`` (the DICOM
slice), ``IM_0001.png`` (its manual or predicted label map), ``IM_0001.jpg`` (its preview).
This module holds the one version of those rules that every part of ctseg uses:

- :data:`DICOM_SUFFIXES` and :data:`LABEL_SUFFIXES`, compared case-insensitively;
- :func:`dicom_stem` and :func:`label_stem`, the stem that pairs files;
- :func:`output_stems`, the names of a run's outputs, unique over a run;
- :func:`find_label_files`, the label maps of a folder by stem;
- :func:`natural_key`, file name order as people read it (``IM2`` before ``IM10``).

DICOM files need no suffix (many scanners write none); a name without a DICOM suffix is its
own stem. The module imports nothing of ctseg but :mod:`ctseg_helpers.errors`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from ctseg_helpers.errors import CtsegDataError

logger = logging.getLogger(__name__)

#: File name suffixes of DICOM files (any case); dropped to get a slice's stem.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")

#: Label map suffixes (any case), in the order of preference when a stem has several.
LABEL_SUFFIXES = (".png", ".npy", ".tif", ".tiff", ".jpg", ".jpeg")


def has_dicom_suffix(path: str | Path) -> bool:
    """True when the file name ends in a DICOM suffix (:data:`DICOM_SUFFIXES`, any case).

    A file without one may still be DICOM: only reading its header tells.

    Examples
    --------
    >>> has_dicom_suffix("scan/IM_0001.DCM"), has_dicom_suffix("IM_0001.png"), has_dicom_suffix("IM_0001")
    (True, False, False)
    """
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def dicom_stem(path: str | Path) -> str:
    """The stem that names a DICOM slice's label map and outputs: its file name without a DICOM suffix.

    Parameters
    ----------
    path : str or Path
        A DICOM file; only its name is used.

    Returns
    -------
    str
        The name without its last suffix when that is a DICOM suffix (any case); the whole
        name otherwise, so ``1.2.840.113619.2.1`` and ``IM0001`` are kept as they are.

    Examples
    --------
    >>> dicom_stem("/scans/p1/IM_0001.dcm"), dicom_stem("scan.DCM"), dicom_stem("a.b.ima")
    ('IM_0001', 'scan', 'a.b')
    >>> dicom_stem("1.2.840.113619.2.1")
    '1.2.840.113619.2.1'
    """
    name = Path(path).name
    return name[: -len(Path(name).suffix)] if has_dicom_suffix(name) else name


def label_stem(path: str | Path) -> str | None:
    """The stem of a label map file (its name without the label suffix), or None for other files.

    Examples
    --------
    >>> label_stem("labels/IM_0001.png"), label_stem("IM_0001.TIFF"), label_stem("notes.txt")
    ('IM_0001', 'IM_0001', None)
    """
    name = Path(path).name
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in LABEL_SUFFIXES else None


def output_stems(files: Sequence[str | Path]) -> list[str]:
    """:func:`dicom_stem` of each file, made unique over the list (``name``, ``name_2``, ...).

    Two DICOM files of one run may share a stem (``a/IM1.dcm`` and ``b/IM1.dcm``, or ``IM1``
    and ``IM1.dcm``); the later one is renamed with a warning. A new name never takes another
    file's own stem, so no output overwrites another.

    Examples
    --------
    >>> output_stems(["a/IM1.dcm", "b/IM1.dcm", "IM1_2.dcm"])
    ['IM1', 'IM1_3', 'IM1_2']
    """
    bases = [dicom_stem(path) for path in files]
    taken = set(bases)
    stems, used = [], set()
    for stem in bases:
        if stem in used:
            k = 2
            while f"{stem}_{k}" in taken or f"{stem}_{k}" in used:
                k += 1
            logger.warning("two DICOM files are both named %s; the second one's outputs are named %s_%d", stem, stem, k)
            stem = f"{stem}_{k}"
        used.add(stem)
        stems.append(stem)
    return stems


def natural_key(path: str | Path) -> list:
    """Sort key of a file name in natural order: digit runs compare as numbers, case is ignored.

    Only the file name counts, not its folder.

    Examples
    --------
    >>> sorted(["IM10.dcm", "im2.dcm", "IM1.dcm"], key=natural_key)
    ['IM1.dcm', 'im2.dcm', 'IM10.dcm']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", Path(path).name)]


def find_label_files(folder: str | Path) -> dict[str, Path]:
    """The label maps of a folder, by stem (``IM_0001.png`` -> ``IM_0001``).

    Parameters
    ----------
    folder : str or Path
        Folder of label maps (:data:`LABEL_SUFFIXES`); other files and hidden files
        (``.DS_Store``) are ignored, and so are subfolders.

    Returns
    -------
    dict of str to Path
        Stem -> file, sorted by stem.

    Raises
    ------
    CtsegDataError
        If the folder does not exist, holds no label map, or two files share a stem
        (``a.png`` and ``a.npy``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CtsegDataError(f"{folder}: no such label folder; check the path")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = label_stem(path)
        if stem is None or path.name.startswith(".") or not path.is_file():
            continue
        if stem in found:
            raise CtsegDataError(
                f"{folder}: two label files for slice {stem!r} ({found[stem].name} and {path.name}); keep one of them"
            )
        found[stem] = path
    if not found:
        raise CtsegDataError(
            f"{folder}: no label files ({', '.join(LABEL_SUFFIXES)}) in the folder; select the folder that "
            "holds the label maps, named like their DICOM files (IM_0001.png for IM_0001.dcm)"
        )
    return dict(sorted(found.items()))


__all__ = [
    "DICOM_SUFFIXES",
    "LABEL_SUFFIXES",
    "dicom_stem",
    "find_label_files",
    "has_dicom_suffix",
    "label_stem",
    "natural_key",
    "output_stems",
]
