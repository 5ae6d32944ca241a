"""Checks a batch input, resolves the champion model and builds the transform job request."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field
from shepherd.aws import s3
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import (
    create_model,
    describe_endpoint,
    describe_endpoint_config,
    describe_model,
    latest_approved_package,
)
from shepherd.batch import (
    batch_file,
    build_transform_request,
    check_input,
    check_size,
    manifest,
    manifest_key,
    output_prefix,
    transform_job_name,
)
from shepherd.config import ConfigError, load_config
from shepherd.errors import InvalidInput, NotFound
from shepherd.rollout import MULTI_MODEL_PACKAGE

logger, tracer, metrics = powertools()
# Provisioning and model download come on top of the configured runtime.
WAIT_MARGIN_SECONDS = 900


class Request(BaseModel):
    model: str
    bucket: str
    key: str
    version_id: str | None = None
    size: int = Field(ge=0)
    run: str


def _champion(endpoint_name: str, group: str, model: str, run: str) -> tuple[str, str | None]:
    """(model name, package ARN): the model serving most of the endpoint's traffic, else the latest approved."""
    endpoint = describe_endpoint(endpoint_name)
    if endpoint and endpoint.get("EndpointStatus") in ("InService", "Updating"):
        variants = endpoint.get("ProductionVariants") or []
        if variants:
            config = describe_endpoint_config(endpoint["EndpointConfigName"])
            weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in variants}
            serving = max(config["ProductionVariants"], key=lambda v: weights.get(v["VariantName"], 0.0))
            container = describe_model(serving["ModelName"]).get("PrimaryContainer") or {}
            if container.get("Mode") != "MultiModel":
                return serving["ModelName"], container.get("ModelPackageName")
            # A multi-model container takes its artifact per request (TargetModel), which a transform job
            # does not send: batch scores with the champion's package as a single-model model instead.
            arn = (container.get("Environment") or {}).get(MULTI_MODEL_PACKAGE)
            if arn:
                return _batch_model(arn, group, model), arn
    package = latest_approved_package(group)
    if package is None:
        raise InvalidInput(
            f"no model to score with: endpoint {endpoint_name} does not serve and model package group {group} "
            f"has no Approved package (train {model} and approve a package first)"
        )
    arn = package["ModelPackageArn"]
    return _batch_model(arn, group, model), arn


def _batch_model(arn: str, group: str, model: str) -> str:
    """A model for batch runs from a package, named per package version (one per version, re-used)."""
    name = f"{group[:40]}-v{arn.rsplit('/', 1)[-1]}-batch"
    create_model(
        {
            "ModelName": name,
            "PrimaryContainer": {"ModelPackageName": arn},
            "ExecutionRoleArn": os.environ["SAGEMAKER_ROLE_ARN"],
            "EnableNetworkIsolation": True,
            "Tags": [{"Key": "shepherd:model", "Value": model}, {"Key": "shepherd:package", "Value": arn[:256]}],
        }
    )
    return name


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    uploaded = batch_file(request.key)
    started = datetime.now(UTC).isoformat()
    config_key = f"models/{uploaded.model}/shepherd.yaml"
    try:
        text = s3.read_bytes(request.bucket, config_key).decode("utf-8", errors="replace")
    except NotFound:
        raise InvalidInput(
            f"s3://{request.bucket}/{config_key} does not exist: no config for {uploaded.model}"
        ) from None
    try:
        config = load_config(text, f"s3://{request.bucket}/{config_key}", model=uploaded.model)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    if "instance_type" not in config.batch.model_fields_set and os.environ.get("DEFAULT_BATCH_INSTANCE_TYPE"):
        config.batch.instance_type = os.environ["DEFAULT_BATCH_INSTANCE_TYPE"]  # the stack's default
    check_size(request.size)
    checked = check_input(
        s3.read_bytes(request.bucket, request.key, request.version_id),
        config.batch.content_type,
        split_type=config.batch.split_type,
    )
    group = config.registry.model_package_group or uploaded.model
    model_name, package_arn = _champion(config.endpoint.name or uploaded.model, group, uploaded.model, request.run)
    listing = manifest_key(uploaded, request.run)
    s3.write_bytes(request.bucket, listing, json.dumps(manifest(request.bucket, request.key)).encode())
    job = transform_job_name(uploaded.model, request.run)
    transform_request = build_transform_request(
        config.batch,
        job_name=job,
        model_name=model_name,
        bucket=request.bucket,
        manifest_key=listing,
        output_prefix=output_prefix(uploaded, request.run),
        kms_key_arn=os.environ.get("DATA_KEY_ARN") or None,
        tags={"shepherd:model": uploaded.model, "shepherd:execution": request.run[:256]},
    )
    logger.info("transform prepared", extra={"job": job, "model": model_name, "records": checked.records})
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
