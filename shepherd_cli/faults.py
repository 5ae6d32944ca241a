"""`shepherd local fault`: add, list and clear the local cloud's fault rules (docs/FAULTS.md), over its HTTP control."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shepherd_cli.cloud import LocalEndpointUrlOption, local_endpoint

fault_app = typer.Typer(
    help="Inject faults into the local cloud: failing or slow API calls, lost or late SageMaker events, crashes.",
    no_args_is_help=True,
)
_CONTROL = "/_shepherd/faults"


def _call(endpoint_url: str | None, method: str, path: str = "", body: dict[str, Any] | None = None) -> Any:
    url = local_endpoint(endpoint_url) + _CONTROL + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the local endpoint, http by design
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 # nosec B310 # the user's endpoint URL
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("message", str(exc))
        _fail(message)
    except urllib.error.URLError as exc:
        _fail(f"cannot reach the local cloud at {url}: {exc.reason} (is `shepherd local up` running?)")


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--detail expects Key=Value, got {item!r}")
        pairs[key] = value
    return pairs


@fault_app.command("add")
def fault_add(
    *,
    kind: Annotated[
        str,
        typer.Option(
            help="api-error, event-drop, event-delay, lambda-crash, endpoint-update-fails, container-crash-on-load, "
            "container-crash-after, container-slow or container-disk-full."
        ),
    ] = "api-error",
    service: Annotated[str, typer.Option(help="api-error: botocore's service name (sagemaker, s3, ...) or *.")] = "*",
    operation: Annotated[str, typer.Option(help="api-error: the operation (DescribeEndpoint, PutObject) or *.")] = "*",
    error: Annotated[
        str,
        typer.Option(
            help="throttle, internal, unavailable, access-denied (the service's own code), an exact code, "
            "or none (delay only)."
        ),
    ] = "throttle",
    status: Annotated[int | None, typer.Option(help="The HTTP status of an exact error code.")] = None,
    count: Annotated[int | None, typer.Option(help="Fire this many times, then expire.")] = None,
    probability: Annotated[float | None, typer.Option(help="Fire with this chance per match.")] = None,
    seed: Annotated[int, typer.Option(help="The seed of --probability's draws.")] = 0,
    delay: Annotated[
        float, typer.Option("--delay", help="Virtual seconds (the cloud's clock); container-slow: wall seconds.")
    ] = 0.0,
    principal: Annotated[str | None, typer.Option(help="Only calls of this role's sessions (ARN or name).")] = None,
    detail_type: Annotated[str, typer.Option(help="Event faults: the event's detail-type, or *.")] = "*",
    resource: Annotated[
        str, typer.Option(help="Events: the resource ARN; lambda-crash: function; endpoint; container: model (globs).")
    ] = "*",
    detail: Annotated[list[str] | None, typer.Option(help="Event faults: Key=Value the detail must hold.")] = None,
    at: Annotated[str, typer.Option(help="lambda-crash: before-handler or after-handler.")] = "before-handler",
    after_requests: Annotated[int, typer.Option(help="container-crash-after: answers before the crash.")] = 0,
    endpoint_url: LocalEndpointUrlOption = None,
) -> None:
    """Add a fault rule; prints its id."""
    rule: dict[str, Any] = {
        "kind": kind,
        "service": service,
        "operation": operation,
        "error": None if error == "none" else error,
        "status": status,
        "count": count,
        "probability": probability,
        "seed": seed,
        "delay_seconds": delay,
        "principal": principal,
        "detail_type": detail_type,
        "resource": resource,
        "detail": _pairs(detail or []),
        "at": at,
        "after_requests": after_requests,
    }
    typer.echo(_call(endpoint_url, "POST", body=rule)["id"])


@fault_app.command("list")
def fault_list(
    as_json: Annotated[bool, typer.Option("--json", help="The rules as JSON.")] = False,
    endpoint_url: LocalEndpointUrlOption = None,
) -> None:
    """The fault rules in force (handed-off crashes and endpoint faults are not listed)."""
    rules = _call(endpoint_url, "GET")["rules"]
    if as_json:
        typer.echo(json.dumps(rules, indent=2))
        return
    if not rules:
        typer.echo("no fault rules")
        return
    table = Table("id", "kind", "target", "error", "count", "probability", "delay s", "fired")
    for r in rules:
        target = (
            f"{r['service']}:{r['operation']}" if r["kind"] == "api-error" else f"{r['detail_type']} {r['resource']}"
        )
        table.add_row(
            r["id"], r["kind"], target, str(r["error"]), str(r["count"]), str(r["probability"]),
            f"{r['delay_seconds']:g}", str(r["fired"]),
        )  # fmt: skip
    Console().print(table)


@fault_app.command("clear")
def fault_clear(
    rule_id: Annotated[str | None, typer.Argument(help="One rule's id; without it, every rule.")] = None,
    endpoint_url: LocalEndpointUrlOption = None,
) -> None:
    """Remove one fault rule, or all of them."""
    if rule_id:
        _call(endpoint_url, "DELETE", "/" + quote(rule_id, safe=""))
        typer.echo(f"removed {rule_id}")
    else:
        _call(endpoint_url, "DELETE")
        typer.echo("cleared every fault rule")
