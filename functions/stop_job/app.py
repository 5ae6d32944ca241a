"""Failure path: stops a job the state machine stopped waiting for, so nothing keeps billing."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs
from shepherd.edge import field

logger, tracer, metrics = powertools()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = field(event, "kind", str, choices=("training", "transform"))
    name = field(event, "job_name", str)
    status = SageMakerJobs().stop(kind, name)
    logger.info("stop requested", extra={"job": name, "found": status})
    return {"job_name": name, "found": status, "stopped": status == "Stopping"}
