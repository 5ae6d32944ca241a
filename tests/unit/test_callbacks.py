"""Tests for shepherd.callbacks: settling waiting task tokens from job events and the reconciler (in-memory ports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shepherd.callbacks import (
    ORPHAN_AFTER_SECONDS,
    Kind,
    Waiter,
    described_status,
    endpoint_outcome,
    failure,
    kind_of_event,
    outcome,
    reconcile,
    settle,
    start_job,
)

NOW = datetime(2024, 3, 8, 12, 0, tzinfo=UTC)
JOB = "churn-train-0123456789ab"
TRANSFORM = "churn-transform-0123456789ab"


# ---------------------------------------------------------------- in-memory ports


@dataclass
class MemoryTokenStore:
    """TokenStore: waiting items by job name; settled ones are kept with their outcome, as DynamoDB does."""

    items: dict[str, Waiter] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)

    def put(self, waiter: Waiter, *, expires_after_seconds: int) -> None:
        self.items[waiter.job_name] = waiter
        self.settled.pop(waiter.job_name, None)

    def get(self, job_name: str) -> Waiter | None:
        return None if job_name in self.settled else self.items.get(job_name)

    def mark_settled(self, waiter: Waiter, outcome: str) -> None:
        self.settled[waiter.job_name] = outcome

    def forget(self, waiter: Waiter) -> None:
        self.items.pop(waiter.job_name, None)
        self.forgotten.append(waiter.job_name)

    def waiting(self) -> list[Waiter]:
        return [w for name, w in self.items.items() if name not in self.settled]


@dataclass
class MemoryJobs:
    """Jobs: descriptions by (kind, name), as DescribeTrainingJob / DescribeTransformJob return them."""

    descriptions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: int = 0

    def describe(self, kind: Kind, name: str) -> dict[str, Any] | None:
        self.calls += 1
        return self.descriptions.get((kind, name))


@dataclass
class MemoryCreatableJobs(MemoryJobs):
    """CreatableJobs: a job is created once per name; what was asked of create is kept in order."""

    created: list[str] = field(default_factory=list)
    stored_before_create: list[bool] = field(default_factory=list)
    store: MemoryTokenStore | None = None

    def create(self, kind: Kind, request: dict[str, Any]) -> bool:
        name = request["TrainingJobName"]
        self.stored_before_create.append(self.store is not None and name in self.store.items)
        if (kind, name) in self.descriptions:
            return False
        self.created.append(name)
        self.descriptions[kind, name] = training_job(name, status="InProgress")
        return True


@dataclass
class MemoryResumer:
    """Resumer: records what it sends; tokens in `closed` are refused as Step Functions refuses a closed task."""

    sent: list[tuple[str, str, Any]] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        self.sent.append(("success", token, output))
        return token not in self.closed

    def fail(self, token: str, error: str, cause: str) -> bool:
        self.sent.append(("failure", token, (error, cause)))
        return token not in self.closed


@dataclass
class World:
    store: MemoryTokenStore = field(default_factory=MemoryTokenStore)
    jobs: MemoryJobs = field(default_factory=MemoryJobs)
    resumer: MemoryResumer = field(default_factory=MemoryResumer)

    def wait_for(self, name: str, kind: Kind = "training", *, age_seconds: float = 0, token: str = "") -> Waiter:
        waiter = Waiter(name, kind, token or f"token-{name}", "exec-1", NOW - timedelta(seconds=age_seconds))
        self.store.put(waiter, expires_after_seconds=3600)
        return waiter

    def settle(self, name: str, kind: Kind = "training", **extra: Any) -> str:
        return settle(kind, name, store=self.store, jobs=self.jobs, resumer=self.resumer, **extra)

    def reconcile(self) -> dict[str, int]:
        return reconcile(store=self.store, jobs=self.jobs, resumer=self.resumer, now=NOW)


def training_job(name: str = JOB, status: str = "Completed", **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "TrainingJobStatus": status,
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/artifacts/churn/training/{name}/output/model.tar.gz"},
        "FinalMetricDataList": [
            {"MetricName": "validation:auc", "Value": 0.82},
            {"MetricName": "validation:accuracy", "Value": 0.81},
        ],
        "TrainingTimeInSeconds": 120,
        "BillableTimeInSeconds": 48,
    } | extra


def transform_job(name: str = TRANSFORM, status: str = "Completed", **extra: Any) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
        "TransformJobStatus": status,
        "ModelName": "churn-v1-batch",
        "TransformOutput": {"S3OutputPath": "s3://bucket/batch/churn/output/run-1/"},
    } | extra


@pytest.fixture
def world() -> World:
    return World()


# ---------------------------------------------------------------- settle: finished jobs


def test_completed_training_job_resumes_the_waiter_with_its_outcome(world: World) -> None:
    # Given an execution waiting for a training job that completed
    world.wait_for(JOB)
    world.jobs.descriptions["training", JOB] = training_job()
    # When its event is settled
    result = world.settle(JOB)
    # Then the token succeeds with the model, metrics and times, and the waiter is settled
    assert result == "settled"
    assert world.resumer.sent == [
        (
            "success",
            f"token-{JOB}",
            {
                "job_name": JOB,
                "status": "Completed",
                "job_arn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
                "model_data_url": f"s3://bucket/artifacts/churn/training/{JOB}/output/model.tar.gz",
                "metrics": {"validation:auc": 0.82, "validation:accuracy": 0.81},
                "training_seconds": 120,
                "billable_seconds": 48,
            },
        )
    ]
    assert world.store.settled == {JOB: "Completed"}


def test_completed_transform_job_resumes_with_its_output(world: World) -> None:
    world.wait_for(TRANSFORM, "transform")
    world.jobs.descriptions["transform", TRANSFORM] = transform_job()
    assert world.settle(TRANSFORM, "transform") == "settled"
    kind, _, output = world.resumer.sent[0]
    assert kind == "success"
    assert output["output_path"] == "s3://bucket/batch/churn/output/run-1/"
    assert output["model_name"] == "churn-v1-batch"


@pytest.mark.parametrize(("status", "error"), [("Failed", "TrainingJobFailed"), ("Stopped", "TrainingJobStopped")])
def test_failed_or_stopped_training_job_fails_the_waiter_with_the_reason(world: World, status: str, error: str) -> None:
    world.wait_for(JOB)
    world.jobs.descriptions["training", JOB] = training_job(status=status, FailureReason="AlgorithmError: boom")
    assert world.settle(JOB) == "settled"
    assert world.resumer.sent == [
        ("failure", f"token-{JOB}", (error, f"Training job {JOB} {status.lower()}: AlgorithmError: boom"))
    ]
    assert world.store.settled == {JOB: status}


def test_failed_transform_job_raises_transform_job_failed(world: World) -> None:
    world.wait_for(TRANSFORM, "transform")
    world.jobs.descriptions["transform", TRANSFORM] = transform_job(status="Failed", FailureReason="ClientError: 400")
    world.settle(TRANSFORM, "transform")
    assert world.resumer.sent[0][2] == (
        "TransformJobFailed",
        f"Transform job {TRANSFORM} failed: ClientError: 400",
    )


def test_a_stopped_job_without_a_failure_reason_names_its_status(world: World) -> None:
    world.wait_for(JOB)
    world.jobs.descriptions["training", JOB] = training_job(status="Stopped")
    world.settle(JOB)
    assert world.resumer.sent[0][2][1] == f"Training job {JOB} stopped: Stopped"


def test_a_given_description_is_used_instead_of_describing(world: World) -> None:
    world.wait_for(JOB)
    assert world.settle(JOB, description=training_job()) == "settled"
    assert world.jobs.calls == 0


# ---------------------------------------------------------------- settle: nothing to send


@pytest.mark.parametrize("status", ["InProgress", "Stopping", ""])
def test_a_job_still_running_sends_nothing(world: World, status: str) -> None:
    world.wait_for(JOB)
    world.jobs.descriptions["training", JOB] = training_job(status=status)
    assert world.settle(JOB) == f"still-{status.lower() or 'unknown'}"
    assert world.resumer.sent == []
    assert world.store.settled == {}


def test_an_unknown_job_without_a_waiter_sends_nothing(world: World) -> None:
    world.jobs.descriptions["training", JOB] = training_job()
    assert world.settle(JOB) == "no-waiter"
    assert world.resumer.sent == []
    assert world.jobs.calls == 0


def test_a_waiter_whose_job_does_not_exist_sends_nothing(world: World) -> None:
    world.wait_for(JOB)
    assert world.settle(JOB) == "job-missing"
    assert world.resumer.sent == []
    assert world.store.settled == {}


def test_a_waiter_of_the_other_kind_is_ignored(world: World) -> None:
    # Given a transform job waiter and a training job of the same name
    world.wait_for(JOB, "transform")
    world.jobs.descriptions["training", JOB] = training_job()
    # When the training job's event arrives
    assert world.settle(JOB, "training") == "no-waiter"
    # Then the transform waiter is untouched
    assert world.resumer.sent == []
    assert world.store.waiting() == [world.store.items[JOB]]


def test_a_duplicate_event_finds_no_waiter(world: World) -> None:
    world.wait_for(JOB)
    world.jobs.descriptions["training", JOB] = training_job()
    assert world.settle(JOB) == "settled"
    assert world.settle(JOB) == "no-waiter"
    assert len(world.resumer.sent) == 1


def test_a_task_already_closed_is_still_marked_settled(world: World) -> None:
    # Given a waiter whose task Step Functions already closed (timed out, or settled by a racing call)
    waiter = world.wait_for(JOB)
    world.resumer.closed.add(waiter.token)
    world.jobs.descriptions["training", JOB] = training_job(status="Failed", FailureReason="x")
    # When the event is settled
    result = world.settle(JOB)
    # Then it counts as done and is not tried again
    assert result == "already-closed"
    assert world.store.settled == {JOB: "Failed"}
    assert world.settle(JOB) == "no-waiter"


# ---------------------------------------------------------------- start_job


def _start(world: World, jobs: MemoryCreatableJobs) -> str:
    waiter = Waiter(JOB, "training", "token-start", "exec-1", NOW)
    request = {"TrainingJobName": JOB}
    return start_job(waiter, request, keep_seconds=3600, store=world.store, jobs=jobs, resumer=world.resumer)


def test_start_job_stores_the_token_before_it_creates_the_job(world: World) -> None:
    jobs = MemoryCreatableJobs(store=world.store)

    assert _start(world, jobs) == "created"

    assert (jobs.created, jobs.stored_before_create) == ([JOB], [True])
    assert world.store.items[JOB].token == "token-start"
    assert world.resumer.sent == []


def test_start_job_of_a_job_that_finished_already_settles_it(world: World) -> None:
    # Given a retried task whose job was created, and finished, by the first attempt
    jobs = MemoryCreatableJobs(store=world.store, descriptions={("training", JOB): training_job()})
    # When it starts the job again
    result = _start(world, jobs)
    # Then nothing is created and the waiting execution is resumed with the job's outcome
    assert (result, jobs.created) == ("settled", [])
    assert [(kind, token) for kind, token, _ in world.resumer.sent] == [("success", "token-start")]


# ---------------------------------------------------------------- reconcile


def test_reconcile_settles_finished_jobs_and_leaves_running_ones(world: World) -> None:
    world.wait_for("done")
    world.wait_for("running")
    world.wait_for("failed")
    world.jobs.descriptions["training", "done"] = training_job("done")
    world.jobs.descriptions["training", "running"] = training_job("running", status="InProgress")
    world.jobs.descriptions["training", "failed"] = training_job("failed", status="Failed", FailureReason="OOM")
    counts = world.reconcile()
    assert counts == {"settled": 2, "still-inprogress": 1}
    assert world.store.settled == {"done": "Completed", "failed": "Failed"}
    assert [w.job_name for w in world.store.waiting()] == ["running"]


def test_reconcile_forgets_orphans_older_than_the_limit(world: World) -> None:
    # Given a token whose job never appeared, stored longer ago than ORPHAN_AFTER_SECONDS
    world.wait_for("orphan", age_seconds=ORPHAN_AFTER_SECONDS + 1)
    # When the reconciler runs
    counts = world.reconcile()
    # Then the token is forgotten and nothing is sent
    assert counts == {"forgotten": 1}
    assert world.store.forgotten == ["orphan"]
    assert world.store.waiting() == []
    assert world.resumer.sent == []


def test_reconcile_keeps_younger_orphans(world: World) -> None:
    # Given a token whose job has not appeared yet (CreateTrainingJob may still be on its way)
    world.wait_for("young", age_seconds=ORPHAN_AFTER_SECONDS - 60)
    counts = world.reconcile()
    assert counts == {"job-missing": 1}
    assert world.store.forgotten == []
    assert [w.job_name for w in world.store.waiting()] == ["young"]


def test_reconcile_with_nothing_waiting_does_nothing(world: World) -> None:
    assert world.reconcile() == {}


# ---------------------------------------------------------------- small rules


@pytest.mark.parametrize(
    ("detail_type", "kind"),
    [
        ("SageMaker Training Job State Change", "training"),
        ("SageMaker Transform Job State Change", "transform"),
        ("SageMaker Processing Job State Change", None),
    ],
)
def test_kind_of_event(detail_type: str, kind: str | None) -> None:
    assert kind_of_event(detail_type) == kind


def test_outcome_of_a_job_without_metrics_or_artifacts() -> None:
    summary = outcome("training", {"TrainingJobName": JOB, "TrainingJobStatus": "Completed"})
    assert summary["metrics"] == {}
    assert summary["model_data_url"] is None


def test_failure_prefers_the_failure_reason_over_the_secondary_status() -> None:
    description = training_job(status="Failed", FailureReason="boom", SecondaryStatus="Failed")
    assert failure("training", description) == ("TrainingJobFailed", f"Training job {JOB} failed: boom")


@pytest.mark.parametrize(
    ("status", "described"),
    [
        ("IN_SERVICE", "InService"),
        ("FAILED", "Failed"),
        ("UPDATE_ROLLBACK_FAILED", "UpdateRollbackFailed"),
        ("OUT_OF_SERVICE", "OutOfService"),
        ("InService", "InService"),
        ("Completed", "Completed"),
        (None, ""),
    ],
)
def test_described_status_reads_the_event_spelling_of_endpoint_statuses(status: str | None, described: str) -> None:
    assert described_status(status) == described


@pytest.mark.parametrize(
    ("status", "cause"),
    [("Failed", "endpoint churn failed: boom"), ("UpdateRollbackFailed", "endpoint churn could not roll back")],
)
def test_an_endpoint_that_failed_or_could_not_roll_back_ends_the_wait_as_failed(status: str, cause: str) -> None:
    description = {"EndpointName": "churn", "EndpointStatus": status, "FailureReason": "boom"}
    decision, output = endpoint_outcome(description, "churn-final-v2", NOW.timestamp())
    assert (decision, output["Error"]) == ("fail", "EndpointFailed")
    assert output["Cause"].startswith(cause)
