"""Starts a Rollout once per approved model package, whatever SageMaker re-sends.

SageMaker sends "Model Package State Change" on every update of a package and may send an
event more than once: the execution is named from the package ARN, so a package is rolled out
once (a second rollout of the same package is `shepherd rollout start`, by hand, with a new name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.clients import client
from shepherd.aws.powertools import powertools
from shepherd.aws.stepfunctions import start_once
from shepherd.edge import setting
from shepherd.events.names import execution_name

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """StartRollout's environment (template.yaml), read once per cold start."""

    state_machine_arn: str


settings = Settings(state_machine_arn=setting("ROLLOUT_STATE_MACHINE_ARN"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail") or {}
    arn, status = detail.get("ModelPackageArn"), detail.get("ModelApprovalStatus")
    if not arn or status != "Approved":
        return {"started": False, "ignored": f"{arn}: {status}"}
    group = detail.get("ModelPackageGroupName") or arn.rsplit("/", 2)[-2]
    name = execution_name(f"{group}-v{arn.rsplit('/', 1)[-1]}", arn)
    started = start_once(client("stepfunctions"), settings.state_machine_arn, name, {"ModelPackageArn": arn})
    logger.info("package approved", extra={"package": arn, "execution": name, "started": started})
    return {"execution_name": name, "started": started, "ModelPackageArn": arn}
