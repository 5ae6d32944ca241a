"""Metric data as it was put, every datum exact, and read back grouped by period."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from localcloud.cloudwatch.statistics import Samples
from localcloud.moto import cloudwatch as moto_cloudwatch

_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)


class Datum(NamedTuple):
    timestamp: float
    unit: str
    values: tuple[tuple[float, float], ...]  # raw (value, count) pairs
    statistics: tuple[float, float, float, float] | None  # SampleCount, Sum, Minimum, Maximum


SeriesKey = tuple[str, str, frozenset[tuple[str, str]]]


def series_key(namespace: str, name: str, dimensions: Iterable[dict[str, Any]] | None) -> SeriesKey:
    return namespace, name, frozenset((str(d.get("Name")), str(d.get("Value"))) for d in dimensions or ())


@dataclass
class Store:
    """Per-backend (account, region) metric data and alarm history; lives on the moto backend."""

    series: dict[SeriesKey, list[Datum]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)


def store_of(backend: Any) -> Store:
    return moto_cloudwatch.backend_state(backend, "_shepherd_cloudwatch", Store)


def epoch(moment: datetime | float | str) -> float:
    if isinstance(moment, int | float):
        return float(moment)
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # moto's parser hands over naive UTC
    return moment.timestamp()


def moment_of(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def put(backend: Any, namespace: str, metric_data: list[dict[str, Any]], now: datetime) -> None:
    """Keep every datum exactly (Value, Values+Counts or StatisticValues) with its full dimension set and timestamp."""
    store = store_of(backend)
    now_seconds = epoch(now)
    with store.lock:
        for member in metric_data:
            key = series_key(namespace, member["MetricName"], member.get("Dimensions"))
            stamp = member.get("Timestamp")
            timestamp = epoch(stamp) if stamp is not None else now_seconds
            unit = member.get("Unit") or "None"
            values: tuple[tuple[float, float], ...] = ()
            statistics = None
            if member.get("Values"):
                counts = member.get("Counts") or [1.0] * len(member["Values"])
                values = tuple((float(v), float(c)) for v, c in zip(member["Values"], counts, strict=True))
            elif member.get("StatisticValues"):
                s = member["StatisticValues"]
                statistics = (float(s["SampleCount"]), float(s["Sum"]), float(s["Minimum"]), float(s["Maximum"]))
            else:
                values = ((float(member.get("Value", 0.0)), 1.0),)
            if key not in store.series:
                store.series[key] = []
                moto_cloudwatch.list_metric(
                    backend,
                    namespace=namespace,
                    name=member["MetricName"],
                    dimensions=member.get("Dimensions") or [],
                    timestamp=moment_of(timestamp),
                    unit=unit,
                )
            store.series[key].append(Datum(timestamp, unit, values, statistics))


def _provider_data(backend: Any, key: SeriesKey) -> list[Datum]:
    """Metrics moto's own services provide (S3 bucket sizes), as data of their series."""
    return [
        Datum(epoch(md.timestamp), md.unit or "None", ((float(md.value), 1.0),), None)
        for md in moto_cloudwatch.provided_metric_data(backend)
        if series_key(md.namespace, md.name, md.dimensions) == key
    ]


def align(start: float, period: int) -> float:
    """AWS rounds StartTime down to the whole minute (to the second for sub-minute periods)."""
    step = 60 if period % 60 == 0 else 1
    return math.floor(start / step) * step


def check_period(period: Any, parameter: str) -> int:
    try:
        value = int(period)
    except (TypeError, ValueError):
        raise moto_cloudwatch.invalid_parameter_value(f"The parameter {parameter} is required.") from None
    if value <= 0 or (value % 60 and value not in _HIGH_RESOLUTION_PERIODS):
        raise moto_cloudwatch.invalid_parameter_value(
            f"The parameter {parameter} must be 1, 5, 10, 20, 30, or a multiple of 60 (got {value})."
        )
    return value


def bucket_samples(
    backend: Any, key: SeriesKey, *, unit: str | None, anchor: float, end: float, period: int
) -> tuple[dict[float, Samples], set[str]]:
    """The series' data in [anchor, end) grouped by period start (anchor + k * period)."""
    store = store_of(backend)
    with store.lock:
        data = list(store.series.get(key, ()))
    if key[0] == "AWS/S3":  # the only namespace moto's own services provide
        data += _provider_data(backend, key)
    buckets: dict[float, Samples] = {}
    units: set[str] = set()
    for datum in data:
        if not anchor <= datum.timestamp < end or (unit and datum.unit != unit):
            continue
        start = anchor + math.floor((datum.timestamp - anchor) / period) * period
        samples = buckets.setdefault(start, Samples())
        units.add(datum.unit)
        for value, count in datum.values:
            samples.add_value(value, count)
        if datum.statistics is not None:
            samples.add_set(*datum.statistics)
    return buckets, units
