"""Post-processing of predicted label maps, chosen on validation data the way nnU-Net does it.

A post-processing step is applied only where it improves validation Dice:

1. :func:`choose_postprocessing` tries each step on the validation predictions, one after the
   other (nnU-Net's greedy order), and keeps the ones that help;
2. the chosen :class:`PostProcessing` is saved with the model (:meth:`PostProcessing.to_dict`)
   and applied to new predictions (:meth:`PostProcessing.apply`).

A run with too few patients to set any aside for validation has no predictions to judge a step
on. :func:`postprocessing_from_labels` then takes the steps the training labels themselves
vouch for: keep the largest region of an ROI that is one region on (nearly) every training
slice, fill the holes of an ROI that never has one. It cannot see what a step costs on a
prediction, so it is stricter than the validation rule (see its documentation).

Conventions
-----------
*Label maps* are integer arrays (uint8 on output): 0 is background, ``1..num_labels`` are the ROIs.
A stack ``(K, M, N)`` is processed slice by slice; everything here is 2D.

*Connectivity* is 8-connectivity: pixels that touch by an edge or a corner belong to the same
connected component (``scipy.ndimage.label`` with a full 3 x 3 structure). Holes are the
background regions, 4-connected, that do not reach the slice border
(``scipy.ndimage.binary_fill_holes``), the usual dual of 8-connected foreground.

*Dice* is pooled over all validation slices, ``2 |P ∩ T| / (|P| + |T|)`` with the pixel counts
summed over slices first, and is ``NaN`` for an ROI that is in neither the predictions nor the
truths.

NumPy and SciPy only: importing this module does not import TensorFlow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real

import numpy as np
from scipy import ndimage

from ctseg_helpers.errors import CtsegDataError, CtsegSettingsError

logger = logging.getLogger(__name__)

__all__ = [
    "PostProcessing",
    "choose_postprocessing",
    "postprocessing_from_labels",
    "dice_per_label",
    "fill_holes",
    "keep_largest_component",
]

#: 8-connectivity in 2D.
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)

#: Largest label value a uint8 label map can hold.
_MAX_LABEL = 255


# --------------------------------------------------------------------------- input checks


def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise CtsegDataError(
            f"mask must be 2D (rows, cols) or a stack of slices (slices, rows, cols), got shape {mask.shape}"
        )
    return mask.astype(bool, copy=False)


def _check_label_map(labels, where: str, max_label: int, ndims=(2, 3)) -> np.ndarray:
    """The label map as an array, checked: dimensions, integer dtype, values ``0..max_label``."""
    labels = np.asarray(labels)
    if labels.ndim not in ndims:
        expected = "2D (rows, cols)" if ndims == (2,) else "2D (rows, cols) or 3D (slices, rows, cols)"
        raise CtsegDataError(f"{where} must be a {expected} label map, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise CtsegDataError(
            f"{where} must hold integer label values (0 = background), got dtype {labels.dtype}; "
            "convert the label map with .astype(np.uint8) first"
        )
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > max_label:
            bad = low if low < 0 else high
            raise CtsegDataError(
                f"{where} holds label {bad}, outside 0..{max_label}; "
                + ("check num_labels" if max_label < _MAX_LABEL else "label maps are uint8")
            )
    return labels


def _as_slices(maps, name: str) -> list[np.ndarray]:
    """A 3D stack or a sequence of 2D label maps as a list of arrays (slices keep their sizes)."""
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            return [maps]
        if maps.ndim == 3:
            return list(maps)
        raise CtsegDataError(
            f"{name} must be a stack (slices, rows, cols) or a list of 2D label maps, got shape {maps.shape}"
        )
    return [np.asarray(m) for m in maps]


def _check_pairs(predictions, truths, num_labels) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validation slices as two lists of uint8 arrays of matching shapes, labels ``0..num_labels``."""
    if (
        isinstance(num_labels, (bool, np.bool_))
        or not isinstance(num_labels, (int, np.integer))
        or not 1 <= num_labels <= _MAX_LABEL
    ):
        raise CtsegSettingsError(f"num_labels must be an integer from 1 to {_MAX_LABEL}, got {num_labels!r}")
    preds = _as_slices(predictions, "predictions")
    trues = _as_slices(truths, "truths")
    if len(preds) != len(trues):
        raise CtsegDataError(
            f"got {len(preds)} predictions but {len(trues)} truths; give one truth label map per prediction"
        )
    if not preds:
        raise CtsegDataError("no validation slices: predictions and truths are empty")
    for i, (p, t) in enumerate(zip(preds, trues, strict=True)):
        if p.shape != t.shape:
            raise CtsegDataError(
                f"prediction {i} has shape {p.shape} but its truth has shape {t.shape}; "
                "pair every prediction with the truth of the same slice"
            )
    preds = [_check_label_map(p, f"predictions[{i}]", int(num_labels), (2,)) for i, p in enumerate(preds)]
    trues = [_check_label_map(t, f"truths[{i}]", int(num_labels), (2,)) for i, t in enumerate(trues)]
    return [p.astype(np.uint8) for p in preds], [t.astype(np.uint8) for t in trues]


def _check_label_values(values, name: str) -> tuple[int, ...]:
    sequence = isinstance(values, (Sequence, np.ndarray, set, frozenset))
    if not sequence or isinstance(values, (str, bytes)):
        raise CtsegSettingsError(f"{name} must be a list of ROI label values such as [1, 2], got {values!r}")
    out = []
    for v in values:
        is_int = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if not is_int or not 1 <= v <= _MAX_LABEL:
            raise CtsegSettingsError(
                f"{name} must hold ROI label values, integers from 1 to {_MAX_LABEL}, got {v!r} in {values!r}"
            )
        out.append(int(v))
    duplicates = sorted({v for v in out if out.count(v) > 1})
    if duplicates:
        raise CtsegSettingsError(f"{name} lists label(s) {duplicates} more than once: {values!r}")
    return tuple(sorted(out))


# --------------------------------------------------------------------------- mask operations


def _largest_2d(mask: np.ndarray) -> np.ndarray:
    components, n = ndimage.label(mask, structure=_STRUCTURE_8)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())[1:]
    # components are numbered in raster order of their first pixel, and argmax takes the first
    # maximum: ties go to the component that starts first
    return components == (int(np.argmax(sizes)) + 1)


def keep_largest_component(mask) -> np.ndarray:
    """Keep only the largest 8-connected component of a mask.

    Parameters
    ----------
    mask : ndarray of shape (M, N) or (K, M, N), any dtype
        Non-zero is foreground. A stack is processed slice by slice (the largest component of
        every slice is kept).

    Returns
    -------
    ndarray of bool, same shape as ``mask``
        The largest component; pixels touching by a corner are connected. On a tie the component
        whose first pixel comes first in raster order wins. An empty mask stays empty. The input
        is not modified.

    Raises
    ------
    CtsegDataError
        If ``mask`` is not 2D or 3D.

    Examples
    --------
    The diagonal is one component of 3 pixels (they touch by their corners); the 2-pixel
    component on the right is removed:

    >>> mask = np.array([[1, 0, 0, 0, 0],
    ...                  [0, 1, 0, 0, 1],
    ...                  [0, 0, 1, 0, 1]], dtype=bool)
    >>> keep_largest_component(mask).astype(int)
    array([[1, 0, 0, 0, 0],
           [0, 1, 0, 0, 0],
           [0, 0, 1, 0, 0]])
    """
    mask = _check_mask(mask)
    if mask.ndim == 2:
        return _largest_2d(mask)
    return np.stack([_largest_2d(s) for s in mask]) if len(mask) else mask.copy()


def fill_holes(mask) -> np.ndarray:
    """Fill the holes of a mask, slice by slice.

    Parameters
    ----------
    mask : ndarray of shape (M, N) or (K, M, N), any dtype
        Non-zero is foreground.

    Returns
    -------
    ndarray of bool, same shape as ``mask``
        ``scipy.ndimage.binary_fill_holes`` of every 2D slice: background regions that do not
        reach the slice border become foreground. The input is not modified.

    Raises
    ------
    CtsegDataError
        If ``mask`` is not 2D or 3D.

    Examples
    --------
    >>> ring = np.array([[1, 1, 1],
    ...                  [1, 0, 1],
    ...                  [1, 1, 1]], dtype=bool)
    >>> bool(fill_holes(ring).all())
    True
    """
    mask = _check_mask(mask)
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask]) if len(mask) else mask.copy()


# --------------------------------------------------------------------------- post-processing


@dataclass(frozen=True)
class PostProcessing:
    """Which post-processing steps to apply to predicted label maps.

    Steps run per 2D slice, in this order: ``largest_foreground``, then ``largest``, then
    ``fill_holes``. The default (all off) changes nothing.

    Attributes
    ----------
    largest_foreground : bool
        Keep only the largest 8-connected component of all ROIs taken together (labels > 0);
        ROI pixels outside it become background (0).
    largest : tuple of int
        ROI label values for which only the largest 8-connected component of that ROI is kept;
        the removed pixels become background (0).
    fill_holes : tuple of int
        ROI label values whose holes are filled, but only into background (0) pixels: a hole held
        by another ROI (the LV cavity inside the myocardium ring) is never overwritten.

    Lists are accepted and stored as sorted tuples.

    Raises
    ------
    CtsegSettingsError
        If ``largest_foreground`` is not a bool, or ``largest`` / ``fill_holes`` hold anything
        but label values 1..255, or a label twice.

    Examples
    --------
    >>> pp = PostProcessing(largest=[2, 1])
    >>> pp.largest
    (1, 2)
    >>> pp.describe(["LV myocardium", "LV cavity"])
    'LV myocardium: keep the largest region; LV cavity: keep the largest region'
    """

    largest_foreground: bool = False
    largest: tuple[int, ...] = ()
    fill_holes: tuple[int, ...] = ()

    def __post_init__(self):
        if not isinstance(self.largest_foreground, (bool, np.bool_)):
            raise CtsegSettingsError(f"largest_foreground must be True or False, got {self.largest_foreground!r}")
        object.__setattr__(self, "largest_foreground", bool(self.largest_foreground))
        object.__setattr__(self, "largest", _check_label_values(self.largest, "largest"))
        object.__setattr__(self, "fill_holes", _check_label_values(self.fill_holes, "fill_holes"))

    @property
    def is_identity(self) -> bool:
        """True when no step is switched on (:meth:`apply` returns a copy of its input)."""
        return not (self.largest_foreground or self.largest or self.fill_holes)

    def apply(self, labels) -> np.ndarray:
        """Post-process one label map or a stack of them.

        Parameters
        ----------
        labels : ndarray of shape (M, N) or (K, M, N) and integer dtype
            Label values 0..255 (0 = background); a stack is processed slice by slice.

        Returns
        -------
        ndarray of uint8, same shape as ``labels``
            A new array; ``labels`` is never modified.

        Raises
        ------
        CtsegDataError
            If ``labels`` is not 2D or 3D, is not of an integer dtype, or holds values outside
            0..255.
        """
        labels = _check_label_map(labels, "labels", _MAX_LABEL)
        out = labels.astype(np.uint8, copy=True)
        for s in out.reshape((-1,) + out.shape[-2:]):  # a view: slices are changed in place
            self._apply_slice(s)
        return out

    def _apply_slice(self, s: np.ndarray) -> np.ndarray:
        """Apply the steps to one 2D uint8 label map, in place."""
        if self.largest_foreground:
            foreground = s > 0
            s[foreground & ~_largest_2d(foreground)] = 0
        for k in self.largest:
            roi = s == k
            s[roi & ~_largest_2d(roi)] = 0
        for k in self.fill_holes:
            roi = s == k
            if roi.any():
                s[ndimage.binary_fill_holes(roi) & (s == 0)] = k
        return s

    def to_dict(self) -> dict:
        """JSON-friendly settings; :meth:`from_dict` reads them back."""
        return {
            "largest_foreground": self.largest_foreground,
            "largest": list(self.largest),
            "fill_holes": list(self.fill_holes),
        }

    @classmethod
    def from_dict(cls, data: Mapping | None) -> PostProcessing:
        """Settings written by :meth:`to_dict`; ``None`` or ``{}`` give the identity.

        Raises
        ------
        CtsegSettingsError
            If ``data`` is not a mapping, holds keys other than ``largest_foreground``,
            ``largest`` and ``fill_holes``, or holds invalid values.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise CtsegSettingsError(f"post-processing settings must be a dict, got {data!r}")
        known = ("largest_foreground", "largest", "fill_holes")
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise CtsegSettingsError(f"unknown post-processing setting(s) {unknown}; the known ones are {list(known)}")
        return cls(**dict(data))

    def describe(self, label_names: Sequence[str] = ()) -> str:
        """Short human-readable summary, e.g. for a training report.

        Parameters
        ----------
        label_names : sequence of str
            Name of each ROI, label 1 first; ROIs without a name are called "label k".

        Returns
        -------
        str
            Steps separated by "; ", or ``"none"`` for the identity.
        """
        parts = ["keep the largest connected region of all ROIs"] if self.largest_foreground else []
        for k in sorted(set(self.largest) | set(self.fill_holes)):
            name = label_names[k - 1] if k <= len(label_names) else f"label {k}"
            actions = (["keep the largest region"] if k in self.largest else []) + (
                ["fill holes"] if k in self.fill_holes else []
            )
            parts.append(f"{name}: {', '.join(actions)}")
        return "; ".join(parts) or "none"


# --------------------------------------------------------------------------- choosing on validation data


def _pooled_dice(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], num_labels: int) -> dict:
    """Pooled Dice of label maps already checked by :func:`_check_pairs`."""
    both = np.zeros(num_labels + 1, dtype=np.int64)
    pred_count = np.zeros(num_labels + 1, dtype=np.int64)
    truth_count = np.zeros(num_labels + 1, dtype=np.int64)
    for p, t in zip(preds, truths, strict=True):
        pred_count += np.bincount(p.ravel(), minlength=num_labels + 1)
        truth_count += np.bincount(t.ravel(), minlength=num_labels + 1)
        both += np.bincount(p[p == t].ravel(), minlength=num_labels + 1)
    total = pred_count + truth_count
    return {k: 2.0 * int(both[k]) / int(total[k]) if total[k] else math.nan for k in range(1, num_labels + 1)}


def _mean(values) -> float:
    """Mean of the values that are not NaN; NaN when all are."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _same_or_better(after: float, before: float) -> bool:
    return after >= before or (math.isnan(after) and math.isnan(before))


def dice_per_label(predictions, truths, num_labels: int) -> dict[int, float]:
    """Dice of every ROI, pooled over all slices.

    Parameters
    ----------
    predictions, truths : ndarray of shape (K, M, N), or sequence of ndarray of shape (M_i, N_i)
        Predicted and reference label maps of integer dtype, values ``0..num_labels``; slices may
        differ in size, but each prediction has the shape of its truth.
    num_labels : int
        Number of ROIs (labels ``1..num_labels``).

    Returns
    -------
    dict of int to float
        ``{k: 2 |P_k ∩ T_k| / (|P_k| + |T_k|)}`` for ``k = 1..num_labels``, the pixel counts
        summed over all slices before dividing (a small slice weighs less than a large one).
        ``NaN`` when ROI ``k`` is in neither the predictions nor the truths; ``0.0`` when it is
        in only one of them.

    Raises
    ------
    CtsegSettingsError
        If ``num_labels`` is not an integer from 1 to 255.
    CtsegDataError
        If the numbers of predictions and truths differ, there are no slices, a prediction and
        its truth differ in shape, or a label map is not 2D, not integer or holds a value
        outside ``0..num_labels``.

    Examples
    --------
    >>> dice_per_label([np.array([[1, 1, 0]])], [np.array([[0, 1, 1]])], 2)
    {1: 0.5, 2: nan}
    """
    preds, trues = _check_pairs(predictions, truths, num_labels)
    return _pooled_dice(preds, trues, int(num_labels))


def choose_postprocessing(
    predictions, truths, num_labels: int, *, min_gain: float = 0.0
) -> tuple[PostProcessing, dict]:
    """Choose the post-processing steps that improve validation Dice (nnU-Net's greedy rule).

    Steps are tried one at a time, each on top of those accepted before it:

    1. ``largest_foreground``: accepted if the mean Dice over ROIs (NaN ignored) rises by more
       than ``min_gain``;
    2. ``largest`` for each ROI ``k = 1..num_labels``: accepted if the Dice of ROI ``k`` rises by
       more than ``min_gain`` and no other ROI's Dice drops;
    3. ``fill_holes`` for each ROI, with the same rule.

    A step that changes nothing, or that hurts, is skipped.

    Parameters
    ----------
    predictions, truths : ndarray of shape (K, M, N), or sequence of ndarray of shape (M_i, N_i)
        Validation label maps of integer dtype, values ``0..num_labels``; see
        :func:`dice_per_label`.
    num_labels : int
        Number of ROIs.
    min_gain : float, optional
        Smallest Dice improvement (0..1) that a step must exceed to be accepted; 0 accepts any
        strict improvement.

    Returns
    -------
    postprocessing : PostProcessing
        The accepted steps (the identity when none helps).
    report : dict
        Plain Python values, JSON serialisable (NaN as float)::

            {"dice_before": {k: dice}, "dice_after": {k: dice},
             "candidates": [{"step": "largest_foreground" | "largest" | "fill_holes",
                             "label": k or None, "dice_without": float, "dice_with": float,
                             "accepted": bool}, ...]}

        ``dice_before`` / ``dice_after`` are the pooled Dice of every ROI without and with the
        chosen post-processing. For ``largest_foreground`` the candidate's ``dice_without`` /
        ``dice_with`` are mean Dice over ROIs; for the other steps, the Dice of ROI ``label``.

    Raises
    ------
    CtsegSettingsError
        If ``num_labels`` is not an integer from 1 to 255 or ``min_gain`` is not a finite
        number >= 0.
    CtsegDataError
        As :func:`dice_per_label`.
    """
    is_number = isinstance(min_gain, Real) and not isinstance(min_gain, (bool, np.bool_))
    if not is_number or not 0 <= min_gain < math.inf:
        raise CtsegSettingsError(f"min_gain must be a finite Dice difference >= 0, got {min_gain!r}")
    preds, trues = _check_pairs(predictions, truths, num_labels)
    num_labels = int(num_labels)
    min_gain = float(min_gain)

    def evaluate(pp: PostProcessing) -> dict[int, float]:
        return _pooled_dice([pp._apply_slice(p.copy()) for p in preds], trues, num_labels)

    current = PostProcessing()
    dice_now = dice_before = _pooled_dice(preds, trues, num_labels)
    candidates = []

    def consider(step: str, label: int | None, trial: PostProcessing) -> None:
        nonlocal current, dice_now
        dice_trial = evaluate(trial)
        if label is None:
            without, with_ = _mean(dice_now.values()), _mean(dice_trial.values())
            accepted = with_ > without + min_gain
        else:
            without, with_ = dice_now[label], dice_trial[label]
            accepted = with_ > without + min_gain and all(
                _same_or_better(dice_trial[j], dice_now[j]) for j in dice_now if j != label
            )
        candidates.append(
            {
                "step": step,
                "label": label,
                "dice_without": float(without),
                "dice_with": float(with_),
                "accepted": bool(accepted),
            }
        )
        logger.debug(  # the choice is printed as one line by training; each step is in the report
            "post-processing %s%s: Dice %.4f -> %.4f, %s",
            step,
            "" if label is None else f" (label {label})",
            without,
            with_,
            "accepted" if accepted else "skipped",
        )
        if accepted:
            current, dice_now = trial, dice_trial

    consider("largest_foreground", None, PostProcessing(largest_foreground=True))
    for k in range(1, num_labels + 1):
        consider("largest", k, replace(current, largest=current.largest + (k,)))
    for k in range(1, num_labels + 1):
        consider("fill_holes", k, replace(current, fill_holes=current.fill_holes + (k,)))

    report = {
        "dice_before": {k: float(v) for k, v in dice_before.items()},
        "dice_after": {k: float(v) for k, v in dice_now.items()},
        "candidates": candidates,
    }
    return current, report


# --------------------------------------------------------------------------- from the training labels

#: Share of the training slices holding an ROI on which it must have the shape a step imposes.
LABEL_SHARE = 0.95


def _components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=_STRUCTURE_8)[1])


def _encloses(mask: np.ndarray) -> bool:
    """True if the ROI has a hole of any kind (background or another ROI) in this slice."""
    return bool((ndimage.binary_fill_holes(mask) & ~mask).any())


def postprocessing_from_labels(
    labels, num_labels: int, *, min_share: float = LABEL_SHARE
) -> tuple[PostProcessing, dict]:
    """The post-processing that the training labels vouch for, for runs without validation slices.

    A step that removes or adds pixels is taken only where the manual labels show that every
    correct answer has the shape the step imposes:

    1. ``largest_foreground``: all ROIs together form one 8-connected region on at least
       ``min_share`` of the slices that hold any ROI (a heart, not two psoas muscles);
    2. ``largest`` for ROI ``k``: ROI ``k`` is one region on at least ``min_share`` of the slices
       that hold it (skipped when step 1 was taken: it is then rarely needed, and never safer);
    3. ``fill_holes`` for ROI ``k``: ROI ``k`` encloses nothing, neither background nor another
       ROI, on at least ``min_share`` of the slices that hold it. An ROI that encloses another
       (a myocardium ring around the blood pool) is left alone even though filling writes only
       into background: where the inner ROI is missed, filling would paint it with the ring.

    An ROI on fewer than 3 slices is given no step (too little to judge).

    Parameters
    ----------
    labels : ndarray of shape (K, M, N), or sequence of ndarray of shape (M_i, N_i)
        The training label maps, integer values ``0..num_labels``.
    num_labels : int
        Number of ROIs.
    min_share : float, optional
        Share of slices (0.5..1) on which the shape must hold.

    Returns
    -------
    postprocessing : PostProcessing
    report : dict
        ``{"source": "training labels", "min_share": float, "slices": {k: n},
        "one_region": {k: share}, "no_holes": {k: share}, "foreground_one_region": share}``;
        shares are NaN where no slice holds the ROI. JSON serialisable.

    Raises
    ------
    CtsegSettingsError
        If ``num_labels`` is not an integer from 1 to 255 or ``min_share`` is not in 0.5..1.
    CtsegDataError
        If there are no label maps, or one is not 2D, not integer or holds a value outside
        ``0..num_labels``.

    Examples
    --------
    >>> ring = np.zeros((7, 7), np.uint8); ring[1:6, 1:6] = 2; ring[2:5, 2:5] = 1
    >>> pp, report = postprocessing_from_labels([ring] * 3, 2)
    >>> pp.describe(["pool", "ring"])
    'keep the largest connected region of all ROIs; pool: fill holes'
    """
    is_number = isinstance(min_share, Real) and not isinstance(min_share, (bool, np.bool_))
    if not is_number or not 0.5 <= min_share <= 1:
        raise CtsegSettingsError(f"min_share must be a share of slices from 0.5 to 1, got {min_share!r}")
    maps, _ = _check_pairs(labels, labels, num_labels)
    num_labels = int(num_labels)
    slices = dict.fromkeys(range(1, num_labels + 1), 0)
    one_region = dict.fromkeys(range(1, num_labels + 1), 0)
    no_holes = dict.fromkeys(range(1, num_labels + 1), 0)
    foreground_slices = foreground_one = 0
    for s in maps:
        if s.any():
            foreground_slices += 1
            foreground_one += _components(s > 0) == 1
        for k in np.unique(s[s > 0]):
            k = int(k)
            roi = s == k
            slices[k] += 1
            one_region[k] += _components(roi) == 1
            no_holes[k] += not _encloses(roi)

    def share(count: int, total: int) -> float:
        return count / total if total else math.nan

    def vouched(count: int, total: int) -> bool:
        return total >= 3 and count >= min_share * total

    whole = vouched(foreground_one, foreground_slices)
    chosen = PostProcessing(
        largest_foreground=whole,
        largest=() if whole else tuple(k for k in slices if vouched(one_region[k], slices[k])),
        fill_holes=tuple(k for k in slices if vouched(no_holes[k], slices[k])),
    )
    report = {
        "source": "training labels",
        "min_share": float(min_share),
        "slices": {k: int(n) for k, n in slices.items()},
        "one_region": {k: share(one_region[k], n) for k, n in slices.items()},
        "no_holes": {k: share(no_holes[k], n) for k, n in slices.items()},
        "foreground_one_region": share(foreground_one, foreground_slices),
    }
    return chosen, report
