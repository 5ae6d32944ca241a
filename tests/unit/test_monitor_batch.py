"""Batch Transform inputs through the monitor's data-quality check (shepherd.monitor.batch_inputs), on fakes."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from shepherd.monitor import batch_inputs

from tests.unit.test_monitor_run import BUCKET, World, make_world

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
