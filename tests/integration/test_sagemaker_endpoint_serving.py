"""Real-time endpoints serving a real scikit-learn model in worker processes."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from .conftest import FIXTURES, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(7)
    features = rng.normal(size=(400, 4))
    labels = (features @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    work = tmp_path_factory.mktemp("model")
    joblib.dump(model, work / "model.joblib")
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work / "model.joblib", arcname="model.joblib")
        tar.add(FIXTURES / "serving" / "inference.py", arcname="code/inference.py")
    return model, archive


@pytest.fixture(scope="module")
def model_url(cloud, trained):
    s3 = cloud.client("s3")
    bucket = f"serving-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(trained[1]), bucket, "model/model.tar.gz")
    return f"s3://{bucket}/model/model.tar.gz"


def _deploy(cloud, model_url: str, count: int = 1, env: dict | None = None) -> str:
    sagemaker = cloud.client("sagemaker")
    suffix = uuid.uuid4().hex[:8]
    sagemaker.create_model(
        ModelName=f"m-{suffix}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url, "Environment": env or {}},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"c-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"m-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=f"e-{suffix}", EndpointConfigName=f"c-{suffix}")
    return f"e-{suffix}"


def _wait_status(cloud, name: str, status: str) -> dict:
    sagemaker = cloud.client("sagemaker")
    return wait_for(
        lambda: (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == status and d, timeout=120
    )


def test_endpoint_answers_with_the_models_own_predictions(cloud, trained, model_url):
    model, _ = trained
    name = _deploy(cloud, model_url, count=2)
    _wait_status(cloud, name, "InService")
    rows = np.random.default_rng(1).normal(size=(20, 4))
    body = "\n".join(",".join(f"{v:.6f}" for v in row) for row in rows)
    response = cloud.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=body, ContentType="text/csv", Accept="text/csv"
    )
    got = np.array([float(line) for line in response["Body"].read().decode().split()])
    expected = model.predict_proba(np.array([[float(f"{v:.6f}") for v in row] for row in rows]))[:, 1]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert response["InvokedProductionVariant"] == "AllTraffic"


def test_two_instances_serve_concurrently_from_two_processes(cloud, model_url):
    name = _deploy(cloud, model_url, count=2)
    _wait_status(cloud, name, "InService")
    fleet = cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet
    assert len(fleet.pids) == 2
    runtime = cloud.client("sagemaker-runtime")
    with ThreadPoolExecutor(4) as pool:
        codes = list(
            pool.map(
                lambda _: runtime.invoke_endpoint(EndpointName=name, Body="0,0,0,0", ContentType="text/csv")[
                    "ResponseMetadata"
                ]["HTTPStatusCode"],
                range(16),
            )
        )
    assert codes == [200] * 16


def test_a_model_error_reaches_the_client_as_model_error(cloud, model_url):
    name = _deploy(cloud, model_url)
    _wait_status(cloud, name, "InService")
    runtime = cloud.client("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName=name, Body="-5000,0,0,0", ContentType="text/csv")
    assert "feature value below -1000 is out of range" in caught.value.response["OriginalMessage"]
    ok = runtime.invoke_endpoint(EndpointName=name, Body="0,0,0,0", ContentType="text/csv")
    assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_model_that_fails_to_load_fails_the_endpoint(cloud, model_url):
    name = _deploy(cloud, model_url, env={"BREAK_ON_LOAD": "1"})
    described = _wait_status(cloud, name, "Failed")
    assert "model.joblib is corrupt" in described["FailureReason"]


def test_scaling_a_variant_changes_its_worker_processes_and_delete_stops_them(cloud, model_url):
    name = _deploy(cloud, model_url, count=1)
    _wait_status(cloud, name, "InService")
    sagemaker = cloud.client("sagemaker")
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}]
    )
    described = wait_for(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == "InService"
            and d["ProductionVariants"][0]["CurrentInstanceCount"] == 3
            and d
        ),
        timeout=120,
    )
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    fleet = cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet
    pids = fleet.pids
    assert len(pids) == 3
    sagemaker.delete_endpoint(EndpointName=name)
    wait_for(lambda: name not in cloud.sagemaker.endpoints)
    wait_for(
        lambda: (
            not [
                pid
                for pid in pids
                if Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
            ]
        )
    )


def test_bad_requests_are_model_errors_in_aws_words_pointing_at_the_local_log(cloud, model_url):
    # InvokeEndpoint's ModelError (HTTP 424) carries the container's status: a 4xx is a "client error", a 5xx a
    # "server error" (botocore's ModelError shape; wording as in amazon-sagemaker-examples#1809 and #589).
    name = _deploy(cloud, model_url)
    _wait_status(cloud, name, "InService")
    runtime = cloud.client("sagemaker-runtime")
    group, stream = f"/aws/sagemaker/Endpoints/{name}", "AllTraffic/i-local"
    command = f"aws logs get-log-events --log-group-name {group} --log-stream-name {stream} --query 'events[].message'"
    see = f"See the log stream {stream} of {group} ({command}) in account"

    # A ragged CSV: the scikit-learn container fails to decode it, a 500 as on AWS
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName=name, Body=b"0,0,0,0\n1,2\n", ContentType="text/csv")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    original = "ClientError: Error while decoding csv: row 2 has 2 fields where row 1 has 4"
    assert error["OriginalMessage"] == original
    assert error["Error"]["Message"] == (
        f'Received server error (500) from primary with message "{original}". {see} 123456789012 for more information.'
    )
    assert error["LogStreamArn"] == f"arn:aws:logs:us-east-1:123456789012:log-group:{group}:log-stream:{stream}"

    # A content type the container has no decoder for: its 415, a client error
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName=name, Body=io.BytesIO(b"<x/>").read(), ContentType="application/xml")
    error = caught.value.response
    assert error["OriginalStatusCode"] == 415
    assert error["Error"]["Message"].startswith(
        'Received client error (415) from primary with message "Content type application/xml is not supported'
    )
    assert see in error["Error"]["Message"]

    # The stream the message names holds the container's account of both
    logs = cloud.client("logs")
    events = wait_for(
        lambda: (
            (
                found := [
                    e["message"]
                    for e in logs.filter_log_events(logGroupName=group, logStreamNames=[stream])["events"]
                    if e["message"].startswith("Invocation failed")
                ]
            )
            and len(found) == 2
            and found
        )
    )
    assert events[0].startswith("Invocation failed (500, request of 12 bytes, Content-Type text/csv): ClientError")
    assert events[1].startswith("Invocation failed (415, request of 4 bytes, Content-Type application/xml)")


def _serverless(cloud, model_url: str, concurrency: int) -> str:
    sagemaker = cloud.client("sagemaker")
    suffix = uuid.uuid4().hex[:8]
    sagemaker.create_model(
        ModelName=f"m-{suffix}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"c-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"m-{suffix}",
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": concurrency},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=f"e-{suffix}", EndpointConfigName=f"c-{suffix}")
    _wait_status(cloud, f"e-{suffix}", "InService")
    return f"e-{suffix}"


def test_serverless_cold_starts_throttles_beyond_max_concurrency_and_scales_to_zero(cloud, model_url):
    from botocore.config import Config

    name = _serverless(cloud, model_url, concurrency=1)
    fleet = cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet
    assert fleet.warm_instances == 0, "a serverless endpoint starts with no instance"
    runtime = boto3_client(cloud, retries=Config(retries={"max_attempts": 1, "mode": "standard"}))
    runtime.invoke_endpoint(EndpointName=name, Body="0,0,0,0", ContentType="text/csv")
    assert fleet.warm_instances == 1
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(runtime.invoke_endpoint, EndpointName=name, Body="777,0,0,0", ContentType="text/csv")
        wait_for(lambda: fleet.warm_instances == 0)  # the slow request holds the only slot
        with pytest.raises(runtime.exceptions.ClientError, match="ThrottlingException"):
            runtime.invoke_endpoint(EndpointName=name, Body="0,0,0,0", ContentType="text/csv")
        assert slow.result()["ResponseMetadata"]["HTTPStatusCode"] == 200
    fleet.IDLE_SECONDS = 60  # one wall second at the tests' time scale
    wait_for(lambda: fleet.warm_instances == 0, timeout=30)


def test_multi_model_loads_on_first_use_evicts_lru_and_refuses_unknown_models(cloud, trained):
    s3 = cloud.client("s3")
    bucket = f"mme-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for name in ("a.tar.gz", "b.tar.gz"):
        s3.upload_file(str(trained[1]), bucket, f"models/{name}")
    sagemaker = cloud.client("sagemaker")
    suffix = uuid.uuid4().hex[:8]
    sagemaker.create_model(
        ModelName=f"m-{suffix}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "Mode": "MultiModel",
            "ModelDataUrl": f"s3://{bucket}/models/",
            "Environment": {"SHEPHERD_MME_MEMORY_BUDGET_MB": "0.0001"},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"c-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"m-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=f"e-{suffix}", EndpointConfigName=f"c-{suffix}")
    _wait_status(cloud, f"e-{suffix}", "InService")
    fleet = cloud.sagemaker.endpoints[f"e-{suffix}"].variants["AllTraffic"].fleet
    runtime = cloud.client("sagemaker-runtime")
    expected = trained[0].predict_proba(np.zeros((1, 4)))[0, 1]
    for target in ("a.tar.gz", "b.tar.gz"):
        answer = runtime.invoke_endpoint(
            EndpointName=f"e-{suffix}", Body="0,0,0,0", ContentType="text/csv", TargetModel=target
        )["Body"].read()
        assert json.loads(answer) == [pytest.approx(expected)]
    assert fleet.loaded_models() == ["b.tar.gz"], "the budget holds one model: a was evicted"
    with pytest.raises(runtime.exceptions.ValidationError, match="Failed to download model data"):
        runtime.invoke_endpoint(
            EndpointName=f"e-{suffix}", Body="0,0,0,0", ContentType="text/csv", TargetModel="missing.tar.gz"
        )


def boto3_client(cloud, retries):
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=cloud.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=retries,
    )


def test_no_request_fails_while_the_endpoint_is_updated_and_reweighted_under_load(cloud, model_url):
    # Given an endpoint under steady concurrent traffic
    name = _deploy(cloud, model_url, count=2)
    _wait_status(cloud, name, "InService")
    sagemaker, runtime = cloud.client("sagemaker"), cloud.client("sagemaker-runtime")
    suffix = uuid.uuid4().hex[:8]
    sagemaker.create_model(
        ModelName=f"m2-{suffix}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"c2-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"m2-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            },
            {
                "VariantName": "Challenger",
                "ModelName": f"m2-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            },
        ],
    )
    stop = threading.Event()
    outcomes: list[int | str] = []

    def traffic() -> None:
        while not stop.is_set():
            try:
                response = runtime.invoke_endpoint(EndpointName=name, Body="0,1,0,1", ContentType="text/csv")
                outcomes.append(response["ResponseMetadata"]["HTTPStatusCode"])
            except Exception as exc:  # any failure counts
                outcomes.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            pool.submit(traffic)
        # When it is updated to a two-variant config, then its weights and counts change
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=f"c2-{suffix}")
        wait_for(
            lambda: (
                (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointConfigName"] == f"c2-{suffix}"
                and d["EndpointStatus"] == "InService"
            ),
            timeout=120,
        )
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "Challenger", "DesiredWeight": 9, "DesiredInstanceCount": 2}],
        )
        _wait_status(cloud, name, "InService")
        stop.set()
    # Then every request was answered
    failures = [o for o in outcomes if o != 200]
    assert len(outcomes) > 20
    assert failures == []
