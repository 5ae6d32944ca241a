"""Fault rules on the running local cloud: errors in each service's protocol, as clients and Step Functions see them;
lost SageMaker events; the CLI. docs/FAULTS.md."""

from __future__ import annotations

import json
import tarfile
import uuid
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from localcloud.faults import FaultRuleInvalid
from shepherd_cli.main import app

from .conftest import FIXTURES, wait_for

pytestmark = pytest.mark.integration
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
CUSTOM_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own-algorithm:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
TRAINING = "SageMaker Training Job State Change"


@pytest.fixture
def faults(cloud):
    yield cloud.faults
    cloud.faults.clear()


def _client(cloud, service: str, attempts: int) -> Any:
    return boto3.client(
        service,
        endpoint_url=cloud.endpoint,
        region_name="us-east-1",
        aws_access_key_id="shepherd-local",
        aws_secret_access_key="shepherd-local",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


class _IdleFleet:
    """An endpoint's instances that load nothing: the control plane is what is under test."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None: ...
    def start(self) -> None: ...
    def resize(self, count: int) -> None: ...
    def stop(self) -> None: ...


def _endpoint(cloud, monkeypatch) -> str:
    monkeypatch.setattr(cloud.sagemaker, "fleet_factory", _IdleFleet)
    sm = cloud.client("sagemaker")
    name = f"faults-{uuid.uuid4().hex[:8]}"
    container = {"Image": IMAGE, "ModelDataUrl": "s3://b/m.tar.gz"}
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    variant = {"VariantName": "v", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def test_a_throttled_describe_endpoint_is_retried_by_boto3_and_succeeds(cloud, faults, monkeypatch):
    # Given an endpoint, and DescribeEndpoint throttled twice
    name = _endpoint(cloud, monkeypatch)
    rule = faults.add({"service": "sagemaker", "operation": "DescribeEndpoint", "error": "throttle", "count": 2})

    # When a client with botocore's standard retry mode (3 attempts in all, its default) describes it
    described = _client(cloud, "sagemaker", attempts=3).describe_endpoint(EndpointName=name)

    # Then the third attempt answered, and the rule expired
    assert described["EndpointName"] == name
    assert described["ResponseMetadata"]["RetryAttempts"] == 2
    assert rule not in [r["id"] for r in faults.list()]


def test_a_throttle_outlasting_the_retries_reaches_the_client_as_throttling_exception(cloud, faults):
    faults.add({"service": "sagemaker", "operation": "ListEndpoints", "error": "throttle", "count": 2})

    with pytest.raises(ClientError) as raised:
        _client(cloud, "sagemaker", attempts=2).list_endpoints()

    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 1


def test_access_denied_on_s3_put_object_is_not_retried(cloud, faults, outputs):
    faults.add({"service": "s3", "operation": "PutObject", "error": "access-denied"})
    s3 = _client(cloud, "s3", attempts=3)

    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=outputs["BucketName"], Key="faults/denied.txt", Body=b"x")

    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    s3.get_bucket_location(Bucket=outputs["BucketName"])  # other operations go through


def test_a_state_machines_lambda_task_meets_a_fault_aimed_at_its_role(cloud, faults, outputs):
    # Given the Pipeline's role throttled on Lambda Invoke (the Echo task has no Retry)
    sfn = cloud.client("stepfunctions")
    role_arn = sfn.describe_state_machine(stateMachineArn=outputs["PipelineArn"])["roleArn"]
    faults.add({"service": "lambda", "operation": "Invoke", "principal": role_arn, "count": 1})
    cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{}")  # a user's call: no fault

    # When an execution runs
    payload = {"detail": {"object": {"key": "incoming/faults.csv"}}}
    arn = sfn.start_execution(stateMachineArn=outputs["PipelineArn"], input=json.dumps(payload))["executionArn"]
    done = wait_for(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d)

    # Then its task failed with Lambda's throttling error: the engine's calls take the same path
    assert done["status"] == "FAILED"
    assert done["error"] == "Lambda.TooManyRequestsException"  # as Step Functions names a Lambda service error
    assert faults.list() == []


def _queue_for_training_events(cloud, names: list[str]) -> tuple[Any, str]:
    sqs = cloud.client("sqs")
    url = sqs.create_queue(QueueName=names[0])["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = cloud.client("events")
    pattern = {"source": ["aws.sagemaker"], "detail-type": [TRAINING], "detail": {"TrainingJobName": names}}
    events.put_rule(Name=names[0], EventPattern=json.dumps(pattern))
    events.put_targets(Rule=names[0], Targets=[{"Id": "queue", "Arn": queue_arn}])
    return sqs, url


def _failing_job(cloud, name: str) -> None:
    """A job SageMaker fails at once (an image that needs a container): it emits its state changes quickly."""
    cloud.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": CUSTOM_IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://nowhere/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )


def test_a_dropped_training_job_event_is_never_delivered(cloud, faults):
    # Given a queue for two jobs' state changes, and the first job's Failed event dropped
    dropped, later = f"drop-{uuid.uuid4().hex[:8]}", f"later-{uuid.uuid4().hex[:8]}"
    sqs, url = _queue_for_training_events(cloud, [dropped, later])
    faults.add({"kind": "event-drop", "detail_type": TRAINING, "resource": f"*/{dropped}"})

    # When both jobs fail, one after the other
    sm = cloud.client("sagemaker")
    _failing_job(cloud, dropped)
    wait_for(lambda: sm.describe_training_job(TrainingJobName=dropped)["TrainingJobStatus"] == "Failed")
    _failing_job(cloud, later)

    # Then the later job's events arrive (SageMaker's events are put in order by one thread), the dropped ones never
    seen: list[dict[str, Any]] = []

    def later_failed() -> bool:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        seen.extend(json.loads(m["Body"])["detail"] for m in got)
        return any(d["TrainingJobName"] == later and d["TrainingJobStatus"] == "Failed" for d in seen)

    wait_for(later_failed)
    assert [d for d in seen if d["TrainingJobName"] == dropped] == []
    assert sm.describe_training_job(TrainingJobName=dropped)["TrainingJobStatus"] == "Failed"  # the job is as it was


def test_the_cli_adds_lists_and_clears_rules(cloud, faults):
    runner = CliRunner()
    url = ["--endpoint-url", cloud.endpoint]

    added = runner.invoke(
        app, ["local", "fault", "add", "--service", "s3", "--operation", "GetObject", "--count", "3", *url]
    )
    listed = runner.invoke(app, ["local", "fault", "list", "--json", *url])

    assert added.exit_code == 0, added.output
    rules = json.loads(listed.output)
    assert [(r["id"], r["service"], r["operation"], r["count"]) for r in rules] == [
        (added.output.strip(), "s3", "GetObject", 3)
    ]
    assert runner.invoke(app, ["local", "fault", "clear", *url]).exit_code == 0
    assert faults.list() == []
    refused = runner.invoke(app, ["local", "fault", "add", "--probability", "2", *url])
    assert refused.exit_code == 1
    assert "probability" in refused.output


@pytest.fixture
def served_model(cloud, tmp_path) -> str:
    """A scikit-learn model on an InService endpoint of one instance, served by real worker processes."""
    features = np.random.default_rng(7).normal(size=(200, 4))
    joblib.dump(LogisticRegression().fit(features, features[:, 0] > 0), tmp_path / "model.joblib")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.joblib", arcname="model.joblib")
        tar.add(FIXTURES / "serving" / "inference.py", arcname="code/inference.py")
    name = f"crash-{uuid.uuid4().hex[:8]}"
    cloud.client("s3").create_bucket(Bucket=name)
    cloud.client("s3").upload_file(str(tmp_path / "model.tar.gz"), name, "model.tar.gz")
    sm = cloud.client("sagemaker")
    container = {"Image": IMAGE, "ModelDataUrl": f"s3://{name}/model.tar.gz"}
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    variant = {"VariantName": "v", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_for(lambda: sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService", timeout=60)
    yield name
    sm.delete_endpoint(EndpointName=name)


@pytest.mark.slow
def test_a_container_crashing_after_n_requests_fails_one_and_is_restarted(cloud, faults, served_model):
    # Given the model's containers crash after one answer, once
    faults.add({"kind": "container-crash-after", "resource": served_model, "after_requests": 1, "count": 1})
    runtime = _client(cloud, "sagemaker-runtime", attempts=1)
    fleet = cloud.sagemaker.endpoints[served_model].variants["v"].fleet
    before = set(fleet.pids)

    def status() -> int | str:
        try:
            return runtime.invoke_endpoint(EndpointName=served_model, Body="0,0,0,0", ContentType="text/csv")[
                "ResponseMetadata"
            ]["HTTPStatusCode"]
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    # When three requests come, one after the other
    answers = [status() for _ in range(3)]

    # Then the second met the crash, and a new worker process served the third
    assert answers == [200, "ModelError", 200]
    assert before.isdisjoint(fleet.pids)


def test_a_lambda_crash_rule_kills_the_runtime_as_lambda_reports_it(cloud, faults):
    faults.add({"kind": "lambda-crash", "resource": "fixture-EchoFunction"})

    response = cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{}")

    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "Runtime.ExitError"
    with pytest.raises(FaultRuleInvalid, match="no function"):
        faults.add({"kind": "lambda-crash", "resource": "no-such-function"})


DISK_WRITING = """
import os

import joblib
import numpy as np

SCRATCH = "/tmp"  # the container's scratch space


def model_fn(model_dir):
    if os.environ.get("CACHE_ON_LOAD"):  # a model that writes a cache while it loads
        with open(os.path.join(SCRATCH, f"model-cache-{os.getpid()}.bin"), "wb") as cache:
            cache.write(b"cache")
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(input_data, model):
    input_data = np.atleast_2d(input_data)
    if input_data[0, 0] > 0:  # a request this model spills to a scratch file
        path = os.path.join(SCRATCH, f"spill-{os.getpid()}.bin")
        with open(path, "wb") as spill:
            spill.write(input_data.tobytes())
        os.remove(path)
    return model.predict_proba(input_data)[:, 1]
"""


@pytest.mark.slow
def test_a_container_whose_disk_is_full_fails_what_writes_and_serves_what_does_not(cloud, faults, tmp_path):
    # Given a model whose requests with a positive first feature spill to a temporary file, and one that writes a
    # cache while loading, both under a container-disk-full rule
    features = np.random.default_rng(7).normal(size=(200, 4))
    joblib.dump(LogisticRegression().fit(features, features[:, 0] > 0), tmp_path / "model.joblib")
    (tmp_path / "inference.py").write_text(DISK_WRITING)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.joblib", arcname="model.joblib")
        tar.add(tmp_path / "inference.py", arcname="code/inference.py")
    bucket = f"disk-{uuid.uuid4().hex[:8]}"
    cloud.client("s3").create_bucket(Bucket=bucket)
    cloud.client("s3").upload_file(str(tmp_path / "model.tar.gz"), bucket, "model.tar.gz")
    sm = cloud.client("sagemaker")
    faults.add({"kind": "container-disk-full", "resource": f"{bucket}-*"})
    names = {}
    for kind, environment in (("spills", {}), ("caches", {"CACHE_ON_LOAD": "1"})):
        name = names[kind] = f"{bucket}-{kind}"
        container = {"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model.tar.gz", "Environment": environment}
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
        variant = {"VariantName": "v", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)

    def settled(name: str) -> dict[str, Any]:
        return wait_for(
            lambda: (d := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] != "Creating" and d, timeout=60
        )

    # When they start, then the one that writes while loading fails to, saying why
    caches = settled(names["caches"])
    assert caches["EndpointStatus"] == "Failed"
    assert "No space left on device" in caches["FailureReason"], caches["FailureReason"]
    # and the other serves: what it answers in memory is answered, what it spills fails with the container's 500
    assert settled(names["spills"])["EndpointStatus"] == "InService"
    runtime = _client(cloud, "sagemaker-runtime", attempts=1)
    answered = runtime.invoke_endpoint(EndpointName=names["spills"], Body="-1,0,0,0", ContentType="text/csv")
    (probability,) = json.loads(answered["Body"].read())
    assert 0.0 <= probability <= 1.0
    with pytest.raises(ClientError) as spilled:
        runtime.invoke_endpoint(EndpointName=names["spills"], Body="1,0,0,0", ContentType="text/csv")
    error = spilled.value.response
    assert (error["Error"]["Code"], error["OriginalStatusCode"]) == ("ModelError", 500)
    assert "[Errno 28] No space left on device" in error["OriginalMessage"]
    assert sm.describe_endpoint(EndpointName=names["spills"])["EndpointStatus"] == "InService"
    for name in names.values():
        sm.delete_endpoint(EndpointName=name)
