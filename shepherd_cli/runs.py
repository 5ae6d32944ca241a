"""`shepherd runs [model]` and `shepherd runs show <run>`: the stack's lifecycle, batch and rollout executions.

Read-only: ListExecutions, DescribeExecution and GetExecutionHistory with the caller's own credentials.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from shepherd.aws.runs import Step, StepFunctionsRuns

from shepherd_cli.cloud import CloudClock, CommandError, Target, connected
from shepherd_cli.output import console

# The stack's state machines by the kind of run they make, and the output that names each.
MACHINES = {
    "lifecycle": "ModelLifecycleStateMachineArn",
    "batch": "BatchTransformStateMachineArn",
    "rollout": "RolloutStateMachineArn",
}
STATUS_STYLES = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow", "RUNNING": "cyan"}


@connected(stack=True)
def runs(
    target: Target,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL] | show RUN",
            help="A model whose runs to list (default: every model's); or `show RUN` for the whole story of one run "
            "(its execution name or ARN, as the list shows).",
            show_default=False,
        ),
    ] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="How many of the latest runs to list.")] = 10,
) -> None:
    """List recent training (lifecycle), batch and rollout runs with their outcome and why, newest first."""
    words = words or []
    if words[:1] == ["show"] and len(words) != 2:
        raise CommandError("`shepherd runs show RUN` takes one run: its execution name or ARN")
    if words[:1] != ["show"] and len(words) > 1:
        raise CommandError(f"one model at most, got {' '.join(words)} (`shepherd runs show RUN` for one run)")
    if words[:1] == ["show"]:
        _show(target, words[1])
    else:
        _list(target, words[0] if words else None, last)


def _reader(target: Target) -> StepFunctionsRuns:
    machines = {kind: target.output(key) for kind, key in MACHINES.items()}
    return StepFunctionsRuns(machines, clients=target.client)


def _list(target: Target, model: str | None, last: int) -> None:
    found = _reader(target).recent(model, last)
    clock = target.clock()
    out = console()
    if not found:
        whose = f" of {model}" if model else ""
        out.print(f"No runs{whose} in {target.describe()}.")
        return
    table = Table(title=f"Last {len(found)} runs" + (f" of {model}" if model else ""), title_justify="left")
    table.show_edge = False
    for column in ("Started", "Kind", "Model", "Status", "Outcome", "Reason", "Run"):
        table.add_column(column)
    for run in found:
        table.add_row(
            clock.wall_time(run.started),
            run.kind,
            escape(run.model),
            _status(run.status),
            escape(run.outcome),
            escape(run.reason),
            escape(run.name),
        )
    out.print(table)
    out.print(f"{clock.label}; `shepherd runs show RUN` tells a run's whole story")


def _status(status: str) -> str:
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/]" if style else status


def _show(target: Target, name: str) -> None:
    reader = _reader(target)
    run = reader.find(name)
    steps = reader.story(run)
    clock = target.clock()
    out = console()
    out.print(f"[bold]Run {escape(run.name)}[/]: {run.kind} of {escape(run.model or '?')}")
    out.print(f"  execution {escape(run.arn)}")
    ended = f", ended {clock.wall_time(run.stopped)}" if run.stopped else ""
    out.print(f"  {_status(run.status)}, outcome {escape(run.outcome)}; started {clock.wall_time(run.started)}{ended}")
    out.print(f"  reason: {escape(run.reason or '-')}")
    out.print("[bold]Steps[/]")
    for step in steps:
        out.print(f"  {_step(step, clock)}")
    if run.detail:
        out.print("[bold]What it reported[/] (its notification)")
        out.print(escape(_pretty(run.detail)))
    out.print("[bold]Input[/]")
    out.print(escape(_pretty(run.input)))
    out.print(clock.label)


def _step(step: Step, clock: CloudClock) -> str:
    line = f"{clock.wall_time(step.at)}  {escape(step.state)}"
    if step.repeats > 1:
        line += f"  x{step.repeats} (the last at {clock.wall_time(step.until)})"
    if step.note:
        line += f"  {escape(step.note)}"
    return line


def _pretty(value: dict[str, Any]) -> str:
    return "\n".join(f"  {line}" for line in json.dumps(value, indent=2, default=str).splitlines())
