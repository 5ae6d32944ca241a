"""The grouped error-spending test (sprt.grouped_sprt): exact error rates for the grouping that occurred."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shepherd.judge.sprt import (
    bin_laws,
    calibrated_boundaries,
    exit_probabilities,
    grouped_sprt,
    spending,
    sprt_steps,
)

ALPHA, BETA = 0.05, 0.2


def per_event_stage(events: int, share: float = 0.1) -> tuple[list[int], list[int], list[int], list[int]]:
    """One bad event per bin (the champion's), 10,000 requests a bin split at `share`."""
    candidate_n = round(10_000 * share)
    return [0] * events, [1] * events, [candidate_n] * events, [10_000 - candidate_n] * events


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_checked_after_every_bad_event_it_is_the_calibrated_sprt(share: float) -> None:
    # Given one bad event per bin, the test's exact error rates are the ungrouped calibrated SPRT's
    path = grouped_sprt(
        *per_event_stage(3_000, share), alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=0, observed=False
    )
    upper, lower = calibrated_boundaries(ALPHA, BETA, 2.0, share)
    up, down, p0, p1 = sprt_steps(2.0, share)
    assert path.alpha_spent == pytest.approx(exit_probabilities(p0, up, down, upper, lower)[0][0], abs=1e-9)
    assert path.beta_spent == pytest.approx(exit_probabilities(p1, up, down, upper, lower)[1][0], abs=1e-9)


def test_checked_after_every_bad_event_it_decides_where_the_sprt_does() -> None:
    rng = np.random.default_rng(3)
    upper, lower = calibrated_boundaries(ALPHA, BETA, 2.0, 0.1)
    up, down, _, _ = sprt_steps(2.0, 0.1)
    for _ in range(50):
        from_candidate = (rng.random(400) < 0.14).astype(int)
        path = grouped_sprt(
            from_candidate,
            1 - from_candidate,
            [1_000] * 400,
            [9_000] * 400,
            alpha=ALPHA,
            beta=BETA,
            ratio=2.0,
            min_samples=0,
        )
        llr = np.cumsum(np.where(from_candidate == 1, up, -down))
        crossed = np.flatnonzero((llr >= upper) | (llr <= lower))
        assert path.index == (int(crossed[0]) if crossed.size else -1)
        if crossed.size:
            assert path.side == (1 if llr[crossed[0]] >= upper else -1)


@st.composite
def groupings(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[int]]:
    """Any sequence of bins: requests per variant and bad events, from single events to thousands a bin."""
    bins = draw(st.integers(1, 40))
    candidate_n, champion_n, candidate_bad, champion_bad = [], [], [], []
    for _ in range(bins):
        c, b = draw(st.integers(0, 5_000)), draw(st.integers(0, 20_000))
        bad = draw(st.integers(0, min(c + b, draw(st.sampled_from([3, 30, 600])))))
        k = draw(st.integers(max(0, bad - b), min(bad, c)))
        candidate_n.append(c)
        champion_n.append(b)
        candidate_bad.append(k)
        champion_bad.append(bad - k)
    return candidate_bad, champion_bad, candidate_n, champion_n


@given(groupings(), st.sampled_from([0, 100]), st.booleans())
@settings(max_examples=150, deadline=None)
def test_its_exact_error_rates_hold_for_any_grouping(grouping: tuple, min_samples: int, paired: bool) -> None:
    # (a new delta costs a calibration per share: the precomputed doubling keeps this fast)
    path = grouped_sprt(
        *grouping, alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=min_samples, paired=paired, observed=False
    )
    assert path.alpha_spent <= ALPHA * (1 + 1e-9)
    assert path.beta_spent <= BETA * (1 + 1e-9)


@given(groupings())
@settings(max_examples=60, deadline=None)
def test_a_looks_boundaries_never_depend_on_later_bins(grouping: tuple) -> None:
    full = grouped_sprt(*grouping, alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=50, observed=False)
    cut = len(grouping[0]) // 2
    prefix = grouped_sprt(
        *(item[:cut] for item in grouping), alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=50, observed=False
    )
    assert prefix.upper.tolist() == full.upper[:cut].tolist()
    assert prefix.lower.tolist() == full.lower[:cut].tolist()


@pytest.mark.parametrize("hypothesis", ["h0", "h1"])
def test_the_dynamic_programme_matches_a_simulation_of_its_own_grouping(hypothesis: str) -> None:
    # Given one fixed, irregular grouping (quiet minutes, bursts), outcomes drawn from each bin's exact law
    rng = np.random.default_rng(12)
    minutes = 240
    requests = rng.poisson(np.where(rng.random(minutes) < 0.1, 1_200, 150))
    candidate_n = rng.binomial(requests, 0.1)
    champion_n = requests - candidate_n
    bad = rng.binomial(requests, 0.011)
    exact = grouped_sprt(
        [0] * minutes, bad, candidate_n, champion_n, alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=100, observed=False
    )
    laws = [
        bin_laws(int(n), int(c), int(b), 2.0, paired=False)
        for n, c, b in zip(bad, candidate_n, champion_n, strict=True)
    ]
    replications, hits = 2_000, 0
    for _ in range(replications):
        k = [
            low + rng.choice(len(h0), p=h0 if hypothesis == "h0" else h1) if n else 0
            for n, (low, h0, h1, _) in zip(bad, laws, strict=True)
        ]
        path = grouped_sprt(
            k, bad - np.asarray(k), candidate_n, champion_n, alpha=ALPHA, beta=BETA, ratio=2.0, min_samples=100
        )
        hits += path.side == (1 if hypothesis == "h0" else -1)
    rate, target = hits / replications, exact.alpha_spent if hypothesis == "h0" else exact.beta_spent
    # Then the realised error rate is the one the programme computed (three Monte Carlo standard errors)
    assert rate == pytest.approx(target, abs=3 * math.sqrt(target * (1 - target) / replications))
    assert target > (0.045 if hypothesis == "h0" else 0.18)  # and the grouping's overshoot wasted little


def test_spending_depends_on_the_bad_events_only_and_reaches_alpha_and_beta() -> None:
    values = [spending(ALPHA, BETA, 2.0, 0.1, n) for n in range(0, 3_000, 7)]
    alphas, betas = [item[0] for item in values], [item[1] for item in values]
    assert alphas == sorted(alphas)
    assert betas == sorted(betas)
    assert alphas[0] == betas[0] == 0.0
    # once the SPRT has decided, what its calibration left is free too
    assert alphas[-1] == ALPHA
    assert betas[-1] == BETA
    upper, lower = calibrated_boundaries(ALPHA, BETA, 2.0, 0.1)
    up, down, p0, _ = sprt_steps(2.0, 0.1)
    assert spending(ALPHA, BETA, 2.0, 0.1, 1_000)[0] == pytest.approx(
        exit_probabilities(p0, up, down, upper, lower)[0][0], abs=1e-9
    )


def test_bin_laws_are_the_conditional_laws_of_a_bins_candidate_count() -> None:
    # Hypergeometric under H0, Fisher's noncentral hypergeometric (odds ratio r) under H1
    low, h0, h1, offset = bin_laws(3, 20, 180, 2.0, paired=False)
    total = math.comb(200, 3)
    assert low == 0
    assert h0 == pytest.approx([math.comb(20, k) * math.comb(180, 3 - k) / total for k in range(4)])
    weights = [math.comb(20, k) * math.comb(180, 3 - k) * 2.0**k for k in range(4)]
    assert h1 == pytest.approx([item / sum(weights) for item in weights])
    assert offset == pytest.approx(math.log(sum(weights) / total))
    low, h0, h1, offset = bin_laws(4, 4, 4, 3.0, paired=True)
    assert h0 == pytest.approx([math.comb(4, k) / 16 for k in range(5)])
    assert h1 == pytest.approx([math.comb(4, k) * 0.75**k * 0.25 ** (4 - k) for k in range(5)])
    assert offset == pytest.approx(4 * math.log(2.0))
