"""A CreateTrainingJob request checked and decoded once (``TrainingPlan``), and how a job ends early."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from localcloud.sagemaker.training_toolkit import decode_hyperparameters, split_hyperparameters

CONTAINER_OPT_ML = PurePosixPath("/opt/ml")  # the path inside a SageMaker container
DEFAULT_MAX_RUNTIME_SECONDS = 86_400
FAILURE_REASON_MAX = 1024

# Repository name -> the framework module its container sets as SAGEMAKER_TRAINING_MODULE.
FRAMEWORK_IMAGES = {
    "sagemaker-scikit-learn": "sagemaker_sklearn_container.training:main",
    "sagemaker-xgboost": "sagemaker_xgboost_container.training:main",
}
SUPPORTED_IMAGES_TEXT = (
    "683313688378.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:<version> (script mode) and "
    "683313688378.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version> (script mode, with sagemaker_program)"
)


class JobFailure(Exception):
    """Ends the job Failed; the message is the FailureReason, already prefixed (ClientError: / AlgorithmError:)."""


class JobStopped(Exception):
    """Ends the job Stopped with this SecondaryStatus (Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded)."""

    def __init__(self, secondary: str, message: str) -> None:
        super().__init__(message)
        self.secondary = secondary
        self.message = message


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
    framework_module = _framework_module(spec)
    raw = dict(request.get("HyperParameters") or {})
    sagemaker_settings, framework_params, user = split_hyperparameters(decode_hyperparameters(raw))
    program = _program(sagemaker_settings, framework_module)
    default_mode = spec.get("TrainingInputMode", "File")
    channels = [_channel(c, default_mode) for c in request.get("InputDataConfig", [])]
    submit = _submit_directory(sagemaker_settings, channels, isolated=bool(request.get("EnableNetworkIsolation")))
    resources = request.get("ResourceConfig", {})
    if int(resources.get("InstanceCount", 1)) != 1:
        raise JobFailure(
            f"ClientError: InstanceCount {resources['InstanceCount']}: the local SageMaker runs one training "
            f"host (algo-1); distributed training needs AWS."
        )
    metrics = _metric_definitions(spec)
    stopping = request.get("StoppingCondition", {})
    spot = bool(request.get("EnableManagedSpotTraining"))
    max_runtime = float(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS))
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    if spot and max_wait is None:
        raise JobFailure("ClientError: managed spot training needs StoppingCondition.MaxWaitTimeInSeconds.")
    checkpoint = request.get("CheckpointConfig") or {}
    return TrainingPlan(
        job_name=name,
        job_arn=request.get("TrainingJobArn", ""),
        image=spec.get("TrainingImage", ""),
        framework_module=framework_module,
        program=program,
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
        checkpoint_path=_checkpoint_path(checkpoint),
        environment=dict(request.get("Environment") or {}),
    )


def _framework_module(spec: dict[str, Any]) -> str:
    """The framework module of a script-mode image the local Python stands in for; JobFailure for any other."""
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
    return framework_module


def _program(sagemaker_settings: dict[str, Any], framework_module: str) -> str:
    program = sagemaker_settings.get("sagemaker_program")
    if not program:
        what = "the XGBoost built-in algorithm mode" if "xgboost" in framework_module else "this image without a script"
        raise JobFailure(
            f"ClientError: {what} cannot run locally: Shepherd runs framework images in script mode only; set the "
            f"hyperparameter sagemaker_program (the SDK's entry_point) and sagemaker_submit_directory."
        )
    return str(program)


def _submit_directory(sagemaker_settings: dict[str, Any], channels: list[Channel], *, isolated: bool) -> str:
    submit = sagemaker_settings.get("sagemaker_submit_directory")
    if not isinstance(submit, str) or not (submit.startswith("s3://") or channel_path(submit, channels)):
        raise JobFailure(
            f"ClientError: sagemaker_submit_directory must be the S3 URI of the source (a tar.gz or a prefix) or a "
            f"path inside one of the job's channels (/opt/ml/input/data/<channel>/..., as the SDK's code channel "
            f"under network isolation); got {submit!r}. Locally there is no code baked into an image."
        )
    if isolated and submit.startswith("s3://"):
        # On AWS the toolkit inside the isolated container tries to download it and cannot reach S3: the job
        # fails as the algorithm's error. The SDK ships the code as the "code" channel for exactly this.
        raise JobFailure(
            f"AlgorithmError: could not download sagemaker_submit_directory {submit}: the container runs with "
            f"EnableNetworkIsolation and has no network. Pass the source as an input channel (the SageMaker "
            f"Python SDK's 'code' channel, /opt/ml/input/data/code/sourcedir.tar.gz) or turn isolation off."
        )
    return submit


def _metric_definitions(spec: dict[str, Any]) -> list[tuple[str, re.Pattern[str]]]:
    metrics = []
    for definition in spec.get("MetricDefinitions", []):
        try:
            metrics.append((definition["Name"], re.compile(definition["Regex"])))
        except re.error as exc:
            raise JobFailure(
                f"ClientError: metric {definition['Name']}: invalid regular expression {definition['Regex']!r}: {exc}"
            ) from exc
    return metrics


def _checkpoint_path(checkpoint: dict[str, Any]) -> PurePosixPath:
    """CheckpointConfig.LocalPath relative to /opt/ml, which is all the local SageMaker maps."""
    local_path = PurePosixPath(checkpoint.get("LocalPath") or "/opt/ml/checkpoints")
    if not local_path.is_relative_to(CONTAINER_OPT_ML) or ".." in local_path.parts:
        raise JobFailure(
            f"ClientError: CheckpointConfig.LocalPath {local_path} is outside /opt/ml; the local SageMaker maps "
            f"only /opt/ml/... into the job's directory."
        )
    return local_path.relative_to(CONTAINER_OPT_ML)


def channel_path(submit: str, channels: list[Channel]) -> PurePosixPath | None:
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
