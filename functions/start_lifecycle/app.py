"""Starts ModelLifecycle once per dataset marker (training/<model>/<dataset>/_READY), whatever the retries."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.stepfunctions import start_once
from shepherd.events.names import execution_name
from shepherd.events.s3 import dataset_marker, parse_object_created

logger = Logger()
_stepfunctions = None


def _client() -> Any:
    global _stepfunctions  # noqa: PLW0603 - one client per warm worker
    if _stepfunctions is None:
        _stepfunctions = boto3.client("stepfunctions")
    return _stepfunctions


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    created = parse_object_created(event)
    marker = dataset_marker(created.detail.object.key)
    version = created.detail.object.version_id or created.detail.object.etag or ""
    name = execution_name(f"{marker.model}-{marker.dataset}", created.detail.bucket.name, marker.key, version)
    payload = {
        "model": marker.model,
        "dataset": marker.dataset,
        "bucket": created.detail.bucket.name,
        "prefix": marker.prefix,
        "marker": marker.key,
        "marker_version": version,
    }
    started = start_once(_client(), os.environ["LIFECYCLE_STATE_MACHINE_ARN"], name, payload)
    logger.info("dataset ready", extra={"execution": name, "started": started, **payload})
    return {"execution_name": name, "started": started, **payload}
