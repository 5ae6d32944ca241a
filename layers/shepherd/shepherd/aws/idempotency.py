"""Results remembered in the idempotency table, so that a retried step answers what its first run did.

CreateModelPackage adds a version per call: a ``ClientToken`` from the run plus the remembered result make
one run register one package. Not Powertools' idempotency utility: its DynamoDB layer imports boto3 (about
140 ms of RegisterModel's cold start). docs/PIPELINES.md, "Registration".
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped

COMPLETED = "COMPLETED"
_NAMESPACE = uuid.UUID("6f1c8f9e-2b8a-4e55-9d0c-5c1d0b7a3e21")  # Shepherd's, fixed: tokens must be stable


def client_token(key: str) -> str:
    """A stable ClientToken for ``key``: 36 characters of ``[a-z0-9-]``, as SageMaker requires."""
    return str(uuid.uuid5(_NAMESPACE, key))


class IdempotencyTable:
    """Implements the domain's Memory ports (shepherd.registry, shepherd.rollout.judging) on DynamoDB."""

    def __init__(self, table: str) -> None:
        self.table = table

    def client_token(self, key: str) -> str:
        return client_token(key)

    def recall(self, key: str) -> dict[str, Any] | None:
        """The result remembered under ``key``, or None (never stored, or expired)."""
        with mapped(f"reading the idempotency record {key}"):
            item = (
                client("dynamodb")
                .get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True)
                .get("Item")
            )
        if not item or item.get("status", {}).get("S") != COMPLETED:
            return None
        if int(item.get("expiration", {}).get("N", "0")) <= time.time():  # TTL deletes lazily: expired is absent
            return None
        return dict(json.loads(item["data"]["S"]))

    def remember(self, key: str, result: dict[str, Any], *, expires_after_seconds: int) -> None:
        item = {
            "id": {"S": key},
            "status": {"S": COMPLETED},
            "data": {"S": json.dumps(result, sort_keys=True)},
            "expiration": {"N": str(int(time.time()) + expires_after_seconds)},
        }
        with mapped(f"storing the idempotency record {key}"):
            client("dynamodb").put_item(TableName=self.table, Item=item)
