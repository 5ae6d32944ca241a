"""The cloud's state that describing a request needs (localcloud.iam.requests.Lookups), read from moto's backends.

Every method answers None rather than raise: moto's stores are read while other threads change them, and a
resource that does not exist is the service's to refuse, not the describer's. Backends are looked up in the
account and region the lookups were made for (a key ARN names its own), never created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("shepherd.local.iam")

ACCOUNT = "123456789012"
REGION = "us-east-1"
_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


def _existing(backends: Any, account: str, region: str) -> Iterator[Any]:
    """The backend of the region first, then those of the account's other regions that exist (none is created)."""
    regional = dict.get(backends, account)  # dict.get: BackendDict's [] would create the account's backends
    if regional is None:
        return
    own = dict.get(regional, region)
    if own is not None:
        yield own
    yield from (b for r, b in list(dict.items(regional)) if r != region)


class MotoLookups:
    """Lookups on moto's in-process backends, for account 123456789012 unless told otherwise."""

    def __init__(self, account: str = ACCOUNT, region: str = REGION) -> None:
        self.account = account
        self.region = region

    def kms_key_arn(self, key_id: str) -> str | None:
        """A key's ARN from its id, its ARN, alias/name or an alias ARN."""
        try:
            account, region, name = self.account, self.region, key_id
            if key_id.startswith("arn:"):
                parts = key_id.split(":", 5)
                region, account, name = parts[3], parts[4], parts[5]
            from localcloud.moto.kms import kms_backends

            for backend in _existing(kms_backends, account, region):
                keys = dict(backend.keys)
                if name.startswith("alias/"):
                    key = next((k for k in keys.values() if name in getattr(k, "aliases", {})), None)
                else:
                    key = keys.get(name.removeprefix("key/"))
                if key is not None:
                    return str(key.arn)
                if key_id.startswith("arn:"):
                    break  # an ARN names its region
        except Exception:
            log.debug("no KMS key %s", key_id, exc_info=True)
        return None

    def _bucket(self, bucket: str) -> Any:
        from localcloud.moto.s3 import s3_backends

        partition, owner = s3_backends.bucket_accounts.get(bucket, (None, None))
        if owner is None or partition is None:
            return None
        backend = next(_existing(s3_backends, owner, partition), None)
        return None if backend is None else backend.buckets.get(bucket)

    def _key_arn(self, key_id: Any) -> str | None:
        if not key_id:
            return None
        return self.kms_key_arn(str(key_id)) or (str(key_id) if ":key/" in str(key_id) else None)

    def bucket_kms_key(self, bucket: str) -> str | None:
        """The KMS key of the bucket's default encryption when it is SSE-KMS with a key of its own (not aws/s3)."""
        try:
            found = self._bucket(bucket)
            rules = (getattr(found, "encryption", None) or {}).get("Rule")
            for rule in rules if isinstance(rules, list) else [rules]:
                default = (rule or {}).get("ApplyServerSideEncryptionByDefault") or {}
                if default.get("SSEAlgorithm") in _KMS_ALGORITHMS:
                    return self._key_arn(default.get("KMSMasterKeyID"))
        except Exception:
            log.debug("no encryption for bucket %s", bucket, exc_info=True)
        return None

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        """The KMS key an object (its current version) is encrypted with."""
        try:
            found = self._bucket(bucket)
            obj = found.keys.get(key) if found is not None else None
            if obj is not None and getattr(obj, "encryption", None) in _KMS_ALGORITHMS:
                return self._key_arn(getattr(obj, "kms_key_id", None))
        except Exception:
            log.debug("no object %s/%s", bucket, key, exc_info=True)
        return None

    def task_token_owner(self, token: str) -> str | None:
        """The state machine whose running task issued the token: moto's Step Functions engine keeps each execution's
        callbacks in its environment's CallbackPoolManager, keyed by task token (SendTaskSuccess looks it up there)."""
        try:
            # The engine's backends (moto.stepfunctions.responses.get_backend with execute_state_machine on).
            from localcloud.moto.stepfunctions import stepfunctions_parser_backends

            for backend in _existing(stepfunctions_parser_backends, self.account, self.region):
                for machine in list(backend.state_machines):
                    for execution in list(getattr(machine, "executions", ())):
                        worker = getattr(execution, "exec_worker", None)
                        pool = getattr(getattr(worker, "env", None), "callback_pool_manager", None)
                        if pool is not None and pool.get(token) is not None:
                            # A version's execution is its state machine's (the version's source_arn).
                            machine_arn = getattr(execution.state_machine, "source_arn", None)
                            return str(machine_arn or execution.state_machine_arn)
        except Exception:
            log.debug("no owner for task token", exc_info=True)
        return None
