"""The `shepherd` command."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from shepherd.aws.clients import region as environment_region

from shepherd_cli.cloud import LOCAL_CREDENTIALS, LocalEndpointUrlOption, local_endpoint
from shepherd_cli.faults import fault_app
from shepherd_cli.monitor import monitor_app
from shepherd_cli.rollouts import approve, rollout_app
from shepherd_cli.runs import runs
from shepherd_cli.status import status
from shepherd_cli.teardown import teardown


def _flags_take_no_value() -> None:
    """typer 0.29's rich help labels every flag (--yes, --help) <bool>, as if it took a value; its plain help
    does not. Show no type for flags (tests/unit/test_cli_usage.py holds it)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010 - a method, replaced on purpose


_flags_take_no_value()
app = typer.Typer(
    help="Shepherd: SageMaker model lifecycle — train, register, shadow → A/B → full rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
local_app = typer.Typer(
    help="The Docker-free local cloud that runs template.yaml on this machine.", no_args_is_help=True
)
app.command("status")(status)
app.add_typer(rollout_app, name="rollout")
app.command("approve")(approve)
app.command("teardown")(teardown)
app.command("runs")(runs)
app.add_typer(monitor_app, name="monitor")
app.add_typer(local_app, name="local")
local_app.add_typer(fault_app, name="fault")  # shepherd local fault add|list|clear
console = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _need_local_cloud() -> None:
    """The local cloud is the `local` extra: say how to get it, not a traceback."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        _fail("the local cloud is not installed: pip install 'shepherd-mlops[local]'")


def _parse_params(values: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param expects Key=Value, got {item!r}")
        params[key] = value
    return params


@local_app.command("up")
def local_up(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to serve on (0 picks a free one).")] = 4566,
    template: Annotated[Path, typer.Option(help="SAM template to deploy.")] = Path("template.yaml"),
    param: Annotated[
        list[str] | None, typer.Option(metavar="KEY=VALUE", help="Template parameter override (repeatable).")
    ] = None,
    time_scale: Annotated[float, typer.Option(help="Run the virtual clock N times faster than wall time.")] = 1.0,
    stack_name: Annotated[str, typer.Option(help="Stack name used for physical resource names.")] = "shepherd",
    admin_api: Annotated[bool, typer.Option(help="Open moto's /moto-api reset/admin API (closed by default).")] = False,
    quiet: Annotated[bool, typer.Option(help="Do not echo Lambda logs to the console.")] = False,
    iam: Annotated[
        str,
        typer.Option(
            help="on: the cloud's own principals (functions, state machines, SageMaker roles) are held to their "
            "IAM policies; off: every decision is logged but none refused (for debugging)."
        ),
    ] = "on",
) -> None:
    """Start the local cloud on 127.0.0.1, deploy the template, and serve until Ctrl-C."""
    _need_local_cloud()
    from localcloud.server import DEFAULT_SAGEMAKER_ROLE, LocalCloud
    from localcloud.template import TemplateError

    if time_scale <= 0:
        _fail(f"--time-scale must be > 0, got {time_scale}")
    if iam not in ("on", "off"):
        _fail(f"--iam is on or off, got {iam!r}")
    params = _parse_params(param or [])
    cloud = LocalCloud(port=port, time_scale=time_scale, admin_api=admin_api, echo_logs=not quiet, iam=iam == "on")
    try:
        cloud.start()
    except OSError as exc:
        _fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        outputs = cloud.deploy(template, params, stack_name)
    except TemplateError as exc:
        cloud.stop()
        _fail(str(exc))
    Console().print(f"[bold green]Shepherd local cloud[/] ready at {cloud.endpoint} (time scale {time_scale:g}x)")
    lines = [
        f"IAM is {iam} for the cloud's own principals; decisions are logged to {cloud.authorizer.log_path}.",
        f"SageMaker execution role for the SDK: {DEFAULT_SAGEMAKER_ROLE}",
        "Use it from another shell with:",
    ]
    lines += [f"  export {key}={value}" for key, value in cloud.exports().items()]
    lines += ["Outputs:"] + [f"  {key} = {value}" for key, value in outputs.items()]
    lines += [
        f"Outputs written to {cloud.state_dir / 'outputs.json'}. `shepherd local trigger` lists the schedule rules "
        "and fires one now. Ctrl-C stops everything."
    ]
    typer.echo("\n".join(lines))
    sys.stdout.flush()
    try:
        stopping.wait()
    finally:
        console.print("stopping local cloud…")
        cloud.stop()


@local_app.command("trigger")
def local_trigger(
    rule: Annotated[
        str | None,
        typer.Argument(help="The schedule rule to fire once; without it, the rules there are.", show_default=False),
    ] = None,
    endpoint_url: LocalEndpointUrlOption = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", hidden=True, help="Deprecated: --endpoint-url.")] = None,
) -> None:
    """Fire a schedule rule once, now, as if its time had come; without a rule, list the rules there are."""
    import urllib.error
    import urllib.request

    url = local_endpoint(endpoint_url or endpoint)
    if rule is None:
        rules = _schedule_rules(url)
        typer.echo("\n".join(rules) if rules else f"no schedule rules at {url}")
        return
    request = urllib.request.Request(  # noqa: S310 - the local endpoint, http by design
        f"{url}/_shepherd/trigger/{quote(rule, safe='')}", method="POST", data=b""
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 # nosec B310 # the user's own endpoint URL
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("message", str(exc))
        rules = _schedule_rules(url) if exc.code == 404 else []
        _fail(message + (f"; the schedule rules there: {', '.join(rules)}" if rules else ""))
    except urllib.error.URLError as exc:
        _fail(
            f"cannot reach the local cloud at {url}: {exc.reason} (is `shepherd local up` running? give the "
            "endpoint it printed with --endpoint-url, or export AWS_ENDPOINT_URL as it says)"
        )
    Console().print(f"fired {rule}: {body['targets']} target(s)")


def _schedule_rules(endpoint_url: str) -> list[str]:
    """The enabled schedule rules (and EventBridge Scheduler schedules) of the local cloud, by name."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    key, secret = LOCAL_CREDENTIALS
    session = boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=environment_region())
    names: list[str] = []
    try:
        events = session.client("events", endpoint_url=endpoint_url)
        for page in events.get_paginator("list_rules").paginate():
            names += [
                r["Name"] for r in page.get("Rules", []) if r.get("ScheduleExpression") and r.get("State") == "ENABLED"
            ]
        scheduler = session.client("scheduler", endpoint_url=endpoint_url)
        for page in scheduler.get_paginator("list_schedules").paginate(State="ENABLED"):
            names += [schedule["Name"] for schedule in page.get("Schedules", [])]
    except (BotoCoreError, ClientError) as exc:
        _fail(f"cannot list the schedule rules at {endpoint_url}: {exc}")
    return sorted(names)


@app.command("demo")
def demo(
    quick: Annotated[
        bool, typer.Option(help="Less data and one A/B step: about a minute (what the e2e test runs).")
    ] = False,
    out: Annotated[Path, typer.Option(help="Where summary.json and report.html go.")] = Path("demo-output"),
) -> None:
    """The whole story on the local cloud: train, deploy, shadow -> A/B -> full, a faulty model rolled back, batch."""
    _need_local_cloud()
    from localcloud.demo import run_demo
    from localcloud.demo_report import summary_table

    try:
        summary = run_demo(quick, out, Console())
    except Exception as exc:  # the story failed: say where, in one line, and keep the exit code honest
        _fail(f"the demo stopped: {type(exc).__name__}: {exc}")
    traffic = summary["traffic"]
    Console().print(summary_table(summary, out))
    problems = []
    refusals = summary.get("iam", {}).get("refusals") or []
    if refusals:
        first = refusals[0]
        problems.append(
            f"IAM refused {len(refusals)} request(s) of the stack's roles, first {first['action']} on "
            f"{first['resource']} by {first['principal']} (log: {summary['iam']['log']})"
        )
    if traffic["failed"]:
        problems.append(f"{traffic['failed']} requests failed because of a rollout: {traffic['failures'][:3]}")
    ended = {r["version"]: r for r in summary["rollouts"]}
    for version, expected, what in ((2, "promoted", "the better candidate"), (3, "rolled_back", "the faulty one")):
        rollout = ended.get(version)
        if rollout is None:
            problems.append(f"{what} (v{version}) never started a rollout")
        elif rollout["outcome"] != expected:
            stage = (rollout.get("stages") or ["its first stage"])[-1]
            outcome = rollout["outcome"].replace("_", " ")
            problems.append(f"{what} (v{version}) ended {outcome} in {stage}: {rollout.get('reason')}")
    if problems:
        _fail("; ".join(problems) + f" (see {out / 'report.html'})")


def main() -> None:
    app()
