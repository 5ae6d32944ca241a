"""Repacks a model that passed its gates with its inference code, and registers it as a ModelPackage with its
monitoring baseline (and the model's monitor schedule).

The repack runs here rather than in a SageMaker job: a scikit-learn model.tar.gz is small, so streaming
it through this function takes seconds where a processing job would spend minutes starting.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import registry
from shepherd.aws import model_archives, s3, sagemaker
from shepherd.aws.clients import region
from shepherd.aws.idempotency import IdempotencyTable
from shepherd.aws.monitoring import MonitorSchedules, newest_package_version
from shepherd.aws.powertools import powertools
from shepherd.edge import setting

logger, tracer, metrics = powertools()
# The environment (template.yaml) read once per cold start.
deps = registry.Deps(
    memory=IdempotencyTable(setting("IDEMPOTENCY_TABLE")),
    archives=model_archives,
    registry=sagemaker,
    region=region(),
    monitoring=registry.Monitoring(
        objects=s3,
        newest_version=newest_package_version,
        schedules=MonitorSchedules(setting("MONITOR_STATE_MACHINE_ARN"), setting("MONITOR_SCHEDULE_ROLE_ARN")),
        bucket=setting("DATA_BUCKET"),
        stage=setting("STAGE_NAME"),
    ),
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = registry.register(deps, registry.RegisterRequest.model_validate(event))
    logger.info("registered", extra=result)
    return result
