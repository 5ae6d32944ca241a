"""Where the commands talk to: the local cloud or AWS, the Shepherd stack's outputs there, and its clock.

The same boto3 calls go to both; only the endpoint and the credentials differ. A command takes the connection
options through `connected`, which also turns every expected failure into one line on stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from shepherd.aws.clients import region as environment_region
from shepherd.aws.errors import code_of, message_of
from shepherd.aws.rollouts import RolloutTable
from shepherd.errors import ShepherdError

from shepherd_cli.output import utc_time

LOCAL_OUTPUTS = Path(".shepherd/local/outputs.json")
LOCAL_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_CREDENTIALS = ("shepherd-local", "shepherd-local")


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
        """The cloud the options name; with neither endpoint nor profile, $AWS_ENDPOINT_URL, the local cloud or AWS."""
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

    def caller(self) -> str:
        """Who sends a signal: the AWS identity, or the local user on the local cloud."""
        user = getpass.getuser()
        if self.local:
            return user
        try:
            return str(self.client("sts").get_caller_identity()["Arn"])
        except Exception:
            return user

    def now_iso(self) -> str:
        """Now on this cloud's clock: flags are stamped as the rollouts that read them stamp their records."""
        return self.clock().now().isoformat(timespec="seconds")

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
        return utc_time(self.from_wall(moment)) if moment is not None else utc_time(value)


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value or ""))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fail(message: str) -> NoReturn:
    """`error: <message>` on stderr, exit code 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def one_line_errors(target: Target | None = None) -> Iterator[None]:
    """Turn every expected failure (ours, AWS's, the network's) into one line and exit code 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except CommandError as exc:
        fail(str(exc) + _hint(target))
    except ShepherdError as exc:
        # RolloutTable names a failed call in the domain's words; say it as for the CLI's own calls.
        cause = exc.__cause__
        failure = _aws_failure(cause, target) if isinstance(cause, ClientError | BotoCoreError) else str(exc)
        fail(failure + _hint(target))
    except (ClientError, BotoCoreError) as exc:
        fail(_aws_failure(exc, target) + _hint(target))


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


# ---------------------------------------------------------------- the connection options of every command

_CONNECTION = [
    inspect.Parameter("endpoint_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=EndpointUrlOption),
    inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ProfileOption),
    inspect.Parameter("region", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RegionOption),
]
_STACK = [
    inspect.Parameter("stack_name", inspect.Parameter.KEYWORD_ONLY, default="shepherd", annotation=StackNameOption),
    inspect.Parameter("outputs", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OutputsOption),
]
Command = Callable[..., None]


def connected(*, stack: bool) -> Callable[[Command], Command]:
    """A command `f(target, ...)` made one that takes the connection options (with ``stack``, the stack's too).

    The options follow the command's own parameters, so they go where they always went on the command line;
    the command runs with the Target they name, and any expected failure in it is one line (one_line_errors).
    """
    added = [*_CONNECTION, *(_STACK if stack else [])]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [parameter for name, parameter in signature.parameters.items() if name != "target"]

        @functools.wraps(command)
        def run(**given: Any) -> None:
            target = Target.resolve(**{parameter.name: given.pop(parameter.name) for parameter in added})
            with one_line_errors(target):
                command(target, **given)

        # typer reads the options from the signature and the annotations: the command's own, then the added ones.
        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in [*own, *added]}
        return run

    return decorate


LocalEndpointUrlOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help=f"The local cloud, as `shepherd local up` prints it. Default: $AWS_ENDPOINT_URL, else {LOCAL_ENDPOINT}.",
        show_default=False,
    ),
]


def local_endpoint(endpoint_url: str | None) -> str:
    """The local cloud's URL: the one given, else $AWS_ENDPOINT_URL, else the default port on 127.0.0.1."""
    return (endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or LOCAL_ENDPOINT).rstrip("/")
