"""Training jobs as Shepherd builds them: names, source archives, lineage and the CreateTrainingJob request.

Pure functions of a validated ModelConfig and the facts the handlers looked up (no boto3). The
request carries Shepherd's secure defaults: KMS keys for the volume and the output, network
isolation unless the config turns it off, a maximum runtime, spot with checkpoints when asked,
VPC settings when the stack has them, and inter-container encryption for multi-instance jobs.

An isolated container cannot download its code from S3, so the request then ships the
sourcedir.tar.gz as an input channel named ``code``, as the SageMaker Python SDK v2 does
(sagemaker/estimator.py: ``CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH``, ``code_channel_name``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from shepherd.config import ModelConfig
from shepherd.errors import InvalidInput
from shepherd.images import image_uri
from shepherd.instances import has_instance_storage
from shepherd.objects import DataObject

JOB_NAME_MAX = 63
_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
# Time SageMaker spends around the training itself (provisioning, download, upload) that the
# stopping condition does not count: the state machine's wait allows this much on top of it.
WAIT_MARGIN_SECONDS = 900
MAX_SOURCE_BYTES = 100 * 2**20


class Vpc(BaseModel):
    subnets: list[str] = Field(min_length=1)
    security_groups: list[str] = Field(min_length=1)


def job_name(model: str, run: str, *, kind: str = "train") -> str:
    """``<model>-<kind>-<hash of run>``: deterministic per execution, within SageMaker's 63 characters."""
    digest = hashlib.sha256(run.encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("-", f"{model}-{kind}").strip("-")[: JOB_NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{readable}-{digest}"


def artifacts_prefix(model: str, run: str) -> str:
    """Where a run's own files go: never under a prefix that triggers a workflow."""
    return f"artifacts/{model}/{run}/"


def source_archive(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A reproducible sourcedir.tar.gz (sorted, zero mtimes and owners): the same code gives the same bytes."""
    buffer = io.BytesIO()
    total = 0
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, data in sorted(files):
            if name.startswith("/") or ".." in name.split("/"):
                raise InvalidInput(f"source file {name!r} would land outside the source dir")
            total += len(data)
            if total > MAX_SOURCE_BYTES:
                raise InvalidInput(
                    f"models/<model>/code/ holds more than {MAX_SOURCE_BYTES // 2**20} MB: keep data out of the "
                    f"source dir (it belongs under training/)"
                )
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
DEFAULT_CHANNEL = "train"
CODE_CHANNEL = "code"
# Where SageMaker puts the code channel's one object; the toolkit extracts a local tar.gz it is pointed at.
CONTAINER_SOURCE_PATH = f"/opt/ml/input/data/{CODE_CHANNEL}/sourcedir.tar.gz"
REQUIREMENTS = "requirements.txt"


def channels_of(prefix: str, objects: list[DataObject]) -> dict[str, list[DataObject]]:
    """A dataset's channels: files in a sub-folder go to the channel it names (train/, validation/, test/ ...),
    files directly in the dataset folder to ``train``."""
    channels: dict[str, list[DataObject]] = {}
    for found in objects:
        relative = found.key.removeprefix(prefix)
        channel = relative.split("/", 1)[0] if "/" in relative else DEFAULT_CHANNEL
        if not CHANNEL_PATTERN.match(channel):
            raise InvalidInput(
                f"s3://…/{found.key}: the folder {channel!r} cannot name a SageMaker channel "
                f"(letters, digits, '.', '-', '_'; at most 64)"
            )
        if channel == CODE_CHANNEL:
            raise InvalidInput(
                f"s3://…/{found.key}: the folder {CODE_CHANNEL}/ is reserved: the training code reaches an "
                f"isolated job as the {CODE_CHANNEL!r} channel; rename the folder"
            )
        channels.setdefault(channel, []).append(found)
    return dict(sorted(channels.items()))


def channel_manifest(bucket: str, prefix: str, channel: str, objects: list[DataObject]) -> list[Any]:
    """A SageMaker ManifestFile naming exactly a channel's files (not the marker, not later uploads)."""
    base = f"{prefix}{channel}/"
    if not all(o.key.startswith(base) for o in objects):
        base = prefix  # train files directly in the dataset folder (maybe beside a train/ folder)
    return [{"prefix": f"s3://{bucket}/{base}"}, *(o.key.removeprefix(base) for o in objects)]


def check_isolated_source(config: ModelConfig, names: Iterable[str]) -> None:
    """Refuse a source dir whose requirements.txt a container would have to pip-install without a network.

    The training container is isolated unless the config says otherwise; the serving ones (real-time and
    multi-model endpoints, batch transform) always are, and the registered model.tar.gz carries the code dir,
    so only a serverless model trained without isolation may install its packages at start-up."""
    if REQUIREMENTS not in names:
        return
    if config.training.network_isolation:
        where = "training.network_isolation is on, so the training container cannot pip-install it"
    elif config.endpoint.kind != "serverless":
        where = (
            f"the {config.endpoint.kind} endpoint and batch transform serve without a network, so the serving "
            f"container cannot pip-install it"
        )
    else:
        return
    raise InvalidInput(
        f"models/<model>/code/{REQUIREMENTS}: {where}; vendor the packages into the code directory "
        f"(pip install --target code/lib -r {REQUIREMENTS}, then add lib to sys.path) and remove "
        f"{REQUIREMENTS} (see docs/CONFIG.md, network isolation and dependencies)"
    )


def data_digest(objects: list[DataObject]) -> str:
    """One fingerprint of the exact data trained on: keys with their versions (or ETags)."""
    lines = "\n".join(f"{o.key}\t{o.version_id or ''}\t{o.etag or ''}" for o in sorted(objects, key=lambda o: o.key))
    return hashlib.sha256(lines.encode()).hexdigest()


def wait_timeout_seconds(config: ModelConfig) -> int:
    """How long the state machine waits for the job: runtime, spot waiting and SageMaker's own overhead."""
    training = config.training
    longest = training.spot.max_wait_seconds if training.spot.enabled and training.spot.max_wait_seconds else 0
    return max(training.max_runtime_seconds, longest) + WAIT_MARGIN_SECONDS


def _hyperparameter(value: str | int | float | bool) -> str:
    # The SageMaker SDK sends every hyperparameter JSON-encoded; the framework containers decode them.
    return json.dumps(value)


def build_training_request(
    config: ModelConfig,
    *,
    model: str,
    name: str,
    role_arn: str,
    region: str,
    bucket: str,
    manifests: dict[str, str],
    source_uri: str,
    kms_key_arn: str | None,
    vpc: Vpc | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob request for one run of a model's config (botocore's shape)."""
    training = config.training
    assert config.framework_version is not None  # filled by the config's validation
    hyperparameters = {k: _hyperparameter(v) for k, v in config.hyperparameters.items()}
    isolated = training.network_isolation
    hyperparameters |= {
        "sagemaker_program": _hyperparameter(config.entry_point),
        "sagemaker_submit_directory": _hyperparameter(CONTAINER_SOURCE_PATH if isolated else source_uri),
        "sagemaker_container_log_level": _hyperparameter(20),
        "sagemaker_region": _hyperparameter(region),
    }
    algorithm: dict[str, Any] = {
        "TrainingImage": image_uri(config.framework, config.framework_version, region, py_version=config.py_version),
        "TrainingInputMode": "File",
    }
    if training.metric_definitions:
        algorithm["MetricDefinitions"] = [{"Name": m.name, "Regex": m.regex} for m in training.metric_definitions]
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": training.max_runtime_seconds}
    resources: dict[str, Any] = {
        "InstanceType": training.instance_type,
        "InstanceCount": training.instance_count,
        "VolumeSizeInGB": training.volume_size_gb,
    }
    output: dict[str, Any] = {"S3OutputPath": f"s3://{bucket}/{artifacts_prefix(model, 'training')}"}
    if kms_key_arn:
        output["KmsKeyId"] = kms_key_arn
        if not has_instance_storage(training.instance_type):
            resources["VolumeKmsKeyId"] = kms_key_arn
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": f"s3://{bucket}/{key}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
            for channel, key in sorted(manifests.items())
        ],
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": training.network_isolation,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())],
    }
    if isolated:
        # The SDK's code channel: S3Prefix naming the tar.gz itself, so the one object lands by its name.
        request["InputDataConfig"].append(
            {
                "ChannelName": CODE_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": source_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        )
    if training.instance_count > 1:
        request["EnableInterContainerTrafficEncryption"] = True
    if training.spot.enabled:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = training.spot.max_wait_seconds
        request["CheckpointConfig"] = {
            "S3Uri": training.spot.checkpoint_s3_uri or f"s3://{bucket}/checkpoints/{model}/{name}/",
            "LocalPath": "/opt/ml/checkpoints",
        }
    if vpc is not None:
        request["VpcConfig"] = {"Subnets": vpc.subnets, "SecurityGroupIds": vpc.security_groups}
    return request
