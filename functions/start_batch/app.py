"""Starts BatchTransform once per file uploaded under batch/<model>/input/, whatever the retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.aws.clients import client
from shepherd.aws.powertools import powertools
from shepherd.aws.stepfunctions import start_once
from shepherd.batch import InvalidBatchKey, batch_file
from shepherd.edge import setting
from shepherd.events.names import execution_name
from shepherd.events.s3 import parse_object_created

logger, tracer, metrics = powertools()


@dataclass(frozen=True)
class Settings:
    """StartBatch's environment (template.yaml), read once per cold start."""

    state_machine_arn: str


settings = Settings(state_machine_arn=setting("BATCH_STATE_MACHINE_ARN"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    created = parse_object_created(event)
    key = created.detail.object.key
    try:
        uploaded = batch_file(key)
    except InvalidBatchKey as exc:
        # A folder placeholder or a key the rule's wildcard caught by accident: nothing to score.
        logger.warning("not a batch input", extra={"key": key, "reason": str(exc)})
        return {"started": False, "ignored": str(exc)}
    version = created.detail.object.version_id or created.detail.object.etag or ""
    name = execution_name(f"{uploaded.model}-batch", created.detail.bucket.name, key, version)
    payload = {
        "model": uploaded.model,
        "bucket": created.detail.bucket.name,
        "key": key,
        "version_id": created.detail.object.version_id,
        "size": created.detail.object.size,
    }
    started = start_once(client("stepfunctions"), settings.state_machine_arn, name, payload)
    logger.info("batch input", extra={"execution": name, "started": started, **payload})
    return {"execution_name": name, "started": started, **payload}
