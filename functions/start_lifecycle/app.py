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
from shepherd.events.s3 import DatasetMarker, dataset_marker, lifecycle_run, newest_markers, parse_object_created

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """StartLifecycle's environment (template.yaml), read once per cold start."""

    state_machine_arn: str
    data_bucket: str  # where the schedule looks for each model's newest marked dataset


settings = Settings(state_machine_arn=setting("LIFECYCLE_STATE_MACHINE_ARN"), data_bucket=setting("DATA_BUCKET"))


def _start(bucket: str, marker: DatasetMarker, version: str) -> dict[str, Any]:
    name, payload = lifecycle_run(bucket, marker, version)
    started = start_once(client("stepfunctions"), settings.state_machine_arn, name, payload)
    logger.info("dataset ready", extra={"execution": name, "started": started, **payload})
    return {"execution_name": name, "started": started, **payload}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("detail-type") == "Scheduled Event":
        bucket = settings.data_bucket
        newest = newest_markers(s3.latest_objects(bucket, "training/"))
        runs = [_start(bucket, marker, version) for marker, version in newest]
        logger.info("scheduled retraining", extra={"datasets": len(runs), "started": sum(r["started"] for r in runs)})
        return {"runs": runs}
    created = parse_object_created(event)
    marker = dataset_marker(created.detail.object.key)
    version = created.detail.object.version_id or created.detail.object.etag or ""
    return _start(created.detail.bucket.name, marker, version)
