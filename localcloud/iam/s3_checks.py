"""S3's operations, which AWS authorizes otherwise than ``s3:<Operation>``, and the KMS checks of SSE-KMS objects."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import Any
from urllib.parse import unquote

from localcloud.iam import ContextValue
from localcloud.iam.actions import action_named
from localcloud.iam.resolve import Request

# S3: "Required permissions for Amazon S3 API operations" (AmazonS3/latest/userguide/using-with-s3-policy-actions.html)
# and the Permissions section of each operation's API reference (botocore's model documentation carries it):
# HeadObject and SelectObjectContent are s3:GetObject, listing is s3:ListBucket (HeadBucket too), the multipart
# operations and CopyObject's target are s3:PutObject, DeleteObjects is s3:DeleteObject per key, a bucket
# subresource's delete is its put.
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "SelectObjectContent": "GetObject",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
    "ListBuckets": "ListAllMyBuckets",
    "GetBucketCors": "GetBucketCORS",
    "PutBucketCors": "PutBucketCORS",
    "DeleteBucketCors": "PutBucketCORS",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketLifecycle": "GetLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycle": "PutLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketReplication": "GetReplicationConfiguration",
    "PutBucketReplication": "PutReplicationConfiguration",
    "DeleteBucketReplication": "PutReplicationConfiguration",
    "DeleteBucketTagging": "PutBucketTagging",
    "GetBucketAccelerateConfiguration": "GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "PutAccelerateConfiguration",
    "GetBucketAnalyticsConfiguration": "GetAnalyticsConfiguration",
    "ListBucketAnalyticsConfigurations": "GetAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "GetBucketInventoryConfiguration": "GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "PutInventoryConfiguration",
    "GetBucketMetricsConfiguration": "GetMetricsConfiguration",
    "ListBucketMetricsConfigurations": "GetMetricsConfiguration",
    "PutBucketMetricsConfiguration": "PutMetricsConfiguration",
    "DeleteBucketMetricsConfiguration": "PutMetricsConfiguration",
    "GetBucketIntelligentTieringConfiguration": "GetIntelligentTieringConfiguration",
    "ListBucketIntelligentTieringConfigurations": "GetIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "PutBucketObjectLockConfiguration",
    "DeleteBucketOwnershipControls": "PutBucketOwnershipControls",
}
# With a versionId: "If you include a versionId in your request header, you must have the s3:GetObjectVersion
# permission" (GetObject), "s3:DeleteObjectVersion - To delete a specific version of an object" (DeleteObject[s]).
_S3_VERSIONED = {
    "GetObject": "GetObjectVersion",
    "HeadObject": "GetObjectVersion",
    "GetObjectAcl": "GetObjectVersionAcl",
    "PutObjectAcl": "PutObjectVersionAcl",
    "GetObjectTagging": "GetObjectVersionTagging",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
    "DeleteObject": "DeleteObjectVersion",
    "GetObjectAttributes": "GetObjectVersionAttributes",
    "GetObjectTorrent": "GetObjectVersionTorrent",
}
_S3_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})
_ACL_HEADERS = (
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)


def describe_s3(request: Request) -> None:
    op, params = request.call.operation, request.params
    bucket, key = params.get("Bucket"), params.get("Key")
    if op == "DeleteObjects":  # "s3:DeleteObject - To delete an object ... s3:DeleteObjectVersion - ... a version"
        objects = (params.get("Delete") or {}).get("Objects") or []
        for obj in objects if isinstance(objects, list) else []:
            version = obj.get("VersionId") if isinstance(obj, dict) else None
            action = "DeleteObjectVersion" if version else "DeleteObject"
            name = obj.get("Key") if isinstance(obj, dict) else None
            request.generic(f"s3:{action}", {"Bucket": bucket, "Key": name, "VersionId": version})
        if not objects:
            request.approximate("s3:DeleteObject")
        return
    name = (_S3_VERSIONED.get(op) if params.get("VersionId") else None) or _S3_ACTIONS.get(op, op)
    request.generic(f"s3:{name}")
    if op == "GetObjectAttributes":  # "you need both the s3:GetObjectVersion and s3:GetObjectVersionAttributes"
        request.generic("s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject", extras=False)
    if op in _S3_WRITES:
        # The PutObject API reference: "To successfully change the objects ACL of your PutObject request, you must
        # have the s3:PutObjectAcl", and likewise s3:PutObjectTagging "to set the tag-set with your PutObject request".
        if any(h in request.headers for h in _ACL_HEADERS):
            request.generic("s3:PutObjectAcl", extras=False)
        if request.headers.get("x-amz-tagging"):
            request.generic("s3:PutObjectTagging", extras=False)
    source = _copy_source(params.get("CopySource")) if op in ("CopyObject", "UploadPartCopy") else None
    if op in ("CopyObject", "UploadPartCopy"):
        # "you must have s3:GetObject permission to read the source object that is being copied" (CopyObject).
        if source is None:
            request.approximate("s3:GetObject")
        else:
            action = "s3:GetObjectVersion" if source[2] else "s3:GetObject"
            request.generic(action, {"Bucket": source[0], "Key": source[1], "VersionId": source[2]}, extras=False)
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str):
        return
    _s3_kms(request, op, bucket, key, source)


def _copy_source(value: Any) -> tuple[str, str, str | None] | None:
    """x-amz-copy-source: ``bucket/key`` or ``/bucket/key?versionId=v``, URL-encoded."""
    if not isinstance(value, str) or value.startswith("arn:"):
        return None
    path, _, version = value.partition("?versionId=")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    return (bucket, key, version or None) if bucket and key else None


def _s3_kms(request: Request, op: str, bucket: str, key: str, source: tuple[str, str, str | None] | None) -> None:
    """The KMS checks of SSE-KMS ("Using server-side encryption with AWS KMS keys", UsingKMSEncryption.html, and each
    operation's API reference): reading an object needs kms:Decrypt on its key (HeadObject only with
    x-amz-checksum-mode, "to retrieve the checksum of the object"); writing one kms:GenerateDataKey; a multipart
    upload "kms:GenerateDataKey action for the CreateMultipartUpload API ... kms:Decrypt action on the UploadPart and
    UploadPartCopy APIs" (CreateMultipartUpload)."""
    obj = f"arn:aws:s3:::{bucket}/{key}"
    lookups = request.lookups
    if op in ("GetObject", "SelectObjectContent") or (
        op == "HeadObject" and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    ):
        _kms_via_s3(request, "kms:Decrypt", lookups.object_kms_key(bucket, key), obj, bucket)
    if source is not None:
        source_key = lookups.object_kms_key(source[0], source[1])
        _kms_via_s3(request, "kms:Decrypt", source_key, f"arn:aws:s3:::{source[0]}/{source[1]}", source[0])
    if op in _S3_WRITES:
        sse = request.headers.get("x-amz-server-side-encryption", "")
        key_id = request.headers.get("x-amz-server-side-encryption-aws-kms-key-id")
        if sse.startswith("aws:kms") and key_id:
            arn = request.key_arn(key_id)
            if arn is None:
                request.approximate("kms:GenerateDataKey")
            _kms_via_s3(request, "kms:GenerateDataKey", arn, obj, bucket)
        elif not sse:  # the bucket's default encryption; aws:kms without a key id is the AWS managed aws/s3 key
            _kms_via_s3(request, "kms:GenerateDataKey", lookups.bucket_kms_key(bucket), obj, bucket)
    if op in ("UploadPart", "UploadPartCopy"):  # the upload's key: the bucket default (a request key is not kept)
        _kms_via_s3(request, "kms:Decrypt", lookups.bucket_kms_key(bucket), obj, bucket)


def _kms_via_s3(request: Request, name: str, key_arn: str | None, obj: str, bucket: str) -> None:
    if not key_arn:
        return
    action = action_named(name)
    bucket_key = request.headers.get("x-amz-server-side-encryption-bucket-key-enabled", "").lower() == "true"
    encryption_context = {"aws:s3:arn": f"arn:aws:s3:::{bucket}" if bucket_key else obj}
    extra = request.headers.get("x-amz-server-side-encryption-context")
    if extra:
        with contextlib.suppress(ValueError, binascii.Error, AttributeError):
            encryption_context.update({str(k): str(v) for k, v in json.loads(base64.b64decode(extra)).items()})
    context: dict[str, ContextValue] = {
        "kms:ViaService": f"s3.{request.region}.amazonaws.com",
        "kms:CallerAccount": request.account,
        "kms:EncryptionContextKeys": tuple(encryption_context),
        **{f"kms:EncryptionContext:{k}": v for k, v in encryption_context.items()},
    }
    request.add(name, key_arn, {k: v for k, v in context.items() if action is None or action.supports(k)})
