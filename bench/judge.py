"""Rollout judges side by side on simulated CloudWatch traffic (issue 6), and whole rollouts at the product's cadence
(issue 18: shadow -> A/B 10/25/50 -> full -> watch, judged every 5 minutes with CloudWatch's 120-s lag).

Writes judge.json, judge.md and judge.png to bench/results/ (or --out DIR). How it is built: docs/BENCHMARKS.md,
"judge.py".
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from shepherd.judge import MetricSettings, sprt
from shepherd.judge.sprt import (
    bin_laws,
    boundaries_for_shares,
    calibrated_boundaries,
    exit_probabilities,
    first_crossing,
    grouped_sprt,
    split_llr_increments,
    stage_shares,
    wald_boundaries,
    wald_hoeffding_bound,
)

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA, BETA = 0.05, 0.2
DESIGN_RATIO = 2.0  # the judge's default delta = 1.0: it is designed to catch a doubling
THRESHOLD_FACTOR = 1.5  # threshold gates alarm at 1.5 x the champion's nominal rate (issue 6's example)
Candidate = Literal["good", "bad", "indifferent"]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate_is: Candidate
    description: str
    share: float  # candidate's share of requests; 1.0 = shadow (it sees every request, serves none)
    rpm: float  # mean requests per minute at the daily average
    champion_rate: float  # nominal bad-event rate (errors, or requests slower than t)
    ratio: float  # candidate rate / champion rate
    max_minutes: int  # the stage's maximum duration
    shadow: bool = False
    shared_fraction: float = 0.0  # shadow: share of the champion's bad requests the candidate also fails


def _latency_ratio(sigma: float = 0.5, slowdown: float = 1.2) -> float:
    """Lognormal latency x1.2: the rate over the champion's p99 goes from 1 % to this multiple."""
    z99 = stats.norm.ppf(0.99)
    return float(stats.norm.sf(z99 - math.log(slowdown) / sigma) / 0.01)


SCENARIOS = (
    Scenario("h0", "good", "identical variants, 1 % errors, 10 % share, 200 rpm", 0.1, 200, 0.01, 1.0, 360),
    Scenario("err_1_to_2", "bad", "errors 1 % -> 2 %, 10 % share, 200 rpm", 0.1, 200, 0.01, 2.0, 360),
    Scenario("err_1_to_1_3", "indifferent", "errors 1 % -> 1.3 %, 10 % share, 200 rpm", 0.1, 200, 0.01, 1.3, 360),
    Scenario("hard_failure", "bad", "errors 1 % -> 50 %, 10 % share, 200 rpm", 0.1, 200, 0.01, 50.0, 360),
    Scenario(
        "latency_p99_plus_20",
        "bad",
        f"lognormal (sigma 0.5) latency x1.2: over the champion's p99 1 % -> {_latency_ratio():.2f} %, "
        "10 % share, 200 rpm",
        0.1,
        200,
        0.01,
        _latency_ratio(),
        360,
    ),
    Scenario("low_traffic", "bad", "errors 1 % -> 2 %, 10 % share, 10 rpm, 24 h stage", 0.1, 10, 0.01, 2.0, 1440),
    Scenario("low_traffic_h0", "good", "identical variants, 1 % errors, 10 % share, 10 rpm", 0.1, 10, 0.01, 1.0, 1440),
    Scenario(
        "shadow",
        "bad",
        "shadow, errors 1 % -> 2 %, half of the champion's errors shared, 200 rpm",
        1.0,
        200,
        0.01,
        2.0,
        360,
        shadow=True,
        shared_fraction=0.5,
    ),
    Scenario(
        "shadow_h0",
        "good",
        "shadow, identical 1 % error rates, half shared, 200 rpm",
        1.0,
        200,
        0.01,
        1.0,
        360,
        shadow=True,
        shared_fraction=0.5,
    ),
)


@dataclass
class Traffic:
    """Per-replication, per-minute bins (shape: replications x minutes)."""

    candidate_n: Ints
    champion_n: Ints
    candidate_bad: Ints
    champion_bad: Ints
    candidate_only: Ints  # shadow pairs: candidate bad, champion fine
    champion_only: Ints
    requests: Ints  # production requests per minute (both variants in A/B; pairs in shadow)


def simulate(scenario: Scenario, replications: int, rng: np.random.Generator) -> Traffic:
    minutes = np.arange(scenario.max_minutes)
    phase = rng.uniform(0, 1, size=(replications, 1))
    diurnal = np.sin(2 * np.pi * (minutes / 1440 + phase))
    burst = rng.random((replications, scenario.max_minutes)) < 0.02
    load = scenario.rpm * (1 + 0.5 * diurnal) * np.where(burst, 4.0, 1.0)
    requests = rng.poisson(load)
    base = scenario.champion_rate * (1 + 0.3 * diurnal) * np.where(burst, 1.5, 1.0)
    candidate_rate = np.minimum(base * scenario.ratio, 1.0)
    if scenario.shadow:
        both_rate = scenario.shared_fraction * np.minimum(base, candidate_rate)
        champion_only_rate = base - both_rate
        candidate_only_rate = candidate_rate - both_rate
        both = rng.binomial(requests, both_rate)
        rest = requests - both
        champion_only = rng.binomial(rest, champion_only_rate / (1 - both_rate))
        rest -= champion_only
        candidate_only = rng.binomial(rest, np.minimum(candidate_only_rate / (1 - both_rate - champion_only_rate), 1))
        return Traffic(
            requests,
            requests,
            both + candidate_only,
            both + champion_only,
            candidate_only,
            champion_only,
            requests,
        )
    candidate_n = rng.binomial(requests, scenario.share)
    champion_n = requests - candidate_n
    candidate_bad = rng.binomial(candidate_n, candidate_rate)
    champion_bad = rng.binomial(champion_n, base)
    zeros = np.zeros_like(requests)
    return Traffic(candidate_n, champion_n, candidate_bad, champion_bad, zeros, zeros, requests)


# A strategy returns, per replication, its decision (+1 ROLLBACK, -1 PROMOTE, 0 undecided at the
# stage's end) and the index of the minute it decided in (the last minute when undecided).
Decision = tuple[NDArray[np.int8], NDArray[np.intp]]
Strategy = Callable[[Traffic, Scenario], Decision]


def shepherd(traffic: Traffic, scenario: Scenario) -> Decision:
    """The judge's own test, one stage at a time: A/B through shepherd.judge.sprt.grouped_sprt as the engine calls
    it; shadow through shepherd.judge.judge itself, on the variants' CloudWatch counts (unpaired), as production
    judges shadow errors."""
    settings = MetricSettings()  # the judge's defaults: alpha 0.05, beta 0.2, delta 1.0, 100 samples
    if scenario.shadow:
        return _shadow_as_production(traffic, scenario)
    rows = zip(traffic.candidate_bad, traffic.champion_bad, traffic.candidate_n, traffic.champion_n, strict=True)
    side = np.zeros(traffic.requests.shape[0], dtype=np.int8)
    index = np.full(traffic.requests.shape[0], scenario.max_minutes - 1, dtype=np.intp)
    for row, (candidate_bad, champion_bad, candidate_n, champion_n) in enumerate(rows):
        path = grouped_sprt(
            candidate_bad,
            champion_bad,
            candidate_n,
            champion_n,
            alpha=settings.alpha,
            beta=settings.beta,
            ratio=1.0 + settings.delta,
            min_samples=settings.min_samples,
        )
        if path.side:
            side[row], index[row] = path.side, path.index
    return side, index


def _shadow_as_production(traffic: Traffic, scenario: Scenario) -> Decision:
    """A shadow stage judged by shepherd.judge.judge with the settings shepherd.rollout.observe.settings gives a
    shadow stage, on one VariantBin per variant and minute (CloudWatch's SampleCount and error Sum): no pairs."""
    from shepherd.judge import StageObservations, VariantBin, judge
    from shepherd.rollout.observe import settings

    stage_settings = settings(
        {"error_rate": {}}, max_minutes=scenario.max_minutes, at_max="INCONCLUSIVE", kind="shadow"
    )
    side = np.zeros(traffic.requests.shape[0], dtype=np.int8)
    index = np.full(traffic.requests.shape[0], scenario.max_minutes - 1, dtype=np.intp)
    for row in range(traffic.requests.shape[0]):
        n, candidate, champion = traffic.requests[row], traffic.candidate_bad[row], traffic.champion_bad[row]
        for upto in (PREFIX_MINUTES, scenario.max_minutes):  # a decision in the prefix is the whole stage's
            observed = StageObservations(
                minutes_elapsed=scenario.max_minutes,
                champion=tuple(VariantBin(m, int(n[m]), int(champion[m])) for m in range(upto) if n[m]),
                candidate=tuple(VariantBin(m, int(n[m]), int(candidate[m])) for m in range(upto) if n[m]),
            )
            verdict, decided = stage_verdict(judge(observed, stage_settings))
            if decided is not None:
                side[row], index[row] = (1 if verdict == "ROLLBACK" else -1), decided
                break
    return side, index


def _threshold(scenario: Scenario) -> float:
    return THRESHOLD_FACTOR * scenario.champion_rate


def _candidate_rate(traffic: Traffic, window: int = 1) -> NDArray[np.float64]:
    """Candidate bad-event rate per check: the last `window` minutes pooled; NaN without requests."""
    bad, n = np.cumsum(traffic.candidate_bad, axis=1), np.cumsum(traffic.candidate_n, axis=1)
    if window > 1:
        bad = bad[:, window - 1 :: window] - np.pad(bad[:, window - 1 :: window], ((0, 0), (1, 0)))[:, :-1]
        n = n[:, window - 1 :: window] - np.pad(n[:, window - 1 :: window], ((0, 0), (1, 0)))[:, :-1]
    else:
        bad, n = traffic.candidate_bad, traffic.candidate_n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, bad / np.maximum(n, 1), np.nan)


def _failures_then_promote(failed: NDArray[np.bool_], limit: int, checks: int, minutes_per_check: int) -> Decision:
    """Roll back at the check where failures reach `limit`; promote after `checks` checks otherwise."""
    failed = failed[:, :checks]
    count = np.cumsum(failed, axis=1)
    reached = count >= limit
    rolled = reached.any(axis=1)
    at = np.where(rolled, reached.argmax(axis=1), checks - 1)
    side = np.where(rolled, 1, -1).astype(np.int8)
    return side, (at + 1) * minutes_per_check - 1


def flagger(traffic: Traffic, scenario: Scenario) -> Decision:
    # interval 1m, threshold 5 failed checks; 10 iterations; no data counts as a failed check.
    rate = _candidate_rate(traffic)
    failed = ~(rate <= _threshold(scenario))
    return _failures_then_promote(failed, limit=5, checks=10, minutes_per_check=1)


def _argo(failure_limit: int) -> Strategy:
    def argo(traffic: Traffic, scenario: Scenario) -> Decision:
        # interval 5m over a 5m window, 6 measurements; failed when measurements failed > failureLimit.
        rate = _candidate_rate(traffic, window=5)
        failed = rate > _threshold(scenario)
        return _failures_then_promote(failed, limit=failure_limit + 1, checks=6, minutes_per_check=5)

    return argo


def _alarm_bake(bake_minutes: int) -> Strategy:
    def alarm(traffic: Traffic, scenario: Scenario) -> Decision:
        # CloudWatch alarm: 60-s period, 1 of 1 datapoints above threshold; missing data not breaching.
        rate = _candidate_rate(traffic)
        failed = rate > _threshold(scenario)
        return _failures_then_promote(failed, limit=1, checks=bake_minutes, minutes_per_check=1)

    return alarm


def kayenta(traffic: Traffic, scenario: Scenario) -> Decision:
    # One hourly judgement: Mann-Whitney on the per-minute rates, confLevel 0.98, effect tolerance 25 %.
    window = 60
    candidate = _candidate_rate(traffic)[:, :window]
    with np.errstate(invalid="ignore", divide="ignore"):
        champion = np.where(
            traffic.champion_n[:, :window] > 0,
            traffic.champion_bad[:, :window] / np.maximum(traffic.champion_n[:, :window], 1),
            np.nan,
        )
    candidate = np.where(np.isnan(candidate), np.nanmean(candidate, axis=1, keepdims=True), candidate)
    candidate = np.nan_to_num(candidate)
    p = stats.mannwhitneyu(candidate, champion, alternative="greater", axis=1, method="asymptotic").pvalue
    higher = (p < 0.01) & (candidate.mean(axis=1) >= 1.25 * np.nanmean(champion, axis=1))
    side = np.where(higher, 1, -1).astype(np.int8)
    return side, np.full(side.shape, window - 1)


def fixed_horizon_size(scenario: Scenario) -> float:
    """Total requests of a one-sided two-proportion z-test at alpha with power 1 - beta for a doubling
    of the nominal rate, allocation s_c : s_b (Fleiss, Statistical Methods for Rates and Proportions,
    unequal groups): n = (z_a sqrt(pbar qbar (1/s_c + 1/s_b)) + z_b sqrt(p0 q0/s_b + p1 q1/s_c))^2 / (p1 - p0)^2,
    pbar the allocation-weighted mean of p0 and p1 (the pooled rate the test statistic uses under H0)."""
    z_a, z_b = stats.norm.isf(ALPHA), stats.norm.isf(BETA)
    p0, p1 = scenario.champion_rate, DESIGN_RATIO * scenario.champion_rate
    s_c, s_b = (1.0, 1.0) if scenario.shadow else (scenario.share, 1 - scenario.share)
    pooled = (s_b * p0 + s_c * p1) / (s_b + s_c)
    return (
        z_a * math.sqrt(pooled * (1 - pooled) * (1 / s_c + 1 / s_b))
        + z_b * math.sqrt(p0 * (1 - p0) / s_b + p1 * (1 - p1) / s_c)
    ) ** 2 / (p1 - p0) ** 2


def fixed_horizon(traffic: Traffic, scenario: Scenario) -> Decision:
    """One-sided two-proportion z-test at alpha with power 1-beta for a doubling of a 1 % rate."""
    z_a = stats.norm.isf(ALPHA)
    n = fixed_horizon_size(scenario)
    reached = np.cumsum(traffic.requests, axis=1) >= n
    done = reached.any(axis=1)
    at = np.where(done, reached.argmax(axis=1), scenario.max_minutes - 1)
    cum = {name: np.cumsum(getattr(traffic, name), axis=1) for name in ("candidate_bad", "champion_bad")}
    cum_n = {name: np.cumsum(getattr(traffic, name), axis=1) for name in ("candidate_n", "champion_n")}

    def at_index(array: Ints) -> NDArray[np.float64]:
        return np.take_along_axis(array, at[:, None], axis=1)[:, 0].astype(np.float64)

    k_c, k_b = at_index(cum["candidate_bad"]), at_index(cum["champion_bad"])
    n_c, n_b = np.maximum(at_index(cum_n["candidate_n"]), 1), np.maximum(at_index(cum_n["champion_n"]), 1)
    pool = (k_c + k_b) / (n_c + n_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (k_c / n_c - k_b / n_b) / np.sqrt(pool * (1 - pool) * (1 / n_c + 1 / n_b))
    side = np.where(done, np.where(np.nan_to_num(z) > z_a, 1, -1), 0).astype(np.int8)
    return side, at


STRATEGIES: dict[str, Strategy] = {
    "flagger": flagger,
    "argo_failure_limit_0": _argo(0),
    "argo_failure_limit_1": _argo(1),
    "kayenta": kayenta,
    "sagemaker_guardrails": _alarm_bake(10),
    "codedeploy_canary10_5min": _alarm_bake(5),
    "fixed_horizon_z": fixed_horizon,
    "shepherd": shepherd,
}


def bound_requests(scenario: Scenario) -> float | None:
    """Wald-Hoeffding lower bound on expected total requests, from the conditioning argument."""
    if scenario.candidate_is == "indifferent":
        return None  # no error rate is promised inside the indifference zone, so no bound applies
    bad = scenario.candidate_is == "bad"
    p_b, r = scenario.champion_rate, scenario.ratio
    if scenario.shadow:
        # Production judges shadow errors unpaired: both variants' errors, a bad event the candidate's with
        # probability 1/2 (H0) or r/(1+r) (H1), p_b (1 + r) bad events per request (shared failures count twice).
        p_true = r / (1 + r)
        errors = wald_hoeffding_bound(p_true, 0.5, DESIGN_RATIO / (1 + DESIGN_RATIO), ALPHA, BETA, bad=bad)
        return errors / (p_b * (1 + r))
    w = scenario.share
    p0, p1 = w, w * DESIGN_RATIO / (w * DESIGN_RATIO + 1 - w)
    p_true = w * r / (w * r + 1 - w)
    errors = wald_hoeffding_bound(p_true, p0, p1, ALPHA, BETA, bad=bad)
    return errors / (p_b * ((1 - w) + w * r))


@dataclass
class Outcomes:
    """Per-replication outcomes of one strategy in one scenario."""

    side: NDArray[np.int8]
    minutes: NDArray[np.intp]
    requests: NDArray[np.int64]
    bad_served: NDArray[np.int64]


def outcomes(scenario: Scenario, traffic: Traffic, decision: Decision) -> Outcomes:
    side, at = decision

    def at_decision(per_minute: Ints) -> NDArray[np.int64]:
        return np.take_along_axis(np.cumsum(per_minute, axis=1), at[:, None], axis=1)[:, 0]

    served = np.zeros_like(at, dtype=np.int64) if scenario.shadow else at_decision(traffic.candidate_bad)
    return Outcomes(side, at + 1, at_decision(traffic.requests), served)


def summarise(scenario: Scenario, result: Outcomes) -> dict[str, float | None]:
    good, bad = scenario.candidate_is == "good", scenario.candidate_is == "bad"
    return {
        "false_rollback": float(np.mean(result.side == 1)) if good else None,
        "miss": float(np.mean(result.side == -1)) if bad else None,
        "rollback": float(np.mean(result.side == 1)),
        "promote": float(np.mean(result.side == -1)),
        "undecided": float(np.mean(result.side == 0)),
        "mean_requests": float(result.requests.mean()),
        "p90_requests": float(np.percentile(result.requests, 90)),
        "mean_minutes": float(result.minutes.mean()),
        "bad_requests_served": float(result.bad_served.mean()),
    }


SCHEMA_FIELDS = (
    "false_rollback",
    "miss",
    "undecided",
    "mean_requests",
    "p90_requests",
    "mean_minutes",
    "bad_requests_served",
)


def schema(report: dict[str, object]) -> dict[str, object]:
    """judge.json exactly as issue 6 specifies it; judge.md carries the rest."""
    scenarios = report["scenarios"]
    strategies = report["strategies"]
    assert isinstance(scenarios, dict)
    assert isinstance(strategies, dict)
    return {
        "alpha": report["alpha"],
        "beta": report["beta"],
        "scenarios": {
            name: {"candidate_is": item["candidate_is"], "bound_requests": item["bound_requests"]}
            for name, item in scenarios.items()
        },
        "strategies": {
            name: {scenario: {field: row[field] for field in SCHEMA_FIELDS} for scenario, row in by_scenario.items()}
            for name, by_scenario in strategies.items()
        },
        "rollouts": report["rollouts"],
    }


def unbatched_sprt(rng: np.random.Generator, share: float = 0.1, replications: int = 20_000) -> dict[str, float]:
    """The same SPRT checked after every single error (not possible with 60-s bins), 1 % -> 2 % at `share`.

    It separates what the 60-s batching costs from what the test itself costs.
    """
    p0, p1 = share, DESIGN_RATIO * share / (DESIGN_RATIO * share + 1 - share)
    up, down = math.log(p1 / p0), -math.log((1 - p1) / (1 - p0))
    result: dict[str, float] = {}
    boundaries = {
        "wald": wald_boundaries(ALPHA, BETA),
        "calibrated": calibrated_boundaries(ALPHA, BETA, DESIGN_RATIO, share),
        "fitted": FITTED_TO_BINS,
    }
    for kind, (upper, lower) in boundaries.items():
        result[f"{kind}_upper"], result[f"{kind}_lower"] = upper, lower
        result[f"{kind}_exact_alpha"] = float(exit_probabilities(p0, up, down, upper, lower)[0][0])
        result[f"{kind}_exact_beta"] = float(exit_probabilities(p1, up, down, upper, lower)[1][0])
        for name, truth, per_request in (("h0", p0, 0.01), ("err_1_to_2", p1, 0.01 * (1 + share))):
            from_candidate = rng.random((replications, 2_000)) < truth
            path = np.cumsum(np.where(from_candidate, up, -down), axis=1)
            index, side = first_crossing(path, upper, lower, np.ones_like(from_candidate))
            result[f"{kind}_{name}_mean_requests"] = float((index + 1).mean() / per_request)
            result[f"{kind}_{name}_wrong"] = float(np.mean(side == (1 if name == "h0" else -1)))
    return result


# Boundaries fitted by hand to this simulator's 60-s bins at 200 rpm (realised error rates ~0.048 / ~0.20 there):
# shown in judge.md only, to price what fitting the boundaries to one traffic shape would buy and break.
FITTED_TO_BINS = (2.40, -1.40)
SIDE_SCENARIOS = ("h0", "err_1_to_2", "low_traffic", "low_traffic_h0")


def fixed_boundaries_in_bins(traffic: Traffic, kind: str) -> Decision:
    """The judge's statistic checked at the end of each bin against fixed boundaries (not a strategy): the
    previous judge's, calibrated for checks after every error ("calibrated"), or FITTED_TO_BINS ("fitted")."""
    increments = split_llr_increments(
        traffic.candidate_bad, traffic.champion_bad, traffic.candidate_n, traffic.champion_n, DESIGN_RATIO
    )
    if kind == "fitted":
        upper, lower = FITTED_TO_BINS
    else:
        shares = stage_shares(traffic.candidate_n, traffic.champion_n)
        upper, lower = boundaries_for_shares(ALPHA, BETA, DESIGN_RATIO, shares)
    may_promote = (np.cumsum(traffic.candidate_n, axis=1) >= 100) & (np.cumsum(traffic.champion_n, axis=1) >= 100)
    index, side = first_crossing(np.cumsum(increments, axis=1), upper, lower, may_promote)
    return side, np.where(side != 0, index, traffic.requests.shape[1] - 1)


GROUPINGS = (
    ("one bad event per look", 0.0, 3_000),
    ("10 rpm (about 0.1 errors a bin)", 10.0, 1_440),
    ("200 rpm (about 2.2)", 200.0, 360),
    ("2,000 rpm (about 22)", 2_000.0, 120),
    ("20,000 rpm (about 220)", 20_000.0, 30),
)


def exact_by_grouping(rng: np.random.Generator, draws: int = 20) -> list[dict[str, object]]:
    """The judge's exact error rates given the grouping (grouped_sprt with observed=False), for groupings drawn
    from this simulator's traffic at several rates (errors at the H0 rate for alpha, at the H1 rate for beta):
    10 % share, a doubling, defaults. Mean and range over `draws` groupings each."""
    rows = []
    for label, rpm, minutes in GROUPINGS:
        spent: dict[str, list[float]] = {"alpha": [], "beta": []}
        for which, candidate_rate in (("alpha", 0.01), ("beta", 0.02)):
            for _ in range(1 if rpm == 0 else draws):
                if rpm == 0:
                    # One bad event per bin; the share alone fixes its law.
                    champion_bad, candidate_n = np.ones(minutes, dtype=np.int64), np.full(minutes, 1_000)
                    champion_n = np.full(minutes, 9_000)
                else:
                    requests = rng.poisson(rpm * (1 + 0.5 * np.sin(np.arange(minutes) / 229)))
                    candidate_n = rng.binomial(requests, 0.1)
                    champion_n = requests - candidate_n
                    champion_bad = rng.binomial(candidate_n, candidate_rate) + rng.binomial(champion_n, 0.01)
                path = grouped_sprt(
                    np.zeros(minutes, dtype=np.int64),
                    champion_bad,
                    candidate_n,
                    champion_n,
                    alpha=ALPHA,
                    beta=BETA,
                    ratio=DESIGN_RATIO,
                    min_samples=100,
                    observed=False,
                )
                spent[which].append(path.alpha_spent if which == "alpha" else path.beta_spent)
        rows.append(
            {
                "grouping": label,
                "minutes": minutes,
                **{
                    f"{which}_{stat}": float(getattr(np, stat)(values))
                    for which, values in spent.items()
                    for stat in ("mean", "min", "max")
                },
            }
        )
    return rows


def call_time() -> dict[str, float]:
    """Wall time of a judge call (ms): the first in this process, then warm, median of 5."""
    import statistics

    from shepherd.judge import StageObservations, StageSettings, VariantBin, judge, sprt

    for cache in (sprt._spending_curve, sprt._calibrated, sprt._precomputed):
        cache.cache_clear()  # the first call below is as in a fresh process
    rng = np.random.default_rng(1)

    def stage(minutes: int) -> StageObservations:
        requests = rng.poisson(200, minutes)
        candidate_n = rng.binomial(requests, 0.1)
        bad = [rng.binomial(n, 0.013) for n in (candidate_n, requests - candidate_n, candidate_n)]
        slow = rng.binomial(requests - candidate_n, 0.01)
        return StageObservations(
            minutes_elapsed=minutes,
            champion=tuple(
                VariantBin(m, int(requests[m] - candidate_n[m]), int(bad[1][m]), int(slow[m])) for m in range(minutes)
            ),
            candidate=tuple(VariantBin(m, int(candidate_n[m]), int(bad[0][m]), int(bad[2][m])) for m in range(minutes)),
        )

    settings = StageSettings.from_config({"error_rate": {}, "latency": {}})

    def timed(call: Callable[[], object], repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1e3)
        return statistics.median(times)

    first = stage(30)
    first_call = timed(lambda: judge(first, settings), repeat=1)
    long_stage = stage(360)
    requests = rng.poisson(200, 1_440)
    candidate_n = rng.binomial(requests, 0.1)
    candidate_bad, champion_bad = rng.binomial(candidate_n, 0.013), rng.binomial(requests - candidate_n, 0.01)
    return {
        "first_call_ms": first_call,
        "judge_6h_ms": timed(lambda: judge(long_stage, settings)),
        "dp_24h_ms": timed(
            lambda: grouped_sprt(
                candidate_bad,
                champion_bad,
                candidate_n,
                requests - candidate_n,
                alpha=ALPHA,
                beta=BETA,
                ratio=DESIGN_RATIO,
                min_samples=100,
                observed=False,
            )
        ),
    }


def run(replications: int, seed: int, rollout_replications: int = 0) -> dict[str, object]:
    strategies: dict[str, dict[str, dict[str, float | None]]] = {name: {} for name in STRATEGIES}
    scenarios: dict[str, dict[str, object]] = {}
    rng = np.random.default_rng(seed)
    chunk = 2_000
    side_runs: dict[str, list[Outcomes]] = {}
    side_rows: dict[str, dict[str, dict[str, float | None]]] = {"fitted": {}, "calibrated": {}}
    for scenario in SCENARIOS:
        bound = bound_requests(scenario)
        scenarios[scenario.name] = {
            "candidate_is": scenario.candidate_is,
            "bound_requests": None if bound is None else round(bound, 1),
            "description": scenario.description,
            "candidate_share": scenario.share,
            "requests_per_minute": scenario.rpm,
            "max_minutes": scenario.max_minutes,
        }
        parts: dict[str, list[Outcomes]] = {name: [] for name in STRATEGIES}
        for start in range(0, replications, chunk):
            traffic = simulate(scenario, min(chunk, replications - start), rng)
            for name, strategy in STRATEGIES.items():
                parts[name].append(outcomes(scenario, traffic, strategy(traffic, scenario)))
            if scenario.name in SIDE_SCENARIOS:
                for kind in side_rows:
                    decision = fixed_boundaries_in_bins(traffic, kind)
                    side_runs.setdefault(f"{kind}:{scenario.name}", []).append(outcomes(scenario, traffic, decision))
        extra = [(name, side_runs[name]) for name in side_runs if name.endswith(f":{scenario.name}")]
        for name, chunks in [*parts.items(), *extra]:
            joined = Outcomes(
                *(np.concatenate([getattr(item, f) for item in chunks]) for f in Outcomes.__annotations__)
            )
            if ":" in name:
                kind = name.split(":")[0]
                side_rows[kind][scenario.name] = summarise(scenario, joined)
            else:
                strategies[name][scenario.name] = summarise(scenario, joined)
    return {
        "alpha": ALPHA,
        "beta": BETA,
        "replications": replications,
        "seed": seed,
        "threshold_factor": THRESHOLD_FACTOR,
        "unbatched_sprt": unbatched_sprt(rng),
        "fitted_to_bins": side_rows["fitted"],
        "calibrated_in_bins": side_rows["calibrated"],
        "exact_by_grouping": exact_by_grouping(rng),
        "call_time": call_time(),
        "fixed_horizon_size": fixed_horizon_size(SCENARIOS[1]),
        "scenarios": scenarios,
        "strategies": strategies,
        "rollouts": run_rollouts(rollout_replications or replications, seed),
    }


# ---------------------------------------------------------------------------------------------------------------
# Whole rollouts at the product's cadence (issue 18): shadow -> A/B 10/25/50 -> full -> watch, each stage judged
# every JUDGE_INTERVAL minutes on the bins complete LAG_MINUTES earlier, by the product's own settings code
# (shepherd.rollout.plan.stages for the plan, JudgeRequest.settings for each stage's test, shepherd.judge.judge).
# The judge's first crossing does not depend on later bins, so one judge call per stage on every bin the stage's
# last call would see gives the verdict; the call that first sees the deciding bin is when it was reached.
# ---------------------------------------------------------------------------------------------------------------

JUDGE_INTERVAL = 5  # rollout.judge_interval_minutes' default
LAG_MINUTES = 2  # shepherd.rollout.observe.LAG_SECONDS: bin m is complete at minute m + 1 + 2
BASELINE_MINUTES = 60  # judging.BASELINE_LOOKBACK_SECONDS: the champion's counts before the rollout
COMPETITORS = ("msprt", "group_sequential")  # judge shadow and A/B with the shepherd's stages and budget
ROLLOUT_STRATEGIES = ("shepherd", "shepherd_stagewise", "msprt", "group_sequential")
# shepherd_stagewise's maxima: the defaults before maxima were derived from traffic (shadow, each A/B step, full)
STAGEWISE_MAX_MINUTES = {"shadow": 120, "ab": 120, "full": 30}


@dataclass(frozen=True)
class RolloutScenario:
    name: str
    candidate_is: Candidate
    what: str
    rpm: float
    rate: float  # the champion's error rate
    ratio: float  # candidate / champion
    drift: tuple[float, ...] = ()  # error-rate multiplier shared by both variants: the hour before, then per stage
    # > 0: the champion's fleet (autoscaled) has this many instances and a variant's error rate is proportional to
    # its load per instance (the candidate's instance counts as the product plans them); rate is the champion's at
    # its own load serving every request
    champion_instances: int = 0
    # > 0: quality is judged too, on ground truth for `labelled` of the predictions arriving this many minutes late
    # on average (exponential), filed by arrival minute as production files them; misclassification rates `wrong`
    # (champion) and `wrong` x `wrong_ratio` (candidate)
    label_delay: float = 0.0
    labelled: float = 0.5
    wrong: float = 0.1
    wrong_ratio: float = 1.0


ROLLOUT_SCENARIOS = (
    RolloutScenario("good_200rpm", "good", "200 rpm, 1 % errors, candidate as good", 200, 0.01, 1.0),
    RolloutScenario("bad_200rpm", "bad", "200 rpm, 1 % errors, candidate's twice the champion's", 200, 0.01, 2.0),
    RolloutScenario(
        "good_200rpm_drift",
        "good",
        "200 rpm, 1 % errors +-25 % between the hour before and each stage (both variants), candidate as good",
        200,
        0.01,
        1.0,
        drift=(1.0, 1.25, 0.8, 1.25, 0.8, 1.25, 1.25),
    ),
    RolloutScenario("good_50rpm", "good", "50 rpm, 1 % errors, candidate as good", 50, 0.01, 1.0),
    RolloutScenario("bad_50rpm", "bad", "50 rpm, 1 % errors, candidate's twice the champion's", 50, 0.01, 2.0),
    RolloutScenario("good_20rpm", "good", "20 rpm, 1 % errors, candidate as good", 20, 0.01, 1.0),
    RolloutScenario("bad_20rpm", "bad", "20 rpm, 1 % errors, candidate's twice the champion's", 20, 0.01, 2.0),
    RolloutScenario("good_perfect", "good", "200 rpm, neither model ever fails", 200, 0.0, 1.0),
    RolloutScenario(
        "good_labels_30min",
        "good",
        "200 rpm, 1 % errors; quality judged too: half the predictions labelled, labels 30 min late on average "
        "(exponential), 10 % wrong for both",
        200,
        0.01,
        1.0,
        label_delay=30.0,
    ),
    RolloutScenario(
        "bad_labels_30min",
        "bad",
        "as good_labels_30min, the candidate wrong on 20 % (errors as the champion's)",
        200,
        0.01,
        1.0,
        label_delay=30.0,
        wrong_ratio=2.0,
    ),
    RolloutScenario(
        "good_200rpm_load",
        "good",
        "200 rpm; the champion autoscaled to 6 instances, the challenger's count as the product plans it (config 2); "
        "errors proportional to load per instance, 1 % at the champion's; candidate as good per instance",
        200,
        0.01,
        1.0,
        champion_instances=6,
    ),
    RolloutScenario(
        "bad_200rpm_load",
        "bad",
        "as good_200rpm_load, the candidate failing twice as often at the same load per instance",
        200,
        0.01,
        2.0,
        champion_instances=6,
    ),
)


def rollout_strategies(scenario: RolloutScenario) -> tuple[str, ...]:
    """The strategies a scenario runs: the competitors judge error rates only, so not where quality is judged."""
    return tuple(name for name in ROLLOUT_STRATEGIES if not (scenario.label_delay and name in COMPETITORS))


def _default_config(quality: bool) -> Any:
    from shepherd.config import load_config

    text = "framework: sklearn\nentry_point: train.py\n"
    if quality:
        text += "rollout:\n  judge:\n    quality: {}\n"
    return load_config(text, "models/bench/shepherd.yaml")


def _rollout_stages(strategy: str, *, quality: bool = False) -> list[tuple[str, float, int, Any]]:
    """(kind, weight, max_minutes, budget) of the default config's stages, as the product plans them."""
    from shepherd.rollout import plan

    config = _default_config(quality)
    # The live stages as planned, with their parts of the budget. The replay stage judges captured requests offline,
    # not metrics: its share of alpha (shepherd.rollout.budget.REPLAY_ALPHA_SHARE) is left unspent here.
    stages = [stage for stage in plan.stages(config) if stage.kind != "replay"]
    if strategy in COMPETITORS:
        strategy = "shepherd"  # the same stages and budget; the competitor judges shadow and A/B
    if strategy == "shepherd_stagewise":  # the judge before issue 18: alpha and beta whole, fixed maxima
        stages = [
            stage.model_copy(
                update={
                    "alpha_share": None,
                    "beta_power": None,
                    "max_minutes": STAGEWISE_MAX_MINUTES.get(stage.kind, stage.max_minutes),
                    "max_from_traffic": False,
                }
            )
            for stage in stages
        ]
    judge_config = config.rollout.judge.model_dump(mode="json", exclude_none=True)
    if strategy == "shepherd_stagewise":
        for metric in ("error_rate", "quality"):
            if metric in judge_config:
                judge_config[metric]["floor_rate"] = 0.0  # no floor then
    return [(s.kind, s.weight, s.max_minutes, (s.model_dump(mode="json"), judge_config)) for s in stages]


def load_factors(scenario: RolloutScenario, stages: list[tuple[str, float, int, Any]]) -> list[tuple[float, float]]:
    """Per stage, the champion's and the candidate's error-rate multipliers from their loads per instance, relative
    to the champion's fleet serving every request. The candidate's instance count follows the product:
    shepherd.rollout.steps.enter_stage gives a shadow the champion's count, builds the first A/B config with
    shepherd.rollout.plan.challenger_count's and raises it to that count whenever the weights move."""
    if not scenario.champion_instances:
        return [(1.0, 1.0)] * len(stages)
    from shepherd.rollout import plan

    configured = _default_config(False).endpoint.realtime.instance_count
    planned = [plan.Stage.model_validate(dump) for _, _, _, (dump, _) in stages]
    fleet, count, out = scenario.champion_instances, configured, []
    for index, stage in enumerate(planned):
        wanted = plan.challenger_count(planned, index, fleet)
        if stage.kind == "shadow":
            count = max(configured, fleet)
        elif wanted is not None and index and planned[index - 1].kind == "shadow":
            count = wanted  # a new config: the challenger's instances in proportion to its share
        elif wanted is not None:
            count = max(count, wanted)  # weights move: capacity is raised ahead of the traffic, never lowered
        share = stage.weight / 100.0 if stage.kind == "ab" else 1.0
        champion_share = 1.0 - share if stage.kind == "ab" else 1.0
        out.append((champion_share, share * fleet / count))
    return out


EXPECTED_MINUTES = 60  # decidable: the stage's maximum as derived after this long at the scenario's mean traffic


def expected_observations(scenario: RolloutScenario, kind: str, weight: float, minutes: int) -> Any:
    """A stage's observations after ``minutes`` at the scenario's mean traffic and rates, as one bin (the derived
    maximum reads only totals): what shepherd.judge.duration would see from a candidate as good as the champion."""
    from shepherd.judge import Baseline, FeedbackBin, Metric, PairedBin, StageObservations, VariantBin

    total = scenario.rpm * minutes
    share = 1.0 if kind in ("shadow", "full", "watch") else weight / 100.0
    candidate_n = round(total * share)
    champion_n = 0 if kind in ("full", "watch") else (candidate_n if kind == "shadow" else round(total) - candidate_n)
    quality = bool(scenario.label_delay)

    def labelled(n: int) -> tuple[FeedbackBin, ...]:
        count = round(n * scenario.labelled)
        return (FeedbackBin(0, count, round(count * scenario.wrong)),) if quality and count else ()

    pairs = round(candidate_n * scenario.labelled)
    one_only = round(pairs * scenario.wrong * (1.0 - scenario.wrong))
    before = round(scenario.rpm * BASELINE_MINUTES)
    baseline = {Metric.ERROR_RATE: Baseline(before, round(before * scenario.rate))}
    if quality:
        labels = round(scenario.rpm * BASELINE_MINUTES * scenario.labelled)
        baseline[Metric.QUALITY] = Baseline(labels, round(labels * scenario.wrong))
    return StageObservations(
        minutes_elapsed=minutes,
        champion=(VariantBin(0, champion_n, round(champion_n * scenario.rate)),) if champion_n else (),
        candidate=(VariantBin(0, candidate_n, round(candidate_n * scenario.rate)),) if candidate_n else (),
        champion_feedback=labelled(champion_n) if kind == "ab" else (),
        candidate_feedback=labelled(candidate_n) if kind != "shadow" else (),
        shadow_quality=(PairedBin(0, pairs, one_only, one_only),) if quality and kind == "shadow" and pairs else (),
        baseline=baseline if kind in ("full", "watch") else {},
    )


def stage_maximum(scenario: RolloutScenario, stage: dict[str, Any], config: dict[str, Any]) -> int:
    """A stage's maximum for the scenario: the configured one, or the one shepherd.judge.duration derives from
    EXPECTED_MINUTES of the scenario's mean traffic."""
    from shepherd.judge.duration import with_derived_max

    if not stage.get("max_from_traffic"):
        return int(stage["max_minutes"])
    observations = expected_observations(scenario, stage["kind"], float(stage["weight"]), EXPECTED_MINUTES)
    derived = with_derived_max(observations, _stage_settings(stage, config), cap=int(stage["max_minutes"]))
    return min(values.max_minutes for values in derived.metrics.values())


def decidable(scenario: RolloutScenario) -> bool:
    """Whether the scenario's traffic allows a decision with the defaults: every stage up to full holds, within its
    maximum (derived from the scenario's traffic, stage_maximum), the requests a fixed-size test with the stage's
    error rates would need (Fleiss' two-proportion size at the stage's share for shadow and A/B; the one-sample size
    against the baseline's rate x the drift margin for full), at the champion's rate or the floor rate, whichever is
    higher."""
    from shepherd.judge import Metric

    stages = _rollout_stages("shepherd", quality=bool(scenario.label_delay))
    for kind, weight, _, (stage, config) in stages:
        if kind == "watch":
            continue
        settings = _stage_settings(stage, config)
        metric = settings.metrics[Metric.ERROR_RATE]
        alpha = metric.alpha / len(settings.metrics)
        p0 = max(scenario.rate, metric.floor)
        available = scenario.rpm * (stage_maximum(scenario, stage, config) - 1 - LAG_MINUTES)
        if kind == "full":
            z_a = stats.norm.isf(alpha / 2)
            z_b = stats.norm.isf(metric.beta)
            base = p0 * (1 + metric.drift_margin)
            alt = (1 + metric.delta) * base / (1 - base + (1 + metric.delta) * base)
            need = (z_a * math.sqrt(base * (1 - base)) + z_b * math.sqrt(alt * (1 - alt))) ** 2 / (alt - base) ** 2
        else:
            share = 0.5 if kind == "shadow" else weight / 100.0
            if kind == "shadow":
                available *= 2
            z_a, z_b = stats.norm.isf(alpha), stats.norm.isf(metric.beta)
            p1 = (1 + metric.delta) * p0
            pooled = (1 - share) * p0 + share * p1
            need = (
                z_a * math.sqrt(pooled * (1 - pooled) * (1 / share + 1 / (1 - share)))
                + z_b * math.sqrt(p0 * (1 - p0) / (1 - share) + p1 * (1 - p1) / share)
            ) ** 2 / (p1 - p0) ** 2
        if available < need:
            return False
    return True


def _stage_settings(stage: dict[str, Any], judge_config: dict[str, Any]) -> Any:
    from shepherd.rollout.judging import JudgeRequest

    request = JudgeRequest.parse(
        {
            "run": "bench",
            "endpoint": "bench",
            "package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/bench/2",
            "champion_variant": "v1",
            "candidate_variant": "v2",
            "stage": stage,
            "stage_index": 0,
            "stage_started": 1.0,
            "judge": judge_config,
        }
    )
    return request.settings()


def _decision_minute(bin_index: int) -> int:
    """The judge call (minutes into the stage) that first sees bin `bin_index` complete."""
    return JUDGE_INTERVAL * math.ceil((bin_index + 1 + LAG_MINUTES) / JUDGE_INTERVAL)


PREFIX_MINUTES = 30


def stage_verdict(result: Any) -> tuple[str, int | None]:
    """A stage's verdict and the bin that decided it: the first metric's ROLLBACK, or the last metric's PROMOTE
    when every metric promoted; None when undecided (the verdict is then the stage's at_max, or CONTINUE)."""
    rolled = [item.decided_minute for item in result.metrics if str(item.verdict) == "ROLLBACK"]
    if rolled and all(minute is not None for minute in rolled):
        return "ROLLBACK", min(rolled)
    promoted = [item.decided_minute for item in result.metrics if str(item.verdict) == "PROMOTE"]
    if len(promoted) == len(result.metrics) and all(minute is not None for minute in promoted):
        return "PROMOTE", max(promoted)
    return str(result.verdict), None


def _labels(
    predictions: Ints, wrong_rate: float, scenario: RolloutScenario, rng: np.random.Generator
) -> tuple[Ints, Ints]:
    """Labelled predictions and wrong ones per minute of the label's arrival (production files them so), of the
    given predictions per minute; labels arriving after the stage's last bin are not the stage's."""
    minutes = len(predictions)
    made = np.repeat(np.arange(minutes), rng.binomial(predictions, scenario.labelled))
    arrival = made + np.floor(rng.random(made.size) + rng.exponential(scenario.label_delay, made.size)).astype(int)
    inside = arrival < minutes
    wrong = rng.random(made.size) < wrong_rate
    return (
        np.bincount(arrival[inside], minlength=minutes),
        np.bincount(arrival[inside & wrong], minlength=minutes),
    )


def _shadow_pairs(
    pairs: Ints, wrong: tuple[float, float], scenario: RolloutScenario, rng: np.random.Generator
) -> tuple[Ints, Ints, Ints]:
    """Labelled shadow pairs per arrival minute: (pairs, candidate-only wrong, champion-only wrong); the variants'
    mistakes independent given their rates."""
    minutes = len(pairs)
    made = np.repeat(np.arange(minutes), rng.binomial(pairs, scenario.labelled))
    arrival = made + np.floor(rng.random(made.size) + rng.exponential(scenario.label_delay, made.size)).astype(int)
    inside = arrival < minutes
    candidate = rng.random(made.size) < wrong[0]
    champion = rng.random(made.size) < wrong[1]
    return (
        np.bincount(arrival[inside], minlength=minutes),
        np.bincount(arrival[inside & candidate & ~champion], minlength=minutes),
        np.bincount(arrival[inside & champion & ~candidate], minlength=minutes),
    )


def _ground_truth(
    scenario: RolloutScenario, kind: str, counts: tuple[Ints, Ints, Ints, Ints], rng: np.random.Generator
) -> tuple[dict[str, tuple[Ints, Ints]], tuple[Ints, Ints, Ints] | None]:
    """A stage's labels per arrival minute of its error-free predictions (candidate's, champion's), and in shadow
    its labelled pairs (none where quality is not judged); ``counts``: the candidate's requests and errors, then the
    champion's, per minute."""
    if not scenario.label_delay:
        return {}, None
    cand_n, cand_bad, champ_n, champ_bad = counts
    wrong = (min(1.0, scenario.wrong * scenario.wrong_ratio), scenario.wrong)
    feedback: dict[str, tuple[Ints, Ints]] = {}
    if kind == "shadow":
        pairs = _shadow_pairs(cand_n - np.maximum(cand_bad, champ_bad), wrong, scenario, rng)
        feedback["champion"] = _labels(champ_n - champ_bad, wrong[1], scenario, rng)
        return feedback, pairs
    feedback["candidate"] = _labels(cand_n - cand_bad, wrong[0], scenario, rng)
    if kind not in ("full", "watch"):
        feedback["champion"] = _labels(champ_n - champ_bad, wrong[1], scenario, rng)
    return feedback, None


@dataclass
class RolloutBaseline:
    """The champion's counts full and the watch are judged against: requests and errors, labelled and wrong."""

    requests: int
    errors: int
    labelled: int = 0
    wrong: int = 0


def _judge_stage(
    scenario: RolloutScenario,
    kind: str,
    *,
    weight: float,
    max_minutes: int,
    stage_settings: Any,
    baseline: RolloutBaseline,
    drift: float,
    loads: tuple[float, float],
    rng: np.random.Generator,
    competitor: str | None = None,
    derived: bool = False,
) -> tuple[str, int, int]:
    """One stage of one rollout, judged as production would: (verdict, minute of the deciding call, users' requests
    until then). Adds the champion's counts until then to the baseline (shadow and A/B). ``derived``: max_minutes
    is the cap of a maximum derived from the traffic at each call, as rollout.judging.judge_stage derives it."""
    from shepherd.judge import Baseline, FeedbackBin, Metric, PairedBin, StageObservations, VariantBin, judge
    from shepherd.judge.duration import with_derived_max

    seen = max_minutes - 1 - LAG_MINUTES  # bins the stage's last call sees: 0 .. max - 3
    traffic = rng.poisson(scenario.rpm, seen + LAG_MINUTES + 1)
    p = min(1.0, scenario.rate * drift * loads[0])
    q = min(1.0, scenario.rate * drift * loads[1] * scenario.ratio)
    cand_n = traffic if kind == "shadow" else rng.binomial(traffic, weight / 100.0)
    champ_n = traffic if kind == "shadow" else traffic - cand_n
    cand_bad, champ_bad = rng.binomial(cand_n, q), rng.binomial(champ_n, p)
    against_baseline = kind in ("full", "watch")
    feedback, pairs = _ground_truth(scenario, kind, (cand_n, cand_bad, champ_n, champ_bad), rng)

    def bins(n: Ints, bad: Ints, upto: int) -> tuple[VariantBin, ...]:
        return tuple(VariantBin(m, int(n[m]), int(bad[m])) for m in range(upto + 1) if n[m])

    def labelled(role: str, upto: int) -> tuple[FeedbackBin, ...]:
        if role not in feedback or (kind == "shadow" and role == "champion"):
            return ()
        n, bad = feedback[role]
        return tuple(FeedbackBin(m, int(n[m]), int(bad[m])) for m in range(upto + 1) if n[m])

    def paired(upto: int) -> tuple[PairedBin, ...]:
        if pairs is None:
            return ()
        n, ours, theirs = pairs
        return tuple(PairedBin(m, int(n[m]), int(ours[m]), int(theirs[m])) for m in range(upto + 1) if n[m])

    def observed(upto: int, elapsed: int = max_minutes) -> StageObservations:
        counts = {Metric.ERROR_RATE: Baseline(baseline.requests, baseline.errors)}
        if scenario.label_delay:
            counts[Metric.QUALITY] = Baseline(baseline.labelled, baseline.wrong)
        return StageObservations(
            minutes_elapsed=elapsed,
            champion=() if against_baseline else bins(champ_n, champ_bad, upto),
            candidate=bins(cand_n, cand_bad, upto),
            champion_feedback=labelled("champion", upto),
            candidate_feedback=labelled("candidate", upto),
            shadow_quality=paired(upto),
            baseline=counts if against_baseline else {},
        )

    configured = stage_settings
    if derived:  # the cap until the traffic is trusted, and alpha less truncation's share with at_max ROLLBACK
        stage_settings = with_derived_max(observed(-1, 0), configured, cap=max_minutes)
    if competitor == "msprt" and not against_baseline:
        verdict, decided = _msprt_stage(cand_n, champ_n, cand_bad, champ_bad, seen=seen, stage_settings=stage_settings)
    elif competitor == "group_sequential" and not against_baseline:
        verdict, decided = _group_sequential_stage(
            cand_n,
            champ_n,
            cand_bad,
            champ_bad,
            seen=seen,
            stage_settings=stage_settings,
            scenario=scenario,
            weight=weight,
            max_minutes=max_minutes,
        )
    else:
        # A decision in the first PREFIX_MINUTES bins is the one all the bins give (no look depends on later bins):
        # judging that prefix first only saves the simulation time.
        verdict, decided = stage_verdict(judge(observed(min(PREFIX_MINUTES, seen)), stage_settings))
        if decided is None and seen > PREFIX_MINUTES:
            verdict, decided = stage_verdict(judge(observed(seen), stage_settings))
    if derived:

        def limit(call: int) -> int:
            settings = with_derived_max(observed(call - 1 - LAG_MINUTES, call), configured, cap=max_minutes)
            return min(values.max_minutes for values in settings.metrics.values())

        reached, at = derived_end(decided, limit, max_minutes)
        if not reached:
            verdict, decided = str(next(iter(stage_settings.metrics.values())).at_max), None
    else:
        at = max_minutes if decided is None else min(_decision_minute(decided), max_minutes)
    if not against_baseline:  # the champion's counts join the baseline full and the watch are judged against
        baseline.requests += int(champ_n[:at].sum())
        baseline.errors += int(champ_bad[:at].sum())
        if "champion" in feedback:  # the labels that arrived while the stage ran
            baseline.labelled += int(feedback["champion"][0][: at - LAG_MINUTES].sum())
            baseline.wrong += int(feedback["champion"][1][: at - LAG_MINUTES].sum())
    if kind == "watch" and verdict == "INCONCLUSIVE":
        verdict = "PROMOTE"  # judging.judge_stage: an undecided watch lets the promotion stand
    return verdict, at, int(traffic[:at].sum())


def derived_end(decided: int | None, limit: Callable[[int], int], cap: int) -> tuple[bool, int]:
    """Whether a stage with a derived maximum reaches the decision its first crossing (bin ``decided``, None: none
    within the cap) gives, and the call it ends at: each call sees the bins complete by then and judges those
    before that call's maximum ``limit(call)`` (the engine drops later ones); a call at or past it ends the stage."""
    for call in range(JUDGE_INTERVAL, cap + 1, JUDGE_INTERVAL):
        bound = limit(call)
        if decided is not None and call >= _decision_minute(decided) and decided < bound:
            return True, call
        if call >= bound:
            return False, call
    return False, cap


THETA_WORSE = np.geomspace(1.25, 8.0, 16)  # msprt: the mixture's odds ratios for ROLLBACK (uniform in log)
THETA_FINE = np.geomspace(0.25, 1.0, 16)  # and for PROMOTE (no worse than the champion)


def _msprt_stage(
    cand_n: Ints, champ_n: Ints, cand_bad: Ints, champ_bad: Ints, *, seen: int, stage_settings: Any
) -> tuple[str, int | None]:
    """A mixture SPRT (Johari, Pekelis, Walsh; Lindon et al.) on the conditional stream of bad events: in a bin with
    candidate share w, a bad event is the candidate's with probability w theta / (w theta + 1 - w) (theta the odds
    ratio), whatever the shared rate. ROLLBACK when the mixture over theta in [1.25, 8] against theta = 1 reaches
    1/alpha; PROMOTE when the mixture over theta in [1/4, 1] against theta = 1 + delta reaches 1/beta (and
    min_samples): both nonnegative martingales under their null, so Ville's inequality holds them at every bin.
    Binomial per bin (the hypergeometric's large-bin limit). Same budget per stage as `shepherd`."""
    from shepherd.judge import Metric

    settings = stage_settings.metrics[Metric.ERROR_RATE]
    c, b = cand_n[: seen + 1].astype(float), champ_n[: seen + 1].astype(float)
    both = (c > 0) & (b > 0)
    w = np.where(both, c / np.maximum(c + b, 1.0), 0.5)
    k = np.where(both, cand_bad[: seen + 1], 0).astype(float)
    n = k + np.where(both, champ_bad[: seen + 1], 0)

    def log_lik(theta: NDArray[np.float64]) -> NDArray[np.float64]:  # (thetas, bins), cumulative
        return np.cumsum(k * np.log(theta)[:, None] - n * np.log(w * theta[:, None] + 1.0 - w), axis=1)

    def log_mean_exp(values: NDArray[np.float64]) -> NDArray[np.float64]:
        top = values.max(axis=0)
        return top + np.log(np.exp(values - top).mean(axis=0))

    worse = log_mean_exp(log_lik(THETA_WORSE)) - log_lik(np.array([1.0]))[0]
    fine = log_mean_exp(log_lik(THETA_FINE)) - log_lik(np.array([1.0 + settings.delta]))[0]
    may_promote = (np.cumsum(c) >= settings.min_samples) & (np.cumsum(b) >= settings.min_samples)
    rollback = worse >= -math.log(settings.alpha)
    promote = may_promote & (fine >= -math.log(settings.beta))
    hit = np.flatnonzero(rollback | promote)
    if not hit.size:
        return str(settings.at_max), None
    first = int(hit[0])
    return ("ROLLBACK" if rollback[first] else "PROMOTE"), first


# ---------------------------------------------------------------------------------------------------------------
# A group-sequential competitor (issue 18): an error-spending design with alpha and beta spending (Lan & DeMets,
# Biometrika 1983; beta spending: Pampallona, Tsiatis & Kim, Statistics in Medicine 2001; Jennison & Turnbull, Group
# Sequential Methods with Applications to Clinical Trials, 2000, ch. 7), Pocock-type spending functions for both,
# looks at the product's 5-minute judge calls only, a binding futility boundary (PROMOTE ends the stage, so the
# ROLLBACK boundary is computed on the paths that did not stop for futility), maximum information planned for the
# traffic the scenario names. Its crossing probabilities are computed exactly on the conditional law of the
# candidate's bad events (hypergeometric under H0, Fisher's noncentral under H1, per bin: shepherd.judge.sprt.
# bin_laws) rather than by the normal recursion (Armitage, McPherson & Rowe 1969; J&T ch. 19): J&T ch. 12's exact
# computation for binary data, which at a 10 % share and a doubling avoids the normal approximation's error.
# ---------------------------------------------------------------------------------------------------------------


def pocock_spending(level: float, t: float) -> float:
    """Lan-DeMets' Pocock-type spending function: level x ln(1 + (e - 1) t), all of it at t = 1."""
    return level * math.log1p((math.e - 1.0) * min(max(t, 0.0), 1.0))


@dataclass(frozen=True)
class GroupSequentialPath:
    side: int  # +1 ROLLBACK, -1 PROMOTE, 0 undecided
    look: int  # the deciding look (index), or the last one
    alpha_spent: float  # P0(ROLLBACK), exact given the grouping (observed=False: over every look)
    beta_spent: float  # P1(PROMOTE)


# A look: the bins it adds, each (bad events, the candidate's, candidate requests, champion requests), and whether
# PROMOTE is allowed there (min_samples reached on both variants, as the product requires).
Look = tuple[list[tuple[int, int, int, int]], bool]


def _add(mass: list[float], pmf: list[float]) -> list[float]:
    return [float(item) for item in np.convolve(mass, pmf)] if len(mass) * len(pmf) > 512 else _small_add(mass, pmf)


def _small_add(mass: list[float], pmf: list[float]) -> list[float]:
    out = [0.0] * (len(mass) + len(pmf) - 1)
    for i, x in enumerate(mass):
        for j, y in enumerate(pmf):
            out[i + j] += x * y
    return out


def group_sequential_path(
    looks: list[Look], *, alpha: float, beta: float, ratio: float, n_max: float, observed: bool = True
) -> GroupSequentialPath:
    """The design run over a stage's looks. Information is the bad events so far, N (the candidate share is fixed
    within a stage); at information fraction t = N / n_max a look may have spent pocock_spending(alpha, t) of
    P0(ROLLBACK) and pocock_spending(beta, t) of P1(PROMOTE). At t >= 1 the look is final: what is not rolled back
    promotes (the boundaries meet, as the design plans them to). A look without new information is skipped."""
    mass0, mass1, low = [1.0], [1.0], 0
    spent_a = spent_b = 0.0
    count = total = 0
    look = -1
    for look, (bins, may_promote) in enumerate(looks):
        added = False
        for n, k, c, b in bins:
            if n <= 0 or c <= 0 or b <= 0:
                continue
            k_min, pmf0, pmf1, _ = bin_laws(n, c, b, ratio, paired=False)
            mass0, mass1 = _add(mass0, pmf0), _add(mass1, pmf1)
            low, count, total, added = low + k_min, count + k, total + n, True
        if not added:
            continue
        t = total / n_max
        room_a = pocock_spending(alpha, t) - spent_a + 1e-12 * alpha
        room_b = pocock_spending(beta, t) - spent_b + 1e-12 * beta
        # The last planned look (t >= 1) promotes whatever it does not roll back: no beta room to keep.
        top, start, tail, head = sprt._cut(mass0, mass1, room_a, math.inf if t >= 1.0 else room_b, may_promote)
        spent_a, spent_b = spent_a + tail, spent_b + head
        if observed and count >= low + top:
            return GroupSequentialPath(1, look, spent_a, spent_b)
        if observed and count < low + start:
            return GroupSequentialPath(-1, look, spent_a, spent_b)
        mass0, mass1, low = mass0[start:top], mass1[start:top], low + start
        if not mass0:
            break
    return GroupSequentialPath(0, look, spent_a, spent_b)


def planned_looks(rpm: float, rate: float, weight: float, max_minutes: int) -> list[Look]:
    """The looks a stage is planned with: every JUDGE_INTERVAL minutes on the bins complete LAG_MINUTES earlier,
    the expected requests and bad events of a candidate as good as the champion (shadow: both see every request)."""
    share = 0.5 if weight >= 100 else weight / 100.0
    looks: list[Look] = []
    seen = 0
    for call in range(JUDGE_INTERVAL, max_minutes + 1, JUDGE_INTERVAL):
        upto = call - LAG_MINUTES  # bins 0 .. call - 3
        minutes = upto - seen
        seen = upto
        if minutes <= 0:
            continue
        requests = rpm * minutes * (2.0 if weight >= 100 else 1.0)
        bad = round(requests * rate)
        c, b = round(requests * share), round(requests * (1 - share))
        looks.append(([(bad, round(bad * share), c, b)], True))
    return looks


@lru_cache(maxsize=256)
def group_sequential_n_max(
    alpha: float, beta: float, ratio: float, *, rpm: float, rate: float, weight: float, max_minutes: int
) -> float:
    """The design's maximum information (bad events): the least whose planned looks promote a candidate worse by
    the ratio with probability <= beta once the final look forces the decision (binary search; exact DP)."""
    planned = planned_looks(rpm, rate, weight, max_minutes * 20)  # plan past the stage: the maximum is information

    def miss(n_max: float) -> float:
        path = group_sequential_path(planned, alpha=alpha, beta=beta, ratio=ratio, n_max=n_max, observed=False)
        return path.beta_spent

    low, high = 1.0, 16.0
    while miss(high) > beta and high < 1 << 16:
        low, high = high, high * 2
    while high - low > 1.0:
        middle = math.floor((low + high) / 2)
        low, high = (middle, high) if miss(middle) > beta else (low, middle)
    return high


def _group_sequential_stage(
    cand_n: Ints,
    champ_n: Ints,
    cand_bad: Ints,
    champ_bad: Ints,
    *,
    seen: int,
    stage_settings: Any,
    scenario: RolloutScenario,
    weight: float,
    max_minutes: int,
) -> tuple[str, int | None]:
    """One stage judged by the group-sequential design: (verdict, the last bin of the deciding look)."""
    from shepherd.judge import Metric

    settings = stage_settings.metrics[Metric.ERROR_RATE]
    ratio = 1.0 + settings.delta
    n_max = group_sequential_n_max(
        settings.alpha,
        settings.beta,
        ratio,
        rpm=scenario.rpm,
        rate=max(scenario.rate, 0.01),  # planned at 1 % where the scenario's models never fail
        weight=weight,
        max_minutes=max_minutes,
    )
    c_total, b_total = np.cumsum(cand_n), np.cumsum(champ_n)
    looks: list[Look] = []
    ends: list[int] = []
    first = 0
    for call in range(JUDGE_INTERVAL, max_minutes + 1, JUDGE_INTERVAL):
        last = min(call - 1 - LAG_MINUTES, seen)
        if last < first:
            continue
        bins = [
            (int(cand_bad[m] + champ_bad[m]), int(cand_bad[m]), int(cand_n[m]), int(champ_n[m]))
            for m in range(first, last + 1)
        ]
        may_promote = bool(c_total[last] >= settings.min_samples and b_total[last] >= settings.min_samples)
        looks.append((bins, may_promote))
        ends.append(last)
        first = last + 1
    path = group_sequential_path(looks, alpha=settings.alpha, beta=settings.beta, ratio=ratio, n_max=n_max)
    if not path.side:
        return str(settings.at_max), None
    return ("ROLLBACK" if path.side == 1 else "PROMOTE"), ends[path.look]


def simulate_rollout(
    scenario: RolloutScenario, strategy: str, replications: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Replications of one whole rollout; per replication its outcome, and the requests and minutes until the
    decision to promote to full (or the rollback, or the end undecided)."""
    stages = _rollout_stages(strategy, quality=bool(scenario.label_delay))
    settings = [_stage_settings(stage, config) for _, _, _, (stage, config) in stages]
    loads = load_factors(scenario, stages)
    drift = scenario.drift or (1.0,) * (len(stages) + 1)
    full_at = next(i for i, (kind, *_rest) in enumerate(stages) if kind == "full")
    outcome = np.zeros(replications, dtype=np.int8)  # +1 rolled back, -1 promoted and kept, 0 undecided
    reached_full = np.zeros(replications, dtype=bool)
    rolled_back_at = np.full(replications, -1)
    requests = np.zeros(replications)
    minutes = np.zeros(replications)
    for rep in range(replications):
        before = rng.poisson(scenario.rpm, BASELINE_MINUTES)
        errors = rng.binomial(before, scenario.rate * drift[0])
        baseline = RolloutBaseline(int(before.sum()), int(errors.sum()))
        if scenario.label_delay:  # the hour before the rollout: its labels have had the rollout's time to arrive
            baseline.labelled = int(rng.binomial(before - errors, scenario.labelled).sum())
            baseline.wrong = int(rng.binomial(baseline.labelled, scenario.wrong))
        for index, ((kind, weight, max_minutes, (stage, _)), stage_settings) in enumerate(
            zip(stages, settings, strict=True)
        ):
            verdict, at, served = _judge_stage(
                scenario,
                kind,
                weight=weight,
                max_minutes=max_minutes,
                stage_settings=stage_settings,
                baseline=baseline,
                drift=drift[index + 1],
                loads=loads[index],
                rng=rng,
                competitor=strategy if strategy in COMPETITORS else None,
                derived=bool(stage.get("max_from_traffic")),
            )
            if index < full_at:  # until the decision to promote to full (the watch is a fixed-length guard)
                requests[rep] += served
                minutes[rep] += at
            if verdict == "ROLLBACK":
                outcome[rep], rolled_back_at[rep] = 1, index
                break
            if verdict == "INCONCLUSIVE":
                break
            reached_full[rep] |= index == full_at - 1
        else:
            outcome[rep] = -1
    return {
        "outcome": outcome,
        "reached_full": reached_full,
        "rolled_back_at": rolled_back_at,
        "requests": requests,
        "minutes": minutes,
        "stages": [kind if kind != "ab" else f"ab{weight:g}" for kind, weight, *_ in stages],
    }


def summarise_rollout(scenario: RolloutScenario, run_: dict[str, Any]) -> dict[str, Any]:
    outcome, reached = run_["outcome"], run_["reached_full"]
    good = scenario.candidate_is == "good"
    rolled = outcome == 1
    # Requests to the decision: to promote to full for a good candidate that got there, to the rollback or the miss
    # for a bad one; undecided rollouts count their whole time.
    requests, minutes = run_["requests"], run_["minutes"]
    decided = reached if good else (reached | rolled)
    pick = decided if decided.any() else np.ones_like(decided)
    by_stage = {name: round(float(np.mean(run_["rolled_back_at"] == i)), 4) for i, name in enumerate(run_["stages"])}
    return {
        "false_rollback": round(float(rolled.mean()), 4) if good else None,
        "miss": None if good else round(float(reached.mean()), 4),
        "undecided": round(float(((outcome == 0) & ~reached).mean()), 4),
        "reached_full": round(float(reached.mean()), 4),
        "mean_requests": round(float(requests[pick].mean()), 1),
        "p90_requests": round(float(np.quantile(requests[pick], 0.9)), 1),
        "mean_minutes": round(float(minutes[pick].mean()), 1),
        "rolled_back_by_stage": by_stage,
    }


def run_rollouts(replications: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 18)
    out: dict[str, Any] = {}
    for scenario in ROLLOUT_SCENARIOS:
        strategies = {
            name: summarise_rollout(scenario, simulate_rollout(scenario, name, replications, rng))
            for name in rollout_strategies(scenario)
        }
        out[scenario.name] = {
            "candidate_is": scenario.candidate_is,
            "what": scenario.what,
            "replications": replications,
            "decidable": decidable(scenario),
            "strategies": strategies,
        }
    return out


def _cell(value: float | None, limit: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}"
    return f"**{text}**" if limit is not None and value > limit else text


def monte_carlo_margin(p: float, n: int) -> float:
    """Three standard errors of a proportion p estimated from n replications."""
    return 3 * math.sqrt(p * (1 - p) / n)


def markdown(report: dict[str, object], seconds: float) -> str:
    scenarios = report["scenarios"]
    strategies = report["strategies"]
    assert isinstance(scenarios, dict)
    assert isinstance(strategies, dict)
    n = int(report["replications"])  # type: ignore[call-overload]
    lines = [
        "# Rollout judges compared (issue 6)",
        "",
        f"{n:,} replications per scenario, seed {report['seed']}, {seconds:.0f} s; written by `bench/judge.py`. "
        f"alpha = {ALPHA}, beta = {BETA}. Figures above alpha (false rollback) or beta (miss) by more than three "
        f"Monte Carlo standard errors are **bold**. Requests are production requests from the stage's start to the "
        "decision (both variants in A/B; in shadow each request counts once, answered by both). Undecided runs "
        "count to the stage's end.",
        "",
        "## Scenarios",
        "",
        "| scenario | candidate | what | stage max | bound (requests) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, scenario in scenarios.items():
        bound = scenario["bound_requests"]
        lines.append(
            f"| `{name}` | {scenario['candidate_is']} | {scenario['description']} | {scenario['max_minutes']} min | "
            f"{'null' if bound is None else f'{bound:,.0f}'} |"
        )
    lines += ["", "## Results", ""]
    for name, scenario in scenarios.items():
        bound = scenario["bound_requests"]
        lines += [
            f"### `{name}` ({scenario['candidate_is']})",
            "",
            "| strategy | false rollback | miss | undecided | mean requests | x bound | p90 requests | mean minutes "
            "| bad requests served |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for strategy, by_scenario in strategies.items():
            row = by_scenario[name]
            ratio = "-" if bound is None else f"{row['mean_requests'] / bound:.2f}"
            alpha_limit = ALPHA + monte_carlo_margin(ALPHA, n)
            beta_limit = BETA + monte_carlo_margin(BETA, n)
            lines.append(
                f"| {strategy} | {_cell(row['false_rollback'], alpha_limit)} | {_cell(row['miss'], beta_limit)} | "
                f"{row['undecided']:.3f} | {row['mean_requests']:,.0f} | {ratio} | {row['p90_requests']:,.0f} | "
                f"{row['mean_minutes']:.1f} | {row['bad_requests_served']:.1f} |"
            )
        lines.append("")
    lines += rollout_markdown(report)
    lines += targets(report)
    lines.append(METHOD_NOTES)
    return "\n".join(lines)


def holds_limits(row: dict[str, Any], n: int) -> bool:
    """Within alpha (false rollback) and beta (miss) up to three Monte Carlo standard errors."""
    alpha_ok = row["false_rollback"] is None or row["false_rollback"] <= ALPHA + monte_carlo_margin(ALPHA, n)
    return alpha_ok and (row["miss"] is None or row["miss"] <= BETA + monte_carlo_margin(BETA, n))


def rollout_markdown(report: dict[str, object]) -> list[str]:
    """Whole rollouts at the product's cadence (issue 18)."""
    rollouts = report["rollouts"]
    assert isinstance(rollouts, dict)
    lines = [
        "## Whole rollouts at the product's cadence (issue 18)",
        "",
        "shadow -> A/B 10/25/50 -> full -> watch with the default config (shadow, A/B and full end at a maximum "
        "derived from their traffic at each call, `shepherd.judge.duration`, capped at 1,440 minutes; the watch "
        "120 minutes; `shepherd_stagewise` keeps the old fixed 120/120/30 minutes), "
        f"judged every {JUDGE_INTERVAL} minutes on the CloudWatch bins complete {LAG_MINUTES * 60} s earlier, shadow "
        "judged unpaired from the variants' counts, full and the watch against the champion's counts since an hour "
        "before the rollout; an undecided watch lets the promotion stand, as in production. `shepherd`: the config's "
        "alpha = 0.05 and beta = 0.2 are the rollout's, split across the stages by `shepherd.rollout.budget`; "
        "`shepherd_stagewise`: every stage spends alpha and beta whole (the judge before issue 18). `msprt`: the "
        "same stages and budget as `shepherd`, shadow and A/B judged by a mixture SPRT on the conditional stream of "
        "bad events (odds ratios 1.25-8 against 1 for ROLLBACK, 1/4-1 against 1 + delta for PROMOTE, Ville's "
        "boundaries), full and the watch as `shepherd`. `group_sequential`: the same stages and budget, shadow and "
        "A/B judged by an error-spending group-sequential design (Lan-DeMets Pocock-type alpha and beta spending, "
        "binding futility, looks at the 5-minute calls only, maximum information planned for the scenario's "
        "traffic; crossing probabilities exact on the conditional law of the bad events), full and the watch as "
        "`shepherd`. The competitors judge error rates only, so they do not run where quality is judged. "
        "False rollback: any ROLLBACK of a good candidate, any stage; miss: a bad candidate reaches full; "
        "undecided: the rollout ends INCONCLUSIVE. Requests and minutes: users' requests (shadow mirrors them) from "
        "the rollout's start to the decision to promote to full (good candidates that reached it) or to roll back "
        "or miss (bad ones). Figures above alpha or beta by more than three Monte Carlo standard errors are **bold**. "
        "Decidable: every stage up to full holds, within its maximum, the requests a fixed-size test with that "
        "stage's error rates needs (`bench/judge.py`, `decidable`).",
        "",
    ]
    for name, item in rollouts.items():
        n = int(item["replications"])
        lines += [
            f"### `{name}` ({item['candidate_is']}; {'decidable' if item['decidable'] else 'not decidable'} "
            f"with the defaults; {n:,} rollouts)",
            "",
            item["what"],
            "",
            "| strategy | false rollback | miss | undecided | mean requests | p90 requests | mean minutes | "
            "rolled back in |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for strategy, row in item["strategies"].items():
            where = ", ".join(f"{stage} {share:.3f}" for stage, share in row["rolled_back_by_stage"].items() if share)
            lines.append(
                f"| {strategy} | {_cell(row['false_rollback'], ALPHA + monte_carlo_margin(ALPHA, n))} | "
                f"{_cell(row['miss'], BETA + monte_carlo_margin(BETA, n))} | {row['undecided']:.3f} | "
                f"{row['mean_requests']:,.0f} | {row['p90_requests']:,.0f} | {row['mean_minutes']:.1f} | "
                f"{where or '-'} |"
            )
        ours = item["strategies"]["shepherd"]
        if item["candidate_is"] == "good":
            ratios = [
                f"{ours['mean_requests'] / row['mean_requests']:.2f}x `{strategy}`"
                + ("" if holds_limits(row, n) else " (breaks a limit)")
                for strategy, row in item["strategies"].items()
                if strategy != "shepherd" and row["reached_full"] and row["mean_requests"]
            ]
            if ours["reached_full"] and ratios:
                lines += ["", f"Requests to promote to full: shepherd {', '.join(ratios)}."]
        lines.append("")
    return [*lines, *rollout_targets(rollouts)]


def rollout_targets(rollouts: dict[str, Any]) -> list[str]:
    """Issue 18's targets checked against this run."""
    lines = ["### Issue 18's targets in this run", "", "| target | result | met |", "| --- | --- | --- |"]
    broken, undecided = [], []
    for name, item in rollouts.items():
        n, row = int(item["replications"]), item["strategies"]["shepherd"]
        if not holds_limits(row, n):
            which = "false rollback" if item["candidate_is"] == "good" else "miss"
            broken.append(f"`{name}` {which} {row['false_rollback'] if which == 'false rollback' else row['miss']}")
        if item["decidable"] and row["undecided"] > 0.05 + monte_carlo_margin(0.05, n):
            undecided.append(f"`{name}` {row['undecided']:.3f}")
    lines.append(
        f"| `shepherd`: false rollback <= {ALPHA}, miss <= {BETA} in every scenario (3 Monte Carlo SE) | "
        f"{'; '.join(broken) or 'all within'} | {'no' if broken else 'yes'} |"
    )
    lines.append(
        "| `shepherd`: <= 5 % undecided where the traffic allows a decision (3 SE) | "
        f"{'; '.join(undecided) or 'all within'} | {'no' if undecided else 'yes'} |"
    )
    good = rollouts.get("good_200rpm")
    if good:
        ours, today = good["strategies"]["shepherd"], good["strategies"]["shepherd_stagewise"]
        ratio = ours["mean_requests"] / today["mean_requests"]
        lines.append(
            "| `good_200rpm`: requests to promote to full <= 0.4 x `shepherd_stagewise` | "
            f"{ours['mean_requests']:,.0f} / {today['mean_requests']:,.0f} = {ratio:.2f} | "
            f"{'yes' if ratio <= 0.4 else 'no'} |"
        )
    for competitor in COMPETITORS:
        cheaper, held_everywhere = [], True
        for name, item in rollouts.items():
            row = item["strategies"].get(competitor)
            if row is None:
                continue
            n = int(item["replications"])
            held_everywhere &= holds_limits(row, n)
            ours = item["strategies"]["shepherd"]
            # Within Monte Carlo error: three standard errors of a mean whose coefficient of variation is at most 1
            slack = 1 + 3 / math.sqrt(n)
            if (
                item["candidate_is"] == "good"
                and row["reached_full"]
                and ours["reached_full"]
                and ours["mean_requests"] > row["mean_requests"] * slack
            ):
                cheaper.append(f"`{name}` {ours['mean_requests'] / row['mean_requests']:.2f}x")
        lines.append(
            f"| `shepherd` needs no more requests than `{competitor}` "
            f"({'holds both limits' if held_everywhere else 'breaks a limit somewhere'}) | "
            f"{'shepherd needs more on ' + ', '.join(cheaper) if cheaper else 'never more'} | "
            f"{'no' if cheaper else 'yes'} |"
        )
    return [*lines, ""]


def why_fixed_horizon(report: dict[str, object]) -> list[str]:
    """The section on the fixed-horizon z-test: its sizing, the theoretical ratio, and what 60-s bins cost."""
    strategies, scenarios = report["strategies"], report["scenarios"]
    unbatched, fitted = report["unbatched_sprt"], report["fitted_to_bins"]
    assert isinstance(strategies, dict)
    assert isinstance(scenarios, dict)
    assert isinstance(unbatched, dict)
    assert isinstance(fitted, dict)
    size = float(report["fixed_horizon_size"])  # type: ignore[arg-type]
    fixed, ours = strategies["fixed_horizon_z"], strategies["shepherd"]
    z = stats.norm.isf(ALPHA) + stats.norm.isf(BETA)
    a, b = math.log((1 - BETA) / ALPHA), math.log(BETA / (1 - ALPHA))
    normal_h1 = 2 * ((1 - BETA) * a + BETA * b) / z**2
    normal_h0 = -2 * ((1 - ALPHA) * b + ALPHA * a) / z**2

    def per_error(kind: str) -> str:
        return (
            f"boundaries ({unbatched[f'{kind}_upper']:.3f}, {unbatched[f'{kind}_lower']:.3f}), exact error rates "
            f"{unbatched[f'{kind}_exact_alpha']:.4f} / {unbatched[f'{kind}_exact_beta']:.4f}: "
            f"{unbatched[f'{kind}_err_1_to_2_mean_requests']:,.0f} requests on `err_1_to_2` "
            f"({size / unbatched[f'{kind}_err_1_to_2_mean_requests']:.2f}x fewer than the fixed size), "
            f"{unbatched[f'{kind}_h0_mean_requests']:,.0f} on `h0` "
            f"({size / unbatched[f'{kind}_h0_mean_requests']:.2f}x)"
        )

    ratio_bad = fixed["err_1_to_2"]["mean_requests"] / ours["err_1_to_2"]["mean_requests"]
    ratio_good = fixed["h0"]["mean_requests"] / ours["h0"]["mean_requests"]
    reached = ratio_bad >= 1.5 and ratio_good >= 1.5
    calibrated = report["calibrated_in_bins"]
    grouping = report["exact_by_grouping"]
    timing = report["call_time"]
    assert isinstance(timing, dict)
    assert isinstance(calibrated, dict)
    assert isinstance(grouping, list)

    def versus_z(row_bad: dict[str, float], row_good: dict[str, float]) -> str:
        return (
            f"{row_bad['mean_requests']:,.0f} / {row_good['mean_requests']:,.0f} requests = "
            f"{fixed['err_1_to_2']['mean_requests'] / row_bad['mean_requests']:.2f}x / "
            f"{fixed['h0']['mean_requests'] / row_good['mean_requests']:.2f}x fewer than the z-test"
        )

    lines = [
        f"## Why 1.5x over a fixed-horizon test is {'reached' if reached else 'not reached'}",
        "",
        f"- **The baseline is sized correctly.** One-sided two-proportion z-test, alpha {ALPHA}, power {1 - BETA} "
        f"for 1 % -> 2 % at a 10 % share, unequal-allocation formula (Fleiss): {size:,.0f} requests. It decides at "
        f"the end of the minute in which it reaches them: mean {fixed['err_1_to_2']['mean_requests']:,.0f}. Realised "
        f"false rollback {fixed['h0']['false_rollback']:.3f}, miss {fixed['err_1_to_2']['miss']:.3f}: neither "
        "shortchanged nor oversized. (It is sized with the true 1 % baseline, which a real gate does not know; the "
        "judge does not need it.)",
        f"- **Theory.** For a normal mean, Wald's approximations give E[N] / n_fixed = {normal_h1:.3f} under H1 "
        f"({1 / normal_h1:.2f}x) and {normal_h0:.3f} under H0 ({1 / normal_h0:.2f}x) at alpha {ALPHA}, beta {BETA}: "
        f"the headroom over a fixed test is {1 / normal_h1:.2f}x under H1 at best, before overshoot and monitoring "
        "granularity.",
        "- **This problem, checked after every single error** (the finest monitoring there is; exact error rates from "
        "`shepherd.judge.sprt.exit_probabilities`, requests by simulation): Wald's "
        + per_error("wald")
        + "; calibrated "
        + per_error("calibrated")
        + f". The calibrated SPRT is the Wald-Wolfowitz optimum at these error rates, within "
        f"{unbatched['calibrated_err_1_to_2_mean_requests'] / scenarios['err_1_to_2']['bound_requests']:.2f}x of "
        "the Wald-Hoeffding bound: 1.5x is reachable only with at most "
        f"{size / 1.5 - unbatched['calibrated_err_1_to_2_mean_requests']:,.0f} requests to spare.",
        "- **Fixed boundaries in 60-s bins waste them** (the previous judge). CloudWatch delivers a bin a minute, "
        "about 2.2 errors each here; the calibrated boundaries checked at the end of each bin overshoot, leaving "
        f"the error rates below target (false rollback {calibrated['h0']['false_rollback']:.3f}, miss "
        f"{calibrated['err_1_to_2']['miss']:.3f}): "
        + versus_z(calibrated["err_1_to_2"], calibrated["h0"])
        + " — short of 1.5x on `err_1_to_2`.",
        "- **Error spending over the grouping that occurred recovers them** (the judge now, "
        "`shepherd.judge.sprt.grouped_sprt`). Given the realised per-bin counts the candidate's running error count "
        "has a known law under both hypotheses, so a dynamic programme gives the exact P0(ROLLBACK so far) and "
        "P1(PROMOTE so far); each look takes the most permissive boundaries whose extra error fits what the "
        "per-error calibrated SPRT has spent by the same number of errors (a function of the information only). "
        f"Measured: false rollback {ours['h0']['false_rollback']:.3f}, miss {ours['err_1_to_2']['miss']:.3f}, "
        + versus_z(ours["err_1_to_2"], ours["h0"])
        + f". What is left between it and the per-error SPRT "
        f"({ours['err_1_to_2']['mean_requests'] - unbatched['calibrated_err_1_to_2_mean_requests']:,.0f} requests on "
        "`err_1_to_2`, about a bin) is the price of 60-s looks: it decides at the end of the bin in which the SPRT "
        "would have, on integer boundaries.",
        f"- **Cost of a call** (wall time in this run, on a 2-core machine shared with other work). The judge "
        "recomputes the programme from the stage's start on every call: "
        f"{timing['dp_24h_ms']:.1f} ms for 1,440 bins at 200 rpm that never decide (one metric, the programme alone), "
        f"{timing['judge_6h_ms']:.1f} ms for `judge()` on 360 bins with errors and latency (building the series "
        f"included), {timing['first_call_ms']:.1f} ms for the first call of a process on 30 bins "
        "(boundaries.json read, spending curves computed and cached).",
        "- **Its error rates are exact for any grouping**, not tuned to this one: the programme's own figure, given "
        "the grouping, for groupings drawn from this simulator's traffic (mean, and range over 20 draws; a 10 % "
        "share, a doubling):",
        "",
        "  | grouping | stage | P(ROLLBACK \\| H0) | P(PROMOTE \\| H1) |",
        "  | --- | --- | --- | --- |",
    ]
    for row in grouping:
        lines.append(
            f"  | {row['grouping']} | {row['minutes']} bins | {row['alpha_mean']:.4f} ({row['alpha_min']:.4f}-"
            f"{row['alpha_max']:.4f}) | {row['beta_mean']:.4f} ({row['beta_min']:.4f}-{row['beta_max']:.4f}) |"
        )
    lines += [
        "",
        "  One error per look it is the calibrated SPRT itself. At 10 rpm the 24-h stage ends before the SPRT has "
        "spent everything (the rest are INCONCLUSIVE runs); at thousands of requests a minute the first look that may "
        "promote already holds more errors than the SPRT needs, the two boundaries meet and a single cut spends "
        "less than its allowance: those stages decide in a minute or two, with lower error rates than promised.",
    ]
    if "err_1_to_2" in fitted and "low_traffic" in fitted:
        fitted_bad, fitted_good = fitted["err_1_to_2"], fitted["h0"]
        lines.append(
            f"- **Fitting fixed boundaries to the bins would reach the ratio too, and break the guarantee.** "
            f"Boundaries {FITTED_TO_BINS} spend alpha and beta on this simulator's 200-rpm bins (false rollback "
            f"{fitted_good['false_rollback']:.3f}, miss {fitted_bad['miss']:.3f}, "
            + versus_z(fitted_bad, fitted_good)
            + "), but the overshoot they lean on depends on the traffic per bin: checked after every error their "
            f"exact error rates are {unbatched['fitted_exact_alpha']:.4f} / {unbatched['fitted_exact_beta']:.4f}, "
            f"and at 10 rpm (`low_traffic_h0`, `low_traffic`) they measure "
            f"{fitted['low_traffic_h0']['false_rollback']:.3f} / {fitted['low_traffic']['miss']:.3f}. Error "
            "spending gets the same requests while holding alpha and beta at every granularity."
        )
    return [*lines, ""]


def targets(report: dict[str, object]) -> list[str]:
    """Issue 6's targets checked against this run, with the numbers behind each miss."""
    scenarios = report["scenarios"]
    strategies = report["strategies"]
    unbatched = report["unbatched_sprt"]
    assert isinstance(scenarios, dict)
    assert isinstance(strategies, dict)
    assert isinstance(unbatched, dict)
    n = int(report["replications"])  # type: ignore[call-overload]
    alpha_limit, beta_limit = ALPHA + monte_carlo_margin(ALPHA, n), BETA + monte_carlo_margin(BETA, n)
    undecided_limit = 0.05 + monte_carlo_margin(0.05, n)
    judged = [name for name, item in scenarios.items() if item["candidate_is"] != "indifferent"]

    def broken(strategy: str) -> list[str]:
        found = []
        for name in judged:
            row = strategies[strategy][name]
            if row["false_rollback"] is not None and row["false_rollback"] > alpha_limit:
                found.append(f"`{name}` false rollback {row['false_rollback']:.3f}")
            if row["miss"] is not None and row["miss"] > beta_limit:
                found.append(f"`{name}` miss {row['miss']:.3f}")
        return found

    ours = strategies["shepherd"]
    lines = ["## Targets", "", "| target | result | met |", "| --- | --- | --- |"]
    shepherd_broken = broken("shepherd")
    lines.append(
        f"| `shepherd`: false rollback <= {ALPHA} and miss <= {BETA} in every good or bad scenario "
        f"(3 Monte Carlo SE: <= {alpha_limit:.3f} / {beta_limit:.3f}) | "
        f"{'; '.join(shepherd_broken) or 'all within'} | {'no' if shepherd_broken else 'yes'} |"
    )
    worst = max(judged, key=lambda name: ours[name]["undecided"])
    lines.append(
        f"| `shepherd`: <= 5 % undecided (3 SE: <= {undecided_limit:.3f}) | worst `{worst}` "
        f"{ours[worst]['undecided']:.3f} | {'yes' if ours[worst]['undecided'] <= undecided_limit else 'no'} |"
    )
    ratio = ours["err_1_to_2"]["mean_requests"] / scenarios["err_1_to_2"]["bound_requests"]
    lines.append(
        f"| `shepherd` on `err_1_to_2`: mean requests <= 1.3 x bound | {ours['err_1_to_2']['mean_requests']:,.0f} "
        f"= {ratio:.2f} x {scenarios['err_1_to_2']['bound_requests']:,.0f} | {'yes' if ratio <= 1.3 else 'no'} |"
    )
    for strategy in strategies:
        if strategy == "shepherd":
            continue
        found = broken(strategy)
        costs = {
            name: strategies[strategy][name]["mean_requests"] / ours[name]["mean_requests"]
            for name in ("h0", "err_1_to_2")
        }
        cost_text = ", ".join(f"{cost:.2f}x on `{name}`" for name, cost in costs.items())
        met = bool(found) or min(costs.values()) >= 1.5
        lines.append(
            f"| `{strategy}` breaks an error limit or needs >= 1.5x shepherd's requests | "
            f"{'; '.join(found[:3]) or 'no limit broken'}; requests {cost_text} | {'yes' if met else 'no'} |"
        )
    lines += ["", *why_fixed_horizon(report)]
    lines += [
        "## Where another target is out of reach, and why",
        "",
        f"- **`hard_failure` vs its bound ({scenarios['hard_failure']['bound_requests']:,.0f} requests).** "
        "CloudWatch delivers 60-s bins: at 200 requests per minute no judge can decide before the first bin, "
        f"so about 200 requests is the floor; shepherd decides at {ours['hard_failure']['mean_requests']:,.0f} "
        f"(mean {ours['hard_failure']['mean_minutes']:.1f} minutes).",
        f"- **`low_traffic` undecided ({ours['low_traffic']['undecided']:.3f}).** 10 requests per minute for "
        "24 h is 14,400 requests, 2.6 x the bound for the mean; the SPRT's tail (p90 "
        f"{ours['low_traffic']['p90_requests']:,.0f}) reaches past it in about 5 % of stages, which end "
        "INCONCLUSIVE (the champion keeps the traffic). A longer stage removes them.",
        "- **`latency_p99_plus_20` vs its bound.** The truth (2.49 x over the threshold) lies beyond the design "
        "alternative, so the bound is computed at the truth while the test is tuned for a doubling: it is safe but "
        "not tuned for that effect.",
        "- **`shadow`, `shadow_h0`: judged as production judges shadow errors**, by `shepherd.judge.judge` on each "
        "variant's CloudWatch counts, unpaired (a bad event is the candidate's with probability 1/2 under H0). The "
        "bound is for that information; half of the champion's errors being shared by the candidate is then no "
        "help (pairs from data capture would use it). Shepherd is "
        f"{ours['shadow_h0']['mean_requests'] / scenarios['shadow_h0']['bound_requests']:.2f}x its bound on "
        f"`shadow_h0` and {ours['shadow']['mean_requests'] / scenarios['shadow']['bound_requests']:.2f}x on "
        "`shadow`.",
        "",
    ]
    return lines


METHOD_NOTES_TEMPLATE = """## How each strategy is configured, and where that comes from

Every threshold gate watches the candidate's own bad-event rate (errors, or the share of requests
slower than t, which is what "per-minute p99 <= t" checks) against **1.5 x the champion's nominal
rate** (issue 6's example of a 1.5 % threshold on a true 1 %). The documented example thresholds are
absolute and belong to their example apps (Flagger's `request-success-rate` `thresholdRange.min: 99`,
i.e. 1 % errors; Argo Rollouts' `successCondition: result[0] >= 0.95`, i.e. 5 %): taken literally they
would fail every check at a 1 % baseline (Flagger) or never catch a doubling (Argo), so the threshold is
set as a careful user would; the structure (interval, limits, durations) follows the documentation.

{sources}
The candidate share is the scenario's (10 %, or all requests in shadow) for every strategy, so the
requests column compares like with like. In shadow the threshold gates watch the candidate's error
rate; nothing it answers is served, so "bad requests served" is 0 there.

## Bounds

`bound_requests` is the Wald-Hoeffding lower bound on the expected number of requests of any test with
error rates (alpha, beta) for the problem the judge faces (unknown champion rate), from the
conditioning argument: given a bad event, it came from the candidate with probability w under H0 and
2w/(1+w) under H1; a test that rolls back with probability >= 1 - beta at the true rate while rolling
back with probability <= alpha at H0 needs E[N] >= d(1 - beta, alpha) / KL(p_true || p0) bad events
(d the binary KL divergence), and the mirror for a good candidate; divided by the bad events per
request. In shadow the stream is both variants' bad events, unpaired as production judges them (1/2 under
H0, 2/3 under H1; p_b (1 + r) bad events per request). For a candidate
inside the indifference zone (`err_1_to_1_3`) no error rate is promised, so no bound: null.
"""


SOURCES = (
    (
        "`flagger`",
        "`interval: 1m`, `threshold: 5` (failed checks before rollback), 10 iterations; a check without data fails",
        "Flagger docs, Deployment Strategies and Metrics Analysis (fluxcd.io/flagger/usage/deployment-strategies, "
        "fluxcd.io/flagger/usage/metrics): `interval: 1m`, `threshold: 5`, `maxWeight: 50`, `stepWeight: 10`; "
        "A/B testing `iterations: 10`. Traffic held at the scenario's share",
    ),
    (
        "`argo_failure_limit_0`, `argo_failure_limit_1`",
        "`interval: 5m` on a 5-minute rate, 6 measurements (30 min); fails when failed measurements > `failureLimit`",
        "Argo Rollouts docs, Analysis & Progressive Delivery (argoproj/argo-rollouts docs/features/analysis.md): "
        "success-rate template with `interval: 5m`, `failureLimit: 3`; `failureLimit` defaults to 0",
    ),
    (
        "`kayenta`",
        "one judgement after 60 min (lifetime 1 h, interval 1 h): Mann-Whitney on the 60 per-minute rates, "
        "`confLevel = 0.98`, effect tolerance `fraction = 0.25`; a High metric fails the canary (score 0 < pass 95)",
        "spinnaker/kayenta `kayenta-judge/.../NetflixACAJudge.scala`: "
        "`new MannWhitneyClassifier(fraction = 0.25, confLevel = 0.98, mw)`",
    ),
    (
        "`sagemaker_guardrails`",
        "canary at the scenario's share, 600-s baking period, CloudWatch alarm on the candidate's error rate "
        "(60-s period, 1 of 1 datapoints); any alarm rolls back, otherwise all traffic shifts",
        "SageMaker developer guide, Use canary traffic shifting and Auto-Rollback Configuration and Monitoring "
        "(docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green-canary.html, "
        "deployment-guardrails-configuration.html)",
    ),
    (
        "`codedeploy_canary10_5min`",
        "`Canary10Percent5Minutes`: 10 % for 5 minutes with the same alarm, then all traffic",
        "CodeDeploy predefined deployment configurations; AWS::CodeDeploy::DeploymentConfig TimeBasedCanary "
        "(`CanaryPercentage`, `CanaryInterval`) in the CloudFormation reference",
    ),
    (
        "`fixed_horizon_z`",
        "one-sided two-proportion z-test at alpha, power 1 - beta for a doubling of the nominal 1 %, "
        "sample size fixed in advance",
        "textbook",
    ),
    (
        "`shepherd`",
        "`shepherd.judge` defaults: error-spending test on bad events conditioned on each bin's counts (in shadow the "
        "variants' CloudWatch counts, unpaired, through `shepherd.judge.judge` as production judges them), spending "
        "what the per-error calibrated SPRT spends by the same number of bad events; "
        "alpha 0.05, beta 0.2, delta 1.0, 100 samples per variant before a PROMOTE",
        "`layers/shepherd/shepherd/judge/README.md`",
    ),
)
METHOD_NOTES = METHOD_NOTES_TEMPLATE.format(
    sources="\n".join(
        ["| strategy | configuration | source |", "| --- | --- | --- |"]
        + [f"| {name} | {setup} | {source} |" for name, setup, source in SOURCES]
    )
)


def plot(report: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = report["scenarios"]
    strategies = report["strategies"]
    assert isinstance(scenarios, dict)
    assert isinstance(strategies, dict)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    markers = "osD^v<>P*X"
    for (name, by_scenario), marker in zip(strategies.items(), markers, strict=False):
        h0, bad = by_scenario["h0"], by_scenario["err_1_to_2"]
        axes[0].scatter(h0["false_rollback"], bad["miss"], marker=marker, s=80, label=name)
        axes[1].scatter(h0["mean_requests"], bad["mean_requests"], marker=marker, s=80, label=name)
    axes[0].axvline(ALPHA, color="grey", linestyle="--")
    axes[0].axhline(BETA, color="grey", linestyle="--")
    axes[0].set_xlabel("false rollback on h0 (alpha = 0.05 dashed)")
    axes[0].set_ylabel("miss on err_1_to_2 (beta = 0.2 dashed)")
    axes[0].set_xlim(-0.02, 1.0)
    axes[0].set_ylim(-0.02, 1.0)
    axes[0].set_title("Error rates (good: bottom left of the dashes)")
    bound_h0 = scenarios["h0"]["bound_requests"]
    bound_bad = scenarios["err_1_to_2"]["bound_requests"]
    axes[1].scatter([bound_h0], [bound_bad], marker="*", s=250, color="black", label="Wald-Hoeffding bound")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("mean requests to a decision, h0")
    axes[1].set_ylabel("mean requests to a decision, err_1_to_2")
    axes[1].set_title("Cost (requests, both variants)")
    axes[1].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"Rollout judges, 10 % candidate share, 200 requests/min ({report['replications']:,} runs)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 replications per scenario (< 2 minutes)")
    parser.add_argument("--replications", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument(
        "--rollout-replications",
        type=int,
        default=None,
        help="whole rollouts per scenario and strategy (default 200 with --quick, else --replications)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where judge.{json,md,png} go (bench/results/)")
    args = parser.parse_args()
    replications = args.replications or (2_000 if args.quick else 10_000)
    rollout_replications = args.rollout_replications or (200 if args.quick else replications)
    started = time.perf_counter()
    report = run(replications, args.seed, rollout_replications)
    seconds = time.perf_counter() - started
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge.json").write_text(json.dumps(schema(report), indent=2) + "\n")
    (out / "judge.md").write_text(markdown(report, seconds) + "\n")
    plot(report, out / "judge.png")
    strategies = report["strategies"]
    assert isinstance(strategies, dict)
    print(f"{replications:,} replications per scenario in {seconds:.1f} s; wrote {out}/judge.{{json,md,png}}")
    rollouts = report["rollouts"]
    assert isinstance(rollouts, dict)
    for name, item in rollouts.items():
        for strategy, row in item["strategies"].items():
            print(
                f"rollout {name:20s} {strategy:20s} false rollback {row['false_rollback']}  miss {row['miss']}  "
                f"undecided {row['undecided']}  requests {row['mean_requests']:,.0f}  minutes {row['mean_minutes']}"
            )
    for name, by_scenario in strategies.items():
        h0, bad = by_scenario["h0"], by_scenario["err_1_to_2"]
        print(
            f"{name:26s} h0 false rollback {h0['false_rollback']:.3f}  err_1_to_2 miss {bad['miss']:.3f}  "
            f"requests h0 {h0['mean_requests']:8,.0f}  err_1_to_2 {bad['mean_requests']:8,.0f}"
        )


if __name__ == "__main__":
    main()
