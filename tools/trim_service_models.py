"""Regenerate the layer's trimmed copies of botocore's data from the installed botocore.

Parsing SageMaker's whole model is about 80 ms of a cold start for the ~20 operations Shepherd calls
(docs/COLD_START.md). Run after upgrading the pinned boto3/botocore, or when Shepherd calls a new operation
or service: ``.venv/bin/python tools/trim_service_models.py``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "layers/shepherd/shepherd/aws/models"

# Every operation of these services the layer and the Lambda functions call, paginated ones included
# (tests/unit/test_service_models.py checks the sources against these lists).
OPERATIONS = {
    "sagemaker": sorted(
        {
            "CreateEndpoint",
            "CreateEndpointConfig",
            "CreateModel",
            "CreateModelPackage",
            "CreateModelPackageGroup",
            "CreateTrainingJob",
            "CreateTransformJob",
            "DeleteEndpoint",
            "DeleteEndpointConfig",
            "DeleteModel",
            "DescribeEndpoint",
            "DescribeEndpointConfig",
            "DescribeModel",
            "DescribeModelPackage",
            "DescribeTrainingJob",
            "DescribeTransformJob",
            "ListEndpointConfigs",
            "ListModelPackages",
            "ListModels",
            "StopTrainingJob",
            "StopTransformJob",
            "UpdateEndpoint",
            "UpdateEndpointWeightsAndCapacities",
            "UpdateModelPackage",
        }
    ),
    "s3": sorted({"CopyObject", "DeleteObject", "GetObject", "ListObjectVersions", "ListObjectsV2", "PutObject"}),
    "dynamodb": sorted({"DeleteItem", "GetItem", "PutItem", "Query", "Scan", "UpdateItem"}),
    "cloudwatch": sorted({"GetMetricData", "PutMetricData"}),
    "events": sorted({"PutEvents"}),
    "sns": sorted({"Publish"}),
}
# The services the layer and the functions create clients for (the test checks the sources), and those
# botocore's credential providers create clients for (assume role, web identity, SSO, console login).
CLIENT_SERVICES = sorted(
    {
        "application-autoscaling",
        "cloudwatch",
        "dynamodb",
        "events",
        "s3",
        "sagemaker",
        "scheduler",
        "sns",
        "stepfunctions",
    }
)
CREDENTIAL_SERVICES = sorted({"signin", "sso", "sso-oidc", "sts"})


def _shapes_reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        for member in shape.get("members", {}).values():
            stack.append(member["shape"])
        for key in ("member", "key", "value"):
            if key in shape:
                stack.append(shape[key]["shape"])
    return seen


def trimmed(service: str, operations: list[str]) -> tuple[str, dict[str, Any]]:
    """(api version, the service model with only ``operations`` and the shapes they reach)."""
    import botocore.loaders

    loader = botocore.loaders.create_loader()
    version = loader.determine_latest_version(service, "service-2")
    model = loader.load_service_model(service, "service-2", version)
    missing = sorted(set(operations) - set(model["operations"]))
    if missing:
        raise SystemExit(f"botocore's {service} model has no operation {', '.join(missing)}")
    kept = {name: model["operations"][name] for name in operations}
    roots = [
        ref["shape"]
        for op in kept.values()
        for ref in (op.get("input"), op.get("output"), *op.get("errors", []))
        if ref is not None
    ]
    names = _shapes_reached(model["shapes"], roots)
    out = {key: value for key, value in model.items() if key not in ("operations", "shapes")}
    out["operations"] = kept
    out["shapes"] = {name: model["shapes"][name] for name in sorted(names)}
    return version, out


def _without_documentation(node: Any) -> Any:
    """The model minus its documentation strings, which botocore only reads to build docstrings."""
    if isinstance(node, dict):
        return {k: _without_documentation(v) for k, v in node.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(node, list):
        return [_without_documentation(v) for v in node]
    return node


def render(model: dict[str, Any]) -> str:
    # Only operations and shapes: botocore reads the documentation of clientContextParams.
    model = model | {key: _without_documentation(model[key]) for key in ("operations", "shapes")}
    return json.dumps(model, sort_keys=True, separators=(",", ":")) + "\n"


def trimmed_endpoints(services: list[str]) -> dict[str, Any]:
    """botocore's endpoints.json with, in every partition, only the entries of these services.

    Its entries are keyed by endpoint prefix (cloudwatch's is "monitoring"), which the services'
    models name."""
    import botocore.loaders

    loader = botocore.loaders.create_loader()
    prefixes = {loader.load_service_model(s, "service-2")["metadata"]["endpointPrefix"] for s in services}
    endpoints = loader.load_data("endpoints")
    partitions = [
        partition | {"services": {k: v for k, v in partition["services"].items() if k in prefixes}}
        for partition in endpoints["partitions"]
    ]
    return endpoints | {"partitions": partitions}


def outputs() -> dict[Path, str]:
    files = {}
    for service, operations in OPERATIONS.items():
        version, model = trimmed(service, operations)
        files[TARGET / service / version / "service-2.json"] = render(model)
    endpoints = trimmed_endpoints(CLIENT_SERVICES + CREDENTIAL_SERVICES)
    files[TARGET / "endpoints.json"] = json.dumps(endpoints, sort_keys=True, separators=(",", ":")) + "\n"
    return files


def main() -> int:
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)} ({len(text) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
