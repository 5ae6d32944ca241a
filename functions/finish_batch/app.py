"""Ends a batch run: writes its summary, and moves the input to processed/ or, with a reason, to failed/."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from shepherd.aws import s3
from shepherd.aws.powertools import powertools
from shepherd.batch import (
    BatchSummary,
    batch_file,
    failed_key,
    output_key,
    processed_key,
    reason_key,
    s3_uri,
    summary_key,
)

logger, tracer, metrics = powertools()


class Failure(BaseModel):
    Error: str = "Unknown"
    Cause: str = ""


class Request(BaseModel):
    outcome: Literal["Completed", "Failed"]
    model: str
    run: str
    bucket: str
    key: str
    version_id: str | None = None
    started: str | None = None
    job_name: str | None = None
    model_name: str | None = None
    model_package_arn: str | None = None
    records: int | None = None
    error: Failure | None = None


def _reason(error: Failure | None) -> str:
    if error is None:
        return "the batch run failed"
    cause = error.Cause
    with contextlib.suppress(ValueError, AttributeError):  # a Lambda error's Cause is its JSON error document
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.Error}: {cause}".strip()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    uploaded = batch_file(request.key)
    now = datetime.now(UTC)
    completed = request.outcome == "Completed"
    target = processed_key(uploaded, request.run) if completed else failed_key(uploaded, request.run)
    reason = None if completed else _reason(request.error)
    if reason:
        s3.write_bytes(request.bucket, reason_key(uploaded, request.run), (reason + "\n").encode(), "text/plain")
    # Moving is copy-then-delete; the versioned bucket keeps the input's version either way: nothing is lost.
    s3.move(request.bucket, request.key, request.version_id, target)
    summary = BatchSummary(
        input_uri=s3_uri(request.bucket, request.key),
        input_version_id=request.version_id,
        job_name=request.job_name or "",
        model_name=request.model_name or "",
        model_package_arn=request.model_package_arn,
        records=request.records,
        output_uris=[s3_uri(request.bucket, output_key(uploaded, request.run))] if completed else [],
        moved_to_uri=s3_uri(request.bucket, target),
        status=request.outcome,
        reason=reason,
        started=datetime.fromisoformat(request.started) if request.started else now,
        finished=now,
    )
    s3.write_bytes(request.bucket, summary_key(uploaded, request.run), summary.to_json().encode(), "application/json")
    logger.info("batch finished", extra={"status": request.outcome, "moved_to": target, "reason": reason})
    return summary.model_dump(mode="json") | {"summary_uri": s3_uri(request.bucket, summary_key(uploaded, request.run))}
