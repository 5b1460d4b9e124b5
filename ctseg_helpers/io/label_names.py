"""ROI names as users give them: one rule for every setting that takes names.

The user manual lists ``labels_list`` with the background first (``["background", "vertebral
body", ...]``); ctseg's settings name the ROIs only, label 1 first. :func:`check_label_names`
accepts both, everywhere names are taken (training, segmenting, areas, evaluation, notebooks).
The module imports nothing of the package but its errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ctseg_helpers.errors import CtsegSettingsError

logger = logging.getLogger(__name__)

#: Name of label 0. The user manual's ``labels_list`` starts with it; ctseg names the ROIs only.
BACKGROUND_NAME = "background"

#: Per-slice columns of an area table before the ROI columns; ROIs may not take these names.
SERIES_COLUMNS = ("series", "series_uid", "series_description")
TABLE_COLUMNS = (*SERIES_COLUMNS, "file", "slice_position_mm")


def _name_example(num_labels: int, example: Sequence[str] | None) -> str:
    names = list(example) if example else [f"ROI {i}" for i in range(1, num_labels + 1)]
    return f"{names} (or {[BACKGROUND_NAME, *names]})"


def check_label_names(
    label_names: Sequence[str],
    num_labels: int | None = None,
    *,
    setting: str = "labels_list",
    counted: str | None = None,
    example: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The ROI names, label 1 first, from names a user gave; the one rule used everywhere.

    The user manual lists ``labels_list`` with the background first (``["background",
    "vertebral body", ...]``), ctseg's settings without it. Both are accepted: when the first
    name is ``background`` (any case) and one name per ROI follows it (``num_labels + 1`` names;
    any number when ``num_labels`` is None), it is dropped and an info line says so.

    Parameters
    ----------
    label_names : sequence of str
        Names as the user gave them.
    num_labels : int, optional
        Number of ROIs (a model's ``num_labels``); None when only the label values tell.
    setting : str
        Name of the setting in messages (``labels_list``, ``--labels`` ...).
    counted : str, optional
        Where ``num_labels`` comes from, for the message (default: ``there are N ROI(s)``).
    example : sequence of str, optional
        Names shown as an example when the count is wrong (default ``ROI 1``, ``ROI 2`` ...).

    Returns
    -------
    tuple of str
        One name per ROI, background excluded.

    Raises
    ------
    CtsegSettingsError
        If the names are a single string, none, only ``background``, not one per ROI (the message
        gives both counts and an example), blank, repeated, name an ROI ``background`` or take a
        column name of the area table.

    Examples
    --------
    >>> check_label_names(["Background", "LV cavity", "LV myocardium"], 2)
    ('LV cavity', 'LV myocardium')
    """
    if isinstance(label_names, str):
        raise CtsegSettingsError(
            f"{setting} must be a list of names, e.g. ['{label_names}'], got the string {label_names!r}"
        )
    names = [str(n) for n in label_names]
    if not names:
        raise CtsegSettingsError(f"{setting} is empty: give one name per ROI (background excluded)")
    if names[0].strip().lower() == BACKGROUND_NAME and (num_labels is None or len(names) == num_labels + 1):
        if len(names) == 1:
            raise CtsegSettingsError(
                f"{setting} {names} names only the background (label 0): add one name per ROI after it, label 1 first"
            )
        logger.info("%s starts with %r, the name of label 0: dropped, so label 1 is %r", setting, names[0], names[1])
        names = names[1:]
    if num_labels is not None and len(names) != int(num_labels):
        counted = counted or f"there are {int(num_labels)} ROI(s)"
        raise CtsegSettingsError(
            f"{setting} has {len(names)} name(s) {names} but {counted}; give one name per ROI, label 1 first, "
            f"e.g. {_name_example(int(num_labels), example)}"
        )
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise CtsegSettingsError(f"{setting} {names}: name {blank[0]} is empty; give every ROI a name")
    if len(set(names)) != len(names):
        raise CtsegSettingsError(f"{setting} has repeated names: {names}; give each ROI its own name")
    background = [i + 1 for i, n in enumerate(names) if n.strip().lower() == BACKGROUND_NAME]
    if background:
        raise CtsegSettingsError(
            f"{setting} {names} names label {background[0]} {names[background[0] - 1]!r}, but the background is "
            "label 0 and not an ROI: give one name per ROI, label 1 first (a first name 'background' followed by "
            "one name per ROI is dropped)"
        )
    reserved = set(TABLE_COLUMNS) & set(names)
    if reserved:
        raise CtsegSettingsError(f"{setting} may not use the column name(s) {sorted(reserved)}; rename those ROIs")
    return tuple(names)


def label_names_hint(label_names: Sequence[str], num_rois: int) -> str:
    """The end of a 'label value out of range' message: the names given, the ROIs found, an example."""
    names = list(label_names)
    return (
        f"{len(names)} ROI name(s) {names} given for label values up to {num_rois}: give one name per ROI, "
        f"label 1 first, e.g. {_name_example(num_rois, None)}"
    )
