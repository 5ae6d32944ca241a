"""S3 objects: one as Shepherd records it in lineage (key, version id, size, ETag), and the s3:// URI's parts."""

from __future__ import annotations

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


__all__ = ["DataObject", "split_s3_uri"]
