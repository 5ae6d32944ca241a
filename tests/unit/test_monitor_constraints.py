"""shepherd.monitor.constraints, .distance and .metrics: constraints.json, constraint_violations.json and the
per-feature CloudWatch metrics, as the SageMaker developer guide documents them ("Schema for Constraints
(constraints.json file)", "Schema for Violations (constraint_violations.json file)", "CloudWatch Metrics for
Deployed Models").

Every dataset is drawn from a seeded generator and stays under the KLL sketch's k values, so sketches are exact.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from shepherd.monitor.constraints import check, suggest_constraints
from shepherd.monitor.dataset import Dataset
from shepherd.monitor.distance import categorical_linf, chi2_survival, chi_squared_p_value
from shepherd.monitor.metrics import feature_data_statistics, feature_metrics
from shepherd.monitor.statistics import profile

SCHEMAS = Path(__file__).parents[2] / "schemas" / "model_monitor"
CONSTRAINTS = Draft202012Validator(json.loads((SCHEMAS / "constraints.schema.json").read_text()))
VIOLATIONS = Draft202012Validator(json.loads((SCHEMAS / "constraint_violations.schema.json").read_text()))
CITIES = ["Oslo", "Bergen", "Tromsø"]


def _data(
    seed: int, *, n: int = 500, mean: float = 50.0, cities: list[str] = CITIES, missing: float = 0.0
) -> dict[str, list[str | None]]:
    rng = np.random.default_rng(seed)
    income = [f"{value:.2f}" if rng.random() >= missing else None for value in rng.normal(mean, 10.0, n)]
    return {
        "age": [str(value) for value in rng.integers(18, 90, n)],
        "income": income,
        "city": [str(city) for city in rng.choice(cities, n)],
    }


BASELINE = profile(Dataset(_data(1)))
SUGGESTED = suggest_constraints(BASELINE)


def _violations(current: dict[str, list[str | None]], **overrides: Any) -> list[tuple[str, str]]:
    document = check(profile(Dataset(current)), BASELINE, SUGGESTED, overrides=overrides or None)
    VIOLATIONS.validate(document)
    return [(violation["feature_name"], violation["constraint_check_type"]) for violation in document["violations"]]


def test_suggested_constraints_follow_the_documented_schema_and_defaults():
    CONSTRAINTS.validate(SUGGESTED)

    assert SUGGESTED["monitoring_config"] == {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
            "categorical_comparison_threshold": 0.1,
            "categorical_drift_method": "LInfinity",
        },
    }
    age, income, city = SUGGESTED["features"]
    assert age == {
        "name": "age",
        "inferred_type": "Integral",
        "completeness": 1.0,
        "num_constraints": {"is_non_negative": True},
    }
    assert income["inferred_type"] == "Fractional"
    assert city["string_constraints"] == {"domains": sorted(CITIES)}


def test_a_domain_is_suggested_only_for_small_cardinality():
    ids = profile(Dataset({"id": [f"user-{i}" for i in range(300)]}))

    assert "string_constraints" not in suggest_constraints(ids)["features"][0]


def test_the_violations_schema_refuses_an_undocumented_check_type():
    document = {"violations": [{"feature_name": "x", "constraint_check_type": "range_check", "description": ""}]}

    assert list(VIOLATIONS.iter_errors(document))


def test_another_sample_of_the_same_data_raises_nothing():
    assert _violations(_data(2)) == []


def test_a_missing_column_is_flagged():
    current = _data(2)
    del current["city"]

    assert _violations(current) == [("city", "missing_column_check")]


def test_an_extra_column_is_flagged():
    current = _data(2) | {"channel": ["web"] * 500}

    assert _violations(current) == [("channel", "extra_column_check")]


def test_numbers_becoming_strings_fail_the_data_type_check():
    current = _data(2)
    current["age"] = [f"{age} years" for age in current["age"]]

    document = check(profile(Dataset(current)), BASELINE, SUGGESTED)

    assert document["violations"] == [
        {
            "feature_name": "age",
            "constraint_check_type": "data_type_check",
            "description": "Data type match requirement is not met. Expected data type: Integral, "
            "Expected match: 100.0%. Observed: Only 0.0% of data is Integral.",
        }
    ]


def test_the_data_type_threshold_is_the_share_of_values_that_must_keep_the_type():
    # Given a column where 20% of values became strings
    current = _data(2)
    current["age"] = [f"{age} years" if i % 5 == 0 else age for i, age in enumerate(current["age"])]

    # Then the default (1.0) flags it, and a model tolerating 20% strings (0.8) is not told
    assert ("age", "data_type_check") in _violations(current)
    assert ("age", "data_type_check") not in _violations(current, datatype_check_threshold=0.8)


def test_a_drop_in_completeness_is_flagged():
    assert _violations(_data(2, missing=0.2)) == [("income", "completeness_check")]


def test_a_shift_of_the_mean_is_flagged_as_baseline_drift():
    document = check(profile(Dataset(_data(2, mean=58.0))), BASELINE, SUGGESTED)

    [violation] = document["violations"]
    assert (violation["feature_name"], violation["constraint_check_type"]) == ("income", "baseline_drift_check")
    assert violation["description"].startswith("Numerical distance: ")
    assert violation["description"].endswith(" exceeds numerical threshold: 0.1")


def test_robust_comparison_forgives_what_a_small_sample_explains():
    # Given 40 requests drawn from the baseline's own distribution
    current = {name: cells[:40] for name, cells in _data(3).items()}

    # Then Robust (the default) raises nothing where Simple calls the sampling noise drift
    assert _violations(current) == []
    assert ("income", "baseline_drift_check") in _violations(current, comparison_method="Simple")


def test_new_categories_are_flagged_when_fewer_values_than_required_lie_in_the_domain():
    # Given a city column where a fifth of the values are a city the baseline never saw
    current = _data(2, cities=[*CITIES, "Bodø", "Bodø", "Bodø"][:4])
    share_unknown = Counter(current["city"])["Bodø"] / len(current["city"])
    assert 0.1 < share_unknown < 0.9

    # Then the default (all values known) flags it, and a model tolerating 90% unknown (0.1) is not told
    assert ("city", "categorical_values_check") in _violations(current)
    assert ("city", "categorical_values_check") not in _violations(current, domain_content_threshold=0.1)


def test_categories_none_of_which_are_known_are_flagged_by_default():
    current = _data(2, cities=["Paris", "Rome"])

    assert ("city", "categorical_values_check") in _violations(current)


def test_a_changed_mix_of_known_categories_is_categorical_drift():
    current = _data(2, cities=["Oslo", "Oslo", "Oslo", "Oslo", "Bergen", "Tromsø"])

    assert _violations(current) == [("city", "baseline_drift_check")]


def test_chi_squared_flags_a_changed_mix_and_passes_the_same_mix():
    drifted = profile(Dataset(_data(2, cities=["Oslo", "Oslo", "Oslo", "Oslo", "Bergen", "Tromsø"])))
    chi_squared = {"categorical_drift_method": "ChiSquared"}

    [violation] = check(drifted, BASELINE, SUGGESTED, overrides=chi_squared)["violations"]
    assert (violation["feature_name"], violation["constraint_check_type"]) == ("city", "baseline_drift_check")
    assert violation["description"].startswith("Categorical p-value: ")
    assert violation["description"].endswith(" is below categorical threshold: 0.1")
    assert check(BASELINE, BASELINE, SUGGESTED, overrides=chi_squared)["violations"] == []


def test_chi_squared_p_values_are_those_of_the_two_sample_test():
    # scipy.stats.chi2_contingency([[50, 50], [60, 40]], correction=False): χ² = 2.0202, p = 0.15522
    assert chi_squared_p_value(Counter(a=50, b=50), Counter(a=60, b=40)) == pytest.approx(0.155218, abs=1e-5)
    # the same proportions: χ² = 0, p = 1
    assert chi_squared_p_value(Counter(a=30, b=30, c=30), Counter(a=20, b=20, c=20)) == pytest.approx(1.0)


def test_chi_squared_survival_matches_the_distributions_critical_values():
    # The 5% critical values of χ²(1) and χ²(10) (any table of the distribution)
    assert chi2_survival(3.841, 1) == pytest.approx(0.05, abs=1e-4)
    assert chi2_survival(18.307, 10) == pytest.approx(0.05, abs=1e-5)


def test_categorical_linf_is_the_largest_difference_in_frequency():
    baseline, current = Counter(a=50, b=50), Counter(a=80, b=10, c=10)

    assert categorical_linf(baseline, current, method="Simple") == pytest.approx(0.4)


def test_disabled_checks_and_comparisons_raise_nothing():
    drifted = _data(2, mean=70.0)

    assert _violations(drifted, evaluate_constraints="Disabled") == []
    assert _violations(drifted, perform_comparison="Disabled") == []


def test_a_features_own_overrides_apply_to_it_alone():
    constraints = json.loads(json.dumps(SUGGESTED))
    constraints["features"][1]["monitoringConfigOverrides"] = {"comparison_threshold": 0.9}

    document = check(profile(Dataset(_data(2, mean=58.0))), BASELINE, constraints)

    assert document["violations"] == []


def test_an_unknown_override_is_refused():
    with pytest.raises(ValueError, match="unknown monitoring_config key"):
        check(BASELINE, BASELINE, SUGGESTED, overrides={"comparison_treshold": 0.2})


def test_metrics_carry_the_documented_names_per_feature():
    current = profile(Dataset(_data(2, mean=58.0, missing=0.5)))

    metrics = feature_metrics(current, BASELINE, SUGGESTED)

    assert set(metrics) == {
        f"feature_{kind}_{name}" for kind in ("non_null", "baseline_drift") for name in ("age", "income", "city")
    }
    assert 0.4 < metrics["feature_non_null_income"] < 0.6
    assert metrics["feature_non_null_age"] == 1.0
    assert metrics["feature_baseline_drift_income"] > 0.1
    assert metrics["feature_baseline_drift_age"] == 0.0


def test_no_metrics_when_emit_metrics_is_disabled():
    assert feature_metrics(BASELINE, BASELINE, SUGGESTED, overrides={"emit_metrics": "Disabled"}) == {}


def test_numerical_features_have_a_statistic_set_for_feature_data():
    sets = feature_data_statistics(profile(Dataset({"x": ["1", "2", "6"], "s": ["a", "b", "c"]})))

    assert sets == {"feature_data_x": {"SampleCount": 3.0, "Sum": 9.0, "Minimum": 1.0, "Maximum": 6.0}}
