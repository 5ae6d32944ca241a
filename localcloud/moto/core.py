"""moto's own switches, and whether moto serves this process's boto3 in place of the local cloud."""

from __future__ import annotations

from typing import Any


def configure() -> None:
    """Step Functions runs executions (the engine), Lambda runs without Docker, and moto adds no CORS headers."""
    from moto.core.config import default_user_config
    from moto.moto_server import werkzeug_app

    werkzeug_app.DISABLE_GLOBAL_CORS = True  # read when each service's app is first created
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    default_user_config["lambda"]["use_docker"] = False


def in_process_mock() -> bool:
    """Whether moto serves this process's boto3 (mock_aws, as unit tests use) rather than the local cloud's server.

    The patches are process-global; calls that moto answers in-process keep moto's own behaviour.
    """
    from moto.core.models import botocore_stubber

    return bool(botocore_stubber.enabled)


def __getattr__(name: str) -> Any:
    """DEFAULT_ACCOUNT_ID, imported on first use."""
    if name == "DEFAULT_ACCOUNT_ID":
        from moto.core import DEFAULT_ACCOUNT_ID

        return DEFAULT_ACCOUNT_ID
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
