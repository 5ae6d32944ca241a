"""One Logger, Tracer and Metrics per function, configured the same way everywhere."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer


def powertools() -> tuple[Logger, Tracer, Metrics]:
    # auto_patch off: patching botocore for X-Ray costs cold-start time on every function; the
    # handlers that call AWS mark their own subsegments.
    return Logger(), Tracer(auto_patch=False), Metrics()
