"""Names of the segmentation losses and how status lines and plots call them (no TensorFlow).

The losses themselves are in :mod:`ctseg_helpers.model.losses`, which imports TensorFlow; the
settings checks, the command line and the plots need only the names, so they live here.
"""

from __future__ import annotations

#: Loss names accepted by :func:`ctseg_helpers.model.losses.get_loss`, the default first.
LOSS_NAMES = ("dice_ce", "dice", "focal", "weighted_ce", "tversky")

#: What a status line or a plot axis calls each loss.
LOSS_LABELS = {
    "dice_ce": "Dice+CE loss",
    "dice": "Dice loss",
    "focal": "Focal loss",
    "weighted_ce": "Weighted CE loss",
    "tversky": "Tversky loss",
}

#: Options each loss takes (see the loss classes for their meaning).
LOSS_OPTIONS = {
    "dice_ce": ("dice_weight", "ce_weight", "include_background", "smooth", "class_weights"),
    "dice": ("include_background", "smooth"),
    "focal": ("gamma", "class_weights"),
    "weighted_ce": ("class_weights",),
    "tversky": ("alpha", "beta", "include_background", "smooth"),
}


def loss_label(name: str) -> str:
    """``"Dice+CE loss"`` for ``"dice_ce"``; ``"loss"`` for a name not known here."""
    return LOSS_LABELS.get(name, "loss")


def check_loss_options(name: str, options: dict) -> dict:
    """Check ``options`` are ones the loss ``name`` takes; return them as a plain dict.

    Raises
    ------
    CtsegSettingsError
        For an unknown loss, or an option the loss does not take (the message lists the ones it does).
    """
    from ctseg_helpers.errors import CtsegSettingsError  # noqa: PLC0415

    if name not in LOSS_NAMES:
        raise CtsegSettingsError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(LOSS_OPTIONS[name]))
    if unknown:
        raise CtsegSettingsError(
            f"the {name!r} loss takes no option(s) {unknown}; its options are {list(LOSS_OPTIONS[name])}"
        )
    return options


def dice_column(label_names, k: int) -> str:
    """History column (and Keras metric name) of ROI ``k``'s Dice: ``dice_lv_blood_pool`` or ``dice_1``.

    >>> dice_column(("LV blood pool",), 1), dice_column((), 2)
    ('dice_lv_blood_pool', 'dice_2')
    """
    if not label_names:
        return f"dice_{k}"
    slug = "".join(ch.lower() if ch.isalnum() else "_" for ch in str(label_names[k - 1])).strip("_")
    return f"dice_{slug or 'roi'}"
