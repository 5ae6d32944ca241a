"""A missing config is NotFound even where S3 answers 403 for it (no unconditioned s3:ListBucket)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from shepherd.aws import s3
from shepherd.errors import NotFound, ShepherdError

KEY = "models/churn/shepherd.yaml"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    monkeypatch.setattr(s3, "client", lambda service: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_a_403_for_a_key_the_listing_does_not_show_is_not_found(stub: Stubber) -> None:
    # S3's GetObject: without s3:ListBucket (a prefix-conditioned grant does not apply to GetObject), a missing
    # key answers 403 AccessDenied.
    stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    listing = {"Contents": [{"Key": "models/churn/shepherd.yaml.bak"}], "KeyCount": 1}
    stub.add_response("list_objects_v2", listing, {"Bucket": "b", "Prefix": KEY, "MaxKeys": 1})
    with pytest.raises(NotFound, match="no such object"):
        s3.read_bytes("b", KEY)


def test_a_403_for_a_listed_key_stays_access_denied(stub: Stubber) -> None:
    stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": KEY}], "KeyCount": 1})
    with pytest.raises(ShepherdError, match="AccessDenied") as raised:
        s3.read_bytes("b", KEY)
    assert not isinstance(raised.value, NotFound)


def test_a_403_where_listing_is_denied_too_stays_access_denied(stub: Stubber) -> None:
    stub.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    stub.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", 403)
    with pytest.raises(ShepherdError, match="AccessDenied") as raised:
        s3.read_bytes("b", KEY)
    assert not isinstance(raised.value, NotFound)


def test_the_listing_gives_each_objects_last_modified(stub: Stubber) -> None:
    # ListObjectsV2's Contents carry LastModified with each key
    # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html); the judge files a label at it
    from datetime import UTC, datetime

    at = datetime(2026, 11, 25, 10, 3, 7, tzinfo=UTC)
    contents = [{"Key": "feedback/churn/2026/11/25/10/"}, {"Key": "feedback/churn/2026/11/25/10/a.jsonl"}]
    page = {"Contents": [item | {"LastModified": at} for item in contents], "KeyCount": 2, "IsTruncated": False}
    stub.add_response("list_objects_v2", page, {"Bucket": "b", "Prefix": "feedback/churn/"})
    assert s3.listing("b", "feedback/churn/") == [("feedback/churn/2026/11/25/10/a.jsonl", at.timestamp())]
