"""Tests for shepherd.training: job names, source archives, channels, digests, waits, the CreateTrainingJob request."""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st
from shepherd import training
from shepherd.callbacks import metrics_of
from shepherd.config import ModelConfig, load_config
from shepherd.errors import InvalidInput
from shepherd.training import (
    WAIT_MARGIN_SECONDS,
    DataObject,
    Vpc,
    build_training_request,
    channel_manifest,
    channels_of,
    check_isolated_source,
    data_digest,
    job_name,
    source_archive,
    wait_timeout_seconds,
)

from localcloud.sagemaker.validation import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn" / "shepherd.yaml"
SOURCE = "models/churn/shepherd.yaml"
MINIMAL: dict[str, Any] = {"framework": "sklearn", "entry_point": "train.py"}
BUCKET = "shepherd-data-123456789012"
PREFIX = "training/churn/2024-03-08/"
ROLE = "arn:aws:iam::123456789012:role/shepherd-sagemaker"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REGION = "us-east-1"
SOURCE_URI = f"s3://{BUCKET}/artifacts/churn/run-1/sourcedir.tar.gz"
MANIFESTS = {
    "train": "artifacts/churn/run-1/manifests/train.json",
    "validation": "artifacts/churn/run-1/manifests/validation.json",
}
# SageMaker's TrainingJobName pattern (botocore's service model), anchored.
TRAINING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MODEL_NAMES = st.from_regex(r"\A[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\Z")
RUNS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=80)


def config_of(**sections: Any) -> ModelConfig:
    """The minimal config with top-level keys added or replaced, loaded as the churn model's."""
    return load_config(yaml.safe_dump({**copy.deepcopy(MINIMAL), **sections}, sort_keys=False), SOURCE)


def example_config() -> ModelConfig:
    return load_config(EXAMPLE.read_text(), SOURCE)


def data(key: str, version: str | None = "v1", etag: str | None = "e1", size: int = 10) -> DataObject:
    return DataObject(key=key, version_id=version, size=size, etag=etag)


def request_of(config: ModelConfig, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "model": "churn",
        "name": job_name("churn", "run-1"),
        "role_arn": ROLE,
        "region": REGION,
        "bucket": BUCKET,
        "manifests": MANIFESTS,
        "source_uri": SOURCE_URI,
        "kms_key_arn": KEY,
    }
    return build_training_request(config, **(arguments | overrides))


def input_shape() -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateTrainingJob").input_shape


def members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.getmembers()


# ---------------------------------------------------------------- job_name


def test_job_name_is_deterministic_per_run() -> None:
    # Given one model and one execution
    # When the name is computed twice
    # Then it is the same name (a retried task finds its own job)
    assert job_name("churn", "run-1") == job_name("churn", "run-1")


def test_job_name_reads_model_kind_and_a_hash() -> None:
    assert re.fullmatch(r"churn-train-[0-9a-f]{12}", job_name("churn", "run-1"))
    assert job_name("churn", "run-1", kind="transform").startswith("churn-transform-")


def test_job_name_differs_per_run() -> None:
    assert job_name("churn", "run-1") != job_name("churn", "run-2")


@given(model=MODEL_NAMES, run=RUNS)
def test_job_name_fits_sagemakers_pattern_and_length(model: str, run: str) -> None:
    # Given any valid model name (up to 63 characters) and any execution name
    name = job_name(model, run)
    # Then the job name is a valid TrainingJobName
    assert len(name) <= training.JOB_NAME_MAX
    assert TRAINING_JOB_NAME.match(name), name


@given(model=MODEL_NAMES, runs=st.lists(RUNS, min_size=2, max_size=5, unique=True))
def test_job_names_are_distinct_for_distinct_runs(model: str, runs: list[str]) -> None:
    names = [job_name(model, run) for run in runs]
    assert len(set(names)) == len(runs)


# ---------------------------------------------------------------- source_archive


def test_source_archive_is_reproducible_whatever_the_order() -> None:
    # Given the same files listed in two orders
    files = [("train.py", b"print('train')\n"), ("lib/util.py", b"X = 1\n"), ("inference.py", b"def model_fn(d): 1\n")]
    # When each is archived
    first, second = source_archive(files), source_archive(reversed(files))
    # Then the bytes are identical
    assert first == second


def test_source_archive_members_are_sorted_with_zero_mtimes_and_plain_modes() -> None:
    archive = source_archive([("train.py", b"a"), ("inference.py", b"bb")])
    found = members(archive)
    assert [m.name for m in found] == ["inference.py", "train.py"]
    assert {(m.mtime, m.mode, m.uid, m.gid) for m in found} == {(0, 0o644, 0, 0)}
    assert archive[4:8] == b"\0\0\0\0"  # the gzip header's MTIME


def test_source_archive_keeps_the_contents() -> None:
    archive = source_archive([("lib/util.py", b"X = 1\n")])
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        extracted = tar.extractfile("lib/util.py")
        assert extracted is not None
        assert extracted.read() == b"X = 1\n"


@pytest.mark.parametrize("name", ["../escape.py", "lib/../../escape.py", "/etc/passwd", "a/.."])
def test_source_archive_refuses_paths_outside_the_source_dir(name: str) -> None:
    with pytest.raises(InvalidInput, match="outside the source dir"):
        source_archive([(name, b"x")])


def test_source_archive_refuses_more_than_the_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cap of 10 bytes (the real one is 100 MB)
    monkeypatch.setattr(training, "MAX_SOURCE_BYTES", 10)
    # Then exactly the cap passes and one byte more is refused with advice
    source_archive([("a.py", b"12345"), ("b.py", b"12345")])
    with pytest.raises(InvalidInput, match="keep data out of the source dir"):
        source_archive([("a.py", b"12345"), ("b.py", b"123456")])


# ---------------------------------------------------------------- channels


def test_files_in_sub_folders_go_to_the_channel_the_folder_names() -> None:
    objects = [data(f"{PREFIX}train/a.csv"), data(f"{PREFIX}validation/b.csv"), data(f"{PREFIX}test/sub/c.csv")]
    channels = channels_of(PREFIX, objects)
    assert {name: [o.key for o in found] for name, found in channels.items()} == {
        "test": [f"{PREFIX}test/sub/c.csv"],
        "train": [f"{PREFIX}train/a.csv"],
        "validation": [f"{PREFIX}validation/b.csv"],
    }


def test_files_directly_in_the_dataset_folder_go_to_train() -> None:
    objects = [data(f"{PREFIX}data.csv"), data(f"{PREFIX}train/more.csv"), data(f"{PREFIX}validation/v.csv")]
    channels = channels_of(PREFIX, objects)
    assert [o.key for o in channels["train"]] == [f"{PREFIX}data.csv", f"{PREFIX}train/more.csv"]
    assert list(channels) == ["train", "validation"]


@pytest.mark.parametrize("folder", ["bad channel", "x" * 65, "ünïcode", ""])
def test_a_folder_that_cannot_name_a_channel_is_refused(folder: str) -> None:
    with pytest.raises(InvalidInput, match="cannot name a SageMaker channel"):
        channels_of(PREFIX, [data(f"{PREFIX}{folder}/a.csv")])


def test_a_dataset_folder_named_code_is_refused_as_it_would_clash_with_the_code_channel() -> None:
    with pytest.raises(InvalidInput, match=r"the folder code/ is reserved"):
        channels_of(PREFIX, [data(f"{PREFIX}train/a.csv"), data(f"{PREFIX}code/b.csv")])


# ---------------------------------------------------------------- check_isolated_source


def test_an_isolated_source_dir_with_requirements_is_refused_saying_what_to_do() -> None:
    with pytest.raises(InvalidInput) as raised:
        check_isolated_source(config_of(), ["train.py", "requirements.txt"])
    assert "network_isolation is on" in str(raised.value)
    assert "vendor the packages into the code directory" in str(raised.value)


def test_requirements_are_refused_for_isolated_serving_even_when_training_has_a_network() -> None:
    # Endpoints (but serverless) and batch transform run isolated: the repacked code/requirements.txt would fail
    # the serving container at start-up, after a paid training job.
    with pytest.raises(InvalidInput, match="serve without a network"):
        check_isolated_source(config_of(training={"network_isolation": False}), ["train.py", "requirements.txt"])


@pytest.mark.parametrize(
    ("isolated", "kind", "names"),
    [
        pytest.param(False, "serverless", ["train.py", "requirements.txt"], id="serverless-not-isolated"),
        pytest.param(True, "realtime", ["train.py", "lib/vendored/requirements.txt"], id="vendored-package-file"),
    ],
)
def test_requirements_pass_where_every_container_has_a_network_or_installs_none(
    isolated: bool, kind: str, names: list[str]
) -> None:
    check_isolated_source(config_of(training={"network_isolation": isolated}, endpoint={"kind": kind}), names)


def test_channel_manifest_names_exactly_the_channels_files() -> None:
    objects = [data(f"{PREFIX}validation/b.csv"), data(f"{PREFIX}validation/deep/c.csv")]
    manifest = channel_manifest(BUCKET, PREFIX, "validation", objects)
    assert manifest == [{"prefix": f"s3://{BUCKET}/{PREFIX}validation/"}, "b.csv", "deep/c.csv"]


def test_channel_manifest_of_root_files_uses_the_dataset_prefix() -> None:
    objects = [data(f"{PREFIX}data.csv"), data(f"{PREFIX}train/more.csv")]
    manifest = channel_manifest(BUCKET, PREFIX, "train", objects)
    assert manifest == [{"prefix": f"s3://{BUCKET}/{PREFIX}"}, "data.csv", "train/more.csv"]


# ---------------------------------------------------------------- data_digest


def test_data_digest_ignores_the_listing_order() -> None:
    objects = [data(f"{PREFIX}a.csv"), data(f"{PREFIX}b.csv", version="v2")]
    assert data_digest(objects) == data_digest(list(reversed(objects)))
    assert re.fullmatch(r"[0-9a-f]{64}", data_digest(objects))


@pytest.mark.parametrize(
    "changed",
    [
        data(f"{PREFIX}a.csv", version="v9"),
        data(f"{PREFIX}a.csv", etag="e9"),
        data(f"{PREFIX}renamed.csv"),
    ],
)
def test_data_digest_changes_with_a_version_etag_or_key(changed: DataObject) -> None:
    assert data_digest([data(f"{PREFIX}a.csv")]) != data_digest([changed])


# ---------------------------------------------------------------- wait_timeout_seconds


def test_wait_without_spot_is_the_runtime_plus_the_margin() -> None:
    config = config_of(training={"max_runtime_seconds": 1800})
    assert wait_timeout_seconds(config) == 1800 + WAIT_MARGIN_SECONDS


def test_wait_with_spot_counts_the_spot_max_wait() -> None:
    config = config_of(training={"max_runtime_seconds": 1800, "spot": {"enabled": True, "max_wait_seconds": 5000}})
    assert wait_timeout_seconds(config) == 5000 + WAIT_MARGIN_SECONDS


def test_wait_with_spot_and_default_max_wait_is_twice_the_runtime() -> None:
    config = config_of(training={"max_runtime_seconds": 1800, "spot": {"enabled": True}})
    assert wait_timeout_seconds(config) == 3600 + WAIT_MARGIN_SECONDS


# ---------------------------------------------------------------- build_training_request


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(example_config(), id="churn-example"),
        pytest.param(config_of(), id="minimal"),
        pytest.param(config_of(framework="xgboost", training={"instance_count": 3}), id="xgboost-distributed"),
    ],
)
def test_request_fits_botocores_create_training_job_shape(config: ModelConfig) -> None:
    request = request_of(config, vpc=Vpc(subnets=["subnet-1"], security_groups=["sg-1"]), tags={"shepherd:model": "c"})
    validate_parameters(request, input_shape())
    validate("CreateTrainingJob", request)


def test_request_without_a_key_vpc_or_tags_fits_too() -> None:
    request = request_of(config_of(), kms_key_arn=None)
    validate_parameters(request, input_shape())
    validate("CreateTrainingJob", request)


def test_request_encrypts_the_volume_and_the_output_with_the_key() -> None:
    request = request_of(config_of())
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == KEY
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY


def test_request_without_a_key_leaves_encryption_to_the_bucket() -> None:
    request = request_of(config_of(), kms_key_arn=None)
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert "KmsKeyId" not in request["OutputDataConfig"]


@pytest.mark.parametrize("isolated", [True, False])
def test_network_isolation_follows_the_config(isolated: bool) -> None:
    assert request_of(config_of(training={"network_isolation": isolated}))["EnableNetworkIsolation"] is isolated


def test_network_isolation_is_on_by_default() -> None:
    assert request_of(config_of())["EnableNetworkIsolation"] is True


def test_runtime_is_bounded_by_the_config() -> None:
    request = request_of(config_of(training={"max_runtime_seconds": 1234}))
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1234}


def test_spot_sets_max_wait_and_checkpoints_under_the_data_bucket() -> None:
    config = config_of(training={"max_runtime_seconds": 1800, "spot": {"enabled": True, "max_wait_seconds": 3600}})
    name = job_name("churn", "run-1")
    request = request_of(config, name=name)
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/checkpoints/churn/{name}/",
        "LocalPath": "/opt/ml/checkpoints",
    }


def test_spot_checkpoints_go_where_the_config_says() -> None:
    config = config_of(training={"spot": {"enabled": True, "checkpoint_s3_uri": "s3://elsewhere/ckpt/"}})
    assert request_of(config)["CheckpointConfig"]["S3Uri"] == "s3://elsewhere/ckpt/"


def test_no_spot_means_no_max_wait_and_no_checkpoints() -> None:
    request = request_of(config_of())
    assert "EnableManagedSpotTraining" not in request
    assert "CheckpointConfig" not in request
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


def test_vpc_config_only_when_given() -> None:
    assert "VpcConfig" not in request_of(config_of())
    request = request_of(config_of(), vpc=Vpc(subnets=["subnet-1", "subnet-2"], security_groups=["sg-1"]))
    assert request["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def test_inter_container_traffic_is_encrypted_for_several_instances() -> None:
    request = request_of(config_of(framework="xgboost", training={"instance_count": 2}))
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["ResourceConfig"]["InstanceCount"] == 2


def test_one_instance_has_no_inter_container_setting() -> None:
    assert "EnableInterContainerTrafficEncryption" not in request_of(config_of())


def test_hyperparameters_are_json_encoded_with_the_script_mode_settings() -> None:
    config = config_of(hyperparameters={"n_estimators": 100, "criterion": "gini", "bootstrap": True, "lr": 0.1})
    hyperparameters = request_of(config)["HyperParameters"]
    assert hyperparameters == {
        "n_estimators": "100",
        "criterion": '"gini"',
        "bootstrap": "true",
        "lr": "0.1",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": '"/opt/ml/input/data/code/sourcedir.tar.gz"',
        "sagemaker_container_log_level": "20",
        "sagemaker_region": '"us-east-1"',
    }
    assert all(isinstance(value, str) for value in hyperparameters.values())


def test_channels_are_manifest_files_in_name_order() -> None:
    channels = request_of(config_of(training={"network_isolation": False}))["InputDataConfig"]
    assert [c["ChannelName"] for c in channels] == ["train", "validation"]
    assert channels[0]["DataSource"]["S3DataSource"] == {
        "S3DataType": "ManifestFile",
        "S3Uri": f"s3://{BUCKET}/{MANIFESTS['train']}",
        "S3DataDistributionType": "FullyReplicated",
    }


def test_an_isolated_job_gets_its_code_as_the_sdks_code_channel() -> None:
    # Given an isolated job (the default), whose container cannot reach S3 for its code
    request = request_of(config_of())
    # Then the snapshot comes in as a last channel named code, an S3Prefix naming the tar.gz itself (as the SDK
    # sends it), and the toolkit is pointed at where SageMaker puts that object in the container
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation", "code"]
    assert request["InputDataConfig"][-1] == {
        "ChannelName": "code",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": SOURCE_URI, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": "File",
    }
    assert request["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(
        "/opt/ml/input/data/code/sourcedir.tar.gz"
    )


def test_a_job_with_network_access_downloads_its_code_from_s3() -> None:
    # Given network isolation turned off
    request = request_of(config_of(training={"network_isolation": False}))
    # Then the toolkit downloads the snapshot itself, and no code channel is sent
    assert request["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(SOURCE_URI)
    assert "code" not in [c["ChannelName"] for c in request["InputDataConfig"]]


def test_metric_definitions_and_image_come_from_the_config() -> None:
    request = request_of(example_config())
    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )
    assert [m["Name"] for m in algorithm["MetricDefinitions"]] == ["validation:accuracy", "validation:auc"]


def test_tags_are_sorted_key_value_pairs() -> None:
    request = request_of(config_of(), tags={"shepherd:model": "churn", "shepherd:execution": "run-1"})
    assert request["Tags"] == [
        {"Key": "shepherd:execution", "Value": "run-1"},
        {"Key": "shepherd:model", "Value": "churn"},
    ]


def test_every_accepted_hyperparameter_string_fits_the_request() -> None:
    # Given a string hyperparameter of the longest length the config accepts
    config = config_of(hyperparameters={"notes": "x" * 2498, "quoted": '"' * 1249})
    # When the request is built, then SageMaker's service model accepts it
    validate("CreateTrainingJob", request_of(config))


def test_the_most_hyperparameters_the_config_accepts_fit_the_request() -> None:
    config = config_of(hyperparameters={f"h{index}": index for index in range(96)})
    validate("CreateTrainingJob", request_of(config))


# ---------------------------------------------------------------- metrics_of


def test_metrics_of_reads_the_final_metric_list() -> None:
    description = {"FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.82}]}
    assert metrics_of(description) == {"validation:auc": 0.82}
    assert metrics_of({}) == {}
