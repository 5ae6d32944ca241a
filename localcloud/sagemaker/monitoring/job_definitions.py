"""Monitoring job definitions: what DefaultModelMonitor and ModelQualityMonitor create before their schedules.

Data quality and model quality (CreateDataQualityJobDefinition, CreateModelQualityJobDefinition in the SageMaker API
Reference) have one shape, their members prefixed by the kind; model quality's job input also needs
GroundTruthS3Input (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelQualityJobInput.html:
"Required: Yes") and its app specification carries the ProblemType.
Model bias and explainability run SageMaker Clarify, which the local SageMaker refuses by name.
"""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker.control_plane import ControlPlane, ResourceInUse, ResourceNotFound, SageMakerError, arn
from localcloud.sagemaker.job_operations import _as_datetime
from localcloud.sagemaker.jobs import utcnow
from localcloud.sagemaker.monitoring.availability import refuse_if_closed, refuse_unsupported_image
from localcloud.sagemaker.monitoring.executions import DATA_QUALITY, MODEL_QUALITY, spec_of_definition

# The kinds of definition the local SageMaker runs: their ARN resource types.
RESOURCES = {DATA_QUALITY: "data-quality-job-definition", MODEL_QUALITY: "model-quality-job-definition"}
CLARIFY = ("ModelBias", "ModelExplainability")


def clarify_refused(operation: str) -> SageMakerError:
    """Model bias and explainability monitoring run SageMaker Clarify's container, which is not emulated."""
    return SageMakerError(
        f"{operation}: model bias and explainability monitoring run SageMaker Clarify, which the local SageMaker "
        "does not run; like Model Monitor, Clarify is no longer open to new customers. Shepherd monitors data "
        "quality and model quality (docs/LOCAL_SAGEMAKER.md)."
    )


def _stored(kind: str) -> tuple[str, ...]:
    return (
        "JobDefinitionName",
        f"{kind}BaselineConfig",
        f"{kind}AppSpecification",
        f"{kind}JobInput",
        f"{kind}JobOutputConfig",
        "JobResources",
        "NetworkConfig",
        "RoleArn",
        "StoppingCondition",
    )


class JobDefinitionOperations(ControlPlane):
    """Create/Describe/Delete/List of DataQuality and ModelQuality job definitions; Clarify's kinds refused."""

    job_definitions: dict[str, dict[str, dict[str, Any]]]  # kind -> name -> definition

    def _definition_in_use(self, kind: str, name: str) -> str | None:
        """The schedule that uses the definition, if any (the schedule family answers)."""
        raise NotImplementedError

    def _create_definition(self, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        refuse_if_closed(f"Create{kind}JobDefinition")
        name = p["JobDefinitionName"]
        definition_arn = arn(f"{RESOURCES[kind]}/{name.lower()}")
        refuse_unsupported_image(p[f"{kind}AppSpecification"]["ImageUri"])
        spec_of_definition(kind, p)  # refuses what the local cloud cannot monitor
        self.assume(p["RoleArn"])
        with self.lock:
            definitions = self.job_definitions.setdefault(kind, {})
            if name in definitions:
                raise ResourceInUse(f"Job definition {definition_arn} already exists.")
            definitions[name] = {k: p[k] for k in _stored(kind) if k in p} | {
                "JobDefinitionArn": definition_arn,
                "CreationTime": utcnow(),
            }
            self.tags[definition_arn] = list(p.get("Tags", []))
        return {"JobDefinitionArn": definition_arn}

    def _job_definition(self, kind: str, name: str) -> dict[str, Any]:
        definition = self.job_definitions.get(kind, {}).get(name)
        if definition is None:
            raise ResourceNotFound(f"Could not find job definition {arn(RESOURCES[kind] + '/' + name.lower())}.")
        return definition

    def _delete_definition(self, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        name = p["JobDefinitionName"]
        with self.lock:
            definition = self._job_definition(kind, name)
            if schedule := self._definition_in_use(kind, name):
                raise ResourceInUse(
                    f"Job definition {definition['JobDefinitionArn']} is in use by schedule {schedule}."
                )
            del self.job_definitions[kind][name]
        return {}

    def _list_definitions(self, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            items = list(self.job_definitions.get(kind, {}).values())
        endpoint_of = {id(d): (d[f"{kind}JobInput"].get("EndpointInput") or {}).get("EndpointName") for d in items}
        if p.get("NameContains"):
            items = [d for d in items if p["NameContains"] in d["JobDefinitionName"]]
        if p.get("EndpointName"):
            items = [d for d in items if endpoint_of[id(d)] == p["EndpointName"]]
        for key, before in (("CreationTimeBefore", True), ("CreationTimeAfter", False)):
            if key in p:
                items = [d for d in items if (d["CreationTime"] < _moment(p[key])) == before]
        key = "JobDefinitionName" if p.get("SortBy") == "Name" else "CreationTime"
        items.sort(key=lambda d: d[key], reverse=p.get("SortOrder", "Descending") == "Descending")
        summaries = [
            {
                "MonitoringJobDefinitionName": d["JobDefinitionName"],
                "MonitoringJobDefinitionArn": d["JobDefinitionArn"],
                "CreationTime": d["CreationTime"],
                "EndpointName": endpoint_of[id(d)],
            }
            for d in items
        ]
        return self._page(summaries, p, "JobDefinitionSummaries")

    # ------------------------------------------------------------------ data quality

    def create_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._create_definition(DATA_QUALITY, p)

    def describe_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self._job_definition(DATA_QUALITY, p["JobDefinitionName"]))

    def delete_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._delete_definition(DATA_QUALITY, p)

    def list_data_quality_job_definitions(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._list_definitions(DATA_QUALITY, p)

    # ------------------------------------------------------------------ model quality

    def create_model_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._create_definition(MODEL_QUALITY, p)

    def describe_model_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self._job_definition(MODEL_QUALITY, p["JobDefinitionName"]))

    def delete_model_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._delete_definition(MODEL_QUALITY, p)

    def list_model_quality_job_definitions(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._list_definitions(MODEL_QUALITY, p)

    # ------------------------------------------------------------------ Clarify's kinds, refused by name

    def create_model_bias_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        raise clarify_refused("CreateModelBiasJobDefinition")

    def create_model_explainability_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        raise clarify_refused("CreateModelExplainabilityJobDefinition")


def _moment(value: Any) -> Any:
    return _as_datetime(value)
