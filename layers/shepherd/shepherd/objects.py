"""An S3 object as Shepherd records it in lineage: key, version id, size, ETag."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DataObject(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    version_id: str | None = None
    size: int = Field(ge=0)
    etag: str | None = None
    last_modified: str | None = None


__all__ = ["DataObject"]
