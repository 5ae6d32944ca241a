"""Scheduled: settles the locks of rollouts that ended without their own cleanup (shepherd.rollout.reconcile)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints
from shepherd.aws.notifications import SnsTopic
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.aws.stepfunctions import StepFunctionsExecutions
from shepherd.rollout.reconcile import Deps, reconcile

logger, tracer, metrics = powertools()


def _deps() -> Deps:
    return Deps(
        store=RolloutTable(os.environ["ROLLOUTS_TABLE"]),
        endpoints=endpoints,
        executions=StepFunctionsExecutions(os.environ["ROLLOUT_STATE_MACHINE_ARN"]),
        notifications=SnsTopic(os.environ["NOTIFICATION_TOPIC_ARN"]),
        now=clock.now,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reconcile(_deps())
