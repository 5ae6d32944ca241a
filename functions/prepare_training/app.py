"""Validates a model's config, snapshots its code and dataset, and builds the training job request
(shepherd.training.prepare)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import training
from shepherd.aws import s3
from shepherd.aws.clients import region
from shepherd.aws.powertools import powertools

logger, tracer, metrics = powertools()


def _ids(variable: str) -> list[str]:
    """A comma-separated list of the stack's (SAM joins a parameter's list so; empty when it has none)."""
    return [part for part in os.environ.get(variable, "").split(",") if part]


def _settings() -> training.Settings:
    subnets, groups = _ids("SUBNET_IDS"), _ids("SECURITY_GROUP_IDS")
    return training.Settings(
        role_arn=os.environ["SAGEMAKER_ROLE_ARN"],
        region=region(),
        kms_key_arn=os.environ.get("DATA_KEY_ARN") or None,
        default_instance_type=os.environ.get("DEFAULT_TRAINING_INSTANCE_TYPE") or None,
        vpc=training.Vpc(subnets=subnets, security_groups=groups) if subnets and groups else None,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = training.DatasetRun.model_validate(event)
    return training.prepare(training.Deps(objects=s3, settings=_settings()), request)
