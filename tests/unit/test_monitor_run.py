"""The monitor run (shepherd.monitor.run) on in-memory fakes: incremental capture reading, a crash mid-read,
alert -> notification, and the drift -> retrain gate (sustained hours, a rollout running, the cooldown)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from shepherd.monitor import capture, history, retrain, run
from shepherd.monitor.constraints import suggest_constraints
from shepherd.monitor.dataset import Dataset
from shepherd.monitor.reference import build
from shepherd.monitor.statistics import profile
from shepherd.objects import DataObject

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
CAPTURE = "capture/churn/churn/"


class Crash(Exception):
    """The run's process dies here."""


@dataclass
class FakeBucket:
    """The data bucket: objects by key, a LastModified per key, and a read that can be made to crash."""

    objects: dict[str, bytes] = field(default_factory=dict)
    modified: dict[str, str] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    tagged: set[str] = field(default_factory=set)  # keys written as reports, with the expiry tag
    crash_on_read: int | None = None  # the n-th read (0-based) raises Crash

    def put(self, key: str, data: bytes | str, when: datetime = AT) -> None:
        self.objects[key] = data.encode() if isinstance(data, str) else data
        self.modified[key] = when.isoformat()

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        if self.crash_on_read is not None and len(self.reads) == self.crash_on_read:
            self.crash_on_read = None
            raise Crash(key)
        self.reads.append(key)
        if key not in self.objects:
            from shepherd.errors import NotFound

            raise NotFound(key)
        return self.objects[key]

    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None:
        self.put(key, data)
        return None

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self.put(key, data)
        self.tagged.add(key)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def latest_objects(self, bucket: str, prefix: str) -> list[DataObject]:
        return [
            DataObject(key=k, size=len(v), version_id=f"v-{k}", last_modified=self.modified[k])
            for k, v in sorted(self.objects.items())
            if k.startswith(prefix)
        ]


def capture_line(features: list[float], at: datetime, number: int) -> str:
    """One data-capture JSON line as SageMaker writes it (CSV request, base64-free)."""
    body = ",".join(f"{x:.4f}" for x in features)
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body, "encoding": "CSV"},
                "endpointOutput": {
                    "observedContentType": "text/csv",
                    "mode": "OUTPUT",
                    "data": "0.5",
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {"eventId": f"e-{number}", "inferenceId": f"i-{number}", "inferenceTime": at.isoformat()},
            "eventVersion": "0",
        }
    )


def capture_object(
    bucket: FakeBucket, at: datetime, rows: int, *, shift: float = 0.0, seed: int = 0, name: str = ""
) -> str:
    rng = random.Random(seed)
    lines = [capture_line([rng.gauss(shift, 1.0) for _ in range(3)], at, seed * 10_000 + i) for i in range(rows)]
    key = f"{CAPTURE}AllTraffic/{at:%Y/%m/%d/%H}/{name or f'{at:%M-%S}-{seed}'}.jsonl"
    bucket.put(key, "\n".join(lines) + "\n", at)
    return key


def read(bucket: FakeBucket, checkpoint: capture.Checkpoint, now: datetime, **kwargs: Any) -> capture.Read:
    return capture.read_new(
        checkpoint,
        {"AllTraffic": f"{CAPTURE}AllTraffic/"},
        now.timestamp(),
        list_keys=lambda prefix: bucket.keys("b", prefix),
        read_lines=lambda key: bucket.read_bytes("b", key).decode().splitlines(),
        **kwargs,
    )


# ---------------------------------------------------------------- incremental reading


def test_each_capture_object_is_read_by_one_run_only() -> None:
    # Given an hour's capture read by a first run
    bucket = FakeBucket()
    capture_object(bucket, AT - timedelta(minutes=20), 5, seed=1)
    checkpoint = capture.Checkpoint.first(AT.timestamp())
    first = read(bucket, checkpoint, AT)
    # When more is written into the same hour, and a second run reads
    capture_object(bucket, AT + timedelta(minutes=10), 3, seed=2)
    second = read(bucket, checkpoint, AT + timedelta(minutes=15))
    # Then the second run reads only the new object
    assert (first.objects, len(first.captured)) == (1, 5)
    assert (second.objects, len(second.captured)) == (1, 3)


def test_hours_that_ended_long_ago_are_closed_and_never_listed_again() -> None:
    # Given a run two hours after the capture's hour
    bucket = FakeBucket()
    capture_object(bucket, AT, 2, seed=1)
    checkpoint = capture.Checkpoint.first(AT.timestamp())
    read(bucket, checkpoint, AT + timedelta(hours=2, minutes=45))
    # Then its hour is closed, its names forgotten
    assert checkpoint.closed > AT.timestamp()
    assert checkpoint.read == {}
    # And a late object in that hour is not read
    capture_object(bucket, AT + timedelta(minutes=5), 2, seed=2)
    assert read(bucket, checkpoint, AT + timedelta(hours=3)).objects == 0


def test_a_run_out_of_time_leaves_the_rest_to_the_next() -> None:
    # Given three capture objects and a run that may read one
    bucket = FakeBucket()
    for seed in range(3):
        capture_object(bucket, AT - timedelta(minutes=seed), 1, seed=seed)
    checkpoint = capture.Checkpoint.first(AT.timestamp())
    # When it runs out of time after the first
    first = read(bucket, checkpoint, AT, out_of_time=lambda: True)
    rest = read(bucket, checkpoint, AT)
    # Then the next run reads the other two, and no object twice
    assert (first.objects, first.complete) == (1, False)
    assert (rest.objects, rest.complete) == (2, True)
    assert len(bucket.reads) == len(set(bucket.reads)) == 3


def test_the_checkpoint_survives_json() -> None:
    checkpoint = capture.Checkpoint(closed=1.0, read={"AllTraffic/2026/12/07/12": ["a.jsonl"]})
    assert capture.Checkpoint.from_json(json.loads(json.dumps(checkpoint.to_json()))) == checkpoint


# ---------------------------------------------------------------- the retrain gate

POLICY = retrain.Policy(on=("drift",), sustained_hours=3, cooldown_hours=24, dataset=None)


def test_drift_must_be_sustained_before_it_retrains() -> None:
    # Given drift seen at AT
    state = retrain.RetrainState()
    early = retrain.gate(POLICY, state, drifting=True, at=AT, rollout=None)
    two_hours = retrain.gate(POLICY, state, drifting=True, at=AT + timedelta(hours=2), rollout=None)
    three_hours = retrain.gate(POLICY, state, drifting=True, at=AT + timedelta(hours=3), rollout=None)
    # Then only three hours of it retrain
    assert (early.retrain, two_hours.retrain, three_hours.retrain) == (False, False, True)
    assert three_hours.evidence["drift_since"] == AT.isoformat()


def test_an_interrupted_episode_starts_over() -> None:
    state = retrain.RetrainState()
    retrain.gate(POLICY, state, drifting=True, at=AT, rollout=None)
    retrain.gate(POLICY, state, drifting=False, at=AT + timedelta(hours=1), rollout=None)
    later = retrain.gate(POLICY, state, drifting=True, at=AT + timedelta(hours=3), rollout=None)
    assert not later.retrain
    assert state.drift_since == (AT + timedelta(hours=3)).isoformat()


def test_no_retrain_while_a_rollout_holds_the_endpoint() -> None:
    state = retrain.RetrainState(drift_since=(AT - timedelta(hours=5)).isoformat())
    held = retrain.gate(POLICY, state, drifting=True, at=AT, rollout="churn-rollout-1")
    assert not held.retrain
    assert "churn-rollout-1" in held.reason


def test_no_retrain_within_the_cooldown() -> None:
    state = retrain.RetrainState(drift_since=(AT - timedelta(hours=30)).isoformat())
    retrain.note_trigger(state, {"at": (AT - timedelta(hours=23)).isoformat()}, AT - timedelta(hours=23))
    cooling = retrain.gate(POLICY, state, drifting=True, at=AT, rollout=None)
    after = retrain.gate(POLICY, state, drifting=True, at=AT + timedelta(hours=1), rollout=None)
    assert (cooling.retrain, after.retrain) == (False, True)
    assert "cooldown" in cooling.reason


def test_drift_retrains_only_when_the_config_asks() -> None:
    state = retrain.RetrainState(drift_since=(AT - timedelta(hours=5)).isoformat())
    quality_only = retrain.Policy(on=("quality",), sustained_hours=3, cooldown_hours=24, dataset=None)
    assert not retrain.gate(quality_only, state, drifting=True, at=AT, rollout=None).retrain


def test_a_retrain_starts_the_lifecycle_as_a_marker_upload_does_once_per_episode() -> None:
    marker = DataObject(key="training/churn/2026-12-01/_READY", size=0, version_id="v1")
    name, payload = retrain.lifecycle_start("churn", "bucket", marker, episode=AT.isoformat())
    again, _ = retrain.lifecycle_start("churn", "bucket", marker, episode=AT.isoformat())
    other, _ = retrain.lifecycle_start("churn", "bucket", marker, episode=(AT + timedelta(days=2)).isoformat())
    assert payload == {
        "model": "churn",
        "dataset": "2026-12-01",
        "bucket": "bucket",
        "prefix": "training/churn/2026-12-01/",
        "marker": marker.key,
        "marker_version": "v1",
        "force": True,
    }
    assert name == again != other


# ---------------------------------------------------------------- whole runs on fakes

BUCKET = "data"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/1"
CONFIG = """
framework: sklearn
entry_point: train.py
training: {target_column: target}
monitoring:
  retrain: {"on": [drift], sustained_hours: 2, cooldown_hours: 24}
"""
FEATURES = ["f0", "f1", "f2"]


@dataclass
class FakeModels:
    packages: dict[str, dict[str, Any]]
    live: dict[str, Any] = field(
        default_factory=lambda: {"EndpointName": "churn", "ProductionVariants": [{"VariantName": "AllTraffic"}]}
    )

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        return self.live if name == "churn" else None

    def describe_package(self, arn: str) -> dict[str, Any]:
        return self.packages[arn]

    def latest_approved_package(self, group: str) -> dict[str, Any] | None:
        return next(iter(self.packages.values()), None)


@dataclass
class FakeRollouts:
    held_by: str | None = None

    def champion(self, endpoint: str) -> dict[str, str] | None:
        return {"package": PACKAGE}

    def lock_of(self, endpoint: str) -> dict[str, str] | None:
        return None if self.held_by is None else {"owner": self.held_by}


@dataclass
class FakeMetrics:
    put_calls: list[tuple[str, dict[str, str], dict[str, float]]] = field(default_factory=list)

    def put(self, namespace: str, dimensions: Mapping[str, str], values: Mapping[str, float], at: datetime) -> None:
        self.put_calls.append((namespace, dict(dimensions), dict(values)))


@dataclass
class FakeLifecycle:
    started: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        if name in self.started:
            return False
        self.started[name] = payload
        return True


@dataclass
class Clock:
    at: datetime = AT

    def now(self) -> datetime:
        return self.at


@dataclass
class World:
    bucket: FakeBucket
    metrics: FakeMetrics
    lifecycle: FakeLifecycle
    rollouts: FakeRollouts
    clock: Clock
    deps: run.Deps

    def run(self, trigger: str = "schedule") -> dict[str, Any]:
        return run.monitor(self.deps, run.MonitorRequest(model="churn", trigger=trigger))

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.bucket.objects["monitoring/churn/state.json"]))

    def hour_of_traffic(self, rows: int = 200, *, shift: float = 0.0, seed: int = 0) -> None:
        """An hour's capture in four objects, then the clock at the next hour's monitor run."""
        start = self.clock.at
        for part in range(4):
            capture_object(
                self.bucket, start + timedelta(minutes=15 * part), rows // 4, shift=shift, seed=seed * 10 + part
            )
        self.clock.at = start + timedelta(hours=1)


def training_columns(rows: int = 2000, seed: int = 7) -> dict[str, list[str | None]]:
    rng = random.Random(seed)
    return {name: [f"{rng.gauss(0.0, 1.0):.4f}" for _ in range(rows)] for name in FEATURES}


@pytest.fixture
def world() -> World:
    return make_world()


def make_world() -> World:
    """A champion with a data baseline, its endpoint, config and a marked dataset, on fakes; the clock on the hour."""
    bucket = FakeBucket()
    bucket.put("models/churn/shepherd.yaml", CONFIG)
    columns = training_columns()
    statistics = profile(Dataset(columns=columns), dataset_name="train")
    prefix = "monitoring/churn/baseline/1/"
    bucket.put(f"{prefix}statistics.json", json.dumps(statistics))
    bucket.put(f"{prefix}constraints.json", json.dumps(suggest_constraints(statistics)))
    bucket.put(f"{prefix}reference.json", json.dumps(build(columns).to_json()))
    bucket.put("training/churn/2026-12-01/data.csv", "f0,f1,f2,target\n1,2,3,0\n", AT - timedelta(days=6))
    bucket.put("training/churn/2026-12-01/_READY", "", AT - timedelta(days=6))
    quality = {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}constraints.json"},
    }
    package = {"ModelPackageArn": PACKAGE, "DriftCheckBaselines": {"ModelDataQuality": quality}}
    metrics, lifecycle, rollouts, clock = FakeMetrics(), FakeLifecycle(), FakeRollouts(), Clock(AT.replace(minute=0))
    deps = run.Deps(
        objects=bucket,
        reports=bucket,
        models=FakeModels({PACKAGE: package}),
        rollouts=rollouts,
        metrics=metrics,
        lifecycle=lifecycle,
        settings=run.Settings(bucket=BUCKET, stage="test"),
        now=clock.now,
        monotonic=lambda: 0.0,
    )
    return World(bucket, metrics, lifecycle, rollouts, clock, deps)


def test_a_run_without_drift_writes_its_reports_and_metrics_and_notifies_no_one(world: World) -> None:
    # Given an hour of traffic like the training data
    world.hour_of_traffic(seed=1)
    # When the monitor runs
    result = world.run()
    # Then it reports in Model Monitor's layout, publishes per-feature metrics, and does not notify
    folder = "monitoring/churn/reports/churn/2026/12/07/13/"
    assert {k.removeprefix(folder) for k in world.bucket.objects if k.startswith(folder)} == {
        "statistics.json",
        "constraint_violations.json",
        "alert.json",
    }
    assert (result["status"], result["records"], result["unreadable"], result["notify"]) == ("checked", 200, 0, False)
    # and the reports, not the state, carry the tag the bucket's report expiry goes by
    reports = ("statistics.json", "constraint_violations.json", "alert.json")
    assert world.bucket.tagged == {f"{folder}{name}" for name in reports}
    namespace, dimensions, values = world.metrics.put_calls[0]
    assert namespace == "aws/sagemaker/Endpoints/data-metrics"
    assert dimensions == {"Endpoint": "churn", "MonitoringSchedule": "shepherd-test-monitor-churn"}
    assert {f"feature_baseline_drift_{name}" for name in FEATURES} <= set(values)


def test_captured_requests_that_cannot_be_read_are_counted_in_the_outcome(world: World) -> None:
    # Given an hour of traffic and one captured request whose body is not base64 as its encoding says
    world.hour_of_traffic(seed=1)
    broken = {"captureData": {"endpointInput": {"observedContentType": "text/csv", "data": "?", "encoding": "BASE64"}}}
    world.bucket.put(f"{CAPTURE}AllTraffic/{AT:%Y/%m/%d/%H}/broken.jsonl", json.dumps(broken) + "\n", AT)
    # When the monitor runs, then the readable ones are checked and the broken one is counted, not dropped silently
    result = world.run()
    assert (result["records"], result["unreadable"]) == (200, 1)


def test_drift_alerts_and_the_notification_says_where(world: World) -> None:
    # Given hours of traffic shifted by two standard deviations
    results = []
    for hour in range(2):
        world.hour_of_traffic(shift=2.0, seed=hour + 1)
        results.append(world.run())
    # Then the first run opens an alert and notifies, the second (the episode still open) does not
    first = results[0]
    assert first["notify"] is True
    note = first["notification"]
    assert list(note)[:3] == ["reason", "detail", "event"]
    assert note["event"] == "MonitoringAlert"
    jsonschema.validate(note, json.loads((ROOT / "schemas/notification.schema.json").read_text()))
    assert "f0" in note["reason"]
    assert note["report"] == first["report"]
    assert first["violations"] > 0
    assert results[1]["notify"] is False


def test_a_run_that_crashes_mid_read_is_redone_without_double_counting(world: World) -> None:
    # Given an hour of traffic, and a run that dies reading its third capture object
    world.hour_of_traffic(seed=3)
    world.bucket.crash_on_read = len(world.bucket.reads) + 5  # the config, the baseline's two files, two objects
    with pytest.raises(Crash) as crashed:
        world.run()
    assert str(crashed.value).startswith(CAPTURE)
    assert "monitoring/churn/state.json" not in world.bucket.objects
    # When the next run reads
    result = world.run()
    # Then it counts each captured request once
    assert result["records"] == 200
    again = world.run()
    assert again["status"] == "no_data"


def test_sustained_drift_starts_one_retrain_on_the_newest_marked_dataset(world: World) -> None:
    # Given drift that lasts three hours (the config asks for two)
    outcomes = []
    for hour in range(4):
        world.hour_of_traffic(shift=2.0, seed=10 + hour)
        outcomes.append(world.run())
    # Then ModelLifecycle is started once, forced, on the marked dataset, and the trigger is recorded
    assert len(world.lifecycle.started) == 1
    (payload,) = world.lifecycle.started.values()
    assert (payload["prefix"], payload["force"]) == ("training/churn/2026-12-01/", True)
    assert len([o for o in outcomes if o.get("notification", {}).get("retrain", {}).get("started")]) == 1
    report = json.loads(world.bucket.objects[outcomes[-2]["report"].removeprefix(f"s3://{BUCKET}/") + "alert.json"])
    assert report["retrain"]["evidence"]["drift_since"]
    assert world.state()["retrain"]["triggers"][0]["dataset"] == f"s3://{BUCKET}/training/churn/2026-12-01/"


def test_no_retrain_while_a_rollout_runs(world: World) -> None:
    world.rollouts.held_by = "churn-rollout-7"
    for hour in range(4):
        world.hour_of_traffic(shift=2.0, seed=20 + hour)
        outcome = world.run()
    assert world.lifecycle.started == {}
    report = json.loads(world.bucket.objects[outcome["report"].removeprefix(f"s3://{BUCKET}/") + "alert.json"])
    assert "churn-rollout-7" in report["retrain"]["reason"]


def test_a_package_without_a_baseline_reports_none(world: World) -> None:
    package = world.deps.models.describe_package(PACKAGE)
    package.pop("DriftCheckBaselines")
    package["CustomerMetadataProperties"] = {"shepherd:baseline": "none: the training data has no column 'target'"}
    world.hour_of_traffic(seed=4)
    result = world.run()
    assert result["status"] == "no_baseline"
    assert "no column" in result["reason"]


@pytest.mark.parametrize(
    ("schedule", "checks"),
    [("rate(1 hour)", 720), ("rate(30 minutes)", 1440), ("rate(1 day)", 30), ("cron(0 * * * ? *)", 720)],
)
def test_the_alert_is_told_how_often_the_schedule_checks(schedule: str, checks: int) -> None:
    assert run.checks_per_month(schedule) == checks


def test_a_package_registered_by_a_pipeline_names_its_baseline_in_model_metrics_alone() -> None:
    quality = {
        "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/s.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": "s3://b/c.json"},
    }
    assert run.baselines_of({"ModelMetrics": {"ModelDataQuality": quality}}) == ("s3://b/s.json", "s3://b/c.json")
    assert run.baselines_of({"ModelMetrics": {"ModelQuality": quality}}) is None


def test_the_run_learns_its_reference_from_capture_and_says_which_it_used() -> None:
    # Given a model whose config learns the reference from a day of captured hours
    world = make_world()
    world.bucket.put("models/churn/shepherd.yaml", CONFIG + "  reference: {history_days: 1}\n")
    decisions = []
    # When a day of hourly runs checks its traffic, and one more
    for hour in range(25):
        world.hour_of_traffic(rows=40, seed=hour + 1)
        world.run()
        folder = f"monitoring/churn/reports/churn/{world.clock.at:%Y/%m/%d/%H}/"
        decisions.append(json.loads(world.bucket.objects[f"{folder}alert.json"])["decision"])
    # Then the day's runs used the training reference, counting hours towards the learnt one
    first, last_learning, learnt = decisions[0]["reference"], decisions[23]["reference"], decisions[24]["reference"]
    assert first["source"] == "training"
    assert first["uri"] == f"s3://{BUCKET}/monitoring/churn/baseline/1/reference.json"
    assert (first["learning"]["hours"], first["learning"]["needed"]) == (1, 24)
    assert last_learning["learning"]["note"].endswith("used from the next run")
    # and the next run judged against the reference learnt from capture, recorded in the state too
    assert learnt["source"] == "capture"
    assert learnt["uri"] == f"s3://{BUCKET}/{history.document_key('churn')}"
    assert (learnt["hours"], learnt["left_out"]) == (24, 0)
    assert world.state()["reference"] == learnt
    stored = json.loads(world.bucket.objects[history.document_key("churn")])
    assert (stored["status"], stored["package"]) == ("learnt", PACKAGE)
    assert set(stored["reference"]["features"]) == set(FEATURES)


def test_the_training_reference_stays_when_the_config_does_not_learn() -> None:
    # Given a config that turns learning off
    world = make_world()
    world.bucket.put("models/churn/shepherd.yaml", CONFIG + "  reference: {learn: false}\n")
    world.hour_of_traffic(rows=40, seed=1)
    # When the monitor runs, then it judges against the training reference and keeps no history
    world.run()
    assert world.state()["reference"]["source"] == "training"
    assert history.document_key("churn") not in world.bucket.objects
