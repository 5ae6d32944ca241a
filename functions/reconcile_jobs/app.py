"""Scheduled: settles waiting tokens whose job finished but whose state-change event never arrived."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerWaits
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import reconcile

logger, tracer, metrics = powertools()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    counts = reconcile(store=DynamoTokenStore(), jobs=SageMakerWaits(), resumer=StepFunctionsResumer(), now=clock.now())
    if counts.get("settled"):
        # Each one is a lost event: worth an alarm if it keeps happening.
        metrics.add_metric(name="TokensSettledByReconciler", unit=MetricUnit.Count, value=counts["settled"])
    # A sweep that only saw jobs still running logs at DEBUG: it runs every 10 (virtual) minutes.
    acted = any(not (result.startswith("still-") or result in ("job-missing", "no-waiter")) for result in counts)
    (logger.info if acted else logger.debug)("reconciled", extra={"counts": counts})
    return counts
