"""Scheduled: settles waiting tokens whose job finished but whose state-change event never arrived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import SageMakerWaits
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import reconcile
from shepherd.edge import setting

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """ReconcileJobs's environment (template.yaml), read once per cold start."""

    tokens_table: str


settings = Settings(tokens_table=setting("TASK_TOKENS_TABLE"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    counts = reconcile(
        store=DynamoTokenStore(settings.tokens_table),
        jobs=SageMakerWaits(),
        resumer=StepFunctionsResumer(),
        now=clock.now(),
    )
    if counts.get("settled"):
        # Each one is a lost event: worth an alarm if it keeps happening.
        metrics.add_metric(name="TokensSettledByReconciler", unit=MetricUnit.Count, value=counts["settled"])
    # A sweep that only saw jobs still running logs at DEBUG: it runs every 10 (virtual) minutes.
    acted = any(not (result.startswith("still-") or result in ("job-missing", "no-waiter")) for result in counts)
    (logger.info if acted else logger.debug)("reconciled", extra={"counts": counts})
    return counts
