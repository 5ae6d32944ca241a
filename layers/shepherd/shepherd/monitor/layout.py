"""Where the monitor keeps things: names and keys shared by registration and the monitor runs."""

from __future__ import annotations

from datetime import datetime

SCHEDULE_NAME_MAX = 64  # EventBridge Scheduler's limit on a schedule's name
# The tag every report object is written with: template.yaml's ExpireMonitorReports rule expires by it.
REPORT_TAG = ("shepherd-retention", "monitor-report")


def schedule_name(stage: str, model: str) -> str:
    """The model's EventBridge Scheduler schedule, also the MonitoringSchedule dimension of its metrics."""
    return f"shepherd-{stage}-monitor-{model}"[:SCHEDULE_NAME_MAX]


def monitoring_root(model: str) -> str:
    return f"monitoring/{model}/"


def baseline_prefix(model: str, version: int | str) -> str:
    """statistics.json and constraints.json of the model package ``version``."""
    return f"{monitoring_root(model)}baseline/{version}/"


def batch_report_prefix(model: str, processed_key: str) -> str:
    """A checked Batch Transform input's statistics.json and constraint_violations.json: one folder per file."""
    return f"{monitoring_root(model)}batch/{processed_key.rsplit('/', 1)[-1]}/"


def state_key(model: str) -> str:
    return f"{monitoring_root(model)}state.json"


def report_prefix(model: str, endpoint: str, at: datetime) -> str:
    """Model Monitor's output layout: one folder per run's hour."""
    return f"{monitoring_root(model)}reports/{endpoint}/{at:%Y/%m/%d/%H}/"
