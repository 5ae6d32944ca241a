"""Step Functions acts as the state machine's role: every service call a task makes is signed with its session.

moto's engine builds each task's client with ``boto_client_for(region, service, state_credentials)`` and fixed
keys; ``state_credentials.role_arn`` is the execution's role (or a state's Credentials.RoleArn). We give that
function the role's credentials, so the local cloud authorizes the call as AWS does.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcloud.iam.principals import Credentials, RoleNotAssumable

_ORIGINAL = "_shepherd_original_boto_client_for"


def _in_process_moto() -> bool:
    """Whether moto serves the calls of this process's boto3 (mock_aws, as unit tests use): not the local cloud's
    business, since its patches are process-global but its IAM is for requests it serves."""
    from moto.core.models import botocore_stubber

    return bool(botocore_stubber.enabled)


def _import_users(defining: str) -> None:
    """Import every engine module that names boto_client_for, so that none keeps the original later."""
    from moto.stepfunctions import parser

    root = Path(parser.__file__).parent
    for path in root.rglob("*.py"):
        dotted = "moto.stepfunctions.parser." + ".".join(path.relative_to(root).with_suffix("").parts)
        if dotted != defining and dotted not in sys.modules and "boto_client_for" in path.read_text():
            importlib.import_module(dotted)


def install(issue: Callable[[str, str, str], Credentials]) -> None:
    """Patch every engine module that imported boto_client_for (idempotent); ``issue`` is Principals.issue."""
    import moto.stepfunctions.parser.asl.utils.boto_client as module

    original = getattr(module, _ORIGINAL, module.boto_client_for)
    setattr(module, _ORIGINAL, original)

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region, service, state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn or _in_process_moto():
            return client
        try:
            credentials = issue(str(role_arn), "states.amazonaws.com", "shepherd-states")
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

    _import_users(module.__name__)
    for name, loaded in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(loaded, "boto_client_for", None) is not None:
            loaded.boto_client_for = boto_client_for  # type: ignore[attr-defined]


def guard_creation(can_assume: Callable[[str], bool]) -> None:
    """CreateStateMachine refuses a role Step Functions cannot assume, as AWS does (its AccessDeniedException)."""
    from moto.stepfunctions.exceptions import AWSError
    from moto.stepfunctions.models import StepFunctionBackend

    class AccessDenied(AWSError):
        TYPE = "AccessDeniedException"
        STATUS = 400

    current = StepFunctionBackend.create_state_machine
    original = getattr(current, "__wrapped__", current)

    @functools.wraps(original)
    def create_state_machine(self: Any, name: str, definition: str, roleArn: str, *args: Any, **kwargs: Any) -> Any:
        if not _in_process_moto() and not can_assume(roleArn):
            raise AccessDenied(
                "Neither the global service principal states.amazonaws.com, nor the regional one is authorized to "
                "assume the provided role."
            )
        return original(self, name, definition, roleArn, *args, **kwargs)

    StepFunctionBackend.create_state_machine = create_state_machine  # type: ignore[method-assign]
