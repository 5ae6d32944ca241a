"""Stores a waiting task's token under the job's name, then creates the SageMaker job (.waitForTaskToken)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerJobs
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import NAME_KEY, Waiter, settle
from shepherd.edge import field

logger, tracer, metrics = powertools()
# A token item outlives the longest wait by a day, then DynamoDB's TTL removes it.
TOKEN_GRACE_SECONDS = 86400


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = field(event, "kind", str, choices=("training", "transform"))
    token, execution = field(event, "token", str), field(event, "execution", str)
    request, wait = field(event, "request", dict), field(event, "wait_timeout_seconds", int)
    name = field(request, NAME_KEY[kind], str)
    store, jobs = DynamoTokenStore(), SageMakerJobs()
    # The token first: a job that fails at once may send its event before create returns.
    waiter = Waiter(name, kind, token, execution, datetime.now(UTC))
    store.put(waiter, expires_after_seconds=wait + TOKEN_GRACE_SECONDS)
    created = jobs.create(kind, request)
    result = "created"
    if not created:
        # A retried invocation, or a retried task whose job exists: it may have finished already.
        result = settle(kind, name, store=store, jobs=jobs, resumer=StepFunctionsResumer())
    logger.info("job started", extra={"job": name, "kind": kind, "result": result})
    return {"job_name": name, "result": result}
