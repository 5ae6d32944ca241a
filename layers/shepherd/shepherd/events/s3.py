"""S3 "Object Created" events as EventBridge delivers them, and what a data-bucket key means."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shepherd import objects
from shepherd.events.names import execution_name


class MalformedEvent(ValueError):
    """An event that is not what the rule promised; the message says which field is wrong."""


class S3Bucket(BaseModel):
    name: str


class S3Object(BaseModel):
    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    etag: str | None = None
    version_id: str | None = Field(default=None, alias="version-id")


class ObjectCreatedDetail(BaseModel):
    bucket: S3Bucket
    object: S3Object
    reason: str | None = None


class ObjectCreatedEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    source: Literal["aws.s3"]
    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    time: str
    region: str
    detail: ObjectCreatedDetail


class ClassifiedKey(BaseModel):
    """A key under one of the data bucket's prefixes: <area>/<model>/<rest>."""

    area: Literal["training", "batch", "models", "feedback"]
    model: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", max_length=63)
    rest: str


def parse_object_created(event: object) -> ObjectCreatedEvent:
    try:
        return ObjectCreatedEvent.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MalformedEvent(f"not an S3 Object Created event: {problems}") from exc


def classify_key(key: str) -> ClassifiedKey:
    parts = key.split("/", 2)
    if len(parts) < 3 or not parts[2]:
        raise MalformedEvent(f"key {key!r} is not <area>/<model>/<path>")
    try:
        return ClassifiedKey(area=parts[0], model=parts[1], rest=parts[2])  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise MalformedEvent(f"key {key!r}: {problems}") from exc


MARKER = "_READY"


class DatasetMarker(BaseModel):
    """training/<model>/<dataset>/_READY: the object that says a dataset is complete."""

    model: str
    dataset: str
    key: str

    @property
    def prefix(self) -> str:
        return f"training/{self.model}/{self.dataset}/"


def dataset_marker(key: str) -> DatasetMarker:
    data = classify_key(key)
    dataset, _, name = data.rest.rpartition("/")
    if data.area != "training" or name != MARKER or not dataset:
        raise MalformedEvent(f"key {key!r} is not a dataset marker training/<model>/<dataset>/{MARKER}")
    return DatasetMarker(model=data.model, dataset=dataset, key=key)


def newest_markers(listing: Iterable[objects.DataObject]) -> list[tuple[DatasetMarker, str]]:
    """Each model's most recently marked dataset in a listing of training/, with its marker's version (or ETag)."""
    newest: dict[str, tuple[str, DatasetMarker, str]] = {}
    for found in listing:
        if not found.key.endswith(f"/{MARKER}"):
            continue
        try:
            marker = dataset_marker(found.key)
        except MalformedEvent:
            continue
        stamp = found.last_modified or ""
        if marker.model not in newest or stamp > newest[marker.model][0]:
            newest[marker.model] = (stamp, marker, found.version_id or found.etag or "")
    return [(marker, version) for _, marker, version in newest.values()]


def lifecycle_run(bucket: str, marker: DatasetMarker, version: str) -> tuple[str, dict[str, Any]]:
    """The ModelLifecycle execution a marker starts: its name, one per bucket, key and version, and its input."""
    name = execution_name(f"{marker.model}-{marker.dataset}", bucket, marker.key, version)
    payload = {
        "model": marker.model,
        "dataset": marker.dataset,
        "bucket": bucket,
        "prefix": marker.prefix,
        "marker": marker.key,
        "marker_version": version,
    }
    return name, payload
