"""`shepherd monitor run <model>` and `shepherd monitor status <model>`: a model's data-drift monitor.

`run` starts the stack's monitor state machine by hand (as the model's schedule does); `status` reads what the
runs left in the data bucket (state.json, the latest reports, the baseline) through shepherd.aws.monitor_reports.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from shepherd.aws.runs import error_line
from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.events.names import execution_name

from shepherd_cli.cloud import CommandError, Target, connected
from shepherd_cli.output import console, note, package_label, package_parts, utc_time

if TYPE_CHECKING:  # the analyzer (numpy), imported where status uses it: every other command starts without it
    from shepherd.aws.monitor_reports import FeatureDrift, MonitorReports

MONITOR_OUTPUT = "MonitorStateMachineArn"
POLL_SECONDS = 2.0
# What a finished run's output says it did; the others checked nothing (the reason says why).
CHECKED, NO_DATA = "checked", "no_data"
EVIDENCE_ROWS = 10

monitor_app = typer.Typer(
    help="A model's data-drift monitor: run it now, or see drift per feature, its alert and retrain state.",
    no_args_is_help=True,
)
ModelArgument = Annotated[str, typer.Argument(help="The model: its folder name, models/<model>/shepherd.yaml.")]


def monitor_execution_name(model: str, now: datetime | None = None) -> str:
    """`manual-<model>-monitor-<UTC time>-<hash>`, by the rule that names every execution (a nonce: each distinct)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return execution_name(f"manual-{model}-monitor-{stamp}", model, stamp, secrets.token_hex(8))


def _reports(target: Target) -> MonitorReports:
    from shepherd.aws.monitor_reports import MonitorReports

    return MonitorReports(target.output("DataBucketName"), clients=target.client)


def _monitored_config(target: Target, reports: MonitorReports, model: str) -> ModelConfig:
    """The model's config, with monitoring on; else a clear error."""
    source = f"s3://{reports.bucket}/models/{model}/shepherd.yaml"
    text = reports.config_text(model)
    if text is None:
        raise CommandError(f"no model named {model} in {target.describe()}: {source} does not exist")
    try:
        config = load_config(text, source, model=model)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if not config.monitoring.enabled:
        raise CommandError(
            f"monitoring is not enabled for {model}: set monitoring.enabled (it needs endpoint.data_capture.enabled; "
            f"serverless endpoints capture no data) in models/{model}/shepherd.yaml"
        )
    return config


# ---------------------------------------------------------------- run


@monitor_app.command("run")
@connected(stack=True)
def monitor_run(
    target: Target,
    model: ModelArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end and print what it found.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up waiting after this many seconds.")] = 900.0,
) -> None:
    """Run a model's monitor now, as its schedule would: prints the execution ARN."""
    if MONITOR_OUTPUT not in target.outputs():
        raise CommandError(
            f"the outputs of stack {target.stack_name} have no {MONITOR_OUTPUT}: the stack predates the monitor "
            "(deploy the current template)"
        )
    machine = target.output(MONITOR_OUTPUT)
    _monitored_config(target, _reports(target), model)
    name = monitor_execution_name(model)
    sfn = target.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=machine, name=name, input=json.dumps({"model": model, "trigger": "manual"})
    )
    arn = started["executionArn"]
    typer.echo(arn)
    if not wait:
        note(f"started monitor run {name}; `shepherd monitor status {model}` shows what it found")
        return
    described = _wait(sfn, arn, timeout)
    _outcome(model, name, described)


def _wait(sfn: Any, arn: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = dict(sfn.describe_execution(executionArn=arn))
        if described.get("status") != "RUNNING":
            return described
        if time.monotonic() >= deadline:
            raise CommandError(f"{arn} still runs after {timeout:g} s; `shepherd monitor status` shows its report")
        time.sleep(POLL_SECONDS)


def _outcome(model: str, name: str, described: dict[str, Any]) -> None:
    """One line per fact of the finished run; exit code 1 when it failed or checked nothing."""
    status = str(described.get("status"))
    if status != "SUCCEEDED":
        why = error_line(described.get("error"), described.get("cause")) if described.get("error") else status
        typer.echo(f"error: monitor run {name} {status.lower()}: {why} ({described.get('executionArn')})", err=True)
        raise typer.Exit(1)
    try:
        result = json.loads(described.get("output") or "{}")
    except ValueError:
        result = {}
    outcome = str(result.get("status") or "?")
    out = console()
    if outcome not in (CHECKED, NO_DATA):
        typer.echo(f"error: monitor run {name} checked nothing ({outcome}): {result.get('reason', '')}", err=True)
        raise typer.Exit(1)
    unreadable = int(result.get("unreadable") or 0)  # captured requests it could not read: left out, said so
    left_out = f"{unreadable:,} captured requests unreadable, left out" if unreadable else ""
    if outcome == NO_DATA:
        reason = escape(str(result.get("reason", "no captured requests")))
        out.print(f"monitor run {escape(name)}: {reason}" + (f"; {left_out}" if left_out else ""))
        return
    out.print(
        f"monitor run {escape(name)}: checked {result.get('records', 0):,} captured requests of "
        f"{escape(str(result.get('endpoint', '')))} ({result.get('objects_read', 0)} capture files"
        + ("" if result.get("complete", True) else ", more left for the next run")
        + (f"; {left_out}" if left_out else "")
        + f"): {result.get('violations', 0)} Model Monitor violations"
    )
    if result.get("notify"):
        notification = result.get("notification") or {}
        out.print(f"  notified: {escape(str(notification.get('reason', '')))}")
    out.print(f"  report {escape(str(result.get('report', '')))}")
    note(f"`shepherd monitor status {model}` shows drift per feature and the alert")


# ---------------------------------------------------------------- status


@monitor_app.command("status")
@connected(stack=True)
def monitor_status(
    target: Target,
    model: ModelArgument,
    last: Annotated[int, typer.Option("--last", "-n", help="How many of the latest reports to list.")] = 6,
) -> None:
    """Drift per feature against its threshold, violations, the alert and retrain state, the capture checkpoint."""
    reports = _reports(target)
    config = _monitored_config(target, reports, model)
    endpoint = config.endpoint.name or model
    state = reports.state(model)
    if state is None:
        if not reports.baseline_versions(model):
            raise CommandError(
                f"no baseline yet for {model}: registration makes one from the training data (training."
                f"target_column names the column left out); nothing under {reports.baseline_root(model)}"
            )
        raise CommandError(f"no monitor runs yet for {model}: `shepherd monitor run {model}` starts one")
    latest = reports.report(state["last_report"]) if state.get("last_report") else {}
    alert = latest.get("alert.json") or {}
    version = (package_parts(str(alert.get("package") or state.get("package") or "")) or ("", ""))[1]
    baseline = reports.baseline(model, version) if version else None
    history = [
        (folder, reports.report(folder, ("alert.json",)).get("alert.json") or {})
        for folder in reports.report_folders(model, endpoint, last)
    ]
    clock = target.clock()

    out = console()
    monitoring = config.monitoring
    package = str(alert.get("package") or state.get("package") or "")
    out.print(
        f"[bold]Monitor of {escape(model)}[/]: endpoint {escape(endpoint)}, schedule {escape(monitoring.schedule)}, "
        f"champion {escape(package_label(package) or 'none yet')}"
    )
    out.print(
        f"  last run {utc_time(state.get('last_run'))}"
        + (f" ({alert.get('trigger')})" if alert.get("trigger") else "")
        + (f", report {escape(state['last_report'])}" if state.get("last_report") else ", no report yet")
    )
    if not latest:
        out.print("  no report yet: the runs so far found no captured requests (is the endpoint taking traffic?)")
    elif baseline is None:
        out.print(f"  [yellow]no baseline for {escape(package_label(package))}[/]: distances cannot be shown")
    if latest:
        from shepherd.aws.monitor_reports import feature_drift

        rows = feature_drift(
            latest.get("statistics.json") or {},
            latest.get("constraint_violations.json") or {},
            baseline[0] if baseline else None,
            baseline[1] if baseline else None,
            monitoring.monitoring_config,
        )
        out.print(_feature_table(rows, utc_time(alert.get("at"))))
    _reference_line(out, state.get("reference"), monitoring.reference)
    _alert_lines(out, state, alert, monitoring.alert.false_alarms_per_month)
    from shepherd.aws.monitor_reports import quality_summary

    if quality := quality_summary(alert.get("quality")):
        out.print(f"[bold]Quality[/]: {escape(quality)}")
    if len(history) > 1:
        out.print(_history_table(history))
    _checkpoint_line(out, state.get("capture") or {})
    _retrain_lines(out, state.get("retrain") or {}, monitoring.retrain)
    out.print(clock.label)


def _drift_cell(row: FeatureDrift) -> str:
    if row.distance is None:
        return "-"
    text = f"{row.distance:.3f}" + (" (p)" if row.p_value else "")
    return f"[red]{text}[/]" if row.drifted else text


def _feature_table(rows: list[FeatureDrift], at: str) -> Table:
    title = f"Drift per feature, run of {at} (distance to the baseline; red: past its threshold)"
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("Feature", "Kind", "Drift", "Threshold", "Completeness", "Violations"):
        table.add_column(column, overflow="fold")
    for row in sorted(rows, key=lambda r: (not r.drifted, -(r.distance or 0.0), r.name)):
        threshold = "-" if row.threshold is None else f"{'<' if row.p_value else '>'} {row.threshold:g}"
        table.add_row(
            escape(row.name),
            row.kind or "-",
            _drift_cell(row),
            threshold,
            f"{row.completeness:.1%}",
            escape(", ".join(row.violations)) or "-",
        )
    return table


def _reference_line(out: Any, used: dict[str, Any] | None, learning: Any) -> None:
    """Which reference the alert judged the last run against: the training data's or the one learnt from capture."""
    if not used:
        out.print("[bold]Reference[/]: none used yet (no run has judged an hour against a reference)")
        return
    if used.get("source") == "capture":
        hours = int(used.get("hours") or 0)
        out.print(
            f"[bold]Reference[/]: learnt from capture, {hours:,} h ({hours / 24:.1f} days) of history from "
            f"{utc_time(used.get('from'))} to {utc_time(used.get('to'))}, a {used.get('cycle_hours', '?')}-h cycle; "
            f"learnt {utc_time(used.get('learnt_at'))}"
            + (f"; {int(used['left_out']):,} h left out as drift" if used.get("left_out") else "")
        )
        return
    line = f"[bold]Reference[/]: the training data's ({escape(str(used.get('uri', '?')))})"
    progress = used.get("learning")
    if not learning.learn:
        line += "; learning from capture is off (monitoring.reference.learn)"
    elif progress:
        line += (
            f"; learning from capture: {int(progress.get('hours', 0)):,} of {int(progress.get('needed', 0)):,} h"
            f" ({learning.history_days} days)" + (f", {escape(str(progress['note']))}" if progress.get("note") else "")
        )
    out.print(line)


def _alert_lines(out: Any, state: dict[str, Any], alert: dict[str, Any], rate: float) -> None:
    held = state.get("alert") or {}
    decision = alert.get("decision") or {}
    episodes = int(held.get("episodes", 0))
    budget = f"at most {rate:g} false alert(s) a month"
    if held.get("episode_open"):
        since = (state.get("retrain") or {}).get("drift_since")
        out.print(
            "[bold]Alert[/]: [red]drift episode open[/]"
            + (f" since {utc_time(since)}" if since else "")
            + f" on {escape(', '.join(held.get('crossed') or []) or '?')}; {episodes} episode(s) so far ({budget})"
        )
    else:
        out.print(f"[bold]Alert[/]: no open episode; {episodes} episode(s) so far ({budget})")
    if decision.get("reason"):
        out.print(f"  last decision ({utc_time(decision.get('hour'))}): {escape(str(decision['reason']))}")
    strongest: dict[tuple[str, str], dict[str, Any]] = {}
    for item in decision.get("evidence") or []:  # strongest first; one row per feature and test, whatever its size
        strongest.setdefault((str(item.get("feature")), str(item.get("test"))), item)
    evidence = list(strongest.values())[:EVIDENCE_ROWS]
    if evidence:
        table = Table(title="Evidence (charts over their threshold)", title_justify="left", show_edge=False)
        for column in ("Feature", "Test", "Statistic", "Threshold", "Batch score"):
            table.add_column(column)
        for item in evidence:
            table.add_row(
                escape(str(item.get("feature"))),
                escape(str(item.get("test"))),
                f"{float(item.get('statistic', 0)):.2f}",
                f"{float(item.get('threshold', 0)):.2f}",
                f"{float(item.get('score', 0)):.2f}",
            )
        out.print(table)


def _history_table(history: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=f"Last {len(history)} reports", title_justify="left", show_edge=False)
    for column in ("Run", "Trigger", "Violations", "Alert", "Report"):
        table.add_column(column, overflow="fold")
    for folder, document in reversed(history):
        decision = document.get("decision") or {}
        alert = "opened" if decision.get("alert") else "open" if decision.get("drifting") else "-"
        table.add_row(
            utc_time(document.get("at")),
            str(document.get("trigger") or "-"),
            str(document.get("violations", "-")),
            f"{alert}: {escape(str(decision.get('reason') or ''))}" if decision else "-",
            escape(folder),
        )
    return table


def _checkpoint_line(out: Any, capture: dict[str, Any]) -> None:
    if "closed" not in capture:
        out.print("[bold]Capture checkpoint[/]: none yet")
        return
    closed = datetime.fromtimestamp(float(capture["closed"]), UTC)
    read = capture.get("read") or {}
    files = sum(len(names) for names in read.values())
    out.print(
        f"[bold]Capture checkpoint[/]: every capture hour before {utc_time(closed)} read; "
        f"{files} file(s) read in {len(read)} open hour folder(s)"
    )


def _retrain_lines(out: Any, held: dict[str, Any], policy: Any) -> None:
    if not policy.on:
        out.print("[bold]Retrain[/]: off (monitoring.retrain.on is empty)")
        return
    line = (
        f"[bold]Retrain[/]: on {', '.join(policy.on)} sustained {policy.sustained_hours} h, "
        f"cooldown {policy.cooldown_hours} h"
    )
    if held.get("drift_since"):
        line += f"; drifting since {utc_time(held['drift_since'])}"
    out.print(line)
    last = held.get("last_trigger")
    if not last:
        out.print("  no retrain started yet")
        return
    until = datetime.fromisoformat(last) + timedelta(hours=policy.cooldown_hours)
    trigger = (held.get("triggers") or [{}])[-1]
    out.print(
        f"  last retrain {utc_time(last)}: {escape(str(trigger.get('execution_name', '?')))} on "
        f"{escape(str(trigger.get('dataset', '?')))}; cooldown until {utc_time(until)}"
    )
