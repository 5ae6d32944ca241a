"""Resumes the execution waiting for a SageMaker job when the job's state-change event says it finished."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field
from shepherd import clock
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import ENDPOINT_TERMINAL, NAME_KEY, STATUS_KEY, TERMINAL, kind_of_event, settle
from shepherd.errors import InvalidInput

logger, tracer, metrics = powertools()


class JobEvent(BaseModel):
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job_event = JobEvent.model_validate(event)
    kind = kind_of_event(job_event.detail_type)
    if kind is None or NAME_KEY[kind] not in job_event.detail:
        raise InvalidInput(f"not a SageMaker job or endpoint state change: {job_event.detail_type}")
    name, status = job_event.detail[NAME_KEY[kind]], job_event.detail.get(STATUS_KEY[kind])
    if status not in (ENDPOINT_TERMINAL if kind == "endpoint" else TERMINAL):
        return {"job_name": name, "result": f"ignored-{status}"}
    # Describe rather than trust the event: events may arrive late, twice or out of order.
    result = settle(
        kind,
        name,
        store=DynamoTokenStore(),
        jobs=SageMakerJobs(),
        resumer=StepFunctionsResumer(),
        now_epoch=clock.now().timestamp(),
    )
    logger.info("job event", extra={"job": name, "status": status, "result": result})
    return {"job_name": name, "result": result}
