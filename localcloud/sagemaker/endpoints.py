"""Endpoint configs and endpoints: the control plane, with SageMaker's rules, statuses and events.

A variant's serving capacity is a ``Fleet`` (worker processes holding the model, one per
instance); the control plane decides which fleets exist and with which weights, loads a
new fleet completely before traffic moves to it, and never tears down the serving fleet
of an endpoint whose update failed.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from localcloud.sagemaker.capture import CaptureWriter
from localcloud.sagemaker.jobs import utcnow

log = logging.getLogger("shepherd.local.sagemaker")
MAX_PRODUCTION_VARIANTS = 10


class Fleet(Protocol):
    """The instances of one variant; ``start`` raises ModelLoadFailed if the model cannot serve."""

    def start(self) -> None: ...

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        """The model's answer and its content type; raises InvocationFailed."""
        ...

    def resize(self, count: int) -> None: ...

    def stop(self) -> None: ...


class ModelLoadFailed(Exception):
    pass


@dataclass(frozen=True)
class InvocationRequest:
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str | None = None
    target_model: str | None = None
    inference_id: str | None = None


class Throttled(Exception):
    """A serverless endpoint at its MaxConcurrency."""


class TargetModelNotFound(Exception):
    """A multi-model endpoint asked for a model that is not under its prefix."""


class InvocationFailed(Exception):
    """The model container answered with an error: SageMaker returns it as ModelError (HTTP 424)."""

    def __init__(self, status: int, message: str, log_stream: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.log_stream = log_stream


class FleetFactory(Protocol):
    """(model description, ProductionVariant, instance count, endpoint name) -> a fleet not yet started."""

    def __call__(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> Fleet: ...


@dataclass
class Variant:
    """One production or shadow variant of a live endpoint."""

    spec: dict[str, Any]  # the ProductionVariant from the endpoint config
    fleet: Fleet
    shadow: bool
    current_weight: float
    desired_weight: float
    current_count: int
    desired_count: int

    @property
    def name(self) -> str:
        return str(self.spec["VariantName"])

    @property
    def serverless(self) -> bool:
        return "ServerlessConfig" in self.spec

    def summary(self, model_image: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "VariantName": self.name,
            "DeployedImages": [
                {"SpecifiedImage": model_image, "ResolvedImage": model_image, "ResolutionTime": utcnow()}
            ],
            "CurrentWeight": self.current_weight,
            "DesiredWeight": self.desired_weight,
            "VariantStatus": [],
        }
        if self.serverless:
            out["CurrentServerlessConfig"] = self.spec["ServerlessConfig"]
            out["DesiredServerlessConfig"] = self.spec["ServerlessConfig"]
        else:
            out["CurrentInstanceCount"] = self.current_count
            out["DesiredInstanceCount"] = self.desired_count
        return out


@dataclass
class Endpoint:
    name: str
    arn: str
    config_name: str
    status: str
    creation_time: datetime
    last_modified: datetime
    variants: dict[str, Variant] = field(default_factory=dict)
    data_capture: dict[str, Any] | None = None
    failure_reason: str | None = None
    last_deployment_config: dict[str, Any] | None = None
    pending_config: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    capture: CaptureWriter | None = None
    # During a blue/green update: the new (green) fleet and the share of traffic it takes.
    green: dict[str, Variant] | None = None
    green_share: float = 0.0

    @property
    def production(self) -> list[Variant]:
        return [v for v in self.variants.values() if not v.shadow]

    @property
    def shadows(self) -> list[Variant]:
        return [v for v in self.variants.values() if v.shadow]


class LiveEndpoints(Protocol):
    """The endpoints the control plane runs, by name: what the data plane and the autoscaler find them in."""

    @property
    def endpoints(self) -> Mapping[str, Endpoint]: ...


# Instance types with local NVMe storage, which SageMaker encrypts itself: CreateEndpointConfig's KmsKeyId,
# ResourceConfig's and TransformResources' VolumeKmsKeyId "can't be requested" with them (SageMaker API
# reference; the list: the SageMaker guide's "Instance Store Volumes"). The emulator keeps its own table.
INSTANCE_STORAGE = re.compile(r"^ml\.([a-z]+\d+[a-z]*d[a-z]*|g5|g6|g6e|trn\d|p5[a-z]*)\.")


def kms_refused(instance_type: object, field_name: str) -> str | None:
    """AWS's refusal of a volume key for an instance type with local storage, or None."""
    if isinstance(instance_type, str) and INSTANCE_STORAGE.match(instance_type):
        return (
            f"{field_name} is not supported for instance type {instance_type}: its local instance storage is "
            f"encrypted by the instance; do not specify {field_name}."
        )
    return None


def check_endpoint_config(p: dict[str, Any], models: dict[str, dict[str, Any]]) -> list[str]:
    """What SageMaker refuses in CreateEndpointConfig; returns the problems (empty when valid)."""
    production = p.get("ProductionVariants") or []
    shadows = p.get("ShadowProductionVariants") or []
    problems: list[str] = []
    if p.get("KmsKeyId"):
        problems.extend(
            refused for v in [*production, *shadows] if (refused := kms_refused(v.get("InstanceType"), "KmsKeyId"))
        )
    if not production:
        problems.append("At least one production variant is required.")
    if len(production) > MAX_PRODUCTION_VARIANTS:
        problems.append(f"An endpoint config can have at most {MAX_PRODUCTION_VARIANTS} production variants.")
    if shadows and (len(production) != 1 or len(shadows) != 1):
        problems.append(
            "An endpoint config with ShadowProductionVariants must have exactly one production "
            "variant and one shadow variant."
        )
    names = [v["VariantName"] for v in [*production, *shadows]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"Variant names must be unique: {', '.join(duplicates)}.")
    for variant in [*production, *shadows]:
        if variant["ModelName"] not in models:
            problems.append(f'Could not find model "{variant["ModelName"]}".')
        serverless = "ServerlessConfig" in variant
        if not serverless and ("InstanceType" not in variant or "InitialInstanceCount" not in variant):
            problems.append(
                f"Variant {variant['VariantName']}: InstanceType and InitialInstanceCount are required "
                "unless ServerlessConfig is given."
            )
        if serverless:
            config = variant["ServerlessConfig"]
            memory, concurrency = config.get("MemorySizeInMB", 0), config.get("MaxConcurrency", 0)
            if memory not in range(1024, 6145, 1024):
                problems.append(
                    f"Variant {variant['VariantName']}: ServerlessConfig.MemorySizeInMB must be one of "
                    "1024, 2048, 3072, 4096, 5120, 6144."
                )
            if not 1 <= concurrency <= 200:
                problems.append(f"Variant {variant['VariantName']}: ServerlessConfig.MaxConcurrency must be 1-200.")
    if shadows and any(_multi_model(models.get(v["ModelName"], {})) for v in [*production, *shadows]):
        # AWS's shadow-test exclusions list multi-model endpoints: such a config is a validation error.
        problems.append("Shadow variants are not supported for multi-model endpoints.")
    if any("ServerlessConfig" in v for v in [*production, *shadows]):
        if len(production) > 1 or shadows:
            problems.append("Serverless endpoints support a single production variant and no shadow variants.")
        if (p.get("DataCaptureConfig") or {}).get("EnableCapture", True) and p.get("DataCaptureConfig"):
            problems.append("Data capture is not supported for serverless endpoints.")
        if p.get("EnableNetworkIsolation"):
            problems.append("Network isolation is not supported for serverless endpoints.")
        for variant in production:
            if _multi_model(models.get(variant["ModelName"], {})):
                problems.append("Multi-model endpoints are not supported for serverless endpoints.")
    return problems


def _multi_model(model: dict[str, Any]) -> bool:
    containers = model.get("Containers") or [model.get("PrimaryContainer", {})]
    return any(c.get("Mode") == "MultiModel" for c in containers)


def describe(endpoint: Endpoint, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    with endpoint.lock:

        def image(variant: Variant) -> str:
            model = models.get(variant.spec["ModelName"], {})
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            return str(container.get("Image", ""))

        out: dict[str, Any] = {
            "EndpointName": endpoint.name,
            "EndpointArn": endpoint.arn,
            "EndpointConfigName": endpoint.config_name,
            "EndpointStatus": endpoint.status,
            "CreationTime": endpoint.creation_time,
            "LastModifiedTime": endpoint.last_modified,
        }
        if endpoint.production:
            out["ProductionVariants"] = [v.summary(image(v)) for v in endpoint.production]
        if endpoint.shadows:
            out["ShadowProductionVariants"] = [v.summary(image(v)) for v in endpoint.shadows]
        if endpoint.data_capture:
            capture = endpoint.data_capture
            out["DataCaptureConfig"] = {
                "EnableCapture": capture.get("EnableCapture", True),
                "CaptureStatus": "Started" if capture.get("EnableCapture", True) else "Stopped",
                "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
                "DestinationS3Uri": capture["DestinationS3Uri"],
                **({"KmsKeyId": capture["KmsKeyId"]} if "KmsKeyId" in capture else {}),
            }
        if endpoint.failure_reason:
            out["FailureReason"] = endpoint.failure_reason
        if endpoint.last_deployment_config:
            out["LastDeploymentConfig"] = copy.deepcopy(endpoint.last_deployment_config)
        if endpoint.pending_config:
            out["PendingDeploymentSummary"] = {
                "EndpointConfigName": endpoint.pending_config,
                "StartTime": endpoint.last_modified,
            }
        return out
