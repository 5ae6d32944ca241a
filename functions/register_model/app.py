"""Repacks a model that passed its gates with its inference code, and registers it as a ModelPackage.

The repack runs here rather than in a SageMaker job: a scikit-learn model.tar.gz is small, so
streaming it through this function takes seconds, where a processing job would spend minutes
starting (docs/ARCHITECTURE.md says more; shepherd.model_archive caps the size).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from shepherd.aws import idempotency
from shepherd.aws.clients import region
from shepherd.aws.model_archives import repack_in_s3
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import create_model_package, ensure_package_group
from shepherd.config.models import ModelConfig  # not shepherd.config: no PyYAML, nothing to parse here
from shepherd.model_archive import hosting_archive_uri
from shepherd.registry import package_request

logger, tracer, metrics = powertools()
# A retried invocation of one run returns the package it registered instead of registering another,
# for as long as Step Functions may redrive an execution (14 days).
REMEMBER_SECONDS = 14 * 86400


class TrainedJob(BaseModel):
    job_name: str
    job_arn: str | None = None
    model_data_url: str
    metrics: dict[str, float]


class Request(BaseModel):
    model: str
    run: str
    group: str
    config: dict[str, Any]
    job: TrainedJob
    image: str
    source_uri: str
    lineage: dict[str, str]
    lineage_uri: str
    evaluation_summary: str = ""


def register(event: dict[str, Any]) -> dict[str, Any]:
    request = Request.model_validate(event)
    key = f"register_model#{request.run}"
    remembered = idempotency.recall(key)
    if remembered is not None:
        logger.info("already registered", extra={"package": remembered["model_package_arn"], "run": request.run})
        return remembered
    config = ModelConfig.model_validate(request.config, context={"model": request.model})
    program = config.inference_entry_point or config.entry_point
    model_data_url = hosting_archive_uri(request.source_uri)
    repacked = repack_in_s3(request.job.model_data_url, request.source_uri, model_data_url, program=program)
    logger.info(
        "repacked with its inference code",
        extra={"model_data_url": model_data_url, "trained": request.job.model_data_url, **asdict(repacked)},
    )
    tags = {"shepherd:model": request.model}
    ensure_package_group(request.group, f"Shepherd: models trained from {request.model}'s datasets", tags)
    lineage = request.lineage | {"training_job_arn": request.job.job_arn or request.job.job_name}
    package = package_request(
        config,
        group=request.group,
        image=request.image,
        model_data_url=model_data_url,
        region=region(),
        metrics=request.job.metrics,
        lineage=lineage,
        lineage_uri=request.lineage_uri,
        description=f"{request.model} trained by {request.job.job_name}. {request.evaluation_summary}",
    )
    arn = create_model_package(package | {"ClientToken": idempotency.client_token(key)})
    logger.info("registered", extra={"package": arn, "approval": package["ModelApprovalStatus"]})
    result = {"model_package_arn": arn, "approval_status": package["ModelApprovalStatus"], "group": request.group}
    idempotency.remember(key, result, expires_after_seconds=REMEMBER_SECONDS)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return register(event)
