"""What the rollout needs from the cloud, as ports: shepherd.aws implements them, tests use fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shepherd.callbacks import Resumer, TokenStore
from shepherd.errors import ShepherdError

ABORT, PAUSED = "abort", "paused"  # the flags a human sets (shepherd rollout abort / pause)


class LockHeld(ShepherdError):
    """Another rollout holds the endpoint: this one waits its turn (the state machine retries with backoff)."""


class LockLost(ShepherdError):
    """This rollout no longer holds its endpoint: it must not touch the endpoint again."""


class RollbackFailed(ShepherdError):
    """The endpoint is not back on its last good config: a failed rollout, which ReconcileRollouts retries."""


class Endpoints(Protocol):
    """SageMaker endpoints, their configs and models, and Application Auto Scaling."""

    def describe_endpoint(self, name: str) -> dict[str, Any] | None: ...
    def describe_endpoint_config(self, name: str) -> dict[str, Any]: ...
    def create_endpoint_config(self, request: dict[str, Any]) -> None: ...
    def create_endpoint(self, name: str, config: str, tags: dict[str, str]) -> None: ...
    def update_endpoint(self, name: str, config: str, *, exclude_weights: bool) -> None: ...
    def update_weights(self, name: str, desired: list[dict[str, Any]]) -> None: ...
    def register_scaling(
        self, endpoint: str, variant: str, *, minimum: int, maximum: int, target: float, scale_in: int, scale_out: int
    ) -> None: ...
    def deregister_scaling(self, endpoint: str, variant: str) -> bool: ...
    def endpoint_configs_named(self, prefix: str) -> list[tuple[str, Any]]: ...
    def models_named(self, prefix: str) -> list[tuple[str, Any]]: ...
    def delete_endpoint(self, name: str) -> None: ...
    def delete_endpoint_config(self, name: str) -> None: ...
    def delete_model(self, name: str) -> None: ...


class Packages(Protocol):
    """The Model Registry's packages and the SageMaker models made from them."""

    def describe_package(self, package_arn: str) -> dict[str, Any]: ...
    def reject_package(self, package_arn: str, reason: str) -> None: ...
    def create_model(self, request: dict[str, Any]) -> None: ...
    def serves_multi_model(self, model_name: str) -> bool: ...


class Objects(Protocol):
    """The data bucket; read_bytes raises NotFound for a missing object."""

    def read_bytes(self, bucket: str, key: str) -> bytes: ...


class CaptureBucket(Protocol):
    """The data bucket, listed, read and written (shepherd.aws.s3): writes are encrypted by its default KMS key."""

    def read_bytes(self, bucket: str, key: str) -> bytes: ...
    def keys(self, bucket: str, prefix: str) -> list[str]: ...
    def write_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str | None: ...


class TransformJobs(Protocol):
    """SageMaker's transform jobs (shepherd.aws.transforms)."""

    def create_transform(self, request: dict[str, Any]) -> bool: ...  # False: a job of that name exists (a retry)
    def describe_transform(self, name: str) -> dict[str, Any] | None: ...
    def stop_transform(self, name: str) -> None: ...  # a job that ended meanwhile is left as it is


class RolloutStore(Protocol):
    """One lock per endpoint, its champion, its flags and its record (shepherd.aws.rollouts.RolloutTable)."""

    def acquire(self, endpoint: str, owner: str, package: str, now_epoch: float) -> None: ...
    def renew(self, endpoint: str, owner: str, now_epoch: float) -> int: ...
    def hand_over(self, endpoint: str, owner: str, successor: str, now_epoch: float) -> int: ...
    def take_over(self, endpoint: str, owner: str, execution: str, now_epoch: float) -> int: ...
    def note_restoring(self, endpoint: str, owner: str, config: str) -> int: ...
    def release(self, endpoint: str, owner: str) -> bool: ...
    def lock_of(self, endpoint: str) -> dict[str, str] | None: ...
    def locks(self) -> list[dict[str, str]]: ...
    def champion(self, endpoint: str) -> dict[str, str] | None: ...
    def set_champion(self, endpoint: str, champion: dict[str, str]) -> None: ...
    def record(self, endpoint: str, entry: dict[str, Any], at_iso: str, *, unique: str | None = None) -> None: ...
    def records(self, endpoint: str) -> list[dict[str, Any]]: ...
    def flag(self, endpoint: str, flag: str) -> dict[str, str] | None: ...
    def set_flag(
        self, endpoint: str, flag: str, *, by: str, reason: str = "", verdict: str = "", at_iso: str = ""
    ) -> None: ...
    def clear_flag(self, endpoint: str, flag: str) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The stack's resources a rollout uses, read from the environment once, in the handler."""

    bucket: str
    sagemaker_role_arn: str
    kms_key_arn: str | None = None


def _wall() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    """Everything a rollout step touches."""

    endpoints: Endpoints
    packages: Packages
    objects: Objects
    store: RolloutStore
    tokens: TokenStore
    resumer: Resumer
    settings: Settings
    now: Callable[[], datetime]  # the cloud's clock (virtual on the local cloud)
    wall: Callable[[], datetime] = field(default=_wall)  # a stored waiter's age is wall time
    # The replay stage: the capture read and the replay's input written, its transform jobs started.
    capture: CaptureBucket | None = None
    jobs: TransformJobs | None = None
