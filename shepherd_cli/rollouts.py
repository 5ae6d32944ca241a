"""`shepherd approve` and `shepherd rollout start|abort|pause|resume`: a package's rollout, started or steered by hand.

Manual executions are named by the application's rule (`shepherd.events.names`); abort and pause are flags in
the application's rollouts table (`shepherd.aws.rollouts.RolloutTable`), which the running rollout reads.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from shepherd.config import ConfigError, check_overrides
from shepherd.events.names import execution_name
from shepherd.rollout.ports import ABORT, PAUSED

from shepherd_cli.cloud import CommandError, Target, connected
from shepherd_cli.output import PACKAGE_EXAMPLE, note, package_label, package_parts

_PACKAGE_SHORT = re.compile(r"^(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>\d+)$")


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
@connected(stack=True)
def rollout_start(
    target: Target,
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
) -> None:
    """Start a Rollout of a package by hand, even while automatic rollouts are paused; prints the execution ARN."""
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
    note(
        f"started rollout {name} of {package_label(package_arn)}"
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
@connected(stack=True)
def rollout_abort(
    target: Target,
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose running rollout to abort.")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the verdict and in the notification.")] = "",
) -> None:
    """Abort the endpoint's running rollout: at its next judge call it rolls back to the last good config."""
    lock = target.rollouts().lock_of(endpoint)
    if lock is None:
        raise CommandError(f"no rollout is running on {endpoint} (its lock is free): nothing to abort")
    run = lock.get("owner", "")
    if _running_first_deployment(target, endpoint, run):
        raise CommandError(
            f"{run} is the first deployment of {endpoint}: it has no champion to go back to and no judge stage "
            "to abort at; wait for it to end (`shepherd teardown <model>` removes the endpoint)"
        )
    by = target.caller()
    target.rollouts().set_flag(
        endpoint, ABORT, by=by, reason=reason or "aborted with shepherd rollout abort", at_iso=target.now_iso()
    )
    note(
        f"abort requested on {endpoint} by {by}: rollout {run} ({package_label(lock.get('package'))}) rolls back at "
        "its next judge call, restoring the endpoint to its last good config, and the package is rejected. "
        f"`shepherd status {endpoint}` shows when."
    )


@rollout_app.command("pause")
@connected(stack=True)
def rollout_pause(
    target: Target,
    endpoint: Annotated[str, typer.Argument(help="The endpoint to stop automatic rollouts to.")],
    reason: Annotated[str, typer.Option(help="Why: shown by `shepherd status` and in refused rollouts.")] = "",
) -> None:
    """Pause automatic rollouts to an endpoint (approved packages wait); `rollout start` still works."""
    by = target.caller()
    target.rollouts().set_flag(
        endpoint, PAUSED, by=by, reason=reason or "paused with shepherd rollout pause", at_iso=target.now_iso()
    )
    note(
        f"automatic rollouts to {endpoint} are paused (by {by}): an approved package is refused and the champion "
        f"stays. A rollout already running goes on (`shepherd rollout abort {endpoint}` stops it); "
        "`shepherd rollout start <package-arn>` still rolls out by hand; "
        f"`shepherd rollout resume {endpoint}` lifts it."
    )


@rollout_app.command("resume")
@connected(stack=True)
def rollout_resume(
    target: Target,
    endpoint: Annotated[str, typer.Argument(help="The endpoint to allow automatic rollouts to again.")],
) -> None:
    """Resume automatic rollouts to an endpoint (packages approved while paused are not replayed)."""
    rollouts = target.rollouts()
    if rollouts.flag(endpoint, PAUSED) is None:
        note(f"rollouts to {endpoint} were not paused: nothing to resume")
        return
    rollouts.clear_flag(endpoint, PAUSED)
    note(
        f"automatic rollouts to {endpoint} resumed. A package approved while paused was refused: "
        "`shepherd rollout start <package-arn>` rolls it out."
    )


@connected(stack=False)
def approve(
    target: Target,
    package_arn: Annotated[
        str,
        typer.Argument(
            metavar="PACKAGE",
            help=f"The model package to approve: its ARN (e.g. {PACKAGE_EXAMPLE}) or <group>/<version> (churn/2).",
        ),
    ],
    description: Annotated[str, typer.Option(help="Approval note recorded on the package.")] = "",
) -> None:
    """Approve a model package: SageMaker's approval event starts its automatic rollout."""
    package_arn = resolve_package(target, package_arn)
    sagemaker = target.client("sagemaker")
    before = sagemaker.describe_model_package(ModelPackageName=package_arn).get("ModelApprovalStatus")
    if before == "Approved":
        note(
            f"{package_arn} is already Approved: nothing changed (`shepherd rollout start {package_arn}` "
            "rolls it out again)"
        )
        return
    sagemaker.update_model_package(
        ModelPackageArn=package_arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription=description or f"Approved by {target.caller()} with shepherd approve",
    )
    typer.echo(f"approved {package_arn} (was {before})")
    note(
        "its automatic rollout starts now, unless rollouts to the endpoint are paused; `shepherd status <endpoint>` "
        "follows it"
    )
