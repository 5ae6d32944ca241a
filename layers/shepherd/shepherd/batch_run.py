"""The BatchTransform state machine's steps: check an input and plan its job, then file the input away."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from shepherd.batch import (
    BatchSummary,
    batch_file,
    build_transform_request,
    check_input,
    check_size,
    failed_key,
    manifest,
    manifest_key,
    output_key,
    output_prefix,
    processed_key,
    reason_key,
    s3_uri,
    summary_key,
    transform_job_name,
)
from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.errors import InvalidInput, NotFound
from shepherd.events.notifications import Explanation, explain
from shepherd.rollout import MULTI_MODEL_PACKAGE
from shepherd.rollout.plan import serving_variant

# Provisioning and model download come on top of the configured runtime.
WAIT_MARGIN_SECONDS = 900


class Bucket(Protocol):
    """The data bucket (shepherd.aws.s3); read_bytes raises NotFound for a missing object."""

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...
    def write_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str | None: ...
    def move(self, bucket: str, key: str, version_id: str | None, target: str) -> None: ...


class Models(Protocol):
    """SageMaker's endpoints, models and registry (shepherd.aws.sagemaker)."""

    def describe_endpoint(self, name: str) -> dict[str, Any] | None: ...
    def describe_endpoint_config(self, name: str) -> dict[str, Any]: ...
    def describe_model(self, name: str) -> dict[str, Any]: ...
    def create_model(self, request: dict[str, Any]) -> None: ...
    def latest_approved_package(self, group: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Deps:
    bucket: Bucket
    models: Models
    sagemaker_role_arn: str
    now: Callable[[], datetime]
    kms_key_arn: str | None = None
    default_instance_type: str | None = None  # the stack's, where the config names none


class PrepareRequest(BaseModel):
    model: str
    bucket: str
    key: str
    version_id: str | None = None
    size: int = Field(ge=0)
    run: str


class Failure(BaseModel):
    Error: str = "Unknown"
    Cause: str = ""


class FinishRequest(BaseModel):
    outcome: Literal["Completed", "Failed"]
    model: str
    run: str
    bucket: str
    key: str
    version_id: str | None = None
    started: str | None = None
    job_name: str | None = None
    model_name: str | None = None
    model_package_arn: str | None = None
    records: int | None = None
    error: Failure | None = None


def prepare(deps: Deps, request: PrepareRequest) -> dict[str, Any]:
    """Check the input before a (paid) transform job starts, pick the champion and build the job request."""
    uploaded = batch_file(request.key)
    started = deps.now().isoformat()
    config = _config(deps, request.bucket, uploaded.model)
    check_size(request.size)
    checked = check_input(
        deps.bucket.read_bytes(request.bucket, request.key, request.version_id),
        config.batch.content_type,
        split_type=config.batch.split_type,
    )
    group = config.registry.model_package_group or uploaded.model
    model_name, package_arn = _champion(deps, config.endpoint.name or uploaded.model, group, uploaded.model)
    listing = manifest_key(uploaded, request.run)
    deps.bucket.write_bytes(request.bucket, listing, json.dumps(manifest(request.bucket, request.key)).encode())
    job = transform_job_name(uploaded.model, request.run)
    transform_request = build_transform_request(
        config.batch,
        job_name=job,
        model_name=model_name,
        bucket=request.bucket,
        manifest_key=listing,
        output_prefix=output_prefix(uploaded, request.run),
        kms_key_arn=deps.kms_key_arn,
        tags={"shepherd:model": uploaded.model, "shepherd:execution": request.run[:256]},
    )
    return {
        "model": uploaded.model,
        "run": request.run,
        "bucket": request.bucket,
        "key": request.key,
        "version_id": request.version_id,
        "started": started,
        "job_name": job,
        "model_name": model_name,
        "model_package_arn": package_arn,
        "records": checked.records,
        "transform_request": transform_request,
        "wait_timeout_seconds": config.batch.max_runtime_seconds + WAIT_MARGIN_SECONDS,
    }


def _config(deps: Deps, bucket: str, model: str) -> ModelConfig:
    key = f"models/{model}/shepherd.yaml"
    try:
        text = deps.bucket.read_bytes(bucket, key).decode("utf-8", errors="replace")
    except NotFound:
        raise InvalidInput(f"s3://{bucket}/{key} does not exist: no config for {model}") from None
    try:
        config = load_config(text, f"s3://{bucket}/{key}", model=model)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    if "instance_type" not in config.batch.model_fields_set and deps.default_instance_type:
        config.batch.instance_type = deps.default_instance_type
    return config


def _champion(deps: Deps, endpoint_name: str, group: str, model: str) -> tuple[str, str | None]:
    """(model name, package ARN): the model serving most of the endpoint's traffic, else the latest approved."""
    endpoint = deps.models.describe_endpoint(endpoint_name)
    if endpoint and endpoint.get("EndpointStatus") in ("InService", "Updating"):
        variants = endpoint.get("ProductionVariants") or []
        if variants:
            config = deps.models.describe_endpoint_config(endpoint["EndpointConfigName"])
            serving = serving_variant(endpoint, config)
            container = deps.models.describe_model(serving["ModelName"]).get("PrimaryContainer") or {}
            if container.get("Mode") != "MultiModel":
                return serving["ModelName"], container.get("ModelPackageName")
            # A multi-model container takes its artifact per request (TargetModel), which a transform job
            # does not send: batch scores with the champion's package as a single-model model instead.
            arn = (container.get("Environment") or {}).get(MULTI_MODEL_PACKAGE)
            if arn:
                return _batch_model(deps, arn, group, model), arn
    package = deps.models.latest_approved_package(group)
    if package is None:
        raise InvalidInput(
            f"no model to score with: endpoint {endpoint_name} does not serve and model package group {group} "
            f"has no Approved package (train {model} and approve a package first)"
        )
    arn = package["ModelPackageArn"]
    return _batch_model(deps, arn, group, model), arn


def _batch_model(deps: Deps, arn: str, group: str, model: str) -> str:
    """A model for batch runs from a package, named per package version (one per version, re-used)."""
    name = f"{group[:40]}-v{arn.rsplit('/', 1)[-1]}-batch"
    deps.models.create_model(
        {
            "ModelName": name,
            "PrimaryContainer": {"ModelPackageName": arn},
            "ExecutionRoleArn": deps.sagemaker_role_arn,
            "EnableNetworkIsolation": True,
            "Tags": [{"Key": "shepherd:model", "Value": model}, {"Key": "shepherd:package", "Value": arn[:256]}],
        }
    )
    return name


def failure(error: Failure | None) -> Explanation:
    """A failed run's error told in one line, then the rest (shepherd.events.notifications.explain)."""
    if error is None:
        return Explanation("Error", "the batch run failed", "")
    return explain(error.model_dump())


def finish(bucket: Bucket, request: FinishRequest, now: datetime) -> dict[str, Any]:
    """Write the run's summary and move its input to processed/ or, with a reason file, to failed/."""
    uploaded = batch_file(request.key)
    completed = request.outcome == "Completed"
    target = processed_key(uploaded, request.run) if completed else failed_key(uploaded, request.run)
    explained = None if completed else failure(request.error)
    reason = explained.reason if explained else None
    if explained:
        text = "\n".join(part for part in (explained.reason, explained.detail) if part) + "\n"
        bucket.write_bytes(request.bucket, reason_key(uploaded, request.run), text.encode(), "text/plain")
    # Moving is copy-then-delete; the versioned bucket keeps the input's version either way: nothing is lost.
    bucket.move(request.bucket, request.key, request.version_id, target)
    summary = BatchSummary(
        input_uri=s3_uri(request.bucket, request.key),
        input_version_id=request.version_id,
        job_name=request.job_name or "",
        model_name=request.model_name or "",
        model_package_arn=request.model_package_arn,
        records=request.records,
        output_uris=[s3_uri(request.bucket, output_key(uploaded, request.run))] if completed else [],
        moved_to_uri=s3_uri(request.bucket, target),
        status=request.outcome,
        reason=reason,
        started=datetime.fromisoformat(request.started) if request.started else now,
        finished=now,
    )
    location = summary_key(uploaded, request.run)
    bucket.write_bytes(request.bucket, location, summary.to_json().encode(), "application/json")
    detail = explained.detail if explained else ""
    return summary.model_dump(mode="json") | {"summary_uri": s3_uri(request.bucket, location), "detail": detail}
