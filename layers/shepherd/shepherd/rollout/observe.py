"""From CloudWatch's AWS/SageMaker metrics to the judge's observations (pure functions).

Latency is judged as exceedance counts, SampleCount(ModelLatency) - TC(:threshold): per-minute percentiles
cannot be pooled. A bin is judged only once complete (its minute ended, LAG_SECONDS later), and once judged
it keeps the values the judge saw (:class:`Ledger`), whatever CloudWatch answers later. Quality is
shepherd.rollout.quality's. docs/ROLLOUTS.md, "What the judge reads".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from dataclasses import dataclass, field, replace
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
        request_counts = series.get(f"{role}_requests", {})
        for stamp in range(int(first), int(last), PERIOD):
            count = round(request_counts.get(stamp, 0.0))
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


# ------------------------------------------------------------------ looks that are never revised

LEDGER_FORMAT = 1


@dataclass
class Ledger:
    """The CloudWatch bins a stage's judge calls have seen, as they saw them (docs/ROLLOUTS.md, "Quality
    judging", looks that are never revised): a datapoint CloudWatch receives after LAG_SECONDS would
    otherwise change a bin an earlier call judged, an uncounted look."""

    looked: int | None = None  # every minute before this one was judged: its bins are the ones below
    bins: dict[str, dict[int, list[int]]] = field(default_factory=lambda: {role: {} for role in ROLES})
    baseline: dict[str, list[int]] | None = None  # full and the watch: metric -> [samples, bad], at the first look


def _cell(item: VariantBin) -> list[int]:
    exceed = -1 if item.latency_exceedances is None else item.latency_exceedances
    return [item.sample_count, item.error_sum, exceed]


def _bin(minute: int, cell: list[int]) -> VariantBin:
    return VariantBin(minute, cell[0], cell[1], None if cell[2] < 0 else cell[2])


def settle(observed: StageObservations, ledger: Ledger) -> StageObservations:
    """``observed`` (from :func:`observations`, and :func:`baseline` in full and the watch) with every bin
    an earlier look judged as that look saw it (a minute it saw without a datapoint stays without one) and
    the baseline of the first look; ``ledger`` takes this look's new bins (up to ``minutes_elapsed``)."""
    looked, until = ledger.looked, observed.minutes_elapsed
    settled: dict[str, tuple[VariantBin, ...]] = {}
    for role in ROLES:
        seen = ledger.bins.setdefault(role, {})
        fresh = [item for item in getattr(observed, role) if looked is None or item.minute >= looked]
        for item in fresh:
            if item.minute < until:
                seen[item.minute] = _cell(item)
        kept = [_bin(minute, cell) for minute, cell in sorted(seen.items()) if looked is not None and minute < looked]
        settled[role] = tuple(kept + fresh)
    if ledger.baseline is None and any(b.samples for b in observed.baseline.values()):
        # fixed once it has samples: a call before the first complete minute reads no baseline at all
        ledger.baseline = {str(metric): [b.samples, b.bad] for metric, b in observed.baseline.items()}
    counts = dict(observed.baseline)
    if ledger.baseline is not None:
        counts = {Metric(name): Baseline(samples=n, bad=bad) for name, (n, bad) in ledger.baseline.items()}
    ledger.looked = until if looked is None else max(looked, until)
    return replace(observed, champion=settled["champion"], candidate=settled["candidate"], baseline=counts)


def ledger_key(run: str, stage_index: int) -> str:
    """Where a stage's :class:`Ledger` is kept (the judge's memory, a day past the stage's end)."""
    return f"bins#{run}#{stage_index}"


def encode_ledger(ledger: Ledger) -> dict[str, Any]:
    """The ledger as a small JSON object (gzip'd, base64: a day's bins are some 40 KB as plain JSON)."""
    document = {
        "format": LEDGER_FORMAT,
        "looked": ledger.looked,
        "bins": {role: {str(m): cell for m, cell in cells.items()} for role, cells in ledger.bins.items()},
        "baseline": ledger.baseline,
    }
    packed = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 6)
    return {"format": LEDGER_FORMAT, "ledger": base64.b64encode(packed).decode("ascii")}


def decode_ledger(item: Any) -> Ledger:
    """A ledger from :func:`encode_ledger`'s object; ValueError naming what is wrong with it."""
    if not isinstance(item, dict) or item.get("format") != LEDGER_FORMAT or not isinstance(item.get("ledger"), str):
        raise ValueError(f"not a format-{LEDGER_FORMAT} ledger")
    try:
        document = json.loads(zlib.decompress(base64.b64decode(item["ledger"], validate=True)))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ValueError(f"not a ledger: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a ledger: not an object")
    looked, bins, base = document.get("looked"), document.get("bins"), document.get("baseline")
    if looked is not None and (not isinstance(looked, int) or isinstance(looked, bool)):
        raise ValueError(f"looked: {looked!r} is not a minute")
    if not isinstance(bins, dict) or set(bins) != set(ROLES):
        raise ValueError("bins name the wrong variants")
    ledger = Ledger(looked=looked, bins={role: {} for role in ROLES})
    for role, cells in bins.items():
        for minute, cell in (cells or {}).items():
            if not (
                isinstance(cell, list)
                and len(cell) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) for c in cell)
                and cell[0] >= max(cell[1], cell[2], 0)
                and min(cell[1], cell[2] + 1) >= 0
            ):
                raise ValueError(f"bins.{role}.{minute}: {cell!r} is not a bin")
            ledger.bins[role][int(minute)] = cell
    if base is not None:
        if not isinstance(base, dict) or not all(
            name in Metric.__members__.values() and isinstance(v, list) and len(v) == 2 for name, v in base.items()
        ):
            raise ValueError(f"baseline: {base!r} is not one")
        ledger.baseline = {name: [int(v[0]), int(v[1])] for name, v in base.items()}
    return ledger
