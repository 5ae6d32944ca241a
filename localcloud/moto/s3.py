"""moto's S3: bucket policies left to the local cloud's IAM, S3 → EventBridge in AWS's shape, and direct object I/O."""

from __future__ import annotations

import base64
import datetime
import functools
import logging
import threading
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

from localcloud.moto import events
from localcloud.moto.core import in_process_mock

log = logging.getLogger("shepherd.local.events")

ARCHIVE_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # GetObject refuses these until restored
_S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def patch() -> None:
    _patch_event_bridge_notifications()
    _patch_bucket_policy_check()


def _patch_bucket_policy_check() -> None:
    """moto refuses object requests a bucket policy's Deny names, ignoring its Principal and Condition: the template's
    Deny on aws:SecureTransport "false" would refuse every request. The local cloud's IAM middleware evaluates bucket
    policies for its own principals (localcloud/iam/authorizer.py); other callers keep full access."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    original = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if in_process_mock():  # moto's own behaviour
            return original(self, action, resource)
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission


def _patch_event_bridge_notifications() -> None:
    """S3 → EventBridge in AWS's shape, to every rule on the default bus, one bad rule stopping none."""
    from moto.s3 import notifications

    def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        obj: dict[str, Any] = {
            "key": key.name,
            "size": key.size,
            "etag": key.etag.replace('"', ""),
            "sequencer": f"{uuid.uuid4().int >> 64:016X}",
        }
        if key.version_id and key.version_id != "null":
            obj["version-id"] = key.version_id
        detail: dict[str, Any] = {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
        }
        if event_name in _S3_REASONS:
            detail["reason"] = _S3_REASONS[event_name]
        if "ObjectRemoved" in event_name:
            detail["deletion-type"] = "Delete Marker Created" if "DeleteMarker" in event_name else "Permanently Deleted"
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": notifications._detail_type(event_name),
            "source": "aws.s3",
            "account": account_id,
            "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": detail,
        }
        for rule in events.default_bus_rules(account_id, bucket.region_name):
            try:
                rule.send_to_targets(event, transform_input=True)
            except Exception:
                log.exception("rule %s failed on %s", rule.name, event["detail-type"])

    just_created = threading.local()
    original_send_event = notifications.send_event

    @functools.wraps(original_send_event)
    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        kinds = notifications.S3NotificationEvent
        if event_name in (kinds.OBJECT_CREATED_PUT_EVENT, kinds.OBJECT_CREATED_POST_EVENT):
            just_created.key = key
        elif event_name == kinds.OBJECT_TAGGING_PUT_EVENT and getattr(just_created, "key", None) is key:
            just_created.key = None  # PutObject's implicit tagging call: AWS sends no event for it
            return
        original_send_event(account_id, event_name, bucket, key)

    notifications._send_event_bridge_message = send_event_bridge_message
    notifications.send_event = send_event


def _crc32(data: bytes | bytearray) -> str:
    """boto3 sends PutObject bodies with a CRC32 checksum (base64 of the big-endian value), which S3 keeps."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


class DirectClient:
    """The object calls an S3 client makes, made on moto's S3 backend itself: no HTTP, signing or chunking.

    They give the same objects and events as the API: PutObject's CRC32 checksum and the bucket's ACL, the
    ObjectCreated notifications. tests/unit/test_moto_contract_s3.py holds the internals used here to their shape.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    @classmethod
    def holding(cls, bucket: str) -> DirectClient | None:
        """The client of the backend that holds ``bucket`` in this process, or None."""
        try:
            from moto.s3.models import s3_backends

            partition, account = s3_backends.bucket_accounts[bucket]
            return cls(s3_backends[account][partition])
        except Exception:
            return None

    def get_object(self, bucket: str, key: str) -> bytes | None:
        """The object's body; None when it is missing or archived (the API's error is the one to report)."""
        try:
            found = self._backend.get_object(bucket, key)
        except Exception:
            return None
        if found is None or found.storage_class in ARCHIVE_STORAGE_CLASSES:
            return None
        return bytes(found.value)

    def object_lock_enabled(self, bucket: str) -> bool | None:
        """Whether the bucket has Object Lock, which writes here would bypass; None when it cannot be read."""
        try:
            target = self._backend.get_bucket(bucket)
        except Exception:
            return None
        return bool(target.object_lock_enabled)

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        written = self._backend.put_object(bucket, key, body, storage="STANDARD", checksum_value=_crc32(body))
        written.checksum_algorithm = "CRC32"
        written.set_acl(self._backend.get_bucket(bucket).acl)

    def create_multipart_upload(self, bucket: str, key: str) -> str:
        """A new upload's id."""
        from moto.s3.utils import CaseInsensitiveDict

        return str(
            self._backend.create_multipart_upload(
                bucket, key, CaseInsensitiveDict(), "STANDARD", {}, None, None, None
            ).id
        )

    def upload_part(self, bucket: str, upload_id: str, number: int, body: bytes) -> str:
        """The part's ETag."""
        return str(self._backend.upload_part(bucket, upload_id, number, body).etag)

    def complete_multipart_upload(self, bucket: str, upload_id: str, parts: Iterable[tuple[int, str]]) -> None:
        """Complete an upload of (PartNumber, ETag) parts."""
        self._backend.complete_multipart_upload(bucket, upload_id, parts)

    def abort_multipart_upload(self, bucket: str, upload_id: str) -> None:
        self._backend.abort_multipart_upload(bucket, upload_id)


def __getattr__(name: str) -> Any:
    """s3_backends, imported on first use."""
    if name == "s3_backends":
        from moto.s3.models import s3_backends

        return s3_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
