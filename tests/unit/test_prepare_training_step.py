"""PrepareTraining's step (shepherd.training.prepare) on an in-memory bucket and registry: what it refuses, skips,
writes and returns."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from shepherd import training
from shepherd.errors import InvalidInput, NotFound
from shepherd.objects import DataObject

BUCKET = "shepherd-data"
RUN = "churn-d1-4be2d1a97c03f518"
ARTIFACTS = f"artifacts/churn/{RUN}/"
DATASET = "training/churn/d1/"
MARKER = f"{DATASET}_READY"
SETTINGS = training.Settings(
    role_arn="arn:aws:iam::123456789012:role/shepherd-sagemaker",
    region="eu-west-1",
    kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k",
)
CONFIG = """\
framework: sklearn
entry_point: train.py
inference_entry_point: inference.py
hyperparameters: {max_depth: 5}
training: {instance_type: ml.m5.large, max_runtime_seconds: 1800, target_column: target}
registry: {model_package_group: churn-models}
"""
CODE = {"train.py": b"print('validation:auc=0.82;')\n", "inference.py": b"def model_fn(model_dir):\n    return None\n"}
DATA = {"train/part-0.csv": b"target,x\n1,0.5\n0,0.1\n", "validation/part-0.csv": b"target,x\n1,0.4\n"}
GROUP_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn-models"


@dataclass
class FakeBucket:
    """DataBucket: a versioned bucket, listed and read as S3 does; every write is kept in order."""

    versions: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # key -> [(version id, bytes)]
    written: list[tuple[str, str]] = field(default_factory=list)  # (key, content type)
    read: list[tuple[str, str | None]] = field(default_factory=list)

    def put(self, key: str, data: bytes) -> str:
        version = f"v{sum(len(v) for v in self.versions.values()) + 1}"
        self.versions.setdefault(key, []).append((version, data))
        return version

    def latest_objects(self, bucket: str, prefix: str) -> list[DataObject]:
        assert bucket == BUCKET
        return [
            DataObject(key=key, version_id=stored[-1][0], size=len(stored[-1][1]), etag=_etag(stored[-1][1]))
            for key, stored in sorted(self.versions.items())
            if key.startswith(prefix)
        ]

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        self.read.append((key, version_id))
        for version, data in reversed(self.versions.get(key, [])):
            if version_id in (None, version):
                return data
        raise NotFound(f"reading s3://{bucket}/{key}: no such object")

    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None:
        self.written.append((key, content_type))
        return self.put(key, data)

    def latest(self, key: str) -> bytes:
        return self.versions[key][-1][1]

    def read_head(self, bucket: str, key: str, version_id: str | None, limit: int) -> Iterator[bytes]:
        data = self.read_bytes(bucket, key, version_id)[:limit]
        yield from (data[i : i + 5] for i in range(0, len(data), 5))


@dataclass
class FakePackages:
    """TrainedPackages: a group's packages as DescribeModelPackage returns them, newest last."""

    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    asked: list[tuple[str, int]] = field(default_factory=list)

    def recent_packages(self, group: str, limit: int) -> Iterator[dict[str, Any]]:
        self.asked.append((group, limit))
        yield from list(reversed(self.groups.get(group, [])))[:limit]

    def register(self, group: str, lineage: dict[str, str], status: str = "Approved") -> str:
        packages = self.groups.setdefault(group, [])
        arn = f"{GROUP_ARN}/{len(packages) + 1}"
        metadata = {f"shepherd:{key}": value for key, value in lineage.items()}
        packages.append(
            {
                "ModelPackageArn": arn,
                "ModelPackageVersion": len(packages) + 1,
                "ModelApprovalStatus": status,
                "CustomerMetadataProperties": metadata,
            }
        )
        return arn


def _archived(archive: bytes) -> dict[str, bytes]:
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read()
    return files


def _etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass
class World:
    bucket: FakeBucket = field(default_factory=FakeBucket)
    packages: FakePackages = field(default_factory=FakePackages)
    settings: training.Settings = SETTINGS

    def upload_model(self, config: str | None = CONFIG, code: dict[str, bytes] = CODE) -> None:
        if config is not None:
            self.bucket.put("models/churn/shepherd.yaml", config.encode())
        for name, data in code.items():
            self.bucket.put(f"models/churn/code/{name}", data)

    def upload_dataset(self, files: dict[str, bytes] = DATA, *, run: str = RUN) -> training.DatasetRun:
        for name, data in files.items():
            self.bucket.put(f"{DATASET}{name}", data)
        version = self.bucket.put(MARKER, b"")
        return training.DatasetRun(
            model="churn", dataset="d1", bucket=BUCKET, prefix=DATASET, marker=MARKER, marker_version=version, run=run
        )

    def prepare(self, request: training.DatasetRun) -> dict[str, Any]:
        deps = training.Deps(objects=self.bucket, settings=self.settings, files=self.bucket, packages=self.packages)
        return training.prepare(deps, request)


@pytest.fixture
def world() -> World:
    return World()


def test_a_marked_dataset_becomes_a_request_on_one_manifest_per_channel(world: World) -> None:
    # Given a model's config and code, and a dataset with train/ and validation/ folders
    world.upload_model()
    request = world.upload_dataset()
    # When PrepareTraining runs
    prepared = world.prepare(request)
    # Then the job trains on one manifest per channel, and (isolated) gets the code as the SDK's code channel
    inputs = prepared["training_request"]["InputDataConfig"]
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in inputs] == [
        ("train", f"s3://{BUCKET}/{ARTIFACTS}manifests/train.json"),
        ("validation", f"s3://{BUCKET}/{ARTIFACTS}manifests/validation.json"),
        ("code", f"s3://{BUCKET}/{ARTIFACTS}sourcedir.tar.gz"),
    ]
    assert json.loads(world.bucket.latest(f"{ARTIFACTS}manifests/train.json")) == [
        {"prefix": f"s3://{BUCKET}/{DATASET}train/"},
        "part-0.csv",
    ]


def test_the_output_is_what_the_lifecycle_state_machine_reads(world: World) -> None:
    # Given a model and a dataset
    world.upload_model()
    request = world.upload_dataset()
    # When PrepareTraining runs
    prepared = world.prepare(request)
    # Then it returns the keys model_lifecycle.asl.json passes on to Train, Evaluate and Register
    assert set(prepared) == {
        "skipped",
        "model",
        "run",
        "bucket",
        "job_name",
        "training_request",
        "wait_timeout_seconds",
        "config",
        "group",
        "image",
        "source_uri",
        "lineage",
        "lineage_uri",
    }
    assert prepared["job_name"] == prepared["training_request"]["TrainingJobName"] == training.job_name("churn", RUN)
    assert (prepared["group"], prepared["wait_timeout_seconds"]) == (
        "churn-models",
        1800 + training.WAIT_MARGIN_SECONDS,
    )
    assert prepared["image"].startswith("141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:")
    assert prepared["source_uri"] == f"s3://{BUCKET}/{ARTIFACTS}sourcedir.tar.gz"
    assert prepared["lineage_uri"] == f"s3://{BUCKET}/{ARTIFACTS}lineage.json"


def test_only_the_runs_artifacts_are_written_code_first_lineage_last(world: World) -> None:
    # Given a model and a dataset
    world.upload_model()
    request = world.upload_dataset()
    # When PrepareTraining runs
    world.prepare(request)
    # Then it wrote under the run's artifacts only (no new workflow triggers), the lineage once the rest is there
    assert world.bucket.written == [
        (f"{ARTIFACTS}sourcedir.tar.gz", "application/gzip"),
        (f"{ARTIFACTS}manifests/train.json", "application/json"),
        (f"{ARTIFACTS}manifests/validation.json", "application/json"),
        (f"{ARTIFACTS}lineage.json", "application/json"),
    ]


def test_the_run_snapshots_the_versions_it_listed(world: World) -> None:
    # Given a model whose config and code were uploaded twice, and a dataset
    world.upload_model(code={"train.py": b"old", "inference.py": b"old"})
    world.upload_model()
    request = world.upload_dataset()
    # When PrepareTraining runs
    prepared = world.prepare(request)
    # Then it read each file at the version it listed, archived the newest code and recorded every version
    assert all(version is not None for _, version in world.bucket.read)
    assert _archived(world.bucket.latest(f"{ARTIFACTS}sourcedir.tar.gz")) == CODE
    lineage = json.loads(world.bucket.latest(f"{ARTIFACTS}lineage.json"))
    listed = {o.key: o.version_id for o in world.bucket.latest_objects(BUCKET, DATASET) if o.key != MARKER}
    assert {o["key"]: o["version_id"] for o in lineage["data"]} == listed
    assert prepared["lineage"]["config_version"] == world.bucket.versions["models/churn/shepherd.yaml"][-1][0]
    assert (prepared["lineage"]["marker_version"], prepared["lineage"]["channels"]) == (
        request.marker_version,
        "train,validation",
    )


def test_the_stack_settings_reach_the_request(world: World) -> None:
    # Given a stack with a VPC and a default training instance type, and a config that names no instance type
    world.settings = training.Settings(
        role_arn=SETTINGS.role_arn,
        region=SETTINGS.region,
        kms_key_arn=SETTINGS.kms_key_arn,
        default_instance_type="ml.c5.xlarge",
        vpc=training.Vpc(subnets=["subnet-1"], security_groups=["sg-1"]),
    )
    world.upload_model(config=CONFIG.replace("instance_type: ml.m5.large, ", ""))
    request = world.upload_dataset()
    # When PrepareTraining runs
    job = world.prepare(request)["training_request"]
    # Then the job runs as the stack's role, in its VPC, on its default instance type, encrypted with its key
    assert job["RoleArn"] == SETTINGS.role_arn
    assert job["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert job["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert job["OutputDataConfig"]["KmsKeyId"] == SETTINGS.kms_key_arn
    assert json.loads(job["HyperParameters"]["sagemaker_region"]) == "eu-west-1"


def test_a_config_s_own_instance_type_wins_over_the_stack_default(world: World) -> None:
    # Given a stack default and a config that names its instance type
    world.settings = training.Settings(
        role_arn=SETTINGS.role_arn, region="eu-west-1", default_instance_type="ml.c5.xlarge"
    )
    world.upload_model()
    request = world.upload_dataset()
    # When PrepareTraining runs, then the config's choice stands
    assert world.prepare(request)["training_request"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"


def test_the_marker_and_empty_objects_are_not_data(world: World) -> None:
    # Given a dataset with an empty placeholder beside its files
    world.upload_model()
    request = world.upload_dataset(DATA | {"train/.keep": b""})
    # When PrepareTraining runs, then the manifests and the lineage name only the files with data
    prepared = world.prepare(request)
    assert prepared["lineage"]["data_objects"] == "2"
    assert json.loads(world.bucket.latest(f"{ARTIFACTS}manifests/train.json"))[1:] == ["part-0.csv"]


@pytest.mark.parametrize(
    ("config", "code", "data", "region", "refusal"),
    [
        (None, CODE, DATA, "eu-west-1", "models/churn/shepherd.yaml does not exist"),
        ("framework: pytorch\nentry_point: train.py\n", CODE, DATA, "eu-west-1", "framework.*pytorch"),
        (CONFIG, {"train.py": b"x"}, DATA, "eu-west-1", r"models/churn/code/inference\.py does not exist"),
        (CONFIG, CODE | {"requirements.txt": b"lightgbm\n"}, DATA, "eu-west-1", "network_isolation is on"),
        (CONFIG, CODE, {}, "eu-west-1", "holds no data besides its _READY marker"),
        (CONFIG, CODE, {"code/part-0.csv": b"1\n"}, "eu-west-1", "the folder code/ is reserved"),
        (CONFIG, CODE, DATA, "xx-nowhere-1", "SageMaker publishes no sklearn image in xx-nowhere-1"),
        (
            CONFIG,
            CODE,
            DATA | {"train/part-1.csv": b"target,x\n1,0.5,7\n"},
            "eu-west-1",
            f"^{DATASET}train/part-1.csv line 2: 3 fields, the header has 2$",
        ),
        (CONFIG, CODE, {"train/part-0.csv": b"label,x\n1,0.5\n"}, "eu-west-1", "no column 'target'"),
    ],
    ids=[
        "no-config",
        "bad-config",
        "no-entry-point",
        "requirements",
        "only-marker",
        "code-folder",
        "no-image",
        "ragged-csv",
        "no-target",
    ],
)
def test_every_refusal_comes_before_the_first_write(
    world: World,
    config: str | None,
    code: dict[str, bytes],
    data: dict[str, bytes],
    region: str,
    refusal: str,
) -> None:
    # Given an upload with one thing wrong
    world.settings = training.Settings(role_arn=SETTINGS.role_arn, region=region)
    world.upload_model(config=config, code=code)
    request = world.upload_dataset(data)
    # When PrepareTraining runs, then it refuses, saying what is wrong, and has written nothing
    with pytest.raises(InvalidInput, match=refusal):
        world.prepare(request)
    assert world.bucket.written == []


def test_a_dataset_already_trained_with_the_same_code_and_config_is_skipped_naming_its_package(world: World) -> None:
    # Given a dataset trained once into a package, and its marker uploaded again (a new run)
    world.upload_model()
    first = world.prepare(world.upload_dataset())
    arn = world.packages.register("churn-models", first["lineage"])
    written = list(world.bucket.written)
    again = world.upload_dataset({}, run="churn-d1-second")
    # When PrepareTraining runs for the new run
    prepared = world.prepare(again)
    # Then it trains nothing, writes nothing, and says which package it already made
    assert prepared["skipped"] is True
    assert prepared["reason"].startswith(f"already trained: {arn} (version 1, Approved)")
    assert '"force": true' in prepared["detail"]
    assert prepared["already_trained"] == {
        "model_package_arn": arn,
        "version": 1,
        "approval_status": "Approved",
        "execution": RUN,
    }
    assert world.bucket.written == written
    assert world.packages.asked[-1] == ("churn-models", training.TRAINED_LOOKBACK)


def test_force_retrains_a_dataset_already_trained(world: World) -> None:
    # Given a dataset already trained into a package
    world.upload_model()
    world.packages.register("churn-models", world.prepare(world.upload_dataset())["lineage"])
    # When its marker is uploaded again with force
    again = world.upload_dataset({}, run="churn-d1-forced").model_copy(update={"force": True})
    prepared = world.prepare(again)
    # Then the run trains, and the registry is not even asked
    assert prepared["skipped"] is False
    assert prepared["job_name"] == training.job_name("churn", "churn-d1-forced")
    assert len(world.packages.asked) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda world: world.bucket.put(f"{DATASET}train/part-0.csv", DATA["train/part-0.csv"]),
        lambda world: world.upload_model(code={"train.py": CODE["train.py"]}),
        lambda world: world.upload_model(config=CONFIG.replace("max_depth: 5", "max_depth: 6"), code={}),
    ],
    ids=["data-uploaded-again", "code-uploaded-again", "config-changed"],
)
def test_a_new_version_of_data_code_or_config_trains_again(world: World, change: Any) -> None:
    # Given a dataset already trained into a package
    world.upload_model()
    world.packages.register("churn-models", world.prepare(world.upload_dataset())["lineage"])
    # When a data file, the code or the config gets a new version, and the marker is uploaded again
    change(world)
    prepared = world.prepare(world.upload_dataset({}, run="churn-d1-changed"))
    # Then the run trains on it
    assert prepared["skipped"] is False


def test_a_package_of_other_inputs_does_not_skip(world: World) -> None:
    # Given a group whose packages were made from other inputs (or before Shepherd recorded them)
    world.upload_model()
    world.packages.register("churn-models", {"inputs_digest": "0" * 64})
    world.packages.register("churn-models", {"execution": "older"})
    # When a dataset is marked, then it trains
    assert world.prepare(world.upload_dataset())["skipped"] is False


@pytest.mark.parametrize(
    ("state", "reason", "error"),
    [
        (
            {
                "error": {
                    "Error": "TrainingDataError",
                    "Cause": json.dumps(
                        {
                            "errorMessage": "training/churn/d1/part-2.csv line 50: 11 fields, the header has 9",
                            "errorType": "TrainingDataError",
                            "stackTrace": ['  File "/var/task/app.py", line 40, in handler\n'],
                        }
                    ),
                }
            },
            "TrainingDataError: training/churn/d1/part-2.csv line 50: 11 fields, the header has 9",
            "TrainingDataError",
        ),
        (
            {"job_name": "churn-train-1", "wait_timeout_seconds": 2700, "error": {"Error": "States.Timeout"}},
            "training job churn-train-1 did not end within 2700 seconds (training.max_runtime_seconds, or "
            "spot.max_wait_seconds, plus 900): it was stopped",
            "States.Timeout",
        ),
        (
            {"error": {"Error": "States.Timeout"}},
            "States.Timeout: the step did not finish within its time limit",
            "States.Timeout",
        ),
    ],
    ids=["lambda-error", "training-wait", "step-timeout"],
)
def test_a_failure_is_told_in_one_line_first_without_the_stack_trace(
    state: dict[str, Any], reason: str, error: str
) -> None:
    # Given the lifecycle's state when a step failed
    # When the failure is described
    notice = training.failure_notice("arn:execution", {"model": "churn", **state})
    # Then the notification leads with the one-line reason, then the detail and the facts; no stack trace
    assert list(notice)[:3] == ["reason", "detail", "event"]
    assert (notice["reason"], notice["event"], notice["error"], notice["model"]) == (
        reason,
        "ModelLifecycleFailed",
        error,
        "churn",
    )
    assert "stackTrace" not in json.dumps(notice)
    assert "app.py" not in json.dumps(notice)
