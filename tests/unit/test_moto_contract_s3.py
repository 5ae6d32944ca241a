"""Contract tests: the moto S3 internals batch transform uses (localcloud/sagemaker/transform_s3.py).

``InProcessS3`` reads and writes objects through moto's S3 backend when the local cloud serves S3
from the same process. These tests hold those internals to their shape, and check that an object
written through the backend looks, to the S3 API, like one written through it: same body, ETag,
checksum, content type, and ObjectCreated notification.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localcloud.sagemaker.transform_s3 import PART_SIZE, InProcessS3, S3Writer


def _params(obj: object) -> list[str]:
    return list(inspect.signature(obj).parameters)  # type: ignore[arg-type]


def test_backend_dict_maps_buckets_to_partition_and_account():
    from moto.s3.models import S3Backend, s3_backends

    assert isinstance(s3_backends.bucket_accounts, dict)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="contract-map")
        partition, account = s3_backends.bucket_accounts["contract-map"]
        assert isinstance(s3_backends[account][partition], S3Backend)


def test_backend_method_signatures():
    from moto.s3.models import FakeBucket, FakeKey, S3Backend

    assert _params(S3Backend.get_object)[:3] == ["self", "bucket_name", "key_name"]
    assert _params(S3Backend.get_bucket) == ["self", "bucket_name"]
    put = _params(S3Backend.put_object)
    assert put[:4] == ["self", "bucket_name", "key_name", "value"]
    assert {"storage", "checksum_value"} <= set(put)
    assert _params(S3Backend.create_multipart_upload) == [
        "self",
        "bucket_name",
        "key_name",
        "metadata",
        "storage_type",
        "tags",
        "acl",
        "sse_encryption",
        "kms_key_id",
    ]
    assert _params(S3Backend.upload_part) == ["self", "bucket_name", "multipart_id", "part_id", "value"]
    assert _params(S3Backend.complete_multipart_upload) == ["self", "bucket_name", "multipart_id", "body"]
    assert _params(S3Backend.abort_multipart_upload) == ["self", "bucket_name", "multipart_id"]
    for name in ("value", "etag", "storage_class"):
        assert isinstance(inspect.getattr_static(FakeKey, name), property)
    assert callable(FakeKey.set_acl)
    assert "object_lock_enabled" in inspect.getsource(FakeBucket)


@pytest.fixture
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="contract-s3")
        yield client


def _head(s3: Any, key: str) -> dict[str, Any]:
    head = s3.head_object(Bucket="contract-s3", Key=key, ChecksumMode="ENABLED")
    return {k: v for k, v in head.items() if k not in ("ResponseMetadata", "LastModified")}


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1000], ids=["put", "multipart"])
def test_objects_written_through_the_backend_look_like_the_apis(s3, size):
    body = (b"0.125\n" * (size // 6 + 1))[:size]
    backend = InProcessS3().writable("contract-s3", "events.out")
    assert backend is not None
    for key, target in (("api.out", None), ("direct.out", backend)):
        writer = S3Writer(s3, "contract-s3", key, target)
        writer.write(body)
        writer.close()
    assert s3.get_object(Bucket="contract-s3", Key="direct.out")["Body"].read() == body
    assert _head(s3, "direct.out") == _head(s3, "api.out")


def test_reads_come_whole_and_archived_or_missing_objects_fall_back(s3):
    s3.put_object(Bucket="contract-s3", Key="in.csv", Body=b"1,2\n3,4\n")
    s3.put_object(Bucket="contract-s3", Key="cold.csv", Body=b"1\n", StorageClass="GLACIER")
    direct = InProcessS3()
    assert direct.read("contract-s3", "in.csv") == b"1,2\n3,4\n"
    assert direct.read("contract-s3", "cold.csv") is None  # GetObject's InvalidObjectState is the API's to give
    assert direct.read("contract-s3", "missing.csv") is None
    assert direct.read(f"no-such-{uuid.uuid4().hex[:8]}", "x") is None


def test_object_lock_buckets_are_written_through_the_api(s3):
    s3.create_bucket(Bucket="contract-locked", ObjectLockEnabledForBucket=True)
    assert InProcessS3().writable("contract-locked", "x") is None


def test_a_backend_put_sends_the_object_created_notification(s3):
    from moto.s3 import notifications

    seen: list[str] = []
    original = notifications.send_event

    def record(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        seen.append(str(event_name))
        original(account_id, event_name, bucket, key)

    notifications.send_event = record
    try:
        writer = S3Writer(s3, "contract-s3", "events.out", InProcessS3().writable("contract-s3", "events.out"))
        writer.write(b"1\n")
        writer.close()
    finally:
        notifications.send_event = original
    assert seen == [str(notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT)]
