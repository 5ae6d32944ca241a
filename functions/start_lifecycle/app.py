"""Starts ModelLifecycle once per dataset marker (training/<model>/<dataset>/_READY), whatever the retries.

Two triggers: the marker's S3 "Object Created" event, and the retraining schedule, which
starts each model's newest marked dataset. Both name the execution from bucket, key and
version, so a schedule that finds no new data starts nothing (ExecutionAlreadyExists); a
marker uploaded again starts a run that PrepareTraining ends as "already trained".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws import s3
from shepherd.aws.clients import client
from shepherd.aws.powertools import powertools
from shepherd.aws.stepfunctions import start_once
from shepherd.edge import setting
from shepherd.events.names import execution_name
from shepherd.events.s3 import MARKER, DatasetMarker, MalformedEvent, dataset_marker, parse_object_created

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """StartLifecycle's environment (template.yaml), read once per cold start."""

    state_machine_arn: str
    data_bucket: str  # where the schedule looks for each model's newest marked dataset


settings = Settings(state_machine_arn=setting("LIFECYCLE_STATE_MACHINE_ARN"), data_bucket=setting("DATA_BUCKET"))


def _start(bucket: str, marker: DatasetMarker, version: str) -> dict[str, Any]:
    name = execution_name(f"{marker.model}-{marker.dataset}", bucket, marker.key, version)
    payload = {
        "model": marker.model,
        "dataset": marker.dataset,
        "bucket": bucket,
        "prefix": marker.prefix,
        "marker": marker.key,
        "marker_version": version,
    }
    started = start_once(client("stepfunctions"), settings.state_machine_arn, name, payload)
    logger.info("dataset ready", extra={"execution": name, "started": started, **payload})
    return {"execution_name": name, "started": started, **payload}


def _newest_markers(bucket: str) -> list[tuple[DatasetMarker, str]]:
    """Each model's most recently marked dataset, with the marker's version."""
    newest: dict[str, tuple[str, DatasetMarker, str]] = {}
    for found in s3.latest_objects(bucket, "training/"):
        if not found.key.endswith(f"/{MARKER}"):
            continue
        try:
            marker = dataset_marker(found.key)
        except MalformedEvent:
            continue
        stamp = found.last_modified or ""
        if marker.model not in newest or stamp > newest[marker.model][0]:
            newest[marker.model] = (stamp, marker, found.version_id or found.etag or "")
    return [(marker, version) for _, marker, version in newest.values()]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("detail-type") == "Scheduled Event":
        bucket = settings.data_bucket
        runs = [_start(bucket, marker, version) for marker, version in _newest_markers(bucket)]
        logger.info("scheduled retraining", extra={"datasets": len(runs), "started": sum(r["started"] for r in runs)})
        return {"runs": runs}
    created = parse_object_created(event)
    marker = dataset_marker(created.detail.object.key)
    version = created.detail.object.version_id or created.detail.object.etag or ""
    return _start(created.detail.bucket.name, marker, version)
