"""ReconcileRollouts' sweep: settles the locks of rollouts that ended without their own cleanup.

A rollout stopped by hand, timed out, failed past its Catch, or whose state-change event was lost must not
strand an endpoint or its lock. The restore takes two sweeps (docs/ROLLOUTS.md): the lock stays taken until the
endpoint has settled on the champion's config, so no rollout starts on an endpoint still changing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from shepherd.errors import ShepherdError
from shepherd.events import notifications
from shepherd.rollout.ports import Endpoints, RolloutStore

logger = logging.getLogger(__name__)
RUNNING, MISSING = "RUNNING", "MISSING"
CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack")

Outcome = Literal["running", "gone", "waiting", "restored", "released"]


class ReconcileFailed(ShepherdError):
    """Some locks could not be settled (each is logged); the others were."""


class Executions(Protocol):
    """The Rollout state machine's executions by name (shepherd.aws.stepfunctions.StepFunctionsExecutions).

    status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE, or MISSING when there is none."""

    def status(self, name: str) -> str: ...


class Notifications(Protocol):
    """The stack's notification topic (shepherd.aws.notifications.SnsTopic)."""

    def publish(self, subject: str, message: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Deps:
    """Everything the sweep touches."""

    store: RolloutStore
    endpoints: Endpoints
    executions: Executions
    notifications: Notifications
    now: Callable[[], datetime]  # the cloud's clock (virtual on the local cloud)


def reconcile(deps: Deps) -> dict[str, int]:
    """Settle every endpoint's lock; how many locks came to each outcome.

    ReconcileFailed, after the sweep, names the endpoints whose lock could not be settled."""
    outcomes: dict[str, int] = {}
    failed: list[str] = []
    for lock in deps.store.locks():
        try:
            outcome = settle(deps, lock)
        except Exception:  # one endpoint's trouble must not keep the sweep from the others
            logger.exception("could not settle a rollout lock", extra={"lock": lock})
            failed.append(lock["endpoint"])
            continue
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome != "running":  # only a sweep that acted says so; "waiting" and "gone" did nothing
            level = logging.WARNING if outcome in ("restored", "released") else logging.DEBUG
            logger.log(level, "stranded rollout cleaned up", extra={"lock": lock, "action": outcome})
    if failed:
        raise ReconcileFailed(f"could not settle the rollout locks of {', '.join(failed)} (settled: {outcomes})")
    return outcomes


def settle(deps: Deps, lock: dict[str, str]) -> Outcome:
    """Leave one lock alone while its rollout runs or its endpoint changes; otherwise restore, then release."""
    endpoint, owner = lock["endpoint"], lock.get("owner", "")
    alive, execution, status = _running(deps, lock)
    if not alive:
        # A hand-over may have completed since the scan (the old execution ends right after starting the
        # new one): judge the lock as it is now.
        current = deps.store.lock_of(endpoint)
        if current is None:
            return "gone"
        if (current.get("execution"), current.get("successor")) != (lock.get("execution"), lock.get("successor")):
            alive, execution, status = _running(deps, current)
    if alive:
        return "running"
    champion = deps.store.champion(endpoint) or {}
    live = deps.endpoints.describe_endpoint(endpoint) or {}
    if live.get("EndpointStatus") in CHANGING:
        return "waiting"  # an update is in flight: settle once it has (the lock stays taken meanwhile)
    config = champion.get("config")
    on_champion = bool(config) and live.get("EndpointConfigName") == config
    scaling = False
    if config and live.get("EndpointStatus") == "InService" and not on_champion:
        _restore(deps, endpoint, owner, live, config)
        action: Outcome = "restored"
    else:
        action = "released"
        if on_champion and champion.get("scaling"):
            # An upsert: the post-promotion watch deregistered it, or it is there already.
            deps.endpoints.register_scaling(endpoint, champion["variant"], **json.loads(champion["scaling"]))
            scaling = True
    entry = {
        "run": owner,
        "execution": execution,
        "package": lock.get("package", ""),
        "event": "reconciled",
        "execution_status": status,
        "action": action,
        "config": config,
        "scaling_registered": scaling,
    }
    deps.store.record(endpoint, entry, deps.now().isoformat())
    if action == "released":
        deps.store.release(endpoint, owner)
    if not lock.get("restoring") and not _told_already(lock, status, action):
        subject = f"Shepherd: a {status.lower()} rollout was cleaned up"
        # The notification's event names it as the others do (RolloutPromoted, ...), not as the record does.
        reason, detail = _told(endpoint, entry)
        facts = {k: v for k, v in entry.items() if k != "event"}
        deps.notifications.publish(
            subject,
            notifications.document(notifications.ROLLOUT_RECONCILED, reason, detail, endpoint=endpoint, **facts),
        )
    return action


def _told_already(lock: dict[str, str], status: str, action: Outcome) -> bool:
    """A FAILED rollout whose lock was never renewed (version 1: no endpoint change, no judge call) ended in
    Prepare or before its first change, on a path that told already (RolloutFailed); freeing it changes nothing."""
    return action == "released" and status == "FAILED" and str(lock.get("version", "")) == "1"


def _told(endpoint: str, entry: dict[str, Any]) -> tuple[str, str]:
    """A reconciled rollout's reason and detail (docs/ROLLOUTS.md, "Notifications")."""
    ended = (
        f"The rollout {entry['run']} on {endpoint} ended {str(entry['execution_status']).lower()} without its clean-up"
    )
    if entry["action"] == "restored":
        return (
            f"{ended}: ReconcileRollouts is restoring the champion's config {entry['config']}",
            "The endpoint's lock stays taken until the endpoint is InService on that config; a later sweep frees it.",
        )
    serving = f"The endpoint serves the champion's config {entry['config']}." if entry["config"] else ""
    return f"{ended}: ReconcileRollouts freed the endpoint's lock", serving


def _running(deps: Deps, lock: dict[str, str]) -> tuple[bool, str, str]:
    """Whether the lock's rollout still runs, the execution it names and that execution's status.

    It runs while the execution it names, or the successor it is handing over to, is RUNNING."""
    execution = lock.get("execution") or lock.get("owner", "")
    status = deps.executions.status(execution)
    successor = lock.get("successor")
    alive = status == RUNNING or bool(successor and deps.executions.status(successor) == RUNNING)
    return alive, execution, status


def _restore(deps: Deps, endpoint: str, owner: str, live: dict[str, Any], config: str) -> None:
    """Put the endpoint back on the champion's config, keeping the lock until a later sweep sees it settled."""
    # SageMaker refuses to remove a variant that still has a scaling target (a candidate stopped during its
    # post-promotion watch has one): those go first.
    keep = {v["VariantName"] for v in deps.endpoints.describe_endpoint_config(config)["ProductionVariants"]}
    for variant in live.get("ProductionVariants", []):
        if variant["VariantName"] not in keep:
            deps.endpoints.deregister_scaling(endpoint, variant["VariantName"])
    deps.endpoints.update_endpoint(endpoint, config, exclude_weights=True)
    deps.store.note_restoring(endpoint, owner, config)
