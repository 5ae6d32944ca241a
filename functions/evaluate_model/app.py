"""Judges a trained model's metrics against its config's gates and the current champion's."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import latest_approved_package
from shepherd.config import ModelConfig
from shepherd.evaluation import evaluate
from shepherd.registry import metrics_from_package

logger, tracer, metrics = powertools()


class TrainedJob(BaseModel):
    job_name: str
    metrics: dict[str, float]


class Request(BaseModel):
    model: str
    group: str
    config: dict[str, Any]
    job: TrainedJob


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    config = ModelConfig.model_validate(request.config, context={"model": request.model})
    champion = latest_approved_package(request.group)
    result = evaluate(
        config.evaluation.gates, request.job.metrics, metrics_from_package(champion) if champion else None
    )
    logger.info("evaluated", extra={"job": request.job.job_name, "passed": result.passed, "summary": result.summary})
    return result.model_dump() | {"champion_arn": champion["ModelPackageArn"] if champion else None}
