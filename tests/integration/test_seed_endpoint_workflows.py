"""The seed's SDK v2 endpoint workflows (real-time, serverless, multi-model, A/B, data capture) on the local cloud.

Each test follows the skill document's code as written, with the corrections that
docs/LOCAL_SAGEMAKER.md lists (an explicit role ARN instead of ``get_execution_role()``,
``endpoint_from_production_variants`` instead of ``create_endpoint(production_variants=...)``)
and the ones found here, each named where it is made.

The SDK's ``wait_for_endpoint`` sleeps its poll interval, 30 s, *before* its first
DescribeEndpoint, so every ``deploy()`` on a stock ``sagemaker.Session`` lasts at least 30 s
however fast the endpoint comes up. One test keeps that stock behaviour and measures it; the
others use a session whose only difference is a 0.5 s endpoint poll.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import joblib
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"  # get_execution_role() only works inside SageMaker
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SEED_ROW = [5.1, 3.5, 1.4, 0.2]  # the seed's test_data: an Iris setosa
VIRGINICA_ROW = [6.7, 3.0, 5.2, 2.3]
FAST_POLL_SECONDS = 0.5
# A script that defines only model_fn, so the container's default input/predict/output functions
# serve: application/x-npy in and out, as the SDK's SKLearnPredictor sends and expects.
SERVE_WITH_DEFAULTS = '''"""Loads the model; everything else is the scikit-learn container's defaults."""
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
'''


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def sessions(cloud):
    """The stock SDK session, and one that polls DescribeEndpoint every 0.5 s instead of every 30 s."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker

    class FastPollSession(sagemaker.Session):
        def wait_for_endpoint(self, endpoint, poll=FAST_POLL_SECONDS, live_logging=False):
            return super().wait_for_endpoint(endpoint, poll=FAST_POLL_SECONDS, live_logging=live_logging)

    def boto_session():
        return boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")

    return {"stock": sagemaker.Session(boto_session=boto_session()), "fast": FastPollSession(boto_session())}


@pytest.fixture(scope="module")
def session(sessions):
    return sessions["fast"]


@pytest.fixture(scope="module")
def bucket(session) -> str:
    return session.default_bucket()


@pytest.fixture(scope="module")
def iris_train(tmp_path_factory) -> Path:
    """The seed's data shape: four Iris measurements and a binary ``target`` (1 = setosa)."""
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    frame["target"] = (iris.target == 0).astype(int)
    path = tmp_path_factory.mktemp("iris") / "train.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def estimator(session, bucket, iris_train):
    """The seed's notebook flow: upload_data, then a script-mode SKLearn estimator fitted on it."""
    from sagemaker.sklearn.estimator import SKLearn

    train = session.upload_data(str(iris_train), bucket=bucket, key_prefix=f"seed-{_suffix()}/training")
    sklearn_estimator = SKLearn(
        entry_point="train.py",
        source_dir=str(EXAMPLE),
        role=ROLE,
        instance_type="ml.m5.xlarge",
        framework_version="1.2-1",
        py_version="py3",
        hyperparameters={"n_estimators": 100, "max_depth": 5},
        sagemaker_session=session,
    )
    sklearn_estimator.fit({"train": train}, wait=True, logs="None")
    return sklearn_estimator


@pytest.fixture(scope="module")
def trained_model(estimator, tmp_path_factory):
    """The fitted model itself, from the job's model.tar.gz, to check endpoint answers against."""
    bucket, key = estimator.model_data.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key=key)["Body"].read()
    work = tmp_path_factory.mktemp("trained")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(work, filter="data")
    return joblib.load(work / "model.joblib")


@pytest.fixture(scope="module")
def serve_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serve")
    (directory / "serve.py").write_text(SERVE_WITH_DEFAULTS)
    return directory


def _endpoint_gone(cloud, session, name: str) -> bool:
    try:
        session.sagemaker_client.describe_endpoint(EndpointName=name)
    except ClientError:
        return name not in cloud.sagemaker.endpoints
    return False


def _live(pids: list[int]) -> list[int]:
    return [
        pid
        for pid in pids
        if Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    ]


def test_realtime_deploy_predict_cli_style_invoke_and_delete(cloud, sessions, estimator, trained_model, monkeypatch):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import CSVSerializer

    # Given the seed's fitted estimator on a stock sagemaker.Session (the SDK's own 30 s endpoint poll)
    monkeypatch.setattr(estimator, "sagemaker_session", sessions["stock"])
    endpoint_name = f"sklearn-endpoint-{_suffix()}"

    # When it deploys as the seed does. Correction: train.py has no model_fn, so the serving
    # script is named (examples/churn/inference.py, in the estimator's source_dir).
    started = time.monotonic()
    predictor = estimator.deploy(
        initial_instance_count=2,
        instance_type="ml.m5.large",
        endpoint_name=endpoint_name,
        entry_point="inference.py",
    )
    deploy_seconds = time.monotonic() - started
    print(f"\n[timing] stock-session estimator.deploy: {deploy_seconds:.1f}s")

    # Then the endpoint is InService with two instances, each a real worker process
    described = sessions["stock"].sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    pids = cloud.sagemaker.endpoints[endpoint_name].variants["AllTraffic"].fleet.pids
    assert len(_live(pids)) == 2
    # ... and deploy() took the SDK's first 30 s poll and no second one: the endpoint was ready by then
    assert 29 <= deploy_seconds < 45, f"deploy took {deploy_seconds:.1f}s"

    # When the seed's numpy test_data goes through the SKLearnPredictor's defaults (application/x-npy)
    test_data = np.array([SEED_ROW])
    assert predictor.serializer.CONTENT_TYPE == "application/x-npy"
    runtime = sessions["stock"].sagemaker_runtime_client
    # Then the example's input_fn/output_fn speak x-npy too: the answer is the model's probability
    expected = trained_model.predict_proba(pd.DataFrame([SEED_ROW], columns=FEATURES))[:, 1]
    assert predictor.predict(test_data) == pytest.approx(expected, rel=1e-6)

    # When the predictor speaks what the script reads: CSV in, JSON out
    predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
    prediction = predictor.predict(test_data)
    # Then the answer is the trained model's own churn-style probability for the row (setosa: high)
    assert prediction["predictions"] == pytest.approx(expected.tolist(), rel=1e-6)
    assert prediction["predictions"][0] > 0.5
    assert predictor.predict(np.array([VIRGINICA_ROW]))["predictions"][0] < 0.5

    # When the seed's `aws sagemaker-runtime invoke-endpoint` request is made (JSON body, boto3 here)
    response = runtime.invoke_endpoint(
        EndpointName=endpoint_name, Body=b"[5.1, 3.5, 1.4, 0.2]", ContentType="application/json"
    )
    # Then it gets the same prediction as JSON, from the only variant
    assert response["ContentType"] == "application/json"
    assert json.loads(response["Body"].read())["predictions"] == pytest.approx(expected.tolist(), rel=1e-6)
    assert response["InvokedProductionVariant"] == "AllTraffic"

    # When the model and then the endpoint (with its config) are deleted through the predictor
    config_name = described["EndpointConfigName"]
    client = sessions["stock"].sagemaker_client
    model_name = client.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]["ModelName"]
    predictor.delete_model()
    predictor.delete_endpoint()
    # Then all three are gone and the instances' processes have exited
    with pytest.raises(ClientError, match="Could not find model"):
        client.describe_model(ModelName=model_name)
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        client.describe_endpoint_config(EndpointConfigName=config_name)
    wait_for(lambda: _endpoint_gone(cloud, sessions["stock"], endpoint_name), timeout=30)
    wait_for(lambda: not _live(pids), timeout=30)


def test_seed_deploy_without_a_serving_script_fails_with_a_model_fn_reason(cloud, session, estimator):
    from sagemaker.exceptions import UnexpectedStatusException

    # Given the seed's estimator, whose entry point train.py has no model_fn
    endpoint_name = f"sklearn-noscript-{_suffix()}"
    # When it deploys exactly as the seed writes it (no serving script named)
    with pytest.raises(UnexpectedStatusException) as failed:
        estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=endpoint_name)
    # Then the endpoint fails, and the reason says what is missing, as the scikit-learn container does
    assert "Please provide a model_fn implementation" in str(failed.value)
    assert "train.py defines no model_fn" in str(failed.value)
    described = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    assert described["EndpointStatus"] == "Failed"
    session.delete_endpoint(endpoint_name)
    wait_for(lambda: _endpoint_gone(cloud, session, endpoint_name), timeout=30)


def test_serverless_deploy_and_predict_with_the_sdk_numpy_defaults(cloud, session, estimator, trained_model, serve_dir):
    from sagemaker.serverless import ServerlessInferenceConfig

    # Given the seed's serverless config, and a serving script that leaves decoding to the container
    serverless_config = ServerlessInferenceConfig(memory_size_in_mb=4096, max_concurrency=20)
    endpoint_name = f"sklearn-serverless-{_suffix()}"

    # When the estimator deploys with it
    started = time.monotonic()
    predictor = estimator.deploy(
        serverless_inference_config=serverless_config,
        endpoint_name=endpoint_name,
        entry_point="serve.py",
        source_dir=str(serve_dir),
    )
    print(f"\n[timing] serverless deploy (0.5 s poll): {time.monotonic() - started:.1f}s")

    # Then the endpoint config is serverless, with the seed's memory and concurrency
    described = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentServerlessConfig"] == {
        "MemorySizeInMB": 4096,
        "MaxConcurrency": 20,
    }
    fleet = cloud.sagemaker.endpoints[endpoint_name].variants["AllTraffic"].fleet
    assert fleet.warm_instances == 0, "no instance before the first request"

    # When the seed's numpy array is predicted with the SKLearnPredictor's x-npy defaults
    prediction = predictor.predict(np.array([SEED_ROW, VIRGINICA_ROW]))
    # Then a cold start served it and the answer is the model's class labels, decoded from x-npy
    assert isinstance(prediction, np.ndarray)
    expected = trained_model.predict(pd.DataFrame([SEED_ROW, VIRGINICA_ROW], columns=FEATURES))
    np.testing.assert_array_equal(prediction, expected)
    assert prediction.tolist() == [1, 0]
    assert fleet.warm_instances == 1

    predictor.delete_endpoint()
    wait_for(lambda: _endpoint_gone(cloud, session, endpoint_name), timeout=30)


def _archive(tmp: Path, name: str, model) -> Path:
    joblib.dump(model, tmp / "model.joblib")
    (tmp / "inference.py").write_text(SERVE_WITH_DEFAULTS)
    path = tmp / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tmp / "model.joblib", arcname="model.joblib")
        tar.add(tmp / "inference.py", arcname="code/inference.py")
    return path


def test_multi_model_endpoint_routes_by_target_model(cloud, session, bucket, estimator, tmp_path):
    from sagemaker.multidatamodel import MultiDataModel
    from sagemaker.sklearn.model import SKLearnPredictor

    # Given two different models: v1 says "setosa?", v2 says "virginica?"
    iris = load_iris()
    v1 = _archive(tmp_path, "model-v1.tar.gz", LogisticRegression(max_iter=500).fit(iris.data, iris.target == 0))
    v2 = _archive(tmp_path, "model-v2.tar.gz", LogisticRegression(max_iter=500).fit(iris.data, iris.target == 2))
    prefix = f"s3://{bucket}/seed-{_suffix()}/models/"
    name = f"multi-model-endpoint-{_suffix()}"
    assert estimator.image_uri.endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    # Correction: a MultiDataModel without a predictor_cls (or a model= that has one) deploys to None,
    # so the seed's predictor.predict(...) would be an AttributeError on None.
    multi_model = MultiDataModel(
        name=name,
        model_data_prefix=prefix,
        image_uri=estimator.image_uri,
        role=ROLE,
        sagemaker_session=session,
        predictor_cls=SKLearnPredictor,
    )
    multi_model.add_model(model_data_source=str(v1), model_data_path="model-v1.tar.gz")
    multi_model.add_model(model_data_source=str(v2), model_data_path="model-v2.tar.gz")
    assert sorted(multi_model.list_models()) == ["model-v1.tar.gz", "model-v2.tar.gz"]

    # When it deploys as the seed does
    predictor = multi_model.deploy(initial_instance_count=1, instance_type="ml.m5.xlarge", endpoint_name=name)

    # Then the model is a MultiModel container over the prefix
    model = session.sagemaker_client.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == prefix
    # When the seed's test_data is predicted by each target model
    test_data = np.array([SEED_ROW])
    first = predictor.predict(data=test_data, target_model="model-v1.tar.gz")
    second = predictor.predict(data=test_data, target_model="model-v2.tar.gz")
    # Then each answer comes from the model named: setosa for v1, not virginica for v2
    assert first.tolist() == [True]
    assert second.tolist() == [False]
    fleet = cloud.sagemaker.endpoints[name].variants["AllTraffic"].fleet
    assert sorted(fleet.loaded_models()) == ["model-v1.tar.gz", "model-v2.tar.gz"]

    predictor.delete_endpoint()
    wait_for(lambda: _endpoint_gone(cloud, session, name), timeout=30)


def test_ab_test_splits_traffic_70_30_and_honours_target_variant(cloud, session, estimator):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer
    from sagemaker.session import production_variant

    # Given the seed's two models (both the fitted estimator's artifact, served by the churn script)
    suffix = _suffix()
    names = {}
    for version in ("v1", "v2"):
        model = estimator.create_model(entry_point="inference.py", name=f"model-{version}-{suffix}")
        model.create(instance_type="ml.m5.large")
        names[version] = model.name
    # ... and its two production variants, 70 % and 30 %
    variant1 = production_variant(
        model_name=names["v1"],
        instance_type="ml.m5.large",
        initial_instance_count=1,
        variant_name="ModelV1",
        initial_weight=70,
    )
    variant2 = production_variant(
        model_name=names["v2"],
        instance_type="ml.m5.large",
        initial_instance_count=1,
        variant_name="ModelV2",
        initial_weight=30,
    )
    endpoint_name = f"ab-test-endpoint-{suffix}"

    # When the endpoint is created from them (the seed's create_endpoint(production_variants=...) corrected)
    session.endpoint_from_production_variants(name=endpoint_name, production_variants=[variant1, variant2])

    # Then both variants serve with the seed's weights
    described = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    assert described["EndpointStatus"] == "InService"
    assert {v["VariantName"]: v["CurrentWeight"] for v in described["ProductionVariants"]} == {
        "ModelV1": 70.0,
        "ModelV2": 30.0,
    }

    # When 300 requests carry no TargetVariant
    runtime = session.sagemaker_runtime_client
    trials = 300
    counts = Counter(
        runtime.invoke_endpoint(EndpointName=endpoint_name, Body="5.1,3.5,1.4,0.2", ContentType="text/csv")[
            "InvokedProductionVariant"
        ]
        for _ in range(trials)
    )
    # Then ModelV1 gets 70 % of them within 4.5 standard deviations of the binomial (p = 0.7, n = 300)
    sigma = (trials * 0.7 * 0.3) ** 0.5
    assert set(counts) == {"ModelV1", "ModelV2"}
    assert abs(counts["ModelV1"] - 0.7 * trials) <= 4.5 * sigma, counts

    # When requests name a variant, through the SDK and through the runtime API
    predictor = Predictor(endpoint_name, session, serializer=CSVSerializer(), deserializer=JSONDeserializer())
    answer = predictor.predict(np.array([SEED_ROW]), target_variant="ModelV2")
    targeted = {
        runtime.invoke_endpoint(
            EndpointName=endpoint_name, Body="5.1,3.5,1.4,0.2", ContentType="text/csv", TargetVariant="ModelV2"
        )["InvokedProductionVariant"]
        for _ in range(20)
    }
    # Then every one of them is served by that variant
    assert answer["predictions"][0] > 0.5
    assert targeted == {"ModelV2"}

    predictor.delete_endpoint()
    for model_name in names.values():
        session.delete_model(model_name)
    wait_for(lambda: _endpoint_gone(cloud, session, endpoint_name), timeout=30)


def test_data_capture_writes_jsonl_per_endpoint_variant_and_hour(cloud, session, bucket, estimator):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model_monitor import DataCaptureConfig
    from sagemaker.serializers import CSVSerializer

    # Given the seed's data capture config, on a model deployed without an endpoint name
    prefix = f"seed-{_suffix()}/data-capture"
    data_capture_config = DataCaptureConfig(
        enable_capture=True, sampling_percentage=100, destination_s3_uri=f"s3://{bucket}/{prefix}"
    )
    model = estimator.create_model(entry_point="inference.py")
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.xlarge",
        data_capture_config=data_capture_config,
        serializer=CSVSerializer(),
        deserializer=JSONDeserializer(),
    )
    endpoint_name = predictor.endpoint_name
    described = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    assert described["DataCaptureConfig"]["CaptureStatus"] == "Started"
    assert described["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100

    # When five requests are served (capture is stamped on the local cloud's clock, as its metrics are)
    before = cloud.clock.now()
    rows = [SEED_ROW, VIRGINICA_ROW, [5.0, 3.6, 1.4, 0.2], [6.3, 2.9, 5.6, 1.8], [4.9, 3.0, 1.4, 0.2]]
    answers = [predictor.predict(np.array([row]))["predictions"][0] for row in rows]
    after = cloud.clock.now()

    # Then every one is captured, input and output, in JSONL files under <uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/
    s3 = boto3.client("s3", region_name="us-east-1")

    def captured() -> list[str]:
        objects = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])
        keys = [o["Key"] for o in objects]
        lines = [
            line
            for key in keys
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
            if line
        ]
        return keys if len(lines) >= len(rows) else []

    keys = wait_for(captured, timeout=15)
    hours = {before.strftime("%Y/%m/%d/%H"), after.strftime("%Y/%m/%d/%H")}
    pattern = re.compile(
        rf"^{re.escape(prefix)}/{re.escape(endpoint_name)}/AllTraffic/(\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}})/[^/]+\.jsonl$"
    )
    for key in keys:
        match = pattern.match(key)
        assert match, key
        assert match.group(1) in hours
    records = [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        if line
    ]
    assert len(records) == len(rows)
    inputs = sorted(r["captureData"]["endpointInput"]["data"].strip() for r in records)
    assert inputs == sorted(",".join(str(v) for v in row) for row in rows)
    assert {r["captureData"]["endpointInput"]["encoding"] for r in records} == {"CSV"}
    outputs = sorted(json.loads(r["captureData"]["endpointOutput"]["data"])["predictions"][0] for r in records)
    assert outputs == pytest.approx(sorted(answers))

    predictor.delete_endpoint()
    session.delete_model(model.name)
    wait_for(lambda: _endpoint_gone(cloud, session, endpoint_name), timeout=30)
