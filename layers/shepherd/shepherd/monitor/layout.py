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


def report_prefix(model: str, endpoint: str, at: datetime, trigger: str = "schedule") -> str:
    """Where a run's reports go: the scheduled run of an hour in that hour's folder, Model Monitor's layout;
    a run started by hand in a folder of its own inside it, so two runs in one hour never share one.

    Model Monitor starts one execution per scheduled hour
    (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-results.html) and writes it under
    <endpoint>/<schedule>/yyyy/mm/dd/hh/ (docs/LOCAL_SAGEMAKER.md); docs/MONITORING.md, "Reports"."""
    hour = f"{monitoring_root(model)}reports/{endpoint}/{at:%Y/%m/%d/%H}/"
    return hour if trigger == "schedule" else f"{hour}{trigger}-{at:%M-%S.%f}/"
