"""Validates an S3 upload event at the edge and says what the object is to Shepherd."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd.events.s3 import classify_key, parse_object_created

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    created = parse_object_created(event)
    data = classify_key(created.detail.object.key)
    logger.info("upload classified", extra={"area": data.area, "model": data.model, "key": created.detail.object.key})
    return {
        "bucket": created.detail.bucket.name,
        "key": created.detail.object.key,
        "size": created.detail.object.size,
        "area": data.area,
        "model": data.model,
        "path": data.rest,
    }
