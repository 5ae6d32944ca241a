"""The training job runner: one CreateTrainingJob from its request to a terminal status, with the local Python.

How it stands in for a SageMaker framework container (the /opt/ml link, the lifecycle, stops and spot
interruptions) is described in docs/LOCAL_SAGEMAKER.md, "Internals".
"""

from __future__ import annotations

import shlex
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from localcloud.sagemaker.jobs import TERMINAL, Job, RunnerContext, utcnow
from localcloud.sagemaker.training_layout import Layout, write_config
from localcloud.sagemaker.training_metrics import MetricTracker, publish_metrics
from localcloud.sagemaker.training_opt_ml import opt_ml_pointed_at
from localcloud.sagemaker.training_plan import (
    DEFAULT_MAX_RUNTIME_SECONDS,
    FAILURE_REASON_MAX,
    JobFailure,
    JobStopped,
    TrainingPlan,
    plan_training,
)
from localcloud.sagemaker.training_script import (
    ScriptResult,
    SpotInterruption,
    aws_environment,
    failure_reason,
    run_script,
    script_command,
    script_environment,
)
from localcloud.sagemaker.training_staging import S3Transfer, download_inputs, upload_artifacts, upload_checkpoints
from localcloud.sagemaker.training_toolkit import HOST
from localcloud.sagemaker.training_venv import script_python

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def run_training_job(job: Job, ctx: RunnerContext) -> None:
    """The backend's runner for CreateTrainingJob (called in the job's own thread)."""
    TrainingRun(job, ctx).run()


class TrainingRun:
    """One training job, from its request to a terminal status; runs in the backend's job thread."""

    def __init__(self, job: Job, ctx: RunnerContext) -> None:
        self.job = job
        self.ctx = ctx
        root = (Path(ctx.work_root) / "training").resolve()
        self.layout = Layout(root / job.name)
        self.staging = root / f"{job.name}.staging"
        self.venvs = root / "venvs"
        self.s3 = S3Transfer(ctx.client("s3"))
        self.metrics = MetricTracker([])
        self.stream = f"{job.name}/{HOST}-{int(time.time())}"
        self.training_start: datetime | None = None
        self.runtime_used = 0.0  # seconds of attempts so far (MaxRuntimeInSeconds counts these)
        self.billable = 0.0
        self.attempt_started: float | None = None

    # -------------------------------------------------------------- reporting

    def emit(self, line: str) -> None:
        self.ctx.log(LOG_GROUP, self.stream, line)

    def note(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.emit(f"{stamp} shepherd-local-training INFO     {message}")

    def _script_line(self, line: str) -> None:
        self.emit(line)
        self.metrics.observe(line)

    def _times(self) -> dict[str, Any]:
        if self.training_start is None:
            return {}
        end = utcnow()
        training = max(1, round((end - self.training_start).total_seconds()))
        billable = max(1, round(self.billable)) if self.job.request.get("EnableManagedSpotTraining") else training
        return {"TrainingEndTime": end, "TrainingTimeInSeconds": training, "BillableTimeInSeconds": billable}

    def _final_metrics(self) -> dict[str, Any]:
        return {"FinalMetricDataList": self.metrics.final()} if self.metrics.definitions else {}

    # -------------------------------------------------------------- the job

    def run(self) -> None:
        try:
            plan = plan_training(self.job.request)
        except JobFailure as failure:
            self._fail(str(failure))
            return
        plan.job_arn = self.job.arn
        self.metrics = MetricTracker(plan.metrics)
        try:
            result = self._attempts(plan)
            upload_checkpoints(plan, self.layout, self.s3, self.note)
            if result.returncode == 0:
                self._complete(plan)
            else:
                self._fail(failure_reason(result, self.layout.failure))
        except JobStopped as stopped:
            self._stop(plan, stopped)
        except JobFailure as failure:
            self._fail(str(failure))
        finally:
            publish_metrics(self.metrics, self.job.name, self.ctx)
            shutil.rmtree(self.staging, ignore_errors=True)

    def _attempts(self, plan: TrainingPlan) -> ScriptResult:
        """Attempts until one is not a simulated spot interruption; each later one resumes from checkpoints."""
        interruptions = self._planned_interruptions(plan)
        attempt = 0
        while True:
            attempt += 1
            result = self._attempt(plan, interrupt=attempt <= interruptions)
            if result.ended_by != "interruption":
                return result
            upload_checkpoints(plan, self.layout, self.s3, self.note)
            self.job.set_status(
                None,
                "Interrupted",
                "Training job interrupted: the spot instance was reclaimed (shepherd:fault:spot-interruptions)",
            )
            self.stream = f"{self.job.name}/{HOST}-{int(time.time())}"
            self.job.set_status(None, "Starting", "Restarting training on a new spot instance from checkpoints")

    def _planned_interruptions(self, plan: TrainingPlan) -> int:
        wanted = self.job.faults.get("spot-interruptions")
        if wanted is None:
            return 0
        if not plan.spot:
            self.note("Ignoring shepherd:fault:spot-interruptions: the job is not a managed spot training job")
            return 0
        try:
            return max(0, int(wanted))
        except ValueError:
            self.note(f"Ignoring shepherd:fault:spot-interruptions={wanted!r}: not a count")
            return 0

    def _check_limits(self) -> None:
        """Raise JobStopped for StopTrainingJob, MaxRuntimeInSeconds or (spot) MaxWaitTimeInSeconds."""
        if self.job.stop_requested.is_set():
            raise JobStopped("Stopped", "Training job stopped")
        stopping = self.job.request.get("StoppingCondition", {})
        # The wait (since creation) covers the runtime (since the first attempt): when a check finds
        # both exceeded, the wait ran out first.
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if self.job.request.get("EnableManagedSpotTraining") and max_wait is not None:
            waited = (utcnow() - self.job.description["CreationTime"]).total_seconds()
            if waited >= float(max_wait):
                raise JobStopped(
                    "MaxWaitTimeExceeded", f"Training job exceeded MaxWaitTimeInSeconds provided ({max_wait} s)"
                )
        max_runtime = float(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS))
        running = self.runtime_used + (time.monotonic() - self.attempt_started if self.attempt_started else 0.0)
        if running >= max_runtime:
            raise JobStopped(
                "MaxRuntimeExceeded", f"Training job runtime exceeded MaxRuntimeInSeconds provided ({max_runtime:g} s)"
            )

    def _pending(self) -> None:
        self.job.set_status(None, "Pending", "Waiting for /opt/ml: another local training job is running")

    def _attempt(self, plan: TrainingPlan, interrupt: bool) -> ScriptResult:
        """One instance's run: a fresh /opt/ml, its inputs, then the script, counting its time against the limits."""
        self._check_limits()
        with opt_ml_pointed_at(self.layout.base, self._pending, self._check_limits, self.note):
            fields = {} if self.training_start else {"TrainingStartTime": utcnow()}
            self.training_start = self.training_start or fields["TrainingStartTime"]
            self.job.set_status(None, "Downloading", "Downloading input data", **fields)
            self.attempt_started = time.monotonic()
            try:
                self.layout.fresh()
                write_config(plan, self.layout)
                download_inputs(plan, self.layout, self.s3, self.staging, self.note)
                self._check_limits()
                self.job.set_status(None, "Training", "Training image download completed. Training in progress.")
                python = script_python(self.layout.code, self.venvs, self.emit)
                self._check_limits()
                return self._run_script(plan, python, interrupt)
            finally:
                elapsed = time.monotonic() - self.attempt_started
                self.runtime_used += elapsed
                self.billable += elapsed
                self.attempt_started = None

    def _run_script(self, plan: TrainingPlan, python: str, interrupt: bool) -> ScriptResult:
        env = script_environment(plan, self.layout, aws_environment(self.job.request, self.ctx))
        command = script_command(plan, self.layout.code, python)
        self.note(f"Invoking script with the following command:\n\n{shlex.join(command)}\n")
        interruption = None
        if interrupt:
            checkpoints = self.layout.base / plan.checkpoint_path if plan.checkpoint_uri else None
            interruption = SpotInterruption(self.job.faults.get("spot-interruption-after-seconds"), checkpoints)
        return run_script(
            command,
            env,
            self.layout.code,
            name=self.job.name,
            on_line=self._script_line,
            check_limits=self._check_limits,
            interruption=interruption,
            note=self.note,
        )

    # -------------------------------------------------------------- endings

    def _upload_artifacts(self, plan: TrainingPlan) -> str:
        kms_key = (self.job.request.get("OutputDataConfig") or {}).get("KmsKeyId")
        return upload_artifacts(plan, self.layout, self.s3, self.staging, kms_key)

    def _complete(self, plan: TrainingPlan) -> None:
        if self.job.stop_requested.is_set():
            raise JobStopped("Stopped", "Training job stopped")
        self.job.set_status(None, "Uploading", "Uploading generated training model")
        model_artifacts = self._upload_artifacts(plan)
        self.note("Reporting training SUCCESS")
        extra: dict[str, Any] = {"ModelArtifacts": {"S3ModelArtifacts": model_artifacts}, **self._times()}
        extra.update(self._final_metrics())
        self.job.set_status("Completed", "Completed", "Training job completed", **extra)

    def _fail(self, reason: str) -> None:
        reason = reason if len(reason) <= FAILURE_REASON_MAX else reason[: FAILURE_REASON_MAX - 3] + "..."
        self.note(f"Reporting training FAILURE: {reason}")
        extra: dict[str, Any] = {"FailureReason": reason, **self._times()}
        extra.update(self._final_metrics())
        self.job.set_status("Failed", "Failed", f"Training job failed. Reason: {reason}"[:1024], **extra)

    def _stop(self, plan: TrainingPlan, stopped: JobStopped) -> None:
        if self.job.status not in TERMINAL:
            self.job.set_status("Stopping", "Stopping", stopped.message)
        extra: dict[str, Any] = {}
        if self.training_start is not None and self.layout.model.is_dir():
            # SageMaker keeps what the script saved before the stop; a failed upload must not hide the stop.
            try:
                upload_checkpoints(plan, self.layout, self.s3, self.note)
                if any(self.layout.model.iterdir()):
                    extra["ModelArtifacts"] = {"S3ModelArtifacts": self._upload_artifacts(plan)}
            except JobFailure as exc:
                self.note(f"After the stop: {exc}")
        extra.update(self._final_metrics())
        self.note(stopped.message)
        self.job.set_status("Stopped", stopped.secondary, stopped.message, **extra, **self._times())
