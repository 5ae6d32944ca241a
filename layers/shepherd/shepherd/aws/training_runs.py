"""What PrepareTraining reads besides the bucket listing: a data file's first bytes, and the packages already made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.errors import NotFound

CHUNK_BYTES = 64 * 2**10


def read_head(bucket: str, key: str, version_id: str | None, limit: int) -> Iterator[bytes]:
    """An object version's first ``limit`` bytes in chunks: a ranged GET, so S3 sends no more than that."""
    extra = {"VersionId": version_id} if version_id else {}
    with mapped(f"reading s3://{bucket}/{key}"):
        body = client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max(limit, 1) - 1}", **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()


def recent_packages(group: str, limit: int) -> Iterator[dict[str, Any]]:
    """The group's newest packages, newest first, each described (its metadata); none when the group is new."""
    try:
        with mapped(f"listing the packages of {group}"):
            listed = client("sagemaker").list_model_packages(
                ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
            )["ModelPackageSummaryList"]
    except NotFound:
        return
    for summary in listed:
        with mapped(f"describing {summary['ModelPackageArn']}"):
            yield dict(client("sagemaker").describe_model_package(ModelPackageName=summary["ModelPackageArn"]))
