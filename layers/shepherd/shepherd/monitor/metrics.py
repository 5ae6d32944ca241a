"""The per-feature CloudWatch metrics Model Monitor emits ("CloudWatch Metrics for Deployed Models", SageMaker guide).

That page names, for every feature, ``feature_non_null_{feature_name}`` (completeness) and
``feature_baseline_drift_{feature_name}`` (the baseline drift distance), and for numerical features
``feature_data_{feature_name}`` queried by Max, Min, Sum, SampleCount and Average, i.e. published as a statistic set.
It documents no per-type metrics (no ``feature_integral_…``), so none are emitted. Nothing is emitted when the
constraints' ``emit_metrics`` is Disabled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shepherd.monitor.constraints import ENABLED, monitoring_config
from shepherd.monitor.distance import feature_distance
from shepherd.monitor.statistics import NUMERICAL, completeness


def feature_metrics(
    current: dict[str, Any],
    baseline: dict[str, Any],
    constraints: dict[str, Any],
    *,
    overrides: Mapping[str, object] | None = None,
) -> dict[str, float]:
    """Metric name → value for each feature, e.g. ``feature_baseline_drift_<feature>``."""
    if monitoring_config(constraints, overrides)["emit_metrics"] != ENABLED:
        return {}
    baselined = {feature["name"]: feature for feature in baseline["features"]}
    constrained = {feature["name"]: feature for feature in constraints["features"]}
    metrics: dict[str, float] = {}
    for feature in current["features"]:
        name = feature["name"]
        metrics[f"feature_non_null_{name}"] = completeness(feature)
        config = monitoring_config(constraints, overrides, feature=constrained.get(name))
        distribution = config["distribution_constraints"]
        if name not in baselined or distribution["perform_comparison"] != ENABLED:
            continue
        measured = feature_distance(
            baselined[name],
            feature,
            method=distribution["comparison_method"],
            categorical_method=distribution["categorical_drift_method"],
        )
        if measured is not None and not math.isnan(measured[1]):
            metrics[f"feature_baseline_drift_{name}"] = measured[1]
    return metrics


def feature_data_statistics(current: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``feature_data_<feature>`` → CloudWatch StatisticValues (SampleCount, Sum, Minimum, Maximum), numerical only."""
    sets: dict[str, dict[str, float]] = {}
    for feature in current["features"]:
        stats = feature.get("numerical_statistics")
        if feature.get("inferred_type") not in NUMERICAL or not stats or not stats["common"]["num_present"]:
            continue
        sets[f"feature_data_{feature['name']}"] = {
            "SampleCount": float(stats["common"]["num_present"]),
            "Sum": float(stats["sum"]),
            "Minimum": float(stats["min"]),
            "Maximum": float(stats["max"]),
        }
    return sets
