"""Scheduled: a rollout that ended without its own cleanup (stopped by hand, timed out, failed past its
Catch, or its state-change event lost) must not strand an endpoint or its lock.

For every lock whose owner execution is no longer RUNNING: if the endpoint is not on the champion's
recorded config, restore it (UpdateEndpoint, capacity retained); record what was done; release the
lock; notify. A lock whose owner still runs is left alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints, rollouts
from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import describe_endpoint

logger, tracer, metrics = powertools()


def _status(execution_name: str) -> str:
    machine = os.environ["ROLLOUT_STATE_MACHINE_ARN"]
    arn = machine.replace(":stateMachine:", ":execution:") + f":{execution_name}"
    try:
        with mapped(f"describing {arn}"):
            return str(client("stepfunctions").describe_execution(executionArn=arn)["status"])
    except Exception as exc:
        if "ExecutionDoesNotExist" in str(exc.__cause__ or exc):
            return "MISSING"
        raise


def _settle(lock: dict[str, str]) -> str:
    endpoint, owner = lock["endpoint"], lock.get("owner", "")
    status = _status(owner)
    if status == "RUNNING":
        return "running"
    champion = rollouts.champion(endpoint)
    live = describe_endpoint(endpoint)
    action = "released"
    if (
        champion
        and live
        and live.get("EndpointStatus") == "InService"
        and live["EndpointConfigName"] != champion["config"]
    ):
        # SageMaker refuses to remove a variant that still has a scaling target (a candidate stopped
        # during its post-promotion watch has one): those go first.
        keep = {v["VariantName"] for v in endpoints.describe_config(champion["config"])["ProductionVariants"]}
        for variant in live.get("ProductionVariants", []):
            if variant["VariantName"] not in keep:
                endpoints.deregister_scaling(endpoint, variant["VariantName"])
        endpoints.update_endpoint(endpoint, champion["config"], exclude_weights=True)
        action = "restored"
    entry = {
        "run": owner,
        "package": lock.get("package", ""),
        "event": "reconciled",
        "execution_status": status,
        "action": action,
        "config": champion["config"] if champion else None,
    }
    rollouts.record(endpoint, entry, clock.now().isoformat())
    rollouts.release(endpoint, owner)
    with mapped("notifying"):
        client("sns").publish(
            TopicArn=os.environ["NOTIFICATION_TOPIC_ARN"],
            Subject=f"Shepherd: a {status.lower()} rollout was cleaned up"[:100],
            Message=json.dumps({"event": "RolloutReconciled", "endpoint": endpoint, **entry}),
        )
    return action


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results: dict[str, int] = {}
    for lock in rollouts.locks():
        outcome = _settle(lock)
        results[outcome] = results.get(outcome, 0) + 1
        if outcome != "running":
            logger.warning("stranded rollout cleaned up", extra={"lock": lock, "action": outcome})
    return results
