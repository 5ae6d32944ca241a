"""Replay's statistics: the exact binomial tails and bound against scipy, and the disagreement test's error rates
by simulation with a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from shepherd.replay.binomial import conditional_upper_tail, lower_tail, upper_bound, upper_tail
from shepherd.replay.verdict import Expectation, disagreement_test


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 10, 0.3), (3, 10, 0.3), (10, 10, 0.3), (150, 2000, 0.05), (60, 2000, 0.05), (250, 2000, 0.0625),
     (5000, 5000, 0.999), (1, 5000, 1e-6), (400, 500, 0.5)],
)  # fmt: skip
def test_tails_match_scipy(k: int, n: int, p: float) -> None:
    assert upper_tail(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-300)
    assert lower_tail(k, n, p) == pytest.approx(stats.binom.cdf(k, n, p), rel=1e-9, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 6000), p=st.floats(1e-6, 1 - 1e-6), share=st.floats(0, 1))
def test_the_upper_tail_keeps_its_precision_in_the_far_tail(n: int, p: float, share: float) -> None:
    k = round(share * n)
    expected = stats.binom.sf(k - 1, n, p)
    found = upper_tail(k, n, p)
    if expected > 1e-290:
        assert math.isclose(found, expected, rel_tol=1e-7, abs_tol=1e-15)
    assert 0.0 <= found <= 1.0


def test_degenerate_rates_and_counts() -> None:
    assert upper_tail(0, 5, 0.2) == 1.0
    assert upper_tail(6, 5, 0.2) == 0.0
    assert upper_tail(1, 5, 0.0) == 0.0
    assert upper_tail(5, 5, 1.0) == 1.0
    with pytest.raises(ValueError, match="no binomial"):
        upper_tail(1, 5, 1.5)


@pytest.mark.parametrize(("k", "n", "alpha"), [(0, 10, 0.05), (5, 100, 0.0025), (100, 2000, 0.0025), (37, 40, 0.01)])
def test_the_upper_bound_is_clopper_pearsons(k: int, n: int, alpha: float) -> None:
    assert upper_bound(k, n, alpha) == pytest.approx(stats.beta.ppf(1 - alpha, k + 1, n - k), rel=1e-8)
    assert upper_bound(n, n, alpha) == 1.0


@pytest.mark.parametrize(
    ("x", "m", "k", "n", "odds"),
    [(30, 500, 40, 2000, 1.5), (150, 2000, 100, 2000, 1.54), (150, 5000, 40, 2000, 1.0), (0, 10, 3, 20, 2.0),
     (10, 10, 0, 20, 0.5), (99, 550, 73, 1498, 0.85)],
)  # fmt: skip
def test_the_conditional_tail_is_fishers_noncentral_hypergeometric(x: int, m: int, k: int, n: int, odds: float) -> None:
    expected = stats.nchypergeom_fisher.sf(x - 1, m + n, m, x + k, odds)
    assert conditional_upper_tail(x, m, k, n, odds) == pytest.approx(expected, rel=1e-6)


def test_the_conditional_tail_falls_as_the_live_count_rises_and_rises_with_the_odds_ratio() -> None:
    tails = [conditional_upper_tail(x, 500, 40, 2000, 1.5) for x in range(0, 60, 5)]
    assert tails == sorted(tails, reverse=True)
    assert conditional_upper_tail(30, 500, 40, 2000, 1.2) < conditional_upper_tail(30, 500, 40, 2000, 1.8)


# ------------------------------------------------------------------ error rates by simulation

REPLICATIONS = 4000
ALPHA = 0.05  # large enough for 4,000 replications to see it (the product's replay alpha is 0.005)


def rejections(
    rate: float, live: float, *, rows: int | None, compared: int, tolerance: float, seed: int, alpha: float = ALPHA
) -> float:
    """The share of replays rejected on disagreement: the evaluation estimates ``rate`` from ``rows`` validation
    rows (exactly, when None), the replay compares ``compared`` answers that disagree at the ``live`` rate."""
    rng = np.random.default_rng(seed)
    estimates = rng.binomial(rows, rate, REPLICATIONS) / rows if rows else np.full(REPLICATIONS, rate)
    disagreed = rng.binomial(compared, live, REPLICATIONS)
    rejected = 0
    for estimate, count in zip(estimates, disagreed, strict=True):
        expected = Expectation("classification", float(estimate), 0.0, "simulated", rows)
        rejected += disagreement_test(int(count), compared, expected, alpha=alpha, tolerance=tolerance).rejects
    return rejected / REPLICATIONS


def error_bar(rate: float) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / REPLICATIONS)


@pytest.mark.parametrize(("rate", "rows", "compared"), [(0.05, 2000, 2000), (0.02, 500, 5000), (0.1, 2000, 500)])
def test_a_good_candidate_at_the_null_boundary_is_rejected_at_most_alpha(rate: float, rows: int, compared: int) -> None:
    # Given a candidate whose live disagreement is its validation rate raised by the whole tolerance
    tolerance = 0.5
    # When replayed many times, each with its own validation estimate
    found = rejections(rate, rate * (1 + tolerance), rows=rows, compared=compared, tolerance=tolerance, seed=21)
    # Then at most alpha of them are rejected (within simulation error)
    assert found <= ALPHA + error_bar(ALPHA)


@pytest.mark.parametrize("rows", [None, 2000])
def test_at_the_boundary_the_test_spends_most_of_its_alpha(rows: int | None) -> None:
    # The test is not vacuous: at the boundary it rejects close to alpha (exact tests are a little conservative)
    found = rejections(0.05, 0.05 * 1.5, rows=rows, compared=2000, tolerance=0.5, seed=22)
    assert ALPHA / 2 < found <= ALPHA + error_bar(ALPHA)


def test_three_times_the_disagreement_is_caught_at_the_replays_alpha() -> None:
    found = rejections(0.05, 0.15, rows=2000, compared=500, tolerance=0.5, seed=23, alpha=0.005)
    assert found >= 0.95


def test_a_good_candidate_below_the_boundary_is_rarely_rejected() -> None:
    found = rejections(0.05, 0.05, rows=2000, compared=5000, tolerance=0.5, seed=24)
    assert found <= 0.001
