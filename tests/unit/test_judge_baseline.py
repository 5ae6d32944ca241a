"""The judge against a recorded baseline (full stage, post-promotion watch): Wald's one-sample SPRT."""

from __future__ import annotations

import numpy as np
import pytest
from shepherd.judge import (
    Baseline,
    Metric,
    MetricSettings,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
    judge,
)

SETTINGS = MetricSettings(alpha=0.05, beta=0.2, delta=1.0, min_samples=100, max_minutes=120)


def _observe(rate: float, minutes: int, per_minute: int, baseline: Baseline, seed: int = 1) -> StageObservations:
    rng = np.random.default_rng(seed)
    bins = tuple(
        VariantBin(minute=m, sample_count=per_minute, error_sum=int(rng.binomial(per_minute, rate)))
        for m in range(minutes)
    )
    return StageObservations(minutes_elapsed=minutes, candidate=bins, baseline={Metric.ERROR_RATE: baseline})


def _verdict(observations: StageObservations) -> Verdict:
    return judge(observations, StageSettings({Metric.ERROR_RATE: SETTINGS})).verdict


def test_a_candidate_as_good_as_the_baseline_is_promoted() -> None:
    assert _verdict(_observe(0.02, 60, 100, Baseline(samples=5000, bad=100))) is Verdict.PROMOTE


def test_a_candidate_three_times_worse_than_the_baseline_is_rolled_back() -> None:
    judgement = judge(_observe(0.06, 60, 100, Baseline(5000, 100)), StageSettings({Metric.ERROR_RATE: SETTINGS}))
    assert judgement.verdict is Verdict.ROLLBACK
    assert "higher than the old champion's" in judgement.explanation
    assert judgement.metrics[0].champion_samples == 5000


def test_a_baseline_without_errors_still_allows_a_rare_error() -> None:
    # Laplace's rule: p0 = 1/502 here, so one error in a few hundred requests is not a rollback
    observations = StageObservations(
        minutes_elapsed=3,
        candidate=(VariantBin(0, 150, 1), VariantBin(1, 150, 0), VariantBin(2, 150, 0)),
        baseline={Metric.ERROR_RATE: Baseline(500, 0)},
    )
    assert _verdict(observations) is not Verdict.ROLLBACK


def test_no_traffic_is_never_a_promotion_and_ends_at_the_stage_maximum() -> None:
    empty = StageObservations(minutes_elapsed=5, baseline={Metric.ERROR_RATE: Baseline(1000, 10)})
    assert _verdict(empty) is Verdict.CONTINUE
    late = StageObservations(minutes_elapsed=120, baseline={Metric.ERROR_RATE: Baseline(1000, 10)})
    assert _verdict(late) is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("rate", "expected_max"), [(0.02, 0.08), (0.04, 0.25)])
def test_its_error_rates_hold_over_many_runs(rate: float, expected_max: float) -> None:
    # rate 0.02 = the baseline (H0): false rollbacks <= alpha / (1 - beta) = 6.25 %;
    # rate 0.04 = twice the baseline (H1): false promotions <= beta / (1 - alpha) = 21 %.
    wrong = 0
    runs = 400
    for seed in range(runs):
        verdict = _verdict(_observe(rate, 120, 50, Baseline(20000, 400), seed=seed))
        wrong += verdict is (Verdict.ROLLBACK if rate == 0.02 else Verdict.PROMOTE)
    assert wrong / runs <= expected_max
