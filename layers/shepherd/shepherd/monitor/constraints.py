"""constraints.json and constraint_violations.json as Model Monitor writes them.

Pages of the SageMaker developer guide: "Schema for Constraints (constraints.json file)" and "Schema for Violations
(constraint_violations.json file)". Where they leave a threshold's meaning open, Shepherd reads it as Deequ does,
``metric >= threshold`` (docs/MONITORING.md, under the table).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from shepherd.monitor.distance import CHI_SQUARED, LINFINITY, ROBUST, SIMPLE, feature_distance
from shepherd.monitor.statistics import (
    FRACTIONAL,
    INTEGRAL,
    NUMERICAL,
    STRING,
    VERSION,
    categories,
    completeness,
    statistics_of,
    type_counts,
)

ENABLED, DISABLED = "Enabled", "Disabled"
DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": ENABLED,
    "emit_metrics": ENABLED,
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {
        "perform_comparison": ENABLED,
        "comparison_threshold": 0.1,
        "comparison_method": ROBUST,
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": LINFINITY,
    },
}
_TOP_LEVEL = frozenset(DEFAULT_MONITORING_CONFIG) - {"distribution_constraints"}
_DISTRIBUTION = frozenset(DEFAULT_MONITORING_CONFIG["distribution_constraints"])
# The constraints page's table names the comparison methods linf_simple / linf_robust; its schema, Simple / Robust.
_METHODS = {SIMPLE: SIMPLE, ROBUST: ROBUST, "linf_simple": SIMPLE, "linf_robust": ROBUST}

# Deequ's CategoricalRangeRule: a domain is suggested for a column of at most 120 distinct values (its histogram
# threshold) of which at most 10% were seen only once.
MAX_DOMAIN_SIZE = 120
MAX_SINGLETON_SHARE = 0.1

DATA_TYPE, COMPLETENESS, DRIFT = "data_type_check", "completeness_check", "baseline_drift_check"
MISSING_COLUMN, EXTRA_COLUMN, CATEGORICAL_VALUES = (
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)


def _domain(feature: dict[str, Any]) -> list[str] | None:
    counts = categories(feature)
    distinct = int(statistics_of(feature).get("distinct_count", len(counts)))
    if not counts or distinct > MAX_DOMAIN_SIZE or distinct > len(counts):
        return None
    singletons = sum(1 for count in counts.values() if count == 1)
    return sorted(counts) if singletons / len(counts) <= MAX_SINGLETON_SHARE else None


def suggest_constraints(statistics: dict[str, Any]) -> dict[str, Any]:
    """The constraints.json Model Monitor's baselining job would suggest from a statistics.json."""
    features = []
    for feature in statistics["features"]:
        suggested: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": completeness(feature),
        }
        if feature["inferred_type"] in NUMERICAL:
            suggested["num_constraints"] = {"is_non_negative": float(feature["numerical_statistics"]["min"]) >= 0}
        elif feature["inferred_type"] == STRING and (domain := _domain(feature)) is not None:
            suggested["string_constraints"] = {"domains": domain}
        features.append(suggested)
    return {"version": VERSION, "features": features, "monitoring_config": copy.deepcopy(DEFAULT_MONITORING_CONFIG)}


def monitoring_config(
    constraints: dict[str, Any], overrides: Mapping[str, object] | None = None, *, feature: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The effective monitoring_config: defaults, the file's, a feature's monitoringConfigOverrides, then overrides.

    An override key is a monitoring_config key or a distribution_constraints key; an unknown key is a ValueError.
    """
    config = copy.deepcopy(DEFAULT_MONITORING_CONFIG)
    layers = [constraints.get("monitoring_config") or {}, (feature or {}).get("monitoringConfigOverrides") or {}]
    for layer in [*layers, overrides or {}]:
        for key, value in layer.items():
            if key == "distribution_constraints" and isinstance(value, Mapping):
                config["distribution_constraints"].update(value)
            elif key in _TOP_LEVEL:
                config[key] = value
            elif key in _DISTRIBUTION:
                config["distribution_constraints"][key] = value
            else:
                raise ValueError(f"unknown monitoring_config key: {key}")
    distribution = config["distribution_constraints"]
    if "categorical_comparison_threshold" not in _given(layers, overrides):
        # "Default: The value assigned to the comparison_threshold parameter" (constraints page).
        distribution["categorical_comparison_threshold"] = distribution["comparison_threshold"]
    if distribution["comparison_method"] not in _METHODS:
        raise ValueError(f"comparison_method must be Simple or Robust, not {distribution['comparison_method']!r}")
    distribution["comparison_method"] = _METHODS[distribution["comparison_method"]]
    if distribution["categorical_drift_method"] not in {LINFINITY, CHI_SQUARED}:
        raise ValueError(f"categorical_drift_method must be LInfinity or ChiSquared: {distribution!r}")
    return config


def _given(layers: list[Mapping[str, Any]], overrides: Mapping[str, object] | None) -> set[str]:
    keys: set[str] = set()
    for layer in [*layers, overrides or {}]:
        keys.update(layer)
        nested = layer.get("distribution_constraints")
        if isinstance(nested, Mapping):
            keys.update(nested)
    return keys


def _violation(feature: str, check_type: str, description: str) -> dict[str, str]:
    return {"feature_name": feature, "constraint_check_type": check_type, "description": description}


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _data_type(name: str, expected: str, current: dict[str, Any], threshold: float) -> dict[str, str] | None:
    counts = type_counts(current)
    present = sum(counts.values())
    if not present or expected not in {INTEGRAL, FRACTIONAL, STRING}:
        return None
    # An integral value is a valid Fractional one, as Model Monitor's own inference reads a mix of both as Fractional.
    matching = counts.get(expected, 0) + (counts.get(INTEGRAL, 0) if expected == FRACTIONAL else 0)
    share = matching / present
    if share >= float(threshold):
        return None
    return _violation(
        name,
        DATA_TYPE,
        f"Data type match requirement is not met. Expected data type: {expected}, "
        f"Expected match: {_percent(float(threshold))}. Observed: Only {_percent(share)} of data is {expected}.",
    )


def _completeness(name: str, expected: float, current: dict[str, Any]) -> dict[str, str] | None:
    observed = completeness(current)
    if observed >= expected:
        return None
    return _violation(
        name,
        COMPLETENESS,
        f"Data completeness requirement is not met. Expected completeness: {_percent(expected)}. "
        f"Observed: Only {_percent(observed)} of data is present.",
    )


def _drift(name: str, baseline: dict[str, Any], current: dict[str, Any], config: dict[str, Any]) -> dict | None:
    distribution = config["distribution_constraints"]
    if distribution["perform_comparison"] != ENABLED:
        return None
    categorical_method = distribution["categorical_drift_method"]
    measured = feature_distance(
        baseline, current, method=distribution["comparison_method"], categorical_method=categorical_method
    )
    if measured is None or math.isnan(measured[1]):
        return None
    kind, value = measured
    if kind == "numerical":
        threshold = float(distribution["comparison_threshold"])
        if value > threshold:
            return _violation(name, DRIFT, f"Numerical distance: {value} exceeds numerical threshold: {threshold}")
        return None
    threshold = float(distribution["categorical_comparison_threshold"])
    if categorical_method == CHI_SQUARED:
        if value < threshold:
            return _violation(name, DRIFT, f"Categorical p-value: {value} is below categorical threshold: {threshold}")
        return None
    if value > threshold:
        return _violation(name, DRIFT, f"Categorical distance: {value} exceeds categorical threshold: {threshold}")
    return None


def _categorical_values(name: str, domain: list[str], current: dict[str, Any], threshold: float) -> dict | None:
    counts = categories(current)
    present = int((statistics_of(current).get("common") or {}).get("num_present", sum(counts.values())))
    if not present:
        return None
    allowed = set(domain)
    share = sum(count for value, count in counts.items() if value in allowed) / present
    if share >= float(threshold):
        return None
    unknown = sorted(value for value in counts if value not in allowed)[:10]
    return _violation(
        name,
        CATEGORICAL_VALUES,
        f"Categorical values requirement is not met. Expected: {_percent(float(threshold))} of values in the "
        f"baseline domain. Observed: Only {_percent(share)} of data is in it; unknown values include {unknown}.",
    )


def check(
    current: dict[str, Any],
    baseline: dict[str, Any],
    constraints: dict[str, Any],
    *,
    overrides: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The constraint_violations.json of current statistics against the baseline's.

    ``overrides`` replace monitoring_config values (a model's settings), after each feature's own overrides.
    """
    if monitoring_config(constraints, overrides)["evaluate_constraints"] != ENABLED:
        return {"violations": []}
    observed = {feature["name"]: feature for feature in current["features"]}
    baselined = {feature["name"]: feature for feature in baseline["features"]}
    expected = [feature["name"] for feature in constraints["features"]]
    violations: list[dict[str, str]] = []
    for constraint in constraints["features"]:
        name = constraint["name"]
        config = monitoring_config(constraints, overrides, feature=constraint)
        if config["evaluate_constraints"] != ENABLED:
            continue
        feature = observed.get(name)
        if feature is None:
            violations.append(
                _violation(
                    name,
                    MISSING_COLUMN,
                    f"There are missing columns in current dataset. Number of columns in current dataset: "
                    f"{len(observed)}, Number of columns in baseline constraints: {len(expected)}. "
                    f"Missing column: {name}.",
                )
            )
            continue
        found = [
            _data_type(name, constraint.get("inferred_type", ""), feature, config["datatype_check_threshold"]),
            _completeness(name, float(constraint["completeness"]), feature) if "completeness" in constraint else None,
            _drift(name, baselined[name], feature, config) if name in baselined else None,
        ]
        domain = (constraint.get("string_constraints") or {}).get("domains")
        if domain and feature.get("inferred_type") == STRING:
            found.append(_categorical_values(name, domain, feature, config["domain_content_threshold"]))
        violations.extend(violation for violation in found if violation is not None)
    violations.extend(
        _violation(
            name,
            EXTRA_COLUMN,
            f"There are extra columns in current dataset. Number of columns in current dataset: {len(observed)}, "
            f"Number of columns in baseline constraints: {len(expected)}. Extra column: {name}.",
        )
        for name in observed
        if name not in set(expected)
    )
    return {"violations": violations}
