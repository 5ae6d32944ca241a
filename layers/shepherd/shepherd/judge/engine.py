"""The stage verdict: one sequential test per metric, combined by an explicit error-spending rule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar

import numpy as np

from shepherd.judge.models import (
    PAIRED_METRICS,
    Baseline,
    FeedbackBin,
    Judgement,
    Metric,
    MetricJudgement,
    MetricSettings,
    PairedBin,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
)
from shepherd.judge.sprt import (
    calibrated_boundaries,
    first_crossing,
    grouped_sprt,
    paired_llr_increments,
    split_llr_increments,
    wald_boundaries,
)

_WHAT = {
    Metric.ERROR_RATE: "error rate",
    Metric.LATENCY: "rate of requests over the latency threshold",
    Metric.QUALITY: "misclassification rate",
    Metric.SHADOW_ERRORS: "error rate on shadow pairs",
    Metric.SHADOW_QUALITY: "misclassification rate on shadow pairs",
}


class _Series:
    """Per-minute counts of one metric, minutes ascending: requests and bad events per variant."""

    def __init__(self, minutes: list[int], rows: list[tuple[int, int, int, int]]) -> None:
        self.minutes = np.asarray(minutes, dtype=np.int64)
        table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        self.candidate_n, self.candidate_bad, self.champion_n, self.champion_bad = table.T


_Bin = TypeVar("_Bin", VariantBin, FeedbackBin, PairedBin)


def _by_minute(bins: Iterable[_Bin], source: str) -> dict[int, _Bin]:
    table: dict[int, _Bin] = {}
    for item in bins:
        if item.minute in table:
            raise ValueError(f"{source}: two bins for minute {item.minute}")
        table[item.minute] = item
    return table


def _variant_series(observations: StageObservations, metric: Metric, max_minutes: int) -> _Series:
    champion = _by_minute(observations.champion, "champion")
    candidate = _by_minute(observations.candidate, "candidate")
    minutes: list[int] = []
    rows: list[tuple[int, int, int, int]] = []
    empty = VariantBin(0, 0)  # CloudWatch sends no datapoint for a minute without requests
    for minute in sorted(set(champion) | set(candidate)):
        if minute >= max_minutes:
            break
        bins = [champion.get(minute, empty), candidate.get(minute, empty)]
        if metric is Metric.ERROR_RATE:
            bad = [item.error_sum for item in bins]
        elif any(item.latency_exceedances is None and item.sample_count for item in bins):
            continue
        else:
            bad = [item.latency_exceedances or 0 for item in bins]
        minutes.append(minute)
        rows.append((bins[1].sample_count, bad[1], bins[0].sample_count, bad[0]))
    return _Series(minutes, rows)


def _feedback_series(observations: StageObservations, max_minutes: int) -> _Series:
    champion = _by_minute(observations.champion_feedback, "champion feedback")
    candidate = _by_minute(observations.candidate_feedback, "candidate feedback")
    minutes: list[int] = []
    rows: list[tuple[int, int, int, int]] = []
    empty = FeedbackBin(0, 0, 0)
    for minute in sorted(set(champion) | set(candidate)):
        if minute >= max_minutes:
            break
        theirs, ours = champion.get(minute, empty), candidate.get(minute, empty)
        minutes.append(minute)
        rows.append((ours.labelled, ours.misclassified, theirs.labelled, theirs.misclassified))
    return _Series(minutes, rows)


def _paired_series(bins: tuple[PairedBin, ...], source: str, max_minutes: int) -> _Series:
    table = _by_minute(bins, source)
    minutes: list[int] = []
    rows: list[tuple[int, int, int, int]] = []
    for minute in sorted(table):
        if minute >= max_minutes:
            break
        item = table[minute]
        minutes.append(minute)
        rows.append((item.pairs, item.candidate_only, item.pairs, item.champion_only))
    return _Series(minutes, rows)


def _series(observations: StageObservations, metric: Metric, max_minutes: int) -> _Series:
    if metric in (Metric.ERROR_RATE, Metric.LATENCY):
        return _variant_series(observations, metric, max_minutes)
    if metric is Metric.QUALITY:
        return _feedback_series(observations, max_minutes)
    bins = observations.shadow_errors if metric is Metric.SHADOW_ERRORS else observations.shadow_quality
    return _paired_series(bins, metric.value, max_minutes)


def _baseline_bins(observations: StageObservations, metric: Metric) -> list[tuple[int, int, int]]:
    """The candidate's (minute, samples, bad events) of one metric, minutes ascending: its requests for
    errors and latency (a bin without latency counts is skipped), its labelled predictions for quality."""
    if metric is Metric.QUALITY:
        feedback = sorted(observations.candidate_feedback, key=lambda item: item.minute)
        return [(item.minute, item.labelled, item.misclassified) for item in feedback]
    out = []
    for item in sorted(observations.candidate, key=lambda item: item.minute):
        if metric is Metric.ERROR_RATE:
            out.append((item.minute, item.sample_count, item.error_sum))
        elif item.latency_exceedances is not None:
            out.append((item.minute, item.sample_count, item.latency_exceedances))
    return out


def alternative_rate(p0: float, delta: float) -> float:
    """The rate H1 names against p0: odds1 = (1 + delta) x odds0, the rate ratio 1 + delta for a small p0.

    A rate-scale p1 = (1 + delta) p0 passes 1 once p0 >= 1 / (1 + delta) (a third for delta 2), and capped near 1 it
    names a candidate wrong almost always: each good outcome then weighs ln((1 - p1) / (1 - p0)), -6.2 nats at
    p0 = 0.5, and a candidate wrong on 80 % of its answers promotes. On the odds scale p1 stays inside (p0, 1) for
    every p0 and delta. The two-variant tests use the same alternative (sprt.bin_laws: Fisher's noncentral
    hypergeometric with odds ratio 1 + delta), and since a rate ratio r implies an odds ratio >= r, this p1 is at or
    below (1 + delta) p0: beta holds for a candidate (1 + delta) times as bad on either scale, and alpha, which only
    H0 sets (Ville's inequality holds for any p1 > p0), is unchanged."""
    ratio = 1.0 + delta
    return ratio * p0 / (1.0 - p0 + ratio * p0)


def baseline_rate(baseline: Baseline, settings: MetricSettings, alpha_spent: float) -> tuple[float, float]:
    """(p0, the SPRT's alpha) of the test against a baseline: Laplace's estimate of the champion's rate or, with a drift
    margin, an upper confidence bound on it times 1 + margin (spending half of alpha)."""
    p0 = (baseline.bad + 1) / (baseline.samples + 2)
    sprt_alpha = alpha_spent
    if settings.drift_margin > 0:
        # Half of alpha for the bound on the baseline's rate (its estimate is not exact), half for the SPRT; and the
        # drift margin for what changed since the baseline for both models (time of day, dependencies, traffic mix).
        sprt_alpha = alpha_spent / 2
        z = math.sqrt(2.0 * math.log(2.0 / alpha_spent))  # >= the normal quantile of 1 - alpha/2 (no scipy here)
        p0 = (p0 + z * math.sqrt(p0 * (1.0 - p0) / (baseline.samples + 2))) * (1.0 + settings.drift_margin)
        # Capped at 0.5: a small baseline at a small alpha passes it (26 bad of 95 at alpha 2.5e-7: 0.53, 0.67 with the
        # margin), and the closer p0 comes to 1 the less a bad candidate differs from it. alpha is then promised for a
        # candidate rate up to 0.5, not up to the bound.
        p0 = min(p0, 0.5)
    return p0, sprt_alpha


def judge_against_baseline(
    observations: StageObservations, metric: Metric, settings: MetricSettings, alpha_spent: float
) -> MetricJudgement:
    """Wald's one-sample SPRT of the candidate's bad-event rate against the champion's recorded rate.

    For full and the watch (no concurrent champion traffic). p0 takes Laplace's rule, so a champion without
    errors still leaves a small allowance, not a rollback on the first error; a PROMOTE needs min_samples on
    both sides, and an empty baseline never promotes. docs/ROLLOUTS.md, "Judging against the baseline"."""
    baseline = observations.baseline[metric]
    p0, sprt_alpha = baseline_rate(baseline, settings, alpha_spent)
    p1 = alternative_rate(p0, settings.delta)
    bad_weight, good_weight = math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))
    # ROLLBACK at ln(1/alpha): the likelihood ratio is a martingale under H0, so by Ville's inequality it ever reaches
    # 1/alpha with chance <= alpha, at any look, with or without a PROMOTE exit. Wald's ln((1 - beta)/alpha) promised
    # only alpha/(1 - beta): twice the stated alpha at full's beta of 0.5. PROMOTE keeps Wald's ln(beta/(1 - alpha)).
    upper, lower = -math.log(sprt_alpha), math.log(settings.beta / (1.0 - sprt_alpha))
    may_promote = baseline.samples >= settings.min_samples and not settings.rollback_only
    statistic, samples, bad, decided, verdict = 0.0, 0, 0, None, Verdict.CONTINUE
    for minute, count, events in _baseline_bins(observations, metric) if baseline.samples else []:
        if minute >= settings.max_minutes:
            break
        samples, bad = samples + count, bad + events
        statistic += events * bad_weight + (count - events) * good_weight
        if statistic >= upper:
            verdict, decided = Verdict.ROLLBACK, minute
            break
        if statistic <= lower and samples >= settings.min_samples and may_promote:
            verdict, decided = Verdict.PROMOTE, minute
            break
    if verdict is Verdict.CONTINUE and observations.minutes_elapsed >= settings.max_minutes:
        verdict = settings.at_max
    what = _WHAT[metric]
    unit = "labelled predictions" if metric is Metric.QUALITY else "requests"
    seen = (
        f"{bad} bad of {samples:,} {unit}, against the champion's {baseline.bad} of {baseline.samples:,} "
        f"before the stage"
    )
    worse = f"{1 + settings.delta:g}x"
    if verdict is Verdict.ROLLBACK and decided is not None:
        explanation = (
            f"The new champion's {what} is higher than the old champion's ({seen}; evidence {statistic:.2f} "
            f">= {upper:.2f}, chance this is a fluke <= {alpha_spent:.1%})."
        )
    elif verdict is Verdict.PROMOTE:
        explanation = (
            f"The new champion's {what} is not {worse} the old champion's ({seen}; evidence {statistic:.2f} "
            f"<= {lower:.2f})."
        )
    elif verdict is Verdict.CONTINUE and settings.rollback_only:
        explanation = (
            f"Watching the {what} for {settings.max_minutes} minutes ({seen}; evidence {statistic:.2f}, rollback at "
            f"{upper:.2f})."
        )
    elif verdict is Verdict.CONTINUE and not may_promote:
        explanation = (
            f"Not enough of a baseline for the {what} yet ({seen}; a promotion needs {settings.min_samples:,} "
            f"from the champion; evidence {statistic:.2f}, rollback at {upper:.2f})."
        )
    elif verdict is Verdict.CONTINUE:
        explanation = (
            f"Not enough evidence on the {what} yet ({seen}; evidence {statistic:.2f} between {lower:.2f} "
            f"and {upper:.2f})."
        )
    else:
        explanation = f"No decision on the {what} within {settings.max_minutes} minutes ({seen})."
    return MetricJudgement(
        metric=metric,
        verdict=verdict,
        statistic=statistic,
        rollback_boundary=upper,
        promote_boundary=lower,
        alpha_spent=alpha_spent,
        beta=settings.beta,
        candidate_samples=samples,
        champion_samples=baseline.samples,
        candidate_bad=bad,
        champion_bad=baseline.bad,
        decided_minute=decided,
        explanation=explanation,
    )


def judge_metric(
    observations: StageObservations, metric: Metric, settings: MetricSettings, alpha_spent: float
) -> MetricJudgement:
    """Run one metric's SPRT over every bin so far; its first boundary crossing is its decision."""
    if metric in observations.baseline:
        return judge_against_baseline(observations, metric, settings, alpha_spent)
    series = _series(observations, metric, settings.max_minutes)
    floor = settings.floor if metric not in PAIRED_METRICS else 0.0
    tested = replace(settings, beta=settings.beta * (1.0 - FLOOR_SHARE)) if floor else settings
    if settings.strict:
        statistic, upper, lower, last, crossed, side = _ville(series, metric, tested, alpha_spent)
    else:
        statistic, upper, lower, last, crossed, side = _spending(series, metric, tested, alpha_spent)
    candidate_n, champion_n = np.cumsum(series.candidate_n), np.cumsum(series.champion_n)
    floor_at = _below_floor(series, settings, floor) if floor else -1
    by_floor = floor_at >= 0 and (not crossed or floor_at < last)
    if by_floor:
        last, crossed, side = floor_at, True, -1
    counts = {
        "candidate_samples": int(candidate_n[last]) if last >= 0 else 0,
        "champion_samples": int(champion_n[last]) if last >= 0 else 0,
        "candidate_bad": int(series.candidate_bad[: last + 1].sum()),
        "champion_bad": int(series.champion_bad[: last + 1].sum()),
    }
    if crossed:
        verdict = Verdict.ROLLBACK if side > 0 else Verdict.PROMOTE
    elif observations.minutes_elapsed >= settings.max_minutes:
        verdict = settings.at_max
    else:
        verdict = Verdict.CONTINUE
    return MetricJudgement(
        metric=metric,
        verdict=verdict,
        statistic=statistic,
        rollback_boundary=upper,
        promote_boundary=lower,
        alpha_spent=alpha_spent,
        beta=settings.beta,
        decided_minute=int(series.minutes[last]) if crossed else None,
        explanation=_floor_explanation(metric, settings, int(candidate_n[last]))
        if by_floor
        else _explain(
            metric,
            verdict=verdict,
            statistic=statistic,
            upper=upper,
            lower=lower,
            alpha_spent=alpha_spent,
            settings=settings,
            counts=counts,
        ),
        **counts,
    )


_Path = tuple[float, float, float, int, bool, int]  # statistic, upper, lower, last bin used, crossed, side

FLOOR_SHARE = 0.1  # of a metric's beta, spent on the floor rule when a floor is set


def floor_samples(floor: float, beta: float, min_samples: int) -> int:
    """Samples without a single bad event after which a candidate is below the floor rate with its share of beta:
    P(no bad event in n samples | rate >= floor) = (1 - floor) ** n <= FLOOR_SHARE x beta (one event, any look)."""
    return max(min_samples, math.ceil(math.log(FLOOR_SHARE * beta) / math.log1p(-floor)))


def _below_floor(series: _Series, settings: MetricSettings, floor: float) -> int:
    """The first bin where the candidate has had floor_samples samples and no bad event (and the champion
    min_samples), or -1."""
    need = floor_samples(floor, settings.beta, settings.min_samples)
    candidate_n, champion_n = np.cumsum(series.candidate_n), np.cumsum(series.champion_n)
    clean = np.cumsum(series.candidate_bad) == 0
    hit = np.flatnonzero(clean & (candidate_n >= need) & (champion_n >= settings.min_samples))
    return int(hit[0]) if hit.size else -1


def _floor_explanation(metric: Metric, settings: MetricSettings, samples: int) -> str:
    return (
        f"The candidate's {_WHAT[metric]} is below the floor of {settings.floor:.2%} (not one bad event in "
        f"{samples:,} samples; chance of this at the floor or above <= {FLOOR_SHARE * settings.beta:.1%})."
    )


def _spending(series: _Series, metric: Metric, settings: MetricSettings, alpha_spent: float) -> _Path:
    """The default test: error spending over the grouping that occurred (sprt.grouped_sprt)."""
    ratio = 1.0 + settings.delta
    if not len(series.minutes):
        # No bin yet: the ungrouped SPRT's boundaries, for a statistic of 0 strictly between them.
        upper, lower = calibrated_boundaries(alpha_spent, settings.beta, ratio, 0.5)
        return 0.0, upper, lower, -1, False, 0
    path = grouped_sprt(
        series.candidate_bad,
        series.champion_bad,
        series.candidate_n,
        series.champion_n,
        alpha=alpha_spent,
        beta=settings.beta,
        ratio=ratio,
        min_samples=settings.min_samples,
        paired=metric in PAIRED_METRICS,
    )
    last = path.index if path.side else len(series.minutes) - 1
    return (
        float(path.statistic[last]),
        float(path.upper[last]),
        float(path.lower[last]),
        last,
        path.side != 0,
        path.side,
    )


def _ville(series: _Series, metric: Metric, settings: MetricSettings, alpha_spent: float) -> _Path:
    """strict: fixed boundaries ln(1/alpha) and ln(beta) on the log-likelihood ratio (Ville's inequality)."""
    ratio = 1.0 + settings.delta
    upper, lower = wald_boundaries(alpha_spent, settings.beta, strict=True)
    if not len(series.minutes):
        return 0.0, upper, lower, -1, False, 0
    if metric in PAIRED_METRICS:
        increments = paired_llr_increments(series.candidate_bad, series.champion_bad, ratio)
    else:
        increments = split_llr_increments(
            series.candidate_bad, series.champion_bad, series.candidate_n, series.champion_n, ratio
        )
    path = np.cumsum(increments)
    may_promote = (np.cumsum(series.candidate_n) >= settings.min_samples) & (
        np.cumsum(series.champion_n) >= settings.min_samples
    )
    index, side = first_crossing(path, upper, lower, may_promote)
    crossed = int(side) != 0
    last = int(index) if crossed else len(path) - 1
    return float(path[last]), upper, lower, last, crossed, int(side)


def _explain(
    metric: Metric,
    *,
    verdict: Verdict,
    statistic: float,
    upper: float,
    lower: float,
    alpha_spent: float,
    settings: MetricSettings,
    counts: dict[str, int],
) -> str:
    what = _WHAT[metric]
    seen = (
        f"{counts['candidate_bad']} bad of {counts['candidate_samples']:,} candidate and "
        f"{counts['champion_bad']} of {counts['champion_samples']:,} champion samples"
    )
    worse = f"{1 + settings.delta:g}x"
    if verdict is Verdict.ROLLBACK and statistic >= upper:
        return (
            f"The candidate's {what} is higher than the champion's ({seen}; evidence {statistic:.2f} "
            f">= {upper:.2f}, chance this is a fluke <= {alpha_spent:.1%})."
        )
    if verdict is Verdict.PROMOTE:
        return (
            f"The candidate's {what} is not {worse} the champion's ({seen}; evidence {statistic:.2f} "
            f"<= {lower:.2f}, chance of passing a model {worse} worse <= {settings.beta:.0%})."
        )
    if verdict is Verdict.CONTINUE:
        return (
            f"Not enough evidence on the {what} yet ({seen}; evidence {statistic:.2f} "
            f"between {lower:.2f} and {upper:.2f})."
        )
    return (
        f"No decision on the {what} within {settings.max_minutes} minutes ({seen}; evidence {statistic:.2f}), "
        f"so the stage ends {verdict.value}: the champion keeps the traffic."
    )


def judge(observations: StageObservations, settings: StageSettings) -> Judgement:
    """PROMOTE only when every metric promoted; ROLLBACK when any rolled back; INCONCLUSIVE when any
    timed out; otherwise CONTINUE. Each metric spends alpha/m of its false-rollback rate (m metrics)."""
    share = len(settings.metrics)
    judged = tuple(
        judge_metric(observations, metric, metric_settings, metric_settings.alpha / share)
        for metric, metric_settings in settings.metrics.items()
    )
    for verdict in (Verdict.ROLLBACK, Verdict.INCONCLUSIVE):
        deciding = [item for item in judged if item.verdict is verdict]
        if deciding:
            return Judgement(verdict, judged, deciding[0].explanation)
    if all(item.verdict is Verdict.PROMOTE for item in judged):
        if len(judged) == 1:
            return Judgement(Verdict.PROMOTE, judged, judged[0].explanation)
        names = ", ".join(_WHAT[item.metric] for item in judged)
        return Judgement(Verdict.PROMOTE, judged, f"Every metric passed its test ({names}).")
    waiting = next(item for item in judged if item.verdict is Verdict.CONTINUE)
    return Judgement(Verdict.CONTINUE, judged, waiting.explanation)
