"""The judge's error rates under continuous monitoring, on simulated 60-s bins with a fixed seed.

Small replication counts keep this fast; the limits allow three Monte Carlo standard errors.
bench/judge.py measures the same with 10,000 replications and drifting, bursty traffic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from shepherd.judge import (
    Metric,
    MetricSettings,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
    judge,
)
from shepherd.judge.sprt import (
    boundaries_for_shares,
    calibrated_boundaries,
    first_crossing,
    paired_llr_increments,
    split_llr_increments,
    stage_shares,
)

ALPHA, BETA = 0.05, 0.2
REPLICATIONS = 4_000
MINUTES = 360


def limit(rate: float, replications: int = REPLICATIONS) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / replications)


def ab_verdicts(candidate_rate: float, seed: int) -> np.ndarray:
    """Sides (+1 ROLLBACK, -1 PROMOTE, 0 undecided) of REPLICATIONS A/B stages: 200 rpm, 10 % share."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(200, (REPLICATIONS, MINUTES))
    c = rng.binomial(n, 0.1)
    kc, kb = rng.binomial(c, candidate_rate), rng.binomial(n - c, 0.01)
    upper, lower = boundaries_for_shares(ALPHA, BETA, 2.0, stage_shares(c, n - c))
    may_promote = (np.cumsum(c, axis=1) >= 100) & (np.cumsum(n - c, axis=1) >= 100)
    _, side = first_crossing(np.cumsum(split_llr_increments(kc, kb, c, n - c, 2.0), axis=1), upper, lower, may_promote)
    return side


def test_false_rollback_is_at_most_alpha() -> None:
    side = ab_verdicts(0.01, seed=1)
    assert np.mean(side == 1) <= limit(ALPHA)
    assert np.mean(side == 0) <= 0.05


def test_miss_is_at_most_beta_for_a_doubling() -> None:
    side = ab_verdicts(0.02, seed=2)
    assert np.mean(side == -1) <= limit(BETA)
    assert np.mean(side == 0) <= 0.05


def test_a_better_candidate_is_rolled_back_even_less() -> None:
    assert np.mean(ab_verdicts(0.005, seed=3) == 1) <= limit(ALPHA)


@pytest.mark.parametrize(("candidate_only", "promise"), [(0.01, "alpha"), (0.02, "beta")])
def test_shadow_pairs_keep_their_error_rates(candidate_only: float, promise: str) -> None:
    rng = np.random.default_rng(4)
    pairs = rng.poisson(200, (REPLICATIONS, MINUTES))
    b = rng.binomial(pairs, candidate_only)
    c = rng.binomial(pairs - b, 0.01)
    upper, lower = calibrated_boundaries(ALPHA, BETA, 2.0, 0.5)
    may_promote = np.cumsum(pairs, axis=1) >= 100
    _, side = first_crossing(np.cumsum(paired_llr_increments(b, c, 2.0), axis=1), upper, lower, may_promote)
    if promise == "alpha":
        assert np.mean(side == 1) <= limit(ALPHA)
    else:
        assert np.mean(side == -1) <= limit(BETA)


def test_the_judge_itself_keeps_alpha_on_identical_variants() -> None:
    # Given identical variants called through the public API, minute by minute as the workflow would
    rng = np.random.default_rng(5)
    settings = StageSettings({Metric.ERROR_RATE: MetricSettings(max_minutes=240)})
    replications, rollbacks = 300, 0
    for _ in range(replications):
        n = rng.poisson(400, 240)
        c = rng.binomial(n, 0.1)
        kc, kb = rng.binomial(c, 0.01), rng.binomial(n - c, 0.01)
        stage = StageObservations(
            minutes_elapsed=240,
            champion=tuple(VariantBin(m, int(n[m] - c[m]), int(kb[m])) for m in range(240)),
            candidate=tuple(VariantBin(m, int(c[m]), int(kc[m])) for m in range(240)),
        )
        rollbacks += judge(stage, settings).verdict is Verdict.ROLLBACK
    assert rollbacks / replications <= limit(ALPHA, replications)
