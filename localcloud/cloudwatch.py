"""CloudWatch metrics and alarms faithful enough for Shepherd's rollout judge.

moto 5.2.5 stores metric data but answers queries loosely: a query by EndpointName alone
sums every variant (AWS answers nothing, since a query's dimensions must equal a datum's
full set), percentiles give no value or crash GetMetricData, metric math and SEARCH
silently return [], and alarms start OK and are never evaluated. A rollout judge tuned
against that would pass locally and misjudge on AWS.

We patch moto's CloudWatch backend methods (protocol-agnostic: botocore speaks
smithy-rpc-v2-cbor to moto, which parses it before our code runs):

* ``put_metric_data`` keeps every datum exactly (Value, Values+Counts or StatisticValues)
  with its full dimension set and the client's timestamp, so statistics are exact.
* ``get_metric_statistics`` / ``get_metric_data`` match dimensions exactly, align periods
  to StartTime, and compute AWS's statistics including pNN, TM, TC, TS, WM, PR and IQM.
* ``get_metric_data`` evaluates metric math (arithmetic, SUM/AVG/MIN/MAX, METRICS(),
  FILL, IF, ...); SEARCH and Metrics Insights fail loudly instead of returning [].
* Alarms start INSUFFICIENT_DATA and an :class:`AlarmEvaluator` thread evaluates them on
  the virtual clock, recording DescribeAlarmHistory entries and publishing to SNS.

Every moto internal touched here has a contract test in
tests/unit/test_cloudwatch_contract.py.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from localcloud.server import LocalCloud

log = logging.getLogger("shepherd.local.cloudwatch")

SIMPLE_STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_COMPARISON_WORDS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}
_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)
_MAX_STATISTICS_DATAPOINTS = 1440  # GetMetricStatistics' limit per call
_REGION_NAMES = {"us-east-1": "US East (N. Virginia)", "us-east-2": "US East (Ohio)", "us-west-2": "US West (Oregon)"}


# ---------------------------------------------------------------- statistics


@dataclass
class Samples:
    """Everything put for one series in one period: raw values with counts, plus statistic sets.

    A statistic set only counts as raw data when AWS would treat it so (its SampleCount is 1,
    or Minimum == Maximum and Sum == Minimum * SampleCount); any other set makes the
    percentile-family statistics unavailable for the period, as on AWS.
    """

    raw: list[tuple[float, float]] = field(default_factory=list)
    count: float = 0.0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    opaque: bool = False

    def add_value(self, value: float, count: float = 1.0) -> None:
        if count <= 0:
            return
        self.raw.append((value, count))
        self.count += count
        self.total += value * count
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def add_set(self, sample_count: float, total: float, low: float, high: float) -> None:
        if sample_count == 1 and low == high == total:
            self.add_value(low)
            return
        if low == high and math.isclose(total, low * sample_count) and float(sample_count).is_integer():
            self.add_value(low, sample_count)
            return
        self.opaque = True
        self.count += sample_count
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)


@dataclass(frozen=True)
class Bound:
    value: float
    percent: bool


@dataclass(frozen=True)
class Statistic:
    """A parsed statistic string: 'Sum', 'p99', 'TC(:250000)', 'tm90', 'WM(10%:90%)', 'IQM' ..."""

    text: str
    kind: str  # SampleCount|Sum|Average|Minimum|Maximum|p|TM|TC|TS|WM|PR
    percentile: float = 0.0
    lower: Bound | None = None
    upper: Bound | None = None

    @property
    def extended(self) -> bool:
        return self.kind not in SIMPLE_STATISTICS


_PERCENTILE = re.compile(r"^p(\d{1,3}(?:\.\d{1,10})?)$")
_SHORTHAND = re.compile(r"^(tm|tc|ts|wm)(\d{1,3}(?:\.\d{1,10})?)$")
_RANGE = re.compile(r"^(TM|TC|TS|WM|PR)\(\s*([^:()]*?)\s*:\s*([^:()]*?)\s*\)$")
# Bounds are plain decimals "with up to 10 decimal places", no exponent (Statistics-definitions).
_NUMBER = re.compile(r"^-?\d+(?:\.\d{1,10})?$")


def _bound(text: str, kind: str, source: str) -> Bound | None:
    if not text:
        return None
    percent = text.endswith("%")
    number = text[:-1] if percent else text
    if not _NUMBER.match(number):
        raise ValueError(f"statistic {source!r}: bound {text!r} is not a number")
    value = float(number)
    if percent and not 0 <= value <= 100:
        raise ValueError(f"statistic {source!r}: percentages must lie between 0% and 100%")
    if percent and kind == "PR":
        raise ValueError(f"statistic {source!r}: percentile rank takes values, not percentages")
    return Bound(value, percent)


@functools.lru_cache(maxsize=512)
def parse_statistic(text: str) -> Statistic:
    """Parse a CloudWatch statistic string; ValueError names what is wrong with it."""
    if text in SIMPLE_STATISTICS:
        return Statistic(text, text)
    if text == "IQM":
        return Statistic(text, "TM", lower=Bound(25.0, True), upper=Bound(75.0, True))
    match = _PERCENTILE.match(text)
    if match:
        value = float(match.group(1))
        if value > 100:
            raise ValueError(f"statistic {text!r}: percentiles lie between p0 and p100")
        return Statistic(text, "p", percentile=value)
    match = _SHORTHAND.match(text)
    if match:
        value = float(match.group(2))
        if value > 100:
            raise ValueError(f"statistic {text!r}: percentages must lie between 0 and 100")
        return Statistic(text, match.group(1).upper(), upper=Bound(value, True))
    match = _RANGE.match(text)
    if match:
        kind = match.group(1)
        lower = _bound(match.group(2), kind, text)
        upper = _bound(match.group(3), kind, text)
        if lower is None and upper is None:
            raise ValueError(f"statistic {text!r}: give at least one bound")
        if lower is not None and upper is not None:
            if lower.percent != upper.percent:
                raise ValueError(f"statistic {text!r}: both bounds must be percentages or both values")
            if lower.value > upper.value:
                raise ValueError(f"statistic {text!r}: the lower bound exceeds the upper bound")
        return Statistic(text, kind, lower=lower, upper=upper)
    raise ValueError(f"unknown statistic {text!r}")


def _sorted_weighted(raw: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: dict[float, float] = {}
    for value, count in raw:
        merged[value] = merged.get(value, 0.0) + count
    return sorted(merged.items())


def nearest_rank(pairs: list[tuple[float, float]], percentile: float) -> float:
    """The value at rank ceil(p/100 * N) of the sorted data (weighted by counts).

    AWS defines p99 as "the maximum value of the remaining 99%" once the highest 1% of
    data points are ignored: the nearest-rank percentile, always an observed value.
    """
    total = sum(count for _, count in pairs)
    if percentile <= 0:
        return pairs[0][0]
    rank = max(1.0, math.ceil(percentile / 100.0 * total - 1e-9))
    seen = 0.0
    for value, count in pairs:
        seen += count
        if seen >= rank - 1e-9:
            return value
    return pairs[-1][0]


def _limits(stat: Statistic, pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The (exclusive lower, inclusive upper) value limits of a ranged statistic.

    AWS: with values, TC(80:500) counts 80 < v <= 500; with percentages the bounds are the
    data's own percentile values, so TM(10%:90%) keeps the values above p10 up to p90.
    """

    def limit(bound: Bound | None, default: float, is_lower: bool) -> float:
        if bound is None:
            return default
        if not bound.percent:
            return bound.value
        if is_lower and bound.value <= 0:
            return -math.inf
        if not is_lower and bound.value >= 100:
            return math.inf
        return nearest_rank(pairs, bound.value)

    return limit(stat.lower, -math.inf, True), limit(stat.upper, math.inf, False)


def compute_statistic(stat: Statistic, samples: Samples) -> float | None:
    """One statistic of one period's samples; None where AWS returns no value."""
    if samples.count <= 0:
        return None
    if stat.kind == "SampleCount":
        return samples.count
    if stat.kind == "Sum":
        return samples.total
    if stat.kind == "Average":
        return samples.total / samples.count
    if stat.kind == "Minimum":
        return samples.low
    if stat.kind == "Maximum":
        return samples.high
    # Percentile-family statistics need raw values, and AWS computes none over negative data.
    if samples.opaque or not samples.raw or samples.low < 0:
        return None
    pairs = _sorted_weighted(samples.raw)
    if stat.kind == "p":
        return nearest_rank(pairs, stat.percentile)
    lower, upper = _limits(stat, pairs)
    inside = [(v, c) for v, c in pairs if lower < v <= upper]
    count = sum(c for _, c in inside)
    if stat.kind == "PR":
        return 100.0 * count / samples.count
    if stat.kind == "TC":
        return count
    if stat.kind == "TS":
        return sum(v * c for v, c in inside)
    if stat.kind == "TM":
        return sum(v * c for v, c in inside) / count if count else None
    if stat.kind == "WM":
        low_edge = lower if math.isfinite(lower) else pairs[0][0]
        high_edge = upper if math.isfinite(upper) else pairs[-1][0]
        return sum(min(max(v, low_edge), high_edge) * c for v, c in pairs) / samples.count
    raise ValueError(f"unsupported statistic {stat.text!r}")


# ---------------------------------------------------------------- alarm decisions


def decide_alarm_state(
    values: list[float | None],
    comparison: str,
    threshold: float,
    datapoints_to_alarm: int,
    treat_missing: str,
) -> tuple[str | None, int]:
    """The state the last N period values call for, and how many of them breach.

    Returns (None, n) when the alarm keeps its current state (TreatMissingData=ignore with
    nothing to judge). With 'missing' or 'ignore' only the present datapoints are judged:
    M breaching ones alarm; fewer than M present, all breaching, alarm too under 'missing'
    (AWS's "- - X" row) while 'ignore' keeps the state; anything else is OK.
    """
    breaches = _COMPARISONS[comparison]
    if treat_missing in ("breaching", "notBreaching"):
        filled = [(treat_missing == "breaching") if v is None else breaches(v, threshold) for v in values]
        breaching = sum(filled)
        return ("ALARM" if breaching >= datapoints_to_alarm else "OK"), breaching
    present = [v for v in values if v is not None]
    breaching = sum(1 for v in present if breaches(v, threshold))
    if not present:
        return (None if treat_missing == "ignore" else "INSUFFICIENT_DATA"), 0
    if breaching >= datapoints_to_alarm:
        return "ALARM", breaching
    if len(present) < datapoints_to_alarm and breaching == len(present):
        return (None if treat_missing == "ignore" else "ALARM"), breaching
    return "OK", breaching


# ---------------------------------------------------------------- storage


class Datum(NamedTuple):
    timestamp: float
    unit: str
    values: tuple[tuple[float, float], ...]  # raw (value, count) pairs
    statistics: tuple[float, float, float, float] | None  # SampleCount, Sum, Minimum, Maximum


SeriesKey = tuple[str, str, frozenset[tuple[str, str]]]


def series_key(namespace: str, name: str, dimensions: Iterable[dict[str, Any]] | None) -> SeriesKey:
    return namespace, name, frozenset((str(d.get("Name")), str(d.get("Value"))) for d in dimensions or ())


@dataclass
class _Store:
    """Per-backend (account, region) metric data and alarm history; lives on the moto backend."""

    series: dict[SeriesKey, list[Datum]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)


def _store(backend: Any) -> _Store:
    store = backend.__dict__.get("_shepherd_cloudwatch")
    if store is None:
        store = backend.__dict__.setdefault("_shepherd_cloudwatch", _Store())
    return store


def _epoch(moment: datetime | float | str) -> float:
    if isinstance(moment, int | float):
        return float(moment)
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # moto's parser hands over naive UTC
    return moment.timestamp()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


_state: dict[str, Any] = {"cloud": None, "installed": False, "evaluator": None}
_alarm_lock = threading.RLock()


def _now() -> datetime:
    cloud = _state["cloud"]
    return cloud.clock.now() if cloud is not None else datetime.now(UTC)


def _put(backend: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
    from moto.cloudwatch.models import MetricDatum

    store = _store(backend)
    now = _epoch(_now())
    with store.lock:
        for member in metric_data:
            key = series_key(namespace, member["MetricName"], member.get("Dimensions"))
            stamp = member.get("Timestamp")
            timestamp = _epoch(stamp) if stamp is not None else now
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
                # One representative per series keeps moto's ListMetrics answering.
                backend.metric_data.append(
                    MetricDatum(
                        namespace,
                        member["MetricName"],
                        0.0,
                        member.get("Dimensions") or [],
                        _moment(timestamp).replace(tzinfo=None),
                        unit,
                    )
                )
            store.series[key].append(Datum(timestamp, unit, values, statistics))


def _provider_data(backend: Any, key: SeriesKey) -> list[Datum]:
    """Metrics moto's own services provide (S3 bucket sizes), as data of their series."""
    from moto.cloudwatch.models import MetricDatum

    out = []
    try:
        provided = backend.aws_metric_data
    except Exception:  # a provider failing must not break queries of our own data
        return []
    for md in provided:
        if isinstance(md, MetricDatum):
            dims = [{"Name": d.name, "Value": d.value} for d in md.dimensions]
            if series_key(md.namespace, md.name, dims) == key:
                out.append(Datum(_epoch(md.timestamp), md.unit or "None", ((float(md.value), 1.0),), None))
    return out


def _align(start: float, period: int) -> float:
    """AWS rounds StartTime down to the whole minute (to the second for sub-minute periods)."""
    step = 60 if period % 60 == 0 else 1
    return math.floor(start / step) * step


def bucket_samples(
    backend: Any, key: SeriesKey, *, unit: str | None, anchor: float, end: float, period: int
) -> tuple[dict[float, Samples], set[str]]:
    """The series' data in [anchor, end) grouped by period start (anchor + k * period)."""
    store = _store(backend)
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


# ---------------------------------------------------------------- GetMetricStatistics


def _check_period(period: Any, parameter: str) -> int:
    from moto.cloudwatch.exceptions import InvalidParameterValue

    try:
        value = int(period)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"The parameter {parameter} is required.") from None
    if value <= 0 or (value % 60 and value not in _HIGH_RESOLUTION_PERIODS):
        raise InvalidParameterValue(
            f"The parameter {parameter} must be 1, 5, 10, 20, 30, or a multiple of 60 (got {value})."
        )
    return value


def get_metric_statistics(
    backend: Any,
    *,
    namespace: str,
    metric_name: str,
    start_time: datetime,
    end_time: datetime,
    period: int,
    stats: list[str],
    dimensions: list[dict[str, str]],
    unit: str | None = None,
    extended_statistics: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Datapoints (oldest first) for the exact dimension set, one per period with data."""
    from moto.cloudwatch.exceptions import InvalidParameterCombination, InvalidParameterValue

    start, end = _epoch(start_time), _epoch(end_time)
    if start >= end:
        raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
    period = _check_period(period, "Period")
    if not stats and not extended_statistics:
        raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
    if stats and extended_statistics:
        raise InvalidParameterCombination(
            "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both."
        )
    parsed: list[Statistic] = []
    for text in [*(stats or []), *(extended_statistics or [])]:
        try:
            stat = parse_statistic(text)
        except ValueError as exc:
            raise InvalidParameterValue(str(exc)) from None
        if stat.extended != (text in (extended_statistics or [])):
            where = "ExtendedStatistics" if stat.extended else "Statistics"
            raise InvalidParameterValue(f"The statistic {text} belongs in {where}.")
        parsed.append(stat)
    anchor = _align(start, period)
    wanted = math.ceil((end - anchor) / period)
    if wanted > _MAX_STATISTICS_DATAPOINTS:
        raise InvalidParameterCombination(
            f"You have requested up to {wanted} datapoints, which exceeds the limit of "
            f"{_MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by increasing "
            "Period, or decreasing the time range."
        )
    buckets, units = bucket_samples(
        backend, series_key(namespace, metric_name, dimensions), unit=unit, anchor=anchor, end=end, period=period
    )
    points = []
    for bucket_start in sorted(buckets):
        samples = buckets[bucket_start]
        point: dict[str, Any] = {"Timestamp": _moment(bucket_start), "Unit": unit or next(iter(sorted(units)), "None")}
        extended: dict[str, float] = {}
        for stat in parsed:
            value = compute_statistic(stat, samples)
            if value is None:
                continue
            if stat.extended:
                extended[stat.text] = value
            else:
                point[stat.kind] = value
        if extended:
            point["ExtendedStatistics"] = extended
        points.append(point)
    return points


# ---------------------------------------------------------------- GetMetricData and metric math


@dataclass
class Series:
    """A time series of one query: values by period start, on the grid its period defines."""

    points: dict[float, float]
    grid: tuple[float, ...]
    period: int
    label: str


Value = float | Series | list[Series]


class MathError(ValueError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<string>\"[^\"]*\"|'[^']*')|(?P<op>&&|\|\||<=|>=|==|!=|[-+*/^(),<>\[\]]))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise MathError(f"unexpected character {text[position:].strip()[:1]!r} at position {position}")
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over metric math: or > and > comparison > +,- > *,/ > ^ > unary > primary."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def parse(self) -> Any:
        node = self.or_expression()
        if self.position != len(self.tokens):
            raise MathError(f"unexpected {self.tokens[self.position][1]!r}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise MathError("unexpected end of expression")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise MathError(f"expected {expected!r}, found {token[1]!r}")
        self.position += 1
        return token

    def binary(self, operators: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        node = operand()
        while (self.peek() or "").upper() in operators:
            operator = self.take()[1].upper()
            node = ("op", {"AND": "&&", "OR": "||"}.get(operator, operator), node, operand())
        return node

    def or_expression(self) -> Any:
        return self.binary(("||", "OR"), self.and_expression)

    def and_expression(self) -> Any:
        return self.binary(("&&", "AND"), self.comparison)

    def comparison(self) -> Any:
        return self.binary(("<", ">", "<=", ">=", "==", "!="), self.additive)

    def additive(self) -> Any:
        return self.binary(("+", "-"), self.multiplicative)

    def multiplicative(self) -> Any:
        return self.binary(("*", "/"), self.power)

    def power(self) -> Any:
        return self.binary(("^",), self.unary)

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return ("neg", self.unary())
        if self.peek() == "+":
            self.take()
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return ("num", float(text))
        if kind == "string":
            return ("str", text[1:-1])
        if text == "(":
            node = self.or_expression()
            self.take(")")
            return node
        if text == "[":
            items = [self.or_expression()]
            while self.peek() == ",":
                self.take()
                items.append(self.or_expression())
            self.take("]")
            return ("array", items)
        if kind == "name":
            if self.peek() == "(":
                self.take()
                args = []
                if self.peek() != ")":
                    args.append(self.or_expression())
                    while self.peek() == ",":
                        self.take()
                        args.append(self.or_expression())
                self.take(")")
                return ("call", text.upper(), args)
            return ("ref", text)
        raise MathError(f"unexpected {text!r}")


def _arith(operator: str) -> Callable[[float, float], float | None]:
    def divide(a: float, b: float) -> float | None:
        return a / b if b else None

    def power(a: float, b: float) -> float | None:
        try:
            result = a**b
        except (OverflowError, ZeroDivisionError):
            return None
        return result if isinstance(result, float | int) else None

    table: dict[str, Callable[[float, float], float | None]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": divide,
        "^": power,
        "<": lambda a, b: float(a < b),
        ">": lambda a, b: float(a > b),
        "<=": lambda a, b: float(a <= b),
        ">=": lambda a, b: float(a >= b),
        "==": lambda a, b: float(a == b),
        "!=": lambda a, b: float(a != b),
        "&&": lambda a, b: float(bool(a) and bool(b)),
        "||": lambda a, b: float(bool(a) or bool(b)),
    }
    return table[operator]


def _combine(a: Value, b: Value, fn: Callable[[float, float], float | None]) -> Value:
    """Apply fn pointwise; between two series only at timestamps both have (AWS aligns on time)."""
    if isinstance(a, list):
        if isinstance(b, list):
            raise MathError("an operation between two arrays of time series is not supported")
        return [_series_of(_combine(s, b, fn)) for s in a]
    if isinstance(b, list):
        return [_series_of(_combine(a, s, fn)) for s in b]
    if isinstance(a, Series) and isinstance(b, Series):
        points = {t: fn(v, b.points[t]) for t, v in a.points.items() if t in b.points}
        return Series({t: v for t, v in points.items() if v is not None}, a.grid, a.period, a.label)
    if isinstance(a, Series):
        assert not isinstance(b, Series)
        points = {t: fn(v, b) for t, v in a.points.items()}
        return Series({t: v for t, v in points.items() if v is not None}, a.grid, a.period, a.label)
    if isinstance(b, Series):
        points = {t: fn(a, v) for t, v in b.points.items()}
        return Series({t: v for t, v in points.items() if v is not None}, b.grid, b.period, b.label)
    result = fn(a, b)
    if result is None:
        raise MathError("division by zero between scalars")
    return result


def _series_of(value: Value) -> Series:
    if not isinstance(value, Series):
        raise MathError("expected a time series")
    return value


def _aggregate(name: str, values: list[float]) -> float:
    if name == "SUM":
        return sum(values)
    if name == "AVG":
        return sum(values) / len(values)
    if name == "MIN":
        return min(values)
    if name == "MAX":
        return max(values)
    if name == "STDDEV":
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    raise MathError(f"unknown aggregate {name}")


_UNARY: dict[str, Callable[[float], float]] = {
    "ABS": abs,
    "CEIL": lambda v: float(math.ceil(v)),
    "FLOOR": lambda v: float(math.floor(v)),
}


class _Evaluator:
    """Evaluates the queries of one GetMetricData call, each id at most once, in dependency order."""

    def __init__(self, backend: Any, queries: list[dict[str, Any]], start: float, end: float) -> None:
        self.backend = backend
        self.queries = {q["Id"]: q for q in queries}
        self.order = [q["Id"] for q in queries]
        self.start, self.end = start, end
        self.results: dict[str, Value] = {}
        self.active: set[str] = set()

    def default_period(self) -> int:
        periods = [int(q["MetricStat"]["Period"]) for q in self.queries.values() if "MetricStat" in q]
        return min(periods) if periods else 60

    def value(self, query_id: str) -> Value:
        if query_id in self.results:
            return self.results[query_id]
        if query_id not in self.queries:
            raise MathError(f"unknown metric id {query_id!r}")
        if query_id in self.active:
            raise MathError(f"circular reference through {query_id!r}")
        self.active.add(query_id)
        query = self.queries[query_id]
        try:
            if "MetricStat" in query:
                result: Value = self.metric_stat(query)
            else:
                result = self.expression(query)
        finally:
            self.active.discard(query_id)
        self.results[query_id] = result
        return result

    def metric_stat(self, query: dict[str, Any]) -> Series:
        metric_stat = query["MetricStat"]
        metric = metric_stat["Metric"]
        period = _check_period(metric_stat.get("Period"), f"MetricStat.Period of {query['Id']}")
        try:
            stat = parse_statistic(metric_stat["Stat"])
        except ValueError as exc:
            from moto.cloudwatch.exceptions import InvalidParameterValue

            raise InvalidParameterValue(f"Query {query['Id']}: {exc}") from None
        anchor = _align(self.start, period)
        key = series_key(metric["Namespace"], metric["MetricName"], metric.get("Dimensions"))
        buckets, _ = bucket_samples(
            self.backend, key, unit=metric_stat.get("Unit"), anchor=anchor, end=self.end, period=period
        )
        points = {}
        for bucket_start, samples in buckets.items():
            value = compute_statistic(stat, samples)
            if value is not None:
                points[bucket_start] = value
        grid = tuple(anchor + k * period for k in range(max(0, math.ceil((self.end - anchor) / period))))
        return Series(points, grid, period, query.get("Label") or metric["MetricName"])

    def expression(self, query: dict[str, Any]) -> Value:
        text = query["Expression"].strip()
        head = text.split("(", 1)[0].strip().upper()
        if head == "SEARCH" or text.upper().startswith("SELECT"):
            raise MathError(
                f"{'SEARCH' if head == 'SEARCH' else 'Metrics Insights (SELECT)'} expressions are not supported "
                "by the local cloud; query the metrics by their exact dimensions instead"
            )
        value = self.node(_Parser(text).parse())
        if isinstance(value, Series):
            return Series(value.points, value.grid, value.period, query.get("Label") or query["Id"])
        return value

    def node(self, node: Any) -> Value:
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "str":
            raise MathError("a string is only valid as an argument of METRICS()")
        if kind == "ref":
            return self.value(node[1])
        if kind == "neg":
            return _combine(self.node(node[1]), -1.0, lambda a, b: a * b)
        if kind == "op":
            return _combine(self.node(node[2]), self.node(node[3]), _arith(node[1]))
        if kind == "array":
            items: list[Series] = []
            for item in node[1]:
                value = self.node(item)
                items.extend(value if isinstance(value, list) else [_series_of(value)])
            return items
        if kind == "call":
            return self.call(node[1], node[2])
        raise MathError(f"cannot evaluate {kind}")

    def call(self, name: str, args: list[Any]) -> Value:
        if name == "METRICS":
            text = args[0][1] if args and args[0][0] == "str" else ""
            return [
                _series_of(self.value(i))
                for i in self.order
                if "MetricStat" in self.queries[i] and text in i and i not in self.active
            ]
        if name in ("SEARCH", "ANOMALY_DETECTION_BAND", "INSIGHT_RULE_METRIC", "SERVICE_QUOTA", "LAMBDA"):
            raise MathError(f"{name}() is not supported by the local cloud")
        if name in ("SUM", "AVG", "MIN", "MAX", "STDDEV"):
            if len(args) != 1:
                raise MathError(f"{name}() takes one argument")
            value = self.node(args[0])
            if isinstance(value, Series):
                return _aggregate(name, list(value.points.values())) if value.points else math.nan
            if isinstance(value, list):
                if not value:
                    raise MathError(f"{name}() of an empty array")
                stamps = sorted({t for s in value for t in s.points})
                points = {t: _aggregate(name, [s.points[t] for s in value if t in s.points]) for t in stamps}
                return Series(points, value[0].grid, value[0].period, name)
            return value
        if name == "FILL":
            return self.fill(args)
        if name == "IF":
            return self.if_(args)
        if name in ("ABS", "CEIL", "FLOOR"):
            fn = _UNARY[name]
            return _combine(self.node(args[0]), 0.0, lambda a, _b: fn(a))
        if name == "PERIOD":
            return float(_series_of(self.node(args[0])).period)
        raise MathError(f"unknown or unsupported function {name}()")

    def fill(self, args: list[Any]) -> Value:
        if len(args) != 2:
            raise MathError("FILL() takes two arguments")
        target = self.node(args[0])
        how = args[1][1].upper() if args[1][0] == "ref" and args[1][1].upper() in ("REPEAT", "LINEAR") else None
        filler = None if how else self.node(args[1])

        def one(series: Series) -> Series:
            points = dict(series.points)
            known = sorted(points)
            for t in series.grid:
                if t in points:
                    continue
                if how is None:
                    fill_value = filler.points.get(t) if isinstance(filler, Series) else filler
                    if isinstance(fill_value, float | int):
                        points[t] = float(fill_value)
                    continue
                before = [k for k in known if k < t]
                after = [k for k in known if k > t]
                if how == "REPEAT" and before:
                    points[t] = series.points[before[-1]]
                elif how == "LINEAR" and before and after:
                    t0, t1 = before[-1], after[0]
                    v0, v1 = series.points[t0], series.points[t1]
                    points[t] = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            return Series(points, series.grid, series.period, series.label)

        if isinstance(target, list):
            return [one(s) for s in target]
        return one(_series_of(target))

    def if_(self, args: list[Any]) -> Value:
        if len(args) not in (2, 3):
            raise MathError("IF() takes two or three arguments")
        condition = _series_of(self.node(args[0]))
        then = self.node(args[1])
        otherwise = self.node(args[2]) if len(args) == 3 else None

        def pick(value: Value | None, t: float) -> float | None:
            if isinstance(value, Series):
                return value.points.get(t)
            if isinstance(value, float | int):
                return float(value)
            return None

        points = {}
        for t, c in condition.points.items():
            chosen = pick(then if c else otherwise, t)
            if chosen is not None:
                points[t] = chosen
        return Series(points, condition.grid, condition.period, condition.label)


_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def get_metric_data(
    backend: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime, scan_by: str | None = None
) -> list[dict[str, Any]]:
    """MetricDataResults for the queries that return data, newest first unless ScanBy says otherwise."""
    from moto.cloudwatch.exceptions import ValidationError

    start, end = _epoch(start_time), _epoch(end_time)
    if start > end:
        raise ValidationError("The parameter EndTime must be greater than StartTime.")
    if start == end:
        raise ValidationError("The parameter StartTime must not equal parameter EndTime.")
    seen: set[str] = set()
    for query in queries:
        query_id = query.get("Id", "")
        if not _QUERY_ID.match(query_id):
            raise ValidationError(
                f"Invalid metric data query id {query_id!r}: it must start with a lowercase letter and "
                "contain only letters, numbers and underscores."
            )
        if query_id in seen:
            raise ValidationError(f"The values for parameter id in MetricDataQueries are not unique: {query_id}")
        seen.add(query_id)
        if ("MetricStat" in query) == ("Expression" in query):
            raise ValidationError(f"Query {query_id}: exactly one of MetricStat and Expression must be given.")
    evaluator = _Evaluator(backend, queries, start, end)
    results = []
    for query in queries:
        if query.get("ReturnData") is False:
            continue
        try:
            value = evaluator.value(query["Id"])
        except MathError as exc:
            raise ValidationError(f"Error in expression {query['Id']!r}: {exc}") from None
        if isinstance(value, float | int):
            # A scalar result spreads over the period grid of the request's metrics.
            period = evaluator.default_period()
            anchor = _align(start, period)
            grid = tuple(anchor + k * period for k in range(math.ceil((end - anchor) / period)))
            points = {t: float(value) for t in grid} if math.isfinite(value) else {}
            value = Series(points, grid, period, query.get("Label") or query["Id"])
        for series in value if isinstance(value, list) else [value]:
            stamps = sorted(series.points, reverse=(scan_by or "TimestampDescending") == "TimestampDescending")
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label") or series.label,
                    "Timestamps": [_moment(t) for t in stamps],
                    "Values": [series.points[t] for t in stamps],
                    "StatusCode": "Complete",
                    "Messages": [],
                }
            )
    return results


# ---------------------------------------------------------------- alarms


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _record(backend: Any, alarm: Any, item_type: str, summary: str, data: dict[str, Any], *, when: datetime) -> None:
    store = _store(backend)
    with store.lock:
        store.history.append(
            {
                "AlarmName": alarm.name,
                "AlarmType": "CompositeAlarm" if getattr(alarm, "rule", None) else "MetricAlarm",
                "Timestamp": when,
                "HistoryItemType": item_type,
                "HistorySummary": summary,
                "HistoryData": json.dumps(data),
            }
        )


def _transition(
    backend: Any,
    alarm: Any,
    *,
    new_state: str,
    reason: str,
    reason_data: str | None,
    when: datetime,
    already_applied: tuple[str, str] | None = None,
) -> None:
    """Move an alarm to a state (or record a state moto already applied), with history and actions."""
    with _alarm_lock:
        if already_applied is None:
            old_state, old_reason = alarm.state_value, alarm.state_reason
            alarm.update_state(reason, reason_data or "{}", new_state)
        else:
            old_state, old_reason = already_applied
        alarm.state_updated_timestamp = when
        if old_state != new_state:
            alarm.state_transitioned_timestamp = when
        new_state_data: dict[str, Any] = {"stateValue": new_state, "stateReason": reason}
        if reason_data:
            try:
                new_state_data["stateReasonData"] = json.loads(reason_data)
            except ValueError:
                new_state_data["stateReasonData"] = reason_data
        _record(
            backend,
            alarm,
            "StateUpdate",
            f"Alarm updated from {old_state} to {new_state}",
            {
                "version": "1.0",
                "oldState": {"stateValue": old_state, "stateReason": old_reason},
                "newState": new_state_data,
            },
            when=when,
        )
    if old_state != new_state and alarm.actions_enabled:
        actions = {
            "ALARM": alarm.alarm_actions,
            "OK": alarm.ok_actions,
            "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
        }[new_state]
        for action in actions or []:
            _run_action(backend, alarm, action, old_state, when)


def _run_action(backend: Any, alarm: Any, action: str, old_state: str, when: datetime) -> None:
    """Publish the alarm's state change to an SNS topic as CloudWatch does; other actions are skipped."""
    if not action.startswith("arn:") or action.split(":")[2] != "sns":
        return
    from moto.sns.models import sns_backends

    region, account = action.split(":")[3:5]
    region_name = _REGION_NAMES.get(alarm.region_name, alarm.region_name)
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _iso(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _iso(when),
        "Region": region_name,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
        "OKActions": alarm.ok_actions,
        "AlarmActions": alarm.alarm_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.extended_statistic else "Statistic",
            "Statistic": (alarm.statistic or "").upper() if not alarm.extended_statistic else None,
            "ExtendedStatistic": alarm.extended_statistic,
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
            "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile or "",
        },
    }
    subject = f'{alarm.state_value}: "{alarm.name}" in {region_name}'
    if len(subject) > 100:
        subject = subject[:97] + "..."
    try:
        sns_backends[account][region].publish(json.dumps(message), arn=action, subject=subject)
    except Exception as exc:  # a missing topic must not stop the evaluation of other alarms
        _record(backend, alarm, "Action", f"Failed to execute action {action}", {"error": str(exc)}, when=when)
        return
    _record(backend, alarm, "Action", f"Successfully executed action {action}", {"actionState": "Succeeded"}, when=when)


def _alarm_queries(alarm: Any) -> list[dict[str, Any]]:
    """The alarm's Metrics back in GetMetricData's request shape (moto keeps them as objects)."""
    queries = []
    for q in alarm.metric_data_queries:
        query: dict[str, Any] = {"Id": q.id, "ReturnData": q.return_data not in (False, "false", "False")}
        if q.label:
            query["Label"] = q.label
        if q.expression:
            query["Expression"] = q.expression
        elif q.metric_stat is not None:
            ms = q.metric_stat
            query["MetricStat"] = {
                "Metric": {
                    "Namespace": ms.metric.namespace,
                    "MetricName": ms.metric.metric_name,
                    "Dimensions": [{"Name": d.name, "Value": d.value} for d in ms.metric.dimensions],
                },
                "Period": ms.period,
                "Stat": ms.stat,
            }
            if ms.unit:
                query["MetricStat"]["Unit"] = ms.unit
        queries.append(query)
    return queries


def alarm_period(alarm: Any) -> int:
    if alarm.period:
        return int(alarm.period)
    periods = [int(q.metric_stat.period) for q in alarm.metric_data_queries if q.metric_stat and q.metric_stat.period]
    return max(periods) if periods else 60


def _settle(period: int) -> float:
    """How long a period must have been closed before an alarm judges it.

    Publishers send a period's data just after it closes (the endpoint metrics flush every
    quarter period); judging the period a moment later keeps that lag from reading as
    missing data and flapping the alarm.
    """
    return min(period, 60) / 2


def alarm_values(backend: Any, alarm: Any, now: datetime) -> list[tuple[float, float | None]]:
    """The alarm's last EvaluationPeriods values (oldest first), None where a period has no value."""
    period = alarm_period(alarm)
    count = int(alarm.evaluation_periods or 1)
    window_end = math.floor((_epoch(now) - _settle(period)) / period) * period
    window_start = window_end - count * period
    stamps = [window_start + k * period for k in range(count)]
    if alarm.metric_data_queries:
        queries = _alarm_queries(alarm)
        returned = [q for q in queries if q["ReturnData"]] or queries[-1:]
        for q in queries:
            q["ReturnData"] = q is returned[-1]
        results = get_metric_data(backend, queries, _moment(window_start), _moment(window_end), "TimestampAscending")
        points = {_epoch(t): v for r in results[:1] for t, v in zip(r["Timestamps"], r["Values"], strict=True)}
    else:
        stat = parse_statistic(alarm.extended_statistic or alarm.statistic)
        key = series_key(
            alarm.namespace, alarm.metric_name, [{"Name": d.name, "Value": d.value} for d in alarm.dimensions]
        )
        buckets, _ = bucket_samples(backend, key, unit=alarm.unit, anchor=window_start, end=window_end, period=period)
        points = {t: v for t, s in buckets.items() if (v := compute_statistic(stat, s)) is not None}
    return [(t, points.get(t)) for t in stamps]


def _format_stamp(epoch: float) -> str:
    return _moment(epoch).strftime("%d/%m/%y %H:%M:%S")


def evaluate_alarm(backend: Any, alarm: Any, now: datetime) -> str:
    """Evaluate one metric alarm at virtual time ``now``; returns its (possibly new) state."""
    if alarm.comparison_operator not in _COMPARISONS:
        return alarm.state_value  # anomaly-detection bands are not evaluated locally
    values = alarm_values(backend, alarm, now)
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods or 1)
    treat = alarm.treat_missing_data or "missing"
    threshold = float(alarm.threshold)
    state, breaching = decide_alarm_state([v for _, v in values], alarm.comparison_operator, threshold, needed, treat)
    if state is None or state == alarm.state_value:
        return alarm.state_value
    present = [(t, v) for t, v in values if v is not None]
    shown = ", ".join(f"{v} ({_format_stamp(t)})" for t, v in reversed(present))
    words = _COMPARISON_WORDS[alarm.comparison_operator]
    if state == "INSUFFICIENT_DATA":
        reason = f"Insufficient Data: {len(values)} datapoint{'s were' if len(values) != 1 else ' was'} unknown."
    elif state == "ALARM":
        reason = (
            f"Threshold Crossed: {breaching} out of the last {len(values)} datapoints [{shown}] "
            f"{'was' if breaching == 1 else 'were'} {words} the threshold ({threshold}) "
            f"(minimum {needed} datapoint{'s' if needed != 1 else ''} for {alarm.state_value} -> ALARM transition)."
        )
    else:
        reason = (
            f"Threshold Crossed: {len(values) - breaching} out of the last {len(values)} datapoints [{shown}] "
            f"{'was' if len(values) - breaching == 1 else 'were'} not {words} the threshold ({threshold}) "
            f"(minimum 1 datapoint for {alarm.state_value} -> OK transition)."
        )
    period = alarm_period(alarm)
    reason_data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _iso(now),
        "startDate": _iso(_moment(values[0][0])),
        "period": period,
        "recentDatapoints": [v for _, v in present],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(_moment(t)), **({"value": v} if v is not None else {})} for t, v in reversed(values)
        ],
    }
    if not alarm.metric_data_queries:
        reason_data["statistic"] = alarm.extended_statistic or alarm.statistic
        reason_data["unit"] = alarm.unit
    _transition(backend, alarm, new_state=state, reason=reason, reason_data=json.dumps(reason_data), when=now)
    return state


def _backends() -> list[Any]:
    from moto.cloudwatch.models import cloudwatch_backends

    found = []
    for account in list(dict.values(cloudwatch_backends)):
        found.extend(list(dict.values(account)))
    return found


class AlarmEvaluator:
    """Evaluates every metric alarm once per min(Period, 60) virtual seconds, like CloudWatch's minute ticks."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self._due: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-alarms", daemon=True)

    def start(self) -> AlarmEvaluator:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def evaluate_due(self) -> None:
        now = self.cloud.clock.now()
        epoch = _epoch(now)
        live: set[int] = set()
        for backend in _backends():
            # getattr: moto's in-process mocks (handler tests in the same pytest session) reset the backends
            # this thread reads, leaving one half-built for a moment
            for alarm in list(getattr(backend, "alarms", {}).values()):
                if getattr(alarm, "rule", None):
                    continue  # composite alarms are not evaluated locally
                live.add(id(alarm))
                if self._due.get(id(alarm), -math.inf) > epoch:
                    continue
                self._due[id(alarm)] = epoch + min(alarm_period(alarm), 60)
                try:
                    evaluate_alarm(backend, alarm, now)
                except Exception:  # one broken alarm must not stop the others
                    log.exception("evaluating alarm %s failed", alarm.name)
        for key in set(self._due) - live:
            del self._due[key]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.evaluate_due()
            self._stop.wait(min(0.25, max(0.02, self.cloud.clock.wall_seconds(1.0))))


# ---------------------------------------------------------------- DescribeAlarmHistory


def describe_alarm_history(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    store = _store(backend)
    with store.lock:
        items = list(store.history)
    name = params.get("AlarmName")
    types = params.get("AlarmTypes") or []
    item_type = params.get("HistoryItemType")
    start = params.get("StartDate")
    end = params.get("EndDate")
    items = [
        i
        for i in items
        if (not name or i["AlarmName"] == name)
        and (not types or i["AlarmType"] in types)
        and (not item_type or i["HistoryItemType"] == item_type)
        and (start is None or _epoch(i["Timestamp"]) >= _epoch(start))
        and (end is None or _epoch(i["Timestamp"]) <= _epoch(end))
    ]
    if (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending":
        items.reverse()
    offset = int(params.get("NextToken") or 0)
    limit = int(params.get("MaxRecords") or 100)
    page = items[offset : offset + limit]
    result: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + limit < len(items):
        result["NextToken"] = str(offset + limit)
    return result


# ---------------------------------------------------------------- patches


def _valid_for_alarms(stat: Statistic) -> bool:
    """PutMetricAlarm's documented set, so an alarm that AWS would refuse fails locally too.

    pNN, tmNN/tcNN/tsNN/wmNN, IQM, PR(n:m) on values, and TM/TC/TS/WM(X%:X%) with 10 <= X <= 90.
    """
    if stat.kind in {"p", "PR"} or stat.text == "IQM":
        return True
    if stat.kind not in ("TM", "TC", "TS", "WM"):
        return False
    if stat.text[:2].islower():
        return True
    bounds = (stat.lower, stat.upper)
    return all(b is not None and b.percent and 10 <= b.value <= 90 for b in bounds)


def _check_alarm_statistics(arguments: dict[str, Any]) -> str | None:
    """Validate an alarm's Statistic / ExtendedStatistic as AWS does; returns the extended one."""
    from moto.cloudwatch.exceptions import InvalidParameterValue

    extended = arguments.get("extended_statistic")
    if extended:
        try:
            valid = _valid_for_alarms(parse_statistic(extended))
        except ValueError:
            valid = False
        if not valid:
            raise InvalidParameterValue(f"The value {extended} for parameter ExtendedStatistic is not supported.")
    statistic = arguments.get("statistic")
    if statistic and statistic not in SIMPLE_STATISTICS:
        raise InvalidParameterValue(f"The value {statistic} for parameter Statistic is not supported.")
    if not arguments.get("rule") and not arguments.get("metric_data_queries") and not (statistic or extended):
        raise InvalidParameterValue("Exactly one of Statistic or ExtendedStatistic must be specified.")
    return extended


def _patch_alarms() -> None:
    """Alarms start INSUFFICIENT_DATA, take every extended statistic, and keep a history."""
    from moto.cloudwatch.models import CloudWatchBackend

    original_put_alarm = CloudWatchBackend.put_metric_alarm
    signature = inspect.signature(original_put_alarm)

    @functools.wraps(original_put_alarm)
    def put_metric_alarm(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        extended = _check_alarm_statistics(arguments)
        arguments["extended_statistic"] = None  # moto accepts only pNN; we keep the full set below
        previous: Any = self.alarms.get(arguments["name"])
        now = _now()
        alarm: Any = original_put_alarm(*bound.args, **bound.kwargs)
        alarm.extended_statistic = extended
        alarm.configuration_updated_timestamp = now
        if previous is not None:  # AWS keeps an updated alarm's state
            alarm.state_value = previous.state_value
            alarm.state_reason = previous.state_reason
            alarm.state_reason_data = previous.state_reason_data
            alarm.state_updated_timestamp = previous.state_updated_timestamp
            alarm.state_transitioned_timestamp = getattr(previous, "state_transitioned_timestamp", now)
            alarm.history = previous.history
        else:
            alarm.state_value = "INSUFFICIENT_DATA"
            alarm.state_reason = "Unchecked: Initial alarm creation"
            alarm.state_updated_timestamp = now
            alarm.state_transitioned_timestamp = now
        verb = "updated" if previous is not None else "created"
        _record(
            self,
            alarm,
            "ConfigurationUpdate",
            f'Alarm "{alarm.name}" {verb}',
            {"version": "1.0", "type": "Update" if previous is not None else "Create"},
            when=now,
        )
        return alarm

    original_set_state = CloudWatchBackend.set_alarm_state
    CloudWatchBackend.put_metric_alarm = put_metric_alarm  # type: ignore[method-assign]

    @functools.wraps(original_set_state)
    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        alarm = self.alarms.get(alarm_name)
        before = (alarm.state_value, alarm.state_reason) if alarm is not None else ("", "")
        with _alarm_lock:
            original_set_state(self, alarm_name, reason, reason_data, state_value)
            _transition(
                self,
                self.alarms[alarm_name],
                new_state=state_value,
                reason=reason,
                reason_data=reason_data,
                when=_now(),
                already_applied=before,
            )

    CloudWatchBackend.set_alarm_state = set_alarm_state  # type: ignore[method-assign]


def _patch_metrics() -> None:
    """Exact storage and queries: put, GetMetricData and GetMetricStatistics."""
    from moto.cloudwatch.exceptions import InvalidParameterValue
    from moto.cloudwatch.models import CloudWatchBackend

    @functools.wraps(CloudWatchBackend.put_metric_data)
    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        for i, metric in enumerate(metric_data):
            self._validate_parameters_put_metric_data(metric, i + 1)
            if len(metric.get("Values") or []) > 150:
                raise InvalidParameterValue(
                    f"The collection MetricData.member.{i + 1}.Values must not have more than 150 items."
                )
        _put(self, namespace, metric_data)

    @functools.wraps(CloudWatchBackend.get_metric_data)
    def get_metric_data_method(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        return get_metric_data(self, queries, start_time, end_time, scan_by)

    @functools.wraps(CloudWatchBackend.get_metric_statistics)
    def get_metric_statistics_method(  # noqa: PLR0917 - moto's positional signature
        self: Any,
        namespace: str,
        metric_name: str,
        start_time: datetime,
        end_time: datetime,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None = None,
        extended_statistics: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        return get_metric_statistics(
            self,
            namespace=namespace,
            metric_name=metric_name,
            start_time=start_time,
            end_time=end_time,
            period=period,
            stats=stats,
            dimensions=dimensions,
            unit=unit,
            extended_statistics=extended_statistics,
        )

    CloudWatchBackend.put_metric_data = put_metric_data  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = get_metric_data_method  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_statistics = get_metric_statistics_method  # type: ignore[method-assign, assignment]


def _patch_responses() -> None:
    """GetMetricStatistics' handler drops ExtendedStatistics; DescribeAlarmHistory has no handler."""
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core.responses import ActionResult

    original = CloudWatchResponse.get_metric_statistics

    @functools.wraps(original)
    def get_metric_statistics(self: Any) -> Any:
        datapoints = self.cloudwatch_backend.get_metric_statistics(
            self._get_param("Namespace"),
            self._get_param("MetricName"),
            self._get_param("StartTime"),
            self._get_param("EndTime"),
            self._get_param("Period"),
            self._get_param("Statistics", []),
            self._get_param("Dimensions", []),
            unit=self._get_param("Unit"),
            extended_statistics=self._get_param("ExtendedStatistics", []),
        )
        return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

    def describe_alarm_history_action(self: Any) -> Any:
        return ActionResult(describe_alarm_history(self.cloudwatch_backend, self._get_params()))

    describe_alarm_history_action.__name__ = "describe_alarm_history"

    CloudWatchResponse.get_metric_statistics = get_metric_statistics  # type: ignore[method-assign]
    CloudWatchResponse.describe_alarm_history = describe_alarm_history_action  # type: ignore[attr-defined]


def install(cloud: LocalCloud) -> AlarmEvaluator:
    """Patch moto's CloudWatch (once per process) and start alarm evaluation for ``cloud``.

    Idempotent: calling it again for the same cloud returns the running evaluator; for
    another cloud it stops the old evaluator and starts one on the new cloud's clock.
    """
    if not _state["installed"]:
        _state["installed"] = True
        _patch_alarms()
        _patch_metrics()
        _patch_responses()
    evaluator: AlarmEvaluator | None = _state["evaluator"]
    if evaluator is not None and evaluator.cloud is cloud and evaluator.running:
        return evaluator
    if evaluator is not None:
        evaluator.stop()
    _state["cloud"] = cloud
    _state["evaluator"] = AlarmEvaluator(cloud).start()
    return _state["evaluator"]


def stop() -> None:
    """Stop alarm evaluation and detach the cloud; the patches stay (moto's backends are process-global)."""
    evaluator: AlarmEvaluator | None = _state["evaluator"]
    if evaluator is not None:
        evaluator.stop()
    _state["evaluator"] = None
    _state["cloud"] = None
