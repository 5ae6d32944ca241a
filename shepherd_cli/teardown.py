"""`shepherd teardown <model>`: delete the endpoints, endpoint configs and models Shepherd created for a model."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from shepherd.aws.errors import code_of, message_of

from shepherd_cli.cloud import Target, connected, fail
from shepherd_cli.output import console

MODEL_TAG = "shepherd:model"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _tagged(target: Target, arn: str, model: str) -> bool:
    pages = target.client("sagemaker").get_paginator("list_tags").paginate(ResourceArn=arn)
    return any(t["Key"] == MODEL_TAG and t["Value"] == model for page in pages for t in page.get("Tags", []))


def _listed(target: Target, operation: str, key: str) -> list[dict[str, Any]]:
    pages = target.client("sagemaker").get_paginator(operation).paginate()
    return [item for page in pages for item in page.get(key, [])]


def _scaling_targets(target: Target, endpoint: str) -> list[str]:
    prefix = f"endpoint/{endpoint}/variant/"
    pages = (
        target.client("application-autoscaling")
        .get_paginator("describe_scalable_targets")
        .paginate(ServiceNamespace="sagemaker")
    )
    return [
        t["ResourceId"]
        for page in pages
        for t in page.get("ScalableTargets", [])
        if t["ResourceId"].startswith(prefix) and t.get("ScalableDimension") == SCALABLE_DIMENSION
    ]


@connected(stack=False)
def teardown(
    target: Target,
    model: Annotated[
        str,
        typer.Argument(
            help="The model whose SageMaker resources to delete: its folder name, models/<model>/shepherd.yaml "
            "(the value of their shepherd:model tag)."
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
) -> None:
    """Delete the endpoints, endpoint configs and models Shepherd created for a model (tag shepherd:model).

    `sam delete` does not know these, and endpoints bill while they exist. Model packages (the registry) stay.
    """
    found = {
        kind: [item[name_key] for item in _listed(target, operation, list_key) if _tagged(target, item[arn_key], model)]
        for kind, operation, list_key, name_key, arn_key in (
            ("endpoint", "list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
            (
                "endpoint config",
                "list_endpoint_configs",
                "EndpointConfigs",
                "EndpointConfigName",
                "EndpointConfigArn",
            ),
            ("model", "list_models", "Models", "ModelName", "ModelArn"),
        )
    }
    where = target.describe()
    if not any(found.values()):
        typer.echo(f"nothing tagged {MODEL_TAG}={model} in {where}")
        return
    out = console()
    out.print(f"Tagged {MODEL_TAG}={model} in {where}:")
    for kind, names in found.items():
        for name in names:
            out.print(f"  {kind:<16} {name}")
    if not yes and not typer.confirm("Delete all of these?", default=False):
        fail("nothing deleted")
    failures = _delete(target, found)
    counts = ", ".join(f"{len(v)} {k}{'s' if len(v) != 1 else ''}" for k, v in found.items())
    if failures:
        for failure in failures:
            typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(1)
    typer.echo(f"teardown of {model}: deleted {counts}")


def _delete(target: Target, found: dict[str, list[str]]) -> list[str]:
    """Delete endpoints (scaling targets first), then configs, then models; go on past failures and return them."""
    from botocore.exceptions import BotoCoreError, ClientError

    sagemaker = target.client("sagemaker")
    scaling = target.client("application-autoscaling")
    failures: list[str] = []

    def attempt(what: str, call: Any, **kwargs: Any) -> bool:
        try:
            call(**kwargs)
        except ClientError as exc:
            failures.append(f"{what}: {code_of(exc)}: {message_of(exc)}")
            return False
        except BotoCoreError as exc:
            failures.append(f"{what}: {exc}")
            return False
        typer.echo(f"deleted {what}" if not what.startswith("scaling") else f"deregistered {what}")
        return True

    for endpoint in found["endpoint"]:
        try:
            resources = _scaling_targets(target, endpoint)
        except (ClientError, BotoCoreError) as exc:
            failures.append(f"listing the scaling targets of endpoint {endpoint}: {message_of(exc)}")
            continue
        # SageMaker refuses to delete an endpoint whose variants are still scalable targets.
        deregistered = [
            attempt(
                f"scaling target {resource}",
                scaling.deregister_scalable_target,
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )
            for resource in resources
        ]
        if all(deregistered):
            attempt(f"endpoint {endpoint}", sagemaker.delete_endpoint, EndpointName=endpoint)
    for config in found["endpoint config"]:
        attempt(f"endpoint config {config}", sagemaker.delete_endpoint_config, EndpointConfigName=config)
    for name in found["model"]:
        attempt(f"model {name}", sagemaker.delete_model, ModelName=name)
    return failures
