"""`shepherd status <endpoint>`: what an endpoint serves, its champion, lock, pause and abort, its latest records,
and what its last rollouts cost (docs/CLI.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from shepherd.aws.errors import code_of, message_of
from shepherd.rollout.ports import ABORT, PAUSED

from shepherd_cli.cloud import CommandError, Target, connected
from shepherd_cli.output import console, epoch_time, package_label, utc_time


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pair(current: Any, desired: Any) -> str:
    if desired is None or desired == current:
        return _number(current)
    return f"{_number(current)} → {_number(desired)}"


def _stage(entry: dict[str, Any]) -> str:
    stage = str(entry.get("stage") or "")
    if stage == "ab" and entry.get("weight") is not None:
        return f"ab {_number(entry['weight'])}%"
    return stage


def _explanation(entry: dict[str, Any]) -> str:
    for key in ("explanation", "reason", "strategy"):
        if entry.get(key):
            return str(entry[key])
    if entry.get("problems"):
        return "; ".join(str(p) for p in entry["problems"])
    if isinstance(entry.get("error"), dict):
        error = entry["error"]
        return f"{error.get('Error', 'error')}: {error.get('Cause', '')}"[:300]
    if isinstance(entry.get("champion"), dict):
        return f"champion {entry['champion'].get('model', '')}"
    return str(entry.get("config") or "")


def _describe_endpoint(target: Target, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return dict(target.client("sagemaker").describe_endpoint(EndpointName=name))
    except ClientError as exc:
        if code_of(exc) == "ValidationException" and "Could not find endpoint" in message_of(exc):
            return None
        raise


def _variant_specs(target: Target, config_name: str | None) -> dict[str, dict[str, Any]]:
    from botocore.exceptions import ClientError

    if not config_name:
        return {}
    try:
        config = target.client("sagemaker").describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError:
        return {}  # a config deleted under a live endpoint: the endpoint's own description still stands
    variants = config.get("ProductionVariants", []) + config.get("ShadowProductionVariants", [])
    return {v["VariantName"]: v for v in variants}


def _variant_table(title: str, variants: list[dict[str, Any]], specs: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("Variant", "Model", "Instance type", "Weight", "Instances"):
        table.add_column(column)
    for variant in variants:
        spec = specs.get(variant["VariantName"], {})
        serverless = variant.get("CurrentServerlessConfig") or spec.get("ServerlessConfig")
        kind = (
            f"serverless {serverless.get('MemorySizeInMB', '?')} MB"
            if serverless
            else str(spec.get("InstanceType") or "-")
        )
        table.add_row(
            variant["VariantName"],
            str(spec.get("ModelName") or "-"),
            kind,
            _pair(variant.get("CurrentWeight"), variant.get("DesiredWeight")),
            _pair(variant.get("CurrentInstanceCount"), variant.get("DesiredInstanceCount")),
        )
    return table


def _records_table(records: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=f"Last {len(records)} rollout records", title_justify="left", show_edge=False)
    for column in ("Time", "Package", "Event", "Stage", "Verdict", "Explanation"):
        table.add_column(column, overflow="fold")
    for at, entry in records:
        verdict = str(entry.get("verdict") or "")
        style = {"PROMOTE": "green", "ROLLBACK": "red", "INCONCLUSIVE": "yellow"}.get(verdict, "")
        table.add_row(
            utc_time(at),
            package_label(entry.get("package")),
            str(entry.get("event") or ""),
            _stage(entry),
            f"[{style}]{verdict}[/]" if style else verdict,
            _explanation(entry),
        )
    return table


COSTED_ROLLOUTS = 3  # the last rollouts whose cost `status` shows
COST_LOOKBACK = 200  # records searched for them


def _usd(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, int | float) else "unknown"


def _instances(stage: dict[str, Any]) -> str:
    fleets = [f for f in stage.get("instances") or [] if isinstance(f, dict)]
    return ", ".join(f"{f.get('instance_count')} x {f.get('instance_type')} ({f.get('role')})" for f in fleets) or "-"


def costs_table(records: list[tuple[str, dict[str, Any]]], rollouts: int = COSTED_ROLLOUTS) -> Table | None:
    """The last ``rollouts`` ended rollouts' cost, stage by stage (their ending records' ``cost``); None if none."""
    ended = [(at, entry) for at, entry in records if isinstance(entry.get("cost"), dict)][-rollouts:]
    if not ended:
        return None
    table = Table(title="Rollout costs (estimates at list prices)", title_justify="left", show_edge=False)
    for column in ("Ended", "Package", "Stage", "Minutes", "Added instances", "Instance-hours", "USD", "Live requests"):
        table.add_column(column, overflow="fold")
    for at, entry in ended:
        cost = entry["cost"]
        label = f"{package_label(entry.get('package'))} {entry.get('event', '')}"
        for stage in cost.get("stages") or []:
            if not isinstance(stage, dict):
                continue
            table.add_row(
                utc_time(at),
                label,
                str(stage.get("stage", "")),
                _number(stage.get("minutes")),
                _instances(stage),
                f"{float(stage.get('instance_hours') or 0):.2f}",
                _usd(stage.get("usd")),
                f"{int(stage.get('live_requests') or 0):,}",
            )
        table.add_row(
            utc_time(at),
            label,
            "[bold]total[/]",
            "",
            f"prices as of {cost.get('prices_as_of', '?')}, {cost.get('region') or '?'}",
            f"[bold]{float(cost.get('instance_hours') or 0):.2f}[/]",
            f"[bold]{_usd(cost.get('usd'))}[/]",
            f"[bold]{int(entry.get('live_requests') or 0):,}[/]",
            end_section=True,
        )
        for reason in cost.get("unknown") or []:
            table.add_row("", "", "", "", f"[yellow]USD unknown: {reason}[/]", "", "", "")
    return table


@connected(stack=True)
def status(
    target: Target,
    endpoint: Annotated[str, typer.Argument(help="The SageMaker endpoint's name.")],
    last: Annotated[int, typer.Option("--last", "-n", help="How many of the latest rollout records to show.")] = 10,
) -> None:
    """Show an endpoint: variants and weights, champion, rollout lock, pause and abort, the latest records, and what
    its last rollouts cost, stage by stage."""
    live = _describe_endpoint(target, endpoint)
    champion = target.rollouts().champion(endpoint)
    lock = target.rollouts().lock_of(endpoint)
    paused = target.rollouts().flag(endpoint, PAUSED)
    aborting = target.rollouts().flag(endpoint, ABORT)
    records = target.rollouts().latest_records(endpoint, last)
    if live is None and not (champion or lock or paused or aborting or records):
        raise CommandError(f"no endpoint named {endpoint} in {target.describe()}, and no rollout recorded for it")
    specs = _variant_specs(target, live.get("EndpointConfigName")) if live else {}
    clock = target.clock()

    out = console()
    if live is None:
        out.print(f"[bold]Endpoint {endpoint}[/]: not deployed")
    else:
        line = f"[bold]Endpoint {endpoint}[/]: {live.get('EndpointStatus')}  config {live.get('EndpointConfigName')}"
        out.print(line)
        if live.get("FailureReason"):
            out.print(f"  failure: {live['FailureReason']}")
        out.print(
            f"  created {clock.wall_time(live.get('CreationTime'))}, "
            f"last modified {clock.wall_time(live.get('LastModifiedTime'))}"
        )
        out.print(_variant_table("Production variants", live.get("ProductionVariants", []), specs))
        if live.get("ShadowProductionVariants"):
            out.print(_variant_table("Shadow variants", live["ShadowProductionVariants"], specs))
    if champion:
        out.print(
            f"[bold]Champion[/]: {package_label(champion.get('package'))}  model {champion.get('model', '')}, "
            f"variant {champion.get('variant', '')}, last good config {champion.get('config', '')}"
        )
        out.print(f"  package {champion.get('package', '')}")
    else:
        out.print("[bold]Champion[/]: none recorded (no rollout has promoted a package here)")
    if lock:
        execution = lock.get("execution")
        continued = f", now in execution {execution}" if execution and execution != lock.get("owner") else ""
        out.print(
            f"[bold]Rollout lock[/]: held by {lock.get('owner', '?')} ({package_label(lock.get('package'))}"
            f"{continued}), lease until {epoch_time(lock.get('lease_until'))}"
        )
    else:
        out.print("[bold]Rollout lock[/]: free (no rollout running)")
    if paused:
        out.print(
            f"[bold]Rollouts[/]: [yellow]paused[/] by {paused.get('by', '?')} ({paused.get('reason', '')})"
            + (f" since {utc_time(paused['at'])}" if paused.get("at") else "")
            + f"; `shepherd rollout resume {endpoint}` lifts it"
        )
    else:
        out.print("[bold]Rollouts[/]: automatic (an approved package rolls out)")
    if aborting:
        out.print(
            f"[bold]Abort[/]: [red]requested[/] by {aborting.get('by', '?')} ({aborting.get('reason', '')}): "
            "the running rollout rolls back at its next judge call"
        )
    if records:
        out.print(_records_table(records))
    else:
        out.print("No rollout records.")
    costs = costs_table(target.rollouts().latest_records(endpoint, COST_LOOKBACK)) if records else None
    if costs is not None:
        out.print(costs)
    out.print(clock.label)
