"""Scheduled: settles the locks of rollouts that ended without their own cleanup (shepherd.rollout.reconcile)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints
from shepherd.aws.notifications import SnsTopic
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.aws.stepfunctions import StepFunctionsExecutions
from shepherd.edge import setting
from shepherd.rollout.reconcile import Deps, reconcile

logger, tracer, metrics = powertools()

# The environment (template.yaml) read once per cold start.
deps = Deps(
    store=RolloutTable(setting("ROLLOUTS_TABLE")),
    endpoints=endpoints,
    executions=StepFunctionsExecutions(setting("ROLLOUT_STATE_MACHINE_ARN")),
    notifications=SnsTopic(setting("NOTIFICATION_TOPIC_ARN")),
    now=clock.now,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reconcile(deps)
