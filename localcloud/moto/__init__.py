"""Every use of moto's internals, one module per moto service; install() patches them all.

moto is pinned in pyproject.toml, and tests/unit/test_moto_contract.py (with test_cloudwatch_contract.py and
test_moto_contract_s3.py) holds each internal used here to its shape, so an upgrade fails there first. Only this
package imports moto (an import-linter contract); its modules import moto lazily, as the services load slowly.
"""

from __future__ import annotations

from dataclasses import dataclass

from localcloud.moto import cloudwatch, core, events, logs, s3, scheduler, stepfunctions


@dataclass(frozen=True)
class Hooks:
    """Where the patches hand over to the running local cloud."""

    clock: stepfunctions.Clock  # the engine's waits and timeouts run on it
    deliver: events.Deliver  # a rule's target of ours receives an event
    cloudwatch: cloudwatch.CloudWatchEmulation  # answers for moto's CloudWatch backend
    task_client: stepfunctions.TaskClient  # a task's service client, acting as its role
    refuse_state_machine: stepfunctions.Refusal  # why CreateStateMachine refuses a role, or None
    refuse_log_group_key: logs.Refusal | None = None  # why CloudWatch Logs refuses a log group's KMS key, or None


_patched = {"moto": False}


def install(hooks: Hooks) -> None:
    """Patch moto (once per process) and attach the patches to this cloud's hooks, replacing a previous cloud's."""
    stepfunctions.attach(hooks.clock, hooks.task_client, hooks.refuse_state_machine)
    events.attach(hooks.deliver)
    cloudwatch.attach(hooks.cloudwatch)
    logs.attach(hooks.refuse_log_group_key)
    if _patched["moto"]:
        return
    _patched["moto"] = True
    stepfunctions.preload_batch_utils()
    core.configure()
    stepfunctions.patch()
    events.patch()
    scheduler.patch()
    s3.patch()
    cloudwatch.patch()
    logs.patch()


def uninstall() -> None:
    """Detach the stopped cloud's clock; the patches stay (moto's backends are process-global anyway)."""
    stepfunctions.detach_clock()
