"""SageMaker: jobs, the Model Registry, models and endpoints, with errors mapped to the domain's."""

from __future__ import annotations

from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import code_of, mapped, message_of
from shepherd.callbacks import Kind
from shepherd.errors import Conflict, NotFound

_DESCRIBE = {"training": "describe_training_job", "transform": "describe_transform_job"}
_CREATE = {"training": "create_training_job", "transform": "create_transform_job"}
_STOP = {"training": "stop_training_job", "transform": "stop_transform_job"}
_NAME = {"training": "TrainingJobName", "transform": "TransformJobName"}


def already_exists(exc: Conflict | Exception) -> bool:
    """A create refused because the resource exists (a retried step re-creating its own resource)."""
    cause = exc.__cause__ or exc
    return code_of(cause) == "ResourceInUse" or "already exist" in message_of(cause).lower()


class SageMakerJobs:
    """Jobs by kind (training, transform); implements shepherd.callbacks.Jobs for StartJob and StopJob."""

    def describe(self, kind: Kind, name: str) -> dict[str, Any] | None:
        if kind not in _DESCRIBE:
            raise ValueError(f"{kind} is not a job kind: SageMakerWaits describes endpoints")
        try:
            with mapped(f"describing {kind} job {name}"):
                return dict(getattr(client("sagemaker"), _DESCRIBE[kind])(**{_NAME[kind]: name}))
        except NotFound:
            return None

    def create(self, kind: Kind, request: dict[str, Any]) -> bool:
        """Create the job; False if a job of that name exists already (a retried invocation)."""
        try:
            with mapped(f"creating {kind} job {request[_NAME[kind]]}"):
                getattr(client("sagemaker"), _CREATE[kind])(**request)
        except Exception as exc:
            if already_exists(exc):
                return False
            raise
        return True

    def stop(self, kind: Kind, name: str) -> str:
        """Stop the job if it still runs; returns its status as found."""
        description = self.describe(kind, name)
        if description is None:
            return "Missing"
        status = str(description.get("TrainingJobStatus" if kind == "training" else "TransformJobStatus"))
        if status == "InProgress":
            try:
                with mapped(f"stopping {kind} job {name}"):
                    getattr(client("sagemaker"), _STOP[kind])(**{_NAME[kind]: name})
            except Exception as exc:  # it finished between describe and stop
                if "stop" not in message_of(exc.__cause__ or exc).lower():
                    raise
            return "Stopping"
        return status


class SageMakerWaits(SageMakerJobs):
    """Jobs and endpoints, what a task token waits for (JobCallback, ReconcileJobs): only their roles may
    DescribeEndpoint."""

    def describe(self, kind: Kind, name: str) -> dict[str, Any] | None:
        if kind == "endpoint":
            return describe_endpoint(name)
        return super().describe(kind, name)


def latest_approved_package(group: str) -> dict[str, Any] | None:
    """The newest Approved package of a group (the champion's), or None."""
    try:
        with mapped(f"listing approved packages of {group}"):
            listed = client("sagemaker").list_model_packages(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
                MaxResults=1,
            )["ModelPackageSummaryList"]
    except NotFound:
        return None
    if not listed:
        return None
    with mapped(f"describing {listed[0]['ModelPackageArn']}"):
        return dict(client("sagemaker").describe_model_package(ModelPackageName=listed[0]["ModelPackageArn"]))


def ensure_package_group(group: str, description: str, tags: dict[str, str]) -> None:
    try:
        with mapped(f"creating model package group {group}"):
            client("sagemaker").create_model_package_group(
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=description[:1024],
                Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            )
    except Exception as exc:
        if not already_exists(exc):
            raise


def create_model_package(request: dict[str, Any]) -> str:
    with mapped(f"registering a model package in {request['ModelPackageGroupName']}"):
        return str(client("sagemaker").create_model_package(**request)["ModelPackageArn"])


def describe_endpoint(name: str) -> dict[str, Any] | None:
    try:
        with mapped(f"describing endpoint {name}"):
            return dict(client("sagemaker").describe_endpoint(EndpointName=name))
    except NotFound:
        return None


def describe_endpoint_config(name: str) -> dict[str, Any]:
    with mapped(f"describing endpoint config {name}"):
        return dict(client("sagemaker").describe_endpoint_config(EndpointConfigName=name))


def describe_model(name: str) -> dict[str, Any]:
    with mapped(f"describing model {name}"):
        return dict(client("sagemaker").describe_model(ModelName=name))


def is_multi_model(description: dict[str, Any]) -> bool:
    """Whether a DescribeModel answer is a multi-model container (Mode MultiModel)."""
    containers = description.get("Containers") or [description.get("PrimaryContainer") or {}]
    return any(c.get("Mode") == "MultiModel" for c in containers)


def model_exists(name: str) -> bool:
    try:
        with mapped(f"describing model {name}"):
            client("sagemaker").describe_model(ModelName=name)
    except NotFound:
        return False
    return True


def create_model(request: dict[str, Any]) -> None:
    try:
        with mapped(f"creating model {request['ModelName']}"):
            client("sagemaker").create_model(**request)
    except Exception as exc:
        if not already_exists(exc):
            raise
