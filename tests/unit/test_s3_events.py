"""Tests for shepherd.events.s3: EventBridge "Object Created" events and data-bucket keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from shepherd.events.s3 import (
    MalformedEvent,
    classify_key,
    dataset_marker,
    lifecycle_run,
    newest_markers,
    parse_object_created,
)
from shepherd.objects import DataObject

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_EVENT = ROOT / "events" / "s3_object_created.json"


@pytest.fixture
def event() -> dict[str, Any]:
    """A fresh copy of the sample event, shaped as EventBridge delivers it."""
    return json.loads(SAMPLE_EVENT.read_text())


def without(event: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The event with the field at a dotted path removed."""
    broken = copy.deepcopy(event)
    *parents, leaf = dotted.split(".")
    target = broken
    for part in parents:
        target = target[part]
    del target[leaf]
    return broken


# ---------------------------------------------------------------- parse_object_created


def test_sample_event_parses(event: dict[str, Any]) -> None:
    # Given the sample EventBridge event for a PutObject
    # When it is parsed
    created = parse_object_created(event)
    # Then the envelope fields come through
    assert created.id == "17793124-05d4-b198-2fde-7ededc63b103"
    assert created.source == "aws.s3"
    assert created.detail_type == "Object Created"
    assert created.region == "us-east-1"
    assert created.time == "2024-03-08T09:30:00Z"


def test_sample_event_detail_parses(event: dict[str, Any]) -> None:
    # Given the sample event
    # When it is parsed
    detail = parse_object_created(event).detail
    # Then bucket, object and reason come through, including the hyphenated version-id
    assert detail.bucket.name == "shepherd-data-123456789012"
    assert detail.object.key == "training/churn/2024-03-08/train.csv"
    assert detail.object.size == 5242880
    assert detail.object.etag == "b1946ac92492d2347c6235b4d2611184"
    assert detail.object.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    assert detail.reason == "PutObject"


def test_unversioned_object_has_no_version_id(event: dict[str, Any]) -> None:
    # Given an event from a bucket without versioning (no version-id)
    # When it is parsed
    created = parse_object_created(without(event, "detail.object.version-id"))
    # Then version_id is None
    assert created.detail.object.version_id is None


def test_sample_event_key_classifies(event: dict[str, Any]) -> None:
    # Given the sample event's key
    key = parse_object_created(event).detail.object.key
    # When it is classified
    data = classify_key(key)
    # Then it is training data for the churn model
    assert (data.area, data.model, data.rest) == ("training", "churn", "2024-03-08/train.csv")


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "source",
        "detail-type",
        "time",
        "region",
        "detail",
        "detail.bucket",
        "detail.bucket.name",
        "detail.object",
        "detail.object.key",
        "detail.object.size",
    ],
)
def test_missing_field_is_named(event: dict[str, Any], field: str) -> None:
    # Given the sample event without one required field
    broken = without(event, field)
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(broken)
    # Then the error names that field by its path
    assert f"{field}:" in str(err.value)


def test_other_source_is_refused(event: dict[str, Any]) -> None:
    # Given an event from another service
    event["source"] = "aws.ec2"
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(event)
    # Then the error names the source field
    assert "source:" in str(err.value)


def test_other_detail_type_is_refused(event: dict[str, Any]) -> None:
    # Given an S3 "Object Deleted" event
    event["detail-type"] = "Object Deleted"
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(event)
    # Then the error names the detail-type field
    assert "detail-type:" in str(err.value)


def test_negative_size_is_refused(event: dict[str, Any]) -> None:
    # Given an object with a negative size
    event["detail"]["object"]["size"] = -1
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(event)
    # Then the error names the size field
    assert "detail.object.size:" in str(err.value)


def test_empty_key_is_refused(event: dict[str, Any]) -> None:
    # Given an object with an empty key
    event["detail"]["object"]["key"] = ""
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(event)
    # Then the error names the key field
    assert "detail.object.key:" in str(err.value)


def test_every_problem_is_reported(event: dict[str, Any]) -> None:
    # Given an event missing both the bucket name and the object key
    broken = without(without(event, "detail.bucket.name"), "detail.object.key")
    # When it is parsed
    with pytest.raises(MalformedEvent) as err:
        parse_object_created(broken)
    # Then both fields are named
    assert "detail.bucket.name:" in str(err.value)
    assert "detail.object.key:" in str(err.value)


@pytest.mark.parametrize("not_an_event", [None, [], "Object Created", 42])
def test_non_object_event_is_refused(not_an_event: object) -> None:
    # Given something that is not a JSON object
    # When it is parsed
    # Then it is a MalformedEvent, not a pydantic error
    with pytest.raises(MalformedEvent, match="not an S3 Object Created event"):
        parse_object_created(not_an_event)


def test_malformed_event_is_a_value_error() -> None:
    # Given / When / Then callers catching ValueError also catch MalformedEvent
    assert issubclass(MalformedEvent, ValueError)


# ---------------------------------------------------------------- classify_key


@pytest.mark.parametrize("area", ["training", "batch", "models", "feedback"])
def test_key_in_each_area_classifies(area: str) -> None:
    # Given a key under one of the data bucket's areas
    # When it is classified
    data = classify_key(f"{area}/churn/part-0001.csv")
    # Then area, model and rest are split out
    assert (data.area, data.model, data.rest) == (area, "churn", "part-0001.csv")


def test_rest_keeps_nested_path() -> None:
    # Given a key with several levels under the model
    # When it is classified
    data = classify_key("batch/fraud-v2/input/2024/03/08/records.jsonl")
    # Then everything after the model stays in rest
    assert data.model == "fraud-v2"
    assert data.rest == "input/2024/03/08/records.jsonl"


@pytest.mark.parametrize("model", ["a", "Churn2", "a-b", "a--b", "x" * 63])
def test_valid_model_names_are_accepted(model: str) -> None:
    # Given a SageMaker-style model name / When its key is classified / Then the name is kept
    assert classify_key(f"training/{model}/data.csv").model == model


@pytest.mark.parametrize(
    "model",
    ["-churn", "churn-", "churn_v2", "churn.v2", "churn v2", "x" * 64],
)
def test_bad_model_names_are_refused(model: str) -> None:
    # Given a model name SageMaker would not accept
    key = f"training/{model}/data.csv"
    # When its key is classified
    with pytest.raises(MalformedEvent) as err:
        classify_key(key)
    # Then the error names the key and the model field
    assert repr(key) in str(err.value)
    assert "model:" in str(err.value)


def test_empty_model_name_is_refused() -> None:
    # Given a key with an empty model segment
    # When it is classified
    # Then it is refused
    with pytest.raises(MalformedEvent, match="model"):
        classify_key("training//data.csv")


def test_unknown_area_is_refused() -> None:
    # Given a key outside the data bucket's areas
    # When it is classified
    with pytest.raises(MalformedEvent) as err:
        classify_key("incoming/churn/data.csv")
    # Then the error names the key and the area field
    assert "'incoming/churn/data.csv'" in str(err.value)
    assert "area:" in str(err.value)


def test_area_is_case_sensitive() -> None:
    # Given an area in upper case / When classified / Then it is refused
    with pytest.raises(MalformedEvent, match="area"):
        classify_key("Training/churn/data.csv")


@pytest.mark.parametrize("key", ["", "training", "training/churn", "training/churn/"])
def test_too_short_key_is_refused(key: str) -> None:
    # Given a key without a path under the model
    # When it is classified
    with pytest.raises(MalformedEvent) as err:
        classify_key(key)
    # Then the error names the key and the expected shape
    assert repr(key) in str(err.value)
    assert "<area>/<model>/<path>" in str(err.value)


# ---------------------------------------------------------------- dataset markers: what StartLifecycle starts


def _listed(key: str, modified: str, version: str | None = None) -> DataObject:
    return DataObject(key=key, size=0, version_id=version, etag=f"etag-{modified}", last_modified=modified)


def test_the_schedule_retrains_each_model_on_its_newest_marked_dataset() -> None:
    listing = [
        _listed("training/churn/2024-01/_READY", "2024-01-31T00:00:00Z", "v-old"),
        _listed("training/churn/2024-02/_READY", "2024-02-29T00:00:00Z", "v-new"),
        _listed("training/churn/2024-03/data.csv", "2024-03-31T00:00:00Z"),  # data, not a marker
        _listed("training/fraud/first/_READY", "2024-01-15T00:00:00Z"),  # unversioned: its ETag
        _listed("training/_READY", "2024-05-01T00:00:00Z"),  # not <model>/<dataset>/_READY
    ]

    newest = {marker.model: (marker.dataset, version) for marker, version in newest_markers(listing)}

    assert newest == {"churn": ("2024-02", "v-new"), "fraud": ("first", "etag-2024-01-15T00:00:00Z")}


def test_a_marker_starts_one_run_per_bucket_key_and_version() -> None:
    marker = dataset_marker("training/churn/2024-02/_READY")

    name, payload = lifecycle_run("data", marker, "v1")

    assert name.startswith("churn-2024-02-")
    assert lifecycle_run("data", marker, "v1")[0] == name
    assert lifecycle_run("data", marker, "v2")[0] != name
    assert payload == {
        "model": "churn",
        "dataset": "2024-02",
        "bucket": "data",
        "prefix": "training/churn/2024-02/",
        "marker": "training/churn/2024-02/_READY",
        "marker_version": "v1",
    }
