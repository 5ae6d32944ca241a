"""Checks a batch input, resolves the champion model and builds the transform job request."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import batch_run
from shepherd.aws import s3, sagemaker
from shepherd.aws.powertools import powertools

logger, tracer, metrics = powertools()


def deps() -> batch_run.Deps:
    return batch_run.Deps(
        bucket=s3,
        models=sagemaker,
        sagemaker_role_arn=os.environ["SAGEMAKER_ROLE_ARN"],
        now=lambda: datetime.now(UTC),
        kms_key_arn=os.environ.get("DATA_KEY_ARN") or None,
        default_instance_type=os.environ.get("DEFAULT_BATCH_INSTANCE_TYPE") or None,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    prepared = batch_run.prepare(deps(), batch_run.PrepareRequest.model_validate(event))
    logger.info("transform prepared", extra={k: prepared[k] for k in ("job_name", "model_name", "records")})
    return prepared
