"""The local training runner: a real SageMaker training job, run with the local Python.

What it runs. SageMaker framework images in script mode (scikit-learn, and XGBoost when the
job names an entry point) are a Python interpreter plus the sagemaker-training toolkit, so the
local interpreter (``sys.executable``) stands in for the image: the runner fetches the
``sagemaker_submit_directory`` (an S3 tar.gz or prefix, or a path inside one of the job's
channels, as the SDK's ``code`` channel under network isolation gives
``/opt/ml/input/data/code/sourcedir.tar.gz``), lays out the job's ``/opt/ml`` tree, sets the toolkit's
``SM_*`` environment and ``--key value`` arguments exactly as sagemaker-training builds them
(``environment.Environment.to_env_vars`` / ``mapping.to_cmd_args``) and runs the entry point.
Bring-your-own images and built-in algorithms need their container: such a job fails with a
FailureReason that says so and lists the images that run locally.

The job's /opt/ml. Each job has its own tree under ``<work_root>/training/<job name>`` (input/,
model/, output/, code/, checkpoints/). The ``SM_*`` variables and the config files point at
that real directory, so scripts that follow the toolkit's conventions run anywhere. Scripts that
hard-code ``/opt/ml/...`` (as many published examples do) need the path itself: while a job's
script runs, ``/opt/ml`` is a symbolic link to that job's tree. There is one ``/opt/ml`` per
machine, so one job at a time on the machine holds it: a thread lock among the jobs of this
process, then an exclusive ``flock`` on ``/opt/.ml.lock`` among processes (two local clouds,
parallel test workers), both held for the job's run. A job that waits for either shows
SecondaryStatus ``Pending`` (SageMaker's "waiting for compute capacity"). Training jobs on one
machine therefore run one at a time, which a laptop would do anyway. The kernel drops a flock
when its holder dies, so a crashed local cloud never leaves /opt/ml taken, and the link it left
is stale and replaced. If ``/opt/ml`` is a real directory, the job runs without the link or
the locks; if the link cannot be made (no permission), without the link. Its log says so:
toolkit-style scripts work, hard-coded paths do not.

Lifecycle, as DescribeTrainingJob shows it: InProgress/Starting -> (Pending) -> Downloading ->
Training -> Uploading -> Completed; Failed with SageMaker's "AlgorithmError: ..." (the script's
``/opt/ml/output/failure`` if it wrote one, else its traceback) or "ClientError: ..." (a job the
local cloud cannot run, data that cannot be downloaded); Stopping -> Stopped on StopTrainingJob
and, with SecondaryStatus MaxRuntimeExceeded / MaxWaitTimeExceeded, on StoppingCondition. A stop
sends SIGTERM to the script's process group, then SIGKILL after a short grace (SageMaker's is
120 s; locally a stop should be quick), and uploads what the model directory holds, as SageMaker
does. Managed spot training syncs CheckpointConfig with S3 before and after each attempt; the
opt-in fault ``shepherd:fault:spot-interruptions`` (a count) interrupts the script once it has
written a checkpoint (or after ``shepherd:fault:spot-interruption-after-seconds``), then the job
goes Interrupted -> Starting -> Downloading -> Training again and the script resumes from its
checkpoints, as on AWS.

Times are wall-clock seconds; the local cloud's virtual clock (``--time-scale``) does not apply
to training jobs, whose scripts run in real time.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shepherd import objects

from localcloud.iam import container_environment
from localcloud.sagemaker.archive import UnsafeArchiveError, extract_tar_safely, make_tar_gz
from localcloud.sagemaker.jobs import TERMINAL, Job, RunnerContext, utcnow

log = logging.getLogger("shepherd.local.sagemaker")

CONTAINER_OPT_ML = PurePosixPath("/opt/ml")  # the path inside a SageMaker container
OPT_ML = Path("/opt/ml")  # the host path pointed at the running job's tree
OPT_ML_LOCK_POLL_SECONDS = 0.05  # how often a Pending job retries another process's flock
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
METRIC_NAMESPACE = "/aws/sagemaker/TrainingJobs"
HOST = "algo-1"
STOP_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.02
DEFAULT_MAX_RUNTIME_SECONDS = 86_400
DEFAULT_INTERRUPTION_AFTER_SECONDS = 1.0
CHECKPOINT_SETTLE_SECONDS = 0.25
FAILURE_REASON_MAX = 1024
STDERR_TAIL_LINES = 200

# Repository name -> the framework module its container sets as SAGEMAKER_TRAINING_MODULE.
FRAMEWORK_IMAGES = {
    "sagemaker-scikit-learn": "sagemaker_sklearn_container.training:main",
    "sagemaker-xgboost": "sagemaker_xgboost_container.training:main",
}
SUPPORTED_IMAGES_TEXT = (
    "683313688378.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:<version> (script mode) and "
    "683313688378.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version> (script mode, with sagemaker_program)"
)

# sagemaker_training.params.SAGEMAKER_HYPERPARAMETERS: framework settings, never user arguments.
SAGEMAKER_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)

_OPT_ML_LOCK = threading.Lock()
_VENV_LOCKS: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
_VENV_LOCKS_GUARD = threading.Lock()


class JobFailure(Exception):
    """Ends the job Failed; the message is the FailureReason, already prefixed (ClientError: / AlgorithmError:)."""


class JobStopped(Exception):
    """Ends the job Stopped with this SecondaryStatus (Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded)."""

    def __init__(self, secondary: str, message: str) -> None:
        super().__init__(message)
        self.secondary = secondary
        self.message = message


# ---------------------------------------------------------------------------- the toolkit's conventions


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """JSON-decode each value, keeping the string when it is not JSON (environment.read_hyperparameters)."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def split_hyperparameters(decoded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(sagemaker settings, additional framework parameters, user hyperparameters), as the toolkit splits them."""
    sagemaker = {k: v for k, v in decoded.items() if k in SAGEMAKER_HYPERPARAMETERS or k.startswith("sagemaker_")}
    framework = {k: v for k, v in sagemaker.items() if k not in SAGEMAKER_HYPERPARAMETERS}
    user = {k: v for k, v in decoded.items() if k not in sagemaker}
    return sagemaker, framework, user


def _arg_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``--key value`` pairs, keys sorted, one-letter keys as ``-k``, dicts as ``k=v,k2=v2`` (mapping.to_cmd_args)."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        name = _arg_text(key)
        args.append(("--" if len(name) > 1 else "-") + name if name else "")
        value = hyperparameters[key]
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_arg_text(value))
    return args


def _env_value(value: Any) -> str:
    """Strings as they are, None as empty, anything else as compact sorted JSON (mapping.to_env_vars)."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def to_env_vars(mapping: dict[str, Any]) -> dict[str, str]:
    return {f"SM_{str(key).upper()}": _env_value(value) for key, value in mapping.items() if key}


def module_name(program: str) -> str:
    return program[:-3] if program.endswith(".py") else program


# ---------------------------------------------------------------------------- what a job asks for


@dataclass(frozen=True)
class Channel:
    name: str
    data_type: str  # S3Prefix or ManifestFile
    uri: str
    config: dict[str, str]  # its entry in inputdataconfig.json


@dataclass
class TrainingPlan:
    """A CreateTrainingJob request, checked and decoded once, before anything runs."""

    job_name: str
    job_arn: str
    image: str
    framework_module: str
    program: str
    submit_directory: str
    raw_hyperparameters: dict[str, str]
    hyperparameters: dict[str, Any]
    sagemaker_settings: dict[str, Any]
    framework_params: dict[str, Any]
    channels: list[Channel]
    instance_type: str
    output_path: str
    metrics: list[tuple[str, re.Pattern[str]]]
    max_runtime: float
    max_wait: float | None
    spot: bool
    checkpoint_uri: str | None
    checkpoint_path: PurePosixPath  # relative to /opt/ml
    environment: dict[str, str] = field(default_factory=dict)


def _image_repository(image: str) -> str:
    """The repository's last path component: '…amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3' -> its name."""
    path = image.split("/", 1)[1] if "/" in image else image
    path = path.split("@", 1)[0].split(":", 1)[0]
    return path.rsplit("/", 1)[-1]


def plan_training(request: dict[str, Any]) -> TrainingPlan:
    """Check that the local cloud can run this job; raise JobFailure with a ClientError reason if not."""
    spec = request.get("AlgorithmSpecification", {})
    name = request["TrainingJobName"]
    if spec.get("AlgorithmName"):
        raise JobFailure(
            f"ClientError: the algorithm {spec['AlgorithmName']} cannot run in Shepherd's local SageMaker: built-in "
            f"and Marketplace algorithms run in their own containers, which need Docker or AWS. "
            f"Locally supported training images: {SUPPORTED_IMAGES_TEXT}."
        )
    image = spec.get("TrainingImage", "")
    framework_module = FRAMEWORK_IMAGES.get(_image_repository(image))
    if framework_module is None:
        raise JobFailure(
            f"ClientError: the training image {image or '(none)'} cannot run in Shepherd's local SageMaker: it runs "
            f"SageMaker framework images in script mode with the local Python, not arbitrary containers "
            f"(bring-your-own images and built-in algorithms need Docker or AWS). "
            f"Locally supported training images: {SUPPORTED_IMAGES_TEXT}."
        )
    raw = dict(request.get("HyperParameters") or {})
    decoded = decode_hyperparameters(raw)
    sagemaker_settings, framework_params, user = split_hyperparameters(decoded)
    program = sagemaker_settings.get("sagemaker_program")
    if not program:
        what = "the XGBoost built-in algorithm mode" if "xgboost" in framework_module else "this image without a script"
        raise JobFailure(
            f"ClientError: {what} cannot run locally: Shepherd runs framework images in script mode only; set the "
            f"hyperparameter sagemaker_program (the SDK's entry_point) and sagemaker_submit_directory."
        )
    default_mode = spec.get("TrainingInputMode", "File")
    channels = [_channel(c, default_mode) for c in request.get("InputDataConfig", [])]
    submit = sagemaker_settings.get("sagemaker_submit_directory")
    if not isinstance(submit, str) or not (submit.startswith("s3://") or _channel_path(submit, channels)):
        raise JobFailure(
            f"ClientError: sagemaker_submit_directory must be the S3 URI of the source (a tar.gz or a prefix) or a "
            f"path inside one of the job's channels (/opt/ml/input/data/<channel>/..., as the SDK's code channel "
            f"under network isolation); got {submit!r}. Locally there is no code baked into an image."
        )
    if request.get("EnableNetworkIsolation") and submit.startswith("s3://"):
        # On AWS the toolkit inside the isolated container tries to download it and cannot reach S3: the job
        # fails as the algorithm's error. The SDK ships the code as the "code" channel for exactly this.
        raise JobFailure(
            f"AlgorithmError: could not download sagemaker_submit_directory {submit}: the container runs with "
            f"EnableNetworkIsolation and has no network. Pass the source as an input channel (the SageMaker "
            f"Python SDK's 'code' channel, /opt/ml/input/data/code/sourcedir.tar.gz) or turn isolation off."
        )
    resources = request.get("ResourceConfig", {})
    if int(resources.get("InstanceCount", 1)) != 1:
        raise JobFailure(
            f"ClientError: InstanceCount {resources['InstanceCount']}: the local SageMaker runs one training "
            f"host (algo-1); distributed training needs AWS."
        )
    metrics = []
    for definition in spec.get("MetricDefinitions", []):
        try:
            metrics.append((definition["Name"], re.compile(definition["Regex"])))
        except re.error as exc:
            raise JobFailure(
                f"ClientError: metric {definition['Name']}: invalid regular expression {definition['Regex']!r}: {exc}"
            ) from exc
    stopping = request.get("StoppingCondition", {})
    spot = bool(request.get("EnableManagedSpotTraining"))
    max_runtime = float(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS))
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    if spot and max_wait is None:
        raise JobFailure("ClientError: managed spot training needs StoppingCondition.MaxWaitTimeInSeconds.")
    checkpoint = request.get("CheckpointConfig") or {}
    local_path = PurePosixPath(checkpoint.get("LocalPath") or "/opt/ml/checkpoints")
    if not local_path.is_relative_to(CONTAINER_OPT_ML) or ".." in local_path.parts:
        raise JobFailure(
            f"ClientError: CheckpointConfig.LocalPath {local_path} is outside /opt/ml; the local SageMaker maps "
            f"only /opt/ml/... into the job's directory."
        )
    return TrainingPlan(
        job_name=name,
        job_arn=request.get("TrainingJobArn", ""),
        image=image,
        framework_module=framework_module,
        program=str(program),
        submit_directory=submit,
        raw_hyperparameters=raw,
        hyperparameters=user,
        sagemaker_settings=sagemaker_settings,
        framework_params=framework_params,
        channels=channels,
        instance_type=resources.get("InstanceType", "ml.m5.large"),
        output_path=request["OutputDataConfig"]["S3OutputPath"],
        metrics=metrics,
        max_runtime=max_runtime,
        max_wait=float(max_wait) if max_wait is not None else None,
        spot=spot,
        checkpoint_uri=checkpoint.get("S3Uri"),
        checkpoint_path=local_path.relative_to(CONTAINER_OPT_ML),
        environment=dict(request.get("Environment") or {}),
    )


def _channel_path(submit: str, channels: list[Channel]) -> PurePosixPath | None:
    """submit relative to /opt/ml when it names a path inside one of the job's channels, else None.

    The toolkit installs a local sagemaker_submit_directory as it finds it (files.download_and_extract:
    a directory is copied, a tar file extracted); locally only the channels' downloads exist to point at.
    """
    path = PurePosixPath(submit)
    data = CONTAINER_OPT_ML / "input" / "data"
    if not path.is_relative_to(data) or ".." in path.parts or path == data:
        return None
    if path.relative_to(data).parts[0] not in {c.name for c in channels}:
        return None
    return path.relative_to(CONTAINER_OPT_ML)


def _channel(channel: dict[str, Any], default_mode: str) -> Channel:
    name = channel["ChannelName"]
    mode = channel.get("InputMode") or default_mode
    if mode != "File":
        raise JobFailure(
            f"ClientError: channel {name}: input mode {mode} is not supported by the local SageMaker; "
            f"use File (the data is downloaded to /opt/ml/input/data/{name})."
        )
    source = channel.get("DataSource", {}).get("S3DataSource")
    if source is None:
        raise JobFailure(f"ClientError: channel {name}: only S3DataSource is supported locally.")
    data_type = source.get("S3DataType", "S3Prefix")
    if data_type not in ("S3Prefix", "ManifestFile"):
        raise JobFailure(f"ClientError: channel {name}: S3DataType {data_type} is not supported locally.")
    config = {
        "TrainingInputMode": mode,
        "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
        "RecordWrapperType": channel.get("RecordWrapperType", "None"),
    }
    if channel.get("ContentType"):
        config["ContentType"] = channel["ContentType"]
    return Channel(name, data_type, source["S3Uri"], config)


# ---------------------------------------------------------------------------- the job's /opt/ml tree


@dataclass(frozen=True)
class Layout:
    """A job's /opt/ml, at a real path."""

    base: Path

    @property
    def input(self) -> Path:
        return self.base / "input"

    @property
    def config(self) -> Path:
        return self.input / "config"

    @property
    def data(self) -> Path:
        return self.input / "data"

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def intermediate(self) -> Path:
        return self.output / "intermediate"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def code(self) -> Path:
        return self.base / "code"

    def fresh(self) -> None:
        """A new instance's empty tree (a spot restart starts from scratch, then re-downloads)."""
        shutil.rmtree(self.base, ignore_errors=True)
        for path in (self.config, self.data, self.model, self.output_data, self.intermediate, self.code):
            path.mkdir(parents=True, exist_ok=True)


def resource_config(plan: TrainingPlan) -> dict[str, Any]:
    return {
        "current_host": HOST,
        "current_instance_type": plan.instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": plan.instance_type, "hosts": [HOST]}
        ],
        "network_interface_name": "eth0",
    }


def toolkit_environment(plan: TrainingPlan, layout: Layout) -> dict[str, str]:
    """The variables sagemaker-training sets for the entry point (Environment.to_env_vars), plus the container's."""
    resources = resource_config(plan)
    input_data_config = {c.name: c.config for c in plan.channels}
    channel_dirs = {c.name: str(layout.data / c.name) for c in plan.channels}
    local_code = _channel_path(plan.submit_directory, plan.channels)
    module_dir = str(layout.base / local_code) if local_code is not None else plan.submit_directory
    log_level = plan.sagemaker_settings.get("sagemaker_container_log_level", logging.INFO)
    user_args = to_cmd_args(plan.hyperparameters)
    properties: dict[str, Any] = {
        "additional_framework_parameters": plan.framework_params,
        "channel_input_dirs": channel_dirs,
        "current_host": HOST,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [HOST],
        "current_instance_type": plan.instance_type,
        "distribution_hosts": [],
        "distribution_instance_groups": [],
        "framework_module": plan.framework_module,
        "hosts": [HOST],
        "hyperparameters": plan.hyperparameters,
        "input_config_dir": str(layout.config),
        "input_data_config": input_data_config,
        "input_dir": str(layout.input),
        "instance_groups": ["homogeneousCluster"],
        "instance_groups_dict": {g["instance_group_name"]: g for g in resources["instance_groups"]},
        "is_hetero": False,
        "is_master": True,
        "is_modelparallel_enabled": None,
        "job_name": plan.job_name,
        "log_level": log_level,
        "master_hostname": HOST,
        "model_dir": str(layout.model),
        "module_dir": module_dir,
        "module_name": module_name(plan.program),
        "network_interface_name": "eth0",
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "output_intermediate_dir": str(layout.intermediate),
        "resource_config": resources,
        "user_entry_point": plan.program,
    }
    env: dict[str, Any] = {
        "hosts": [HOST],
        "network_interface_name": "eth0",
        "hps": plan.hyperparameters,
        "user_entry_point": plan.program,
        "framework_params": plan.framework_params,
        "resource_config": resources,
        "input_data_config": input_data_config,
        "output_data_dir": str(layout.output_data),
        "channels": sorted(channel_dirs),
        "current_host": HOST,
        "current_instance_type": plan.instance_type,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [HOST],
        "instance_groups": ["homogeneousCluster"],
        "instance_groups_dict": properties["instance_groups_dict"],
        "distribution_instance_groups": [],
        "is_hetero": False,
        "module_name": module_name(plan.program),
        "log_level": log_level,
        "framework_module": plan.framework_module,
        "input_dir": str(layout.input),
        "input_config_dir": str(layout.config),
        "output_dir": str(layout.output),
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "model_dir": str(layout.model),
        "module_dir": module_dir,
        "training_env": properties,
        "user_args": user_args,
        "output_intermediate_dir": str(layout.intermediate),
    }
    env.update({f"channel_{name}": path for name, path in channel_dirs.items()})
    env.update({f"hp_{key}": value for key, value in plan.hyperparameters.items()})
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {
        # The container's own settings, then what the toolkit exports before it runs the entry point.
        "SAGEMAKER_TRAINING_MODULE": plan.framework_module,
        "SAGEMAKER_BASE_DIR": str(layout.base),
        "TRAINING_JOB_NAME": plan.job_name,
        "TRAINING_JOB_ARN": plan.job_arn,
        "CURRENT_HOST": HOST,
        "SAGEMAKER_JOB_NAME": str(plan.sagemaker_settings.get("sagemaker_job_name", "")),
        "SAGEMAKER_REGION": str(plan.sagemaker_settings.get("sagemaker_region", region)),
        "PYTHONUNBUFFERED": "TRUE",
        "PYTHONDONTWRITEBYTECODE": "TRUE",
        **to_env_vars(env),
    }


# ---------------------------------------------------------------------------- S3


def split_s3_uri(uri: str) -> tuple[str, str]:
    """shepherd.objects.split_s3_uri, failing the job as SageMaker words it."""
    try:
        return objects.split_s3_uri(uri)
    except ValueError as exc:
        raise JobFailure(f"ClientError: {uri!r} is not an S3 URI") from exc


def _relative(path: str) -> PurePosixPath | None:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part in ("/", ".", ""):
            continue
        if part == "..":
            return None
        parts.append(part)
    return PurePosixPath(*parts) if parts else None


class S3Transfer:
    """Downloads and uploads for one job, with SageMaker's ClientError wording on failure."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
        return keys

    def download_prefix(self, uri: str, dest: Path) -> int:
        """All objects under the prefix, each at its path relative to the prefix (a lone object by its name)."""
        bucket, prefix = split_s3_uri(uri)
        try:
            keys = self.keys(bucket, prefix)
        except Exception as exc:
            raise JobFailure(self._download_failed(uri, bucket, exc)) from exc
        if not keys:
            raise JobFailure(self._download_failed(uri, bucket, None))
        for key in keys:
            relative = _relative(key[len(prefix) :]) if key != prefix else PurePosixPath(key.rsplit("/", 1)[-1])
            if relative is None:
                raise JobFailure(f"ClientError: Data download failed: the S3 key {key!r} would land outside {dest}")
            self.get(bucket, key, dest / relative)
        return len(keys)

    def download_manifest(self, uri: str, dest: Path) -> int:
        """A ManifestFile: [{"prefix": "s3://b/p/"}, "relative/key", ...]; each file at its relative key."""
        bucket, key = split_s3_uri(uri)
        try:
            manifest = json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
            prefix_uri = manifest[0]["prefix"]
            entries = [str(e) for e in manifest[1:]]
        except Exception as exc:
            raise JobFailure(f"ClientError: Data download failed: cannot read the manifest {uri}: {exc}") from exc
        prefix_bucket, prefix = split_s3_uri(prefix_uri)
        for entry in entries:
            relative = _relative(entry)
            if relative is None:
                raise JobFailure(f"ClientError: Data download failed: manifest entry {entry!r} leaves the channel")
            self.get(prefix_bucket, prefix + entry, dest / relative)
        return len(entries)

    def get(self, bucket: str, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(bucket, key, str(path))
        except Exception as exc:
            raise JobFailure(f"ClientError: Data download failed: s3://{bucket}/{key}: {exc}") from exc

    def put(self, path: Path, uri: str, kms_key: str | None = None) -> None:
        """Upload; with ``kms_key`` as SSE-KMS, which the job's role must be allowed to use (through S3)."""
        bucket, key = split_s3_uri(uri)
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
        try:
            self.client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        except Exception as exc:
            raise JobFailure(f"ClientError: could not upload {path.name} to {uri}: {exc}") from exc

    @staticmethod
    def _download_failed(uri: str, bucket: str, exc: Exception | None) -> str:
        detail = f" Error message from S3: {exc}" if exc else ""
        return (
            f'ClientError: Data download failed:No S3 objects found under S3 URL "{uri}" given in input data '
            f"source. Please ensure that the bucket exists in the selected region, that objects exist under that "
            f'S3 prefix, and that the role has "s3:ListBucket" permissions on bucket "{bucket}".{detail}'
        )


# ---------------------------------------------------------------------------- requirements.txt


def _parent_site_dirs() -> list[str]:
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(p for p in paths if Path(p).is_dir()))


def requirements_python(requirements: Path, cache_root: Path, emit: Callable[[str], None]) -> str:
    """The interpreter of a venv with requirements.txt installed, built once per distinct file and reused.

    The venv is created with --system-site-packages and a .pth that adds this interpreter's
    site-packages (a venv of a venv would not see them otherwise), so the local scikit-learn,
    pandas and numpy satisfy requirements that name them and nothing big is downloaded. pip runs
    from this interpreter against the venv (``pip --python``), so the venv needs no pip of its own.
    """
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode() + sys.prefix.encode()).hexdigest()[:16]
    venv = cache_root / digest
    python = venv / "bin" / "python"
    ready = venv / ".shepherd-ready"
    with _VENV_LOCKS_GUARD:
        lock = _VENV_LOCKS[digest]
    with lock:
        if ready.exists():
            emit(f"Using the cached environment for requirements.txt ({venv})")
            return str(python)
        shutil.rmtree(venv, ignore_errors=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                check=True,
                capture_output=True,
            )
            site_dir = Path(
                subprocess.run(
                    [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            )
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
            raise JobFailure(
                f"AlgorithmError: InstallRequirementsError: could not create the environment {venv}: {stderr}"
            ) from exc
        lines = [f"import site; site.addsitedir({path!r})" for path in _parent_site_dirs()]
        (site_dir / "_shepherd_parent_site.pth").write_text("\n".join(lines) + "\n")
        command = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(requirements),
        ]
        emit(f"Installing requirements: {shlex.join(command)}")
        process = subprocess.run(command, capture_output=True, text=True, check=False)
        for line in (process.stdout + process.stderr).splitlines():
            emit(line)
        if process.returncode != 0:
            tail = "\n".join(process.stderr.strip().splitlines()[-10:])
            raise JobFailure(
                f'AlgorithmError: InstallRequirementsError:\nExitCode {process.returncode}\nErrorMessage "{tail}"\n'
                f'Command "{shlex.join(command)}"'
            )
        ready.touch()
    return str(python)


# ---------------------------------------------------------------------------- metrics


@dataclass
class MetricTracker:
    """MetricDefinitions matched over every log line; the first group of each match is the value."""

    definitions: list[tuple[str, re.Pattern[str]]]
    points: list[tuple[str, float, datetime]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, line: str) -> None:
        for name, regex in self.definitions:
            match = regex.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if regex.groups else match.group(0))
            except ValueError:
                continue
            if not math.isfinite(value):
                continue  # SageMaker drops NaN and infinities
            with self.lock:
                self.points.append((name, value, utcnow()))

    def final(self) -> list[dict[str, Any]]:
        with self.lock:
            last = {name: (value, ts) for name, value, ts in self.points}
        order = [name for name, _ in self.definitions]
        return [
            {"MetricName": name, "Value": last[name][0], "Timestamp": last[name][1]} for name in order if name in last
        ]


# ---------------------------------------------------------------------------- the script's process


@dataclass
class ScriptResult:
    returncode: int | None  # None when the runner ended it
    ended_by: str | None  # None, "stop", "max-runtime", "max-wait", "interruption"
    stderr_tail: list[str]
    command: list[str]


ISOLATION_DIR = Path(__file__).with_name("isolation")


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the script's process group, SIGKILL it after the grace period: nothing is left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: IO[bytes], on_line: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b""):
        on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    stream.close()


# ---------------------------------------------------------------------------- the runner


def opt_ml_lock_file() -> Path:
    """The file whose flock says which process's job holds /opt/ml: /opt/.ml.lock, beside the link."""
    return OPT_ML.parent / f".{OPT_ML.name}.lock"


def _open_lock_file(path: Path) -> int:
    """A descriptor to flock (not inherited by the script); raises OSError if there can be none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)  # another user's lock file still locks


@contextlib.contextmanager
def hold_opt_ml(
    lock_file: Path,
    on_wait: Callable[[], None],
    check: Callable[[], None],
    note: Callable[[str], None] = log.info,
) -> Iterator[None]:
    """Hold /opt/ml for one job: this process's lock, then an exclusive flock on lock_file.

    on_wait runs once if either is taken; check runs while waiting and may raise to give up.
    A lock file that cannot be opened leaves the thread lock alone to guard (and says so);
    /opt/ml cannot be linked then either.
    """
    waited = False

    def wait_once() -> None:
        nonlocal waited
        if not waited:
            waited = True
            on_wait()

    if not _OPT_ML_LOCK.acquire(blocking=False):
        wait_once()
        while not _OPT_ML_LOCK.acquire(timeout=0.1):
            check()
    try:
        try:
            fd: int | None = _open_lock_file(lock_file)
        except OSError as exc:
            note(f"cannot open {lock_file} ({exc}): /opt/ml is guarded in this process only")
            fd = None
        try:
            if fd is not None:
                _flock(fd, wait_once, check)
            yield
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share the descriptor
                os.close(fd)
    finally:
        _OPT_ML_LOCK.release()


def _flock(fd: int, on_wait: Callable[[], None], check: Callable[[], None]) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            on_wait()
            check()
            time.sleep(OPT_ML_LOCK_POLL_SECONDS)


def opt_ml_usable() -> bool:
    """Whether /opt/ml can be pointed at a job: absent or a link, and its parent writable."""
    if OPT_ML.exists() and not OPT_ML.is_symlink():
        return False
    parent = OPT_ML.parent
    while not parent.exists():
        parent = parent.parent
    return os.access(parent, os.W_OK)


class TrainingRun:
    """One training job, from its request to a terminal status; runs in the backend's job thread."""

    def __init__(self, job: Job, ctx: RunnerContext) -> None:
        self.job = job
        self.ctx = ctx
        root = (Path(ctx.work_root) / "training").resolve()
        self.layout = Layout(root / job.name)
        self.staging = root / f"{job.name}.staging"
        self.venvs = root / "venvs"
        self.s3 = S3Transfer(ctx.client("s3"))
        self.metrics = MetricTracker([])
        self.stream = f"{job.name}/{HOST}-{int(time.time())}"
        self.training_start: datetime | None = None
        self.runtime_used = 0.0  # seconds of attempts so far (MaxRuntimeInSeconds counts these)
        self.billable = 0.0
        self.attempt_started: float | None = None
        self.model_artifacts: str | None = None

    # -------------------------------------------------------------- reporting

    def emit(self, line: str) -> None:
        self.ctx.log(LOG_GROUP, self.stream, line)

    def note(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.emit(f"{stamp} shepherd-local-training INFO     {message}")

    def _times(self) -> dict[str, Any]:
        if self.training_start is None:
            return {}
        end = utcnow()
        training = max(1, round((end - self.training_start).total_seconds()))
        billable = max(1, round(self.billable)) if self.job.request.get("EnableManagedSpotTraining") else training
        return {"TrainingEndTime": end, "TrainingTimeInSeconds": training, "BillableTimeInSeconds": billable}

    def _fail(self, reason: str) -> None:
        reason = reason if len(reason) <= FAILURE_REASON_MAX else reason[: FAILURE_REASON_MAX - 3] + "..."
        self.note(f"Reporting training FAILURE: {reason}")
        extra: dict[str, Any] = {"FailureReason": reason, **self._times()}
        if self.metrics.definitions:
            extra["FinalMetricDataList"] = self.metrics.final()
        self.job.set_status("Failed", "Failed", f"Training job failed. Reason: {reason}"[:1024], **extra)

    # -------------------------------------------------------------- the job

    def run(self) -> None:
        try:
            plan = plan_training(self.job.request)
        except JobFailure as failure:
            self._fail(str(failure))
            return
        plan.job_arn = self.job.arn
        self.metrics = MetricTracker(plan.metrics)
        try:
            interruptions = self._planned_interruptions(plan)
            attempt = 0
            while True:
                attempt += 1
                result = self._attempt(plan, interrupt=attempt <= interruptions)
                if result.ended_by != "interruption":
                    break
                self._checkpoints_up(plan)
                self.job.set_status(
                    None,
                    "Interrupted",
                    "Training job interrupted: the spot instance was reclaimed (shepherd:fault:spot-interruptions)",
                )
                self.stream = f"{self.job.name}/{HOST}-{int(time.time())}"
                self.job.set_status(None, "Starting", "Restarting training on a new spot instance from checkpoints")
            self._checkpoints_up(plan)
            if result.returncode == 0:
                self._complete(plan)
            else:
                self._fail(self._failure_reason(result))
        except JobStopped as stopped:
            self._stop(plan, stopped)
        except JobFailure as failure:
            self._fail(str(failure))
        finally:
            self._publish_metrics()
            shutil.rmtree(self.staging, ignore_errors=True)

    def _planned_interruptions(self, plan: TrainingPlan) -> int:
        wanted = self.job.faults.get("spot-interruptions")
        if wanted is None:
            return 0
        if not plan.spot:
            self.note("Ignoring shepherd:fault:spot-interruptions: the job is not a managed spot training job")
            return 0
        try:
            return max(0, int(wanted))
        except ValueError:
            self.note(f"Ignoring shepherd:fault:spot-interruptions={wanted!r}: not a count")
            return 0

    def _check_limits(self) -> None:
        """Raise JobStopped for StopTrainingJob, MaxRuntimeInSeconds or (spot) MaxWaitTimeInSeconds."""
        if self.job.stop_requested.is_set():
            raise JobStopped("Stopped", "Training job stopped")
        stopping = self.job.request.get("StoppingCondition", {})
        # The wait (since creation) covers the runtime (since the first attempt): when a check finds
        # both exceeded, the wait ran out first.
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if self.job.request.get("EnableManagedSpotTraining") and max_wait is not None:
            waited = (utcnow() - self.job.description["CreationTime"]).total_seconds()
            if waited >= float(max_wait):
                raise JobStopped(
                    "MaxWaitTimeExceeded", f"Training job exceeded MaxWaitTimeInSeconds provided ({max_wait} s)"
                )
        max_runtime = float(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS))
        running = self.runtime_used + (time.monotonic() - self.attempt_started if self.attempt_started else 0.0)
        if running >= max_runtime:
            raise JobStopped(
                "MaxRuntimeExceeded", f"Training job runtime exceeded MaxRuntimeInSeconds provided ({max_runtime:g} s)"
            )

    def _attempt(self, plan: TrainingPlan, interrupt: bool) -> ScriptResult:
        self._check_limits()
        with self._opt_ml():
            fields = {} if self.training_start else {"TrainingStartTime": utcnow()}
            self.training_start = self.training_start or fields["TrainingStartTime"]
            self.job.set_status(None, "Downloading", "Downloading input data", **fields)
            self.attempt_started = time.monotonic()
            try:
                self.layout.fresh()
                self._write_config(plan)
                self._download(plan)
                self._check_limits()
                self.job.set_status(None, "Training", "Training image download completed. Training in progress.")
                python = self._python(plan)
                self._check_limits()
                return self._run_script(plan, python, interrupt)
            finally:
                elapsed = time.monotonic() - self.attempt_started
                self.runtime_used += elapsed
                self.billable += elapsed
                self.attempt_started = None

    @contextlib.contextmanager
    def _opt_ml(self) -> Iterator[None]:
        """Point /opt/ml at this job's tree while it runs (see the module docstring), or say why not."""
        if OPT_ML.exists() and not OPT_ML.is_symlink():
            self.note(f"{OPT_ML} is a real directory here: running without it; use the SM_* paths")
            yield
            return

        def pending() -> None:
            self.job.set_status(None, "Pending", "Waiting for /opt/ml: another local training job is running")

        with hold_opt_ml(opt_ml_lock_file(), pending, self._check_limits, self.note):
            linked = self._link_opt_ml()
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    if linked and OPT_ML.is_symlink() and Path(os.readlink(OPT_ML)) == self.layout.base:
                        OPT_ML.unlink()

    def _link_opt_ml(self) -> bool:
        """Atomically (re)point the /opt/ml link at this job's tree; False, said in the log, if it cannot be."""
        try:
            OPT_ML.parent.mkdir(parents=True, exist_ok=True)
            staged = OPT_ML.parent / f".ml-{uuid.uuid4().hex}"
            staged.symlink_to(self.layout.base, target_is_directory=True)
            os.replace(staged, OPT_ML)
        except OSError as exc:
            self.note(f"cannot point {OPT_ML} at this job ({exc}): running without it; use the SM_* paths")
            return False
        return True

    def _write_config(self, plan: TrainingPlan) -> None:
        config = self.layout.config
        (config / "hyperparameters.json").write_text(json.dumps(plan.raw_hyperparameters))
        (config / "resourceconfig.json").write_text(json.dumps(resource_config(plan)))
        (config / "inputdataconfig.json").write_text(json.dumps({c.name: c.config for c in plan.channels}))
        if plan.checkpoint_uri:
            (self.layout.base / plan.checkpoint_path).mkdir(parents=True, exist_ok=True)

    def _download(self, plan: TrainingPlan) -> None:
        for channel in plan.channels:
            dest = self.layout.data / channel.name
            if channel.data_type == "ManifestFile":
                count = self.s3.download_manifest(channel.uri, dest)
            else:
                count = self.s3.download_prefix(channel.uri, dest)
            self.note(f"Channel {channel.name}: downloaded {count} object(s) from {channel.uri}")
        self._download_code(plan)
        if plan.checkpoint_uri:
            bucket, prefix = split_s3_uri(plan.checkpoint_uri)
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            keys = self.s3.keys(bucket, prefix)
            for key in keys:
                relative = _relative(key[len(prefix) :])
                if relative is not None:
                    self.s3.get(bucket, key, self.layout.base / plan.checkpoint_path / relative)
            if keys:
                self.note(f"Restored {len(keys)} checkpoint file(s) from {plan.checkpoint_uri}")

    def _download_code(self, plan: TrainingPlan) -> None:
        uri = plan.submit_directory
        local = _channel_path(uri, plan.channels)
        if local is not None:
            self._install_local_code(self.layout.base / local, uri)
        elif uri.endswith((".tar.gz", ".tgz", ".tar")):
            bucket, key = split_s3_uri(uri)
            archive = self.staging / "sourcedir.tar.gz"
            self.s3.get(bucket, key, archive)
            try:
                extract_tar_safely(archive, self.layout.code)
            except (UnsafeArchiveError, OSError, EOFError) as exc:
                raise JobFailure(f"ClientError: cannot extract sagemaker_submit_directory {uri}: {exc}") from exc
        else:
            self.s3.download_prefix(uri, self.layout.code)
        if not (self.layout.code / plan.program).exists():
            raise JobFailure(
                f"AlgorithmError: the entry point {plan.program} is not in sagemaker_submit_directory {uri}"
            )

    def _install_local_code(self, path: Path, uri: str) -> None:
        """What files.download_and_extract does with a local path: copy a directory, extract a tar, copy a file."""
        if path.is_dir():
            shutil.copytree(path, self.layout.code, dirs_exist_ok=True)
        elif path.is_file() and tarfile.is_tarfile(path):
            with path.open("rb") as archive:
                if archive.read(2) != b"\x1f\x8b":  # the toolkit opens it with mode "r:gz"
                    raise JobFailure(f"AlgorithmError: sagemaker_submit_directory {uri} is a tar file but not gzip'd")
            try:
                extract_tar_safely(path, self.layout.code)
            except (UnsafeArchiveError, OSError, EOFError, tarfile.TarError) as exc:
                raise JobFailure(f"AlgorithmError: cannot extract sagemaker_submit_directory {uri}: {exc}") from exc
        elif path.is_file():
            shutil.copy2(path, self.layout.code)
        else:
            raise JobFailure(f"AlgorithmError: sagemaker_submit_directory {uri} does not exist in the container")

    def _python(self, plan: TrainingPlan) -> str:
        requirements = self.layout.code / "requirements.txt"
        if not requirements.is_file():
            return sys.executable
        return requirements_python(requirements, self.venvs, self.emit)

    def _command(self, plan: TrainingPlan, python: str) -> list[str]:
        args = to_cmd_args(plan.hyperparameters)
        if plan.program.endswith(".py"):
            return [python, plan.program, *args]
        (self.layout.code / plan.program).chmod(0o755)
        return ["/bin/sh", "-c", f"./{plan.program} {shlex.join(args)}"]

    def _aws_environment(self) -> dict[str, str]:
        """What the container has of AWS: the job role's session and the endpoint, or, isolated, nothing.

        On AWS a training container reaches AWS as its RoleArn; with EnableNetworkIsolation it has no credentials and
        no network ("Run Training and Inference Containers in Internet-Free Mode"), which isolation/sitecustomize.py
        enforces for the script's Python.
        """
        if self.job.request.get("EnableNetworkIsolation"):
            return {"PYTHONPATH": str(ISOLATION_DIR), "SHEPHERD_NETWORK_ISOLATION": "1"}
        credentials = getattr(self.ctx, "credentials", None)
        cloud = getattr(self.ctx, "cloud", None)
        if credentials is None or cloud is None:
            return {}
        return {**credentials.environment(), "AWS_ENDPOINT_URL": cloud.endpoint}

    def _run_script(self, plan: TrainingPlan, python: str, interrupt: bool) -> ScriptResult:
        # The local cloud's own keys (full access) and the developer's AWS configuration never reach a user's script.
        inherited = container_environment(os.environ)
        aws = self._aws_environment()
        env = {**inherited, **plan.environment, **toolkit_environment(plan, self.layout), **aws}
        code = str(self.layout.code)
        paths = (aws.get("PYTHONPATH"), code, os.environ.get("PYTHONPATH"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        command = self._command(plan, python)
        self.note(f"Invoking script with the following command:\n\n{shlex.join(command)}\n")
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

        def out_line(line: str) -> None:
            self.emit(line)
            self.metrics.observe(line)

        def err_line(line: str) -> None:
            tail.append(line)
            out_line(line)

        process = subprocess.Popen(
            command,
            cwd=code,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so stop and shutdown leave no orphans
        )
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(process.stdout, out_line), daemon=True, name=f"{self.job.name}-out"),
            threading.Thread(target=_pump, args=(process.stderr, err_line), daemon=True, name=f"{self.job.name}-err"),
        ]
        for pump in pumps:
            pump.start()
        try:
            ended_by = self._watch(plan, process, interrupt)
        finally:
            for pump in pumps:
                pump.join(timeout=5)
        return ScriptResult(None if ended_by else process.returncode, ended_by, list(tail), command)

    def _watch(self, plan: TrainingPlan, process: subprocess.Popen[bytes], interrupt: bool) -> str | None:
        """Wait for the script; end its process group on a stop, a limit or a simulated spot interruption."""
        started = time.monotonic()
        checkpoint_seen: float | None = None
        after = self.job.faults.get("spot-interruption-after-seconds")
        try:
            while True:
                try:
                    process.wait(timeout=POLL_SECONDS)
                    return None
                except subprocess.TimeoutExpired:
                    pass
                try:
                    self._check_limits()
                except JobStopped:
                    _kill_group(process, STOP_GRACE_SECONDS)
                    raise
                if not interrupt:
                    continue
                now = time.monotonic()
                if after is not None or not plan.checkpoint_uri:
                    due = now - started >= float(after or DEFAULT_INTERRUPTION_AFTER_SECONDS)
                else:
                    if checkpoint_seen is None and any(
                        p.is_file() for p in (self.layout.base / plan.checkpoint_path).rglob("*")
                    ):
                        checkpoint_seen = now
                    due = checkpoint_seen is not None and now - checkpoint_seen >= CHECKPOINT_SETTLE_SECONDS
                if due:
                    self.note("Simulated spot interruption: sending SIGTERM to the training script")
                    _kill_group(process, STOP_GRACE_SECONDS)
                    return "interruption"
        finally:
            # Whatever the script left running in its group (a stray child) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def _failure_reason(self, result: ScriptResult) -> str:
        written = self.layout.failure.read_text(errors="replace").strip() if self.layout.failure.is_file() else ""
        if written:
            return f"AlgorithmError: {written}"
        lines = [line for line in result.stderr_tail if line.strip()]
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        message = "\n".join(lines[starts[-1] :] if starts else lines[-10:])
        code = result.returncode
        head = f'AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\nErrorMessage "'
        tail = f'"\nCommand "{shlex.join(result.command)}", exit code: {code}'
        budget = FAILURE_REASON_MAX - len(head) - len(tail)
        if len(message) > budget:
            message = message[-max(budget, 0) :]
        return (head + message + tail)[:FAILURE_REASON_MAX]

    # -------------------------------------------------------------- endings

    def _checkpoints_up(self, plan: TrainingPlan) -> None:
        if not plan.checkpoint_uri:
            return
        local = self.layout.base / plan.checkpoint_path
        files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else []
        base = plan.checkpoint_uri.rstrip("/")
        for path in files:
            self.s3.put(path, f"{base}/{path.relative_to(local).as_posix()}")
        if files:
            self.note(f"Uploaded {len(files)} checkpoint file(s) to {plan.checkpoint_uri}")

    def _artifact_uri(self, plan: TrainingPlan, name: str) -> str:
        return f"{plan.output_path.rstrip('/')}/{self.job.name}/output/{name}"

    def _upload_artifacts(self, plan: TrainingPlan) -> None:
        try:
            model = make_tar_gz(self.layout.model, self.staging / "model.tar.gz")
            uri = self._artifact_uri(plan, "model.tar.gz")
            # OutputDataConfig.KmsKeyId encrypts the artifacts, and "the IAM role must have permission to call
            # kms:Encrypt" on it (SageMaker API reference, OutputDataConfig).
            kms_key = (self.job.request.get("OutputDataConfig") or {}).get("KmsKeyId")
            self.s3.put(model, uri, kms_key)
            self.model_artifacts = uri
            if self.layout.output_data.is_dir() and any(self.layout.output_data.iterdir()):
                output = make_tar_gz(self.layout.output_data, self.staging / "output.tar.gz")
                self.s3.put(output, self._artifact_uri(plan, "output.tar.gz"), kms_key)
        except UnsafeArchiveError as exc:
            raise JobFailure(f"ClientError: cannot archive the model artifacts: {exc}") from exc

    def _complete(self, plan: TrainingPlan) -> None:
        if self.job.stop_requested.is_set():
            raise JobStopped("Stopped", "Training job stopped")
        self.job.set_status(None, "Uploading", "Uploading generated training model")
        self._upload_artifacts(plan)
        self.note("Reporting training SUCCESS")
        extra: dict[str, Any] = {"ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts}, **self._times()}
        if self.metrics.definitions:
            extra["FinalMetricDataList"] = self.metrics.final()
        self.job.set_status("Completed", "Completed", "Training job completed", **extra)

    def _stop(self, plan: TrainingPlan, stopped: JobStopped) -> None:
        if self.job.status not in TERMINAL:
            self.job.set_status("Stopping", "Stopping", stopped.message)
        extra: dict[str, Any] = {}
        if self.training_start is not None and self.layout.model.is_dir():
            # SageMaker keeps what the script saved before the stop; a failed upload must not hide the stop.
            try:
                self._checkpoints_up(plan)
                if any(self.layout.model.iterdir()):
                    self._upload_artifacts(plan)
                    extra["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            except JobFailure as exc:
                self.note(f"After the stop: {exc}")
        if self.metrics.definitions:
            extra["FinalMetricDataList"] = self.metrics.final()
        self.note(stopped.message)
        self.job.set_status("Stopped", stopped.secondary, stopped.message, **extra, **self._times())

    def _publish_metrics(self) -> None:
        """The metrics as CloudWatch shows them for SageMaker: namespace /aws/sagemaker/TrainingJobs, Host dimension."""
        with self.metrics.lock:
            points = list(self.metrics.points)
        if not points:
            return
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Host", "Value": f"{self.job.name}/{HOST}"}],
                "Timestamp": ts,
                "Value": value,
            }
            for name, value, ts in points
        ]
        try:
            cloudwatch = self.ctx.client("cloudwatch")
            for start in range(0, len(data), 1000):
                cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data[start : start + 1000])
        except Exception:  # metrics are a courtesy: they must not change the job's outcome
            log.exception("training job %s: could not put its metrics", self.job.name)


def run_training_job(job: Job, ctx: RunnerContext) -> None:
    """The backend's runner for CreateTrainingJob (called in the job's own thread)."""
    TrainingRun(job, ctx).run()
