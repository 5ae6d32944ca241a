"""A stage's maximum derived from the traffic it sees, so that a good candidate is decided before it (pure).

A fixed maximum undecides at low traffic (a 120-minute A/B step at 10 % and 1 % errors left a good candidate undecided
7 % of the time at 100 rpm, 25 % at 50 rpm: issue 18) and waits needlessly at high traffic. Here each metric's test is
modelled as the random walk it is for a candidate as good as the champion: per bad event (or labelled answer, against
a baseline) its statistic moves by a known law whose mean runs towards the PROMOTE boundary, so the number of steps to
cross it is about inverse Gaussian (Wald's first-passage law). The maximum is that law's upper ``tail`` quantile, in
minutes at the stage's observed rate of steps, times RATE_MARGIN for the rates being estimates. docs/ROLLOUTS.md,
"Stage maxima".
"""

from __future__ import annotations

import math
from dataclasses import replace

from shepherd.judge.engine import FLOOR_SHARE, _baseline_bins, _series, alternative_rate, baseline_rate, floor_samples
from shepherd.judge.models import PAIRED_METRICS, Metric, MetricSettings, StageObservations, StageSettings, Verdict

UNDECIDED = 0.05  # P(a good candidate is undecided at the maximum) aimed at, with at_max INCONCLUSIVE
TRUNCATION_SHARE = 0.5  # at_max ROLLBACK: the share of the stage's alpha spent on truncation (the test gets the rest)
RATE_MARGIN = 1.5  # traffic and error rates are estimated from the stage so far
ESTIMATE_AFTER = 10  # minutes of a stage before its traffic is trusted for an estimate (until then: the cap)
MIN_MINUTES = 30  # a derived maximum is never shorter


def _log_normal_tail(z: float) -> float:
    """ln P(Z > z) for a standard normal Z, accurate far into the tail."""
    if z < 8.0:
        return math.log(0.5 * math.erfc(z / math.sqrt(2.0)))
    series = 1.0 - 1.0 / z**2 + 3.0 / z**4 - 15.0 / z**6
    return -0.5 * z * z - math.log(z) - 0.5 * math.log(2.0 * math.pi) + math.log(series)


def inverse_gaussian_tail(x: float, mean: float, shape: float) -> float:
    """P(X > x) for X inverse Gaussian with this mean and shape."""
    root = math.sqrt(shape / x)
    first = _log_normal_tail(root * (x / mean - 1.0))
    second = 2.0 * shape / mean + _log_normal_tail(root * (x / mean + 1.0))
    return max(0.0, math.exp(first) - math.exp(second))


def inverse_gaussian_quantile(tail: float, mean: float, shape: float) -> float:
    """The x with P(X > x) = tail (bisection on ln x)."""
    low, high = math.log(mean) - 12.0, math.log(mean) + 12.0
    for _ in range(80):
        middle = 0.5 * (low + high)
        if inverse_gaussian_tail(math.exp(middle), mean, shape) > tail:
            low = middle
        else:
            high = middle
    return math.exp(high)


def steps_to_decide(drift: float, variance: float, boundary: float, tail: float) -> float:
    """Steps until a walk with mean step -drift (< 0) and step variance ``variance`` first falls by ``boundary``,
    exceeded with chance ``tail``: the inverse Gaussian's quantile (mean boundary/drift, shape boundary^2/variance)."""
    if drift <= 0.0:
        return math.inf
    return inverse_gaussian_quantile(tail, boundary / drift, boundary**2 / max(variance, 1e-12))


def _two_variant_minutes(
    observations: StageObservations, metric: Metric, settings: MetricSettings, alpha: float, tail: float
) -> float | None:
    """Minutes a good candidate needs in a shadow or A/B stage at the traffic seen so far; None: nothing to go by."""
    series = _series(observations, metric, observations.minutes_elapsed + 1)
    minutes = max(observations.minutes_elapsed, 1)
    candidate_n, champion_n = float(series.candidate_n.sum()), float(series.champion_n.sum())
    candidate_bad, champion_bad = float(series.candidate_bad.sum()), float(series.champion_bad.sum())
    if candidate_n == 0 or champion_n == 0:
        return None
    paired = metric in PAIRED_METRICS
    ratio = 1.0 + settings.delta
    floor = settings.floor if not paired else 0.0
    beta = settings.beta * (1.0 - FLOOR_SHARE) if floor else settings.beta
    boundary = math.log((1.0 - alpha) / beta)
    if paired:  # per discordant pair: +ln(2r/(1+r)) or +ln(2/(1+r)), each with chance 1/2 when equally good
        drift, variance = -0.5 * math.log(4.0 * ratio / (1.0 + ratio) ** 2), 0.25 * math.log(ratio) ** 2
    else:  # per bad event: ln r if the candidate's (chance s, its share) minus ln(s r + 1 - s)
        share = candidate_n / (candidate_n + champion_n)
        drift = math.log(share * ratio + 1.0 - share) - share * math.log(ratio)
        variance = share * (1.0 - share) * math.log(ratio) ** 2
    steps_per_minute = (candidate_bad + champion_bad) / minutes
    by_test = steps_to_decide(drift, variance, boundary, tail) / steps_per_minute if steps_per_minute else math.inf
    by_floor = math.inf
    if floor and candidate_bad == 0:
        need = floor_samples(floor, settings.beta, settings.min_samples)
        pooled = (candidate_bad + champion_bad) / (candidate_n + champion_n)
        if (1.0 - pooled) ** need >= 0.5:  # the candidate is likely to stay clean that long
            by_floor = need / (candidate_n / minutes)
    decided = min(by_test, by_floor)
    if math.isinf(decided):
        return None
    both = settings.min_samples / (min(candidate_n, champion_n) / minutes)
    return max(decided, both)


def _baseline_minutes(
    observations: StageObservations, metric: Metric, settings: MetricSettings, alpha: float, tail: float
) -> float | None:
    """Minutes a candidate as good as the champion's baseline needs in full at its traffic so far."""
    baseline = observations.baseline[metric]
    candidate = sum(count for _, count, _ in _baseline_bins(observations, metric))
    if settings.rollback_only or baseline.samples < settings.min_samples or candidate == 0:
        return None
    p0, sprt_alpha = baseline_rate(baseline, settings, alpha)
    p1 = alternative_rate(p0, settings.delta)
    rate = (baseline.bad + 1) / (baseline.samples + 2)  # a good candidate fails as the champion did
    bad_weight, good_weight = math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))
    drift = -(rate * bad_weight + (1.0 - rate) * good_weight)
    variance = rate * (1.0 - rate) * (bad_weight - good_weight) ** 2
    samples = steps_to_decide(drift, variance, math.log((1.0 - sprt_alpha) / settings.beta), tail)
    if math.isinf(samples):
        return None
    return max(samples, settings.min_samples) / (candidate / max(observations.minutes_elapsed, 1))


def derived_max(observations: StageObservations, settings: StageSettings, *, cap: int, at_max: Verdict) -> int:
    """The stage's maximum: the longest its metrics need at the traffic seen (each within its share of the undecided
    chance: UNDECIDED, or TRUNCATION_SHARE x alpha with at_max ROLLBACK), times RATE_MARGIN, between MIN_MINUTES and
    ``cap``; ``cap`` itself until ESTIMATE_AFTER minutes have passed or when a metric has nothing to go by yet."""
    if observations.minutes_elapsed < ESTIMATE_AFTER:
        return cap
    count = len(settings.metrics)
    longest = 0.0
    for metric, values in settings.metrics.items():
        alpha = values.alpha / count
        tail = (TRUNCATION_SHARE * alpha if at_max is Verdict.ROLLBACK else UNDECIDED) / count
        test_alpha = alpha * (1.0 - TRUNCATION_SHARE) if at_max is Verdict.ROLLBACK else alpha
        how = _baseline_minutes if metric in observations.baseline else _two_variant_minutes
        minutes = how(observations, metric, values, test_alpha, tail)
        if minutes is None:
            return cap
        longest = max(longest, minutes)
    return int(min(cap, max(MIN_MINUTES, math.ceil(longest * RATE_MARGIN))))


def with_derived_max(observations: StageObservations, settings: StageSettings, *, cap: int) -> StageSettings:
    """Every metric's test with the stage's derived maximum; with at_max ROLLBACK, its alpha less the share spent on
    truncation, so that false rollbacks by boundary and by time together stay within the stage's alpha."""
    at_max = next(iter(settings.metrics.values())).at_max
    limit = derived_max(observations, settings, cap=cap, at_max=at_max)
    share = 1.0 - TRUNCATION_SHARE if at_max is Verdict.ROLLBACK else 1.0
    return StageSettings(
        {
            metric: replace(values, max_minutes=limit, alpha=values.alpha * share)
            for metric, values in settings.metrics.items()
        }
    )
