"""Checks a batch input, resolves the champion model and builds the transform job request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import batch_run
from shepherd.aws import s3, sagemaker
from shepherd.aws.powertools import powertools
from shepherd.edge import optional_setting, setting

logger, tracer, metrics = powertools()


# The environment (template.yaml) read once per cold start.
deps = batch_run.Deps(
    bucket=s3,
    models=sagemaker,
    sagemaker_role_arn=setting("SAGEMAKER_ROLE_ARN"),
    now=lambda: datetime.now(UTC),
    kms_key_arn=optional_setting("DATA_KEY_ARN"),
    default_instance_type=optional_setting("DEFAULT_BATCH_INSTANCE_TYPE"),
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    prepared = batch_run.prepare(deps, batch_run.PrepareRequest.model_validate(event))
    logger.info("transform prepared", extra={k: prepared[k] for k in ("job_name", "model_name", "records")})
    return prepared
