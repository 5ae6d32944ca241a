"""A training job's MetricDefinitions: matched over its log lines, reported on the job and put to CloudWatch."""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localcloud.sagemaker.jobs import RunnerContext, utcnow
from localcloud.sagemaker.training_toolkit import HOST

log = logging.getLogger("shepherd.local.sagemaker")

METRIC_NAMESPACE = "/aws/sagemaker/TrainingJobs"


@dataclass
class MetricTracker:
    """MetricDefinitions matched over every log line; the first group of each match is the value."""

    definitions: list[tuple[str, re.Pattern[str]]]
    points: list[tuple[str, float, datetime]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, line: str) -> None:
        for name, regex in self.definitions:
            match = regex.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if regex.groups else match.group(0))
            except ValueError:
                continue
            if not math.isfinite(value):
                continue  # SageMaker drops NaN and infinities
            with self.lock:
                self.points.append((name, value, utcnow()))

    def final(self) -> list[dict[str, Any]]:
        with self.lock:
            last = {name: (value, ts) for name, value, ts in self.points}
        order = [name for name, _ in self.definitions]
        return [
            {"MetricName": name, "Value": last[name][0], "Timestamp": last[name][1]} for name in order if name in last
        ]


def publish_metrics(metrics: MetricTracker, job_name: str, ctx: RunnerContext) -> None:
    """The metrics as CloudWatch shows them for SageMaker: namespace /aws/sagemaker/TrainingJobs, Host dimension."""
    with metrics.lock:
        points = list(metrics.points)
    if not points:
        return
    data = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "Host", "Value": f"{job_name}/{HOST}"}],
            "Timestamp": ts,
            "Value": value,
        }
        for name, value, ts in points
    ]
    try:
        cloudwatch = ctx.client("cloudwatch")
        for start in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data[start : start + 1000])
    except Exception:  # metrics are a courtesy: they must not change the job's outcome
        log.exception("training job %s: could not put its metrics", job_name)
