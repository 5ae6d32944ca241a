"""Training and transform jobs: their Create/Describe/Stop/List operations, each job run by its runner in a thread."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localcloud.iam.principals import Credentials
from localcloud.sagemaker.control_plane import ControlPlane, ResourceInUse, SageMakerError, arn, faults_of
from localcloud.sagemaker.endpoints import kms_refused
from localcloud.sagemaker.events import job_state_change
from localcloud.sagemaker.jobs import TERMINAL, Job, RunnerContext, utcnow
from localcloud.services import CloudServices

log = logging.getLogger("shepherd.local.sagemaker")

Runner = Callable[[Job, RunnerContext], None]


class RoleContext:
    """The backend lent to a runner that acts as an execution role: its clients are the role's."""

    def __init__(self, backend: ControlPlane, credentials: Credentials, services: CloudServices) -> None:
        self.backend = backend
        self.credentials = credentials
        self.services = services

    def client(self, service: str) -> Any:
        return self.services.role_client(service, self.credentials)

    def allows_s3(self, action: str, bucket: str, key: str) -> bool:
        """Whether the role may read or write the object, for work that reaches S3 without the API."""
        return self.services.authorizer.allows_s3(self.credentials.principal, action, bucket, key)

    @property
    def endpoint_url(self) -> str:
        """Where the role's session reaches AWS: the local cloud's endpoint."""
        return self.services.endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


class JobOperations(ControlPlane):
    """CreateTrainingJob, CreateTransformJob and the operations on the jobs they start."""

    def _job_changed(self, job: Job) -> None:
        detail = job_state_change(job.kind, job.snapshot(), self.tags.get(job.arn, []))
        self.emit(f"SageMaker {re.sub(r'(?<!^)(?=[A-Z])', ' ', job.kind)} State Change", job.arn, detail)

    def _start_job(self, job: Job, runner_name: str, credentials: Credentials | None) -> None:
        context: RunnerContext = self if credentials is None else RoleContext(self, credentials, self.services)

        def run() -> None:
            try:
                runner = self._runner(runner_name)
                runner(job, context)
            except Exception as exc:
                log.exception("%s %s: runner crashed", job.kind, job.name)
                job.set_status(
                    "Failed",
                    "Failed" if job.kind == "TrainingJob" else None,
                    FailureReason=f"InternalServerError: the local runner failed: {exc}",
                )
            if job.status not in TERMINAL:
                job.set_status(
                    "Failed",
                    "Failed" if job.kind == "TrainingJob" else None,
                    FailureReason="InternalServerError: the local runner ended without a final status",
                )

        thread = threading.Thread(target=run, name=f"{job.kind}-{job.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    @staticmethod
    def _runner(name: str) -> Runner:
        if name == "training":
            from localcloud.sagemaker.training_runner import run_training_job

            return run_training_job
        from localcloud.sagemaker.transform import run_transform_job

        return run_transform_job

    def create_training_job(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["TrainingJobName"]
        job_arn = arn(f"training-job/{name.lower()}")
        _refuse_volume_key(p.get("ResourceConfig") or {})
        credentials = self.assume(p["RoleArn"])
        stopping = p.get("StoppingCondition") or {}
        if p.get("EnableManagedSpotTraining"):
            max_wait, max_run = stopping.get("MaxWaitTimeInSeconds"), stopping.get("MaxRuntimeInSeconds", 86400)
            if max_wait is None:
                raise SageMakerError("MaxWaitTimeInSeconds is required for managed spot training.")
            if max_wait < max_run:
                raise SageMakerError(
                    f"Invalid MaxWaitTimeInSeconds. It must be present and be greater than or "
                    f"equal to MaxRuntimeInSeconds ({max_wait} < {max_run})."
                )
        with self.lock:
            if name in self.training_jobs:
                raise ResourceInUse(
                    f"Training job names must be unique within an AWS account and region, "
                    f"and a training job with this name already exists ({job_arn})"
                )
            now = utcnow()
            description = {
                "TrainingJobName": name,
                "TrainingJobArn": job_arn,
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "HyperParameters": p.get("HyperParameters", {}),
                "AlgorithmSpecification": p.get("AlgorithmSpecification", {}),
                "RoleArn": p["RoleArn"],
                "InputDataConfig": p.get("InputDataConfig", []),
                "OutputDataConfig": p["OutputDataConfig"],
                "ResourceConfig": p.get("ResourceConfig", {}),
                "StoppingCondition": p.get("StoppingCondition", {}),
                "CreationTime": now,
                "LastModifiedTime": now,
                "SecondaryStatusTransitions": [
                    {"Status": "Starting", "StartTime": now, "StatusMessage": "Preparing the instances for training"}
                ],
                "EnableNetworkIsolation": p.get("EnableNetworkIsolation", False),
                "EnableInterContainerTrafficEncryption": p.get("EnableInterContainerTrafficEncryption", False),
                "EnableManagedSpotTraining": p.get("EnableManagedSpotTraining", False),
            }
            for key in ("CheckpointConfig", "Environment", "VpcConfig", "RetryStrategy", "ExperimentConfig"):
                if key in p:
                    description[key] = p[key]
            job = Job("TrainingJob", name, job_arn, p, description, self._job_changed, faults=faults_of(p))
            self.training_jobs[name] = job
            self.tags[job_arn] = list(p.get("Tags", []))
        self._job_changed(job)
        self._start_job(job, "training", credentials)
        return {"TrainingJobArn": job_arn}

    def _training_job(self, name: str) -> Job:
        job = self.training_jobs.get(name)
        if job is None:
            raise SageMakerError(f"Requested resource not found: {name}")
        return job

    def describe_training_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._training_job(p["TrainingJobName"]).snapshot()

    def stop_training_job(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self._training_job(p["TrainingJobName"])
        if job.status in TERMINAL:
            raise SageMakerError(f"The training job {job.name} is not in progress (status {job.status}).")
        job.stop_requested.set()
        job.set_status("Stopping", "Stopping", "Stopping the training job")
        return {}

    def list_training_jobs(self, p: dict[str, Any]) -> dict[str, Any]:
        items = [self._summary(j, "TrainingJob", ("TrainingEndTime",)) for j in self._jobs(self.training_jobs, p)]
        return self._page(items, p, "TrainingJobSummaries")

    def create_transform_job(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["TransformJobName"]
        job_arn = arn(f"transform-job/{name.lower()}")
        _refuse_volume_key(p.get("TransformResources") or {})
        with self.lock:
            if name in self.transform_jobs:
                raise ResourceInUse(
                    f"Job name must be unique within an AWS account and region, and a job "
                    f"with this name already exists ({job_arn})"
                )
            if p["ModelName"] not in self.models:
                raise SageMakerError(f'Could not find model "{arn("model/" + p["ModelName"].lower())}".')
            mb = p.get("MaxPayloadInMB", 6)
            concurrency = p.get("MaxConcurrentTransforms", 1)
            if mb * concurrency > 100:
                raise SageMakerError(
                    f"MaxConcurrentTransforms * MaxPayloadInMB must not exceed 100 MB (got {concurrency} * {mb})."
                )
            now = utcnow()
            description = {
                "TransformJobName": name,
                "TransformJobArn": job_arn,
                "TransformJobStatus": "InProgress",
                "ModelName": p["ModelName"],
                "MaxConcurrentTransforms": concurrency,
                "MaxPayloadInMB": mb,
                "BatchStrategy": p.get("BatchStrategy", "MultiRecord"),
                "Environment": p.get("Environment", {}),
                "TransformInput": p["TransformInput"],
                "TransformOutput": p["TransformOutput"],
                "TransformResources": p["TransformResources"],
                "CreationTime": now,
                "LastModifiedTime": now,
            }
            for key in ("DataProcessing", "ModelClientConfig", "DataCaptureConfig", "ExperimentConfig"):
                if key in p:
                    description[key] = p[key]
            job = Job("TransformJob", name, job_arn, p, description, self._job_changed, faults=faults_of(p))
            self.transform_jobs[name] = job
            self.tags[job_arn] = list(p.get("Tags", []))
        self._job_changed(job)
        role = self.models[p["ModelName"]].get("ExecutionRoleArn")
        self._start_job(job, "transform", self.assume(role) if role else None)
        return {"TransformJobArn": job_arn}

    def _transform_job(self, name: str) -> Job:
        job = self.transform_jobs.get(name)
        if job is None:
            raise SageMakerError(f"Could not find requested job with name {name}")
        return job

    def describe_transform_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._transform_job(p["TransformJobName"]).snapshot()

    def stop_transform_job(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self._transform_job(p["TransformJobName"])
        if job.status not in TERMINAL:
            job.stop_requested.set()
            job.set_status("Stopping")
        return {}

    def list_transform_jobs(self, p: dict[str, Any]) -> dict[str, Any]:
        items = [self._summary(j, "TransformJob", ("TransformEndTime",)) for j in self._jobs(self.transform_jobs, p)]
        return self._page(items, p, "TransformJobSummaries")

    def _jobs(self, jobs: dict[str, Job], p: dict[str, Any]) -> list[Job]:
        with self.lock:
            selected = list(jobs.values())
        if p.get("NameContains"):
            selected = [j for j in selected if p["NameContains"] in j.name]
        if p.get("StatusEquals"):
            selected = [j for j in selected if j.status == p["StatusEquals"]]
        for key, before in (("CreationTimeAfter", False), ("CreationTimeBefore", True)):
            if key in p:
                bound = _as_datetime(p[key])
                selected = [j for j in selected if (j.description["CreationTime"] < bound) == before]
        reverse = p.get("SortOrder", "Ascending") == "Descending"
        sort_key = {"Name": lambda j: j.name, "Status": lambda j: j.status}.get(
            p.get("SortBy", "CreationTime"), lambda j: j.description["CreationTime"]
        )
        return sorted(selected, key=sort_key, reverse=reverse)

    @staticmethod
    def _summary(job: Job, kind: str, extra: tuple[str, ...]) -> dict[str, Any]:
        d = job.snapshot()
        keys = (
            f"{kind}Name",
            f"{kind}Arn",
            "CreationTime",
            "LastModifiedTime",
            f"{kind}Status",
            "FailureReason",
            *extra,
        )
        return {k: d[k] for k in keys if k in d}


def _refuse_volume_key(resources: dict[str, Any]) -> None:
    """SageMaker's refusal of a VolumeKmsKeyId on an instance type with local NVMe storage."""
    if resources.get("VolumeKmsKeyId") and (refused := kms_refused(resources.get("InstanceType"), "VolumeKmsKeyId")):
        raise SageMakerError(refused)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))
