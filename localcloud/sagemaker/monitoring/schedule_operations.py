"""Monitoring schedules: their operations, their executions, and the ticker that starts them on the virtual clock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localcloud.sagemaker.control_plane import ResourceInUse, ResourceNotFound, SageMakerError, arn
from localcloud.sagemaker.job_operations import _as_datetime
from localcloud.sagemaker.jobs import utcnow
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.sagemaker.monitoring import executions
from localcloud.sagemaker.monitoring.availability import refuse_if_closed, refuse_unsupported_image
from localcloud.sagemaker.monitoring.executions import JobSpec, Window
from localcloud.sagemaker.monitoring.job_definitions import CLARIFY, JobDefinitionOperations, clarify_refused
from localcloud.sagemaker.monitoring.processing_operations import ProcessingOperations
from localcloud.services import CloudServices

log = logging.getLogger("shepherd.local.sagemaker")
NO_DATA = "Job inputs had no data"
_PRIVATE = frozenset({"job", "merge", "spec", "span", "captured", "analysis", "suffix"})  # an execution's own notes
_JOB_STATUS = {"InProgress": "InProgress", "Stopping": "Stopping", "Stopped": "Stopped", "Failed": "Failed"}


@dataclass
class Schedule:
    name: str
    arn: str
    config: dict[str, Any]
    created: datetime
    modified: datetime
    status: str = "Scheduled"
    next_run: datetime | None = None  # the next scheduled time (its execution starts at executions.start_time)
    executions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def definition_name(self) -> str | None:
        return self.config.get("MonitoringJobDefinitionName")

    @property
    def kind(self) -> str:
        return str(self.config.get("MonitoringType", executions.DATA_QUALITY))

    @property
    def expression(self) -> str:
        return str((self.config.get("ScheduleConfig") or {}).get("ScheduleExpression", "cron(0 0 ? * * *)"))


class MonitoringOperations(ProcessingOperations, JobDefinitionOperations):
    """Create/Describe/List/Update/Delete/Start/StopMonitoringSchedule and ListMonitoringExecutions."""

    def __init__(
        self,
        services: CloudServices,
        *,
        metrics: EndpointMetrics,
        scalable_variants: Callable[[str], set[str]],
    ) -> None:
        super().__init__(services, metrics=metrics, scalable_variants=scalable_variants)
        self.processing_jobs = {}
        self.job_definitions = {executions.DATA_QUALITY: {}, executions.MODEL_QUALITY: {}}
        self.schedules: dict[str, Schedule] = {}
        self._ticker_stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="monitoring-schedules", daemon=True)
        self._ticker.start()

    # ------------------------------------------------------------------ schedules

    def create_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        refuse_if_closed("CreateMonitoringSchedule")
        name = p["MonitoringScheduleName"]
        schedule_arn = arn(f"monitoring-schedule/{name.lower()}")
        config = self._checked_config(p["MonitoringScheduleConfig"])
        now = utcnow()
        with self.lock:
            if name in self.schedules:
                raise ResourceInUse(f"Monitoring schedule {schedule_arn} already exists.")
            schedule = Schedule(name, schedule_arn, config, now, now)
            schedule.next_run = self._first_run(schedule)
            self.schedules[name] = schedule
            self.tags[schedule_arn] = list(p.get("Tags", []))
        return {"MonitoringScheduleArn": schedule_arn}

    def _checked_config(self, config: dict[str, Any]) -> dict[str, Any]:
        monitoring_type = config.get("MonitoringType", executions.DATA_QUALITY)
        if monitoring_type in CLARIFY:
            raise clarify_refused(f"CreateMonitoringSchedule of MonitoringType {monitoring_type}")
        if monitoring_type not in (executions.DATA_QUALITY, executions.MODEL_QUALITY):
            raise SageMakerError(
                f"The local SageMaker runs DataQuality and ModelQuality monitoring, not {monitoring_type}."
            )
        config = {**config, "MonitoringType": monitoring_type}
        schedule_config = config.get("ScheduleConfig") or {}
        if "ScheduleExpression" in schedule_config:
            executions.check_expression(schedule_config["ScheduleExpression"])
        spec = self._spec(config)
        refuse_unsupported_image(spec.app["ImageUri"])
        if spec.endpoint not in self.endpoints:
            raise SageMakerError(f'Could not find endpoint "{arn("endpoint/" + spec.endpoint.lower())}".')
        self.assume(spec.role_arn)
        return {**config, "MonitoringType": monitoring_type}

    def _spec(self, config: dict[str, Any]) -> JobSpec:
        kind = config.get("MonitoringType", executions.DATA_QUALITY)
        if config.get("MonitoringJobDefinitionName"):
            definition = self._job_definition(kind, config["MonitoringJobDefinitionName"])
            return executions.spec_of_definition(kind, definition)
        if kind == executions.MODEL_QUALITY:
            raise SageMakerError(
                "A ModelQuality schedule names its job definition (MonitoringJobDefinitionName): "
                "MonitoringJobDefinition has no ground-truth input."
            )
        if "MonitoringJobDefinition" not in config:
            raise SageMakerError(
                "MonitoringScheduleConfig needs MonitoringJobDefinitionName or MonitoringJobDefinition."
            )
        return executions.spec_of_embedded(config["MonitoringJobDefinition"])

    def _first_run(self, schedule: Schedule) -> datetime:
        now = self.clock.now()
        if schedule.expression == executions.NOW:
            return now
        return executions.next_scheduled(schedule.expression, now)

    def _schedule(self, name: str) -> Schedule:
        schedule = self.schedules.get(name)
        if schedule is None:
            raise ResourceNotFound(f"Monitoring Schedule {arn('monitoring-schedule/' + name.lower())} does not exist.")
        return schedule

    def _definition_in_use(self, kind: str, name: str) -> str | None:
        return next((s.name for s in self.schedules.values() if (s.kind, s.definition_name) == (kind, name)), None)

    def describe_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            schedule = self._schedule(p["MonitoringScheduleName"])
            described = self._summary_of(schedule) | {"MonitoringScheduleConfig": schedule.config}
            if schedule.executions:
                described["LastMonitoringExecutionSummary"] = self._execution(schedule.executions[-1])
        return described

    def _summary_of(self, schedule: Schedule) -> dict[str, Any]:
        summary = {
            "MonitoringScheduleArn": schedule.arn,
            "MonitoringScheduleName": schedule.name,
            "MonitoringScheduleStatus": schedule.status,
            "MonitoringType": schedule.config["MonitoringType"],
            "CreationTime": schedule.created,
            "LastModifiedTime": schedule.modified,
            "EndpointName": self._spec(schedule.config).endpoint,
        }
        if schedule.definition_name:
            summary["MonitoringJobDefinitionName"] = schedule.definition_name
        return summary

    def list_monitoring_schedules(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            items = [self._summary_of(s) for s in self.schedules.values()]
        for key, field_name in (
            ("EndpointName", "EndpointName"),
            ("StatusEquals", "MonitoringScheduleStatus"),
            ("MonitoringJobDefinitionName", "MonitoringJobDefinitionName"),
            ("MonitoringTypeEquals", "MonitoringType"),
        ):
            if p.get(key):
                items = [s for s in items if s.get(field_name) == p[key]]
        if p.get("NameContains"):
            items = [s for s in items if p["NameContains"] in s["MonitoringScheduleName"]]
        sort = {"Name": "MonitoringScheduleName", "Status": "MonitoringScheduleStatus"}.get(
            p.get("SortBy", ""), "CreationTime"
        )
        items.sort(key=lambda s: s[sort], reverse=p.get("SortOrder", "Descending") == "Descending")
        return self._page(items, p, "MonitoringScheduleSummaries")

    def update_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        config = self._checked_config(p["MonitoringScheduleConfig"])
        with self.lock:
            schedule = self._schedule(p["MonitoringScheduleName"])
            schedule.config, schedule.modified = config, utcnow()
            schedule.next_run = self._first_run(schedule)
        return {"MonitoringScheduleArn": schedule.arn}

    def delete_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            schedule = self._schedule(p["MonitoringScheduleName"])
            del self.schedules[schedule.name]
        return {}

    def stop_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            schedule = self._schedule(p["MonitoringScheduleName"])
            schedule.status, schedule.modified = "Stopped", utcnow()
        return {}

    def start_monitoring_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            schedule = self._schedule(p["MonitoringScheduleName"])
            if schedule.status == "Stopped":
                schedule.status, schedule.modified = "Scheduled", utcnow()
                schedule.next_run = self._first_run(schedule)
        return {}

    # ------------------------------------------------------------------ executions

    def list_monitoring_executions(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            records = [e for s in self.schedules.values() for e in s.executions]
        items = [self._execution(e) for e in records]
        for key, field_name in (
            ("MonitoringScheduleName", "MonitoringScheduleName"),
            ("EndpointName", "EndpointName"),
            ("StatusEquals", "MonitoringExecutionStatus"),
            ("MonitoringJobDefinitionName", "MonitoringJobDefinitionName"),
            ("MonitoringTypeEquals", "MonitoringType"),
        ):
            if p.get(key):
                items = [e for e in items if e.get(field_name) == p[key]]
        for key, field_name, before in (
            ("ScheduledTimeBefore", "ScheduledTime", True),
            ("ScheduledTimeAfter", "ScheduledTime", False),
            ("CreationTimeBefore", "CreationTime", True),
            ("CreationTimeAfter", "CreationTime", False),
        ):
            if key in p:
                bound = _moment(p[key])
                items = [e for e in items if (e[field_name] < bound) == before]
        sort = {"ScheduledTime": "ScheduledTime", "Status": "MonitoringExecutionStatus"}.get(
            p.get("SortBy", ""), "CreationTime"
        )
        items.sort(key=lambda e: e[sort], reverse=p.get("SortOrder", "Descending") == "Descending")
        return self._page(items, p, "MonitoringExecutionSummaries")

    def _execution(self, record: dict[str, Any]) -> dict[str, Any]:
        """An execution's summary; its status follows its processing job's (a model-quality execution's merge job
        first: InProgress while it runs, its failure the execution's)."""
        summary = {k: v for k, v in record.items() if k not in _PRIVATE}
        job = self.processing_jobs.get(record.get("job") or "")
        merge = self.processing_jobs.get(record.get("merge") or "")
        if job is None and merge is not None and record.get("MonitoringExecutionStatus") != "Failed":
            described = merge.snapshot()
            summary["LastModifiedTime"] = described["LastModifiedTime"]
            if described["ProcessingJobStatus"] in ("Failed", "Stopped"):
                summary["MonitoringExecutionStatus"] = described["ProcessingJobStatus"]
                summary["FailureReason"] = f"Ground truth merge failed: {described.get('FailureReason', 'stopped')}"
            else:
                summary["MonitoringExecutionStatus"] = "InProgress"
        if job is not None:
            described = job.snapshot()
            status = described["ProcessingJobStatus"]
            if status == "Completed":
                violations = str(described.get("ExitMessage", "")).startswith("CompletedWithViolations")
                status = "CompletedWithViolations" if violations else "Completed"
            summary |= {
                "ProcessingJobArn": job.arn,
                "MonitoringExecutionStatus": _JOB_STATUS.get(status, status),
                "LastModifiedTime": described["LastModifiedTime"],
            }
            if "FailureReason" in described:
                summary["FailureReason"] = described["FailureReason"]
        return summary

    def _tick(self) -> None:
        while not self._ticker_stop.wait(min(0.25, max(0.02, self.clock.wall_seconds(30.0)))):
            now = self.clock.now()
            with self.lock:
                due = [
                    s
                    for s in self.schedules.values()
                    if s.status == "Scheduled"
                    and s.next_run is not None
                    and executions.start_time(s.name, s.expression, s.next_run) <= now
                ]
                starts = []
                for schedule in due:
                    scheduled = schedule.next_run
                    assert scheduled is not None
                    once = schedule.expression == executions.NOW
                    schedule.next_run = None if once else executions.next_scheduled(schedule.expression, scheduled)
                    starts.append((schedule, now if once else scheduled))
            for schedule, scheduled in starts:
                try:
                    self._start_execution(schedule, scheduled)
                except Exception:  # one schedule's failure must not stop the others
                    log.exception("monitoring schedule %s: execution could not start", schedule.name)
            self._analyze_merged()

    def _analyze_merged(self) -> None:
        """Start the analysis of each model-quality execution whose merge job has completed."""
        with self.lock:
            waiting = [
                (schedule, record)
                for schedule in self.schedules.values()
                for record in schedule.executions
                if record.get("merge")
                and not record.get("job")
                and record.get("MonitoringExecutionStatus") != "Failed"
                and self.processing_jobs[record["merge"]].status == "Completed"
            ]
        for schedule, record in waiting:
            try:
                baseline = record.pop("analysis")
                merged = executions.merge_output(record["spec"])
                prefixes = self._holding([f"{merged}/{executions.relative(p)}/" for p in record["captured"]])
                if not prefixes:
                    raise SageMakerError(f"{NO_DATA}: the merge joined no captured prediction with ground truth")
                request = executions.processing_request(
                    record["spec"], schedule.name, record["span"], prefixes, baseline, suffix=record["suffix"]
                )
                record["job"] = self._create_processing_job(request, MonitoringScheduleArn=schedule.arn).name
            except SageMakerError as exc:
                record |= {"MonitoringExecutionStatus": "Failed", "FailureReason": exc.message}
            except Exception as exc:  # the ticker keeps going
                log.exception("monitoring schedule %s: analysis could not start", schedule.name)
                record |= {"MonitoringExecutionStatus": "Failed", "FailureReason": f"InternalServerError: {exc}"}

    def _start_execution(self, schedule: Schedule, scheduled: datetime) -> None:
        spec = self._spec(schedule.config)
        span = executions.window(spec, scheduled, schedule.config.get("ScheduleConfig") or {})
        now = utcnow()
        record: dict[str, Any] = {
            "MonitoringScheduleName": schedule.name,
            "ScheduledTime": scheduled,
            "CreationTime": now,
            "LastModifiedTime": now,
            "MonitoringExecutionStatus": "Pending",
            "EndpointName": spec.endpoint,
            "MonitoringType": schedule.config["MonitoringType"],
        }
        if spec.name:
            record["MonitoringJobDefinitionName"] = spec.name
        with self.lock:
            schedule.executions.append(record)
        try:
            prefixes = self._capture_prefixes(spec, span)
            if not prefixes:
                record |= {"MonitoringExecutionStatus": "Failed", "FailureReason": NO_DATA}
                return
            baseline = self._baseline_files(spec)
            if spec.kind == executions.MODEL_QUALITY:
                truth = self._truth_prefixes(spec, span)
                if not truth:
                    where = f"{spec.ground_truth}/{span.start:%Y/%m/%d/%H}..{span.scheduled:%Y/%m/%d/%H}"
                    record |= {
                        "MonitoringExecutionStatus": "Failed",
                        "FailureReason": f"{NO_DATA}: no ground truth at {where}",
                    }
                    return
                suffix = executions.job_suffix(scheduled)
                merge = executions.merge_request(spec, span, suffix, prefixes, truth)
                merge_job = self._create_processing_job(merge, MonitoringScheduleArn=schedule.arn)
                record |= {
                    "merge": merge_job.name,
                    "spec": spec,
                    "span": span,
                    "captured": prefixes,
                    "analysis": baseline,
                    "suffix": suffix,
                }
                return
            request = executions.processing_request(spec, schedule.name, span, prefixes, baseline)
            job = self._create_processing_job(request, MonitoringScheduleArn=schedule.arn)
        except SageMakerError as exc:
            record |= {"MonitoringExecutionStatus": "Failed", "FailureReason": exc.message}
            return
        record["job"] = job.name

    def _holding(self, folders: list[str]) -> list[str]:
        """The s3:// folders that hold at least one object."""
        s3 = self.client("s3")
        found = []
        for folder in folders:
            bucket, _, prefix = folder.removeprefix("s3://").partition("/")
            if s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"):
                found.append(folder)
        return found

    def _truth_prefixes(self, spec: JobSpec, span: Window) -> list[str]:
        """The ground-truth hour folders from the window's start to the scheduled time that hold labels."""
        root = str(spec.ground_truth).rstrip("/")
        return self._holding([f"{root}/{hour:%Y/%m/%d/%H}/" for hour in executions.truth_hours(span)])

    def _capture_prefixes(self, spec: JobSpec, span: Window) -> list[str]:
        """The capture folders of the window's hours that hold data, once the endpoint's buffered capture is out."""
        endpoint = self.endpoints.get(spec.endpoint)
        if endpoint is None or endpoint.capture is None:
            return []
        endpoint.capture.flush()
        destination = endpoint.capture.config["DestinationS3Uri"].removeprefix("s3://").rstrip("/")
        bucket, _, prefix = destination.partition("/")
        root = "/".join(p for p in (prefix, spec.endpoint) if p) + "/"
        s3 = self.client("s3")
        variants = [
            c["Prefix"] for c in s3.list_objects_v2(Bucket=bucket, Prefix=root, Delimiter="/").get("CommonPrefixes", [])
        ]
        found = []
        for variant in sorted(variants):
            for hour in span.hours():
                folder = f"{variant}{hour:%Y/%m/%d/%H}/"
                if s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1).get("KeyCount"):
                    found.append(f"s3://{bucket}/{folder}")
        return found

    def _baseline_files(self, spec: JobSpec) -> dict[str, str]:
        """The baseline's statistics and constraints: named by the definition, or its baselining job's outputs."""
        files = {
            kind: spec.baseline[resource]["S3Uri"]
            for kind, resource in (("statistics", "StatisticsResource"), ("constraints", "ConstraintsResource"))
            if spec.baseline.get(resource, {}).get("S3Uri")
        }
        job_name = spec.baseline.get("BaseliningJobName")
        if job_name and len(files) < 2:
            job = self._processing_job(job_name).snapshot()
            outputs = (job.get("ProcessingOutputConfig") or {}).get("Outputs") or []
            if job["ProcessingJobStatus"] != "Completed" or not outputs:
                raise SageMakerError(f"Baselining job {job_name} has not completed; its baseline cannot be used.")
            base = outputs[0]["S3Output"]["S3Uri"].rstrip("/")
            files.setdefault("statistics", f"{base}/statistics.json")
            files.setdefault("constraints", f"{base}/constraints.json")
        return files

    def _stop_monitoring(self) -> None:
        self._ticker_stop.set()
        self._ticker.join(timeout=5)
        for job in list(self.processing_jobs.values()):
            job.stop_requested.set()


def _moment(value: Any) -> datetime:
    return _as_datetime(value)
