"""Loads and validates a model's config, snapshots its code and dataset, and builds the training job request."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from shepherd.aws import s3
from shepherd.aws.clients import region
from shepherd.aws.powertools import powertools
from shepherd.config import ConfigError, load_config
from shepherd.errors import InvalidInput
from shepherd.images import UnknownImage, image_uri
from shepherd.registry import lineage_document
from shepherd.training import (
    Vpc,
    artifacts_prefix,
    build_training_request,
    channel_manifest,
    channels_of,
    check_isolated_source,
    data_digest,
    job_name,
    source_archive,
    wait_timeout_seconds,
)

logger, tracer, metrics = powertools()


class Request(BaseModel):
    model: str
    dataset: str
    bucket: str
    prefix: str
    marker: str
    marker_version: str = ""
    run: str


def _vpc() -> Vpc | None:
    subnets = [s for s in os.environ.get("SUBNET_IDS", "").split(",") if s]
    groups = [g for g in os.environ.get("SECURITY_GROUP_IDS", "").split(",") if g]
    return Vpc(subnets=subnets, security_groups=groups) if subnets and groups else None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    model, bucket, run = request.model, request.bucket, request.run
    config_key, code_prefix = f"models/{model}/shepherd.yaml", f"models/{model}/code/"
    snapshot = {o.key: o for o in s3.latest_objects(bucket, f"models/{model}/")}
    if config_key not in snapshot:
        raise InvalidInput(f"s3://{bucket}/{config_key} does not exist: upload the model's config before its data")
    config_object = snapshot[config_key]
    text = s3.read_bytes(bucket, config_key, config_object.version_id).decode("utf-8", errors="replace")
    try:
        config = load_config(text, f"s3://{bucket}/{config_key}", model=model)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    if "instance_type" not in config.training.model_fields_set and os.environ.get("DEFAULT_TRAINING_INSTANCE_TYPE"):
        config.training.instance_type = os.environ["DEFAULT_TRAINING_INSTANCE_TYPE"]  # the stack's default
    code = {k.removeprefix(code_prefix): o for k, o in snapshot.items() if k.startswith(code_prefix)}
    for script in {config.entry_point, config.inference_entry_point}:
        if script not in code:
            raise InvalidInput(f"s3://{bucket}/{code_prefix}{script} does not exist (named by {config_key})")
    check_isolated_source(config, code)
    data = [o for o in s3.latest_objects(bucket, request.prefix) if o.key != request.marker and o.size > 0]
    if not data:
        from shepherd.events.s3 import MARKER  # only for this message: the module builds six event models

        raise InvalidInput(f"s3://{bucket}/{request.prefix} holds no data besides its {MARKER} marker")
    try:
        image = image_uri(config.framework, config.framework_version or "", region(), py_version=config.py_version)
    except UnknownImage as exc:
        raise InvalidInput(str(exc)) from None

    prefix = artifacts_prefix(model, run)
    archive = source_archive((name, s3.read_bytes(bucket, o.key, o.version_id)) for name, o in code.items())
    source_key = f"{prefix}sourcedir.tar.gz"
    s3.write_bytes(bucket, source_key, archive, "application/gzip")
    manifests = {}
    for channel, objects in channels_of(request.prefix, data).items():
        manifests[channel] = f"{prefix}manifests/{channel}.json"
        manifest = channel_manifest(bucket, request.prefix, channel, objects)
        s3.write_bytes(bucket, manifests[channel], json.dumps(manifest).encode(), "application/json")
    name = job_name(model, run)
    source_uri = f"s3://{bucket}/{source_key}"
    tags = {"shepherd:model": model, "shepherd:execution": run[:256]}
    training_request = build_training_request(
        config,
        model=model,
        name=name,
        role_arn=os.environ["SAGEMAKER_ROLE_ARN"],
        region=region(),
        bucket=bucket,
        manifests=manifests,
        source_uri=source_uri,
        kms_key_arn=os.environ.get("DATA_KEY_ARN") or None,
        vpc=_vpc(),
        tags=tags,
    )
    lineage = {
        "model": model,
        "execution": run,
        "dataset": f"s3://{bucket}/{request.prefix}",
        "data_digest": data_digest(data),
        "data_objects": str(len(data)),
        "channels": ",".join(manifests),
        "marker_version": request.marker_version,
        "config_version": config_object.version_id or "",
        "code_digest": data_digest(list(code.values())),
        "source_uri": source_uri,
        "training_job": name,
    }
    lineage_key = f"{prefix}lineage.json"
    s3.write_bytes(
        bucket,
        lineage_key,
        lineage_document(
            **lineage,
            data=[o.model_dump() for o in data],
            code=[o.model_dump() for o in code.values()],
            config=config_object.model_dump(),
            hyperparameters=config.hyperparameters,
            image=image,
        ).encode(),
        "application/json",
    )
    logger.info("training prepared", extra={"job": name, "data_objects": len(data), "code_files": len(code)})
    return {
        "model": model,
        "run": run,
        "bucket": bucket,
        "job_name": name,
        "training_request": training_request,
        "wait_timeout_seconds": wait_timeout_seconds(config),
        "config": config.model_dump(mode="json"),
        "group": config.registry.model_package_group or model,
        "image": image,
        "source_uri": source_uri,
        "lineage": lineage,
        "lineage_uri": f"s3://{bucket}/{lineage_key}",
    }
