"""Step Functions acts as the state machine's role: every service call a task makes is signed with its session.

moto's engine builds each task's client with fixed keys; localcloud.moto.stepfunctions hands that client, with the
ARN of the role the task runs as (the execution's, or a state's Credentials.RoleArn), to ``task_client``, which
gives it the role's credentials, so the local cloud authorizes the call as AWS does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcloud.iam.principals import Credentials, RoleNotAssumable

_CANNOT_ASSUME = (
    "Neither the global service principal states.amazonaws.com, nor the regional one is authorized to "
    "assume the provided role."
)


def task_client(issue: Callable[[str, str, str], Credentials]) -> Callable[[Any, str, str, str], Any]:
    """The engine's client for a task, made a session of the task's role; ``issue`` is Principals.issue."""

    def client_as_role(client: Any, region: str, service: str, role_arn: str) -> Any:
        try:
            credentials = issue(role_arn, "states.amazonaws.com", "shepherd-states")
        except RoleNotAssumable as exc:
            # The task fails as a refused call does (the engine turns a ClientError into the state's error); any
            # other exception would kill the execution's worker and leave it RUNNING with no callbacks.
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": "AccessDeniedException", "Message": str(exc)}}
            raise ClientError(error, "AssumeRole") from exc
        import boto3

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=client.meta.endpoint_url,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=client.meta.config,
        )

    return client_as_role


def creation_refusal(can_assume: Callable[[str], bool]) -> Callable[[str], str | None]:
    """CreateStateMachine refuses a role Step Functions cannot assume, as AWS does: the AccessDeniedException's
    message, or None."""

    def refusal(role_arn: str) -> str | None:
        return None if can_assume(role_arn) else _CANNOT_ASSUME

    return refusal
