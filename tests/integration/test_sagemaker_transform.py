"""Batch transform on the local cloud, through boto3, with models trained in the tests."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from tests.event_contract import assert_documented

from .conftest import wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
FEATURES = 4


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def bucket(cloud) -> str:
    name = f"transform-{uuid.uuid4().hex[:10]}"
    cloud.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def forest() -> RandomForestRegressor:
    """A tree ensemble: its predictions do not depend on how rows are batched, so they compare exactly."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, FEATURES))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + np.sin(x[:, 0])
    return RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0).fit(x, y)


def rows(n: int, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(size=(n, FEATURES)), 4)


def to_csv(array: np.ndarray, ids: bool = False) -> bytes:
    lines = [(f"id{i}," if ids else "") + ",".join(repr(float(v)) for v in row) for i, row in enumerate(array.tolist())]
    return ("\n".join(lines) + "\n").encode()


def expected_lines(model: Any, array: np.ndarray) -> list[str]:
    """The container's CSV answer for these rows: predict on float32 input, csv.writer lines."""
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(model.predict(array.astype(np.float32)).reshape(-1, 1))
    return stream.getvalue().splitlines()


def model_archive(model: Any, script: str | None) -> bytes:
    buffer = io.BytesIO()
    model_bytes = io.BytesIO()
    joblib.dump(model, model_bytes)
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(model_bytes.getvalue())
        tar.addfile(info, io.BytesIO(model_bytes.getvalue()))
        if script:
            tar.add(FIXTURES / script / "inference.py", arcname="code/inference.py")
    return buffer.getvalue()


def source_archive(script: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted((FIXTURES / script).iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def create_model(cloud, bucket: str, model: Any, script: str, in_archive: bool, image: str = IMAGE) -> str:
    """in_archive: code/inference.py inside model.tar.gz; else SAGEMAKER_PROGRAM + an S3 sourcedir.tar.gz."""
    s3 = cloud.client("s3")
    name = f"m-{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=bucket, Key=f"{name}/model.tar.gz", Body=model_archive(model, script if in_archive else None))
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": f"s3://{bucket}/{name}/model.tar.gz"}
    if not in_archive:
        s3.put_object(Bucket=bucket, Key=f"{name}/sourcedir.tar.gz", Body=source_archive(script))
        container["Environment"] = {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{bucket}/{name}/sourcedir.tar.gz",
        }
    cloud.client("sagemaker").create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    return name


def start_job(cloud, model_name: str, uri: str, output: str, **overrides: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": 2,
        "MaxPayloadInMB": 1,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(request.get(key), dict):
            request[key] = {**request[key], **value}
        else:
            request[key] = value
    cloud.client("sagemaker").create_transform_job(**request)
    return name


def finished(cloud, name: str, timeout: float = 120.0) -> dict[str, Any]:
    sm = cloud.client("sagemaker")

    def done() -> dict[str, Any] | None:
        described = sm.describe_transform_job(TransformJobName=name)
        return described if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped") else None

    return wait_for(done, timeout, interval=0.2)


def read(cloud, bucket: str, key: str) -> str:
    return cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def model_workers(job: str = "") -> list[int]:
    """Live model worker processes of this test session's cloud (not the zygote they fork from).

    With ``job``, only the workers serving that transform job (a worker's working directory is its
    model's, under the job's work dir): endpoints of other test modules keep their own workers.
    """
    me = os.getpid()
    table: dict[int, tuple[int, bytes]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(proc.name)] = (int(fields[1]), cmdline)

    def ours(pid: int) -> bool:
        while pid in table and pid > 1:
            pid = table[pid][0]
            if pid == me:
                return True
        return False

    def serves(pid: int) -> bool:
        if not job:
            return True
        try:
            return f"/transform/{job}/" in os.readlink(f"/proc/{pid}/cwd") + "/"
        except OSError:
            return False

    return [
        pid
        for pid, (parent, cmdline) in table.items()
        if b"localcloud.sagemaker.model_worker" in cmdline
        and ours(pid)
        and not (b"zygote_main" in cmdline and parent == me)
        and serves(pid)
    ]


def log_lines(cloud, job: str) -> list[str]:
    logs = cloud.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{job}/")
    lines: list[str] = []
    for stream in streams["logStreams"]:
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamName=stream["logStreamName"])
        lines.extend(e["message"] for e in events["events"])
    return lines


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_multirecord_outputs_equal_the_models_predictions_line_for_line(cloud, bucket, forest):
    # Given several CSV objects under a prefix, one big enough for several 1 MB requests
    s3 = cloud.client("s3")
    inputs = {"a.csv": rows(30_000, 1), "nested/b.csv": rows(700, 2), "c.csv": rows(3, 3)}
    for key, data in inputs.items():
        s3.put_object(Bucket=bucket, Key=f"multi/in/{key}", Body=to_csv(data))
    model = create_model(cloud, bucket, forest, "sklearn_default", in_archive=True)
    # When a MultiRecord transform with 2 workers runs over the prefix
    job = start_job(cloud, model, f"s3://{bucket}/multi/in/", f"s3://{bucket}/multi/out")
    described = finished(cloud, job)
    # Then each object's .out equals model.predict on it, line for line
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    for key, data in inputs.items():
        assert read(cloud, bucket, f"multi/out/{key}.out").splitlines() == expected_lines(forest, data), key
    # And the job logged SageMaker's header line, and no worker process outlived it
    lines = wait_for(lambda: [line for line in log_lines(cloud, job) if "MaxConcurrentTransforms=2" in line])
    assert "BatchStrategy=MULTI_RECORD" in lines[0]
    assert not model_workers(job)


@pytest.mark.slow
def test_single_record_with_a_script_from_sagemaker_submit_directory(cloud, bucket, forest):
    s3 = cloud.client("s3")
    data = rows(40, 4)
    s3.put_object(Bucket=bucket, Key="single/in/data.csv", Body=to_csv(data))
    model = create_model(cloud, bucket, forest, "sklearn_custom", in_archive=False)
    job = start_job(
        cloud, model, f"s3://{bucket}/single/in/data.csv", f"s3://{bucket}/single/out/", BatchStrategy="SingleRecord"
    )
    described = finished(cloud, job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    expected = [f"{value:.6f}" for value in forest.predict(data)]
    assert read(cloud, bucket, "single/out/data.csv.out").splitlines() == expected
    assert any("requirements.txt" in line and "does not install" in line for line in log_lines(cloud, job))


@pytest.mark.slow
def test_input_filter_join_source_and_output_filter_on_csv(cloud, bucket, forest):
    # Given CSV records with an id column the model must not see
    s3 = cloud.client("s3")
    data = rows(2_000, 5)
    s3.put_object(Bucket=bucket, Key="join/in/ids.csv", Body=to_csv(data, ids=True))
    model = create_model(cloud, bucket, forest, "sklearn_default", in_archive=True)
    # When the id is filtered out, the input joined back and only the id and the prediction kept
    job = start_job(
        cloud,
        model,
        f"s3://{bucket}/join/in/",
        f"s3://{bucket}/join/out",
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    described = finished(cloud, job)
    # Then each output line is "<id>,<prediction>"
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    expected = [f"id{i},{value}" for i, value in enumerate(expected_lines(forest, data))]
    assert read(cloud, bucket, "join/out/ids.csv.out").splitlines() == expected


@pytest.mark.slow
def test_gzip_objects_from_a_manifest_file(cloud, bucket, forest):
    s3 = cloud.client("s3")
    data = {"p1.csv.gz": rows(300, 6), "p2.csv.gz": rows(200, 7)}
    for key, array in data.items():
        s3.put_object(Bucket=bucket, Key=f"manifest/data/{key}", Body=gzip.compress(to_csv(array)))
    manifest = [{"prefix": f"s3://{bucket}/manifest/data/"}, "p1.csv.gz", "p2.csv.gz"]
    s3.put_object(Bucket=bucket, Key="manifest/input.manifest", Body=json.dumps(manifest).encode())
    model = create_model(cloud, bucket, forest, "sklearn_default", in_archive=True)
    job = start_job(
        cloud,
        model,
        f"s3://{bucket}/manifest/input.manifest",
        f"s3://{bucket}/manifest/out",
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{bucket}/manifest/input.manifest"}
            },
            "CompressionType": "Gzip",
        },
    )
    described = finished(cloud, job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    for key, array in data.items():
        assert read(cloud, bucket, f"manifest/out/{key}.out").splitlines() == expected_lines(forest, array)


@pytest.mark.slow
def test_a_record_the_model_fails_on_fails_the_job_naming_the_object(cloud, bucket, forest):
    s3 = cloud.client("s3")
    bad = rows(50, 8)
    bad[17, 2] = 999.0
    s3.put_object(Bucket=bucket, Key="fail/in/good.csv", Body=to_csv(rows(50, 9)))
    s3.put_object(Bucket=bucket, Key="fail/in/bad.csv", Body=to_csv(bad))
    model = create_model(cloud, bucket, forest, "sklearn_custom", in_archive=True)
    job = start_job(cloud, model, f"s3://{bucket}/fail/in/", f"s3://{bucket}/fail/out")
    described = finished(cloud, job)
    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith("AlgorithmError: ")
    assert f"{bucket}/fail/in/bad.csv" in reason
    assert "ValueError: feature value 999 is out of range" in reason
    logged = wait_for(lambda: [x for x in log_lines(cloud, job) if "Bad HTTP status received from algorithm: 500" in x])
    assert f"{bucket}/fail/in/bad.csv" in logged[0]
    assert not model_workers(job)
    # The other object was still transformed; the failed one has no output ("a transform job continues to process
    # input files even if it fails to process one", docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html)
    outputs = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="fail/out/").get("Contents", [])]
    assert outputs == ["fail/out/good.csv.out"]
    assert len(s3.get_object(Bucket=bucket, Key="fail/out/good.csv.out")["Body"].read().splitlines()) == 50


def test_an_unsupported_image_fails_the_job(cloud, bucket, forest):
    s3 = cloud.client("s3")
    s3.put_object(Bucket=bucket, Key="image/in/x.csv", Body=to_csv(rows(5, 10)))
    model = create_model(
        cloud, bucket, forest, "sklearn_default", True, image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    )
    described = finished(cloud, start_job(cloud, model, f"s3://{bucket}/image/in/", f"s3://{bucket}/image/out"))
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: The image 123456789012.dkr.ecr")
    assert "sagemaker-scikit-learn" in described["FailureReason"]


def test_a_model_without_model_fn_fails_the_job_clearly(cloud, bucket, forest):
    s3 = cloud.client("s3")
    s3.put_object(Bucket=bucket, Key="nofn/in/x.csv", Body=to_csv(rows(5, 11)))
    model = create_model(cloud, bucket, forest, "no_model_fn", in_archive=True)
    described = finished(cloud, start_job(cloud, model, f"s3://{bucket}/nofn/in/", f"s3://{bucket}/nofn/out"))
    assert described["TransformJobStatus"] == "Failed"
    assert "Please provide a model_fn implementation" in described["FailureReason"]


@pytest.mark.slow
def test_stop_transform_job_stops_it_and_kills_the_workers(cloud, bucket, forest):
    s3 = cloud.client("s3")
    s3.put_object(Bucket=bucket, Key="stop/in/x.csv", Body=to_csv(rows(400, 12)))
    model = create_model(cloud, bucket, forest, "sklearn_custom", in_archive=True)
    job = start_job(
        cloud,
        model,
        f"s3://{bucket}/stop/in/",
        f"s3://{bucket}/stop/out",
        BatchStrategy="SingleRecord",
        Environment={"SHEPHERD_TEST_PREDICT_DELAY": "0.2"},
    )
    wait_for(lambda: model_workers(job), 30)
    cloud.client("sagemaker").stop_transform_job(TransformJobName=job)
    described = finished(cloud, job, timeout=30)
    assert described["TransformJobStatus"] == "Stopped"
    assert "TransformEndTime" in described
    assert not model_workers(job)


@pytest.mark.slow
def test_state_change_events_reach_an_eventbridge_rule_with_an_sqs_target(cloud, bucket, forest):
    # Given a rule for transform job state changes with an SQS target
    sqs, events = cloud.client("sqs"), cloud.client("events")
    queue_url = sqs.create_queue(QueueName=f"transform-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"transform-rule-{uuid.uuid4().hex[:8]}"
    pattern = {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Transform Job State Change"]}
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    s3 = cloud.client("s3")
    s3.put_object(Bucket=bucket, Key="events/in/x.csv", Body=to_csv(rows(20, 13)))
    model = create_model(cloud, bucket, forest, "sklearn_default", in_archive=True)
    # When a transform job runs to completion
    job = start_job(cloud, model, f"s3://{bucket}/events/in/", f"s3://{bucket}/events/out")
    assert finished(cloud, job)["TransformJobStatus"] == "Completed"
    # Then the queue receives its InProgress and Completed events, in SageMaker's shape
    seen: dict[str, dict[str, Any]] = {}

    def statuses() -> bool:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            event = json.loads(message["Body"])
            if event["detail"]["TransformJobName"] == job:
                seen[event["detail"]["TransformJobStatus"]] = event
        return {"InProgress", "Completed"} <= seen.keys()

    wait_for(statuses, 20, interval=0.2)
    completed = seen["Completed"]
    assert completed["source"] == "aws.sagemaker"
    assert completed["detail-type"] == "SageMaker Transform Job State Change"
    assert completed["resources"] == [f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{job}"]
    assert isinstance(completed["detail"]["TransformEndTime"], int)  # epoch millis, as SageMaker sends them
    for event in seen.values():
        assert_documented(event)


@pytest.mark.parametrize("isolated", [False, True], ids=["networked", "isolated"])
def test_a_model_container_gets_no_cloud_keys_and_an_isolated_one_no_network(cloud, bucket, forest, isolated):
    # "Run Training and Inference Containers in Internet-Free Mode": an isolated model has no network; and no
    # model container inherits the local cloud's own full-access keys (docs/LOCAL_IAM.md)
    s3 = cloud.client("s3")
    name = f"m-{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=bucket, Key=f"{name}/model.tar.gz", Body=model_archive(forest, "network_probe"))
    cloud.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{name}/model.tar.gz"},
        EnableNetworkIsolation=isolated,
    )
    s3.put_object(Bucket=bucket, Key=f"in-{name}/rows.csv", Body=b"1,2,3,4\n")
    port = cloud.endpoint.rsplit(":", 1)[1]
    job = start_job(
        cloud, name, f"s3://{bucket}/in-{name}/", f"s3://{bucket}/out-{name}", Environment={"PROBE_PORT": port}
    )
    described = finished(cloud, job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert read(cloud, bucket, f"out-{name}/rows.csv.out").split() == [
        "none;unreachable" if isolated else "none;connected"
    ]
