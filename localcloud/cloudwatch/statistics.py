"""CloudWatch's statistics as AWS defines them: SampleCount to Maximum, pNN, TM, TC, TS, WM, PR and IQM."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

SIMPLE_STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")


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
