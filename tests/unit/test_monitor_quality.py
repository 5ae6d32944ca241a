"""Model quality from ground truth: Model Monitor's metrics and files, the quality alert, and whole monitor runs
joining captured predictions with feedback/<model>/ on InferenceId (fakes from test_monitor_run)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from shepherd.aws.monitor_reports import quality_summary
from shepherd.monitor import model_quality, quality_alert
from shepherd.monitor.model_quality import BINARY, MULTICLASS, REGRESSION, Labelled
from shepherd.rollout.quality import Prediction

from tests.unit.test_monitor_run import AT, BUCKET, CAPTURE, PACKAGE, World, make_world

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "model_monitor"
FIXED = datetime(2026, 12, 7, 5, 1, 54, tzinfo=UTC)


def schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"model_quality_{name}.schema.json").read_text()))


def rows(pairs: list[tuple[str, str]]) -> list[Labelled]:
    return [Labelled(prediction=p, label=t) for p, t in pairs]


# ---------------------------------------------------------------- Model Monitor's metrics and files


def test_the_guides_binary_example_is_reproduced() -> None:
    # Given the four rows behind the "Model quality metrics" page's binary example (1 positive, 2 false positives)
    data = model_quality.table(rows([("0.1", "0"), ("0.6", "0"), ("0.7", "0"), ("0.9", "1")]), BINARY)
    # When its statistics are computed
    document = model_quality.statistics(data, now=lambda: FIXED)
    # Then they are the page's values, in its layout
    section = document["binary_classification_metrics"]
    assert section["confusion_matrix"] == {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}
    expected = {
        "recall": 1.0,
        "precision": 1 / 3,
        "accuracy": 0.5,
        "recall_best_constant_classifier": 1.0,
        "precision_best_constant_classifier": 0.25,
        "accuracy_best_constant_classifier": 0.25,
        "true_positive_rate": 1.0,
        "true_negative_rate": 1 / 3,
        "false_positive_rate": 2 / 3,
        "false_negative_rate": 0.0,
        "auc": 1.0,
        "f0_5": 0.3846153846153846,
        "f1": 0.5,
        "f2": 0.7142857142857143,
        "f0_5_best_constant_classifier": 0.29411764705882354,
        "f1_best_constant_classifier": 0.4,
        "f2_best_constant_classifier": 0.625,
    }
    assert {name: section[name]["value"] for name in expected} == pytest.approx(expected)
    assert {section[name]["standard_deviation"] for name in expected} == {"NaN"}  # fewer than 200 rows
    assert document["dataset"] == {"item_count": 4, "evaluation_time": "2026-12-07T05:01:54.000Z"}
    jsonschema.validate(document, schema("statistics"))


def test_regression_and_multiclass_metrics_and_their_deviations_from_200_rows() -> None:
    # Given 400 regression rows off by 1 or 3, and a three-class set
    rng = random.Random(3)
    regression = rows(
        [(f"{t + (1 if i % 2 else -3)}", f"{t}") for i, t in enumerate(rng.uniform(0, 50) for _ in range(400))]
    )
    classes = rows([("a", "a"), ("b", "a"), ("b", "b"), ("c", "c"), ("c", "c")])
    # When their statistics are computed
    reg = model_quality.statistics(model_quality.table(regression, REGRESSION))["regression_metrics"]
    multi = model_quality.statistics(model_quality.table(classes, MULTICLASS))["multiclass_classification_metrics"]
    # Then MAE is 2, MSE 5, RMSE its root, each with a standard deviation (from 200 rows)
    assert (reg["mae"]["value"], reg["mse"]["value"], reg["rmse"]["value"]) == pytest.approx((2.0, 5.0, math.sqrt(5)))
    assert isinstance(reg["mae"]["standard_deviation"], float)
    # and multiclass accuracy is 4/5, weighted recall (2/5 x 1/2 + 1/5 + 2/5) = 4/5, the best constant the majority
    assert multi["accuracy"]["value"] == pytest.approx(0.8)
    assert multi["weighted_recall"]["value"] == pytest.approx(0.8)
    assert multi["accuracy_best_constant_classifier"]["value"] == pytest.approx(0.4)
    assert multi["confusion_matrix"]["a"] == {"a": 1, "b": 1, "c": 0}


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        ([("0.73", "1"), ("0.1", "0")], BINARY),
        ([("2", "2"), ("0", "1"), ("1", "1")], MULTICLASS),
        ([("cat", "dog"), ("dog", "dog")], MULTICLASS),
        ([("3.7", "4.2"), ("10.5", "9.1")], REGRESSION),
    ],
)
def test_the_problem_type_is_told_from_the_labels_and_predictions(pairs: list[tuple[str, str]], problem: str) -> None:
    assert model_quality.infer_problem_type(rows(pairs)) == problem


def test_suggested_constraints_are_the_baseline_and_a_worse_run_violates_them() -> None:
    # Given a baseline at 90 % accuracy and a run at 70 %
    baseline = model_quality.statistics(
        model_quality.table(rows([("0.9", "1")] * 45 + [("0.1", "0")] * 45 + [("0.9", "0")] * 10), BINARY)
    )
    worse = model_quality.statistics(
        model_quality.table(rows([("0.9", "1")] * 35 + [("0.1", "0")] * 35 + [("0.9", "0")] * 30), BINARY)
    )
    # When constraints are suggested and the run checked
    constraints = model_quality.suggest_constraints(baseline)
    violations = model_quality.check(worse, constraints)
    # Then the constraints hold the baseline's values, and the run's losses are named as Model Monitor words them
    assert constraints["binary_classification_constraints"]["accuracy"] == {
        "threshold": pytest.approx(0.9),
        "comparison_operator": "LessThanThreshold",
    }
    named = {v["metric_name"]: v for v in violations["violations"]}
    assert {"accuracy", "precision", "f1"} <= set(named)
    assert named["accuracy"]["description"] == "Metric accuracy with 0.7 was LessThanThreshold '0.9'"
    assert model_quality.check(baseline, constraints) == {"violations": []}
    jsonschema.validate(constraints, schema("constraints"))
    jsonschema.validate(violations, schema("constraint_violations"))
    # and a regressor's errors are worse above their threshold
    regression = model_quality.statistics(model_quality.table(rows([("1", "2"), ("3", "3")]), REGRESSION))
    assert model_quality.suggest_constraints(regression)["regression_constraints"]["mae"]["comparison_operator"] == (
        "GreaterThanThreshold"
    )


# ---------------------------------------------------------------- joining and the quality alert


def test_a_late_label_joins_its_waiting_prediction_once() -> None:
    # Given a prediction captured in one run, and its label uploaded before the next
    state = quality_alert.QualityState()
    first = quality_alert.join(state, [Prediction("i-1", 1000.0, "0.8")], {}, now=1000.0)
    second = quality_alert.join(state, [], {"i-1": "1"}, now=4600.0)
    # Then it joins in the second run only, and nothing of it waits after
    assert (first, second) == ([], [Labelled("0.8", "1")])
    assert quality_alert.join(state, [], {}, now=8200.0) == []
    assert (state.pending, state.labels) == ({}, {})
    # and a prediction whose label never comes is dropped after KEEP_SECONDS
    quality_alert.join(state, [Prediction("i-2", 1000.0, "0.3")], {}, now=1000.0)
    quality_alert.join(state, [], {}, now=1000.0 + quality_alert.KEEP_SECONDS + 1)
    assert state.pending == {}


def _month(miss_rate: float, seed: int, labelled: int = 120) -> list[quality_alert.QualityDecision]:
    """A month of hourly runs whose misses are drawn at ``miss_rate``, against a 10 % baseline of 2,000 rows."""
    rng = random.Random(seed)
    ref = quality_alert.QualityReference(BINARY, 0.5, None, miss_rate=0.1, labelled=2000)
    state, settings = quality_alert.QualityState(), quality_alert.QualitySettings()
    decisions = []
    for _ in range(720):
        misses = sum(rng.random() < miss_rate for _ in range(labelled))
        decisions.append(quality_alert.step(state, ref, labelled, misses, settings))
    return decisions


def test_no_quality_loss_no_alert_over_a_month_and_a_doubled_miss_rate_alerts_within_hours() -> None:
    # Given a month of hourly runs at the baseline's miss rate. The stated rate is at most 1 false alert a month;
    # the bound is loose (margin, overshoot): 0 of 100 seeded months had one, so this seed's chance of failing
    # is under 3 % (95 % upper bound) and, seeded, it never changes
    quiet = _month(0.1, seed=11)
    assert [d for d in quiet if d.opened] == []
    # When the miss rate doubles
    worse = _month(0.2, seed=12)
    # Then an episode opens within a few hourly runs of 120 labels (median 2 over 30 seeds, at most 6),
    # and one is open most of the month
    opened = [hour for hour, d in enumerate(worse) if d.opened]
    assert opened[0] <= 6
    assert sum(d.degraded for d in worse) > 0.8 * len(worse)


# ---------------------------------------------------------------- whole monitor runs


@pytest.fixture
def world() -> World:
    return make_world()


def _quality_baseline(world: World, *, miss_rate: float = 0.1) -> None:
    """A model-quality baseline beside the data one, referenced by the champion package as registration does."""
    prefix = "monitoring/churn/baseline/1/model_quality/"
    rng = random.Random(5)
    labelled = [
        Labelled("0.8" if (truth == 1) != (rng.random() < miss_rate) else "0.2", str(truth))
        for truth in (rng.randint(0, 1) for _ in range(2000))
    ]
    data = model_quality.table(labelled, BINARY)
    statistics = model_quality.statistics(data)
    world.bucket.put(f"{prefix}statistics.json", json.dumps(statistics))
    world.bucket.put(f"{prefix}constraints.json", json.dumps(model_quality.suggest_constraints(statistics)))
    world.bucket.put(f"{prefix}quality_reference.json", json.dumps(quality_alert.reference(data).to_json()))
    quality = {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}constraints.json"},
    }
    package = world.deps.models.describe_package(PACKAGE)
    package["ModelMetrics"] = {"ModelQuality": quality}


def _feedback(world: World, at: datetime, wrong_share: float, seed: int, *, only: int | None = None) -> None:
    """Ground truth for the predictions captured in the hour before ``at`` (all answered 0.5, i.e. class 1)."""
    rng = random.Random(seed)
    hour = at - timedelta(hours=1)
    ids = []
    for key in world.bucket.keys(BUCKET, f"{CAPTURE}AllTraffic/{hour:%Y/%m/%d/%H}/"):
        for line in world.bucket.objects[key].decode().splitlines():
            ids.append(json.loads(line)["eventMetadata"]["inferenceId"])
    lines = [
        json.dumps(
            {
                "groundTruthData": {"data": "0" if rng.random() < wrong_share else "1", "encoding": "CSV"},
                "eventMetadata": {"eventId": inference_id},
                "eventVersion": "0",
            }
        )
        for inference_id in ids[:only]
    ]
    world.bucket.put(f"feedback/churn/{at:%Y/%m/%d/%H}/labels-{seed}.jsonl", "\n".join(lines) + "\n", at)


def test_labelled_predictions_give_model_quality_reports_and_metrics(world: World) -> None:
    # Given a champion with a model-quality baseline, an hour of traffic and its ground truth (10 % wrong, as baseline)
    _quality_baseline(world)
    world.hour_of_traffic(seed=1)
    _feedback(world, world.clock.at, wrong_share=0.1, seed=1)
    # When the monitor runs
    result = world.run()
    # Then model quality is written in Model Monitor's formats in its own folder, and published in its namespace
    folder = result["report"].removeprefix(f"s3://{BUCKET}/") + "model_quality/"
    statistics = json.loads(world.bucket.objects[f"{folder}statistics.json"])
    jsonschema.validate(statistics, schema("statistics"))
    jsonschema.validate(
        json.loads(world.bucket.objects[f"{folder}constraint_violations.json"]), schema("constraint_violations")
    )
    assert statistics["dataset"]["item_count"] == 200
    assert (result["quality"]["status"], result["quality"]["labelled"]) == ("checked", 200)
    [(namespace, dimensions, values)] = [c for c in world.metrics.put_calls if "model-metrics" in c[0]]
    assert namespace == "aws/sagemaker/Endpoints/model-metrics"
    assert dimensions == {"Endpoint": "churn", "MonitoringSchedule": "shepherd-test-monitor-churn"}
    assert {"accuracy", "precision", "recall", "f1", "auc"} <= set(values)
    assert result["notify"] is False
    assert f"{folder}statistics.json" in world.bucket.tagged  # expires with the other reports


def test_too_few_labels_are_reported_not_judged(world: World) -> None:
    # Given an hour of traffic of which only 30 predictions got their label
    _quality_baseline(world)
    world.hour_of_traffic(seed=2)
    _feedback(world, world.clock.at, wrong_share=0.9, seed=2, only=30)
    # When the monitor runs
    result = world.run()
    # Then it says so: statistics written, no violations checked, nothing published for model quality
    assert result["quality"]["status"] == "too_few_labels"
    assert "fewer than 100" in result["quality"]["reason"]
    folder = result["report"].removeprefix(f"s3://{BUCKET}/") + "model_quality/"
    assert f"{folder}statistics.json" in world.bucket.objects
    assert f"{folder}constraint_violations.json" not in world.bucket.objects
    assert [c for c in world.metrics.put_calls if "model-metrics" in c[0]] == []


def test_sustained_quality_loss_alerts_and_retrains_when_configured(world: World) -> None:
    # Given a config retraining on quality loss sustained two hours, and hours where 40 % of predictions are wrong
    world.bucket.put(
        "models/churn/shepherd.yaml",
        world.bucket.objects["models/churn/shepherd.yaml"].decode().replace("[drift]", "[quality]"),
    )
    _quality_baseline(world)
    outcomes = []
    for hour in range(4):
        world.hour_of_traffic(seed=30 + hour)
        _feedback(world, world.clock.at, wrong_share=0.4, seed=30 + hour)
        outcomes.append(world.run())
    # Then the first run notifies of quality loss, and once it has lasted two hours one retrain starts
    first = outcomes[0]
    assert first["notify"] is True
    jsonschema.validate(first["notification"], json.loads((ROOT / "schemas/notification.schema.json").read_text()))
    assert "model quality loss" in first["notification"]["reason"]
    assert "data drift" not in first["notification"]["reason"]
    assert first["quality"]["decision"]["alert"] is True
    assert len(world.lifecycle.started) == 1
    started = [o for o in outcomes if o.get("notification", {}).get("retrain", {}).get("started")]
    assert len(started) == 1
    assert started[0]["notification"]["retrain"]["evidence"]["cause"] == "quality"
    assert world.state()["retrain"]["quality_since"] == (AT.replace(minute=0) + timedelta(hours=1)).isoformat()


def test_monitor_status_tells_a_runs_model_quality_in_one_line(world: World) -> None:
    # Given a run whose labels were too few to judge
    _quality_baseline(world)
    world.hour_of_traffic(seed=6)
    _feedback(world, world.clock.at, wrong_share=0.1, seed=6, only=12)
    section = world.run()["quality"]
    # When `shepherd monitor status` summarises it, then it says what was labelled and that it was not judged
    line = quality_summary(section)
    assert line is not None
    assert line.startswith("too_few_labels; 12 labelled predictions: 12 labelled predictions, fewer than 100")
    assert quality_summary(None) is None


def test_a_run_without_capture_still_reads_the_labels_of_waiting_predictions(world: World) -> None:
    # Given a champion with a model-quality baseline and an hour of traffic whose labels have not come yet
    _quality_baseline(world)
    world.hour_of_traffic(seed=8)
    served_until = world.clock.at
    assert world.run()["quality"]["waiting_predictions"] == 200
    # When the labels come back in an hour without traffic, and the monitor runs
    world.clock.at = served_until + timedelta(hours=1)
    _feedback(world, served_until, wrong_share=0.1, seed=8)  # the served hour's labels, moved to their collection:
    world.bucket.put(
        f"feedback/churn/{world.clock.at - timedelta(minutes=30):%Y/%m/%d/%H}/moved.jsonl",
        world.bucket.objects.pop(f"feedback/churn/{served_until:%Y/%m/%d/%H}/labels-8.jsonl").decode(),
        world.clock.at - timedelta(minutes=30),
    )
    result = world.run()
    # Then there is no capture to check, but the labels were read and joined, model quality reported and published
    assert result["status"] == "no_data"
    assert (result["quality"]["status"], result["quality"]["labelled"]) == ("checked", 200)
    assert result["quality"]["waiting_predictions"] == 0
    folder = result["report"].removeprefix(f"s3://{BUCKET}/") + "model_quality/"
    assert json.loads(world.bucket.objects[f"{folder}statistics.json"])["dataset"]["item_count"] == 200
    assert [c for c in world.metrics.put_calls if "model-metrics" in c[0]]
    assert world.state()["last_report"] == result["report"]
    # ... and read once: the next run without capture finds no new labels
    world.clock.at += timedelta(hours=1)
    assert world.run()["quality"]["status"] == "no_labels"
