"""Endpoint configs and endpoints: SageMaker's rules, statuses and update semantics.

The fleets here are fakes (the control plane is under test); real serving is tested with
the data plane.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from localcloud.sagemaker.endpoints import InvocationFailed, InvocationRequest, ModelLoadFailed
from tests.event_contract import assert_documented

from .conftest import role, wait_for

pytestmark = pytest.mark.integration
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


class FakeFleet:
    instances: ClassVar[list[FakeFleet]] = []
    hold: ClassVar[threading.Event] = threading.Event()  # a fleet of a HOLD model starts once it is set

    def __init__(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> None:
        self.model, self.variant, self.count = model, variant, count
        self.stopped = threading.Event()
        self.calls: list[InvocationRequest] = []
        FakeFleet.instances.append(self)

    def start(self) -> None:
        if self.model["PrimaryContainer"].get("Environment", {}).get("HOLD"):
            assert FakeFleet.hold.wait(20)
        if self.model["PrimaryContainer"].get("Environment", {}).get("BROKEN"):
            raise ModelLoadFailed("model_fn raised ValueError: bad pickle")

    def resize(self, count: int) -> None:
        self.count = count

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        self.calls.append(request)
        if request.body == b"fail":
            raise InvocationFailed(400, "predict_fn raised ValueError: could not convert string to float: 'x'")
        return self.variant["VariantName"].encode(), "text/plain"

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture
def sagemaker(cloud):
    original = cloud.sagemaker.fleet_factory
    cloud.sagemaker.fleet_factory = FakeFleet
    yield cloud.client("sagemaker")
    cloud.sagemaker.fleet_factory = original


def _model(sagemaker, broken: bool = False, role_arn: str = ROLE, hold: bool = False) -> str:
    name = f"m-{uuid.uuid4().hex[:8]}"
    env = ({"BROKEN": "1"} if broken else {}) | ({"HOLD": "1"} if hold else {})
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=role_arn,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/m.tar.gz", "Environment": env},
    )
    return name


def _config(sagemaker, variants: list[dict], shadows: list[dict] | None = None, **extra) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    args = {"EndpointConfigName": name, "ProductionVariants": variants, **extra}
    if shadows:
        args["ShadowProductionVariants"] = shadows
    sagemaker.create_endpoint_config(**args)
    return name


def _variant(model: str, name: str = "AllTraffic", weight: float = 1.0, count: int = 2) -> dict:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
        "InitialVariantWeight": weight,
    }


def _status(sagemaker, endpoint: str, status: str) -> dict:
    return wait_for(lambda: (d := sagemaker.describe_endpoint(EndpointName=endpoint))["EndpointStatus"] == status and d)


def test_endpoint_goes_creating_then_in_service_with_its_variants(sagemaker):
    model = _model(sagemaker)
    config = _config(sagemaker, [_variant(model, "A", 70), _variant(model, "B", 30, count=1)])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    described = _status(sagemaker, name, "InService")
    variants = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert variants["A"]["CurrentWeight"] == 70
    assert variants["B"]["CurrentWeight"] == 30
    assert variants["A"]["CurrentInstanceCount"] == 2
    assert variants["B"]["DesiredInstanceCount"] == 1


def test_endpoint_events_reach_a_rule_written_in_aws_s_spelling_in_aws_s_shape(cloud, sagemaker):
    # Given a rule on endpoint events as AWS spells them (IN_SERVICE, FAILED), with an SQS queue as its target
    name = f"e-{uuid.uuid4().hex[:8]}"
    sqs, events = cloud.client("sqs"), cloud.client("events")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [name], "EndpointStatus": ["IN_SERVICE", "FAILED"]},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    # When an endpoint is created (its Creating event does not match)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=_config(sagemaker, [_variant(_model(sagemaker))]))
    # Then the rule receives its InService event, in the documented shape, DescribeEndpoint still saying InService
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages"))[0]
    event = json.loads(message["Body"])
    assert_documented(event)
    assert event["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert event["detail"]["ProductionVariants"] == [{"DesiredWeight": 1.0, "DesiredInstanceCount": 2}]
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_a_model_that_fails_to_load_fails_the_endpoint_with_its_reason(sagemaker):
    config = _config(sagemaker, [_variant(_model(sagemaker, broken=True))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    described = _status(sagemaker, name, "Failed")
    assert "model_fn raised ValueError: bad pickle" in described["FailureReason"]


def test_failed_update_leaves_the_old_fleet_serving(sagemaker):
    good = _config(sagemaker, [_variant(_model(sagemaker))])
    bad = _config(sagemaker, [_variant(_model(sagemaker, broken=True))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=good)
    _status(sagemaker, name, "InService")
    serving = FakeFleet.instances[-1]
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=bad)
    described = wait_for(lambda: (d := sagemaker.describe_endpoint(EndpointName=name)).get("FailureReason") and d)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == good
    assert "bad pickle" in described["FailureReason"]
    assert not serving.stopped.is_set()


def test_injected_update_fault_by_tag(sagemaker):
    config = _config(sagemaker, [_variant(_model(sagemaker))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    arn = sagemaker.create_endpoint(
        EndpointName=name, EndpointConfigName=config, Tags=[{"Key": "shepherd:fault:fail-next-update", "Value": "true"}]
    )["EndpointArn"]
    _status(sagemaker, name, "InService")
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)
    described = wait_for(lambda: (d := sagemaker.describe_endpoint(EndpointName=name)).get("FailureReason") and d)
    assert "Injected fault" in described["FailureReason"]
    assert not [t for t in sagemaker.list_tags(ResourceArn=arn)["Tags"] if t["Key"].startswith("shepherd:fault")]


def test_weights_move_from_desired_to_current_without_redeploying(sagemaker):
    model = _model(sagemaker)
    config = _config(sagemaker, [_variant(model, "Champion", 90), _variant(model, "Challenger", 10, count=1)])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    fleets_before = len(FakeFleet.instances)
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "Challenger", "DesiredWeight": 50, "DesiredInstanceCount": 2},
            {"VariantName": "Champion", "DesiredWeight": 50},
        ],
    )
    described = _status(sagemaker, name, "InService")
    variants = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert variants["Challenger"]["CurrentWeight"] == 50
    assert variants["Challenger"]["CurrentInstanceCount"] == 2
    assert variants["Champion"]["CurrentInstanceCount"] == 2, "a count not given must not be lost"
    assert len(FakeFleet.instances) == fleets_before


def test_retain_all_variant_properties_keeps_capacity_on_update_to_shadow(sagemaker):
    champion, candidate = _model(sagemaker), _model(sagemaker)
    first = _config(sagemaker, [_variant(champion, "AllTraffic", count=2)])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=first)
    _status(sagemaker, name, "InService")
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 4}]
    )
    _status(sagemaker, name, "InService")
    shadow = _config(
        sagemaker, [_variant(champion, "AllTraffic", count=2)], shadows=[_variant(candidate, "Shadow", count=1)]
    )
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=shadow, RetainAllVariantProperties=True)
    described = wait_for(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointConfigName"] == shadow
            and d["EndpointStatus"] == "InService"
            and d
        )
    )
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 4
    assert described["ShadowProductionVariants"][0]["VariantName"] == "Shadow"


def test_an_excluded_property_comes_from_the_new_config_not_the_old_one(sagemaker):
    model = _model(sagemaker)
    first = _config(sagemaker, [_variant(model, "AllTraffic", weight=50, count=1)])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=first)
    _status(sagemaker, name, "InService")
    second = _config(sagemaker, [_variant(model, "AllTraffic", weight=1, count=1)])
    sagemaker.update_endpoint(
        EndpointName=name,
        EndpointConfigName=second,
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
    )
    described = wait_for(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointConfigName"] == second
            and d["EndpointStatus"] == "InService"
            and d
        )
    )
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0  # the new config's, not the old 50


@pytest.mark.parametrize(
    ("variants", "shadows", "extra", "message"),
    [
        (2, 1, {}, "exactly one production variant and one shadow variant"),
        (11, 0, {}, "Member must have length less than or equal to 10"),
    ],
)
def test_endpoint_configs_sagemaker_refuses(sagemaker, variants, shadows, extra, message):
    model = _model(sagemaker)
    with pytest.raises(sagemaker.exceptions.ClientError, match=message):
        _config(
            sagemaker,
            [_variant(model, f"V{i}") for i in range(variants)],
            [_variant(model, f"S{i}") for i in range(shadows)],
            **extra,
        )


def test_serverless_refuses_data_capture_and_second_variant(sagemaker):
    model = _model(sagemaker)
    serverless = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
    }
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://b/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    with pytest.raises(sagemaker.exceptions.ClientError, match="Data capture is not supported for serverless"):
        _config(sagemaker, [serverless], DataCaptureConfig=capture)
    with pytest.raises(sagemaker.exceptions.ClientError, match="single production variant"):
        _config(sagemaker, [serverless, {**serverless, "VariantName": "Second"}])


def test_a_multi_model_endpoint_takes_no_shadow_variant_but_takes_a_second_production_variant(sagemaker):
    """AWS's shadow-test exclusions list multi-model endpoints; weighted production variants stay allowed."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    container = {"Image": IMAGE, "ModelDataUrl": "s3://b/models/", "Mode": "MultiModel"}
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    single = _model(sagemaker)
    with pytest.raises(sagemaker.exceptions.ClientError, match="Shadow variants are not supported for multi-model"):
        _config(sagemaker, [_variant(name)], [_variant(single, "Shadow")])
    with pytest.raises(sagemaker.exceptions.ClientError, match="Shadow variants are not supported for multi-model"):
        _config(sagemaker, [_variant(single)], [_variant(name, "Shadow")])
    assert _config(sagemaker, [_variant(name, "A"), _variant(name, "B")])


def test_update_of_an_endpoint_that_is_not_in_service_is_refused(sagemaker):
    config = _config(sagemaker, [_variant(_model(sagemaker, broken=True))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "Failed")
    with pytest.raises(sagemaker.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)


def test_delete_endpoint_stops_its_fleets(sagemaker):
    config = _config(sagemaker, [_variant(_model(sagemaker))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    fleet = FakeFleet.instances[-1]
    sagemaker.delete_endpoint(EndpointName=name)
    assert fleet.stopped.wait(10)
    wait_for(lambda: name not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]])


def test_delete_endpoint_is_refused_while_the_endpoint_is_in_progress_and_accepted_once_it_is_failed(cloud, sagemaker):
    # SystemUpdating "cannot be updated or deleted or re-scaled until it has completed"
    # (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html, EndpointStatus); Creating,
    # Updating and RollingBack are refused alike (localcloud/sagemaker/endpoint_operations.py, IN_PROGRESS).
    FakeFleet.hold.clear()
    held = _config(sagemaker, [_variant(_model(sagemaker, hold=True))])
    name = f"e-{uuid.uuid4().hex[:8]}"
    arn = sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=held)["EndpointArn"]
    refused = f'Cannot delete in-progress endpoint "{arn}".'

    def delete_refused() -> str:
        with pytest.raises(sagemaker.exceptions.ClientError) as caught:
            sagemaker.delete_endpoint(EndpointName=name)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return f"{caught.value.response['Error']['Code']}: {caught.value.response['Error']['Message']}"

    try:
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
        assert delete_refused() == f"ValidationException: {refused}"
        FakeFleet.hold.set()
        _status(sagemaker, name, "InService")
        FakeFleet.hold.clear()
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=held)
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        assert delete_refused() == f"ValidationException: {refused}"
        FakeFleet.hold.set()
        _status(sagemaker, name, "InService")
    finally:
        FakeFleet.hold.set()
    # SageMaker's own maintenance, which the local cloud never starts by itself
    endpoint = cloud.sagemaker.endpoints[name]
    cloud.sagemaker._set_endpoint_status(endpoint, "SystemUpdating")
    assert delete_refused() == f"ValidationException: {refused}"
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "SystemUpdating"
    cloud.sagemaker._set_endpoint_status(endpoint, "InService")
    sagemaker.delete_endpoint(EndpointName=name)
    wait_for(lambda: name not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]])

    # A Failed endpoint: DeleteEndpoint is "the only operation that can be performed" on it
    failed = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(
        EndpointName=failed, EndpointConfigName=_config(sagemaker, [_variant(_model(sagemaker, broken=True))])
    )
    _status(sagemaker, failed, "Failed")
    sagemaker.delete_endpoint(EndpointName=failed)
    wait_for(lambda: failed not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]])


def _endpoint(sagemaker, variants, shadows=None) -> str:
    config = _config(sagemaker, variants, shadows)
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    return name


def test_traffic_splits_by_weight_within_tolerance(cloud, sagemaker):
    model = _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(model, "A", 70), _variant(model, "B", 30)])
    runtime = cloud.client("sagemaker-runtime")
    counts = {"A": 0, "B": 0}
    for _ in range(600):
        response = runtime.invoke_endpoint(EndpointName=name, Body=b"1,2", ContentType="text/csv")
        assert response["Body"].read().decode() == response["InvokedProductionVariant"]
        counts[response["InvokedProductionVariant"]] += 1
    # Binomial(600, 0.3): sd = 11.2; 5 sd either side
    assert 180 - 56 <= counts["B"] <= 180 + 56, counts


def test_target_variant_is_honoured(cloud, sagemaker):
    model = _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(model, "A", 99), _variant(model, "B", 1)])
    runtime = cloud.client("sagemaker-runtime")
    for _ in range(20):
        response = runtime.invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv", TargetVariant="B")
        assert response["InvokedProductionVariant"] == "B"


def test_model_error_is_a_424_with_the_original_status_and_message_and_is_not_retried(cloud, sagemaker):
    name = _endpoint(sagemaker, [_variant(_model(sagemaker))])
    fleet = FakeFleet.instances[-1]
    runtime = cloud.client("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName=name, Body=b"fail", ContentType="text/csv")
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert "could not convert string to float" in error["OriginalMessage"]
    assert f"/aws/sagemaker/Endpoints/{name}:log-stream:" in error["LogStreamArn"]  # <variant>/<instance>
    assert len(fleet.calls) == 1, "a model error must not be retried by the SDK"


def test_shadow_receives_a_mirrored_copy_and_its_answer_is_discarded(cloud, sagemaker):
    champion, candidate = _model(sagemaker), _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(champion, "Prod", 1)], shadows=[_variant(candidate, "Shadow", 1)])
    shadow = next(
        f for f in FakeFleet.instances if f.variant["VariantName"] == "Shadow" and f.model["ModelName"] == candidate
    )
    runtime = cloud.client("sagemaker-runtime")
    for i in range(10):
        response = runtime.invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv", InferenceId=f"req-{i}")
        assert response["Body"].read() == b"Prod"
    wait_for(lambda: len(shadow.calls) == 10)
    assert sorted(c.inference_id for c in shadow.calls) == sorted(f"req-{i}" for i in range(10))


def test_unknown_endpoint_and_oversized_payload_are_validation_errors(cloud, sagemaker):
    runtime = cloud.client("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ValidationError, match="Endpoint nope of account 123456789012 not found"):
        runtime.invoke_endpoint(EndpointName="nope", Body=b"1", ContentType="text/csv")
    name = _endpoint(sagemaker, [_variant(_model(sagemaker))])
    with pytest.raises(runtime.exceptions.ValidationError, match="exceeds the 6 MB limit"):
        runtime.invoke_endpoint(EndpointName=name, Body=b"x" * (6 * 1024 * 1024 + 1), ContentType="text/csv")


def test_data_capture_is_written_as_the_model_s_role(cloud, sagemaker, denials):
    # Given a model whose execution role may read but not write the capture destination
    s3 = cloud.client("s3")
    bucket = f"capture-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    reader = role(cloud, f"reader-{uuid.uuid4().hex[:6]}", "sagemaker.amazonaws.com", ["s3:GetObject", "s3:ListBucket"])
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    config = _config(sagemaker, [_variant(_model(sagemaker, role_arn=reader), "Prod", 1)], DataCaptureConfig=capture)
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    denials.expect("s3:PutObject", f"{bucket}/capture/")
    # When it serves, then its capture is refused as AWS refuses the role's PutObject, and nothing is written
    cloud.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, Body=b"5.1,3.5", ContentType="text/csv")
    [refusal] = wait_for(lambda: [r for r in denials.seen() if r["action"] == "s3:PutObject"], timeout=30)
    assert refusal["role"] == reader
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="capture/")


def test_data_capture_writes_sagemakers_layout_with_inference_ids_for_production_and_shadow(cloud, sagemaker):
    s3 = cloud.client("s3")
    bucket = f"capture-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    champion, candidate = _model(sagemaker), _model(sagemaker)
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    config = _config(
        sagemaker,
        [_variant(champion, "Prod", 1)],
        shadows=[_variant(candidate, "Shadow", 1)],
        DataCaptureConfig=capture,
    )
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    runtime = cloud.client("sagemaker-runtime")
    for i in range(5):
        runtime.invoke_endpoint(EndpointName=name, Body=b"5.1,3.5", ContentType="text/csv", InferenceId=f"id-{i}")

    def records():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="capture/").get("Contents", [])]
        lines = [
            json.loads(line)
            for key in keys
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        ]
        return (keys, lines) if len(lines) == 10 else None

    keys, lines = wait_for(records)
    assert all(
        re.fullmatch(rf"capture/{name}/(Prod|Shadow)/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/.+\.jsonl", k) for k in keys
    )
    first = lines[0]
    assert first["eventVersion"] == "0"
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "5.1,3.5",
        "encoding": "CSV",
    }
    assert first["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    ids = sorted(r["eventMetadata"]["inferenceId"] for r in lines)
    assert ids == sorted([f"id-{i}" for i in range(5)] * 2), "production and shadow captures pair on InferenceId"


def test_invocations_and_errors_are_published_per_variant(cloud, sagemaker):
    model = _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(model, "A", 1)])
    runtime = cloud.client("sagemaker-runtime")
    for _ in range(7):
        runtime.invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv")
    for _ in range(3):
        with pytest.raises(runtime.exceptions.ModelError):
            runtime.invoke_endpoint(EndpointName=name, Body=b"fail", ContentType="text/csv")
    cloud.sagemaker_runtime.metrics.flush(everything=True)
    cloudwatch = cloud.client("cloudwatch")
    dimensions = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "A"}]
    start, end = cloud.clock.now() - timedelta(hours=1), cloud.clock.now() + timedelta(hours=1)

    def total(metric: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=start,
            EndTime=end,
            Period=3600,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(p["Sum"] for p in points)

    assert total("Invocations") == 10
    assert total("Invocation4XXErrors") == 3
    assert total("Invocation5XXErrors") == 0
    latency = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="OverheadLatency",
        Dimensions=dimensions,
        StartTime=start,
        EndTime=end,
        Period=3600,
        Statistics=["SampleCount"],
    )["Datapoints"]
    assert sum(p["SampleCount"] for p in latency) == 10


def test_target_tracking_scales_the_variant_out_and_back_in(cloud, sagemaker):
    model = _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(model, "AllTraffic", 1, count=1)])
    scaling = cloud.client("application-autoscaling")
    resource = f"endpoint/{name}/variant/AllTraffic"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=4,
    )
    scaling.put_scaling_policy(
        PolicyName="tt",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "ScaleInCooldown": 0,
            "ScaleOutCooldown": 0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        },
    )
    runtime = cloud.client("sagemaker-runtime")

    def minute_start() -> None:
        # A metrics period is one wall second at this time scale: start early in one, so the
        # requests that follow land in a single period (the policy acts on the latest complete one).
        wait_for(lambda: cloud.clock.now().second < 5, timeout=5, interval=0.005)

    def send(requests: int) -> None:
        for _ in range(requests):
            runtime.invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv")

    def count_once_judged(wanted: int) -> bool:
        cloud.autoscaler.evaluate()
        return sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"] == wanted

    # 12 invocations on 1 instance against a target of 5 per instance: ceil(12 / 5) = 3 instances,
    # once their minute is complete. Half of them published and evaluated mid-minute do not count
    # as that minute's value (they would scale to 2 and the whole minute would never be judged).
    minute_start()
    send(6)
    cloud.sagemaker_runtime.metrics.flush(everything=True)
    cloud.autoscaler.evaluate()
    send(6)
    described = _status(sagemaker, name, "InService")
    wait_for(lambda: count_once_judged(3))
    activities = scaling.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource)
    assert activities["ScalingActivities"][0]["StatusCode"] == "Successful"
    assert "Setting desired instance count to 3" in activities["ScalingActivities"][0]["Description"]
    assert "metric 12 above target 5" in activities["ScalingActivities"][0]["Cause"], "judged on the whole minute"
    # A later period with 3 invocations on 3 instances (1 per instance, well under 5): back to 1
    cloud.clock.sleep(61)  # into the next metrics period
    minute_start()
    send(3)
    wait_for(lambda: count_once_judged(1))
    assert described["EndpointStatus"] == "InService"


def test_a_variant_registered_for_autoscaling_cannot_be_removed(cloud, sagemaker):
    model = _model(sagemaker)
    name = _endpoint(sagemaker, [_variant(model, "Old", 1)])
    cloud.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{name}/variant/Old",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    replacement = _config(sagemaker, [_variant(model, "New", 1)])
    with pytest.raises(sagemaker.exceptions.ClientError, match="registered as Application Auto Scaling"):
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=replacement)


def _blue_green(routing: dict, alarms: list[str], termination: int = 0) -> dict:
    config: dict = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": termination,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


def test_canary_update_rolls_back_when_an_alarm_trips_while_baking(cloud, sagemaker):
    blue = _config(sagemaker, [_variant(_model(sagemaker), "AllTraffic")])
    green = _config(sagemaker, [_variant(_model(sagemaker), "AllTraffic")])
    name = _endpoint_from(sagemaker, blue)
    alarm = f"errors-{name}"
    cloudwatch = cloud.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    routing = {"Type": "CANARY", "WaitIntervalInSeconds": 600, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}
    sagemaker.update_endpoint(
        EndpointName=name, EndpointConfigName=green, DeploymentConfig=_blue_green(routing, [alarm])
    )
    endpoint = cloud.sagemaker.endpoints[name]
    wait_for(lambda: endpoint.green is not None and endpoint.green_share == 0.1)
    green_fleet = next(iter(endpoint.green.values())).fleet
    # Errors on the canary for the next five virtual minutes: the alarm's own evaluation trips it and keeps it
    # in ALARM (SetAlarmState would only hold until the next evaluation, a race with the bake loop's polling).
    now = cloud.clock.now()
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
                "Timestamp": now + timedelta(seconds=60 * minute),
                "Value": 3.0,
            }
            for minute in range(-1, 6)
        ],
    )
    described = wait_for(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == "InService"
            and "rolled back" in d.get("FailureReason", "")
            and d
        )
    )
    assert described["EndpointConfigName"] == blue
    assert alarm in described["FailureReason"]
    assert green_fleet.stopped.wait(10)
    assert endpoint.green is None


def test_linear_update_shifts_traffic_in_steps_then_retires_blue(cloud, sagemaker):
    blue = _config(sagemaker, [_variant(_model(sagemaker), "AllTraffic")])
    green = _config(sagemaker, [_variant(_model(sagemaker), "AllTraffic")])
    name = _endpoint_from(sagemaker, blue)
    blue_fleet = cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet
    routing = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }
    endpoint = cloud.sagemaker.endpoints[name]
    shares: list[float] = []
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=green, DeploymentConfig=_blue_green(routing, []))

    def done() -> bool:
        if endpoint.green is not None and (not shares or shares[-1] != endpoint.green_share):
            shares.append(endpoint.green_share)
        return sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"] == green

    wait_for(done, interval=0.02)
    assert shares[:2] == [0.5, 1.0]
    assert blue_fleet.stopped.wait(10)
    assert sagemaker.describe_endpoint(EndpointName=name)["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]


def _endpoint_from(sagemaker, config: str) -> str:
    name = f"e-{uuid.uuid4().hex[:8]}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    _status(sagemaker, name, "InService")
    return name
