"""Resuming state machines that wait for SageMaker jobs (the task-token pattern).

The token is stored before the job is created (a job that fails at once can emit its event first), and
settling is idempotent (events repeat; the callback and the reconciler race). The storage, SageMaker and
Step Functions sides are ports that shepherd.aws implements. docs/ROLLOUTS.md, "Waits: task tokens".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

Kind = Literal["training", "transform", "endpoint"]
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# An endpoint whose update failed and rolled back is InService again (with a FailureReason); one whose
# rollback failed too is UpdateRollbackFailed, which no wait outlasts.
ENDPOINT_TERMINAL = frozenset({"InService", "Failed", "UpdateRollbackFailed"})
STATUS_KEY: dict[str, str] = {
    "training": "TrainingJobStatus",
    "transform": "TransformJobStatus",
    "endpoint": "EndpointStatus",
}
NAME_KEY: dict[str, str] = {"training": "TrainingJobName", "transform": "TransformJobName", "endpoint": "EndpointName"}
# How long a stored token may wait for a job that never appeared (its creation failed and the
# execution went down its Catch path) before the reconciler forgets it.
ORPHAN_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class Waiter:
    job_name: str
    kind: Kind
    token: str
    execution: str
    created_at: datetime
    expect: str = ""  # endpoints: the EndpointConfigName the change leads to


def waiter_key(kind: Kind, name: str) -> str:
    """Job names are unique per kind of job; an endpoint's waits live beside them under endpoint/<name>."""
    return f"endpoint/{name}" if kind == "endpoint" else name


class TokenStore(Protocol):
    def put(self, waiter: Waiter, *, expires_after_seconds: int) -> None: ...
    def get(self, job_name: str) -> Waiter | None: ...
    def mark_settled(self, waiter: Waiter, outcome: str) -> None: ...
    def forget(self, waiter: Waiter) -> None: ...
    def waiting(self) -> list[Waiter]: ...


class Jobs(Protocol):
    def describe(self, kind: Kind, name: str) -> dict[str, Any] | None: ...


class Resumer(Protocol):
    def succeed(self, token: str, output: dict[str, Any]) -> bool: ...
    def fail(self, token: str, error: str, cause: str) -> bool: ...


def kind_of_event(detail_type: str) -> Kind | None:
    return {
        "SageMaker Training Job State Change": "training",
        "SageMaker Transform Job State Change": "transform",
        "SageMaker Endpoint State Change": "endpoint",
    }.get(detail_type)  # type: ignore[return-value]


def status_of(kind: Kind, description: dict[str, Any]) -> str:
    return str(description.get(STATUS_KEY[kind], ""))


def described_status(status: object) -> str:
    """A status in Describe*'s spelling: endpoint events write IN_SERVICE where DescribeEndpoint says InService."""
    text = str(status or "")
    return "".join(word.capitalize() for word in text.split("_")) if text.isupper() else text


def metrics_of(description: dict[str, Any]) -> dict[str, float]:
    """The final value of each metric a finished training job reported (DescribeTrainingJob's FinalMetricDataList)."""
    return {m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList") or []}


def outcome(kind: Kind, description: dict[str, Any]) -> dict[str, Any]:
    """What the waiting state receives when the job Completed (training: model and metrics; transform: output)."""
    summary: dict[str, Any] = {
        "job_name": description[NAME_KEY[kind]],
        "status": status_of(kind, description),
    }
    if kind == "training":
        summary |= {
            "job_arn": description.get("TrainingJobArn"),
            "model_data_url": (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            "metrics": metrics_of(description),
            "training_seconds": description.get("TrainingTimeInSeconds"),
            "billable_seconds": description.get("BillableTimeInSeconds"),
        }
    else:
        summary |= {
            "job_arn": description.get("TransformJobArn"),
            "output_path": (description.get("TransformOutput") or {}).get("S3OutputPath"),
            "model_name": description.get("ModelName"),
        }
    return summary


def failure(kind: Kind, description: dict[str, Any]) -> tuple[str, str]:
    """The (Error, Cause) a failed or stopped job raises in the waiting state."""
    status = status_of(kind, description)
    label = "TrainingJob" if kind == "training" else "TransformJob"
    reason = description.get("FailureReason") or description.get("SecondaryStatus") or status
    return (
        f"{label}{status}",
        f"{label.replace('Job', ' job')} {description[NAME_KEY[kind]]} {status.lower()}: {reason}",
    )


def endpoint_outcome(description: dict[str, Any], expect: str, now_epoch: float) -> tuple[str, dict[str, Any]]:
    """("wait" | "succeed" | "fail", output): has an endpoint reached the state a change leads to?"""
    status = str(description.get("EndpointStatus", ""))
    name = description.get("EndpointName", "")
    if status in ("Failed", "UpdateRollbackFailed"):
        what = "failed" if status == "Failed" else "could not roll back a failed update"
        cause = f"endpoint {name} {what}: {description.get('FailureReason')}"
        return "fail", {"Error": "EndpointFailed", "Cause": cause}
    if status != "InService":
        return "wait", {}
    config = description.get("EndpointConfigName")
    if expect and config != expect:
        if description.get("FailureReason"):
            # SageMaker kept (or rolled back to) the previous config and says why.
            cause = f"endpoint {name}: the update to {expect} did not take: {description['FailureReason']}"
            return "fail", {"Error": "EndpointUpdateFailed", "Cause": cause}
        return "wait", {}  # an event from before the change took effect
    variants = description.get("ProductionVariants") or []
    settled = all(
        v.get("CurrentWeight", 0) == v.get("DesiredWeight", v.get("CurrentWeight", 0))
        and v.get("CurrentInstanceCount", 0) == v.get("DesiredInstanceCount", v.get("CurrentInstanceCount", 0))
        for v in variants
    )
    if not settled:
        return "wait", {}
    return "succeed", {
        "endpoint": name,
        "status": status,
        "config": config,
        "at": now_epoch,
        "variants": [
            {
                "name": v.get("VariantName"),
                "weight": v.get("CurrentWeight"),
                "count": v.get("CurrentInstanceCount"),
            }
            for v in variants
        ],
    }


def settle(
    kind: Kind,
    name: str,
    *,
    store: TokenStore,
    jobs: Jobs,
    resumer: Resumer,
    description: dict[str, Any] | None = None,
    now_epoch: float = 0.0,
) -> str:
    """Resume the execution waiting for this job if the job has finished. Returns what happened, for the log."""
    waiter = store.get(waiter_key(kind, name))
    if waiter is None:
        return "no-waiter"  # not a Shepherd job, or already settled and expired
    if waiter.kind != kind:
        return "no-waiter"
    description = description if description is not None else jobs.describe(kind, name)
    if description is None:
        return "job-missing"
    if kind == "endpoint":
        decision, output = endpoint_outcome(description, waiter.expect, now_epoch)
        if decision == "wait":
            return f"still-{str(description.get('EndpointStatus', 'unknown')).lower()}"
        if decision == "succeed":
            delivered = resumer.succeed(waiter.token, output)
        else:
            delivered = resumer.fail(waiter.token, output["Error"], output["Cause"])
        store.mark_settled(waiter, decision)
        return "settled" if delivered else "already-closed"
    status = status_of(kind, description)
    if status not in TERMINAL:
        return f"still-{status.lower() or 'unknown'}"
    if status == "Completed":
        delivered = resumer.succeed(waiter.token, outcome(kind, description))
    else:
        error, cause = failure(kind, description)
        delivered = resumer.fail(waiter.token, error, cause)
    store.mark_settled(waiter, status)
    return "settled" if delivered else "already-closed"


class CreatableJobs(Jobs, Protocol):
    def create(self, kind: Kind, request: dict[str, Any]) -> bool:
        """Create the job; False if a job of that name exists already."""


def start_job(
    waiter: Waiter,
    request: dict[str, Any],
    *,
    keep_seconds: int,
    store: TokenStore,
    jobs: CreatableJobs,
    resumer: Resumer,
) -> str:
    """Store the waiter, then create its job; returns what happened, for the log.

    The token goes first: a job that fails at once may send its event before create returns. A job that exists
    already (a retried invocation or task) may have finished: it is settled at once."""
    store.put(waiter, expires_after_seconds=keep_seconds)
    if jobs.create(waiter.kind, request):
        return "created"
    return settle(waiter.kind, waiter.job_name, store=store, jobs=jobs, resumer=resumer)


def reconcile(*, store: TokenStore, jobs: Jobs, resumer: Resumer, now: datetime) -> dict[str, int]:
    """Settle every waiting token whose job has finished (its event was lost); forget orphans."""
    counts: dict[str, int] = {}
    for waiter in store.waiting():
        name = waiter.job_name.removeprefix("endpoint/") if waiter.kind == "endpoint" else waiter.job_name
        result = settle(waiter.kind, name, store=store, jobs=jobs, resumer=resumer, now_epoch=now.timestamp())
        if result == "job-missing" and (now - waiter.created_at).total_seconds() > ORPHAN_AFTER_SECONDS:
            store.forget(waiter)
            result = "forgotten"
        counts[result] = counts.get(result, 0) + 1
    return counts
