"""Validates a model's config, checks and snapshots its dataset and code, and builds the training job request
(shepherd.training.prepare), unless a package was already made from the same inputs."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import training
from shepherd.aws import s3, training_runs
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
    if event.get("action") == "describe_failure":  # the lifecycle's failure path: the notification to send
        return training.failure_notice(str(event["execution"]), event["state"])
    # The execution's whole input, so a manual start's optional fields (force) need no default in the ASL.
    request = training.DatasetRun.model_validate(event["input"] | {"run": event["run"]})
    deps = training.Deps(objects=s3, settings=_settings(), files=training_runs, packages=training_runs)
    return training.prepare(deps, request)
