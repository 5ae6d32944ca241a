"""SageMaker endpoints and Application Auto Scaling: shepherd.rollout.ports.Endpoints (the module is the adapter).

Only the functions that change endpoints import it: tools/check_iam.py counts what a module reaches
against each function's role, so model creation and package approval live in shepherd.aws.packages."""

from __future__ import annotations

from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.aws.sagemaker import already_exists, describe_endpoint, describe_endpoint_config

__all__ = [  # shepherd.rollout.ports.Endpoints
    "create_endpoint",
    "create_endpoint_config",
    "delete_endpoint",
    "delete_endpoint_config",
    "delete_model",
    "deregister_scaling",
    "describe_endpoint",
    "describe_endpoint_config",
    "endpoint_configs_named",
    "models_named",
    "register_scaling",
    "scaling_target",
    "update_endpoint",
    "update_weights",
]


def create_endpoint_config(request: dict[str, Any]) -> None:
    """Create it; a config of that name from a retried step is the same config."""
    try:
        with mapped(f"creating endpoint config {request['EndpointConfigName']}"):
            client("sagemaker").create_endpoint_config(**request)
    except Exception as exc:
        if not already_exists(exc):
            raise


def create_endpoint(name: str, config: str, tags: dict[str, str]) -> None:
    with mapped(f"creating endpoint {name}"):
        client("sagemaker").create_endpoint(
            EndpointName=name, EndpointConfigName=config, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )


def update_endpoint(name: str, config: str, *, exclude_weights: bool) -> None:
    """UpdateEndpoint keeping every retained variant's capacity (autoscaled counts survive)."""
    arguments: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config, "RetainAllVariantProperties": True}
    if exclude_weights:
        arguments["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DesiredWeight"}]
    with mapped(f"updating endpoint {name} to {config}"):
        client("sagemaker").update_endpoint(**arguments)


def update_weights(name: str, desired: list[dict[str, Any]]) -> None:
    with mapped(f"moving the weights of {name}"):
        client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=name, DesiredWeightsAndCapacities=desired
        )


def _resource(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_target(endpoint: str, variant: str) -> dict[str, Any] | None:
    with mapped(f"describing the scaling target of {endpoint}/{variant}"):
        targets = client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[_resource(endpoint, variant)]
        )["ScalableTargets"]
    return dict(targets[0]) if targets else None


def deregister_scaling(endpoint: str, variant: str) -> bool:
    if scaling_target(endpoint, variant) is None:
        return False
    with mapped(f"deregistering the scaling target of {endpoint}/{variant}"):
        client("application-autoscaling").deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=_resource(endpoint, variant),
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )
    return True


def register_scaling(
    endpoint: str, variant: str, *, minimum: int, maximum: int, target: float, scale_in: int, scale_out: int
) -> None:
    resource = _resource(endpoint, variant)
    scaling = client("application-autoscaling")
    with mapped(f"registering the scaling target of {endpoint}/{variant}"):
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=minimum,
            MaxCapacity=maximum,
        )
        scaling.put_scaling_policy(
            PolicyName=f"{endpoint}-{variant}-invocations",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": target,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": scale_in,
                "ScaleOutCooldown": scale_out,
            },
        )


def endpoint_configs_named(prefix: str) -> list[tuple[str, Any]]:
    with mapped(f"listing endpoint configs {prefix}*"):
        pages = client("sagemaker").get_paginator("list_endpoint_configs").paginate(NameContains=prefix)
        return [(c["EndpointConfigName"], c["CreationTime"]) for page in pages for c in page["EndpointConfigs"]]


def models_named(prefix: str) -> list[tuple[str, Any]]:
    with mapped(f"listing models {prefix}*"):
        pages = client("sagemaker").get_paginator("list_models").paginate(NameContains=prefix)
        return [(m["ModelName"], m["CreationTime"]) for page in pages for m in page["Models"]]


def delete_endpoint(name: str) -> None:
    """SageMaker's only call on a Failed endpoint; it goes Deleting, then DescribeEndpoint finds nothing."""
    with mapped(f"deleting endpoint {name}"):
        client("sagemaker").delete_endpoint(EndpointName=name)


def delete_endpoint_config(name: str) -> None:
    with mapped(f"deleting endpoint config {name}"):
        client("sagemaker").delete_endpoint_config(EndpointConfigName=name)


def delete_model(name: str) -> None:
    with mapped(f"deleting model {name}"):
        client("sagemaker").delete_model(ModelName=name)
