"""Tests for shepherd.evaluation: a model is registered only when every gate passes, and a failure says why."""

from __future__ import annotations

from typing import Any

import pytest
from shepherd.config import Gate
from shepherd.evaluation import evaluate, judge_gate

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


# ---------------------------------------------------------------- champion margins


@pytest.mark.parametrize(("value", "passed"), [(0.80, False), (0.819, False), (0.83, True)])
def test_maximize_must_beat_the_champion_by_the_margin(value: float, passed: bool) -> None:
    assert judge_gate(gate(must_beat_champion_by=0.02), value, 0.8).passed is passed


@pytest.mark.parametrize(("value", "passed"), [(0.30, False), (0.29, False), (0.27, True)])
def test_minimize_must_beat_the_champion_by_the_margin(value: float, passed: bool) -> None:
    assert judge_gate(gate(LOSS, "minimize", must_beat_champion_by=0.02), value, 0.3).passed is passed


def test_zero_margin_means_not_worse_than_the_champion() -> None:
    assert judge_gate(gate(must_beat_champion_by=0.0), 0.8, 0.8).passed
    assert not judge_gate(gate(must_beat_champion_by=0.0), 0.79, 0.8).passed


def test_failed_champion_margin_names_the_metric_bound_champion_and_margin() -> None:
    result = judge_gate(gate(must_beat_champion_by=0.02), 0.8, 0.8)
    assert result.reason == "validation:auc = 0.8, must be at least 0.82 (the champion's 0.8 + margin 0.02)"


def test_failed_minimize_champion_margin_subtracts_the_margin() -> None:
    result = judge_gate(gate(LOSS, "minimize", must_beat_champion_by=0.05), 0.3, 0.3)
    assert result.reason == "validation:loss = 0.3, must be at most 0.25 (the champion's 0.3 - margin 0.05)"


def test_both_bounds_failing_are_both_reported() -> None:
    result = judge_gate(gate(threshold=0.9, must_beat_champion_by=0.0), 0.7, 0.8)
    assert not result.passed
    assert "must be at least 0.9" in result.reason
    assert "must be at least 0.8 (the champion's" in result.reason


def test_a_gate_without_a_margin_ignores_the_champion() -> None:
    assert judge_gate(gate(threshold=0.5), 0.6, 0.99).passed


def test_a_value_exactly_at_the_champion_plus_margin_passes() -> None:
    result = judge_gate(gate(must_beat_champion_by=0.05), 0.85, 0.8)
    assert result.passed, result.reason


# ---------------------------------------------------------------- missing evidence, no champion, no gates


def test_a_metric_the_job_did_not_report_fails_its_gate() -> None:
    result = evaluate([gate(threshold=0.5)], {"validation:accuracy": 0.9}, None)
    assert not result.passed
    assert result.results[0].value is None
    assert result.summary.startswith("rejected: validation:auc was not reported by the training job")


def test_a_missing_metric_fails_even_without_a_threshold() -> None:
    assert not evaluate([gate(must_beat_champion_by=0.0)], {}, {AUC: 0.8}).passed


def test_without_a_champion_only_the_thresholds_count() -> None:
    gates = [gate(threshold=0.75, must_beat_champion_by=0.1)]
    result = evaluate(gates, {AUC: 0.8}, None)
    assert result.passed
    assert result.results[0].champion is None
    assert result.summary == "all gates passed: validation:auc = 0.8 passes"


def test_a_champion_without_the_metric_is_not_compared() -> None:
    assert evaluate([gate(must_beat_champion_by=0.1)], {AUC: 0.5}, {"other": 0.9}).passed


def test_passing_against_the_champion_says_so() -> None:
    result = evaluate([gate(must_beat_champion_by=0.0)], {AUC: 0.85}, {AUC: 0.8})
    assert result.summary == "all gates passed: validation:auc = 0.85 passes, champion 0.8"


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
    result = judge_gate(gate(threshold=0.75, must_beat_champion_by=0.01), 0.8, 0.78)
    assert result.model_dump() == {
        "metric": AUC,
        "direction": "maximize",
        "value": 0.8,
        "threshold": 0.75,
        "champion": 0.78,
        "margin": 0.01,
        "passed": True,
        "reason": "validation:auc = 0.8 passes, champion 0.78",
    }
