"""The rollout table (DynamoDB): one lock per endpoint, the champion, and every stage change and verdict.

Items (pk, sk):
  endpoint#<name>, lock                  owner (execution), package, lease_until (epoch), version
  endpoint#<name>, champion              package, model, variant, config
  endpoint#<name>, record#<iso time>#<n> run, package, stage, event, verdict, statistics, explanation
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.errors import ShepherdError

LEASE_SECONDS = 3600
RECORD_TTL_SECONDS = 400 * 86400


class LockHeld(ShepherdError):
    """Another rollout holds the endpoint: this one waits its turn (the state machine retries with backoff)."""


def _table() -> str:
    return os.environ["ROLLOUTS_TABLE"]


def _key(endpoint: str, sort: str) -> dict[str, Any]:
    return {"pk": {"S": f"endpoint#{endpoint}"}, "sk": {"S": sort}}


def acquire(endpoint: str, owner: str, package: str, now_epoch: float) -> None:
    """Take (or renew) the endpoint's lock; LockHeld if another live rollout has it."""
    from botocore.exceptions import ClientError

    try:
        client("dynamodb").put_item(
            TableName=_table(),
            Item=_key(endpoint, "lock")
            | {
                "owner": {"S": owner},
                "package": {"S": package},
                "lease_until": {"N": str(int(now_epoch + LEASE_SECONDS))},
            },
            ConditionExpression="attribute_not_exists(pk) OR #o = :owner OR lease_until < :now",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": str(int(now_epoch))}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            holder = holder_of(endpoint)
            raise LockHeld(f"endpoint {endpoint} is being rolled out by {holder}: this rollout waits") from None
        raise


def holder_of(endpoint: str) -> str | None:
    with mapped(f"reading the lock of {endpoint}"):
        item = client("dynamodb").get_item(TableName=_table(), Key=_key(endpoint, "lock"), ConsistentRead=True)
    return item.get("Item", {}).get("owner", {}).get("S")


def release(endpoint: str, owner: str) -> bool:
    """Release the lock if this rollout holds it; False if it did not."""
    from botocore.exceptions import ClientError

    try:
        client("dynamodb").delete_item(
            TableName=_table(),
            Key=_key(endpoint, "lock"),
            ConditionExpression="#o = :owner",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def set_champion(endpoint: str, champion: dict[str, str]) -> None:
    with mapped(f"recording the champion of {endpoint}"):
        client("dynamodb").put_item(
            TableName=_table(), Item=_key(endpoint, "champion") | {k: {"S": v} for k, v in champion.items()}
        )


def champion(endpoint: str) -> dict[str, str] | None:
    with mapped(f"reading the champion of {endpoint}"):
        item = client("dynamodb").get_item(TableName=_table(), Key=_key(endpoint, "champion"), ConsistentRead=True)
    found = item.get("Item")
    return {k: v["S"] for k, v in found.items() if k not in ("pk", "sk")} if found else None


def record(endpoint: str, entry: dict[str, Any], at_iso: str, *, unique: str | None = None) -> None:
    """Append one stage change or verdict to the endpoint's rollout record, and put it on the event bus.

    With ``unique`` the entry's key is (at_iso, unique): writing it again (a retried step) overwrites
    it instead of appending a twin; the event goes out again (EventBridge delivers at least once)."""
    sort = f"record#{at_iso}#{unique if unique is not None else f'{time.time_ns() % 10**9:09d}'}"
    item = _key(endpoint, sort) | {
        "entry": {"S": json.dumps(entry, default=str)},
        "expires_at": {"N": str(int(time.time()) + RECORD_TTL_SECONDS)},
    }
    with mapped(f"recording a rollout event of {endpoint}"):
        client("dynamodb").put_item(TableName=_table(), Item=item)
    with mapped("putting Shepherd Rollout Stage Changed"):
        client("events").put_events(
            Entries=[
                {
                    "Source": "shepherd.rollout",
                    "DetailType": "Shepherd Rollout Stage Changed",
                    "Detail": json.dumps({"endpoint": endpoint, **entry}, default=str),
                }
            ]
        )


def records(endpoint: str) -> list[dict[str, Any]]:
    with mapped(f"reading the rollout record of {endpoint}"):
        pages = (
            client("dynamodb")
            .get_paginator("query")
            .paginate(
                TableName=_table(),
                KeyConditionExpression="pk = :pk AND begins_with(sk, :record)",
                ExpressionAttributeValues={":pk": {"S": f"endpoint#{endpoint}"}, ":record": {"S": "record#"}},
            )
        )
        return [json.loads(item["entry"]["S"]) for page in pages for item in page.get("Items", [])]


# ---------------------------------------------------------------- signals a human sends (shepherd rollout ...)

ABORT, PAUSED = "abort", "paused"


def set_flag(endpoint: str, flag: str, by: str, reason: str = "") -> None:
    """abort: the running rollout rolls back at its next judge call; paused: no automatic rollout starts."""
    with mapped(f"setting {flag} on {endpoint}"):
        client("dynamodb").put_item(
            TableName=_table(),
            Item=_key(endpoint, f"flag#{flag}") | {"by": {"S": by}, "reason": {"S": reason or flag}},
        )


def clear_flag(endpoint: str, flag: str) -> None:
    with mapped(f"clearing {flag} on {endpoint}"):
        client("dynamodb").delete_item(TableName=_table(), Key=_key(endpoint, f"flag#{flag}"))


def flag(endpoint: str, flag: str) -> dict[str, str] | None:
    with mapped(f"reading {flag} of {endpoint}"):
        item = client("dynamodb").get_item(TableName=_table(), Key=_key(endpoint, f"flag#{flag}"), ConsistentRead=True)
    found = item.get("Item")
    return {k: v["S"] for k, v in found.items() if k not in ("pk", "sk")} if found else None


def locks() -> list[dict[str, str]]:
    """Every endpoint's lock: endpoint, owner (execution name), package, lease_until."""
    found = []
    with mapped("scanning rollout locks"):
        pages = (
            client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=_table(),
                FilterExpression="sk = :lock",
                ExpressionAttributeValues={":lock": {"S": "lock"}},
                ConsistentRead=True,
            )
        )
        for page in pages:
            for item in page.get("Items", []):
                found.append(
                    {"endpoint": item["pk"]["S"].removeprefix("endpoint#")}
                    | {k: v.get("S", v.get("N", "")) for k, v in item.items() if k not in ("pk", "sk")}
                )
    return found
