"""Ends a batch run: writes its summary, and moves the input to processed/ or, with a reason, to failed/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import batch_run
from shepherd.aws import s3
from shepherd.aws.powertools import powertools

logger, tracer, metrics = powertools()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = batch_run.finish(s3, batch_run.FinishRequest.model_validate(event), datetime.now(UTC))
    logger.info("batch finished", extra={k: summary[k] for k in ("status", "moved_to_uri", "reason")})
    return summary
