"""The user-facing commands: `status`, `runs`, `rollout start|abort|pause|resume`, `approve`, `teardown`.

They talk to the local cloud and, with `--profile`/`--region`, to AWS alike: the same boto3 calls,
only the endpoint and the credentials differ. Stack resources (the Rollout state machine, the
rollouts table) come from the stack's outputs: CloudFormation DescribeStacks on AWS, the
`outputs.json` that `shepherd local up` writes on the local cloud, or `--outputs PATH`.

The rollouts table is the application's store, `shepherd.aws.rollouts.RolloutTable`, given the
CLI's clients; execution names follow the application's rule (`shepherd.events.names`).

Times are shown on the clock of the cloud they come from: the local cloud's virtual clock (it serves it on
/_shepherd/health; its services stamp wall-clock times, converted here), or UTC on AWS; each output says which.

Every failure is one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from shepherd.aws.clients import region as environment_region
from shepherd.aws.errors import code_of, message_of
from shepherd.aws.rollouts import RolloutTable
from shepherd.config import ConfigError, check_overrides
from shepherd.errors import ShepherdError
from shepherd.events.names import execution_name
from shepherd.rollout.ports import ABORT, PAUSED

LOCAL_OUTPUTS = Path(".shepherd/local/outputs.json")
LOCAL_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_CREDENTIALS = ("shepherd-local", "shepherd-local")
MODEL_TAG = "shepherd:model"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/(?P<group>[^/]+)/(?P<version>\d+)$"
)
_PACKAGE_SHORT = re.compile(r"^(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>\d+)$")
PACKAGE_EXAMPLE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"
# Not on a terminal (a pipe, a file): lines as long as they need, so that names are never split.
UNWRAPPED_WIDTH = 4096


def _out() -> Console:
    """Made per call, so that the width follows $COLUMNS and the current stdout."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=UNWRAPPED_WIDTH if wide else None)


def _note(message: str) -> None:
    """Guidance for a human, on stderr: stdout stays what scripts read."""
    Console(stderr=True, highlight=False).print(message)


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


# ---------------------------------------------------------------- where the commands talk to

Connection = "Connection (local cloud or AWS)"
EndpointUrlOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="AWS API endpoint, e.g. the local cloud's. Default: $AWS_ENDPOINT_URL; else, without --profile, "
        f"{LOCAL_ENDPOINT} when {LOCAL_OUTPUTS} exists; else AWS.",
        rich_help_panel=Connection,
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(help="AWS profile: talk to AWS with its credentials.", rich_help_panel=Connection),
]
RegionOption = Annotated[
    str | None,
    typer.Option(help="AWS region (default: the profile's or $AWS_REGION).", rich_help_panel=Connection),
]
StackNameOption = Annotated[
    str,
    typer.Option(help="The Shepherd stack whose outputs name the state machine and table.", rich_help_panel=Connection),
]
OutputsOption = Annotated[
    Path | None,
    typer.Option(
        "--outputs",
        help=f"JSON file of the stack's outputs (default on the local cloud: {LOCAL_OUTPUTS}).",
        rich_help_panel=Connection,
        show_default=False,
    ),
]


@dataclass
class Target:
    """One cloud (local or AWS), its clients, and the outputs of the Shepherd stack in it."""

    endpoint_url: str | None
    profile: str | None
    region: str | None
    stack_name: str = "shepherd"
    outputs_path: Path | None = None
    _session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _outputs: dict[str, str] | None = None
    _rollouts: RolloutTable | None = None
    _clock: CloudClock | None = None
    implicit_aws: bool = False

    @classmethod
    def resolve(
        cls,
        endpoint_url: str | None,
        profile: str | None,
        region: str | None,
        stack_name: str = "shepherd",
        outputs: Path | None = None,
    ) -> Target:
        if endpoint_url is None and profile is None:
            endpoint_url = os.environ.get("AWS_ENDPOINT_URL") or (LOCAL_ENDPOINT if LOCAL_OUTPUTS.exists() else None)
        target = cls(endpoint_url or None, profile, region, stack_name, outputs)
        target.implicit_aws = endpoint_url is None and profile is None
        return target

    def looked_for(self) -> str:
        """Why this talks to AWS when nobody said so: said where a failure shows."""
        return (
            f"(no {LOCAL_OUTPUTS} in {Path.cwd()}, no --endpoint-url, no $AWS_ENDPOINT_URL: so this tried AWS; "
            "for the local cloud run in the folder where `shepherd local up` runs, or give --endpoint-url)"
        )

    @property
    def local(self) -> bool:
        """An explicit endpoint without a profile: the local cloud (any credentials do)."""
        return self.endpoint_url is not None and self.profile is None

    def describe(self) -> str:
        if self.local:
            return f"the local cloud at {self.endpoint_url}"
        where = f"AWS {self.session().region_name}"
        where += f" (profile {self.profile})" if self.profile else ""
        return where + (f" via {self.endpoint_url}" if self.endpoint_url else "")

    def session(self) -> Any:
        if self._session is None:
            import boto3

            region = self.region or (environment_region() if self.local else None)
            if self.local and not os.environ.get("AWS_ACCESS_KEY_ID"):
                key, secret = LOCAL_CREDENTIALS
                self._session = boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=region)
            else:
                self._session = boto3.Session(profile_name=self.profile, region_name=region)
            if not self._session.region_name:
                raise CommandError("no AWS region: give --region, or set AWS_REGION or a region in the profile")
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                # --profile without --endpoint-url means AWS, even with $AWS_ENDPOINT_URL set for the local cloud.
                ignore_configured_endpoint_urls=self.endpoint_url is None and "AWS_ENDPOINT_URL" in os.environ,
            )
            self._clients[service] = self.session().client(service, endpoint_url=self.endpoint_url, config=config)
        return self._clients[service]

    def clock(self) -> CloudClock:
        """How this cloud's times read: the local cloud's virtual clock, or UTC on AWS."""
        if self._clock is None:
            spec = (_health(str(self.endpoint_url)) or {}).get("clock") if self.local else None
            self._clock = CloudClock.of_local(str(spec)) if self.local else CloudClock()
        return self._clock

    # ------------------------------------------------------------ stack outputs

    def outputs(self) -> dict[str, str]:
        if self._outputs is None:
            self._outputs = self._load_outputs()
        return self._outputs

    def output(self, key: str) -> str:
        value = self.outputs().get(key)
        if not value:
            raise CommandError(f"the outputs of stack {self.stack_name} have no {key}: is it a Shepherd stack?")
        return value

    def _load_outputs(self) -> dict[str, str]:
        if self.outputs_path is not None:
            return _read_outputs(self.outputs_path)
        if self.local:
            if LOCAL_OUTPUTS.exists():
                return _read_outputs(LOCAL_OUTPUTS)
            served = _served_outputs(str(self.endpoint_url))
            if served:
                return served
            raise CommandError(
                f"no stack outputs: {LOCAL_OUTPUTS} does not exist here and {self.endpoint_url} did not serve them; "
                "run `shepherd local up` in this directory or give --outputs PATH"
            )
        from botocore.exceptions import ClientError

        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in message_of(exc):
                raise CommandError(
                    f"no stack {self.stack_name} in {self.describe()}: give --stack-name, or --outputs PATH"
                ) from None
            raise
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}

    def rollouts(self) -> RolloutTable:
        """The stack's rollouts table, read and written through this target's clients."""
        if self._rollouts is None:
            self._rollouts = RolloutTable(table=self.output("RolloutsTableName"), clients=self.client)
        return self._rollouts


def _read_outputs(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read the stack outputs {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CommandError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path} is not a JSON object of stack outputs")
    return {str(k): str(v) for k, v in data.items()}


def _health(endpoint_url: str) -> dict[str, Any] | None:
    """The local cloud's /_shepherd/health: its stack's outputs and its virtual clock; None if it does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{endpoint_url.rstrip('/')}/_shepherd/health", timeout=5) as response:  # noqa: S310 # nosec B310 # the user's own --endpoint-url
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return health if isinstance(health, dict) else None


def _served_outputs(endpoint_url: str) -> dict[str, str] | None:
    """The local cloud serves the outputs of its deployed stack on /_shepherd/health."""
    outputs = (_health(endpoint_url) or {}).get("outputs")
    return {str(k): str(v) for k, v in outputs.items()} if isinstance(outputs, dict) and outputs else None


@dataclass(frozen=True)
class CloudClock:
    """The clock a cloud's times are shown on. AWS: the wall clock, in UTC. The local cloud: its virtual clock
    (`--time-scale`), on which rollout records and leases are stamped; its services' own times (creation,
    execution start) are wall-clock and are moved onto it."""

    label: str = "times: UTC (wall clock)"
    virtual: float | None = None
    wall: float = 0.0
    scale: float = 1.0

    @classmethod
    def of_local(cls, spec: str | None) -> CloudClock:
        """From the local cloud's `<virtual epoch>,<wall epoch>,<scale>`; the wall clock, said so, if it gave none."""
        try:
            virtual, wall, scale = (float(part) for part in str(spec or "").split(","))
        except ValueError:
            return cls("times: UTC, wall clock (the local cloud did not say its virtual clock: records may differ)")
        pace = "as fast as wall time" if scale == 1 else f"{scale:g}x wall time"
        return cls(f"times: local cloud clock (virtual, {pace}), UTC", virtual, wall, scale)

    def now(self) -> datetime:
        return self.from_wall(datetime.now(UTC))

    def from_wall(self, value: datetime) -> datetime:
        """A wall-clock time as the cloud's clock read it then."""
        if self.virtual is None:
            return value.astimezone(UTC)
        return datetime.fromtimestamp(self.virtual + (value.timestamp() - self.wall) * self.scale, UTC)

    def wall_time(self, value: Any) -> str:
        """A time a service stamped on the wall clock (SageMaker's CreationTime, an execution's startDate)."""
        moment = _moment(value)
        return _time(self.from_wall(moment)) if moment is not None else _time(value)


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value or ""))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _errors(target: Target | None = None) -> Iterator[None]:
    """Turn every expected failure (ours, AWS's, the network's) into one line and exit code 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except CommandError as exc:
        _fail(str(exc) + _hint(target))
    except ShepherdError as exc:
        # RolloutTable names a failed call in the domain's words; say it as for the CLI's own calls.
        cause = exc.__cause__
        failure = _aws_failure(cause, target) if isinstance(cause, ClientError | BotoCoreError) else str(exc)
        _fail(failure + _hint(target))
    except (ClientError, BotoCoreError) as exc:
        _fail(_aws_failure(exc, target) + _hint(target))


def _hint(target: Target | None) -> str:
    return f" {target.looked_for()}" if target is not None and target.implicit_aws else ""


def _aws_failure(exc: Exception, target: Target | None) -> str:
    """A failed AWS call, or a failure to reach AWS, in one line."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        operation = getattr(exc, "operation_name", "") or "request"
        return f"{operation} failed: {code_of(exc)}: {message_of(exc)}"
    if isinstance(exc, EndpointConnectionError):
        hint = ": is `shepherd local up` running?" if target is not None and target.local else ""
        return f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the endpoint')}{hint}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: give --profile, or use the local cloud with --endpoint-url"
    return str(exc)


def _caller(target: Target) -> str:
    """Who sends a signal: the AWS identity, or the local user on the local cloud."""
    user = getpass.getuser()
    if target.local:
        return user
    try:
        return str(target.client("sts").get_caller_identity()["Arn"])
    except Exception:
        return user


# ---------------------------------------------------------------- formatting


def _now_iso(target: Target) -> str:
    """Now on the target's clock: flags are stamped as the rollouts that read them stamp their records."""
    return target.clock().now().isoformat(timespec="seconds")


def package_parts(arn: str) -> tuple[str, str] | None:
    match = _PACKAGE_ARN.match(arn or "")
    return (match["group"], match["version"]) if match else None


def resolve_package(target: Target, given: str) -> str:
    """A versioned model package ARN, or `<group>/<version>` looked up in the registry; else a clear error."""
    if package_parts(given):
        return given
    short = _PACKAGE_SHORT.match(given or "")
    if short is None:
        raise CommandError(
            f"{given!r} is not a model package: give its ARN (arn:aws:sagemaker:<region>:<account>:model-package/"
            f"<group>/<version>, e.g. {PACKAGE_EXAMPLE}) or <group>/<version> (e.g. churn/2)"
        )
    group, version = short["group"], int(short["version"])
    pages = target.client("sagemaker").get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
    for page in pages:
        for package in page.get("ModelPackageSummaryList", []):
            if package.get("ModelPackageVersion") == version:
                return str(package["ModelPackageArn"])
    raise CommandError(
        f"no version {version} in model package group {group} in {target.describe()} "
        f"(give a package ARN, e.g. {PACKAGE_EXAMPLE}, or <group>/<version> of a registered one)"
    )


def _package_label(arn: str | None) -> str:
    if not arn:
        return ""
    parts = package_parts(arn)
    return f"{parts[0]} v{parts[1]}" if parts else arn


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value or "")
    try:
        return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def _epoch(value: str | None) -> str:
    try:
        return datetime.fromtimestamp(float(value or ""), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value or "")


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


# ---------------------------------------------------------------- status


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
            _time(at),
            _package_label(entry.get("package")),
            str(entry.get("event") or ""),
            _stage(entry),
            f"[{style}]{verdict}[/]" if style else verdict,
            _explanation(entry),
        )
    return table


def status(
    endpoint: Annotated[str, typer.Argument(help="The SageMaker endpoint's name.")],
    last: Annotated[int, typer.Option("--last", "-n", help="How many of the latest rollout records to show.")] = 10,
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    stack_name: StackNameOption = "shepherd",
    outputs: OutputsOption = None,
) -> None:
    """Show an endpoint: variants and weights, champion, rollout lock, pause and abort, the latest records."""
    target = Target.resolve(endpoint_url, profile, region, stack_name, outputs)
    with _errors(target):
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

    out = _out()
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
            f"[bold]Champion[/]: {_package_label(champion.get('package'))}  model {champion.get('model', '')}, "
            f"variant {champion.get('variant', '')}, last good config {champion.get('config', '')}"
        )
        out.print(f"  package {champion.get('package', '')}")
    else:
        out.print("[bold]Champion[/]: none recorded (no rollout has promoted a package here)")
    if lock:
        execution = lock.get("execution")
        continued = f", now in execution {execution}" if execution and execution != lock.get("owner") else ""
        out.print(
            f"[bold]Rollout lock[/]: held by {lock.get('owner', '?')} ({_package_label(lock.get('package'))}"
            f"{continued}), lease until {_epoch(lock.get('lease_until'))}"
        )
    else:
        out.print("[bold]Rollout lock[/]: free (no rollout running)")
    if paused:
        out.print(
            f"[bold]Rollouts[/]: [yellow]paused[/] by {paused.get('by', '?')} ({paused.get('reason', '')})"
            + (f" since {_time(paused['at'])}" if paused.get("at") else "")
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
    out.print(clock.label)


# ---------------------------------------------------------------- rollout start | abort | pause | resume

rollout_app = typer.Typer(
    help="Start a rollout by hand (or go back to an earlier version), abort the running one, pause or resume.",
    no_args_is_help=True,
)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`a.b.c=value` items → nested {"a": {"b": {"c": value}}}, each value parsed as YAML (2 → int, true → bool)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(part.strip() for part in path):
            raise CommandError(
                f"--override expects key.path=value (e.g. rollout.judge_interval_minutes=2), got {item!r}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
            value = json.loads(json.dumps(value))  # only what JSON carries (a YAML date stays the text given)
        except (yaml.YAMLError, TypeError, ValueError):
            value = raw
        node = overrides
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CommandError(f"--override {item!r} conflicts with --override {'.'.join(path[: depth + 1])}=…")
            node = child
        if isinstance(node.get(path[-1]), dict) or path[-1] in node:
            raise CommandError(f"--override {key} is given twice, or conflicts with a deeper override")
        node[path[-1]] = value
    return overrides


def manual_execution_name(package_arn: str, now: datetime | None = None) -> str:
    """`manual-<group>-v<version>-<UTC time>-<hash>`, by the rule that names the automatic executions.

    A random nonce in the hash keeps it apart from the automatic `<group>-v<version>-<hash>` name and from
    every other manual run."""
    parts = package_parts(package_arn)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    readable = f"manual-{parts[0]}-v{parts[1]}-{stamp}" if parts else f"manual-{stamp}"
    return execution_name(readable, package_arn, stamp, secrets.token_hex(8))


@rollout_app.command("start")
def rollout_start(
    package_arn: Annotated[
        str,
        typer.Argument(
            metavar="PACKAGE",
            help="The approved model package to roll out (an earlier one to go back): its ARN, or <group>/<version> "
            "such as churn/2.",
        ),
    ],
    override: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY.PATH=VALUE",
            help="Change the model's shepherd.yaml for this rollout only: key.path=value, value as YAML (repeatable).",
            show_default=False,
        ),
    ] = None,
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    stack_name: StackNameOption = "shepherd",
    outputs: OutputsOption = None,
) -> None:
    """Start a Rollout of a package by hand, even while automatic rollouts are paused; prints the execution ARN."""
    target = Target.resolve(endpoint_url, profile, region, stack_name, outputs)
    with _errors(target):
        overrides = parse_overrides(override or [])
        try:
            check_overrides(overrides, "--override")
        except ConfigError as exc:
            raise CommandError(f"{exc}\n(nothing started; docs/CONFIG.md lists the keys)") from None
        package_arn = resolve_package(target, package_arn)
        machine = target.output("RolloutStateMachineArn")
        package = target.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        approval = package.get("ModelApprovalStatus")
        if approval != "Approved":
            raise CommandError(
                f"{package_arn} is {approval}, not Approved: only approved packages roll out "
                f"(`shepherd approve {package_arn}`)"
            )
        name = manual_execution_name(package_arn)
        payload = {"ModelPackageArn": package_arn, "Overrides": overrides, "Manual": True}
        started = target.client("stepfunctions").start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(payload)
        )
    typer.echo(started["executionArn"])
    _note(
        f"started rollout {name} of {_package_label(package_arn)}"
        + (f" with overrides {json.dumps(overrides)}" if overrides else "")
        + f"; `shepherd status <endpoint>` follows it, `shepherd runs show {name}` tells how it went"
    )


def _running_first_deployment(target: Target, endpoint: str, run: str) -> bool:
    """A first deployment has no judge stage, so an abort flag would wait for the next rollout instead."""
    return any(
        entry.get("run") == run and entry.get("event") == "started" and entry.get("strategy") == "first-deployment"
        for _, entry in target.rollouts().latest_records(endpoint, 50)
    )


@rollout_app.command("abort")
def rollout_abort(
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose running rollout to abort.")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the verdict and in the notification.")] = "",
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    stack_name: StackNameOption = "shepherd",
    outputs: OutputsOption = None,
) -> None:
    """Abort the endpoint's running rollout: at its next judge call it rolls back to the last good config."""
    target = Target.resolve(endpoint_url, profile, region, stack_name, outputs)
    with _errors(target):
        lock = target.rollouts().lock_of(endpoint)
        if lock is None:
            raise CommandError(f"no rollout is running on {endpoint} (its lock is free): nothing to abort")
        run = lock.get("owner", "")
        if _running_first_deployment(target, endpoint, run):
            raise CommandError(
                f"{run} is the first deployment of {endpoint}: it has no champion to go back to and no judge stage "
                "to abort at; wait for it to end (`shepherd teardown <model>` removes the endpoint)"
            )
        by = _caller(target)
        target.rollouts().set_flag(
            endpoint, ABORT, by=by, reason=reason or "aborted with shepherd rollout abort", at_iso=_now_iso(target)
        )
    _note(
        f"abort requested on {endpoint} by {by}: rollout {run} ({_package_label(lock.get('package'))}) rolls back at "
        "its next judge call, restoring the endpoint to its last good config, and the package is rejected. "
        f"`shepherd status {endpoint}` shows when."
    )


@rollout_app.command("pause")
def rollout_pause(
    endpoint: Annotated[str, typer.Argument(help="The endpoint to stop automatic rollouts to.")],
    reason: Annotated[str, typer.Option(help="Why: shown by `shepherd status` and in refused rollouts.")] = "",
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    stack_name: StackNameOption = "shepherd",
    outputs: OutputsOption = None,
) -> None:
    """Pause automatic rollouts to an endpoint (approved packages wait); `rollout start` still works."""
    target = Target.resolve(endpoint_url, profile, region, stack_name, outputs)
    with _errors(target):
        by = _caller(target)
        target.rollouts().set_flag(
            endpoint, PAUSED, by=by, reason=reason or "paused with shepherd rollout pause", at_iso=_now_iso(target)
        )
    _note(
        f"automatic rollouts to {endpoint} are paused (by {by}): an approved package is refused and the champion "
        f"stays. A rollout already running goes on (`shepherd rollout abort {endpoint}` stops it); "
        "`shepherd rollout start <package-arn>` still rolls out by hand; "
        f"`shepherd rollout resume {endpoint}` lifts it."
    )


@rollout_app.command("resume")
def rollout_resume(
    endpoint: Annotated[str, typer.Argument(help="The endpoint to allow automatic rollouts to again.")],
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    stack_name: StackNameOption = "shepherd",
    outputs: OutputsOption = None,
) -> None:
    """Resume automatic rollouts to an endpoint (packages approved while paused are not replayed)."""
    target = Target.resolve(endpoint_url, profile, region, stack_name, outputs)
    with _errors(target):
        rollouts = target.rollouts()
        was_paused = rollouts.flag(endpoint, PAUSED) is not None
        if was_paused:
            rollouts.clear_flag(endpoint, PAUSED)
    if was_paused:
        _note(
            f"automatic rollouts to {endpoint} resumed. A package approved while paused was refused: "
            "`shepherd rollout start <package-arn>` rolls it out."
        )
    else:
        _note(f"rollouts to {endpoint} were not paused: nothing to resume")


# ---------------------------------------------------------------- approve


def approve(
    package_arn: Annotated[
        str,
        typer.Argument(
            metavar="PACKAGE",
            help=f"The model package to approve: its ARN (e.g. {PACKAGE_EXAMPLE}) or <group>/<version> (churn/2).",
        ),
    ],
    description: Annotated[str, typer.Option(help="Approval note recorded on the package.")] = "",
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Approve a model package: SageMaker's approval event starts its automatic rollout."""
    target = Target.resolve(endpoint_url, profile, region)
    with _errors(target):
        package_arn = resolve_package(target, package_arn)
        sagemaker = target.client("sagemaker")
        before = sagemaker.describe_model_package(ModelPackageName=package_arn).get("ModelApprovalStatus")
        if before == "Approved":
            _note(
                f"{package_arn} is already Approved: nothing changed (`shepherd rollout start {package_arn}` "
                "rolls it out again)"
            )
            return
        sagemaker.update_model_package(
            ModelPackageArn=package_arn,
            ModelApprovalStatus="Approved",
            ApprovalDescription=description or f"Approved by {_caller(target)} with shepherd approve",
        )
    typer.echo(f"approved {package_arn} (was {before})")
    _note(
        "its automatic rollout starts now, unless rollouts to the endpoint are paused; `shepherd status <endpoint>` "
        "follows it"
    )


# ---------------------------------------------------------------- teardown


def _tagged(target: Target, arn: str, model: str) -> bool:
    pages = target.client("sagemaker").get_paginator("list_tags").paginate(ResourceArn=arn)
    return any(t["Key"] == MODEL_TAG and t["Value"] == model for page in pages for t in page.get("Tags", []))


def _listed(target: Target, operation: str, key: str) -> list[dict[str, Any]]:
    pages = target.client("sagemaker").get_paginator(operation).paginate()
    return [item for page in pages for item in page.get(key, [])]


def _scaling_targets(target: Target, endpoint: str) -> list[str]:
    prefix = f"endpoint/{endpoint}/variant/"
    pages = (
        target.client("application-autoscaling")
        .get_paginator("describe_scalable_targets")
        .paginate(ServiceNamespace="sagemaker")
    )
    return [
        t["ResourceId"]
        for page in pages
        for t in page.get("ScalableTargets", [])
        if t["ResourceId"].startswith(prefix) and t.get("ScalableDimension") == SCALABLE_DIMENSION
    ]


def teardown(
    model: Annotated[
        str,
        typer.Argument(
            help="The model whose SageMaker resources to delete: its folder name, models/<model>/shepherd.yaml "
            "(the value of their shepherd:model tag)."
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    *,
    endpoint_url: EndpointUrlOption = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Delete the endpoints, endpoint configs and models Shepherd created for a model (tag shepherd:model).

    `sam delete` does not know these, and endpoints bill while they exist. Model packages (the registry) stay.
    """
    target = Target.resolve(endpoint_url, profile, region)
    with _errors(target):
        found = {
            kind: [
                item[name_key] for item in _listed(target, operation, list_key) if _tagged(target, item[arn_key], model)
            ]
            for kind, operation, list_key, name_key, arn_key in (
                ("endpoint", "list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
                (
                    "endpoint config",
                    "list_endpoint_configs",
                    "EndpointConfigs",
                    "EndpointConfigName",
                    "EndpointConfigArn",
                ),
                ("model", "list_models", "Models", "ModelName", "ModelArn"),
            )
        }
        where = target.describe()
    if not any(found.values()):
        typer.echo(f"nothing tagged {MODEL_TAG}={model} in {where}")
        return
    out = _out()
    out.print(f"Tagged {MODEL_TAG}={model} in {where}:")
    for kind, names in found.items():
        for name in names:
            out.print(f"  {kind:<16} {name}")
    if not yes and not typer.confirm("Delete all of these?", default=False):
        _fail("nothing deleted")
    failures = _delete(target, found)
    counts = ", ".join(f"{len(v)} {k}{'s' if len(v) != 1 else ''}" for k, v in found.items())
    if failures:
        for failure in failures:
            typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(1)
    typer.echo(f"teardown of {model}: deleted {counts}")


def _delete(target: Target, found: dict[str, list[str]]) -> list[str]:
    """Delete endpoints (scaling targets first), then configs, then models; go on past failures and return them."""
    from botocore.exceptions import BotoCoreError, ClientError

    sagemaker = target.client("sagemaker")
    scaling = target.client("application-autoscaling")
    failures: list[str] = []

    def attempt(what: str, call: Any, **kwargs: Any) -> bool:
        try:
            call(**kwargs)
        except ClientError as exc:
            failures.append(f"{what}: {code_of(exc)}: {message_of(exc)}")
            return False
        except BotoCoreError as exc:
            failures.append(f"{what}: {exc}")
            return False
        typer.echo(f"deleted {what}" if not what.startswith("scaling") else f"deregistered {what}")
        return True

    for endpoint in found["endpoint"]:
        try:
            resources = _scaling_targets(target, endpoint)
        except (ClientError, BotoCoreError) as exc:
            failures.append(f"listing the scaling targets of endpoint {endpoint}: {message_of(exc)}")
            continue
        # SageMaker refuses to delete an endpoint whose variants are still scalable targets.
        deregistered = [
            attempt(
                f"scaling target {resource}",
                scaling.deregister_scalable_target,
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )
            for resource in resources
        ]
        if all(deregistered):
            attempt(f"endpoint {endpoint}", sagemaker.delete_endpoint, EndpointName=endpoint)
    for config in found["endpoint config"]:
        attempt(f"endpoint config {config}", sagemaker.delete_endpoint_config, EndpointConfigName=config)
    for name in found["model"]:
        attempt(f"model {name}", sagemaker.delete_model, ModelName=name)
    return failures


# ---------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    """Add the commands to the `shepherd` app (shepherd_cli/main.py)."""
    app.command("status")(status)
    app.add_typer(rollout_app, name="rollout")
    app.command("approve")(approve)
    app.command("teardown")(teardown)
