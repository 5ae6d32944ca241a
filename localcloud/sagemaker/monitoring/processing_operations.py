"""CreateProcessingJob and the operations on the jobs it starts; each job runs in a thread (processing.py)."""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker.control_plane import ResourceInUse, SageMakerError, arn, faults_of
from localcloud.sagemaker.endpoints import kms_refused
from localcloud.sagemaker.events import job_state_change
from localcloud.sagemaker.job_operations import JobOperations, Runner
from localcloud.sagemaker.jobs import TERMINAL, Job, utcnow
from localcloud.sagemaker.monitoring.availability import refuse_unsupported_image

# Members of CreateProcessingJob that DescribeProcessingJob answers as given.
_DESCRIBED = (
    "ProcessingInputs",
    "ProcessingOutputConfig",
    "ProcessingResources",
    "StoppingCondition",
    "AppSpecification",
    "Environment",
    "NetworkConfig",
    "RoleArn",
    "ExperimentConfig",
)


class ProcessingOperations(JobOperations):
    """CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs, StopProcessingJob."""

    processing_jobs: dict[str, Job]

    def _job_changed(self, job: Job) -> None:
        """A processing job's event is its Describe* response; the guide's example has no Tags, nor has the response."""
        if job.kind != "ProcessingJob":
            super()._job_changed(job)
            return
        detail = job_state_change(job.kind, job.snapshot(), [])
        detail.pop("Tags", None)
        self.emit("SageMaker Processing Job State Change", job.arn, detail)

    @staticmethod
    def _runner(name: str) -> Runner:
        if name == "processing":
            from localcloud.sagemaker.monitoring.processing import run_processing_job

            return run_processing_job
        return JobOperations._runner(name)

    def create_processing_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ProcessingJobArn": self._create_processing_job(p).arn}

    def _create_processing_job(self, p: dict[str, Any], **described: Any) -> Job:
        """Start a job; ``described`` adds what a monitoring execution's job also shows (MonitoringScheduleArn)."""
        name = p["ProcessingJobName"]
        job_arn = arn(f"processing-job/{name.lower()}")
        refuse_unsupported_image(p["AppSpecification"]["ImageUri"])
        cluster = p["ProcessingResources"]["ClusterConfig"]
        if cluster.get("VolumeKmsKeyId") and (refused := kms_refused(cluster.get("InstanceType"), "VolumeKmsKeyId")):
            raise SageMakerError(refused)
        credentials = self.assume(p["RoleArn"])
        with self.lock:
            if name in self.processing_jobs:
                raise ResourceInUse(
                    f"Job name must be unique within an AWS account and region, and a job with this name already "
                    f"exists ({job_arn})"
                )
            now = utcnow()
            description: dict[str, Any] = {k: p[k] for k in _DESCRIBED if k in p}
            description |= {
                "ProcessingJobName": name,
                "ProcessingJobArn": job_arn,
                "ProcessingJobStatus": "InProgress",
                "CreationTime": now,
                "LastModifiedTime": now,
                **described,
            }
            job = Job("ProcessingJob", name, job_arn, p, description, self._job_changed, faults=faults_of(p))
            self.processing_jobs[name] = job
            self.tags[job_arn] = list(p.get("Tags", []))
        self._job_changed(job)
        self._start_job(job, "processing", credentials)
        return job

    def _processing_job(self, name: str) -> Job:
        job = self.processing_jobs.get(name)
        if job is None:
            raise SageMakerError(f"Could not find requested job with name {name}")
        return job

    def describe_processing_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._processing_job(p["ProcessingJobName"]).snapshot()

    def stop_processing_job(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self._processing_job(p["ProcessingJobName"])
        if job.status in TERMINAL:
            raise SageMakerError(f"The processing job {job.name} is not in progress (status {job.status}).")
        job.stop_requested.set()
        job.set_status("Stopping")
        return {}

    def list_processing_jobs(self, p: dict[str, Any]) -> dict[str, Any]:
        items = [
            self._summary(j, "ProcessingJob", ("ProcessingEndTime", "ExitMessage"))
            for j in self._jobs(self.processing_jobs, p)
        ]
        return self._page(items, p, "ProcessingJobSummaries")
