"""Models and the model registry: CreateModel, model package groups and their versioned model packages."""

from __future__ import annotations

import copy
from typing import Any

from localcloud.sagemaker.control_plane import ControlPlane, SageMakerError, arn
from localcloud.sagemaker.events import model_package_state_change, updated_package_fields
from localcloud.sagemaker.jobs import utcnow


class ModelOperations(ControlPlane):
    """Models (what endpoints and transform jobs run) and the registry's groups and packages they may come from."""

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


def _prestart_model_workers() -> None:
    from localcloud.sagemaker.model_worker_pool import prestart_model_workers

    prestart_model_workers()
