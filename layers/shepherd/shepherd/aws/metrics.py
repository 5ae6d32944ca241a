"""CloudWatch metrics, as the judge reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped


def metric_data(queries: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with mapped("reading endpoint metrics"):
        pages = (
            client("cloudwatch")
            .get_paginator("get_metric_data")
            .paginate(MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending")
        )
        for page in pages:
            results.extend(page["MetricDataResults"])
    return results
