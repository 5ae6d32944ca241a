"""GetMetricStatistics and GetMetricData: exact dimension matches, periods aligned to StartTime, AWS's statistics.

A query's dimensions must equal a datum's full set, as on AWS: a query by EndpointName alone answers nothing
for data put per variant (moto summed every variant).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from localcloud.cloudwatch.metric_math import MathError, QueryEvaluator, Series
from localcloud.cloudwatch.statistics import Statistic, compute_statistic, parse_statistic
from localcloud.cloudwatch.store import align, bucket_samples, check_period, epoch, moment_of, series_key
from localcloud.moto import cloudwatch as moto_cloudwatch

_MAX_STATISTICS_DATAPOINTS = 1440  # GetMetricStatistics' limit per call
_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def get_metric_statistics(
    backend: Any,
    *,
    namespace: str,
    metric_name: str,
    start_time: datetime,
    end_time: datetime,
    period: int,
    stats: list[str],
    dimensions: list[dict[str, str]],
    unit: str | None = None,
    extended_statistics: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Datapoints (oldest first) for the exact dimension set, one per period with data."""
    start, end = epoch(start_time), epoch(end_time)
    if start >= end:
        raise moto_cloudwatch.invalid_parameter_value(
            "The parameter StartTime must be less than the parameter EndTime."
        )
    period = check_period(period, "Period")
    if not stats and not extended_statistics:
        raise moto_cloudwatch.invalid_parameter_combination("Must specify either Statistics or ExtendedStatistics")
    if stats and extended_statistics:
        raise moto_cloudwatch.invalid_parameter_combination(
            "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both."
        )
    parsed: list[Statistic] = []
    for text in [*(stats or []), *(extended_statistics or [])]:
        try:
            stat = parse_statistic(text)
        except ValueError as exc:
            raise moto_cloudwatch.invalid_parameter_value(str(exc)) from None
        if stat.extended != (text in (extended_statistics or [])):
            where = "ExtendedStatistics" if stat.extended else "Statistics"
            raise moto_cloudwatch.invalid_parameter_value(f"The statistic {text} belongs in {where}.")
        parsed.append(stat)
    anchor = align(start, period)
    wanted = math.ceil((end - anchor) / period)
    if wanted > _MAX_STATISTICS_DATAPOINTS:
        raise moto_cloudwatch.invalid_parameter_combination(
            f"You have requested up to {wanted} datapoints, which exceeds the limit of "
            f"{_MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by increasing "
            "Period, or decreasing the time range."
        )
    buckets, units = bucket_samples(
        backend, series_key(namespace, metric_name, dimensions), unit=unit, anchor=anchor, end=end, period=period
    )
    points = []
    for bucket_start in sorted(buckets):
        samples = buckets[bucket_start]
        point: dict[str, Any] = {
            "Timestamp": moment_of(bucket_start),
            "Unit": unit or next(iter(sorted(units)), "None"),
        }
        extended: dict[str, float] = {}
        for stat in parsed:
            value = compute_statistic(stat, samples)
            if value is None:
                continue
            if stat.extended:
                extended[stat.text] = value
            else:
                point[stat.kind] = value
        if extended:
            point["ExtendedStatistics"] = extended
        points.append(point)
    return points


def get_metric_data(
    backend: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime, scan_by: str | None = None
) -> list[dict[str, Any]]:
    """MetricDataResults for the queries that return data, newest first unless ScanBy says otherwise."""
    start, end = epoch(start_time), epoch(end_time)
    if start > end:
        raise moto_cloudwatch.validation_error("The parameter EndTime must be greater than StartTime.")
    if start == end:
        raise moto_cloudwatch.validation_error("The parameter StartTime must not equal parameter EndTime.")
    seen: set[str] = set()
    for query in queries:
        query_id = query.get("Id", "")
        if not _QUERY_ID.match(query_id):
            raise moto_cloudwatch.validation_error(
                f"Invalid metric data query id {query_id!r}: it must start with a lowercase letter and "
                "contain only letters, numbers and underscores."
            )
        if query_id in seen:
            raise moto_cloudwatch.validation_error(
                f"The values for parameter id in MetricDataQueries are not unique: {query_id}"
            )
        seen.add(query_id)
        if ("MetricStat" in query) == ("Expression" in query):
            raise moto_cloudwatch.validation_error(
                f"Query {query_id}: exactly one of MetricStat and Expression must be given."
            )
    evaluator = QueryEvaluator(backend, queries, start, end)
    results = []
    for query in queries:
        if query.get("ReturnData") is False:
            continue
        try:
            value = evaluator.value(query["Id"])
        except MathError as exc:
            raise moto_cloudwatch.validation_error(f"Error in expression {query['Id']!r}: {exc}") from None
        if isinstance(value, float | int):
            # A scalar result spreads over the period grid of the request's metrics.
            period = evaluator.default_period()
            anchor = align(start, period)
            grid = tuple(anchor + k * period for k in range(math.ceil((end - anchor) / period)))
            points = {t: float(value) for t in grid} if math.isfinite(value) else {}
            value = Series(points, grid, period, query.get("Label") or query["Id"])
        for series in value if isinstance(value, list) else [value]:
            stamps = sorted(series.points, reverse=(scan_by or "TimestampDescending") == "TimestampDescending")
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label") or series.label,
                    "Timestamps": [moment_of(t) for t in stamps],
                    "Values": [series.points[t] for t in stamps],
                    "StatusCode": "Complete",
                    "Messages": [],
                }
            )
    return results
