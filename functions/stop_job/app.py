"""Failure path: stops a job the state machine stopped waiting for, so nothing keeps billing."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs

logger, tracer, metrics = powertools()


class Request(BaseModel):
    kind: Literal["training", "transform"]
    job_name: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    status = SageMakerJobs().stop(request.kind, request.job_name)
    logger.info("stop requested", extra={"job": request.job_name, "found": status})
    return {"job_name": request.job_name, "found": status, "stopped": status == "Stopping"}
