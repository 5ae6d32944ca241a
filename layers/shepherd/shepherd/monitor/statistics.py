"""statistics.json as Model Monitor writes it ("Schema for Statistics (statistics.json file)", SageMaker guide).

Types are inferred as Model Monitor's engine (Deequ) does: a column is String if any present value is not a number,
else Fractional if any value has a fraction or exponent, else Integral; with no present value it is Unknown.
Besides the documented fields each feature carries ``data_type_counts`` (present values per type; the page allows
custom statistics), which the data type check needs to say what share of values still has the baseline's type.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from shepherd.monitor.dataset import Dataset
from shepherd.monitor.sketch import Sketch

VERSION = 0.0
BUCKETS = 10  # "By default, the distribution is materialized in 10 buckets" (the schema page)
MAX_CATEGORIES = 1000  # a free-text column keeps its most frequent values only; distinct_count stays exact

INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"
NUMERICAL = frozenset({INTEGRAL, FRACTIONAL})

_INTEGRAL = re.compile(r"^[+-]?\d+$")
_FRACTIONAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+|\.\d+[eE][+-]?\d+)$")


def data_type(cell: str) -> str:
    """Integral, Fractional or String: the type of one present cell."""
    text = cell.strip()
    if _INTEGRAL.match(text):
        return INTEGRAL
    if _FRACTIONAL.match(text) and math.isfinite(float(text)):
        return FRACTIONAL
    return STRING


def inferred_type(counts: dict[str, int]) -> str:
    """The column's type from its present values' types (Deequ's rule, Boolean read as String)."""
    if counts.get(STRING):
        return STRING
    if counts.get(FRACTIONAL):
        return FRACTIONAL
    if counts.get(INTEGRAL):
        return INTEGRAL
    return UNKNOWN


def _common(present: int, missing: int) -> dict[str, int]:
    return {"num_present": present, "num_missing": missing}


def _numerical(values: np.ndarray, missing: int, sketch: Sketch | None = None) -> dict[str, Any]:
    sketch = sketch or Sketch.of(values)
    low, high = float(values.min()), float(values.max())
    return {
        "common": _common(len(values), missing),
        "mean": float(values.mean()),
        "sum": float(values.sum()),
        "std_dev": float(values.std()),
        "min": low,
        "max": high,
        "distribution": {"kll": {"buckets": sketch.buckets(low, high, BUCKETS), "sketch": sketch.document()}},
    }


def _string(counts: Counter[str], missing: int) -> dict[str, Any]:
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_CATEGORIES]
    return {
        "common": _common(sum(counts.values()), missing),
        "distinct_count": len(counts),
        "distribution": {"categorical": {"buckets": [{"value": value, "count": count} for value, count in frequent]}},
    }


def _feature(name: str, cells: list[str | None]) -> dict[str, Any]:
    present = [cell for cell in cells if cell is not None]
    missing = len(cells) - len(present)
    types = Counter(data_type(cell) for cell in present)
    kind = inferred_type(types)
    feature: dict[str, Any] = {"name": name, "inferred_type": kind, "data_type_counts": dict(sorted(types.items()))}
    if kind in NUMERICAL:
        feature["numerical_statistics"] = _numerical(np.array([float(cell) for cell in present]), missing)
    else:
        feature["string_statistics"] = _string(Counter(present), missing)
    return feature


def profile(dataset: Dataset, *, dataset_name: str | None = None) -> dict[str, Any]:
    """The statistics.json document of a dataset: per feature its inferred type, counts and KLL sketch."""
    summary: dict[str, Any] = {"item_count": dataset.item_count}
    if dataset_name is not None:
        summary["name"] = dataset_name
    return {
        "version": VERSION,
        "dataset": summary,
        "features": [_feature(name, cells) for name, cells in dataset.columns.items()],
    }


def statistics_of(feature: dict[str, Any]) -> dict[str, Any]:
    """A feature's numerical_statistics or string_statistics, whichever it has."""
    return feature.get("numerical_statistics") or feature.get("string_statistics") or {}


def completeness(feature: dict[str, Any]) -> float:
    """The share of rows where the feature is present (1.0 for an empty dataset)."""
    common = statistics_of(feature).get("common") or {}
    present, missing = int(common.get("num_present", 0)), int(common.get("num_missing", 0))
    return present / (present + missing) if present + missing else 1.0


def type_counts(feature: dict[str, Any]) -> dict[str, int]:
    """Present values per data type; for a document without them, all present values count as the inferred type."""
    if isinstance(feature.get("data_type_counts"), dict):
        return {kind: int(count) for kind, count in feature["data_type_counts"].items()}
    present = int((statistics_of(feature).get("common") or {}).get("num_present", 0))
    return {feature.get("inferred_type", UNKNOWN): present} if present else {}


def categories(feature: dict[str, Any]) -> Counter[str]:
    """A feature's values and counts: its categorical buckets, or a numerical sketch's items with their weights."""
    if "string_statistics" in feature:
        buckets = feature["string_statistics"].get("distribution", {}).get("categorical", {}).get("buckets", [])
        return Counter({str(bucket["value"]): int(bucket["count"]) for bucket in buckets})
    sketch = sketch_of(feature)
    counts: Counter[str] = Counter()
    if sketch is not None:
        items, weights = sketch.weighted()
        integral = feature.get("inferred_type") == INTEGRAL
        for item, weight in zip(items, weights, strict=True):
            counts[str(int(item)) if integral else repr(float(item))] += int(weight)
    return counts


def sketch_of(feature: dict[str, Any]) -> Sketch | None:
    """A numerical feature's KLL sketch, if its document has one."""
    document = (feature.get("numerical_statistics") or {}).get("distribution", {}).get("kll", {}).get("sketch")
    return Sketch.from_document(document) if document else None


def _absent(name: str, rows: int) -> dict[str, Any]:
    """A feature the other part lacked: all of its rows missing."""
    return {
        "name": name,
        "inferred_type": UNKNOWN,
        "data_type_counts": {},
        "string_statistics": _string(Counter(), rows),
    }


def _merge_feature(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    types = Counter(type_counts(a)) + Counter(type_counts(b))
    kind = inferred_type(types)
    merged: dict[str, Any] = {"name": a["name"], "inferred_type": kind, "data_type_counts": dict(sorted(types.items()))}
    missing = int(statistics_of(a)["common"]["num_missing"]) + int(statistics_of(b)["common"]["num_missing"])
    if kind in NUMERICAL:
        merged["numerical_statistics"] = _merge_numerical(a, b, missing)
    else:
        # A part that was numerical contributes its sketch's items, so its values are approximate here.
        merged["string_statistics"] = _string(categories(a) + categories(b), missing)
        parts = [statistics_of(a).get("distinct_count"), statistics_of(b).get("distinct_count")]
        merged["string_statistics"]["distinct_count"] = max(
            [merged["string_statistics"]["distinct_count"], *[int(part) for part in parts if part is not None]]
        )
    return merged


def _merge_numerical(a: dict[str, Any], b: dict[str, Any], missing: int) -> dict[str, Any]:
    parts = [statistics_of(f) for f in (a, b) if f.get("inferred_type") in NUMERICAL]
    sketches = [sketch for f in (a, b) if (sketch := sketch_of(f)) is not None]
    sketch = sketches[0] if len(sketches) == 1 else sketches[0].merge(sketches[1])
    present = sum(int(part["common"]["num_present"]) for part in parts)
    total = sum(float(part["sum"]) for part in parts)
    mean = total / present
    # Pooled population variance: E[x²] of the union minus its squared mean.
    square = sum(int(p["common"]["num_present"]) * (float(p["std_dev"]) ** 2 + float(p["mean"]) ** 2) for p in parts)
    low, high = min(float(p["min"]) for p in parts), max(float(p["max"]) for p in parts)
    return {
        "common": _common(present, missing),
        "mean": mean,
        "sum": total,
        "std_dev": math.sqrt(max(square / present - mean**2, 0.0)),
        "min": low,
        "max": high,
        "distribution": {"kll": {"buckets": sketch.buckets(low, high, BUCKETS), "sketch": sketch.document()}},
    }


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The statistics of the union of two profiled datasets (sketches merged), for incremental runs."""
    rows_a, rows_b = int(a["dataset"]["item_count"]), int(b["dataset"]["item_count"])
    first = {feature["name"]: feature for feature in a["features"]}
    second = {feature["name"]: feature for feature in b["features"]}
    names: Iterable[str] = dict.fromkeys([*first, *second])
    features = [
        _merge_feature(first.get(name) or _absent(name, rows_a), second.get(name) or _absent(name, rows_b))
        for name in names
    ]
    return {"version": VERSION, "dataset": {**a["dataset"], "item_count": rows_a + rows_b}, "features": features}
