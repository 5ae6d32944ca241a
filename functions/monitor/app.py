"""Monitor: one run of a model's monitor, its endpoint's capture since the last run against the champion's
baseline (shepherd.monitor.run)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import s3
from shepherd.aws.monitoring import CloudWatchMetrics, SageMakerModels, StepFunctionsLifecycle, TaggedReports
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.edge import setting
from shepherd.monitor import run

logger, tracer, metrics = powertools()  # shepherd.monitor.run logs through it: its logger is a child
# The environment (template.yaml) read once per cold start.
deps = run.Deps(
    objects=s3,
    reports=TaggedReports(),
    models=SageMakerModels(),
    rollouts=RolloutTable(setting("ROLLOUTS_TABLE")),
    metrics=CloudWatchMetrics(),
    lifecycle=StepFunctionsLifecycle(setting("LIFECYCLE_STATE_MACHINE_ARN")),
    settings=run.Settings(bucket=setting("DATA_BUCKET"), stage=setting("STAGE_NAME")),
    now=clock.now,
    monotonic=time.monotonic,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "describe_failure":
        return run.failure_notice(str(event.get("execution")), dict(event.get("state") or {}))
    result = run.monitor(deps, run.MonitorRequest.model_validate(event))
    logger.info("monitored", extra={k: v for k, v in result.items() if k != "notification"})
    return result
