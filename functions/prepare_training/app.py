"""Validates a model's config, checks and snapshots its dataset and code, and builds the training job request
(shepherd.training.prepare), unless a package was already made from the same inputs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import training
from shepherd.aws import s3, training_runs
from shepherd.aws.clients import region
from shepherd.aws.powertools import powertools
from shepherd.edge import list_setting, optional_setting, setting

logger, tracer, metrics = powertools()


def _settings() -> training.Settings:
    """The environment (template.yaml) read once per cold start; a VPC only when both its lists are given."""
    subnets, groups = list_setting("SUBNET_IDS"), list_setting("SECURITY_GROUP_IDS")
    return training.Settings(
        role_arn=setting("SAGEMAKER_ROLE_ARN"),
        region=region(),
        kms_key_arn=optional_setting("DATA_KEY_ARN"),
        default_instance_type=optional_setting("DEFAULT_TRAINING_INSTANCE_TYPE"),
        vpc=training.Vpc(subnets=subnets, security_groups=groups) if subnets and groups else None,
    )


deps = training.Deps(objects=s3, settings=_settings(), files=training_runs, packages=training_runs)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "describe_failure":  # the lifecycle's failure path: the notification to send
        return training.failure_notice(str(event["execution"]), event["state"])
    # The execution's whole input, so a manual start's optional fields (force) need no default in the ASL.
    request = training.DatasetRun.model_validate(event["input"] | {"run": event["run"]})
    return training.prepare(deps, request)
