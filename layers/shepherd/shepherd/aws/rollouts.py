"""The rollout table (DynamoDB): one lock per endpoint, the champion, and every stage change and verdict.

Items (pk, sk):
  endpoint#<name>, lock                  owner (the rollout's run), package, lease_until (epoch), version,
                                         execution (the execution running it now), successor (the one it
                                         continues in, while it hands over), restoring (the config the
                                         reconciler is restoring)
  endpoint#<name>, champion              package, model, variant, config, scaling (JSON, when autoscaled)
  endpoint#<name>, record#<iso time>#<n> run, package, stage, event, verdict, statistics, explanation
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.errors import Conflict
from shepherd.rollout.ports import LockHeld, LockLost

# Renewed at every judge call and endpoint change; a stage's endpoint change may wait an hour for InService,
# then a judge interval (at most an hour) passes: the lease outlasts both. The reconciler, not the lease,
# frees the lock of a rollout that died (it sees the execution is no longer running).
LEASE_SECONDS = 3 * 3600
RECORD_TTL_SECONDS = 400 * 86400


def _key(endpoint: str, sort: str) -> dict[str, Any]:
    return {"pk": {"S": f"endpoint#{endpoint}"}, "sk": {"S": sort}}


def _lock_fields(item: dict[str, Any]) -> dict[str, str]:
    """A lock item's attributes as plain strings (numbers too), without its key."""
    return {k: v.get("S", v.get("N", "")) for k, v in item.items() if k not in ("pk", "sk")}


class RolloutTable:
    """Implements shepherd.rollout.ports.RolloutStore on DynamoDB."""

    def __init__(self, table: str, clients: Callable[[str], Any] | None = None) -> None:
        """The table ``table`` (a function's ROLLOUTS_TABLE), through ``clients`` (default shepherd.aws.clients.client).

        ``clients`` makes a boto3 client by service name: the `shepherd` CLI passes its own, which follow its
        --endpoint-url, --profile and --region rather than the environment."""
        self.table = table
        self._clients = clients

    def client(self, service: str) -> Any:
        # The module's `client` is looked up per call, as before: tests that patch it still reach every method.
        return (self._clients or client)(service)

    def acquire(self, endpoint: str, owner: str, package: str, now_epoch: float) -> None:
        """Take the endpoint's lock for the rollout ``owner`` (its first execution's name); LockHeld if another
        live rollout has it. Re-entrant for its owner (a retried Prepare)."""
        from botocore.exceptions import ClientError

        try:
            self.client("dynamodb").put_item(
                TableName=self.table,
                Item=_key(endpoint, "lock")
                | {
                    "owner": {"S": owner},
                    "execution": {"S": owner},
                    "package": {"S": package},
                    "lease_until": {"N": str(int(now_epoch + LEASE_SECONDS))},
                    "version": {"N": "1"},
                },
                ConditionExpression="attribute_not_exists(pk) OR #o = :owner OR lease_until < :now",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": str(int(now_epoch))}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                holder = self.holder_of(endpoint)
                raise LockHeld(f"endpoint {endpoint} is being rolled out by {holder}: this rollout waits") from None
            raise

    def _update_held(self, endpoint: str, owner: str, expression: str, values: dict[str, Any], doing: str) -> int:
        """Update the lock only while ``owner`` holds it (the check every endpoint change makes); its new version."""
        try:
            with mapped(f"{doing} of {endpoint}"):
                answer = self.client("dynamodb").update_item(
                    TableName=self.table,
                    Key=_key(endpoint, "lock"),
                    UpdateExpression=f"{expression} ADD version :one",
                    ConditionExpression="#o = :owner",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":owner": {"S": owner}, ":one": {"N": "1"}} | values,
                    ReturnValues="UPDATED_NEW",
                )
        except Conflict:  # the condition failed: the lock is gone or another rollout's
            raise LockLost(
                f"rollout {owner} no longer holds endpoint {endpoint} (now {self.holder_of(endpoint) or 'nobody'}): "
                "it leaves the endpoint alone"
            ) from None
        return int(answer["Attributes"]["version"]["N"])

    def renew(self, endpoint: str, owner: str, now_epoch: float) -> int:
        """Extend the lease; LockLost if ``owner`` no longer holds the lock. Called before every endpoint change
        and at every judge call, so a rollout that lost its lock never changes the endpoint again."""
        return self._update_held(
            endpoint,
            owner,
            "SET lease_until = :until",
            {":until": {"N": str(int(now_epoch + LEASE_SECONDS))}},
            "renewing",
        )

    def hand_over(self, endpoint: str, owner: str, successor: str, now_epoch: float) -> int:
        """Before the rollout continues in a fresh execution: name it on the lock, so that the reconciler sees
        the rollout alive while either execution runs."""
        return self._update_held(
            endpoint,
            owner,
            "SET successor = :s, lease_until = :until",
            {":s": {"S": successor}, ":until": {"N": str(int(now_epoch + LEASE_SECONDS))}},
            "handing over the lock",
        )

    def take_over(self, endpoint: str, owner: str, execution: str, now_epoch: float) -> int:
        """The fresh execution takes the lock its predecessor handed over."""
        return self._update_held(
            endpoint,
            owner,
            "SET execution = :e, lease_until = :until REMOVE successor",
            {":e": {"S": execution}, ":until": {"N": str(int(now_epoch + LEASE_SECONDS))}},
            "taking over the lock",
        )

    def note_restoring(self, endpoint: str, owner: str, config: str) -> int:
        """The reconciler restored ``config`` for a rollout that ended without its cleanup; it frees the lock
        once the endpoint has settled on it."""
        return self._update_held(endpoint, owner, "SET restoring = :c", {":c": {"S": config}}, "noting the restore")

    def lock_of(self, endpoint: str) -> dict[str, str] | None:
        """The endpoint's lock as it is now (consistent read), or None."""
        with mapped(f"reading the lock of {endpoint}"):
            item = self.client("dynamodb").get_item(
                TableName=self.table, Key=_key(endpoint, "lock"), ConsistentRead=True
            )
        found = item.get("Item")
        return _lock_fields(found) if found else None

    def holder_of(self, endpoint: str) -> str | None:
        return (self.lock_of(endpoint) or {}).get("owner")

    def release(self, endpoint: str, owner: str) -> bool:
        """Release the lock if this rollout holds it; False if it did not."""
        from botocore.exceptions import ClientError

        try:
            self.client("dynamodb").delete_item(
                TableName=self.table,
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

    def set_champion(self, endpoint: str, champion: dict[str, str]) -> None:
        with mapped(f"recording the champion of {endpoint}"):
            self.client("dynamodb").put_item(
                TableName=self.table, Item=_key(endpoint, "champion") | {k: {"S": v} for k, v in champion.items()}
            )

    def champion(self, endpoint: str) -> dict[str, str] | None:
        with mapped(f"reading the champion of {endpoint}"):
            item = self.client("dynamodb").get_item(
                TableName=self.table, Key=_key(endpoint, "champion"), ConsistentRead=True
            )
        found = item.get("Item")
        return {k: v["S"] for k, v in found.items() if k not in ("pk", "sk")} if found else None

    def record(self, endpoint: str, entry: dict[str, Any], at_iso: str, *, unique: str | None = None) -> None:
        """Append one stage change or verdict to the endpoint's rollout record, and put it on the event bus.

        With ``unique`` the entry's key is (at_iso, unique): writing it again (a retried step) overwrites
        it instead of appending a twin; the event goes out again (EventBridge delivers at least once)."""
        sort = f"record#{at_iso}#{unique if unique is not None else f'{time.time_ns() % 10**9:09d}'}"
        item = _key(endpoint, sort) | {
            "entry": {"S": json.dumps(entry, default=str)},
            "expires_at": {"N": str(int(time.time()) + RECORD_TTL_SECONDS)},
        }
        with mapped(f"recording a rollout event of {endpoint}"):
            self.client("dynamodb").put_item(TableName=self.table, Item=item)
        with mapped("putting Shepherd Rollout Stage Changed"):
            self.client("events").put_events(
                Entries=[
                    {
                        "Source": "shepherd.rollout",
                        "DetailType": "Shepherd Rollout Stage Changed",
                        "Detail": json.dumps({"endpoint": endpoint, **entry}, default=str),
                    }
                ]
            )

    def records(self, endpoint: str) -> list[dict[str, Any]]:
        with mapped(f"reading the rollout record of {endpoint}"):
            pages = (
                self.client("dynamodb")
                .get_paginator("query")
                .paginate(
                    TableName=self.table,
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :record)",
                    ExpressionAttributeValues={":pk": {"S": f"endpoint#{endpoint}"}, ":record": {"S": "record#"}},
                )
            )
            # each entry with its time, from its key (cost accounting measures stages by it)
            return [
                {"at": item["sk"]["S"].split("#")[1]} | json.loads(item["entry"]["S"])
                for page in pages
                for item in page.get("Items", [])
            ]

    def latest_records(self, endpoint: str, last: int) -> list[tuple[str, dict[str, Any]]]:
        """The last ``last`` records, oldest first, as (time, entry); an unreadable entry is shown, not raised."""
        if last <= 0:
            return []
        with mapped(f"reading the rollout record of {endpoint}"):
            answer = self.client("dynamodb").query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :record)",
                ExpressionAttributeValues={":pk": {"S": f"endpoint#{endpoint}"}, ":record": {"S": "record#"}},
                ScanIndexForward=False,
                Limit=last,
            )
        found = []
        for item in answer.get("Items", []):
            at = item["sk"]["S"].split("#")[1]
            text = item.get("entry", {}).get("S", "{}")
            try:
                entry = json.loads(text)
            except ValueError:
                entry = {"event": "?", "explanation": text}
            found.append((at, entry if isinstance(entry, dict) else {"explanation": str(entry)}))
        return list(reversed(found))

    def set_flag(
        self, endpoint: str, flag: str, *, by: str, reason: str = "", verdict: str = "", at_iso: str = ""
    ) -> None:
        """abort: the running rollout rolls back at its next judge call, with ``verdict`` (ROLLBACK unless given:
        a superseded rollout ends INCONCLUSIVE, which restores the champion without rejecting its package);
        paused: no automatic rollout starts. ``at_iso``: when it was set, which `shepherd status` shows."""
        item = _key(endpoint, f"flag#{flag}") | {"by": {"S": by}, "reason": {"S": reason or flag}}
        if verdict:
            item["verdict"] = {"S": verdict}
        if at_iso:
            item["at"] = {"S": at_iso}
        with mapped(f"setting {flag} on {endpoint}"):
            self.client("dynamodb").put_item(TableName=self.table, Item=item)

    def clear_flag(self, endpoint: str, flag: str) -> None:
        with mapped(f"clearing {flag} on {endpoint}"):
            self.client("dynamodb").delete_item(TableName=self.table, Key=_key(endpoint, f"flag#{flag}"))

    def flag(self, endpoint: str, flag: str) -> dict[str, str] | None:
        with mapped(f"reading {flag} of {endpoint}"):
            item = self.client("dynamodb").get_item(
                TableName=self.table, Key=_key(endpoint, f"flag#{flag}"), ConsistentRead=True
            )
        found = item.get("Item")
        return {k: v["S"] for k, v in found.items() if k not in ("pk", "sk")} if found else None

    def locks(self) -> list[dict[str, str]]:
        """Every endpoint's lock: endpoint, owner (the run), execution, successor, package, lease_until, version."""
        found = []
        with mapped("scanning rollout locks"):
            pages = (
                self.client("dynamodb")
                .get_paginator("scan")
                .paginate(
                    TableName=self.table,
                    FilterExpression="sk = :lock",
                    ExpressionAttributeValues={":lock": {"S": "lock"}},
                    ConsistentRead=True,
                )
            )
            for page in pages:
                for item in page.get("Items", []):
                    found.append({"endpoint": item["pk"]["S"].removeprefix("endpoint#")} | _lock_fields(item))
        return found
