"""Batch Transform inputs through the monitor's data-quality check (shepherd.monitor.batch_inputs) and the model quality
of their outputs from labels joined by row (shepherd.monitor.batch_quality), on fakes."""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from shepherd.monitor import batch_inputs, batch_quality

from tests.unit.test_monitor_quality import _quality_baseline, schema
from tests.unit.test_monitor_run import BUCKET, PACKAGE, World, make_world

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world() -> World:
    return make_world()


def _batch_file(
    world: World, name: str, *, shift: float, rows: int = 500, header: bool = False, age: float = 0.5
) -> str:
    """A file BatchTransform scored and moved to processed/ ``age`` hours before the run."""
    rng = random.Random(name)
    lines = (["f0,f1,f2"] if header else []) + [
        ",".join(f"{rng.gauss(shift, 1.0):.4f}" for _ in range(3)) for _ in range(rows)
    ]
    key = f"batch/churn/processed/0a1b2c3d-{name}"
    world.bucket.put(key, "\n".join(lines) + "\n", world.clock.at - timedelta(hours=age))
    return key


def test_a_scored_batch_input_is_checked_once_against_the_champions_baseline(world: World) -> None:
    # Given two inputs scored since the last run: one like the training data (with a header), one shifted
    _batch_file(world, "calm.csv", shift=0.0, header=True)
    _batch_file(world, "shifted.csv", shift=2.0)
    # When the monitor runs (no endpoint traffic this hour)
    result = world.run()
    # Then each input was profiled and checked, with reports in its own folder and Model Monitor's batch metrics
    assert result["status"] == "no_data"
    checked = {entry["input"].rsplit("-", 1)[-1]: entry for entry in result["batch"]}
    assert (checked["calm.csv"]["status"], checked["calm.csv"]["records"]) == ("checked", 500)
    assert checked["calm.csv"]["violations"] == 0
    assert checked["shifted.csv"]["violations"] > 0
    folder = "monitoring/churn/batch/0a1b2c3d-shifted.csv/"
    violations = json.loads(world.bucket.objects[f"{folder}constraint_violations.json"])
    assert "baseline_drift_check" in {v["constraint_check_type"] for v in violations["violations"]}
    assert f"{folder}statistics.json" in world.bucket.tagged  # expires with the reports
    namespaces = {(namespace, tuple(dimensions)) for namespace, dimensions, _ in world.metrics.put_calls}
    assert namespaces == {("aws/sagemaker/ModelMonitoring/data-metrics", ("MonitoringSchedule",))}
    # and the next run checks neither again
    world.clock.at += timedelta(hours=1)
    assert world.run()["batch"] == []


def test_only_inputs_scored_since_the_first_runs_hour_and_under_the_size_limit_are_read(world: World) -> None:
    # Given an input scored a day ago, and one too large to profile in the function
    _batch_file(world, "old.csv", shift=0.0, age=24)
    big = _batch_file(world, "big.csv", shift=0.0)
    world.bucket.objects[big] += b" " * batch_inputs.MAX_BYTES
    # When the monitor runs for the first time
    result = world.run()
    # Then the old one is left alone and the big one named, unread
    [entry] = result["batch"]
    assert entry["input"] == f"s3://{BUCKET}/{big}"
    assert entry["status"].startswith("not checked: over 32 MB")
    assert big not in world.bucket.reads


def test_a_batch_only_model_has_its_scored_inputs_checked_without_an_endpoint(world: World) -> None:
    # Given a model that scores only in batch (no endpoint), and a shifted input it scored since the last run
    world.deps.models.live = None  # type: ignore[attr-defined]
    _batch_file(world, "shifted.csv", shift=2.0)
    # When its monitor runs
    result = world.run()
    # Then the input is checked against the baseline of the package batch scores with, and said so
    assert result["status"] == "no_endpoint"
    [entry] = result["batch"]
    assert entry["status"] == "checked"
    assert entry["violations"] > 0
    assert "1 Batch Transform inputs checked against" in result["reason"]
    assert "monitoring/churn/batch/0a1b2c3d-shifted.csv/constraint_violations.json" in world.bucket.objects
    assert [namespace for namespace, _, _ in world.metrics.put_calls] == ["aws/sagemaker/ModelMonitoring/data-metrics"]
    # ... once: the checkpoint is kept without an endpoint too
    world.clock.at += timedelta(hours=1)
    assert world.run()["batch"] == []


# ---------------------------------------------------------------- model quality of the outputs

RUN = "batch-run-1"
PROCESSED = f"s3://{BUCKET}/batch/churn/processed/0a1b2c3d-scores.csv"


def _scored(world: World, *, records: int = 200, file: str = "scores.csv", summary: bool = True) -> list[int]:
    """A file BatchTransform scored in run RUN: one score per line (0.8 or 0.2), its true classes returned."""
    rng = random.Random(file)
    truth = [rng.randint(0, 1) for _ in range(records)]
    scores = ["0.8" if label == 1 else "0.2" for label in truth]
    world.bucket.put(f"batch/churn/output/{RUN}/{file}.out", "\n".join(scores) + "\n", world.clock.at)
    if summary:
        document = {"model_package_arn": PACKAGE, "moved_to_uri": PROCESSED, "status": "Completed"}
        world.bucket.put(f"batch/churn/output/{RUN}/_summary.json", json.dumps(document), world.clock.at)
    return truth


def _labels(world: World, truth: list[int], *, wrong: float, file: str = "scores.csv", seed: int = 3) -> str:
    """Ground truth for the scored records, one per line in their order, ``wrong`` of them contradicting the score."""
    rng = random.Random(seed)
    key = f"feedback/churn/batch/{RUN}/{file}.labels"
    labels = [str(1 - label if rng.random() < wrong else label) for label in truth]
    world.bucket.put(key, "\n".join(labels) + "\n", world.clock.at)
    return key


def test_labels_for_a_scored_file_give_its_model_quality_against_the_baseline_once(world: World) -> None:
    # Given a champion with a model-quality baseline (10 % misses) and a scored file with labels, 2 % misses
    _quality_baseline(world)
    truth = _scored(world)
    _labels(world, truth, wrong=0.02)
    world.hour_of_traffic(seed=1)
    # When the monitor runs (after an hour of the endpoint's traffic)
    result = world.run()
    # Then the file's model quality is in its batch's folder, in Model Monitor's formats, and published
    [entry] = result["batch_quality"]
    assert (entry["status"], entry["labelled"], entry["violations"]) == ("checked", 200, 0)
    folder = "monitoring/churn/batch/0a1b2c3d-scores.csv/model_quality/"
    assert entry["report"] == f"s3://{BUCKET}/{folder}"
    statistics = json.loads(world.bucket.objects[f"{folder}statistics.json"])
    jsonschema.validate(statistics, schema("statistics"))
    assert statistics["dataset"]["item_count"] == 200
    violations = json.loads(world.bucket.objects[f"{folder}constraint_violations.json"])
    jsonschema.validate(violations, schema("constraint_violations"))
    [(namespace, dimensions, values)] = [c for c in world.metrics.put_calls if "model-metrics" in c[0]]
    assert namespace == "aws/sagemaker/ModelMonitoring/model-metrics"
    assert dimensions == {"MonitoringSchedule": "shepherd-test-monitor-churn"}
    assert {"accuracy", "precision", "recall", "f1", "auc"} <= set(values)
    assert result["notify"] is False
    # the run's alert.json lists it too, as it lists the batch inputs
    document = json.loads(world.bucket.objects[result["report"].removeprefix(f"s3://{BUCKET}/") + "alert.json"])
    assert document["batch_quality"] == [entry]
    # and the next run does not read the labels again
    world.clock.at += timedelta(hours=1)
    assert world.run()["batch_quality"] == []


def test_worse_outputs_violate_the_baseline_and_notify(world: World) -> None:
    # Given a scored file whose labels contradict 45 % of its scores, against a baseline missing 10 %
    _quality_baseline(world)
    _labels(world, _scored(world), wrong=0.45)
    world.clock.at += timedelta(minutes=30)
    # When the monitor runs
    result = world.run()
    # Then the violations are written and told in one notification naming the file
    [entry] = result["batch_quality"]
    assert entry["violations"] > 0
    assert result["notify"] is True
    told = result["notification"]
    assert told["event"] == "MonitoringAlert"
    assert told["reason"] == "churn: model quality of Batch Transform outputs below the baseline (scores.csv)"
    assert (
        f"{entry['violations']} violations in s3://{BUCKET}/batch/churn/output/{RUN}/scores.csv.out" in told["detail"]
    )


def test_labels_that_do_not_match_the_scored_rows_are_refused_with_a_reason_file(world: World) -> None:
    # Given a scored file of 200 records and 199 labels for it
    _quality_baseline(world)
    truth = _scored(world)
    key = _labels(world, truth[:-1], wrong=0.0)
    world.clock.at += timedelta(minutes=30)
    # When the monitor runs
    result = world.run()
    # Then the labels are refused, saying why, beside where the report would be; nothing is published or deleted
    [entry] = result["batch_quality"]
    assert entry["status"].startswith("refused: 199 labels for 200 scored records")
    reason = world.bucket.objects["monitoring/churn/batch/0a1b2c3d-scores.csv/model_quality/reason.txt"].decode()
    assert reason.startswith(f"s3://{BUCKET}/{key} not checked: 199 labels for 200 scored records")
    assert not [c for c in world.metrics.put_calls if "model-metrics" in c[0]]
    assert key in world.bucket.objects
    assert result["notify"] is False


def test_labels_without_a_scored_output_or_a_baseline_are_refused_by_name(world: World) -> None:
    # Given labels for a file no run scored, and (no model-quality baseline) labels for one that was
    _labels(world, [1, 0, 1], wrong=0.0, file="never.csv")
    _labels(world, _scored(world, summary=False), wrong=0.0)
    world.bucket.put("feedback/churn/batch/README.txt", "labels go here", world.clock.at)
    world.clock.at += timedelta(minutes=30)
    # When the monitor runs
    entries = {e["labels"].rsplit("/", 1)[-1]: e for e in world.run()["batch_quality"]}
    # Then each is refused with its reason, and an object that is not a labels file is named, not read
    assert entries["never.csv.labels"]["status"].startswith(
        f"refused: no scored output s3://{BUCKET}/batch/churn/output/{RUN}/never.csv.out"
    )
    assert entries["scores.csv.labels"]["status"] == "refused: churn v1 has no model-quality baseline"
    assert (
        entries["scores.csv.labels"]["report"]
        == f"s3://{BUCKET}/monitoring/churn/batch/{RUN}-scores.csv/model_quality/"
    )
    assert entries["README.txt"]["status"] == "not read: not feedback/churn/batch/<run>/<file>.labels"


def test_a_batch_only_model_gets_the_model_quality_of_its_outputs(world: World) -> None:
    # Given a model with no endpoint, and labels for a file it scored
    world.deps.models.live = None  # type: ignore[attr-defined]
    _quality_baseline(world)
    _labels(world, _scored(world), wrong=0.02)
    world.clock.at += timedelta(minutes=30)
    # When its monitor runs
    result = world.run()
    # Then the file's model quality is checked as for a model with an endpoint
    assert result["status"] == "no_endpoint"
    [entry] = result["batch_quality"]
    assert (entry["status"], entry["violations"]) == ("checked", 0)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("1\n\n0\n", [("0.8", "1"), ("0.2", "0")]),  # a blank line: that record has no label
        ('{"row": 3, "label": 0}\n{"row": 1, "label": 1}\n', [("0.8", "1"), ("0.2", "0")]),
    ],
    ids=["lines", "json-rows"],
)
def test_labels_join_the_scores_by_row(labels: str, expected: list[tuple[str, str]]) -> None:
    joined = batch_quality.join("0.8\n0.5\n0.2\n", labels)
    assert [(row.prediction, row.label) for row in joined] == expected


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ("1\n0\n", "2 labels for 3 scored records"),
        ('{"row": 4, "label": 1}\n', "line 1: row 4 is not a record of the output (1 to 3)"),
        ('{"row": 2, "label": 1}\n{"row": 2, "label": 0}\n', "line 2: row 2 is labelled twice"),
        ('{"row": 1}\n', 'line 1: not a JSON object with "row" and "label"'),
        ("\n\n\n", "no record has a label"),
    ],
)
def test_labels_that_do_not_line_up_are_refused_whole(labels: str, reason: str) -> None:
    with pytest.raises(batch_quality.Refused, match=re.escape(reason)):
        batch_quality.join("0.8\n0.5\n0.2\n", labels)


def test_only_labels_files_under_a_run_are_labels() -> None:
    found = batch_quality.labels_file("churn", "feedback/churn/batch/run-1/a.csv.labels")
    assert found == batch_quality.LabelsFile("churn", "run-1", "a.csv")
    assert found.output_key == "batch/churn/output/run-1/a.csv.out"
    for key in ("feedback/churn/batch/a.csv.labels", "feedback/churn/batch/run-1/x/a.labels", "feedback/churn/2026/a"):
        assert batch_quality.labels_file("churn", key) is None
