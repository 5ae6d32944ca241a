"""PrepareTraining's step (shepherd.training.prepare) on an in-memory bucket: what it refuses, writes and returns."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
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
training: {instance_type: ml.m5.large, max_runtime_seconds: 1800}
registry: {model_package_group: churn-models}
"""
CODE = {"train.py": b"print('validation:auc=0.82;')\n", "inference.py": b"def model_fn(model_dir):\n    return None\n"}
DATA = {"train/part-0.csv": b"1,0.5\n0,0.1\n", "validation/part-0.csv": b"1,0.4\n"}


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
    settings: training.Settings = SETTINGS

    def upload_model(self, config: str | None = CONFIG, code: dict[str, bytes] = CODE) -> None:
        if config is not None:
            self.bucket.put("models/churn/shepherd.yaml", config.encode())
        for name, data in code.items():
            self.bucket.put(f"models/churn/code/{name}", data)

    def upload_dataset(self, files: dict[str, bytes] = DATA) -> training.DatasetRun:
        for name, data in files.items():
            self.bucket.put(f"{DATASET}{name}", data)
        version = self.bucket.put(MARKER, b"")
        return training.DatasetRun(
            model="churn", dataset="d1", bucket=BUCKET, prefix=DATASET, marker=MARKER, marker_version=version, run=RUN
        )

    def prepare(self, request: training.DatasetRun) -> dict[str, Any]:
        return training.prepare(training.Deps(objects=self.bucket, settings=self.settings), request)


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
    ],
    ids=["no-config", "bad-config", "no-entry-point", "requirements", "only-marker", "code-folder", "no-image"],
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
