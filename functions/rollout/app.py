"""The Rollout state machine's steps (shepherd.rollout.steps), one `action` per step."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints, packages, s3
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.aws.transforms import TransformJobs
from shepherd.edge import optional_setting, setting
from shepherd.errors import InvalidInput
from shepherd.rollout import steps
from shepherd.rollout.ports import Deps, Settings
from shepherd.rollout.state import RolloutState

logger, tracer, metrics = powertools()
WITH_TOKEN = ("deploy_first", "enter_stage", "finalize", "rollback_weights", "rollback_config")
PLAIN = ("promoted", "verify_rollback", "release", "reject")
WITH_EXECUTION = ("hand_over", "resume")
BESIDE_STATE = ("stage_index", "verdict", "continuation")  # the state machine keeps these beside the state

# The environment (template.yaml) read once per cold start.
deps = Deps(
    endpoints=endpoints,
    packages=packages,
    objects=s3,
    store=RolloutTable(setting("ROLLOUTS_TABLE")),
    tokens=DynamoTokenStore(setting("TASK_TOKENS_TABLE")),
    resumer=StepFunctionsResumer(),
    settings=Settings(
        bucket=setting("DATA_BUCKET"),
        sagemaker_role_arn=setting("SAGEMAKER_ROLE_ARN"),
        kms_key_arn=optional_setting("DATA_KEY_ARN"),
    ),
    now=clock.now,
    capture=s3,
    jobs=TransformJobs(),
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    logger.append_keys(action=action, run=(event.get("state") or event).get("run"))
    if action == "describe_failure":  # the failure paths' notification; a failed Prepare has no state
        return steps.describe_failure(
            event["event"], event.get("error"), event.get("facts") or {}, event.get("verdict")
        )
    if action == "prepare":
        return steps.prepare(
            deps,
            package_arn=event["ModelPackageArn"],
            run=event["run"],
            overrides=event.get("Overrides") or None,
            manual=bool(event.get("Manual")),
        ).dump()
    if action == "release_unstarted":  # Prepare's failure path: no state, the lock Prepare may have taken
        return steps.release_unstarted(
            deps, package_arn=event["ModelPackageArn"], run=event["run"], overrides=event.get("Overrides") or None
        )
    state = RolloutState.model_validate(
        dict(event.get("state") or {}) | {k: event[k] for k in BESIDE_STATE if k in event}
    )
    if action in WITH_TOKEN:
        return dict(getattr(steps, action)(deps, state, event["token"]))
    if action in PLAIN:
        return dict(getattr(steps, action)(deps, state))
    if action in WITH_EXECUTION:
        return dict(getattr(steps, action)(deps, state, event["execution"]))
    raise InvalidInput(f"unknown rollout action {action!r}")
