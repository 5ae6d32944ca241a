"""Data quality job definitions: what DefaultModelMonitor.create_monitoring_schedule creates before its schedule."""

from __future__ import annotations

from typing import Any

from localcloud.sagemaker.control_plane import ControlPlane, ResourceInUse, ResourceNotFound, arn
from localcloud.sagemaker.jobs import utcnow
from localcloud.sagemaker.monitoring.availability import refuse_if_closed, refuse_unsupported_image
from localcloud.sagemaker.monitoring.executions import spec_of_definition

_STORED = (
    "JobDefinitionName",
    "DataQualityBaselineConfig",
    "DataQualityAppSpecification",
    "DataQualityJobInput",
    "DataQualityJobOutputConfig",
    "JobResources",
    "NetworkConfig",
    "RoleArn",
    "StoppingCondition",
)


class JobDefinitionOperations(ControlPlane):
    """Create/Describe/Delete/ListDataQualityJobDefinitions."""

    job_definitions: dict[str, dict[str, Any]]

    def _definition_in_use(self, name: str) -> str | None:
        """The schedule that uses the definition, if any (the schedule family answers)."""
        raise NotImplementedError

    def create_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        refuse_if_closed("CreateDataQualityJobDefinition")
        name = p["JobDefinitionName"]
        definition_arn = arn(f"data-quality-job-definition/{name.lower()}")
        refuse_unsupported_image(p["DataQualityAppSpecification"]["ImageUri"])
        spec_of_definition(p)  # refuses what the local cloud cannot monitor
        self.assume(p["RoleArn"])
        with self.lock:
            if name in self.job_definitions:
                raise ResourceInUse(f"Job definition {definition_arn} already exists.")
            self.job_definitions[name] = {k: p[k] for k in _STORED if k in p} | {
                "JobDefinitionArn": definition_arn,
                "CreationTime": utcnow(),
            }
            self.tags[definition_arn] = list(p.get("Tags", []))
        return {"JobDefinitionArn": definition_arn}

    def _job_definition(self, name: str) -> dict[str, Any]:
        definition = self.job_definitions.get(name)
        if definition is None:
            raise ResourceNotFound(
                f"Could not find job definition {arn('data-quality-job-definition/' + name.lower())}."
            )
        return definition

    def describe_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        return dict(self._job_definition(p["JobDefinitionName"]))

    def delete_data_quality_job_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["JobDefinitionName"]
        with self.lock:
            definition = self._job_definition(name)
            if schedule := self._definition_in_use(name):
                raise ResourceInUse(
                    f"Job definition {definition['JobDefinitionArn']} is in use by schedule {schedule}."
                )
            del self.job_definitions[name]
        return {}

    def list_data_quality_job_definitions(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            items = list(self.job_definitions.values())
        if p.get("NameContains"):
            items = [d for d in items if p["NameContains"] in d["JobDefinitionName"]]
        if p.get("EndpointName"):
            items = [
                d
                for d in items
                if d["DataQualityJobInput"].get("EndpointInput", {}).get("EndpointName") == p["EndpointName"]
            ]
        key = "JobDefinitionName" if p.get("SortBy") == "Name" else "CreationTime"
        items.sort(key=lambda d: d[key], reverse=p.get("SortOrder", "Descending") == "Descending")
        summaries = [
            {
                "MonitoringJobDefinitionName": d["JobDefinitionName"],
                "MonitoringJobDefinitionArn": d["JobDefinitionArn"],
                "CreationTime": d["CreationTime"],
                "EndpointName": d["DataQualityJobInput"]["EndpointInput"]["EndpointName"],
            }
            for d in items
        ]
        return self._page(summaries, p, "JobDefinitionSummaries")
