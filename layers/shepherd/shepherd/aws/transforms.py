"""SageMaker's transform jobs as the rollout's replay stage runs them (shepherd.rollout.ports.TransformJobs)."""

from __future__ import annotations

from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import code_of, mapped, message_of
from shepherd.errors import NotFound


class TransformJobs:
    """CreateTransformJob and DescribeTransformJob, with errors mapped to the domain's."""

    def create_transform(self, request: dict[str, Any]) -> bool:
        """Create the job; False if a job of that name exists already (a retried step)."""
        try:
            with mapped(f"creating transform job {request['TransformJobName']}"):
                client("sagemaker").create_transform_job(**request)
        except Exception as exc:
            cause = exc.__cause__ or exc  # SageMaker: ResourceInUse, "Job name must be unique ... already exists"
            if code_of(cause) == "ResourceInUse" or "already exist" in message_of(cause).lower():
                return False
            raise
        return True

    def stop_transform(self, name: str) -> None:
        """Stop a job still running (one that ended meanwhile is left as it is)."""
        try:
            with mapped(f"stopping transform job {name}"):
                client("sagemaker").stop_transform_job(TransformJobName=name)
        except Exception as exc:
            cause = exc.__cause__ or exc
            if "stop" not in message_of(cause).lower() and code_of(cause) != "ValidationException":
                raise

    def describe_transform(self, name: str) -> dict[str, Any] | None:
        try:
            with mapped(f"describing transform job {name}"):
                return dict(client("sagemaker").describe_transform_job(TransformJobName=name))
        except NotFound:
            return None
