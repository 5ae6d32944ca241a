"""The seed's AWS CLI commands, run by a real ``aws`` (CLI v1) against the local cloud.

The CLI lives in a virtual environment of its own, ``.venv-awscli`` (``make`` builds it, as
``.venv-sam`` for SAM), so that it never touches the project's pinned boto3/botocore. Set
SHEPHERD_AWS_CLI to use another ``aws`` binary. A missing CLI fails these tests: CI runs them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
AWS_CLI = Path(os.environ.get("SHEPHERD_AWS_CLI") or ROOT / ".venv-awscli" / "bin" / "aws")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
SEED_ROW = [5.1, 3.5, 1.4, 0.2]

Aws = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def aws(cloud, tmp_path_factory) -> Aws:
    """Run `aws ...` with the local cloud's exports and no user config; returns its parsed JSON output."""
    if not AWS_CLI.is_file():
        pytest.fail(
            f"the AWS CLI is not at {AWS_CLI}: run `make .venv-awscli/.installed` "
            "(or set SHEPHERD_AWS_CLI to an aws binary)"
        )
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_DEFAULT_OUTPUT": "json",
        **cloud.exports(),
    }

    def run(*args: str, cwd: Path | None = None) -> dict[str, Any]:
        done = subprocess.run(
            [str(AWS_CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"aws {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else {}

    return run


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A four-feature Iris model ("setosa?") packed with examples/churn/inference.py as its serving code."""
    iris = load_iris()
    fitted = LogisticRegression(max_iter=500).fit(iris.data, iris.target == 0)
    work = tmp_path_factory.mktemp("cli-model")
    joblib.dump(fitted, work / "model.joblib")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(work / "model.joblib", arcname="model.joblib")
        tar.add(ROOT / "examples" / "churn" / "inference.py", arcname="code/inference.py")
    return fitted, buffer.getvalue()


def _deploy(cloud, archive: bytes, count: int) -> str:
    """The endpoint the seed's commands address, created with boto3 as the SDK's deploy() would."""
    suffix = uuid.uuid4().hex[:8]
    s3 = cloud.client("s3")
    bucket = f"seed-cli-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model/model.tar.gz", Body=archive)
    sagemaker = cloud.client("sagemaker")
    sagemaker.create_model(
        ModelName=f"sklearn-{suffix}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"sklearn-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"sklearn-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
    )
    name = f"sklearn-endpoint-{suffix}"
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=f"sklearn-{suffix}")
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService", timeout=60)
    return name


def _delete(cloud, name: str) -> None:
    cloud.client("sagemaker").delete_endpoint(EndpointName=name)
    wait_for(lambda: name not in cloud.sagemaker.endpoints, timeout=30)


def test_cli_is_the_isolated_v1_cli(aws):
    # Given the CLI the tests run, When it reports its version
    done = subprocess.run([str(AWS_CLI), "--version"], capture_output=True, text=True, check=False, timeout=60)
    # Then it is the AWS CLI v1 from its own environment, not the project's botocore
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).startswith("aws-cli/1."), done.stdout + done.stderr


def test_invoke_endpoint_with_a_json_file_writes_the_prediction(cloud, aws, model, tmp_path):
    fitted, archive = model
    # Given a deployed endpoint and the seed's input file (echo '[5.1, 3.5, 1.4, 0.2]' > input.json)
    name = _deploy(cloud, archive, count=1)
    (tmp_path / "input.json").write_text("[5.1, 3.5, 1.4, 0.2]\n")

    # When the seed's command runs
    printed = aws(
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        name,
        "--body",
        "fileb://input.json",
        "--content-type",
        "application/json",
        "output.json",
        cwd=tmp_path,
    )

    # Then the CLI prints the response's metadata and output.json holds the model's own prediction
    assert printed["ContentType"] == "application/json"
    assert printed["InvokedProductionVariant"] == "AllTraffic"
    output = json.loads((tmp_path / "output.json").read_text())
    expected = fitted.predict_proba(np.array([SEED_ROW]))[:, 1]
    assert output["predictions"] == pytest.approx(expected.tolist(), rel=1e-6)
    assert output["predictions"][0] > 0.5, "the seed's row is a setosa"
    _delete(cloud, name)


def test_target_tracking_registered_by_the_cli_scales_the_variant_out_under_load(cloud, aws, model):
    _, archive = model
    # Given the seed's endpoint with two instances
    name = _deploy(cloud, archive, count=2)
    resource = f"endpoint/{name}/variant/AllTraffic"

    # When the seed's two Application Auto Scaling commands run, as written but for the target (below)
    aws(
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "sagemaker",
        "--resource-id",
        resource,
        "--scalable-dimension",
        "sagemaker:variant:DesiredInstanceCount",
        "--min-capacity",
        "2",
        "--max-capacity",
        "10",
    )
    policy = aws(
        "application-autoscaling",
        "put-scaling-policy",
        "--service-namespace",
        "sagemaker",
        "--resource-id",
        resource,
        "--scalable-dimension",
        "sagemaker:variant:DesiredInstanceCount",
        "--policy-name",
        "target-tracking",
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        """{
        "TargetValue": 20.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60
    }""",
    )
    assert policy["PolicyARN"].startswith("arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:")

    # Then the CLI describes the target and the policy as registered
    targets = aws(
        "application-autoscaling",
        "describe-scalable-targets",
        "--service-namespace",
        "sagemaker",
        "--resource-ids",
        resource,
    )["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(resource, 2, 10)]
    assert targets[0]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policies = aws(
        "application-autoscaling",
        "describe-scaling-policies",
        "--service-namespace",
        "sagemaker",
        "--resource-id",
        resource,
    )["ScalingPolicies"]
    assert [(p["PolicyName"], p["PolicyType"]) for p in policies] == [("target-tracking", "TargetTrackingScaling")]
    config = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 20.0
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (config["ScaleInCooldown"], config["ScaleOutCooldown"]) == (300, 60)

    # When load above 20 invocations per instance per (virtual) minute arrives: at time scale 60 a
    # minute is a wall second, so more than 40 requests a second on the two instances. (The seed's
    # target is 70; 20 keeps a wide margin below what eight clients reach on a loaded 2-core CI
    # machine, about 290 requests a second unloaded.)
    runtime = cloud.client("sagemaker-runtime")
    sagemaker = cloud.client("sagemaker")
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        while not stop.is_set():
            runtime.invoke_endpoint(EndpointName=name, Body=b"5.1,3.5,1.4,0.2", ContentType="text/csv")
            sent[0] += 1

    def scaled_out() -> bool:
        cloud.sagemaker_runtime.metrics.flush(everything=True)
        cloud.autoscaler.evaluate()
        return sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["DesiredInstanceCount"] > 2

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(load) for _ in range(8)]
        try:
            wait_for(scaled_out, timeout=30, interval=0.3)
        finally:
            stop.set()
        for worker in workers:
            worker.result()
    elapsed = time.monotonic() - started
    rate = sent[0] / elapsed
    print(f"\n[timing] scale-out after {elapsed:.1f}s of load at {rate:.0f} requests/s")

    # Then the variant scaled out within its max, a Successful activity says so, and the endpoint serves
    # on the new instances (the CLI's describe-endpoint shows them)
    activities = aws(
        "application-autoscaling",
        "describe-scaling-activities",
        "--service-namespace",
        "sagemaker",
        "--resource-id",
        resource,
    )["ScalingActivities"]
    assert activities, f"no scaling activity at {rate:.0f} requests/s"
    latest = activities[0]
    assert latest["StatusCode"] == "Successful", latest
    wanted = int(latest["Description"].removeprefix("Setting desired instance count to ").rstrip("."))
    assert 2 < wanted <= 10
    print(f"[scaling] {latest['Cause']} -> {wanted} instances")
    described = wait_for(
        lambda: (
            (d := aws("sagemaker", "describe-endpoint", "--endpoint-name", name))["EndpointStatus"] == "InService"
            and d["ProductionVariants"][0]["CurrentInstanceCount"] >= wanted
            and d
        ),
        timeout=60,
        interval=0.5,
    )
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] <= 10
    assert len(cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet.pids) >= wanted

    aws(
        "application-autoscaling",
        "deregister-scalable-target",
        "--service-namespace",
        "sagemaker",
        "--resource-id",
        resource,
        "--scalable-dimension",
        "sagemaker:variant:DesiredInstanceCount",
    )
    _delete(cloud, name)
