"""One Logger, Tracer and Metrics per function, configured the same way everywhere."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics


class _NoTracer:
    """Stands in for Powertools' Tracer where tracing is off: constructing the real one imports the whole
    X-Ray SDK (~120-220 ms of cold start) even when it then does nothing."""

    def capture_lambda_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        return handler

    def capture_method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        return method


def _tracing_off() -> bool:
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true"):
        return True
    return os.environ.get("AWS_SAM_LOCAL", "").lower() == "true"  # sam local and Shepherd's local cloud


def _quiet_empty_metrics() -> None:
    """Most invocations add no metric: Metrics would warn "No application metrics to publish" on each one.

    Powertools documents this filter ("Suppressing warning messages on empty metrics",
    docs.powertools.aws.dev/lambda/python/latest/core/metrics/); it hides the warning only, metrics still flush.
    """
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)


def powertools() -> tuple[Logger, Any, Metrics]:
    _quiet_empty_metrics()
    if _tracing_off():
        return Logger(), _NoTracer(), Metrics()
    from aws_lambda_powertools import Tracer

    # auto_patch off: patching every botocore client for X-Ray costs cold-start time; handlers mark subsegments.
    return Logger(), Tracer(auto_patch=False), Metrics()
