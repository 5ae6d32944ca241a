"""The task-token table (DynamoDB): one item per job name, written before the job is created."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.callbacks import Kind, Waiter

WAITING, SETTLED = "WAITING", "SETTLED"


class DynamoTokenStore:
    """Implements shepherd.callbacks.TokenStore. Items: job_name (key), kind, token, execution, status, ttl."""

    def __init__(self, table: str) -> None:
        self.table = table

    def put(self, waiter: Waiter, *, expires_after_seconds: int) -> None:
        item = {
            "job_name": {"S": waiter.job_name},
            "kind": {"S": waiter.kind},
            "token": {"S": waiter.token},
            "execution": {"S": waiter.execution},
            "status": {"S": WAITING},
            "created_at": {"S": waiter.created_at.isoformat()},
            "expect": {"S": waiter.expect},
            "expires_at": {"N": str(int(time.time()) + expires_after_seconds)},
        }
        with mapped(f"storing the task token of {waiter.job_name}"):
            client("dynamodb").put_item(TableName=self.table, Item=item)

    def get(self, job_name: str) -> Waiter | None:
        with mapped(f"reading the task token of {job_name}"):
            item = client("dynamodb").get_item(
                TableName=self.table, Key={"job_name": {"S": job_name}}, ConsistentRead=True
            )
        found = item.get("Item")
        if not found or found["status"]["S"] != WAITING:
            return None
        return _waiter(found)

    def mark_settled(self, waiter: Waiter, outcome: str) -> None:
        from botocore.exceptions import ClientError

        try:
            with mapped(f"settling the task token of {waiter.job_name}"):
                client("dynamodb").update_item(
                    TableName=self.table,
                    Key={"job_name": {"S": waiter.job_name}},
                    UpdateExpression="SET #s = :settled, outcome = :outcome, settled_at = :now",
                    # Only the token we sent: a newer attempt's token (a retried task) stays waiting.
                    ConditionExpression="#t = :token",
                    ExpressionAttributeNames={"#s": "status", "#t": "token"},
                    ExpressionAttributeValues={
                        ":settled": {"S": SETTLED},
                        ":outcome": {"S": outcome},
                        ":now": {"S": datetime.now(UTC).isoformat()},
                        ":token": {"S": waiter.token},
                    },
                )
        except Exception as exc:
            if not isinstance(exc.__cause__, ClientError) or "ConditionalCheckFailed" not in str(exc.__cause__):
                raise

    def forget(self, waiter: Waiter) -> None:
        with mapped(f"forgetting the task token of {waiter.job_name}"):
            client("dynamodb").delete_item(TableName=self.table, Key={"job_name": {"S": waiter.job_name}})

    def waiting(self) -> list[Waiter]:
        found: list[Waiter] = []
        with mapped("scanning waiting task tokens"):
            pages = (
                client("dynamodb")
                .get_paginator("scan")
                .paginate(
                    TableName=self.table,
                    FilterExpression="#s = :waiting",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":waiting": {"S": WAITING}},
                    ConsistentRead=True,
                )
            )
            for page in pages:
                found.extend(_waiter(item) for item in page.get("Items", []))
        return found


def _waiter(item: dict[str, Any]) -> Waiter:
    kinds: dict[str, Kind] = {"training": "training", "transform": "transform", "endpoint": "endpoint"}
    kind = kinds[item["kind"]["S"]]
    return Waiter(
        job_name=item["job_name"]["S"],
        kind=kind,
        token=item["token"]["S"],
        execution=item["execution"]["S"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        expect=item.get("expect", {}).get("S", ""),
    )
