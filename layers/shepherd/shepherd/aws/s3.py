"""The data bucket: reading configs and code, listing a dataset's exact versions, writing artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shepherd.aws.clients import client
from shepherd.aws.errors import code_of, mapped
from shepherd.errors import NotFound

if TYPE_CHECKING:  # pydantic, imported where it is used: the judge reads S3 without it
    from shepherd.objects import DataObject


def read_bytes(bucket: str, key: str, version_id: str | None = None) -> bytes:
    """An object's bytes; NotFound when it does not exist, also where S3 answers that with AccessDenied.

    Without s3:ListBucket on the bucket S3 answers a missing key with 403, and a ListBucket allowed only for
    some s3:prefix does not count (GetObject's request has no prefix): the listing of the key itself, which
    such a grant allows, tells a missing object from a denied one."""
    from botocore.exceptions import ClientError

    extra = {"VersionId": version_id} if version_id else {}
    with mapped(f"reading s3://{bucket}/{key}"):
        try:
            return bytes(client("s3").get_object(Bucket=bucket, Key=key, **extra)["Body"].read())
        except ClientError as exc:
            if code_of(exc) == "AccessDenied" and not version_id and _listed(bucket, key) is False:
                raise NotFound(f"reading s3://{bucket}/{key}: no such object") from exc
            raise


def _listed(bucket: str, key: str) -> bool | None:
    """Whether the key is listed; None when listing is not allowed either."""
    from botocore.exceptions import ClientError

    try:
        listed = client("s3").list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except ClientError:
        return None
    return any(item["Key"] == key for item in listed.get("Contents", []))


def write_bytes(bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str | None:
    """Write an object (encrypted by the bucket's default KMS key); returns its version id."""
    with mapped(f"writing s3://{bucket}/{key}"):
        response = client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return response.get("VersionId")


def latest_objects(bucket: str, prefix: str) -> list[DataObject]:
    """Every current object under prefix with its version id (folder placeholders left out)."""
    from shepherd.objects import DataObject

    found: list[DataObject] = []
    with mapped(f"listing s3://{bucket}/{prefix}"):
        pages = client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for version in page.get("Versions", []):
                if version.get("IsLatest") and not version["Key"].endswith("/"):
                    found.append(
                        DataObject(
                            key=version["Key"],
                            version_id=None if version.get("VersionId") in (None, "null") else version["VersionId"],
                            size=int(version.get("Size", 0)),
                            etag=str(version.get("ETag", "")).strip('"') or None,
                            last_modified=str(version.get("LastModified") or "") or None,
                        )
                    )
    return sorted(found, key=lambda o: o.key)


def keys(bucket: str, prefix: str) -> list[str]:
    """The keys under prefix, in S3's (lexicographic) order, folder placeholders left out."""
    found: list[str] = []
    with mapped(f"listing s3://{bucket}/{prefix}"):
        for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return found


def listing(bucket: str, prefix: str) -> list[tuple[str, float]]:
    """(key, LastModified epoch) under prefix, in S3's order, folder placeholders left out: ListObjectsV2 gives
    each object's LastModified with its key
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html, Contents)."""
    found: list[tuple[str, float]] = []
    with mapped(f"listing s3://{bucket}/{prefix}"):
        for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            contents = page.get("Contents", [])
            found.extend((o["Key"], o["LastModified"].timestamp()) for o in contents if not o["Key"].endswith("/"))
    return found


def move(bucket: str, key: str, version_id: str | None, target: str) -> None:
    """Copy an object version to target, then delete the source key (the bucket keeps its old version)."""
    source = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    with mapped(f"moving s3://{bucket}/{key} to {target}"):
        client("s3").copy_object(Bucket=bucket, Key=target, CopySource=source)
        client("s3").delete_object(Bucket=bucket, Key=key)
