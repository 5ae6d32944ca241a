"""From CloudWatch's AWS/SageMaker metrics to the judge's observations (pure functions).

Latency is judged as exceedance counts, SampleCount(ModelLatency) - TC(:threshold): per-minute percentiles
cannot be pooled. A bin is judged only once complete (its minute ended, LAG_SECONDS later). Quality is
shepherd.rollout.quality's. docs/ROLLOUTS.md, "What the judge reads".
"""

from __future__ import annotations

import math
from typing import Any

from shepherd.judge import Baseline, Metric, MetricSettings, StageObservations, StageSettings, VariantBin, Verdict

PERIOD = 60
# Stages with no concurrent champion traffic: judged against the champion's counts earlier in the rollout.
BASELINE_KINDS = frozenset({"full", "watch"})
LAG_SECONDS = 120
ROLES = ("champion", "candidate")


def complete_until(now_epoch: float) -> float:
    """The end of the last complete bin."""
    return math.floor((now_epoch - LAG_SECONDS) / PERIOD) * PERIOD


def _decimal(value: float) -> str:
    """A bound as CloudWatch's statistic grammar writes it: plain decimals, at most 10 places, no exponent.

    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Statistics-definitions.html"""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def queries(endpoint: str, variants: dict[str, str], latency_threshold_ms: float | None) -> list[dict[str, Any]]:
    """GetMetricData queries: per role (champion, candidate), requests, 5XX errors and latency exceedances."""
    out: list[dict[str, Any]] = []

    def stat(query_id: str, variant: str, metric: str, statistic: str) -> dict[str, Any]:
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dimensions},
                "Period": PERIOD,
                "Stat": statistic,
            },
            "ReturnData": True,
        }

    for role in ROLES:
        variant = variants[role]
        out.append(stat(f"{role}_requests", variant, "Invocations", "Sum"))
        out.append(stat(f"{role}_errors", variant, "Invocation5XXErrors", "Sum"))
        if latency_threshold_ms is not None:
            out.append(stat(f"{role}_timed", variant, "ModelLatency", "SampleCount"))
            out.append(stat(f"{role}_fast", variant, "ModelLatency", f"TC(:{_decimal(latency_threshold_ms * 1000)})"))
    return out


def _series(results: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    series: dict[str, dict[int, float]] = {}
    for result in results:
        points = series.setdefault(result["Id"], {})
        for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            epoch = int(stamp.timestamp()) if hasattr(stamp, "timestamp") else int(stamp)
            points[epoch] = points.get(epoch, 0.0) + float(value)
    return series


def observations(
    results: list[dict[str, Any]], *, started_epoch: float, now_epoch: float, latency: bool
) -> StageObservations:
    """Complete bins since the stage started, minute 0 being the first whole minute of the stage."""
    series = _series(results)
    first = math.ceil(started_epoch / PERIOD) * PERIOD
    last = complete_until(now_epoch)
    bins: dict[str, list[VariantBin]] = {role: [] for role in ROLES}
    for role in ROLES:
        requests = series.get(f"{role}_requests", {})
        for stamp in range(int(first), int(last), PERIOD):
            count = round(requests.get(stamp, 0.0))
            if count == 0:
                continue
            errors = min(count, round(series.get(f"{role}_errors", {}).get(stamp, 0.0)))
            exceed: int | None = None
            if latency:
                timed = series.get(f"{role}_timed", {}).get(stamp, 0.0)
                fast = series.get(f"{role}_fast", {}).get(stamp, 0.0)
                exceed = max(0, min(count, round(timed - fast)))
            bins[role].append(
                VariantBin(
                    minute=(stamp - int(first)) // PERIOD,
                    sample_count=count,
                    error_sum=errors,
                    latency_exceedances=exceed,
                )
            )
    elapsed = max(0, int((last - first) // PERIOD))
    return StageObservations(
        minutes_elapsed=elapsed, champion=tuple(bins["champion"]), candidate=tuple(bins["candidate"])
    )


def baseline(
    results: list[dict[str, Any]], *, since_epoch: float, until_epoch: float, latency: bool
) -> dict[Metric, Baseline]:
    """The champion's requests and bad events in complete bins from since to until: what full and the
    post-promotion watch judge the candidate against (the champion serves nothing then)."""
    series = _series(results)
    requests = series.get("champion_requests", {})
    window = [t for t in requests if since_epoch <= t and t + PERIOD <= until_epoch]
    samples = round(sum(requests[t] for t in window))
    errors = round(sum(series.get("champion_errors", {}).get(t, 0.0) for t in window))
    out = {Metric.ERROR_RATE: Baseline(samples=samples, bad=min(samples, errors))}
    if latency:
        timed = sum(series.get("champion_timed", {}).get(t, 0.0) for t in window)
        fast = sum(series.get("champion_fast", {}).get(t, 0.0) for t in window)
        out[Metric.LATENCY] = Baseline(samples=samples, bad=max(0, min(samples, round(timed - fast))))
    return out


def settings(judge: dict[str, Any], *, max_minutes: int, at_max: str, kind: str = "ab") -> StageSettings:
    """The judge settings of a model's config (rollout.judge) for one stage of ``kind``.

    Quality is judged in every stage: on labelled pairs in shadow (both variants answered the same
    requests), per variant in A/B, and in full and the watch (no concurrent champion answers) against
    the champion's labelled predictions earlier in the rollout, as errors and latency are."""
    metrics: dict[Metric, MetricSettings] = {}
    quality = Metric.SHADOW_QUALITY if kind == "shadow" else Metric.QUALITY
    for name, metric in (("error_rate", Metric.ERROR_RATE), ("latency", Metric.LATENCY), ("quality", quality)):
        values = judge.get(name)
        if not values:
            continue
        metrics[metric] = MetricSettings(
            alpha=float(values.get("alpha", 0.05)),
            beta=float(values.get("beta", 0.2)),
            delta=float(values.get("delta", 1.0)),
            min_samples=int(values.get("min_samples", 100)),
            strict=bool(values.get("anytime", False)),
            max_minutes=max_minutes,
            at_max=Verdict(at_max),
        )
    return StageSettings(
        metrics or {Metric.ERROR_RATE: MetricSettings(max_minutes=max_minutes, at_max=Verdict(at_max))}
    )
