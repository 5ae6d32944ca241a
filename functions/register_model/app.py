"""Repacks a model that passed its gates with its inference code, and registers it as a ModelPackage.

The repack runs here rather than in a SageMaker job: a scikit-learn model.tar.gz is small, so streaming
it through this function takes seconds where a processing job would spend minutes starting.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import registry
from shepherd.aws import idempotency, model_archives, sagemaker
from shepherd.aws.clients import region
from shepherd.aws.powertools import powertools

logger, tracer, metrics = powertools()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = registry.Deps(memory=idempotency, archives=model_archives, registry=sagemaker, region=region())
    result = registry.register(deps, registry.RegisterRequest.model_validate(event))
    logger.info("registered", extra=result)
    return result
