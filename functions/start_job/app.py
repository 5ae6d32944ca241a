"""Stores a waiting task's token under the job's name, then creates the SageMaker job (shepherd.callbacks.start_job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import NAME_KEY, Waiter, start_job
from shepherd.edge import field, setting

logger, tracer, metrics = powertools()
# A token item outlives the longest wait by a day, then DynamoDB's TTL removes it.
TOKEN_GRACE_SECONDS = 86400


@dataclass(frozen=True)
class Settings:
    """StartJob's environment (template.yaml), read once per cold start."""

    tokens_table: str


settings = Settings(tokens_table=setting("TASK_TOKENS_TABLE"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = field(event, "kind", str, choices=("training", "transform"))
    token, execution = field(event, "token", str), field(event, "execution", str)
    request, wait = field(event, "request", dict), field(event, "wait_timeout_seconds", int)
    name = field(request, NAME_KEY[kind], str)
    waiter = Waiter(name, kind, token, execution, datetime.now(UTC))
    result = start_job(
        waiter,
        request,
        keep_seconds=wait + TOKEN_GRACE_SECONDS,
        store=DynamoTokenStore(settings.tokens_table),
        jobs=SageMakerJobs(),
        resumer=StepFunctionsResumer(),
    )
    logger.info("job started", extra={"job": name, "kind": kind, "result": result})
    return {"job_name": name, "result": result}
