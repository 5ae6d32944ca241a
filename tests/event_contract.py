"""AWS's documented EventBridge event shapes (the samples under events/) as checks on any event of those kinds.

The rules per kind, from what the guide's examples are:
- "SageMaker Endpoint State Change" is not DescribeEndpoint's shape: its detail keys must equal the sample's, its
  variants hold only the sample's keys (DesiredWeight, DesiredInstanceCount) and EndpointStatus is spelled in upper
  snake case (IN_SERVICE), DescribeEndpoint's enum converted.
- "SageMaker Endpoint Deployment State Change": a documented subset of the guide's two examples.
- Job and model package events are their Describe* response (tags as a map): each key is the sample's or a member of
  that response in the API reference the guide links, and the statuses are the API's enums.
- S3 "Object Created": the sample's keys exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session

EVENTS = Path(__file__).resolve().parents[1] / "events"
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
SAMPLES = {
    "SageMaker Training Job State Change": "sagemaker_training_job_state_change",
    "SageMaker Transform Job State Change": "sagemaker_transform_job_state_change",
    "SageMaker Processing Job State Change": "sagemaker_processing_job_state_change",
    "SageMaker Endpoint State Change": "sagemaker_endpoint_state_change",
    "SageMaker Endpoint Deployment State Change": "sagemaker_endpoint_deployment_state_change",
    "SageMaker Model Package State Change": "sagemaker_model_package_state_change",
    "Object Created": "s3_object_created",
}


@cache
def _sagemaker() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def api_enum(shape: str) -> frozenset[str]:
    return frozenset(_sagemaker().shape_for(shape).enum)


def upper_snake(value: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", value).upper()


def endpoint_event_statuses() -> frozenset[str]:
    """DescribeEndpoint's statuses as endpoint events spell them (the guide shows IN_SERVICE and UPDATING)."""
    return frozenset(upper_snake(s) for s in api_enum("EndpointStatus"))


@dataclass(frozen=True)
class Kind:
    identity: tuple[str, ...]  # keys every event of the kind carries
    enums: dict[str, frozenset[str]] = field(default_factory=dict)
    describe: str = ""  # the Describe* operation whose response the detail is; "" if it is not one
    exact: bool = False  # the detail keys must equal the sample's


def kinds() -> dict[str, Kind]:
    return {
        "SageMaker Training Job State Change": Kind(
            ("TrainingJobName", "TrainingJobArn", "TrainingJobStatus", "Tags"),
            {"TrainingJobStatus": api_enum("TrainingJobStatus"), "SecondaryStatus": api_enum("SecondaryStatus")},
            describe="DescribeTrainingJob",
        ),
        "SageMaker Transform Job State Change": Kind(
            ("TransformJobName", "TransformJobArn", "TransformJobStatus", "Tags"),
            {"TransformJobStatus": api_enum("TransformJobStatus")},
            describe="DescribeTransformJob",
        ),
        "SageMaker Processing Job State Change": Kind(
            ("ProcessingJobName", "ProcessingJobArn", "ProcessingJobStatus"),
            {"ProcessingJobStatus": api_enum("ProcessingJobStatus")},
            describe="DescribeProcessingJob",
        ),
        "SageMaker Model Package State Change": Kind(
            ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "ModelApprovalStatus"),
            {
                "ModelApprovalStatus": api_enum("ModelApprovalStatus"),
                "ModelPackageStatus": api_enum("ModelPackageStatus"),
            },
            describe="DescribeModelPackage",
        ),
        "SageMaker Endpoint State Change": Kind(
            ("EndpointName", "EndpointArn", "EndpointStatus"),
            {"EndpointStatus": endpoint_event_statuses()},
            exact=True,
        ),
        "SageMaker Endpoint Deployment State Change": Kind(
            ("EndpointName", "EndpointArn", "EndpointConfigName", "EndpointStatus"),
            {"EndpointStatus": endpoint_event_statuses()},
        ),
        "Object Created": Kind(("bucket", "object"), exact=True),
    }


def sample(name: str) -> dict[str, Any]:
    """events/<name>.json, a fresh copy."""
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


def sample_of(detail_type: str) -> dict[str, Any]:
    return sample(SAMPLES[detail_type])


def assert_documented(event: dict[str, Any]) -> None:
    """The event has EventBridge's envelope and the documented detail of its kind (assertions say what is off)."""
    assert set(event) - {"replay-name"} == ENVELOPE, f"envelope keys {sorted(event)}"
    assert event["version"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"]), f"time {event['time']!r}"
    assert re.fullmatch(r"\d{12}", event["account"]), f"account {event['account']!r}"
    assert isinstance(event["resources"], list)
    assert_documented_detail(event["detail-type"], event["detail"])


def assert_documented_detail(detail_type: str, detail: dict[str, Any]) -> None:
    kind, documented = kinds()[detail_type], sample_of(detail_type)["detail"]
    what = f"{detail_type} detail"
    if kind.exact:
        assert set(detail) == set(documented), f"{what}: keys {sorted(detail)}, documented {sorted(documented)}"
    else:
        allowed = set(documented) | _response_members(kind.describe)
        assert set(detail) <= allowed, f"{what}: undocumented keys {sorted(set(detail) - allowed)}"
    assert set(kind.identity) <= set(detail), f"{what}: missing {sorted(set(kind.identity) - set(detail))}"
    for key, values in kind.enums.items():
        if key in detail:
            assert detail[key] in values, f"{what}: {key} {detail[key]!r} is not one of {sorted(values)}"
    if "Tags" in detail:
        assert isinstance(detail["Tags"], dict), f"{what}: Tags is a map in events, not the API's list"
    if detail_type == "SageMaker Endpoint State Change":
        _assert_variants(detail["ProductionVariants"], documented["ProductionVariants"], what)
    if detail_type == "SageMaker Endpoint Deployment State Change":
        _assert_deployment(detail, documented, what)


def _response_members(operation: str) -> set[str]:
    return set(_sagemaker().operation_model(operation).output_shape.members) if operation else set()


def _assert_variants(variants: list[dict[str, Any]], documented: list[dict[str, Any]], what: str) -> None:
    keys = {k for v in documented for k in v}
    for variant in variants:
        assert set(variant) <= keys, f"{what}: variant keys {sorted(variant)}, documented {sorted(keys)}"


def _assert_deployment(detail: dict[str, Any], documented: dict[str, Any], what: str) -> None:
    pending = documented["PendingDeploymentSummary"]
    # The guide's second example (a capacity update) puts VariantStatus on the live variants too.
    keys = {k for v in pending["ProductionVariants"] for k in v}
    variants = [
        *detail["ProductionVariants"],
        *(detail.get("PendingDeploymentSummary") or {}).get("ProductionVariants", []),
    ]
    for variant in variants:
        assert set(variant) <= keys, f"{what}: variant keys {sorted(variant)}, documented {sorted(keys)}"
        for status in variant.get("VariantStatus", []):
            assert set(status) <= {"Status", "StatusMessage", "StartTime"}, f"{what}: variant status {status}"
            assert status["Status"] in api_enum("VariantStatus"), f"{what}: variant status {status['Status']!r}"
    if "PendingDeploymentSummary" in detail:
        assert set(detail["PendingDeploymentSummary"]) <= set(pending), f"{what}: {detail['PendingDeploymentSummary']}"
