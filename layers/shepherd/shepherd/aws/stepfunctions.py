"""Starting executions idempotently."""

from __future__ import annotations

import json
from typing import Any


def start_once(client: Any, state_machine_arn: str, name: str, payload: dict[str, Any]) -> bool:
    """Start the named execution; False if it already exists (a duplicated event), never a second run."""
    try:
        client.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except client.exceptions.ExecutionAlreadyExists:
        return False
    return True
