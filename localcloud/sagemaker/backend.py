"""The local SageMaker control plane: resources, their Describe/List shapes, statuses and events.

Operations are methods named as boto3 names them (``create_training_job``); each takes the
request's parameters (already validated against botocore's model) and returns the
response body. Real work runs in runners (training.py, transform.py) on threads.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcloud.iam.principals import Credentials, RoleNotAssumable
from localcloud.sagemaker.capture import CaptureWriter
from localcloud.sagemaker.endpoints import (
    Endpoint,
    Fleet,
    FleetFactory,
    ModelLoadFailed,
    Variant,
    check_endpoint_config,
    describe,
    kms_refused,
)
from localcloud.sagemaker.events import (
    deployment_state_change,
    endpoint_state_change,
    job_state_change,
    model_package_state_change,
    updated_package_fields,
)
from localcloud.sagemaker.jobs import TERMINAL, Job, RunnerContext, utcnow

if TYPE_CHECKING:
    from localcloud.server import LocalCloud

log = logging.getLogger("shepherd.local.sagemaker")
ACCOUNT = "123456789012"
REGION = "us-east-1"


def _refuse_volume_key(resources: dict[str, Any]) -> None:
    """SageMaker's refusal of a VolumeKmsKeyId on an instance type with local NVMe storage."""
    if resources.get("VolumeKmsKeyId") and (refused := kms_refused(resources.get("InstanceType"), "VolumeKmsKeyId")):
        raise SageMakerError(refused)


class SageMakerError(Exception):
    code = "ValidationException"
    status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ResourceNotFound(SageMakerError):
    code = "ResourceNotFound"


class ResourceInUse(SageMakerError):
    code = "ResourceInUse"


class ResourceLimitExceeded(SageMakerError):
    code = "ResourceLimitExceeded"


def arn(resource: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}"


def epoch_millis(value: Any) -> Any:
    """Event details carry times as epoch milliseconds, as SageMaker's events do."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: epoch_millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [epoch_millis(v) for v in value]
    return value


Runner = Callable[[Job, RunnerContext], None]


class RoleContext:
    """The backend lent to a runner that acts as an execution role: its clients are the role's."""

    def __init__(self, backend: SageMakerBackend, credentials: Credentials) -> None:
        self.backend = backend
        self.credentials = credentials

    def client(self, service: str) -> Any:
        return self.backend.cloud.role_client(service, self.credentials)

    def allows_s3(self, action: str, bucket: str, key: str) -> bool:
        """Whether the role may read or write the object, for work that reaches S3 without the API."""
        return self.backend.cloud.authorizer.allows_s3(self.credentials.principal, action, bucket, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


class SageMakerBackend:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.lock = threading.RLock()
        self.training_jobs: dict[str, Job] = {}
        self.transform_jobs: dict[str, Job] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.package_groups: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}  # by ARN
        self.package_tokens: dict[str, str] = {}  # CreateModelPackage ClientToken -> the ARN it created
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.fleet_factory: FleetFactory = self._serving_fleet
        self._threads: list[threading.Thread] = []
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._event_thread = threading.Thread(target=self._put_events, name="sagemaker-events", daemon=True)
        self._event_thread.start()

    # ------------------------------------------------------------------ runner context

    def client(self, service: str) -> Any:
        return self.cloud.client(service)

    def assume(self, role_arn: str) -> Credentials:
        """SageMaker's session of an execution role; a role it cannot assume is the request's error."""
        try:
            return self.cloud.role_credentials(role_arn, "sagemaker.amazonaws.com", "SageMaker")
        except RoleNotAssumable as exc:
            raise SageMakerError(str(exc)) from exc

    def model_client(self, model: dict[str, Any], service: str) -> Any:
        """A client acting as the model's execution role (what reads its model data on AWS)."""
        role = model.get("ExecutionRoleArn")
        return self.cloud.role_client(service, self.assume(role)) if role else self.client(service)

    def log(self, group: str, stream: str, line: str) -> None:
        self.cloud.log_shipper.put(group, stream, line)

    @property
    def work_root(self) -> Path:
        return self.cloud.state_dir / "sagemaker"

    # ------------------------------------------------------------------ events

    def emit(self, detail_type: str, resource_arn: str, detail: dict[str, Any]) -> None:
        """Queue a state-change event; one thread puts them in order, off the API's and the jobs' paths."""
        entry = {
            "Source": "aws.sagemaker",
            "DetailType": detail_type,
            "Resources": [resource_arn],
            "Detail": json.dumps(epoch_millis(detail), default=str),
        }
        self._events.put(entry)

    def _put_events(self) -> None:
        client = None
        while (entry := self._events.get()) is not None:
            try:
                client = client or self.cloud.client("events")
                client.put_events(Entries=[entry])
            except Exception:  # an event that cannot be put must not fail anything else
                log.exception("could not put %s for %s", entry["DetailType"], entry["Resources"][0])

    def _job_changed(self, job: Job) -> None:
        detail = job_state_change(job.kind, job.snapshot(), self.tags.get(job.arn, []))
        self.emit(f"SageMaker {re.sub(r'(?<!^)(?=[A-Z])', ' ', job.kind)} State Change", job.arn, detail)

    # ------------------------------------------------------------------ jobs

    def _start_job(self, job: Job, runner_name: str, credentials: Credentials | None) -> None:
        context: RunnerContext = self if credentials is None else RoleContext(self, credentials)

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
            from localcloud.sagemaker.training import run_training_job

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
            job = Job("TrainingJob", name, job_arn, p, description, self._job_changed, faults=_faults(p))
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
            job = Job("TransformJob", name, job_arn, p, description, self._job_changed, faults=_faults(p))
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

    @staticmethod
    def _page(items: list[dict[str, Any]], p: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults", 100))
        page: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            page["NextToken"] = str(start + size)
        return page

    # ------------------------------------------------------------------ models

    def create_model(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["ModelName"]
        with self.lock:
            if name in self.models:
                raise SageMakerError(f'Cannot create already existing model "{arn("model/" + name.lower())}".')
            containers = p.get("Containers") or ([p["PrimaryContainer"]] if "PrimaryContainer" in p else [])
            if not containers:
                raise SageMakerError("Either PrimaryContainer or Containers must be provided.")
            if p.get("ExecutionRoleArn"):
                self.assume(p["ExecutionRoleArn"])
            model = {
                "ModelName": name,
                "ModelArn": arn(f"model/{name.lower()}"),
                "CreationTime": utcnow(),
                "ExecutionRoleArn": p.get("ExecutionRoleArn", ""),
                "EnableNetworkIsolation": p.get("EnableNetworkIsolation", False),
            }
            if "PrimaryContainer" in p:
                model["PrimaryContainer"] = self._from_package(p["PrimaryContainer"])
            if "Containers" in p:
                model["Containers"] = [self._from_package(c) for c in p["Containers"]]
            for key in ("InferenceExecutionConfig", "VpcConfig"):
                if key in p:
                    model[key] = p[key]
            self.models[name] = model
            self.tags[model["ModelArn"]] = list(p.get("Tags", []))
            first = len(self.models) == 1
        if first:  # a model will be served soon: start the worker zygote (its imports take 1-2 s) now
            self._in_background("model-worker-zygote", _prestart_model_workers)
        return {"ModelArn": model["ModelArn"]}

    def _from_package(self, container: dict[str, Any]) -> dict[str, Any]:
        """A container given as ModelPackageName runs the package's inference container, as SageMaker does."""
        if "ModelPackageName" not in container or container.get("Image"):
            return container
        package = self._package(container["ModelPackageName"])
        if package.get("ModelApprovalStatus") == "Rejected":
            raise SageMakerError(f"Model package {package['ModelPackageArn']} is Rejected and cannot be deployed.")
        spec = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
        resolved = {k: v for k, v in spec[0].items() if k in ("Image", "ModelDataUrl", "Environment")}
        resolved["Environment"] = dict(resolved.get("Environment") or {}) | dict(container.get("Environment") or {})
        return dict(container) | resolved

    def describe_model(self, p: dict[str, Any]) -> dict[str, Any]:
        model = self.models.get(p["ModelName"])
        if model is None:
            raise SageMakerError(f'Could not find model "{arn("model/" + p["ModelName"].lower())}".')
        return dict(model)

    def delete_model(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.models.pop(p["ModelName"], None) is None:
                raise SageMakerError(f'Could not find model "{arn("model/" + p["ModelName"].lower())}".')
        return {}

    def list_models(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            models = list(self.models.values())
        if p.get("NameContains"):
            models = [m for m in models if p["NameContains"] in m["ModelName"]]
        reverse = p.get("SortOrder", "Descending") == "Descending"
        sort_key = "ModelName" if p.get("SortBy") == "Name" else "CreationTime"
        models.sort(key=lambda m: m[sort_key], reverse=reverse)
        items = [{k: m[k] for k in ("ModelName", "ModelArn", "CreationTime")} for m in models]
        return self._page(items, p, "Models")

    # ------------------------------------------------------------------ model registry

    def create_model_package_group(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["ModelPackageGroupName"]
        with self.lock:
            if name in self.package_groups:
                raise SageMakerError(f"Model Package Group already exists: {arn('model-package-group/' + name)}")
            group = {
                "ModelPackageGroupName": name,
                "ModelPackageGroupArn": arn(f"model-package-group/{name.lower()}"),
                "ModelPackageGroupDescription": p.get("ModelPackageGroupDescription", ""),
                "CreationTime": utcnow(),
                "ModelPackageGroupStatus": "Completed",
                "CreatedBy": {},
            }
            self.package_groups[name] = group
        return {"ModelPackageGroupArn": group["ModelPackageGroupArn"]}

    def describe_model_package_group(self, p: dict[str, Any]) -> dict[str, Any]:
        group = self.package_groups.get(p["ModelPackageGroupName"])
        if group is None:
            raise SageMakerError(f"ModelPackageGroup {p['ModelPackageGroupName']} does not exist.")
        return dict(group)

    def list_model_package_groups(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            groups = sorted(
                self.package_groups.values(),
                key=lambda g: g["CreationTime"],
                reverse=p.get("SortOrder", "Descending") == "Descending",
            )
        if p.get("NameContains"):
            groups = [g for g in groups if p["NameContains"] in g["ModelPackageGroupName"]]
        items = [
            {
                k: g[k]
                for k in (
                    "ModelPackageGroupName",
                    "ModelPackageGroupArn",
                    "ModelPackageGroupDescription",
                    "CreationTime",
                    "ModelPackageGroupStatus",
                )
            }
            for g in groups
        ]
        return self._page(items, p, "ModelPackageGroupSummaryList")

    def delete_model_package_group(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["ModelPackageGroupName"]
        with self.lock:
            if any(pkg.get("ModelPackageGroupName") == name for pkg in self.packages.values()):
                raise SageMakerError(f"Model Package Group {name} still has model packages; delete them first.")
            if self.package_groups.pop(name, None) is None:
                raise SageMakerError(f"ModelPackageGroup {name} does not exist.")
        return {}

    def create_model_package(self, p: dict[str, Any]) -> dict[str, Any]:
        group_name = p.get("ModelPackageGroupName")
        with self.lock:
            if group_name is None:
                raise SageMakerError(
                    "Shepherd's local SageMaker supports versioned model packages only: give ModelPackageGroupName."
                )
            group_name = group_name.rsplit("/", 1)[-1]
            if group_name not in self.package_groups:
                raise SageMakerError(f"ModelPackageGroup {group_name} does not exist.")
            token = p.get("ClientToken")
            if token and token in self.package_tokens:  # a repeated call: the package it created
                return {"ModelPackageArn": self.package_tokens[token]}
            version = 1 + sum(1 for pkg in self.packages.values() if pkg["ModelPackageGroupName"] == group_name)
            package_arn = arn(f"model-package/{group_name.lower()}/{version}")
            now = utcnow()
            package: dict[str, Any] = {
                "ModelPackageName": group_name,
                "ModelPackageGroupName": group_name,
                "ModelPackageVersion": version,
                "ModelPackageArn": package_arn,
                "ModelPackageDescription": p.get("ModelPackageDescription", ""),
                "CreationTime": now,
                "LastModifiedTime": now,
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                "ModelApprovalStatus": p.get("ModelApprovalStatus", "PendingManualApproval"),
                "CertifyForMarketplace": p.get("CertifyForMarketplace", False),
            }
            for key in (
                "InferenceSpecification",
                "ModelMetrics",
                "MetadataProperties",
                "CustomerMetadataProperties",
                "DriftCheckBaselines",
                "Domain",
                "Task",
                "SamplePayloadUrl",
                "SourceUri",
                "AdditionalInferenceSpecifications",
                "ModelCard",
                "ModelLifeCycle",
            ):
                if key in p:
                    package[key] = p[key]
            self.packages[package_arn] = package
            self.tags[package_arn] = list(p.get("Tags", []))
            if token:
                self.package_tokens[token] = package_arn
        self._package_changed(package)
        return {"ModelPackageArn": package_arn}

    def _package(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name in self.packages:
                return self.packages[name]
            matches = [pkg for pkg in self.packages.values() if pkg["ModelPackageGroupName"] == name]
        if not matches:
            raise SageMakerError(f"ModelPackage {name} does not exist.")
        return matches[-1]

    def describe_model_package(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._package(p["ModelPackageName"]))

    def update_model_package(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            package = self._package(p["ModelPackageArn"])
            if "ModelApprovalStatus" in p:
                package["ModelApprovalStatus"] = p["ModelApprovalStatus"]
                if p.get("ApprovalDescription"):
                    package["ApprovalDescription"] = p["ApprovalDescription"]
            metadata = dict(package.get("CustomerMetadataProperties", {}))
            metadata.update(p.get("CustomerMetadataProperties", {}))
            for key in p.get("CustomerMetadataPropertiesToRemove", []):
                metadata.pop(key, None)
            if metadata or "CustomerMetadataProperties" in package:
                package["CustomerMetadataProperties"] = metadata
            for key in ("InferenceSpecification", "ModelCard", "ModelLifeCycle", "SourceUri"):
                if key in p:
                    package[key] = p[key]
            package["LastModifiedTime"] = utcnow()
        self._package_changed(package, updated_package_fields(p))
        return {"ModelPackageArn": package["ModelPackageArn"]}

    def list_model_packages(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            packages = list(self.packages.values())
        if p.get("ModelPackageGroupName"):
            packages = [pkg for pkg in packages if pkg["ModelPackageGroupName"] == p["ModelPackageGroupName"]]
        if p.get("ModelApprovalStatus"):
            packages = [pkg for pkg in packages if pkg["ModelApprovalStatus"] == p["ModelApprovalStatus"]]
        if p.get("NameContains"):
            packages = [pkg for pkg in packages if p["NameContains"] in pkg["ModelPackageName"]]
        packages.sort(key=lambda pkg: pkg["CreationTime"], reverse=p.get("SortOrder", "Ascending") == "Descending")
        keys = (
            "ModelPackageName",
            "ModelPackageGroupName",
            "ModelPackageVersion",
            "ModelPackageArn",
            "ModelPackageDescription",
            "CreationTime",
            "ModelPackageStatus",
            "ModelApprovalStatus",
        )
        return self._page([{k: pkg[k] for k in keys if k in pkg} for pkg in packages], p, "ModelPackageSummaryList")

    def delete_model_package(self, p: dict[str, Any]) -> dict[str, Any]:
        package = self._package(p["ModelPackageName"])
        with self.lock:
            self.packages.pop(package["ModelPackageArn"], None)
        return {}

    def _package_changed(self, package: dict[str, Any], updated: list[str] | None = None) -> None:
        detail = model_package_state_change(package, updated)
        self.emit("SageMaker Model Package State Change", package["ModelPackageArn"], detail)

    # ------------------------------------------------------------------ endpoint configs

    def create_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["EndpointConfigName"]
        config_arn = arn(f"endpoint-config/{name.lower()}")
        with self.lock:
            if name in self.endpoint_configs:
                raise SageMakerError(f'Cannot create already existing endpoint configuration "{config_arn}".')
            problems = check_endpoint_config(p, self.models)
            if problems:
                raise SageMakerError(" ".join(problems))
            config = {k: copy.deepcopy(v) for k, v in p.items() if k != "Tags"}
            config.update({"EndpointConfigArn": config_arn, "CreationTime": utcnow()})
            self.endpoint_configs[name] = config
            self.tags[config_arn] = list(p.get("Tags", []))
        return {"EndpointConfigArn": config_arn}

    def _endpoint_config(self, name: str) -> dict[str, Any]:
        config = self.endpoint_configs.get(name)
        if config is None:
            raise SageMakerError(f'Could not find endpoint configuration "{arn("endpoint-config/" + name.lower())}".')
        return config

    def describe_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))

    def list_endpoint_configs(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            configs = list(self.endpoint_configs.values())
        if p.get("NameContains"):
            configs = [c for c in configs if p["NameContains"] in c["EndpointConfigName"]]
        configs.sort(key=lambda c: c["CreationTime"], reverse=p.get("SortOrder", "Descending") == "Descending")
        items = [{k: c[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")} for c in configs]
        return self._page(items, p, "EndpointConfigs")

    def delete_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._endpoint_config(p["EndpointConfigName"])
            del self.endpoint_configs[p["EndpointConfigName"]]
        return {}

    # ------------------------------------------------------------------ endpoints

    def _endpoint(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise SageMakerError(f'Could not find endpoint "{name}".')
        return endpoint

    def _endpoint_changed(self, endpoint: Endpoint) -> None:
        config = self.endpoint_configs.get(endpoint.config_name)
        detail = endpoint_state_change(endpoint, config, self.tags.get(endpoint.arn, []))
        self.emit("SageMaker Endpoint State Change", endpoint.arn, detail)

    def _set_endpoint_status(self, endpoint: Endpoint, status: str, failure: str | None = None) -> None:
        with endpoint.lock:
            endpoint.status = status
            endpoint.failure_reason = failure
            endpoint.last_modified = utcnow()
        self._endpoint_changed(endpoint)

    def _fault(self, endpoint: Endpoint, name: str) -> bool:
        """Opt-in fault injection by tag, e.g. shepherd:fault:fail-next-update = true (consumed once)."""
        key = f"{FAULT_TAG_PREFIX}{name}"
        with self.lock:
            tags = self.tags.get(endpoint.arn, [])
            if not any(t["Key"] == key and t["Value"].lower() == "true" for t in tags):
                return False
            self.tags[endpoint.arn] = [t for t in tags if t["Key"] != key]
            return True

    def _build_variants(
        self,
        endpoint: str,
        config: dict[str, Any],
        retained: dict[str, Variant],
        excluded: frozenset[str] = frozenset(),
    ) -> dict[str, Variant]:
        """Start a fleet for every variant of the config; on a load failure stop those started and raise.

        A retained variant keeps its current weight and count, except the properties that
        ExcludeRetainedVariantProperties names: those come from the new config, as on SageMaker.
        """
        built: dict[str, Variant] = {}
        try:
            for shadow, key in ((False, "ProductionVariants"), (True, "ShadowProductionVariants")):
                for spec in config.get(key) or []:
                    old = retained.get(spec["VariantName"])
                    keep_weight = old is not None and "DesiredWeight" not in excluded
                    keep_count = old is not None and "DesiredInstanceCount" not in excluded
                    weight = old.current_weight if old and keep_weight else float(spec.get("InitialVariantWeight", 1.0))
                    count = old.current_count if old and keep_count else int(spec.get("InitialInstanceCount", 1))
                    model = self.models.get(spec["ModelName"])
                    if model is None:
                        raise ModelLoadFailed(f'Could not find model "{spec["ModelName"]}".')
                    fleet = self.fleet_factory(model, spec, count, endpoint, shadow=shadow)
                    built[spec["VariantName"]] = Variant(spec, fleet, shadow, weight, weight, count, count)
                    fleet.start()
        except Exception:
            for variant in built.values():
                variant.fleet.stop()
            raise
        return built

    def _serving_fleet(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> Fleet:
        from localcloud.sagemaker.serving import make_fleet

        return make_fleet(model, variant, count, self, endpoint, shadow=shadow)

    def _capture_writer(self, endpoint: str, endpoint_config: dict[str, Any]) -> CaptureWriter | None:
        """Data capture, written as the execution role of the config's first model (which must be allowed to put
        the objects, and to use the capture KMS key, as on AWS)."""
        config = endpoint_config.get("DataCaptureConfig")
        if not config or not config.get("EnableCapture", True):
            return None
        variants = endpoint_config.get("ProductionVariants") or [{}]
        model = self.models.get(variants[0].get("ModelName", ""), {})
        return CaptureWriter(endpoint, config, lambda: self.model_client(model, "s3"), now=self.cloud.clock.now)

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def create_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["EndpointName"]
        endpoint_arn = arn(f"endpoint/{name.lower()}")
        with self.lock:
            if name in self.endpoints:
                raise SageMakerError(f'Cannot create already existing endpoint "{endpoint_arn}".')
            config = copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))
            now = utcnow()
            endpoint = Endpoint(
                name,
                endpoint_arn,
                p["EndpointConfigName"],
                "Creating",
                now,
                now,
                data_capture=config.get("DataCaptureConfig"),
            )
            self.endpoints[name] = endpoint
            self.tags[endpoint_arn] = list(p.get("Tags", []))
        self._endpoint_changed(endpoint)

        def deploy() -> None:
            try:
                variants = self._build_variants(name, config, {})
            except Exception as exc:
                self._set_endpoint_status(endpoint, "Failed", _load_failure(exc))
                return
            with endpoint.lock:
                endpoint.variants = variants
                endpoint.capture = self._capture_writer(name, config)
            self._set_endpoint_status(endpoint, "InService")

        self._in_background(f"endpoint-{name}", deploy)
        return {"EndpointArn": endpoint_arn}

    def describe_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        return describe(self._endpoint(p["EndpointName"]), self.models)

    def list_endpoints(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            endpoints = list(self.endpoints.values())
        if p.get("NameContains"):
            endpoints = [e for e in endpoints if p["NameContains"] in e.name]
        if p.get("StatusEquals"):
            endpoints = [e for e in endpoints if e.status == p["StatusEquals"]]
        endpoints.sort(
            key=lambda e: e.name if p.get("SortBy") == "Name" else e.creation_time,
            reverse=p.get("SortOrder", "Descending") == "Descending",
        )
        items = [
            {
                "EndpointName": e.name,
                "EndpointArn": e.arn,
                "CreationTime": e.creation_time,
                "LastModifiedTime": e.last_modified,
                "EndpointStatus": e.status,
            }
            for e in endpoints
        ]
        return self._page(items, p, "Endpoints")

    def _require_in_service(self, endpoint: Endpoint, action: str) -> None:
        if endpoint.status != "InService":
            raise SageMakerError(f'Cannot {action} in-progress endpoint "{endpoint.arn}".')

    def update_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        with endpoint.lock:
            self._require_in_service(endpoint, "update")
            config = copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))
            kept = {
                v["VariantName"]
                for key in ("ProductionVariants", "ShadowProductionVariants")
                for v in config.get(key) or []
            }
            scaled = sorted(self.cloud.autoscaler.registered_variants(endpoint.name) - kept)
            if scaled:
                raise SageMakerError(
                    f'The variant(s) {scaled} of endpoint "{endpoint.name}" are registered as Application Auto '
                    "Scaling scalable targets and cannot be removed. Deregister them first."
                )
            retain = p.get("RetainAllVariantProperties", False)
            excluded = {e["VariantPropertyType"] for e in p.get("ExcludeRetainedVariantProperties", [])}
            endpoint.pending_config = p["EndpointConfigName"]
            if p.get("DeploymentConfig"):
                endpoint.last_deployment_config = p["DeploymentConfig"]
            current = dict(endpoint.variants)
        self._set_endpoint_status(endpoint, "Updating")
        retained = {} if not retain else dict(current)

        def update() -> None:
            try:
                if self._fault(endpoint, "fail-next-update"):
                    raise ModelLoadFailed("Injected fault: the update's new fleet failed its health check.")
                variants = self._build_variants(endpoint.name, config, retained, frozenset(excluded))
            except Exception as exc:
                with endpoint.lock:
                    endpoint.pending_config = None
                self._set_endpoint_status(
                    endpoint,
                    "InService",
                    f"Update failed, the endpoint keeps its previous configuration: {_load_failure(exc)}",
                )
                return
            blue_green = (deployment or {}).get("BlueGreenUpdatePolicy")
            if blue_green and not self._shift_traffic(endpoint, variants, blue_green, deployment or {}):
                for variant in variants.values():
                    variant.fleet.stop()
                return
            with endpoint.lock:
                endpoint.variants = variants
                endpoint.green, endpoint.green_share = None, 0.0
                endpoint.config_name = config["EndpointConfigName"]
                endpoint.data_capture = config.get("DataCaptureConfig")
                endpoint.pending_config = None
                old_capture, endpoint.capture = (
                    endpoint.capture,
                    self._capture_writer(endpoint.name, config),
                )
            for variant in current.values():
                variant.fleet.stop()
            if old_capture is not None:
                old_capture.close()
            self._set_endpoint_status(endpoint, "InService")

        deployment = p.get("DeploymentConfig")
        self._in_background(f"endpoint-update-{endpoint.name}", update)
        return {"EndpointArn": endpoint.arn}

    # ------------------------------------------------------------------ blue/green deployments

    def _baking_event(self, endpoint: Endpoint, green: dict[str, Variant], share: float, bake: float) -> None:
        """AWS documents deployment events for steps in progress only: completion and rollback are endpoint events."""
        instances = max(1, round(share * sum(v.current_count for v in green.values() if not v.shadow)))
        capacity = "full" if share >= 1.0 else "canary"
        message = (
            f"Baking for {bake:g} seconds (WaitIntervalInSeconds) with traffic enabled on {capacity} capacity "
            f"of {instances} instance(s)."
        )
        detail = deployment_state_change(endpoint, green, message, utcnow(), self.tags.get(endpoint.arn, []))
        self.emit("SageMaker Endpoint Deployment State Change", endpoint.arn, detail)

    def _alarm_in_alarm(self, names: list[str]) -> str | None:
        if not names:
            return None
        alarms = self.cloud.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
        return next((a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"), None)

    def _shift_traffic(
        self, endpoint: Endpoint, green: dict[str, Variant], policy: dict[str, Any], deployment: dict[str, Any]
    ) -> bool:
        """Move traffic to the green fleet in SageMaker's steps, baking each while watching the alarms.

        Returns False after a rollback (all traffic back on blue, green to be torn down).
        """
        routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        steps = _traffic_steps(routing, sum(v.current_count for v in green.values() if not v.shadow))
        bake = float(routing.get("WaitIntervalInSeconds", 0))
        alarms = [a["AlarmName"] for a in (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
        deadline = self.cloud.clock.now() + timedelta(
            seconds=float(policy.get("MaximumExecutionTimeoutInSeconds", 28800))
        )
        clock = self.cloud.clock
        for share in steps:
            with endpoint.lock:
                endpoint.green, endpoint.green_share = green, share
            self._baking_event(endpoint, green, share, bake)
            bake_until = clock.now() + timedelta(seconds=bake)
            while True:
                tripped = self._alarm_in_alarm(alarms)
                expired = clock.now() > deadline
                if tripped or expired:
                    reason = f"Alarm {tripped} is in ALARM" if tripped else "MaximumExecutionTimeoutInSeconds elapsed"
                    self._roll_back(endpoint, reason)
                    return False
                if clock.now() >= bake_until:
                    break
                clock.sleep(min(5.0, max(0.0, (bake_until - clock.now()).total_seconds())))
        termination = float(policy.get("TerminationWaitInSeconds", 0))
        if termination:
            clock.sleep(termination)
        return True

    def _roll_back(self, endpoint: Endpoint, reason: str) -> None:
        self._set_endpoint_status(endpoint, "RollingBack", f"Deployment rolled back: {reason}")
        with endpoint.lock:
            endpoint.green, endpoint.green_share = None, 0.0
            endpoint.pending_config = None
        self._set_endpoint_status(endpoint, "InService", f"Deployment rolled back: {reason}")

    def update_endpoint_weights_and_capacities(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        with endpoint.lock:
            self._require_in_service(endpoint, "update")
            missing = [
                d["VariantName"] for d in p["DesiredWeightsAndCapacities"] if d["VariantName"] not in endpoint.variants
            ]
            if missing:
                raise SageMakerError(
                    f'The variant(s) "{missing}" is/are not present in the endpoint "{endpoint.name}".'
                )
            for desired in p["DesiredWeightsAndCapacities"]:
                variant = endpoint.variants[desired["VariantName"]]
                if "DesiredWeight" in desired:
                    variant.desired_weight = float(desired["DesiredWeight"])
                if "DesiredInstanceCount" in desired:
                    variant.desired_count = int(desired["DesiredInstanceCount"])
            if not any(v.desired_weight > 0 for v in endpoint.production):
                raise SageMakerError("At least one production variant must have a weight greater than 0.")
        self._set_endpoint_status(endpoint, "Updating")

        def apply() -> None:
            with endpoint.lock:
                variants = list(endpoint.variants.values())
            for variant in variants:
                if variant.desired_count != variant.current_count:
                    variant.fleet.resize(variant.desired_count)
            with endpoint.lock:
                for variant in variants:
                    variant.current_count = variant.desired_count
                    variant.current_weight = variant.desired_weight
            self._set_endpoint_status(endpoint, "InService")

        self._in_background(f"endpoint-weights-{endpoint.name}", apply)
        return {"EndpointArn": endpoint.arn}

    def delete_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        self._set_endpoint_status(endpoint, "Deleting")

        def delete() -> None:
            with endpoint.lock:
                variants = list(endpoint.variants.values())
                endpoint.variants = {}
                capture, endpoint.capture = endpoint.capture, None
            for variant in variants:
                variant.fleet.stop()
            if capture is not None:
                capture.close()
            with self.lock:
                self.endpoints.pop(endpoint.name, None)

        self._in_background(f"endpoint-delete-{endpoint.name}", delete)
        return {}

    # ------------------------------------------------------------------ tags

    def add_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            tags = {t["Key"]: t for t in self.tags.get(p["ResourceArn"], [])}
            tags.update({t["Key"]: t for t in p["Tags"]})
            self.tags[p["ResourceArn"]] = list(tags.values())
        return {"Tags": p["Tags"]}

    def list_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": list(self.tags.get(p["ResourceArn"], []))}

    def delete_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.tags[p["ResourceArn"]] = [
                t for t in self.tags.get(p["ResourceArn"], []) if t["Key"] not in p["TagKeys"]
            ]
        return {}

    def stop(self) -> None:
        for job in [*self.training_jobs.values(), *self.transform_jobs.values()]:
            job.stop_requested.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for endpoint in list(self.endpoints.values()):
            for variant in list(endpoint.variants.values()):
                variant.fleet.stop()
            if endpoint.capture is not None:
                endpoint.capture.close()
        self._events.put(None)
        self._event_thread.join(timeout=5)


FAULT_TAG_PREFIX = "shepherd:fault:"


def _faults(request: dict[str, Any]) -> dict[str, str]:
    """Opt-in fault injection for tests, by tag: e.g. shepherd:fault:spot-interruptions = 1."""
    return {
        t["Key"][len(FAULT_TAG_PREFIX) :]: t["Value"]
        for t in request.get("Tags", [])
        if t["Key"].startswith(FAULT_TAG_PREFIX)
    }


def _prestart_model_workers() -> None:
    from localcloud.sagemaker.inference import prestart_model_workers

    prestart_model_workers()


def _traffic_steps(routing: dict[str, Any], green_instances: int) -> list[float]:
    """The shares of traffic on green after each step of ALL_AT_ONCE, CANARY or LINEAR routing."""
    kind = routing.get("Type", "ALL_AT_ONCE")
    if kind == "ALL_AT_ONCE":
        return [1.0]
    size = routing.get("CanarySize" if kind == "CANARY" else "LinearStepSize") or {}
    value = float(size.get("Value", 10))
    step = (
        value / 100 if size.get("Type", "CAPACITY_PERCENT") == "CAPACITY_PERCENT" else value / max(1, green_instances)
    )
    step = min(1.0, max(step, 0.01))
    if kind == "CANARY":
        return [step, 1.0]
    shares, share = [], step
    while share < 1.0 - 1e-9:
        shares.append(round(share, 6))
        share += step
    return [*shares, 1.0]


def _load_failure(exc: Exception) -> str:
    if isinstance(exc, ModelLoadFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


SUPPORTED_OPERATIONS = frozenset(
    name
    for name in dir(SageMakerBackend)
    if not name.startswith("_") and name not in {"client", "log", "work_root", "emit", "stop", "fleet_factory"}
)
