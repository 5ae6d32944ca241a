"""The events the local SageMaker emits, and the samples under events/, against AWS's documented shapes.

The backend runs without a server: its emit() is captured, endpoints get fake fleets, jobs no runner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from shepherd.callbacks import described_status

from localcloud.clock import VirtualClock
from localcloud.sagemaker import model_operations
from localcloud.sagemaker.backend import SageMakerBackend
from localcloud.sagemaker.control_plane import epoch_millis
from localcloud.sagemaker.endpoints import ModelLoadFailed
from localcloud.sagemaker.events import event_status
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.template import _read_yaml
from tests.event_contract import (
    ENVELOPE,
    EVENTS,
    SAMPLES,
    api_enum,
    assert_documented,
    assert_documented_detail,
    endpoint_event_statuses,
    kinds,
    sample,
    upper_snake,
)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/shepherd-sagemaker-execution-role"
AWS_SHAPED = sorted(p.stem for p in EVENTS.glob("*.json") if "detail-type" in sample(p.stem))
OF_DOCUMENTED_KINDS = [name for name in AWS_SHAPED if sample(name)["detail-type"] in SAMPLES]


# ---------------------------------------------------------------- the samples


@pytest.mark.parametrize("name", AWS_SHAPED)
def test_every_event_sample_has_eventbridge_s_envelope(name: str) -> None:
    assert set(sample(name)) == ENVELOPE


@pytest.mark.parametrize("name", OF_DOCUMENTED_KINDS)
def test_every_sample_of_a_documented_kind_has_its_documented_shape(name: str) -> None:
    # the per-kind samples, and the functions' inputs of those kinds (job_callback, start_rollout, start_lifecycle, ...)
    assert_documented(sample(name))


def test_every_kind_shepherd_consumes_or_the_local_cloud_emits_has_a_sample() -> None:
    assert {sample(name)["detail-type"] for name in SAMPLES.values()} == set(SAMPLES)
    readme = (EVENTS / "README.md").read_text()
    assert [name for name in SAMPLES.values() if f"| `{name}.json` |" not in readme] == []  # each with its source


def test_the_documented_endpoint_spellings_are_describe_endpoint_s_in_upper_snake_case() -> None:
    # The guide shows IN_SERVICE (endpoint) and UPDATING (deployment); both are conversions of the API's enum.
    shown = {
        sample("sagemaker_endpoint_state_change")["detail"]["EndpointStatus"],
        sample("sagemaker_endpoint_deployment_state_change")["detail"]["EndpointStatus"],
    }
    assert shown == {"IN_SERVICE", "UPDATING"}
    assert shown <= endpoint_event_statuses()
    assert "UPDATE_ROLLBACK_FAILED" in endpoint_event_statuses()


@pytest.mark.parametrize("status", sorted(api_enum("EndpointStatus")))
def test_the_local_cloud_spells_endpoint_statuses_as_aws_and_shepherd_reads_them_back(status: str) -> None:
    assert event_status(status) == upper_snake(status)
    assert described_status(event_status(status)) == status
    assert described_status(status) == status  # the Describe spelling passes through


# ---------------------------------------------------------------- the local cloud's events


class FakeFleet:
    def __init__(self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, **_: Any) -> None:
        self.count = count

    def start(self) -> None:
        pass

    def resize(self, count: int) -> None:
        self.count = count

    def stop(self) -> None:
        pass


class Emitted:
    """The backend's emit(), recorded."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, detail_type: str, resource_arn: str, detail: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((detail_type, epoch_millis(detail)))

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [detail for kind, detail in self.events if kind == detail_type]

    def wait_for(self, detail_type: str, key: str, value: str, *, after: int = 0) -> dict[str, Any]:
        """The first event of the kind with that value, among those after the first `after` of the kind."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [d for d in self.of(detail_type)[after:] if d.get(key) == value]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {detail_type} with {key} {value}: {self.of(detail_type)}")


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SageMakerBackend, Emitted]]:
    monkeypatch.setattr(model_operations, "_prestart_model_workers", lambda: None)
    clock = VirtualClock()
    services = SimpleNamespace(
        clock=clock,
        role_credentials=lambda role_arn, service, session: None,  # every role can be assumed
    )
    backend = SageMakerBackend(
        services,  # type: ignore[arg-type]
        metrics=EndpointMetrics(clock, lambda: None),  # never started: the fake fleets observe nothing
        scalable_variants=lambda endpoint: set(),
    )
    emitted = Emitted()
    backend.emit = emitted  # type: ignore[method-assign]
    backend._start_job = lambda job, runner, credentials: None  # type: ignore[method-assign]
    backend.fleet_factory = FakeFleet
    yield backend, emitted
    backend.stop()


def _model(backend: SageMakerBackend, name: str) -> None:
    backend.create_model({"ModelName": name, "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}})


def _config(backend: SageMakerBackend, name: str, model: str, count: int = 2) -> None:
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
        "InitialVariantWeight": 1.0,
    }
    backend.create_endpoint_config({"EndpointConfigName": name, "ProductionVariants": [variant]})


def test_endpoint_events_through_creation_scaling_a_blue_green_update_and_deletion(sagemaker) -> None:
    backend, emitted = sagemaker
    _model(backend, "churn-v1")
    _model(backend, "churn-v2")
    _config(backend, "churn-first-v1", "churn-v1")
    _config(backend, "churn-final-v2", "churn-v2")
    kind, deployment = "SageMaker Endpoint State Change", "SageMaker Endpoint Deployment State Change"
    canary = {"Type": "CANARY", "WaitIntervalInSeconds": 0, "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}}
    # When the endpoint is created, scaled, updated blue/green (canary) and deleted
    backend.create_endpoint({"EndpointName": "churn", "EndpointConfigName": "churn-first-v1"})
    emitted.wait_for(kind, "EndpointStatus", "IN_SERVICE")
    scaled = len(emitted.of(kind))
    backend.update_endpoint_weights_and_capacities(
        {
            "EndpointName": "churn",
            "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
        }
    )
    emitted.wait_for(kind, "EndpointStatus", "IN_SERVICE", after=scaled)
    backend.update_endpoint(
        {
            "EndpointName": "churn",
            "EndpointConfigName": "churn-final-v2",
            "DeploymentConfig": {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": canary}},
        }
    )
    emitted.wait_for(kind, "EndpointConfigName", "churn-final-v2")
    backend.delete_endpoint({"EndpointName": "churn"})
    emitted.wait_for(kind, "EndpointStatus", "DELETING")
    # Then every event has the documented shape, and the statuses went AWS's way in AWS's spelling
    for detail in emitted.of(kind):
        assert_documented_detail(kind, detail)
    statuses = [d["EndpointStatus"] for d in emitted.of(kind)]
    assert statuses[:2] == ["CREATING", "IN_SERVICE"]
    assert statuses[-1] == "DELETING"
    assert {"UPDATING", "IN_SERVICE"} <= set(statuses)
    assert emitted.of(kind)[0]["ProductionVariants"] == [{"DesiredWeight": 1.0, "DesiredInstanceCount": 2}]
    baking = emitted.of(deployment)
    assert [d["PendingDeploymentSummary"]["EndpointConfigName"] for d in baking] == ["churn-final-v2"] * 2
    for detail in baking:
        assert_documented_detail(deployment, detail)


def test_a_failed_endpoint_is_failed_in_upper_snake_case(sagemaker) -> None:
    backend, emitted = sagemaker
    _model(backend, "churn-v1")
    _config(backend, "churn-first-v1", "churn-v1")
    backend.fleet_factory = BrokenFleet
    backend.create_endpoint({"EndpointName": "churn", "EndpointConfigName": "churn-first-v1"})
    detail = emitted.wait_for("SageMaker Endpoint State Change", "EndpointStatus", "FAILED")
    assert_documented_detail("SageMaker Endpoint State Change", detail)


class BrokenFleet(FakeFleet):
    def start(self) -> None:
        raise ModelLoadFailed("model_fn raised ValueError: bad pickle")


def test_training_job_events_are_describe_training_job_with_the_tags(sagemaker) -> None:
    backend, emitted = sagemaker
    request = sample("start_job")["request"]
    backend.create_training_job(request)
    job = backend.training_jobs[request["TrainingJobName"]]
    job.set_status("Completed", "Completed", "Training job completed", ModelArtifacts={"S3ModelArtifacts": "s3://b/m"})
    created, completed = emitted.of("SageMaker Training Job State Change")
    for detail in (created, completed):
        assert_documented_detail("SageMaker Training Job State Change", detail)
    assert completed["Tags"] == {"shepherd:execution": "churn-coldstart-4be2d1a97c03f518", "shepherd:model": "churn"}


def test_transform_job_events_are_describe_transform_job_with_the_tags(sagemaker) -> None:
    backend, emitted = sagemaker
    _model(backend, "churn-v1-batch")
    backend.create_transform_job(
        {
            "TransformJobName": "churn-batch-3c8d2e1f4a5b",
            "ModelName": "churn-v1-batch",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}},
            "TransformOutput": {"S3OutputPath": "s3://b/out/"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        }
    )
    backend.transform_jobs["churn-batch-3c8d2e1f4a5b"].set_status("Failed", FailureReason="ClientError: no data")
    for detail in emitted.of("SageMaker Transform Job State Change"):
        assert_documented_detail("SageMaker Transform Job State Change", detail)
    assert [d["TransformJobStatus"] for d in emitted.of("SageMaker Transform Job State Change")] == [
        "InProgress",
        "Failed",
    ]


def test_model_package_events_name_the_fields_an_update_changed(sagemaker) -> None:
    backend, emitted = sagemaker
    backend.create_model_package_group({"ModelPackageGroupName": "churn"})
    arn = backend.create_model_package(
        {
            "ModelPackageGroupName": "churn",
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "CustomerMetadataProperties": {"run": "churn-coldstart"},
        }
    )["ModelPackageArn"]
    backend.update_model_package(
        {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "gates passed"}
    )
    created, approved = emitted.of("SageMaker Model Package State Change")
    for detail in (created, approved):
        assert_documented_detail("SageMaker Model Package State Change", detail)
    assert "UpdatedModelPackageFields" not in created
    assert approved["UpdatedModelPackageFields"] == ["ModelApprovalStatus", "ApprovalDescription"]


# ---------------------------------------------------------------- template.yaml's rules


def _rules() -> list[tuple[str, dict[str, Any]]]:
    resources = _read_yaml(Path(__file__).resolve().parents[2] / "template.yaml")["Resources"]
    return [
        (f"{function}.{name}", event["Properties"]["Pattern"])
        for function, resource in resources.items()
        for name, event in ((resource.get("Properties") or {}).get("Events") or {}).items()
        if event["Type"] == "EventBridgeRule"
    ]


@pytest.mark.parametrize(("rule", "pattern"), _rules(), ids=[rule for rule, _ in _rules()])
def test_every_rule_of_the_template_filters_on_documented_keys_and_spellings(rule: str, pattern: dict) -> None:
    # The defect this guards against: a rule on EndpointStatus InService, which AWS's events never carry.
    for detail_type in pattern["detail-type"]:
        documented = sample(SAMPLES[detail_type])
        assert pattern["source"] == [documented["source"]]
        _assert_filters(detail_type, pattern.get("detail") or {}, documented["detail"], rule)


def _assert_filters(detail_type: str, filters: dict[str, Any], documented: dict[str, Any], where: str) -> None:
    enums = kinds()[detail_type].enums
    for key, wanted in filters.items():
        assert key in documented, f"{where}: {key} is not in the documented {detail_type}"
        if isinstance(wanted, dict):
            _assert_filters(detail_type, wanted, documented[key], f"{where}.{key}")
        elif key in enums:
            exact = [value for value in wanted if isinstance(value, str)]
            assert set(exact) <= enums[key], f"{where}: {key} {exact}, the events spell {sorted(enums[key])}"
