"""Tests for shepherd.paired: the candidate against the champion on the same rows, with exact or bootstrap bounds.

Known values come from scipy (a dev dependency only: the layer computes them with numpy).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from shepherd.paired import binomial_at_least, bootstrap, clopper_pearson, mcnemar, regression_metric


def pairs(wins: int, losses: int, both_right: int, both_wrong: int) -> tuple[list[bool], list[bool]]:
    """(candidate right, champion right) per row, with the counts of each kind of row."""
    candidate = [True] * wins + [False] * losses + [True] * both_right + [False] * both_wrong
    champion = [False] * wins + [True] * losses + [True] * both_right + [False] * both_wrong
    return candidate, champion


# ---------------------------------------------------------------- exact binomial pieces


@pytest.mark.parametrize(("k", "n", "p"), [(7, 10, 0.5), (0, 4, 0.3), (30, 200, 0.1), (199, 200, 0.99), (5, 5, 0.2)])
def test_the_binomial_tail_is_scipys(k: int, n: int, p: float) -> None:
    assert binomial_at_least(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("k", "n"), [(3, 10), (0, 5), (5, 5), (40, 100), (700, 1000)])
def test_one_sided_95_bounds_are_the_90_percent_clopper_pearson_interval(k: int, n: int) -> None:
    exact = stats.binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact")
    assert clopper_pearson(k, n, 0.95) == pytest.approx((exact.low, exact.high), abs=1e-9)


# ---------------------------------------------------------------- McNemar


def test_mcnemar_counts_only_the_rows_where_one_model_is_right() -> None:
    # Given 1,000 rows: the candidate alone right on 60, the champion alone on 30
    candidate, champion = pairs(wins=60, losses=30, both_right=700, both_wrong=210)
    result = mcnemar(candidate, champion, disagreement=0.09)
    # Then the accuracies, the difference and the exact one-sided p-value of "no better" are McNemar's
    assert (result.candidate, result.champion, result.improvement) == pytest.approx((0.76, 0.73, 0.03))
    assert result.p_value == pytest.approx(stats.binomtest(60, 90, 0.5, alternative="greater").pvalue)
    # and the bounds are the Clopper-Pearson bounds of the candidate's share of those 90 rows, scaled
    exact = stats.binomtest(60, 90).proportion_ci(confidence_level=0.90, method="exact")
    assert result.lower == pytest.approx((2 * exact.low - 1) * 0.09)
    assert result.upper == pytest.approx((2 * exact.high - 1) * 0.09)
    assert result.lower > 0  # p < 0.05: shown better
    assert result.beats_by(0.0)
    assert not result.beats_by(0.02)


def test_identical_answers_tie_exactly() -> None:
    candidate, champion = pairs(wins=0, losses=0, both_right=80, both_wrong=20)
    result = mcnemar(candidate, champion, disagreement=0.0)
    assert (result.improvement, result.lower, result.upper, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.beats_by(0.0)


def test_a_few_more_wins_are_not_enough() -> None:
    # 12 against 8 discordant rows: better on the point estimate, not shown better at 95 %
    candidate, champion = pairs(wins=12, losses=8, both_right=150, both_wrong=30)
    result = mcnemar(candidate, champion, disagreement=0.1)
    assert result.improvement > 0
    assert result.lower < 0
    assert not result.beats_by(0.0)


def test_mismatched_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="paired rows"):
        mcnemar([True, False], [True], disagreement=0.0)


rows_of_pairs = st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)).filter(
    lambda counts: sum(counts) > 0
)


@settings(max_examples=150, deadline=None)
@given(rows_of_pairs)
def test_the_bound_clears_zero_exactly_when_the_exact_test_rejects(counts: tuple[int, int, int, int]) -> None:
    result = mcnemar(*pairs(*counts), disagreement=0.0)
    assert result.lower <= result.improvement <= result.upper
    if abs(result.p_value - 0.05) > 1e-6:  # the bisection resolves the bound to ~1e-18, not the boundary itself
        assert (result.lower > 0) == (result.p_value < 0.05)


@settings(max_examples=150, deadline=None)
@given(rows_of_pairs)
def test_swapping_the_models_mirrors_the_comparison(counts: tuple[int, int, int, int]) -> None:
    wins, losses, both_right, both_wrong = counts
    forward = mcnemar(*pairs(wins, losses, both_right, both_wrong), disagreement=0.0)
    backward = mcnemar(*pairs(losses, wins, both_right, both_wrong), disagreement=0.0)
    assert backward.improvement == pytest.approx(-forward.improvement)
    assert backward.lower == pytest.approx(-forward.upper, abs=1e-9)  # binomial tails in floats: ~1e-11


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize(
    ("name", "metric"),
    [("validation:rmse", "rmse"), ("val:mse", "mse"), ("val:r2", "r2"), ("validation:mae", "mae"), ("loss", "mae")],
)
def test_a_regression_gate_names_what_it_measures(name: str, metric: str) -> None:
    assert regression_metric(name) == metric


def noisy(scale: float, seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    truth = generator.normal(10, 3, rows)
    return truth, truth + generator.normal(0, scale, rows)


@pytest.mark.parametrize("metric", ["mae", "mse", "rmse", "r2"])
def test_a_clearly_better_regressor_is_shown_better(metric: str) -> None:
    truth, good = noisy(0.5, 1)
    bad = truth + np.random.default_rng(2).normal(0, 2.0, len(truth))  # the same labels, more noise
    result = bootstrap(truth, good, bad, metric, seed=7)  # type: ignore[arg-type]
    assert result.improvement > 0
    assert result.lower > 0
    assert result.p_value < 0.01
    assert result.problem == "regression"


def test_the_band_is_the_champions_rmse_and_disagreement_counts_answers_further_apart() -> None:
    truth = np.zeros(4)
    champion = np.array([1.0, -1.0, 1.0, -1.0])  # RMSE 1
    candidate = np.array([1.5, -1.0, 3.0, 1.5])  # differs from the champion by 0.5, 0, 2, 2.5
    result = bootstrap(truth, candidate, champion, "mae", seed=1, resamples=200)
    assert result.band == pytest.approx(1.0)
    assert result.disagreement == pytest.approx(0.5)


def test_the_same_seed_gives_the_same_record() -> None:
    truth, first = noisy(1.0, 3)
    second = truth + np.random.default_rng(4).normal(0, 1.1, len(truth))
    assert bootstrap(truth, first, second, "rmse", seed=5) == bootstrap(truth, first, second, "rmse", seed=5)


def test_identical_regressors_tie() -> None:
    truth, answers = noisy(1.0, 6)
    result = bootstrap(truth, answers, answers, "mae", seed=2)
    assert (result.improvement, result.lower, result.upper) == (0.0, 0.0, 0.0)
    assert result.disagreement == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["mae", "mse", "rmse"]))
def test_bootstrap_bounds_hold_the_estimate_and_swap_with_the_models(seed: int, metric: str) -> None:
    truth, first = noisy(1.0, seed % 1000, rows=60)
    second = truth + np.random.default_rng(seed).normal(0, 1.3, 60)
    forward = bootstrap(truth, first, second, metric, seed=seed, resamples=300)  # type: ignore[arg-type]
    backward = bootstrap(truth, second, first, metric, seed=seed, resamples=300)  # type: ignore[arg-type]
    assert forward.lower <= forward.upper
    assert backward.improvement == pytest.approx(-forward.improvement)
    assert backward.lower == pytest.approx(-forward.upper)
