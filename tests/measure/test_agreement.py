"""Bland–Altman, correlation and paired t-test on hand-computed data."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy import stats

from ctseg_helpers.errors import CtsegDataError
from ctseg_helpers.measure import agreement as ag

MANUAL = np.array([100.0, 200.0, 300.0, 400.0])
PREDICTED = np.array([102.0, 198.0, 306.0, 402.0])  # differences 2, -2, 6, 2


def test_bland_altman_exact():
    ba = ag.bland_altman(MANUAL, PREDICTED)
    assert ba.n == 4
    assert ba.mean_difference == pytest.approx(2.0)
    sd = math.sqrt(((0) ** 2 + 4**2 + 4**2 + 0**2) / 3)  # deviations 0, -4, 4, 0
    assert ba.sd_difference == pytest.approx(sd)
    assert ba.lower_loa == pytest.approx(2.0 - 1.959964 * sd, rel=1e-6)
    assert ba.upper_loa == pytest.approx(2.0 + 1.959964 * sd, rel=1e-6)
    t = stats.t.ppf(0.975, 3)
    assert ba.bias_ci == pytest.approx((2 - t * sd / 2, 2 + t * sd / 2))
    half = t * math.sqrt(3 * sd**2 / 4)
    assert ba.upper_loa_ci == pytest.approx((ba.upper_loa - half, ba.upper_loa + half))
    np.testing.assert_allclose(ba.differences, [2, -2, 6, 2])
    np.testing.assert_allclose(ba.means, [101, 199, 303, 401])
    table = ba.to_dict()
    assert "means" not in table and table["bias_ci_low"] == pytest.approx(ba.bias_ci[0])


def test_paired_t_test_matches_formula():
    result = ag.paired_t_test(MANUAL, PREDICTED)
    sd = ag.bland_altman(MANUAL, PREDICTED).sd_difference
    assert result.t_statistic == pytest.approx(2.0 / (sd / 2.0))
    assert result.df == 3
    assert result.p_value == pytest.approx(2 * stats.t.sf(result.t_statistic, 3))
    same = ag.paired_t_test(MANUAL, MANUAL + 5)
    assert math.isnan(same.t_statistic) and same.mean_difference == 5.0


def test_correlation_perfect_and_constant(caplog):
    corr = ag.correlation(MANUAL, 2 * MANUAL + 1)
    assert corr.pearson_r == pytest.approx(1.0) and corr.spearman_rho == pytest.approx(1.0)
    corr = ag.correlation(MANUAL, PREDICTED)
    assert corr.pearson_r == pytest.approx(np.corrcoef(MANUAL, PREDICTED)[0, 1])
    with caplog.at_level(logging.WARNING):
        flat = ag.correlation(MANUAL, np.ones(4))
    assert math.isnan(flat.pearson_r) and "constant" in caplog.text


def test_agreement_summary_keys():
    row = ag.agreement_summary(MANUAL, PREDICTED)
    assert row["n"] == 4 and row["mean_difference"] == pytest.approx(2.0)
    assert row["manual_mean"] == 250.0 and row["predicted_mean"] == 252.0
    for key in ("lower_loa", "upper_loa", "pearson_r", "spearman_p", "t_statistic", "p_value"):
        assert key in row
    two = ag.agreement_summary([1.0, 2.0], [1.5, 2.0])
    assert math.isnan(two["pearson_r"]) and two["n"] == 2


def test_error_messages():
    with pytest.raises(CtsegDataError, match="must be paired: got 3 manual and 2 predicted"):
        ag.bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(CtsegDataError, match="must be finite numbers"):
        ag.paired_t_test([1, np.nan], [1, 2])
    with pytest.raises(CtsegDataError, match="at least 2 pairs of measurements are needed, got 1"):
        ag.bland_altman([1.0], [2.0])
    with pytest.raises(CtsegDataError, match="at least 3 pairs"):
        ag.correlation([1.0, 2.0], [2.0, 3.0])
