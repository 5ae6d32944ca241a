"""Training jobs as Shepherd builds them: names, source archives, lineage and the CreateTrainingJob request.

Pure functions of a validated ModelConfig, and PrepareTraining's step (`prepare`), which reads and writes
the data bucket through a port (no boto3). The request's secure defaults and the ``code`` channel of an
isolated job: docs/PIPELINES.md, "Training jobs' secure defaults" and "Network isolation".
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.errors import InvalidInput
from shepherd.events.notifications import document, explain
from shepherd.images import UnknownImage, image_uri
from shepherd.instances import has_instance_storage
from shepherd.names import ALPHANUMERIC_UNSAFE, bounded, digest
from shepherd.objects import DataObject
from shepherd.registry import lineage_document
from shepherd.training_data import DataFiles, check_dataset, is_csv

logger = logging.getLogger(__name__)

JOB_NAME_MAX = 63
# Time SageMaker spends around the training itself (provisioning, download, upload) that the
# stopping condition does not count: the state machine's wait allows this much on top of it.
WAIT_MARGIN_SECONDS = 900
MAX_SOURCE_BYTES = 100 * 2**20
# How many of a group's newest packages PrepareTraining compares with a run's inputs before it trains.
TRAINED_LOOKBACK = 20
FORCE_HINT = (
    'To retrain anyway, start ModelLifecycle by hand with "force": true in its input, or upload the data, code or '
    "config again (a new version is a new run)."
)
LIFECYCLE_FAILED = "ModelLifecycleFailed"


class Vpc(BaseModel):
    subnets: list[str] = Field(min_length=1)
    security_groups: list[str] = Field(min_length=1)


def job_name(model: str, run: str, *, kind: str = "train") -> str:
    """``<model>-<kind>-<hash of run>``: deterministic per execution, within SageMaker's 63 characters."""
    return bounded(f"{model}-{kind}", digest(run, length=12), limit=JOB_NAME_MAX, unsafe=ALPHANUMERIC_UNSAFE)


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


# ---------------------------------------------------------------- PrepareTraining


class DataBucket(Protocol):
    """The data bucket's objects: the current version of each, reading one version, writing (shepherd.aws.s3)."""

    def latest_objects(self, bucket: str, prefix: str) -> list[DataObject]: ...
    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...
    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None: ...


class TrainedPackages(Protocol):
    """A package group's newest packages, described, newest first (shepherd.aws.training_runs)."""

    def recent_packages(self, group: str, limit: int) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class Settings:
    """The stack's settings a training job gets, read from the environment once, in the handler."""

    role_arn: str
    region: str
    kms_key_arn: str | None = None
    default_instance_type: str | None = None  # for a config that names no training.instance_type
    vpc: Vpc | None = None


@dataclass(frozen=True)
class Deps:
    """Everything PrepareTraining touches."""

    objects: DataBucket
    settings: Settings
    files: DataFiles
    packages: TrainedPackages


class DatasetRun(BaseModel):
    """PrepareTraining's input: a marked dataset, and the run (the lifecycle execution's name) training on it."""

    model: str
    dataset: str
    bucket: str
    prefix: str
    marker: str
    marker_version: str = ""
    run: str
    force: bool = Field(default=False, description="Train even when a package was made from the same inputs.")


def prepare(deps: Deps, request: DatasetRun) -> dict[str, Any]:
    """Snapshot a marked dataset with its model's config and code, and build the CreateTrainingJob request;
    or, when a package was already made from the same data, code and config, say so and build nothing.

    Every refusal comes before the first write: a refused upload leaves nothing under the run's artifacts."""
    model, bucket, run = request.model, request.bucket, request.run
    config_object, config, code = _model_files(deps, request)
    listed = [o for o in deps.objects.latest_objects(bucket, request.prefix) if o.key != request.marker]
    data = [o for o in listed if o.size > 0]
    if not data:
        from shepherd.events.s3 import MARKER  # only for this message: the module builds six event models

        raise InvalidInput(f"s3://{bucket}/{request.prefix} holds no data besides its {MARKER} marker")
    channels = channels_of(request.prefix, data)
    settings = deps.settings
    try:
        image = image_uri(
            config.framework, config.framework_version or "", settings.region, py_version=config.py_version
        )
    except UnknownImage as exc:
        raise InvalidInput(str(exc)) from None
    group = config.registry.model_package_group or model
    inputs = inputs_digest(data, list(code.values()), config_object)
    made = None if request.force else already_trained(deps.packages, group, inputs)
    if made is not None:
        logger.info("already trained", extra={"reason": made["reason"], "inputs_digest": inputs})
        return {"skipped": True, "model": model, "run": run, "bucket": bucket, "group": group, **made}
    checked = check_dataset(
        deps.files,
        bucket,
        [o for o in listed if o.size > 0 or is_csv(o.key)],
        target_column=config.training.target_column,
    )
    logger.info(
        "training data checked",
        extra={"csv_files": checked.files, "rows": checked.rows, "partly_read": checked.partly_read},
    )

    prefix = artifacts_prefix(model, run)
    files = ((name, deps.objects.read_bytes(bucket, o.key, o.version_id)) for name, o in code.items())
    source_key = f"{prefix}sourcedir.tar.gz"
    deps.objects.write_bytes(bucket, source_key, source_archive(files), "application/gzip")
    manifests = {}
    for channel, objects in channels.items():
        manifests[channel] = f"{prefix}manifests/{channel}.json"
        manifest = channel_manifest(bucket, request.prefix, channel, objects)
        deps.objects.write_bytes(bucket, manifests[channel], json.dumps(manifest).encode(), "application/json")
    name = job_name(model, run)
    source_uri = f"s3://{bucket}/{source_key}"
    training_request = build_training_request(
        config,
        model=model,
        name=name,
        role_arn=settings.role_arn,
        region=settings.region,
        bucket=bucket,
        manifests=manifests,
        source_uri=source_uri,
        kms_key_arn=settings.kms_key_arn,
        vpc=settings.vpc,
        tags={"shepherd:model": model, "shepherd:execution": run[:256]},
    )
    lineage = {
        "model": model,
        "execution": run,
        "dataset": f"s3://{bucket}/{request.prefix}",
        "data_digest": data_digest(data),
        "data_objects": str(len(data)),
        "channels": ",".join(manifests),
        "marker_version": request.marker_version,
        "config_version": config_object.version_id or "",
        "code_digest": data_digest(list(code.values())),
        "inputs_digest": inputs,
        "source_uri": source_uri,
        "training_job": name,
    }
    document = lineage_document(
        **lineage,
        data=[o.model_dump() for o in data],
        code=[o.model_dump() for o in code.values()],
        config=config_object.model_dump(),
        hyperparameters=config.hyperparameters,
        image=image,
    )
    lineage_key = f"{prefix}lineage.json"
    deps.objects.write_bytes(bucket, lineage_key, document.encode(), "application/json")
    logger.info("training prepared", extra={"job": name, "data_objects": len(data), "code_files": len(code)})
    return {
        "skipped": False,
        "model": model,
        "run": run,
        "bucket": bucket,
        "job_name": name,
        "training_request": training_request,
        "wait_timeout_seconds": wait_timeout_seconds(config),
        "config": config.model_dump(mode="json"),
        "group": group,
        "image": image,
        "source_uri": source_uri,
        "lineage": lineage,
        "lineage_uri": f"s3://{bucket}/{lineage_key}",
    }


def inputs_digest(data: list[DataObject], code: list[DataObject], config: DataObject) -> str:
    """One fingerprint of what a run trains on: the data, code and config objects at their versions (or ETags)."""
    parts = (data_digest(data), data_digest(code), data_digest([config]))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def already_trained(packages: TrainedPackages, group: str, inputs: str) -> dict[str, Any] | None:
    """The package among the group's newest that was made from these inputs, with the reason to skip; else None."""
    for package in packages.recent_packages(group, TRAINED_LOOKBACK):
        metadata = package.get("CustomerMetadataProperties") or {}
        if metadata.get("shepherd:inputs_digest") != inputs:
            continue
        arn, version = package["ModelPackageArn"], package.get("ModelPackageVersion")
        status = package.get("ModelApprovalStatus", "")
        execution = metadata.get("shepherd:execution", "an earlier run")
        return {
            "already_trained": {
                "model_package_arn": arn,
                "version": version,
                "approval_status": status,
                "execution": execution,
            },
            "reason": (
                f"already trained: {arn} (version {version}, {status}) was made from the same data, code and "
                f"config by {execution}"
            ),
            "detail": FORCE_HINT,
        }
    return None


def failure_notice(execution: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelLifecycleFailed notification for the error a Catch recorded at ``state["error"]``.

    A training wait that timed out names the job and the wait; any other error is told as every notification
    tells one (shepherd.events.notifications.explain: its type and first line, no stack trace)."""
    told = explain(state.get("error"))
    reason, detail = told.reason, told.detail
    job, waited = state.get("job_name"), state.get("wait_timeout_seconds")
    if told.error == "States.Timeout" and job and waited:
        reason = (
            f"training job {job} did not end within {waited} seconds (training.max_runtime_seconds, or "
            f"spot.max_wait_seconds, plus {WAIT_MARGIN_SECONDS}): it was stopped"
        )
    return document(LIFECYCLE_FAILED, reason, detail, execution=execution, model=state.get("model"), error=told.error)


def _model_files(deps: Deps, request: DatasetRun) -> tuple[DataObject, ModelConfig, dict[str, DataObject]]:
    """The config's object, the config (with the stack's default instance type) and the code files by name.

    Each at the version listed now: the run trains on exactly these, whatever is uploaded meanwhile."""
    model, bucket = request.model, request.bucket
    config_key, code_prefix = f"models/{model}/shepherd.yaml", f"models/{model}/code/"
    snapshot = {o.key: o for o in deps.objects.latest_objects(bucket, f"models/{model}/")}
    if config_key not in snapshot:
        raise InvalidInput(f"s3://{bucket}/{config_key} does not exist: upload the model's config before its data")
    config_object = snapshot[config_key]
    text = deps.objects.read_bytes(bucket, config_key, config_object.version_id).decode("utf-8", errors="replace")
    try:
        config = load_config(text, f"s3://{bucket}/{config_key}", model=model)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    default = deps.settings.default_instance_type
    if "instance_type" not in config.training.model_fields_set and default:
        config.training.instance_type = default
    code = {k.removeprefix(code_prefix): o for k, o in snapshot.items() if k.startswith(code_prefix)}
    for script in {config.entry_point, config.inference_entry_point}:
        if script not in code:
            raise InvalidInput(f"s3://{bucket}/{code_prefix}{script} does not exist (named by {config_key})")
    check_isolated_source(config, code)
    return config_object, config, code
