"""The details of the state-change events the local SageMaker puts on EventBridge, in the shapes AWS documents.

The samples under events/ (sources in events/README.md) are the reference, held by tests/event_contract.py.
Job and model package details are their Describe* shape with the tags as a map; an endpoint's is not: only
desired weights and counts, and its status in upper snake case (IN_SERVICE where DescribeEndpoint says InService).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from localcloud.sagemaker.endpoints import Endpoint, Variant
from localcloud.sagemaker.validation import operation_model

# The field names the guide's example lists for UpdatedModelPackageFields, by UpdateModelPackage member.
UPDATED_PACKAGE_FIELDS = {
    "ModelApprovalStatus": "ModelApprovalStatus",
    "ApprovalDescription": "ApprovalDescription",
    "CustomerMetadataProperties": "CustomerMetadataProperties",
    "CustomerMetadataPropertiesToRemove": "CustomerMetadataProperties",
    "InferenceSpecification": "InferenceSpecification",
    "ModelLifeCycle": "ModelLifeCycle",
    "SourceUri": "sourceUri",
}


def event_status(status: str) -> str:
    """An endpoint status as its event spells it: DescribeEndpoint's InService is the event's IN_SERVICE."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", status).upper()


def tag_map(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def job_state_change(kind: str, record: dict[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    """A TrainingJob's or TransformJob's state change: its Describe* response and its tags."""
    return _described(f"Describe{kind}", record) | {"Tags": tag_map(tags)}


def model_package_state_change(package: dict[str, Any], updated: list[str] | None = None) -> dict[str, Any]:
    """A model package's state change: DescribeModelPackage, and after an update the fields it changed."""
    detail = _described("DescribeModelPackage", package)
    if updated:
        detail["UpdatedModelPackageFields"] = updated
    return detail


def updated_package_fields(request: dict[str, Any]) -> list[str]:
    """The UpdatedModelPackageFields of an UpdateModelPackage request, in the guide's spelling."""
    return list(dict.fromkeys(UPDATED_PACKAGE_FIELDS[k] for k in request if k in UPDATED_PACKAGE_FIELDS))


def endpoint_state_change(
    endpoint: Endpoint, config: dict[str, Any] | None, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """An endpoint's state change; while the endpoint is created its variants are its config's."""
    with endpoint.lock:
        if endpoint.production:
            variants = [
                _desired(v.desired_weight, None if v.serverless else v.desired_count) for v in endpoint.production
            ]
        else:
            variants = [
                _desired(float(v.get("InitialVariantWeight", 1.0)), v.get("InitialInstanceCount"))
                for v in (config or {}).get("ProductionVariants") or []
            ]
        return {
            "EndpointName": endpoint.name,
            "EndpointArn": endpoint.arn,
            "EndpointConfigName": endpoint.config_name,
            "ProductionVariants": variants,
            "EndpointStatus": event_status(endpoint.status),
            "CreationTime": endpoint.creation_time,
            "LastModifiedTime": endpoint.last_modified,
            "Tags": tag_map(tags),
        }


def deployment_state_change(
    endpoint: Endpoint, green: dict[str, Variant], message: str, started: datetime, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """An endpoint deployment's state change while a blue/green update bakes traffic on the new fleet."""
    baking = [{"Status": "Baking", "StatusMessage": message, "StartTime": started}]
    with endpoint.lock:
        return {
            "EndpointName": endpoint.name,
            "EndpointArn": endpoint.arn,
            "EndpointConfigName": endpoint.config_name,
            "ProductionVariants": [_capacity(v) for v in endpoint.production],
            "EndpointStatus": event_status(endpoint.status),
            "CreationTime": endpoint.creation_time,
            "LastModifiedTime": endpoint.last_modified,
            "Tags": tag_map(tags),
            "PendingDeploymentSummary": {
                "EndpointConfigName": endpoint.pending_config or endpoint.config_name,
                "StartTime": endpoint.last_modified,
                "ProductionVariants": [
                    _capacity(v) | {"VariantStatus": baking} for v in green.values() if not v.shadow
                ],
            },
        }


def _described(operation: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as the operation answers it: without what the local record keeps for List* (LastModifiedTime)."""
    model = operation_model(operation)
    members = model.output_shape.members if model and model.output_shape else {}
    return {k: v for k, v in record.items() if k in members}


def _desired(weight: float, count: int | None) -> dict[str, Any]:
    return {"DesiredWeight": weight} | ({} if count is None else {"DesiredInstanceCount": count})


def _capacity(variant: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VariantName": variant.name,
        "CurrentWeight": variant.current_weight,
        "DesiredWeight": variant.desired_weight,
    }
    if not variant.serverless:
        out |= {"CurrentInstanceCount": variant.current_count, "DesiredInstanceCount": variant.desired_count}
    return out
