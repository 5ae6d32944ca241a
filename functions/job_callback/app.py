"""Resumes the execution waiting for a SageMaker job when the job's state-change event says it finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerWaits
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import (
    ENDPOINT_TERMINAL,
    NAME_KEY,
    STATUS_KEY,
    TERMINAL,
    described_status,
    kind_of_event,
    settle,
)
from shepherd.edge import field, setting
from shepherd.errors import InvalidInput

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """JobCallback's environment (template.yaml), read once per cold start."""

    tokens_table: str


settings = Settings(tokens_table=setting("TASK_TOKENS_TABLE"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail_type, detail = field(event, "detail-type", str), field(event, "detail", dict)
    kind = kind_of_event(detail_type)
    if kind is None or NAME_KEY[kind] not in detail:
        raise InvalidInput(f"not a SageMaker job or endpoint state change: {detail_type}")
    name, status = detail[NAME_KEY[kind]], detail.get(STATUS_KEY[kind])
    # Endpoint events spell statuses IN_SERVICE; the Describe spelling is accepted too, as the event only wakes
    # this function up: what it settles on is the DescribeEndpoint below.
    if described_status(status) not in (ENDPOINT_TERMINAL if kind == "endpoint" else TERMINAL):
        return {"job_name": name, "result": f"ignored-{status}"}
    # Describe rather than trust the event: events may arrive late, twice or out of order.
    result = settle(
        kind,
        name,
        store=DynamoTokenStore(settings.tokens_table),
        jobs=SageMakerWaits(),
        resumer=StepFunctionsResumer(),
        now_epoch=clock.now().timestamp(),
    )
    logger.info("job event", extra={"job": name, "status": status, "result": result})
    return {"job_name": name, "result": result}
