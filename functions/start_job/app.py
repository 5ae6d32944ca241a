"""Stores a waiting task's token under the job's name, then creates the SageMaker job (.waitForTaskToken)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import NAME_KEY, Waiter, settle

logger, tracer, metrics = powertools()
# A token item outlives the longest wait by a day, then DynamoDB's TTL removes it.
TOKEN_GRACE_SECONDS = 86400


class Request(BaseModel):
    token: str = Field(min_length=1)
    kind: Literal["training", "transform"]
    execution: str
    request: dict[str, Any]
    wait_timeout_seconds: int = Field(ge=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start = Request.model_validate(event)
    name = str(start.request[NAME_KEY[start.kind]])
    store, jobs = DynamoTokenStore(), SageMakerJobs()
    # The token first: a job that fails at once may send its event before create returns.
    waiter = Waiter(name, start.kind, start.token, start.execution, datetime.now(UTC))
    store.put(waiter, expires_after_seconds=start.wait_timeout_seconds + TOKEN_GRACE_SECONDS)
    created = jobs.create(start.kind, start.request)
    result = "created"
    if not created:
        # A retried invocation, or a retried task whose job exists: it may have finished already.
        result = settle(start.kind, name, store=store, jobs=jobs, resumer=StepFunctionsResumer())
    logger.info("job started", extra={"job": name, "kind": start.kind, "result": result})
    return {"job_name": name, "result": result}
