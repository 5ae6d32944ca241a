"""Real training jobs on the local SageMaker: scripts run, statuses move, artifacts and logs land.

Each test uploads a tiny source directory (or the churn example) as sourcedir.tar.gz, as the
SageMaker Python SDK does, and creates the job with the SDK's JSON-encoded hyperparameters.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

from localcloud.sagemaker import training_opt_ml
from localcloud.sagemaker.training_metrics import METRIC_NAMESPACE
from localcloud.sagemaker.training_runner import LOG_GROUP
from localcloud.server import LocalCloud
from tests.event_contract import assert_documented

from .conftest import role, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / "examples" / "churn"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
BUCKET = "shepherd-training-tests"
OPT_ML_USABLE = training_opt_ml.opt_ml_usable()


def needs_opt_ml(test: Any) -> Any:
    """A test about /opt/ml itself: skipped where it cannot be linked, given the real one (not a worker's own)."""
    usable = pytest.mark.skipif(not OPT_ML_USABLE, reason="/opt/ml is a real directory or cannot be created here")
    return usable(pytest.mark.usefixtures("real_opt_ml")(test))


PROBE = """
import json, os, sys
from pathlib import Path
env = {k: v for k, v in os.environ.items() if k.startswith(("SM_", "TRAINING_JOB", "SAGEMAKER_", "PROBE_"))}
train = Path(os.environ["SM_CHANNEL_TRAIN"])
files = sorted(str(p.relative_to(train)) for p in train.rglob("*") if p.is_file())
config = {name: json.loads((Path(os.environ["SM_INPUT_CONFIG_DIR"]) / name).read_text())
          for name in ("hyperparameters.json", "resourceconfig.json", "inputdataconfig.json")}
report = {"argv": sys.argv[1:], "env": env, "files": files, "config": config, "cwd": os.getcwd()}
Path(os.environ["SM_MODEL_DIR"], "probe.json").write_text(json.dumps(report))
print("probe done")
"""


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def s3(cloud: LocalCloud) -> Any:
    client = cloud.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def sm(cloud: LocalCloud, s3: Any) -> Any:
    return cloud.client("sagemaker")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload_source(s3: Any, files: dict[str, str | Path]) -> str:
    """A sourcedir.tar.gz of the given files (text, or a path to copy), uploaded like the SDK does."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else textwrap.dedent(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    key = f"code/{uuid.uuid4().hex}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def put_text(s3: Any, key: str, text: str) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    return f"s3://{BUCKET}/{key}"


def sdk_hyperparameters(program: str, source: str, **user: Any) -> dict[str, str]:
    """What SKLearn(...).fit() sends: every value JSON-encoded."""
    values = {"sagemaker_program": program, "sagemaker_submit_directory": source, **user}
    return {k: json.dumps(v) for k, v in values.items()}


def channel(name: str, uri: str, data_type: str = "S3Prefix", **extra: Any) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": data_type, "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        **extra,
    }


def create_job(
    sm: Any,
    name: str,
    hyperparameters: dict[str, str],
    channels: list[dict[str, Any]] | None = None,
    image: str = SKLEARN_IMAGE,
    max_runtime: int = 120,
    **extra: Any,
) -> None:
    algorithm = extra.pop("AlgorithmSpecification", None) or {"TrainingImage": image, "TrainingInputMode": "File"}
    if channels:
        extra["InputDataConfig"] = channels
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification=algorithm,
        RoleArn=extra.pop("RoleArn", ROLE),
        HyperParameters=hyperparameters,
        OutputDataConfig=extra.pop("OutputDataConfig", {"S3OutputPath": f"s3://{BUCKET}/output"}),
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime, **extra.pop("StoppingExtra", {})},
        **extra,
    )


def finished(sm: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described = sm.describe_training_job(TrainingJobName=name)
        return described if described["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") else None

    return wait_for(done, timeout=timeout, interval=0.05)


def secondary(described: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in described["SecondaryStatusTransitions"]]


def secondary_once_running(described: dict[str, Any]) -> list[str]:
    """The secondary statuses but Pending, which a job shows while a job elsewhere on the machine holds /opt/ml."""
    return [status for status in secondary(described) if status != "Pending"]


def model_files(s3: Any, described: dict[str, Any]) -> dict[str, bytes]:
    uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def job_log(cloud: LocalCloud, name: str) -> list[str]:
    """The job's lines so far, from every stream (an interrupted job has one per attempt)."""
    logs = cloud.client("logs")
    try:
        streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
    except logs.exceptions.ResourceNotFoundException:  # the group appears with the first line shipped
        return []
    found: list[str] = []
    for stream in streams.get("logStreams", []):
        events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"])
        found.extend(e["message"] for e in events["events"])
    return found


def log_messages(cloud: LocalCloud, name: str, timeout: float = 10.0) -> list[str]:
    """The job's lines once the runner's final report is among them."""

    def complete() -> list[str] | None:
        lines = job_log(cloud, name)
        return lines if any("Reporting training" in m for m in lines) else None

    return wait_for(complete, timeout)


def churn_data(s3: Any, prefix: str) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("churn_generate_data", CHURN / "generate_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.generate(rows=900, seed=3)
    uris = {}
    for split, part in (("train", frame.iloc[:600]), ("validation", frame.iloc[600:])):
        uris[split] = put_text(s3, f"{prefix}/{split}/{split}.csv", part.to_csv(index=False))
        uris[split] = uris[split].rsplit("/", 1)[0]
    return uris


# ---------------------------------------------------------------------------- the churn example


@pytest.mark.slow
def test_churn_example_trains_a_real_model_with_metrics(cloud, s3, sm):
    # Given the churn data in S3 and the example's source, and metric definitions for its log lines
    name = unique("churn")
    data = churn_data(s3, f"data/{name}")
    source = upload_source(s3, {"train.py": CHURN / "train.py", "inference.py": CHURN / "inference.py"})
    create_job(
        sm,
        name,
        sdk_hyperparameters("train.py", source, n_estimators=30, max_depth=4),
        [channel("train", data["train"]), channel("validation", data["validation"])],
        AlgorithmSpecification={
            "TrainingImage": SKLEARN_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "validation:accuracy", "Regex": r"validation:accuracy=([0-9\.]+);"},
                {"Name": "validation:auc", "Regex": r"validation:auc=([0-9\.]+);"},
                {"Name": "never-printed", "Regex": r"nothing=([0-9\.]+)"},
            ],
        },
    )

    # When it runs to the end
    described = finished(sm, name, timeout=120)

    # Then it completed, with both metrics' last values, a loadable model and the output data
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert set(metrics) == {"validation:accuracy", "validation:auc"}
    assert 0.6 < metrics["validation:accuracy"] <= 1.0
    assert 0.6 < metrics["validation:auc"] <= 1.0
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/output/{name}/output/model.tar.gz"
    files = model_files(s3, described)
    assert list(files) == ["model.joblib"]
    model = joblib.load(io.BytesIO(files["model.joblib"]))
    rows = pd.read_csv(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key=f"data/{name}/validation/validation.csv")["Body"].read())
    )
    assert set(model.predict(rows.drop(columns=["target"]))) <= {0, 1}
    output = s3.get_object(Bucket=BUCKET, Key=f"output/{name}/output/output.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(output)) as tar:
        assert sorted(tar.getnames()) == ["metrics.json", "validation_predictions.csv"]
    assert described["TrainingTimeInSeconds"] >= 1
    assert described["BillableTimeInSeconds"] == described["TrainingTimeInSeconds"]
    assert described["TrainingStartTime"] <= described["TrainingEndTime"]

    # And the metrics reach CloudWatch under SageMaker's namespace and Host dimension (published as the job
    # ends, so shortly after its status, as CloudWatch's own metrics arrive after the fact)
    cloudwatch = cloud.client("cloudwatch")

    def hosts() -> list[dict]:
        listed = cloudwatch.list_metrics(Namespace=METRIC_NAMESPACE, MetricName="validation:auc")["Metrics"]
        return [d for m in listed for d in m["Dimensions"]]

    wait_for(lambda: {"Name": "Host", "Value": f"{name}/algo-1"} in hosts(), timeout=20)


# ---------------------------------------------------------------------------- statuses, logs, events


def test_secondary_statuses_logs_and_events_of_a_completed_job(cloud, s3, sm):
    # Given an EventBridge rule for this job's state changes, with an SQS queue as its target
    name = unique("statuses")
    sqs = cloud.client("sqs")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = cloud.client("events")
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {"TrainingJobName": [name]},
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    source = upload_source(
        s3, {"hello.py": "print('hello from the script')\nimport sys; print('to stderr', file=sys.stderr)\n"}
    )

    # When a trivial job runs
    create_job(sm, name, sdk_hyperparameters("hello.py", source))
    described = finished(sm, name)

    # Then the secondary statuses went SageMaker's way, in order, with its messages
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert secondary_once_running(described) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    messages = {t["Status"]: t["StatusMessage"] for t in described["SecondaryStatusTransitions"]}
    assert messages["Downloading"] == "Downloading input data"
    assert messages["Training"] == "Training image download completed. Training in progress."
    assert messages["Uploading"] == "Uploading generated training model"
    assert messages["Completed"] == "Training job completed"
    assert all("EndTime" in t for t in described["SecondaryStatusTransitions"])
    # An empty model directory still gives a model.tar.gz, as on SageMaker
    assert model_files(s3, described) == {}

    # And stdout and stderr are in CloudWatch Logs, in a <job>/algo-1-<epoch> stream
    lines = log_messages(cloud, name)
    assert "hello from the script" in lines
    assert "to stderr" in lines
    streams = cloud.client("logs").describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=name)
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams["logStreams"]] == [f"{name}/algo-1"]

    # And the state changes reached the rule's queue, ending with Completed
    def received() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e["detail"]["TrainingJobStatus"] == "Completed" for e in seen):
        seen.extend(received())
    assert {e["detail-type"] for e in seen} == {"SageMaker Training Job State Change"}
    assert seen[-1]["detail"]["TrainingJobStatus"] == "Completed"
    for event in seen:
        assert_documented(event)
    assert seen[-1]["resources"] == [described["TrainingJobArn"]]


def test_toolkit_environment_and_arguments_reach_the_script(cloud, s3, sm):
    # Given a prefix channel with nested objects and SDK-style hyperparameters of several types
    name = unique("probe")
    put_text(s3, f"data/{name}/train/a.csv", "1,2\n")
    put_text(s3, f"data/{name}/train/sub/b.csv", "3,4\n")
    source = upload_source(s3, {"probe.py": PROBE})
    hps = sdk_hyperparameters("probe.py", source, epochs=3, flag=True, name="abc", k=1)
    hps["learning-rate"] = "0.1"  # a plain (not JSON-encoded) value, as the CLI or a console user sends
    hps["plain"] = "hello"
    hps["sagemaker_container_log_level"] = "20"
    create_job(
        sm,
        name,
        hps,
        [channel("train", f"s3://{BUCKET}/data/{name}/train", ContentType="text/csv")],
        Environment={"PROBE_SETTING": "from-the-job"},
    )

    # When the script runs
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    report = json.loads(model_files(s3, described)["probe.json"])
    env = report["env"]

    # Then the arguments are the toolkit's: sorted, one-letter keys with one dash, Python's str() of values
    assert report["argv"] == [
        "--epochs", "3", "--flag", "True", "-k", "1", "--learning-rate", "0.1", "--name", "abc", "--plain", "hello"
    ]  # fmt: skip
    assert json.loads(env["SM_USER_ARGS"]) == report["argv"]
    # And SM_HPS / SM_HP_* hold the decoded user hyperparameters, without the sagemaker_ ones
    assert json.loads(env["SM_HPS"]) == {
        "epochs": 3, "flag": True, "k": 1, "learning-rate": 0.1, "name": "abc", "plain": "hello"
    }  # fmt: skip
    assert env["SM_HP_EPOCHS"] == "3"
    assert env["SM_HP_FLAG"] == "true"
    assert env["SM_HP_NAME"] == "abc"
    assert env["SM_HP_LEARNING-RATE"] == "0.1"
    assert not any(k.startswith("SM_HP_SAGEMAKER") for k in env)
    # And the paths, channels and host are set, pointing at the job's /opt/ml tree
    base = Path(env["SAGEMAKER_BASE_DIR"])
    assert base.name == name
    assert env["SM_MODEL_DIR"] == str(base / "model")
    assert env["SM_CHANNEL_TRAIN"] == str(base / "input" / "data" / "train")
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_OUTPUT_DATA_DIR"] == str(base / "output" / "data")
    assert env["SM_OUTPUT_DIR"] == str(base / "output")
    assert env["SM_INPUT_DIR"] == str(base / "input")
    assert env["SM_INPUT_CONFIG_DIR"] == str(base / "input" / "config")
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == str(base / "output" / "intermediate")
    assert env["SM_NUM_GPUS"] == "0"
    assert int(env["SM_NUM_CPUS"]) == os.cpu_count()
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_CURRENT_INSTANCE_TYPE"] == "ml.m5.large"
    assert env["SM_MODULE_NAME"] == "probe"
    assert env["SM_USER_ENTRY_POINT"] == "probe.py"
    assert env["SM_MODULE_DIR"] == source
    assert env["SM_FRAMEWORK_MODULE"] == "sagemaker_sklearn_container.training:main"
    assert env["SM_LOG_LEVEL"] == "20"
    assert json.loads(env["SM_RESOURCE_CONFIG"])["current_host"] == "algo-1"
    assert json.loads(env["SM_INPUT_DATA_CONFIG"]) == {
        "train": {
            "ContentType": "text/csv",
            "RecordWrapperType": "None",
            "S3DistributionType": "FullyReplicated",
            "TrainingInputMode": "File",
        }
    }
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["job_name"] == name
    assert training_env["hyperparameters"] == json.loads(env["SM_HPS"])
    assert training_env["channel_input_dirs"] == {"train": env["SM_CHANNEL_TRAIN"]}
    assert env["TRAINING_JOB_NAME"] == name
    assert env["TRAINING_JOB_ARN"] == described["TrainingJobArn"]
    assert env["PROBE_SETTING"] == "from-the-job"
    # And the channel keeps the prefix's relative layout, the config files are SageMaker's, cwd is code/
    assert report["files"] == ["a.csv", "sub/b.csv"]
    assert report["config"]["hyperparameters.json"] == hps
    assert report["config"]["resourceconfig.json"]["hosts"] == ["algo-1"]
    assert report["config"]["inputdataconfig.json"] == json.loads(env["SM_INPUT_DATA_CONFIG"])
    assert report["cwd"] == str(base / "code")


def test_a_manifest_file_channel_downloads_the_listed_objects(cloud, s3, sm):
    name = unique("manifest")
    put_text(s3, f"data/{name}/pool/one.csv", "1\n")
    put_text(s3, f"data/{name}/pool/deep/two.csv", "2\n")
    put_text(s3, f"data/{name}/pool/unlisted.csv", "3\n")
    manifest = json.dumps([{"prefix": f"s3://{BUCKET}/data/{name}/pool/"}, "one.csv", "deep/two.csv"])
    uri = put_text(s3, f"data/{name}/train.manifest", manifest)
    create_job(sm, name, sdk_hyperparameters("probe.py", upload_source(s3, {"probe.py": PROBE})), [
        channel("train", uri, data_type="ManifestFile")
    ])  # fmt: skip
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert json.loads(model_files(s3, described)["probe.json"])["files"] == ["deep/two.csv", "one.csv"]


CODE_CHANNEL_SOURCE = "/opt/ml/input/data/code/sourcedir.tar.gz"


def test_an_isolated_job_that_points_its_code_at_s3_fails_as_on_aws(cloud, s3, sm):
    # Given an isolated job whose sagemaker_submit_directory is an S3 URI: on AWS the toolkit inside the container
    # tries to download it with no network
    name = unique("isolated-s3")
    put_text(s3, f"data/{name}/train/a.csv", "1,2\n")
    source = upload_source(s3, {"probe.py": PROBE})
    channels = [channel("train", f"s3://{BUCKET}/data/{name}/train")]
    create_job(sm, name, sdk_hyperparameters("probe.py", source), channels, EnableNetworkIsolation=True)
    # When it runs, then it fails as the algorithm's error, saying why and what works instead
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: could not download sagemaker_submit_directory")
    assert "'code' channel" in described["FailureReason"]


def test_an_isolated_job_runs_its_code_from_the_sdks_code_channel(cloud, s3, sm):
    # Given what the SDK sends under network isolation: the source as a channel named code (an S3Prefix naming
    # the tar.gz), and sagemaker_submit_directory pointing at where that object lands in the container
    name = unique("isolated")
    put_text(s3, f"data/{name}/train/a.csv", "1,2\n")
    source = upload_source(s3, {"probe.py": PROBE})
    channels = [channel("train", f"s3://{BUCKET}/data/{name}/train"), channel("code", source)]
    create_job(sm, name, sdk_hyperparameters("probe.py", CODE_CHANNEL_SOURCE), channels, EnableNetworkIsolation=True)

    # When it runs
    described = finished(sm, name)

    # Then the toolkit extracted the channel's tar.gz into code/ and ran the script from there
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    report = json.loads(model_files(s3, described)["probe.json"])
    base = Path(report["env"]["SAGEMAKER_BASE_DIR"])
    assert report["cwd"] == str(base / "code")
    assert report["files"] == ["a.csv"]
    assert json.loads(report["env"]["SM_CHANNELS"]) == ["code", "train"]
    assert report["env"]["SM_MODULE_DIR"] == str(base / "input" / "data" / "code" / "sourcedir.tar.gz")


NETWORK_PROBE = """
import json, os, socket

report = {"key": os.environ.get("AWS_ACCESS_KEY_ID"), "endpoint": os.environ.get("AWS_ENDPOINT_URL")}
host, port = os.environ["PROBE_ENDPOINT"].rsplit("/", 1)[-1].split(":")
try:
    socket.create_connection((host, int(port)), timeout=5).close()
    report["connect"] = "connected"
except OSError as exc:
    report["connect"] = str(exc)
if report["endpoint"]:
    import boto3

    report["identity"] = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Arn"]
with open(os.path.join(os.environ["SM_MODEL_DIR"], "net.json"), "w") as out:
    json.dump(report, out)
"""


@pytest.mark.parametrize("isolated", [False, True], ids=["networked", "isolated"])
def test_a_script_reaches_aws_as_the_job_role_and_an_isolated_one_reaches_nothing(cloud, s3, sm, isolated):
    name = unique("network")
    put_text(s3, f"data/{name}/train/a.csv", "1,2\n")
    channels = [channel("train", f"s3://{BUCKET}/data/{name}/train")]
    if isolated:
        channels.append(channel("code", upload_source(s3, {"probe.py": NETWORK_PROBE})))
        hyperparameters = sdk_hyperparameters("probe.py", CODE_CHANNEL_SOURCE)
    else:
        hyperparameters = sdk_hyperparameters("probe.py", upload_source(s3, {"probe.py": NETWORK_PROBE}))
    environment = {"PROBE_ENDPOINT": cloud.endpoint}
    create_job(sm, name, hyperparameters, channels, EnableNetworkIsolation=isolated, Environment=environment)
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    report = json.loads(model_files(s3, described)["net.json"])
    if isolated:
        # No credentials, no endpoint, no network ("Run Training and Inference Containers in Internet-Free Mode")
        assert (report["key"], report["endpoint"]) == (None, None)
        assert "Network is unreachable" in report["connect"]
    else:  # the job's RoleArn, as SageMaker's session of it; never the local cloud's own full-access keys
        assert report["connect"] == "connected"
        assert report["identity"] == f"arn:aws:sts::123456789012:assumed-role/{ROLE.rsplit('/', 1)[-1]}/SageMaker"
        assert report["key"] != "shepherd-local"


def test_a_job_writes_its_artifacts_with_its_output_key_as_its_role(cloud, s3, sm, denials):
    # Given a KMS key whose policy lets IAM policies grant it, and a role that may use S3 but not the key
    key = cloud.client("kms").create_key()["KeyMetadata"]["Arn"]
    role_arn = role(cloud, f"no-key-{uuid.uuid4().hex[:6]}", "sagemaker.amazonaws.com", ["s3:*"])
    name = unique("output-key")
    put_text(s3, f"data/{name}/train/a.csv", "1,2\n")
    source = upload_source(s3, {"probe.py": PROBE})
    output = {"S3OutputPath": f"s3://{BUCKET}/output", "KmsKeyId": key}
    denials.expect("kms:GenerateDataKey", key)
    # When it trains with OutputDataConfig.KmsKeyId
    create_job(
        sm,
        name,
        sdk_hyperparameters("probe.py", source),
        [channel("train", f"s3://{BUCKET}/data/{name}/train")],
        RoleArn=role_arn,
        OutputDataConfig=output,
    )
    # Then its upload is refused as AWS refuses it: the role must be allowed to use the key
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert "kms:GenerateDataKey" in described["FailureReason"], described["FailureReason"]


@pytest.mark.parametrize(
    ("submit", "channels", "reason"),
    [
        pytest.param("/opt/ml/code", ["code"], "ClientError: sagemaker_submit_directory must be", id="no-channel"),
        pytest.param(CODE_CHANNEL_SOURCE, [], "ClientError: sagemaker_submit_directory must be", id="channel-absent"),
        pytest.param(
            "/opt/ml/input/data/code/other.tar.gz", ["code"], "AlgorithmError: sagemaker_submit_directory", id="missing"
        ),
    ],
)
def test_a_local_submit_directory_outside_the_jobs_channels_fails_clearly(cloud, s3, sm, submit, channels, reason):
    # Locally only the channels' downloads exist in the "container": there is no code baked into an image
    name = unique("nocode")
    source = upload_source(s3, {"train.py": "print(1)"})
    create_job(sm, name, sdk_hyperparameters("train.py", submit), [channel(c, source) for c in channels])
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(reason)


# ---------------------------------------------------------------------------- failures


def test_a_script_failure_file_is_the_failure_reason(cloud, s3, sm):
    name = unique("failure-file")
    script = """
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("the training data has no target column")
        sys.exit(3)
    """
    create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": script})))
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: the training data has no target column"
    assert secondary(described)[-1] == "Failed"


def test_a_traceback_tail_is_the_failure_reason(cloud, s3, sm):
    name = unique("traceback")
    script = """
        print("starting")
        def load():
            raise ValueError("column 'target' not found in train.csv")
        load()
    """
    create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": script})))
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback')
    assert "ValueError: column 'target' not found in train.csv" in reason
    assert reason.endswith(", exit code: 1")
    assert "starting" not in reason
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ({"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-byoc:latest"}, "my-byoc:latest cannot run"),
        ({"TrainingImage": "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"}, "xgboost:1 cannot run"),
        ({"AlgorithmName": "arn:aws:sagemaker:us-east-1:123456789012:algorithm/mine"}, "algorithm/mine cannot run"),
    ],
    ids=["byoc", "builtin-image", "algorithm-name"],
)
def test_images_that_need_a_container_fail_clearly(cloud, s3, sm, algorithm, expected):
    name = unique("byoc")
    create_job(sm, name, {}, AlgorithmSpecification={**algorithm, "TrainingInputMode": "File"})
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: ")
    assert expected in described["FailureReason"]
    assert "sagemaker-scikit-learn" in described["FailureReason"]  # and it says what does run
    assert secondary(described) == ["Starting", "Failed"]


def test_pipe_mode_fails_clearly(cloud, s3, sm):
    name = unique("pipe")
    source = upload_source(s3, {"train.py": "print(1)"})
    create_job(sm, name, sdk_hyperparameters("train.py", source), [
        channel("train", f"s3://{BUCKET}/data/", InputMode="Pipe")
    ])  # fmt: skip
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert "input mode Pipe is not supported" in described["FailureReason"]


def test_a_missing_channel_prefix_fails_the_download(cloud, s3, sm):
    name = unique("nodata")
    source = upload_source(s3, {"train.py": "print(1)"})
    create_job(sm, name, sdk_hyperparameters("train.py", source), [channel("train", f"s3://{BUCKET}/nothing/{name}")])
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: Data download failed:No S3 objects found")


# ---------------------------------------------------------------------------- stopping


SLEEPER = """
    import os, pathlib, time
    pathlib.Path(os.environ["SM_MODEL_DIR"], "partial.txt").write_text("saved before the stop")
    print(f"pid={os.getpid()}", flush=True)
    time.sleep(120)
"""


def script_pid(cloud: LocalCloud, name: str) -> int:
    """The pid the sleeping script logged, once it is running."""

    def pid() -> int | None:
        lines = [m for m in job_log(cloud, name) if m.startswith("pid=")]
        return int(lines[0][4:]) if lines else None

    return wait_for(pid, timeout=20)


def assert_gone(pid: int) -> None:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=5)


def test_stop_training_job_stops_the_script_and_keeps_its_model(cloud, s3, sm):
    # Given a running script that saved something and then sleeps
    name = unique("stop")
    create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": SLEEPER})))
    pid = script_pid(cloud, name)

    # When the job is stopped
    sm.stop_training_job(TrainingJobName=name)
    described = finished(sm, name, timeout=20)

    # Then it is Stopped, the script's process is gone, and what it saved was uploaded
    assert described["TrainingJobStatus"] == "Stopped"
    assert secondary(described)[-2:] == ["Stopping", "Stopped"]
    assert_gone(pid)
    assert model_files(s3, described) == {"partial.txt": b"saved before the stop"}


def test_max_runtime_stops_the_job_as_max_runtime_exceeded(cloud, s3, sm):
    name = unique("maxruntime")
    create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": SLEEPER})), max_runtime=2)
    pid = script_pid(cloud, name)
    described = finished(sm, name, timeout=20)
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert secondary(described)[-2:] == ["Stopping", "MaxRuntimeExceeded"]
    assert "FailureReason" not in described
    assert_gone(pid)


def test_max_wait_time_stops_a_spot_job_as_max_wait_time_exceeded(cloud, s3, sm):
    name = unique("maxwait")
    create_job(
        sm,
        name,
        sdk_hyperparameters("train.py", upload_source(s3, {"train.py": SLEEPER})),
        max_runtime=2,
        EnableManagedSpotTraining=True,
        StoppingExtra={"MaxWaitTimeInSeconds": 2},
    )
    described = finished(sm, name, timeout=20)
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxWaitTimeExceeded"
    assert described["BillableTimeInSeconds"] <= described["TrainingTimeInSeconds"]


# ---------------------------------------------------------------------------- spot and /opt/ml


RESUMABLE = """
    import json, os, pathlib, time
    checkpoints = pathlib.Path("/opt/ml/checkpoints")
    state = checkpoints / "state.json"
    if state.exists():
        step = json.loads(state.read_text())["step"]
        print(f"resumed from step {step}", flush=True)
        pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text(f"resumed from step {step}")
    else:
        checkpoints.mkdir(parents=True, exist_ok=True)
        tmp = checkpoints / "state.json.tmp"
        tmp.write_text(json.dumps({"step": 5}))
        tmp.rename(state)
        print("checkpoint written at step 5", flush=True)
        time.sleep(60)
"""


@needs_opt_ml
def test_spot_interruption_resumes_from_the_checkpoint(cloud, s3, sm):
    # Given a managed spot job with checkpoints in S3, tagged to be interrupted once
    name = unique("spot")
    create_job(
        sm,
        name,
        sdk_hyperparameters("train.py", upload_source(s3, {"train.py": RESUMABLE})),
        EnableManagedSpotTraining=True,
        StoppingExtra={"MaxWaitTimeInSeconds": 300},
        CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/{name}"},
        Tags=[{"Key": "shepherd:fault:spot-interruptions", "Value": "1"}],
    )

    # When it runs, is interrupted after its first checkpoint, and restarts
    described = finished(sm, name, timeout=60)

    # Then it went Interrupted -> Starting -> Downloading -> Training and the restart saw the checkpoint
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert secondary_once_running(described) == [
        "Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading", "Training", "Uploading",
        "Completed",
    ]  # fmt: skip
    assert model_files(s3, described) == {"model.txt": b"resumed from step 5"}
    saved = s3.get_object(Bucket=BUCKET, Key=f"checkpoints/{name}/state.json")["Body"].read()
    assert json.loads(saved) == {"step": 5}
    assert 1 <= described["BillableTimeInSeconds"] <= described["TrainingTimeInSeconds"]


@needs_opt_ml
def test_the_seed_style_script_with_hard_coded_opt_ml_paths_trains(cloud, s3, sm):
    # Given the seed's script, which reads /opt/ml/input/data/train/train.csv and writes /opt/ml/model
    name = unique("seed")
    data = churn_data(s3, f"data/{name}")
    source = upload_source(s3, {"train.py": CHURN / "train_seed_style.py"})
    create_job(sm, name, sdk_hyperparameters("train.py", source, n_estimators=10, max_depth=3), [
        channel("train", data["train"])
    ])  # fmt: skip

    # Then it trains, and /opt/ml is released afterwards
    described = finished(sm, name, timeout=60)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert list(model_files(s3, described)) == ["model.joblib"]
    assert not training_opt_ml.OPT_ML.is_symlink() or Path(os.readlink(training_opt_ml.OPT_ML)).name != name


@needs_opt_ml
def test_a_second_job_waits_pending_while_another_holds_opt_ml(cloud, s3, sm):
    # Given a running job that holds /opt/ml
    holder = unique("holder")
    create_job(sm, holder, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": SLEEPER})))
    script_pid(cloud, holder)

    # When a second job starts, it waits as Pending (SageMaker's "waiting for capacity")
    waiter = unique("waiter")
    create_job(sm, waiter, sdk_hyperparameters("hello.py", upload_source(s3, {"hello.py": "print('hi')"})))
    wait_for(lambda: sm.describe_training_job(TrainingJobName=waiter)["SecondaryStatus"] == "Pending", timeout=10)

    # Then it runs once the first one is stopped
    sm.stop_training_job(TrainingJobName=holder)
    assert finished(sm, holder, timeout=20)["TrainingJobStatus"] == "Stopped"
    described = finished(sm, waiter, timeout=30)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert secondary(described) == ["Starting", "Pending", "Downloading", "Training", "Uploading", "Completed"]


# Another local cloud's job, as far as /opt/ml goes: a process that holds the lock file's flock.
OTHER_PROCESS_HOLDS_OPT_ML = """
import fcntl, sys
with open(sys.argv[1], "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
"""


@needs_opt_ml
def test_a_job_waits_pending_while_another_process_holds_opt_ml(cloud, s3, sm):
    # Given another process that holds /opt/ml
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS_HOLDS_OPT_ML, str(training_opt_ml.opt_ml_lock_file())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "held"

        # When a job starts here, it waits as Pending
        name = unique("crossproc")
        create_job(sm, name, sdk_hyperparameters("hello.py", upload_source(s3, {"hello.py": "print('hi')"})))
        wait_for(lambda: sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] == "Pending", timeout=10)
        assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"
    finally:
        # Then it runs once the other process dies (the kernel drops its lock)
        other.kill()
        other.wait()
    described = finished(sm, name, timeout=30)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert secondary(described) == ["Starting", "Pending", "Downloading", "Training", "Uploading", "Completed"]


def test_without_opt_ml_a_toolkit_style_script_still_runs(cloud, s3, sm, monkeypatch, tmp_path):
    # Given /opt/ml taken by a real directory
    taken = tmp_path / "opt" / "ml"
    taken.mkdir(parents=True)
    monkeypatch.setattr(training_opt_ml, "OPT_ML", taken)
    name = unique("fallback")
    script = "import os, pathlib; pathlib.Path(os.environ['SM_MODEL_DIR'], 'ok.txt').write_text('ok')"
    create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, {"train.py": script})))

    # Then the job runs without it, leaves the directory alone, and says so in its log
    described = finished(sm, name)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert model_files(s3, described) == {"ok.txt": b"ok"}
    assert taken.is_dir()
    assert not taken.is_symlink()
    assert any("is a real directory here: running without it" in m for m in log_messages(cloud, name))


# ---------------------------------------------------------------------------- requirements.txt


def test_requirements_install_into_a_cached_environment(cloud, s3, sm):
    # Given a source directory whose requirements.txt the local packages already satisfy
    files = {
        "requirements.txt": "joblib\nscikit-learn>=1.0\n",
        "train.py": "import sys, sklearn; print('python', sys.executable); print('sklearn', sklearn.__version__)",
    }
    names = [unique("reqs"), unique("reqs")]
    for name in names:
        create_job(sm, name, sdk_hyperparameters("train.py", upload_source(s3, files)))
        described = finished(sm, name, timeout=120)
        assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")

    # Then the first job built a venv and ran in it, and the second reused it
    first, second = (log_messages(cloud, n) for n in names)
    assert any("Requirement already satisfied: joblib" in m for m in first)
    assert any(m.startswith("python ") and "/venvs/" in m for m in first)
    assert any("Using the cached environment for requirements.txt" in m for m in second)
    assert not any("Installing requirements" in m for m in second)
