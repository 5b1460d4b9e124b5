"""Agreement between manual and predicted measurements (areas in mm², volumes in mm³).

The statistics a method-comparison study reports (Bland & Altman, Lancet 1986; Stat Methods Med
Res 1999): the mean difference (bias) with its 95 % confidence interval, the 95 % limits of
agreement with approximate confidence intervals, Pearson and Spearman correlation, and a paired
t-test. Differences are always ``predicted - manual``, so a positive bias means the model
segments larger than the expert.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ctseg_helpers.errors import CtsegDataError

logger = logging.getLogger(__name__)

#: Two-sided 95 % normal quantile used for the limits of agreement.
Z_95 = float(stats.norm.ppf(0.975))


def _check_pairs(manual, predicted, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    manual = np.asarray(manual, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    if manual.shape != predicted.shape:
        raise CtsegDataError(
            f"manual and predicted measurements must be paired: got {manual.size} manual and "
            f"{predicted.size} predicted values"
        )
    if not (np.all(np.isfinite(manual)) and np.all(np.isfinite(predicted))):
        raise CtsegDataError(
            "manual and predicted measurements must be finite numbers; remove the pairs holding NaN or infinite values"
        )
    if manual.size < minimum:
        raise CtsegDataError(
            f"at least {minimum} pairs of measurements are needed, got {manual.size}; evaluate more slices"
        )
    return manual, predicted


@dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman statistics of paired measurements (``predicted - manual``).

    Attributes
    ----------
    n : int
        Number of pairs.
    mean_difference : float
        Bias: mean of ``predicted - manual``, in the measurements' unit.
    sd_difference : float
        Sample standard deviation (``ddof=1``) of the differences.
    lower_loa, upper_loa : float
        95 % limits of agreement, ``mean_difference -/+ 1.96 * sd_difference``.
    bias_ci : (float, float)
        95 % confidence interval of the bias (Student t with n - 1 degrees of freedom).
    lower_loa_ci, upper_loa_ci : (float, float)
        Approximate 95 % confidence intervals of the limits, using the standard error
        ``sqrt(3 * sd**2 / n)`` of Bland & Altman (1986).
    means : ndarray of shape (n,)
        ``(manual + predicted) / 2`` per pair (the plot's x axis).
    differences : ndarray of shape (n,)
        ``predicted - manual`` per pair (the plot's y axis).
    """

    n: int
    mean_difference: float
    sd_difference: float
    lower_loa: float
    upper_loa: float
    bias_ci: tuple[float, float]
    lower_loa_ci: tuple[float, float]
    upper_loa_ci: tuple[float, float]
    means: np.ndarray
    differences: np.ndarray

    def to_dict(self) -> dict:
        """The statistics without the per-pair arrays (for tables)."""
        data = asdict(self)
        del data["means"], data["differences"]
        for key in ("bias_ci", "lower_loa_ci", "upper_loa_ci"):
            low, high = data.pop(key)
            data[f"{key}_low"], data[f"{key}_high"] = low, high
        return data


def bland_altman(manual, predicted) -> BlandAltman:
    """Bland–Altman analysis of paired measurements.

    Parameters
    ----------
    manual, predicted : array_like of shape (n,)
        Paired measurements in the same unit (e.g. ROI area in mm² per slice), n >= 2.

    Returns
    -------
    BlandAltman

    Raises
    ------
    CtsegDataError
        If the arrays differ in length, hold non-finite values or have fewer than 2 pairs.

    Examples
    --------
    >>> ba = bland_altman([10.0, 20.0, 30.0], [11.0, 22.0, 30.0])
    >>> ba.mean_difference, round(ba.sd_difference, 6)
    (1.0, 1.0)
    """
    manual, predicted = _check_pairs(manual, predicted, minimum=2)
    diff = predicted - manual
    n = diff.size
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1))
    t = float(stats.t.ppf(0.975, n - 1))
    se_bias = sd / np.sqrt(n)
    se_loa = np.sqrt(3.0 * sd**2 / n)
    lower, upper = bias - Z_95 * sd, bias + Z_95 * sd
    return BlandAltman(
        n=n,
        mean_difference=bias,
        sd_difference=sd,
        lower_loa=float(lower),
        upper_loa=float(upper),
        bias_ci=(float(bias - t * se_bias), float(bias + t * se_bias)),
        lower_loa_ci=(float(lower - t * se_loa), float(lower + t * se_loa)),
        upper_loa_ci=(float(upper - t * se_loa), float(upper + t * se_loa)),
        means=(manual + predicted) / 2.0,
        differences=diff,
    )


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation of paired measurements.

    Attributes
    ----------
    n : int
    pearson_r, pearson_p : float
        Linear correlation coefficient and its two-sided p-value.
    spearman_rho, spearman_p : float
        Rank correlation and its two-sided p-value.

    Both coefficients are ``NaN`` when either set of measurements is constant.
    """

    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float


def correlation(manual, predicted) -> Correlation:
    """Correlation between manual and predicted measurements.

    Parameters
    ----------
    manual, predicted : array_like of shape (n,)
        Paired measurements, n >= 3.

    Returns
    -------
    Correlation
        Coefficients are ``NaN`` (with a logged warning) when either side is constant, since a
        correlation is undefined then.

    Raises
    ------
    CtsegDataError
        If the arrays differ in length, hold non-finite values or have fewer than 3 pairs.
    """
    manual, predicted = _check_pairs(manual, predicted, minimum=3)
    if np.ptp(manual) == 0 or np.ptp(predicted) == 0:
        logger.warning("correlation is undefined: the manual or predicted measurements are constant")
        nan = float("nan")
        return Correlation(manual.size, nan, nan, nan, nan)
    pearson = stats.pearsonr(manual, predicted)
    spearman = stats.spearmanr(manual, predicted)
    return Correlation(
        n=int(manual.size),
        pearson_r=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
    )


@dataclass(frozen=True)
class PairedTTest:
    """Paired t-test of ``predicted - manual`` against zero.

    Attributes
    ----------
    n : int
    t_statistic : float
        ``NaN`` when all differences are equal (the test is undefined).
    p_value : float
        Two-sided p-value; ``NaN`` when the statistic is.
    df : int
        Degrees of freedom, n - 1.
    mean_difference : float
    """

    n: int
    t_statistic: float
    p_value: float
    df: int
    mean_difference: float


def paired_t_test(manual, predicted) -> PairedTTest:
    """Paired t-test (``scipy.stats.ttest_rel``) of predicted against manual measurements.

    Parameters
    ----------
    manual, predicted : array_like of shape (n,)
        Paired measurements, n >= 2.

    Returns
    -------
    PairedTTest

    Raises
    ------
    CtsegDataError
        If the arrays differ in length, hold non-finite values or have fewer than 2 pairs.
    """
    manual, predicted = _check_pairs(manual, predicted, minimum=2)
    diff = predicted - manual
    if np.ptp(diff) == 0:
        t_stat = p_value = float("nan")
    else:
        result = stats.ttest_rel(predicted, manual)
        t_stat, p_value = float(result.statistic), float(result.pvalue)
    return PairedTTest(
        n=int(diff.size),
        t_statistic=t_stat,
        p_value=p_value,
        df=int(diff.size - 1),
        mean_difference=float(diff.mean()),
    )


def agreement_summary(manual, predicted) -> dict[str, float]:
    """Bland–Altman, correlation and paired t-test of one set of pairs, as one flat dict.

    Parameters
    ----------
    manual, predicted : array_like of shape (n,)
        Paired measurements, n >= 2. The correlation needs n >= 3 and is ``NaN`` below.

    Returns
    -------
    dict
        Keys: ``n``, ``manual_mean``, ``predicted_mean``, the :class:`BlandAltman` statistics
        (``mean_difference``, ``sd_difference``, ``lower_loa``, ``upper_loa`` and the CI bounds),
        ``pearson_r``, ``pearson_p``, ``spearman_rho``, ``spearman_p``, ``t_statistic``,
        ``p_value``.

    Raises
    ------
    CtsegDataError
        As :func:`bland_altman`.
    """
    manual, predicted = _check_pairs(manual, predicted, minimum=2)
    row = {"manual_mean": float(manual.mean()), "predicted_mean": float(predicted.mean())}
    row.update(bland_altman(manual, predicted).to_dict())
    if manual.size >= 3:
        corr = correlation(manual, predicted)
        row.update(
            pearson_r=corr.pearson_r,
            pearson_p=corr.pearson_p,
            spearman_rho=corr.spearman_rho,
            spearman_p=corr.spearman_p,
        )
    else:
        row.update(pearson_r=np.nan, pearson_p=np.nan, spearman_rho=np.nan, spearman_p=np.nan)
    test = paired_t_test(manual, predicted)
    row.update(t_statistic=test.t_statistic, p_value=test.p_value)
    return row


__all__ = [
    "BlandAltman",
    "Correlation",
    "PairedTTest",
    "bland_altman",
    "correlation",
    "paired_t_test",
    "agreement_summary",
]
