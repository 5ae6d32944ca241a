"""What a monitor run touches, as Protocols: the adapters are in shepherd.aws.monitoring and shepherd.aws.s3."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from shepherd.objects import DataObject


class Objects(Protocol):
    """The data bucket (shepherd.aws.s3)."""

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...
    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None: ...
    def keys(self, bucket: str, prefix: str) -> list[str]: ...
    def latest_objects(self, bucket: str, prefix: str) -> list[DataObject]: ...


class Reports(Protocol):
    """A run's report objects, tagged for the bucket's report expiry (shepherd.aws.monitoring.TaggedReports)."""

    def write(self, bucket: str, key: str, data: bytes) -> None: ...


class Models(Protocol):
    """SageMaker: the endpoint and the champion's model package."""

    def describe_endpoint(self, name: str) -> dict[str, Any] | None: ...
    def describe_package(self, arn: str) -> dict[str, Any]: ...
    def latest_approved_package(self, group: str) -> dict[str, Any] | None: ...


class Rollouts(Protocol):
    """The rollout table: the endpoint's recorded champion and its lock (shepherd.aws.rollouts.RolloutTable)."""

    def champion(self, endpoint: str) -> dict[str, str] | None: ...
    def lock_of(self, endpoint: str) -> dict[str, str] | None: ...


class Metrics(Protocol):
    """CloudWatch: one datapoint per metric name, all with the same dimensions."""

    def put(self, namespace: str, dimensions: Mapping[str, str], values: Mapping[str, float], at: datetime) -> None: ...


class Lifecycle(Protocol):
    """The ModelLifecycle state machine: started once per name, as a marker upload starts it."""

    def start(self, name: str, payload: dict[str, Any]) -> bool: ...


class Schedules(Protocol):
    """EventBridge Scheduler: the per-model monitor schedules."""

    def upsert(self, name: str, expression: str, target_input: dict[str, Any]) -> None: ...
    def delete(self, name: str) -> bool: ...
