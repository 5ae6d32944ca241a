"""Scheduled: a rollout that ended without its own cleanup (stopped by hand, timed out, failed past its
Catch, or its state-change event lost) must not strand an endpoint or its lock.

For every lock whose rollout no longer runs (neither the execution it names nor the successor a long stage
is handing over to is RUNNING): if the endpoint is not on the champion's
recorded config, restore it (UpdateEndpoint, capacity retained), record it and notify, keeping the lock;
once the endpoint is back on that config and InService (a later sweep), give the champion its scaling
target back and release the lock. A lock whose rollout still runs, or whose endpoint is mid-update, is
left alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints
from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.aws.sagemaker import describe_endpoint
from shepherd.errors import ShepherdError

logger, tracer, metrics = powertools()
rollouts = RolloutTable()


class ReconcileFailed(ShepherdError):
    """Some locks could not be settled (each is logged); the others were."""


CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack")


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


def _running(lock: dict[str, str]) -> tuple[bool, str, str]:
    """Whether the lock's rollout still runs: the execution it names, or the successor it is handing over to."""
    execution = lock.get("execution") or lock.get("owner", "")
    status = _status(execution)
    alive = status == "RUNNING" or bool(lock.get("successor") and _status(lock["successor"]) == "RUNNING")
    return alive, execution, status


def _settle(lock: dict[str, str]) -> str:
    endpoint, owner = lock["endpoint"], lock.get("owner", "")
    alive, execution, status = _running(lock)
    if not alive:
        # A hand-over may have completed since the scan (the old execution ends right after starting the
        # new one): judge the lock as it is now.
        current = rollouts.lock_of(endpoint)
        if current is None:
            return "gone"
        if (current.get("execution"), current.get("successor")) != (lock.get("execution"), lock.get("successor")):
            alive, execution, status = _running(current)
    if alive:
        return "running"
    champion = rollouts.champion(endpoint)
    live = describe_endpoint(endpoint)
    if live and live.get("EndpointStatus") in CHANGING:
        return "waiting"  # an update is in flight: settle once it has (the lock stays taken meanwhile)
    restore = False
    scaling = False
    on_champion = bool(champion and live and live.get("EndpointConfigName") == champion.get("config"))
    if champion and champion.get("config") and live and live.get("EndpointStatus") == "InService" and not on_champion:
        restore = True
        # SageMaker refuses to remove a variant that still has a scaling target (a candidate stopped
        # during its post-promotion watch has one): those go first.
        keep = {v["VariantName"] for v in endpoints.describe_config(champion["config"])["ProductionVariants"]}
        for variant in live.get("ProductionVariants", []):
            if variant["VariantName"] not in keep:
                endpoints.deregister_scaling(endpoint, variant["VariantName"])
        endpoints.update_endpoint(endpoint, champion["config"], exclude_weights=True)
        # The lock stays taken until the restore has settled: the next sweep gives the champion its scaling
        # target back (deregistered when the watch began) and only then frees the endpoint.
        rollouts.note_restoring(endpoint, owner, champion["config"])
        action = "restored"
    else:
        action = "released"
        if champion and on_champion and champion.get("scaling"):
            endpoints.register_scaling(endpoint, champion["variant"], **json.loads(champion["scaling"]))
            scaling = True  # an upsert: the watch deregistered it, or it is there already
    entry = {
        "run": owner,
        "execution": execution,
        "package": lock.get("package", ""),
        "event": "reconciled",
        "execution_status": status,
        "action": action,
        "config": champion.get("config") if champion else None,
        "scaling_registered": scaling,
    }
    rollouts.record(endpoint, entry, clock.now().isoformat())
    if not restore:
        rollouts.release(endpoint, owner)
    if not lock.get("restoring"):  # told once, when the clean-up began
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
    failed: list[str] = []
    for lock in rollouts.locks():
        try:
            outcome = _settle(lock)
        except Exception:  # one endpoint's trouble must not keep the sweep from the others
            logger.exception("could not settle a rollout lock", extra={"lock": lock})
            failed.append(lock["endpoint"])
            continue
        results[outcome] = results.get(outcome, 0) + 1
        if outcome != "running":
            logger.warning("stranded rollout cleaned up", extra={"lock": lock, "action": outcome})
    if failed:
        raise ReconcileFailed(f"could not settle the rollout locks of {', '.join(failed)} (settled: {results})")
    return results
