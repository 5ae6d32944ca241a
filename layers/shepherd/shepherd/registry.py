"""Model Registry requests: a ModelPackage with its inference container, metrics and lineage.

The container serves the repacked archive with the code under code/: isolated containers cannot fetch it.
CustomerMetadataProperties takes at most 50 entries of at most 256 characters, so the package carries
digests and pointers; the full lineage is a JSON document in the data bucket. docs/PIPELINES.md, "Registration".
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from shepherd.config import ModelConfig
from shepherd.model_archive import SUBMIT_DIRECTORY, RepackedModel, hosting_archive_uri
from shepherd.monitor import baseline as monitor_baseline
from shepherd.monitor.layout import baseline_prefix, schedule_name

METRIC_PREFIX = "metric:"
CONTENT_TYPES = ["text/csv", "application/json", "application/x-npy"]
MAX_VALUE = 256


# CustomerMetadataProperties keys and values allow letters, digits, space separators and _.:/=+-@ only
# (\p{L}\p{Z}\p{N}); anything else, tabs and newlines included, becomes '+'.
MAX_KEY = 128
MAX_ENTRIES = 50


def _clip(value: str, limit: int = MAX_VALUE) -> str:
    cleaned = "".join(c if c.isalnum() or c in " _.:/=+-@" else "+" for c in value)
    return cleaned[:limit] or "none"  # a value needs at least one character


def _description(text: str) -> str:
    """ModelPackageDescription allows letters, marks, separators, symbols, numbers and punctuation (commas too);
    a control character (newline, tab) becomes a space. Pattern: botocore's sagemaker EntityDescription."""
    return "".join(c if unicodedata.category(c)[0] in "LMZSNP" else " " for c in text)[:1024]


def package_request(
    config: ModelConfig,
    *,
    group: str,
    image: str,
    model_data_url: str,
    region: str,
    metrics: dict[str, float],
    lineage: dict[str, str],
    lineage_uri: str,
    description: str,
    baselines: dict[str, Any] | None = None,
    comparison: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateModelPackage request; approval follows the config (manual unless it says automatic);
    ``baselines``: its DriftCheckBaselines and ModelMetrics (shepherd.monitor.baseline.package_references);
    ``comparison``: the champion comparison's metadata (shepherd.comparison.package_metadata)."""
    gated = {gate.metric for gate in config.evaluation.gates}
    # The gate metrics first: a champion comparison needs them; then the others, then the lineage.
    ordered = sorted(metrics.items(), key=lambda item: (item[0] not in gated, item[0]))
    lineage_entries = {f"shepherd:{_clip(key, 64)}": _clip(value) for key, value in sorted(lineage.items())[:15]}
    lineage_entries["shepherd:lineage"] = _clip(lineage_uri)
    lineage_entries |= {_clip(key, MAX_KEY): _clip(value) for key, value in (comparison or {}).items()}
    room = MAX_ENTRIES - len(lineage_entries)
    metadata = {_clip(f"{METRIC_PREFIX}{name}", MAX_KEY): repr(float(value)) for name, value in ordered[:room]}
    metadata |= lineage_entries
    instance_types = [config.endpoint.realtime.instance_type] if config.endpoint.realtime else ["ml.m5.large"]
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": _description(description),
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image,
                    "ModelDataUrl": model_data_url,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": config.inference_entry_point or config.entry_point,
                        "SAGEMAKER_SUBMIT_DIRECTORY": SUBMIT_DIRECTORY,
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                        "SAGEMAKER_REGION": region,
                    },
                }
            ],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
            "SupportedRealtimeInferenceInstanceTypes": instance_types,
            "SupportedTransformInstanceTypes": [config.batch.instance_type],
        },
        "ModelApprovalStatus": "Approved" if config.registry.approval == "automatic" else "PendingManualApproval",
        "CustomerMetadataProperties": metadata,
        "MetadataProperties": {"GeneratedBy": _clip(lineage.get("training_job_arn", "shepherd"))[:1024]},
        **(baselines or {}),
    }


def metrics_from_package(description: dict[str, Any]) -> dict[str, float]:
    """The gate metrics a package was registered with (the champion's side of a comparison)."""
    found: dict[str, float] = {}
    for key, value in (description.get("CustomerMetadataProperties") or {}).items():
        if key.startswith(METRIC_PREFIX):
            try:
                found[key.removeprefix(METRIC_PREFIX)] = float(value)
            except ValueError:
                continue
    return found


def lineage_document(**fields: Any) -> str:
    return json.dumps(fields, indent=2, sort_keys=True, default=str)


# ---------------------------------------------------------------- the RegisterModel step

logger = logging.getLogger(__name__)
# A retried invocation of one run returns the package it registered instead of registering another,
# for as long as Step Functions may redrive an execution (14 days).
REMEMBER_SECONDS = 14 * 86400


class Memory(Protocol):
    """Results remembered per step and run (shepherd.aws.idempotency)."""

    def recall(self, key: str) -> dict[str, Any] | None: ...
    def remember(self, key: str, result: dict[str, Any], *, expires_after_seconds: int) -> None: ...
    def client_token(self, key: str) -> str: ...


class Archives(Protocol):
    def repack_in_s3(self, model_uri: str, source_uri: str, target_uri: str, *, program: str) -> RepackedModel: ...


class Registry(Protocol):
    def ensure_package_group(self, group: str, description: str, tags: dict[str, str]) -> None: ...
    def create_model_package(self, request: dict[str, Any]) -> str: ...


class BaselineObjects(Protocol):
    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...
    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None: ...


class Schedules(Protocol):
    """The per-model monitor schedules (shepherd.aws.monitoring.MonitorSchedules)."""

    def upsert(self, name: str, expression: str, target_input: dict[str, Any]) -> None: ...
    def delete(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Monitoring:
    """What registration does for the model's monitor: the baseline files in ``bucket``, the schedule."""

    objects: BaselineObjects
    newest_version: Callable[[str], int]  # of a package group, any status; 0 for none
    schedules: Schedules
    bucket: str
    stage: str


@dataclass(frozen=True)
class Deps:
    memory: Memory
    archives: Archives
    registry: Registry
    region: str
    monitoring: Monitoring | None = None


class TrainedJob(BaseModel):
    job_name: str
    job_arn: str | None = None
    model_data_url: str
    metrics: dict[str, float]


class RegisterRequest(BaseModel):
    model: str
    run: str
    group: str
    config: dict[str, Any]
    job: TrainedJob
    image: str
    source_uri: str
    lineage: dict[str, str]
    lineage_uri: str
    evaluation_summary: str = ""
    comparison: dict[str, str] | None = None  # the champion comparison's package metadata, when one was made


def register(deps: Deps, request: RegisterRequest) -> dict[str, Any]:
    """Repack the trained model with its inference code and register it: once per run, however retried."""
    key = f"register_model#{request.run}"
    remembered = deps.memory.recall(key)
    if remembered is not None:
        logger.info("already registered: %s", remembered["model_package_arn"])
        return remembered
    config = ModelConfig.model_validate(request.config, context={"model": request.model})
    model_data_url = hosting_archive_uri(request.source_uri)
    repacked = deps.archives.repack_in_s3(
        request.job.model_data_url,
        request.source_uri,
        model_data_url,
        program=config.inference_entry_point or config.entry_point,
    )
    logger.info("repacked with its inference code: %s", asdict(repacked) | {"model_data_url": model_data_url})
    tags = {"shepherd:model": request.model}
    deps.registry.ensure_package_group(request.group, f"Shepherd: models trained from {request.model}'s datasets", tags)
    references, note, quality_note, version = None, "not made", "not made", None
    if deps.monitoring is not None:
        references, note, quality_note, version = _baseline(deps.monitoring, request, config)
        _schedule(deps.monitoring, request.model, config)
    package = package_request(
        config,
        group=request.group,
        image=request.image,
        model_data_url=model_data_url,
        region=deps.region,
        metrics=request.job.metrics,
        lineage=request.lineage
        | {
            "training_job_arn": request.job.job_arn or request.job.job_name,
            "baseline": note,
            "quality_baseline": quality_note,
        },
        lineage_uri=request.lineage_uri,
        description=f"{request.model} trained by {request.job.job_name}. {request.evaluation_summary}",
        baselines=references,
        comparison=request.comparison,
    )
    arn = deps.registry.create_model_package(package | {"ClientToken": deps.memory.client_token(key)})
    if version is not None and not arn.endswith(f"/{version}"):
        logger.error("the baseline was written for another package version", extra={"package": arn, "version": version})
    result = {"model_package_arn": arn, "approval_status": package["ModelApprovalStatus"], "group": request.group}
    deps.memory.remember(key, result, expires_after_seconds=REMEMBER_SECONDS)
    return result


def _baseline(
    monitoring: Monitoring, request: RegisterRequest, config: ModelConfig
) -> tuple[dict[str, Any] | None, str, str, int | None]:
    """Write the baselines (data quality of the run's training data; model quality of the candidate's validation
    predictions) under the version the package will get; (the package's references to them, a note on each for
    its metadata, that version). A baseline that fails is noted, never raised."""
    version: int | None = None
    references: dict[str, Any] = {}
    notes = []
    try:
        made = monitor_baseline.from_lineage(
            monitoring.objects, request.lineage_uri, target_column=config.training.target_column
        )
        if made.statistics is None or made.constraints is None:
            logger.warning("registered without a baseline", extra={"reason": made.source})
            notes.append(f"none: {made.source}")
        else:
            version = monitoring.newest_version(request.group) + 1
            uris = _write_all(
                monitoring,
                baseline_prefix(request.model, version),
                [
                    ("statistics.json", made.statistics),
                    ("constraints.json", made.constraints),
                    (monitor_baseline.REFERENCE, made.reference or {}),
                ],
            )
            references = monitor_baseline.package_references(uris[0], uris[1])
            notes.append(f"s3://{monitoring.bucket}/{baseline_prefix(request.model, version)}")
            logger.info("baseline written", extra={"baseline": notes[-1], "from": made.source})
    except Exception as exc:  # the registration must stand without a baseline
        logger.error("registered without a baseline: making it failed", extra={"error": str(exc)})
        notes.append(f"none: {type(exc).__name__}: {exc}")
    quality_note, version = _quality_baseline(monitoring, request, config, references, version)
    return references or None, notes[0], quality_note, version


def _quality_baseline(
    monitoring: Monitoring,
    request: RegisterRequest,
    config: ModelConfig,
    references: dict[str, Any],
    version: int | None,
) -> tuple[str, int | None]:
    """The model-quality baseline beside the data one (added to ``references``); (a note, the version)."""
    judge = config.rollout.judge.quality
    try:
        made = monitor_baseline.quality_from_output(
            monitoring.objects,
            request.job.model_data_url,
            decision_threshold=judge.decision_threshold if judge is not None else 0.5,
        )
        if made.statistics is None or made.constraints is None:
            logger.warning("registered without a model-quality baseline", extra={"reason": made.source})
            return f"none: {made.source}", version
        version = version if version is not None else monitoring.newest_version(request.group) + 1
        prefix = f"{baseline_prefix(request.model, version)}{monitor_baseline.MODEL_QUALITY}"
        uris = _write_all(
            monitoring,
            prefix,
            [
                ("statistics.json", made.statistics),
                ("constraints.json", made.constraints),
                (monitor_baseline.QUALITY_REFERENCE, made.reference or {}),
            ],
        )
    except Exception as exc:  # the registration must stand without a baseline
        logger.error("registered without a model-quality baseline: making it failed", extra={"error": str(exc)})
        return f"none: {type(exc).__name__}: {exc}", version
    for section, entry in monitor_baseline.quality_references(uris[0], uris[1]).items():
        references[section] = references.get(section, {}) | entry
    logger.info("model-quality baseline written", extra={"baseline": prefix, "from": made.source})
    return f"s3://{monitoring.bucket}/{prefix}", version


def _write_all(monitoring: Monitoring, prefix: str, documents: list[tuple[str, dict[str, Any]]]) -> list[str]:
    uris = []
    for name, document in documents:
        data = json.dumps(document, indent=2).encode()
        monitoring.objects.write_bytes(monitoring.bucket, f"{prefix}{name}", data, "application/json")
        uris.append(f"s3://{monitoring.bucket}/{prefix}{name}")
    return uris


def _schedule(monitoring: Monitoring, model: str, config: ModelConfig) -> None:
    """The model's monitor schedule, as its config says: created or updated, or deleted when monitoring is off."""
    name = schedule_name(monitoring.stage, model)
    if config.monitoring.enabled:
        monitoring.schedules.upsert(name, config.monitoring.schedule, {"model": model, "trigger": "schedule"})
    elif monitoring.schedules.delete(name):
        logger.info("monitor schedule deleted: monitoring is off", extra={"schedule": name})
