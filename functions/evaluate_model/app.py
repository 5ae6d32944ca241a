"""Judges a trained model against its config's gates; where a gate asks, plans scoring the champion on the
candidate's validation rows and, once both transform jobs ended, judges the paired comparison
(shepherd.comparison)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import comparison
from shepherd.aws import model_archives, s3, sagemaker
from shepherd.aws.powertools import powertools
from shepherd.edge import field, optional_setting, setting

logger, tracer, metrics = powertools()
# The environment (template.yaml) read once per cold start.
deps = comparison.Deps(
    objects=s3,
    models=sagemaker,
    archives=model_archives,
    sagemaker_role_arn=setting("SAGEMAKER_ROLE_ARN"),
    kms_key_arn=optional_setting("DATA_KEY_ARN"),
    default_instance_type=optional_setting("DEFAULT_BATCH_INSTANCE_TYPE"),
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if field(event, "action", str, choices=("evaluate", "judge"), default="evaluate") == "judge":
        return comparison.judge_run(deps, comparison.JudgeRequest.model_validate(event))
    return comparison.evaluate_run(deps, comparison.EvaluateRequest.model_validate(event))
