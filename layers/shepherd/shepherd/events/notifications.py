"""What Shepherd tells people: a one-line reason first, then the detail, never a stack trace or a local path.

docs/ROLLOUTS.md ("Notifications") describes the format; schemas/notification.schema.json is its schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The events a notification names (its "event" key).
ROLLOUT_PROMOTED = "RolloutPromoted"
ROLLOUT_ROLLED_BACK = "RolloutRolledBack"
ROLLOUT_INCONCLUSIVE = "RolloutInconclusive"
ROLLOUT_REJECTED = "RolloutRejected"  # replay rejected the candidate before it served
ROLLBACK_FAILED = "RollbackFailed"
ROLLOUT_FAILED = "RolloutFailed"
LOCK_LOST = "LockLost"
ROLLOUT_RECONCILED = "RolloutReconciled"
BATCH_COMPLETED = "BatchTransformCompleted"
BATCH_FAILED = "BatchTransformFailed"
MONITORING_ALERT = "MonitoringAlert"
MONITORING_FAILED = "MonitoringFailed"

REASON_MAX = 300  # the error's share of a reason; what Shepherd composes around it comes on top
DETAIL_MAX = 3000

# Errors Step Functions raises itself, with an empty or terse Cause.
_STATES_ERRORS = {
    "States.Timeout": "the step did not finish within its time limit",
    "States.HeartbeatTimeout": "the step sent no heartbeat in time",
    "States.Permissions": "Step Functions was not allowed to run the step",
    "States.TaskFailed": "the step failed",
    "States.Runtime": "the state machine could not process the step's input or output",
}
_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^\s*File "')  # a traceback's frame line; its source lines follow, indented
_MARKERS = re.compile(r"^[\s^~]*$")  # the carets under a frame's source line
_REQUEST_ID = re.compile(r"^RequestId: [\w-]+ Error: ")  # Lambda's prefix on a timeout or a crash
# An absolute local path (not part of a URI or an ARN): only its last component is kept.
_LOCAL_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"`:,()\[\]{}<>/]+/)+([^\s'\"`:,()\[\]{}<>/]+)")


@dataclass(frozen=True)
class Explanation:
    """An error told in one line (``reason``: its type and the first line of its message) and the rest."""

    error: str  # its type: errorType for a Lambda function's error, else Step Functions' Error
    reason: str
    detail: str


def explain(error: Mapping[str, Any] | None) -> Explanation:
    """A Step Functions error, ``{"Error", "Cause"}`` as a Catch records it, as a reason and a detail.

    A Lambda function's error arrives with its Cause the JSON document Lambda returns (``errorType``,
    ``errorMessage``, ``stackTrace``): the reason is its type and the message's first line, the detail the
    rest of the message. The stack trace, and frames a message quotes, are left out; local paths are cut to
    their file name."""
    error = error or {}
    kind, message = _message(str(error.get("Error") or "Error"), error.get("Cause"))
    lines = _clean(message)
    if not lines:
        return Explanation(kind, f"{kind}: {_STATES_ERRORS.get(kind, 'no cause given')}", "")
    first = lines[0]
    reason = first if first.startswith((f"{kind}:", f"{kind} ")) else f"{kind}: {first}"
    return Explanation(kind, _cut(reason, REASON_MAX), _cut("\n".join(lines[1:]), DETAIL_MAX))


def _message(kind: str, cause: Any) -> tuple[str, str]:
    """(error type, message): a Lambda error document's errorType and errorMessage, else the Cause as text."""
    if not isinstance(cause, str):
        return kind, "" if cause is None else json.dumps(cause, default=str)
    try:
        document = json.loads(cause)
    except ValueError:
        return kind, cause
    if isinstance(document, dict) and "errorMessage" in document:
        return str(document.get("errorType") or kind), str(document.get("errorMessage") or "")
    if isinstance(document, dict) and "Cause" in document:  # an error that carries another's, as Catch records it
        return _message(str(document.get("Error") or kind), document.get("Cause"))
    return kind, cause


def _clean(message: str) -> list[str]:
    """The message's lines without traceback frames, caret lines or Lambda's request prefix."""
    kept: list[str] = []
    in_frame = False
    for raw in message.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        if line.strip() == _TRACEBACK or _FRAME.match(line):
            in_frame = True
            continue
        if in_frame and (line.startswith((" ", "\t")) or _MARKERS.match(line)):
            continue  # a frame's source line, or the carets under it
        in_frame = False
        if not line.strip() or _MARKERS.match(line):
            continue
        kept.append(_LOCAL_PATH.sub(r"\1", _REQUEST_ID.sub("", line.strip())))
    return kept


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def one_line(text: str) -> str:
    """Text on one line: a reason is the first line people read."""
    return " ".join(text.split())


def document(event: str, reason: str, detail: str = "", **facts: Any) -> dict[str, Any]:
    """A notification: ``reason`` first, ``detail``, ``event``, then the facts (model, endpoint, package, ...)."""
    return {"reason": one_line(reason), "detail": detail.strip(), "event": event, **facts}


def package_label(package_arn: str) -> str:
    """``churn v3`` for a model package ARN ``…:model-package/churn/3``; the ARN itself otherwise."""
    _, _, resource = package_arn.partition(":model-package/")
    group, _, version = resource.rpartition("/")
    return f"{group} v{version}" if group and version.isdigit() else package_arn


def cost_line(cost: Mapping[str, Any] | None, live_requests: int | None = None) -> str:
    """A rollout's cost (shepherd.rollout.cost.summary) in one line, '' without one or without stages (a first
    deployment adds nothing beside a champion): instance-hours per stage, estimated USD or why unknown, the price
    table's date, and the requests the candidate answered live."""
    if not isinstance(cost, Mapping) or not cost.get("stages"):
        return ""
    usd = cost.get("usd")
    why = "; ".join(cost.get("unknown") or [])
    money = f"about ${usd:,.2f}" if isinstance(usd, int | float) else f"USD unknown ({why})"
    parts = [
        f"{stage.get('stage')} {float(stage.get('instance_hours') or 0):.2f} h"
        for stage in cost.get("stages") or []
        if isinstance(stage, Mapping)
    ]
    by_stage = f" ({', '.join(parts)})" if parts else ""
    live = f"; {live_requests:,} live requests to the candidate" if isinstance(live_requests, int) else ""
    return (
        f"Cost: {float(cost.get('instance_hours') or 0):.2f} added instance-hours{by_stage}, {money} at list prices "
        f"as of {cost.get('prices_as_of')}{live}."
    )
