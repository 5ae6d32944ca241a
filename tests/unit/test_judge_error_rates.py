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
from shepherd.judge.sprt import grouped_sprt

ALPHA, BETA = 0.05, 0.2
REPLICATIONS = 4_000
MINUTES = 360


def limit(rate: float, replications: int = REPLICATIONS) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / replications)


def sides(
    candidate_bad: np.ndarray,
    champion_bad: np.ndarray,
    candidate_n: np.ndarray,
    champion_n: np.ndarray,
    *,
    paired: bool = False,
) -> np.ndarray:
    """+1 ROLLBACK, -1 PROMOTE, 0 undecided per replication (row), by the judge's own kernel."""
    return np.array(
        [
            grouped_sprt(kc, kb, c, b, alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=100, paired=paired).side
            for kc, kb, c, b in zip(candidate_bad, champion_bad, candidate_n, champion_n, strict=True)
        ]
    )


def ab_verdicts(candidate_rate: float, seed: int, rpm: float = 200, minutes: int = MINUTES) -> np.ndarray:
    """Sides of REPLICATIONS A/B stages at a 10 % share."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rpm, (REPLICATIONS, minutes))
    c = rng.binomial(n, 0.1)
    return sides(rng.binomial(c, candidate_rate), rng.binomial(n - c, 0.01), c, n - c)


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


@pytest.mark.parametrize(("candidate_rate", "promise"), [(0.01, "alpha"), (0.02, "beta")])
def test_low_traffic_keeps_its_error_rates(candidate_rate: float, promise: str) -> None:
    # 10 requests a minute: most bins hold no error, a few one
    side = ab_verdicts(candidate_rate, seed=6, rpm=10, minutes=1440)
    assert np.mean(side == (1 if promise == "alpha" else -1)) <= limit(ALPHA if promise == "alpha" else BETA)


@pytest.mark.parametrize(("candidate_only", "promise"), [(0.01, "alpha"), (0.02, "beta")])
def test_shadow_pairs_keep_their_error_rates(candidate_only: float, promise: str) -> None:
    rng = np.random.default_rng(4)
    pairs = rng.poisson(200, (REPLICATIONS, MINUTES))
    b = rng.binomial(pairs, candidate_only)
    c = rng.binomial(pairs - b, 0.01)
    side = sides(b, c, pairs, pairs, paired=True)
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
