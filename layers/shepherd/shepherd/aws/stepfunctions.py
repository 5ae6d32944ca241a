"""Step Functions: starting executions idempotently, resuming waiting tasks, an execution's status."""

from __future__ import annotations

import json
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import code_of, mapped

# A task that is no longer waiting (settled by a duplicate event, timed out, or its execution ended).
CLOSED_TASK_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


def start_once(sfn: Any, state_machine_arn: str, name: str, payload: dict[str, Any]) -> bool:
    """Start the named execution; False if it already exists (a duplicated event), never a second run."""
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


class StepFunctionsResumer:
    """Implements shepherd.callbacks.Resumer."""

    def _send(self, what: str, **kwargs: Any) -> bool:
        from botocore.exceptions import ClientError

        try:
            with mapped(what):
                getattr(client("stepfunctions"), what)(**kwargs)
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and code_of(cause) in CLOSED_TASK_CODES:
                return False
            raise
        return True

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        return self._send("send_task_success", taskToken=token, output=json.dumps(output, default=str))

    def fail(self, token: str, error: str, cause: str) -> bool:
        return self._send("send_task_failure", taskToken=token, error=error[:256], cause=cause[:32768])


class StepFunctionsExecutions:
    """Implements shepherd.rollout.reconcile.Executions for one state machine's executions."""

    def __init__(self, state_machine_arn: str) -> None:
        self.state_machine_arn = state_machine_arn

    def status(self, name: str) -> str:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE; MISSING when there is none."""
        from botocore.exceptions import ClientError

        from shepherd.rollout.reconcile import MISSING

        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        with mapped(f"describing {arn}"):
            try:
                return str(client("stepfunctions").describe_execution(executionArn=arn)["status"])
            except ClientError as exc:
                if code_of(exc) == "ExecutionDoesNotExist":
                    return MISSING
                raise
