"""Step Functions executions read back as runs: what ran for a model, how it ended, and why in one line.

The reason comes from what the run itself said last: the notification it published (its `reason`, else its
error and cause), else the last failed task, else the execution's own error. Lambda's stack traces and local
paths stay out: an error is its type and the first line of its message, as notifications say it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import code_of, mapped
from shepherd.errors import NotFound, ShepherdError
from shepherd.events.notifications import explain

# How far back a listing looks per state machine, and how much of the end of a history tells why a run ended.
SCAN_PER_MACHINE = 100
TAIL_EVENTS = 200
FAILURE_DETAILS = (
    "taskFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "taskTimedOutEventDetails",
    "activityFailedEventDetails",
    "lambdaFunctionTimedOutEventDetails",
    "executionFailedEventDetails",
    "executionTimedOutEventDetails",
    "executionAbortedEventDetails",
)
# What a notification without a reason says of its outcome, in this order.
SUMMARY_KEYS = ("evaluation", "summary", "records", "model_package_arn", "champion", "package", "input")


@dataclass(frozen=True)
class Run:
    """One execution of one of the stack's state machines (kind: lifecycle, batch or rollout)."""

    kind: str
    name: str
    arn: str
    status: str
    started: datetime
    stopped: datetime | None = None
    model: str = ""
    outcome: str = ""
    reason: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """A state the run entered, when, and how it went (empty when it simply went on)."""

    at: datetime
    state: str
    note: str = ""
    repeats: int = 1
    until: datetime | None = None


def first_line(text: str) -> str:
    """The first non-empty line of a text."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def error_line(error: str | None, cause: Any) -> str:
    """`<error type>: <first line of the message>`, as notifications say it (shepherd.events.notifications)."""
    return explain({"Error": error, "Cause": cause}).reason


def without_traces(value: Any) -> Any:
    """A notification with each Lambda error in it (often JSON inside a string) as its type and message only."""
    if isinstance(value, str) and value.startswith("{") and "stackTrace" in value:
        return without_traces(_json(value)) or value
    if isinstance(value, dict):
        return {k: without_traces(v) for k, v in value.items() if k not in ("stackTrace", "requestId")}
    if isinstance(value, list):
        return [without_traces(item) for item in value]
    return value


def notification_reason(notification: dict[str, Any]) -> str:
    """The one line a run's notification gives for its outcome."""
    reason = notification.get("reason")
    if isinstance(reason, str) and reason:
        return first_line(reason)
    error = notification.get("error")
    if isinstance(error, dict):
        return error_line(error.get("Error"), error.get("Cause"))
    if error or notification.get("cause"):
        return error_line(error, notification.get("cause"))
    facts = [
        f"{key} {value if isinstance(value, str) else json.dumps(value, default=str)}"
        for key in SUMMARY_KEYS
        if (value := notification.get(key))
    ]
    return first_line("; ".join(facts))


class StepFunctionsRuns:
    """Reads the executions of the given state machines ({kind: state machine ARN}) through ``clients``."""

    def __init__(self, machines: dict[str, str], clients: Callable[[str], Any] | None = None) -> None:
        self.machines = machines
        self._clients = clients or client

    @property
    def sfn(self) -> Any:
        return self._clients("stepfunctions")

    def recent(self, model: str | None = None, limit: int = 10) -> list[Run]:
        """The latest runs, newest first, of ``model`` (its lifecycle and batch runs, and the rollouts of its
        package group) or of every model."""
        listed: list[tuple[str, dict[str, Any]]] = []
        for kind, machine in self.machines.items():
            listed += [(kind, execution) for execution in self._listed(machine)]
        listed.sort(key=lambda item: item[1]["startDate"], reverse=True)
        runs: list[Run] = []
        for kind, execution in listed:
            if len(runs) >= limit:
                break
            if model and not _may_belong(execution["name"], model):
                continue
            run = self._run(kind, execution["executionArn"])
            if model is None or run.model == model:
                runs.append(run)
        return runs

    def find(self, run: str) -> Run:
        """A run by its execution ARN or its name (looked up in each state machine)."""
        for kind, machine in self.machines.items():
            prefix = machine.replace(":stateMachine:", ":execution:") + ":"
            if run.startswith(prefix):
                return self._run(kind, run)
            if not run.startswith("arn:"):
                try:
                    return self._run(kind, prefix + run)
                except NotFound:
                    continue
        raise NotFound(f"no run {run} among the executions of the stack's {', '.join(self.machines)} state machines")

    def story(self, run: Run) -> list[Step]:
        """Every state the run entered, in order, with failures and retries noted; loops folded."""
        steps: list[Step] = []
        for event in sorted(self._history(run.arn), key=lambda e: int(e["id"])):
            kind = str(event.get("type", ""))
            if kind.endswith("StateEntered"):
                steps.append(Step(event["timestamp"], event["stateEnteredEventDetails"]["name"]))
                continue
            details = next((event[key] for key in FAILURE_DETAILS if key in event), None)
            if details is None:
                continue
            line = error_line(details.get("error"), details.get("cause"))
            if kind.startswith("Execution"):
                steps.append(Step(event["timestamp"], "(end)", f"{kind.removeprefix('Execution').lower()}: {line}"))
            elif steps:
                last = steps[-1]
                note = f"{last.note}; failed: {line}" if last.note else f"failed: {line}"
                steps[-1] = Step(last.at, last.state, note)
        return fold_loops(steps)

    # ------------------------------------------------------------ reading

    def _listed(self, machine: str) -> list[dict[str, Any]]:
        executions: list[dict[str, Any]] = []
        request: dict[str, Any] = {"stateMachineArn": machine, "maxResults": SCAN_PER_MACHINE}
        with mapped(f"listing the executions of {machine}"):
            while len(executions) < SCAN_PER_MACHINE:
                page = self.sfn.list_executions(**request)
                executions += page.get("executions", [])
                if not page.get("nextToken"):
                    break
                request["nextToken"] = page["nextToken"]
        return executions[:SCAN_PER_MACHINE]

    def _history(self, arn: str, *, tail: bool = False) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"executionArn": arn, "maxResults": TAIL_EVENTS if tail else 1000}
        if tail:
            request["reverseOrder"] = True
        with mapped(f"reading the history of {arn}"):
            while True:
                page = self.sfn.get_execution_history(**request)
                events += page.get("events", [])
                if tail or not page.get("nextToken"):
                    break
                request["nextToken"] = page["nextToken"]
        return events

    def _describe(self, arn: str) -> dict[str, Any]:
        try:
            with mapped(f"describing {arn}"):
                return dict(self.sfn.describe_execution(executionArn=arn))
        except ShepherdError as exc:
            if exc.__cause__ is not None and code_of(exc.__cause__) == "ExecutionDoesNotExist":
                raise NotFound(f"no execution {arn}") from exc.__cause__
            raise

    def _run(self, kind: str, arn: str) -> Run:
        described = self._describe(arn)
        given = _json(described.get("input"))
        status = str(described.get("status", ""))
        tail = sorted(self._history(arn, tail=True), key=lambda e: int(e["id"]), reverse=True)
        notification = _json(described.get("output")) if status == "SUCCEEDED" else {}
        if "event" not in notification:
            notification = _last_notification(tail)
        if notification:
            outcome, reason = str(notification.get("event") or status), notification_reason(notification)
        else:
            outcome, reason = status, _last_failure(tail)
        if not reason and described.get("error"):
            reason = error_line(described.get("error"), described.get("cause"))
        if not reason and status == "RUNNING":
            entered = next((e for e in tail if str(e.get("type", "")).endswith("StateEntered")), None)
            reason = f"in {entered['stateEnteredEventDetails']['name']}" if entered else "starting"
        return Run(
            kind=kind,
            name=str(described.get("name") or arn.rsplit(":", 1)[-1]),
            arn=arn,
            status=status,
            started=described["startDate"],
            stopped=described.get("stopDate"),
            model=_model_of(given),
            outcome=outcome,
            reason=reason,
            input=given,
            detail=without_traces(notification),
        )


def fold_loops(steps: list[Step], longest: int = 4) -> list[Step]:
    """A cycle of up to ``longest`` states repeated back to back without a failure (a judge's Wait → Judge →
    Verdict) is kept once, counting its repeats and when the last one began."""
    folded: list[Step] = []
    index = 0
    while index < len(steps):
        for size in range(1, longest + 1):
            repeats = _repeats(steps, index, size)
            if repeats > 1:
                names = " → ".join(step.state for step in steps[index : index + size])
                last = steps[index + (repeats - 1) * size]
                folded.append(Step(steps[index].at, names, repeats=repeats, until=last.at))
                index += repeats * size
                break
        else:
            folded.append(steps[index])
            index += 1
    return folded


def _repeats(steps: list[Step], index: int, size: int) -> int:
    """How many times steps[index : index + size] occurs back to back from ``index`` (notes never repeat)."""

    def cycle(at: int) -> list[str] | None:
        window = steps[at : at + size]
        return None if len(window) < size or any(step.note for step in window) else [s.state for s in window]

    first = cycle(index)
    repeats = 1 if first else 0
    while first and cycle(index + repeats * size) == first:
        repeats += 1
    return repeats


def _may_belong(name: str, model: str) -> bool:
    """Execution names start with the model (lifecycle, batch) or its package group (rollouts)."""
    return name.startswith((f"{model}-", f"manual-{model}-"))


def _model_of(given: dict[str, Any]) -> str:
    if given.get("model"):
        return str(given["model"])
    package = str(given.get("ModelPackageArn") or "")
    parts = package.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else ""


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _last_notification(tail: list[dict[str, Any]]) -> dict[str, Any]:
    """The message of the last SNS publish the run made (its notification), newest first in ``tail``."""
    for event in tail:
        details = event.get("taskScheduledEventDetails") or {}
        if details.get("resourceType") != "sns" or details.get("resource") != "publish":
            continue
        message = _json(_json(details.get("parameters")).get("Message"))
        if message:
            return message
    return {}


def _last_failure(tail: list[dict[str, Any]]) -> str:
    for event in tail:
        details = next((event[key] for key in FAILURE_DETAILS if key in event), None)
        if details and not str(event.get("type", "")).startswith("Execution"):
            return error_line(details.get("error"), details.get("cause"))
    return ""
