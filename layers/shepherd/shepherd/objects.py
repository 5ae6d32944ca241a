"""S3 objects: one as Shepherd records it in lineage (key, version id, size, ETag), s3:// URIs, JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DataObject(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    version_id: str | None = None
    size: int = Field(ge=0)
    etag: str | None = None
    last_modified: str | None = None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; ValueError for anything else. The one parser of S3 URIs."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def json_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of JSON Lines (data capture, feedback); a line that is not one is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


__all__ = ["DataObject", "json_objects", "split_s3_uri"]
