"""Tests for shepherd.evaluation: a model is registered only when every gate passes, and a failure says why."""

from __future__ import annotations

from typing import Any

import pytest
from shepherd.config import Gate
from shepherd.evaluation import Champion, compares_with_champion, evaluate, judge_gate
from shepherd.paired import PairedComparison

AUC = "validation:auc"
LOSS = "validation:loss"


def gate(metric: str = AUC, direction: str = "maximize", **bounds: Any) -> Gate:
    """A gate with only the bounds given (no champion comparison unless must_beat_champion_by is given)."""
    return Gate.model_validate({"metric": metric, "direction": direction, "must_beat_champion_by": None} | bounds)


# ---------------------------------------------------------------- thresholds


@pytest.mark.parametrize(("value", "passed"), [(0.74, False), (0.75, True), (0.9, True)])
def test_maximize_threshold_is_a_lower_bound(value: float, passed: bool) -> None:
    assert judge_gate(gate(threshold=0.75), value, None).passed is passed


@pytest.mark.parametrize(("value", "passed"), [(0.31, False), (0.3, True), (0.1, True)])
def test_minimize_threshold_is_an_upper_bound(value: float, passed: bool) -> None:
    assert judge_gate(gate(LOSS, "minimize", threshold=0.3), value, None).passed is passed


def test_failed_maximize_threshold_names_the_metric_and_the_bound() -> None:
    result = judge_gate(gate(threshold=0.75), 0.7, None)
    assert result.reason == "validation:auc = 0.7, must be at least 0.75"


def test_failed_minimize_threshold_names_the_metric_and_the_bound() -> None:
    result = judge_gate(gate(LOSS, "minimize", threshold=0.3), 0.4, None)
    assert result.reason == "validation:loss = 0.4, must be at most 0.3"


# ---------------------------------------------------------------- champion margins, on the same rows

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/1"


def paired(improvement: float, lower: float, *, metric: str = "accuracy") -> Champion:
    """The champion compared with the candidate on 1,000 shared rows, improvement and lower bound as given."""
    comparison = PairedComparison(
        problem="classification",
        metric=metric,
        method="McNemar",
        rows=1000,
        candidate=0.8 + improvement,
        champion=0.8,
        improvement=improvement,
        lower=lower,
        upper=improvement + (improvement - lower),
        confidence=0.95,
        p_value=0.01,
        disagreement=0.1,
    )
    return Champion(ARN, paired={AUC: comparison, LOSS: comparison})


@pytest.mark.parametrize(("lower", "passed"), [(0.01, False), (0.0199, False), (0.02, True), (0.03, True)])
def test_the_margin_must_hold_at_the_lower_confidence_bound(lower: float, passed: bool) -> None:
    assert judge_gate(gate(must_beat_champion_by=0.02), 0.9, paired(0.04, lower)).passed is passed


def test_a_better_point_estimate_is_not_enough_when_the_bound_falls_short() -> None:
    result = judge_gate(gate(must_beat_champion_by=0.0), 0.9, paired(0.01, -0.005))
    assert not result.passed
    assert result.reason == (
        "validation:auc: on the same 1000 validation rows accuracy 0.81 against the champion's 0.8, improvement "
        "+0.01 (95% lower bound -0.005, p = 0.01): must beat the champion by at least 0 at 95%"
    )


def test_a_passing_comparison_carries_its_numbers() -> None:
    result = judge_gate(gate(LOSS, "minimize", must_beat_champion_by=0.0), 0.2, paired(0.03, 0.01, metric="mae"))
    assert result.passed
    assert (result.compared, result.champion, result.improvement, result.lower) == ("mae", 0.8, 0.03, 0.01)
    assert result.reason.startswith("validation:loss = 0.2 passes; validation:loss: on the same 1000 validation rows")


def test_a_comparison_that_could_not_be_made_fails_the_gate_and_says_why() -> None:
    champion = Champion(ARN, unavailable="the champion's model could not score the candidate's validation rows")
    result = judge_gate(gate(must_beat_champion_by=0.0), 0.9, champion)
    assert not result.passed
    assert result.reason == (
        "validation:auc: not compared with the champion: the champion's model could not score the candidate's "
        "validation rows"
    )


def test_both_bounds_failing_are_both_reported() -> None:
    result = judge_gate(gate(threshold=0.95, must_beat_champion_by=0.0), 0.9, paired(-0.02, -0.04))
    assert not result.passed
    assert "must be at least 0.95" in result.reason
    assert "must beat the champion by at least 0" in result.reason


def test_a_gate_without_a_margin_ignores_the_champion() -> None:
    assert judge_gate(gate(threshold=0.5), 0.6, paired(-0.5, -0.6)).passed


def test_a_threshold_only_evaluation_asks_for_no_comparison() -> None:
    assert not compares_with_champion([gate(threshold=0.5)])
    assert compares_with_champion([gate(threshold=0.5), gate(LOSS, "minimize", must_beat_champion_by=0.0)])


# ---------------------------------------------------------------- missing evidence, no champion, no gates


def test_a_metric_the_job_did_not_report_fails_its_gate() -> None:
    result = evaluate([gate(threshold=0.5)], {"validation:accuracy": 0.9}, None)
    assert not result.passed
    assert result.results[0].value is None
    assert result.summary.startswith("rejected: validation:auc was not reported by the training job")


def test_a_missing_metric_fails_even_without_a_threshold() -> None:
    assert not evaluate([gate(must_beat_champion_by=0.0)], {}, paired(0.1, 0.05)).passed


def test_without_a_champion_only_the_thresholds_count() -> None:
    gates = [gate(threshold=0.75, must_beat_champion_by=0.1)]
    result = evaluate(gates, {AUC: 0.8}, None)
    assert result.passed
    assert result.results[0].champion is None
    assert result.summary == "all gates passed: validation:auc = 0.8 passes"


def test_a_gate_the_comparison_does_not_cover_fails() -> None:
    result = evaluate([gate(must_beat_champion_by=0.1)], {AUC: 0.5}, Champion(ARN))
    assert not result.passed
    assert "no comparison with the champion on the same rows" in result.summary


def test_no_gates_registers_on_training_success_alone() -> None:
    result = evaluate([], {}, None)
    assert result.passed
    assert result.results == []
    assert result.summary == "no evaluation gates configured: registered on training success alone"


def test_every_gate_must_pass_and_the_summary_lists_only_the_failures() -> None:
    gates = [gate(threshold=0.75), gate(LOSS, "minimize", threshold=0.3)]
    result = evaluate(gates, {AUC: 0.8, LOSS: 0.5}, None)
    assert not result.passed
    assert [r.passed for r in result.results] == [True, False]
    assert result.summary == "rejected: validation:loss = 0.5, must be at most 0.3"


def test_results_carry_the_numbers_behind_the_verdict() -> None:
    result = judge_gate(gate(threshold=0.75, must_beat_champion_by=0.01), 0.8, paired(0.05, 0.02))
    assert result.model_dump() == {
        "metric": AUC,
        "direction": "maximize",
        "value": 0.8,
        "threshold": 0.75,
        "champion": 0.8,
        "margin": 0.01,
        "passed": True,
        "reason": result.reason,
        "compared": "accuracy",
        "improvement": 0.05,
        "lower": 0.02,
    }
