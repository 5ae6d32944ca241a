"""The Model Registry's packages and the models made from them: shepherd.rollout.ports.Packages."""

from __future__ import annotations

from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.aws.sagemaker import create_model, describe_model, is_multi_model

__all__ = ["create_model", "describe_package", "reject_package", "serves_multi_model"]


def describe_package(package_arn: str) -> dict[str, Any]:
    with mapped(f"describing {package_arn}"):
        return dict(client("sagemaker").describe_model_package(ModelPackageName=package_arn))


def reject_package(package_arn: str, reason: str) -> None:
    with mapped(f"rejecting {package_arn}"):
        client("sagemaker").update_model_package(
            ModelPackageArn=package_arn, ModelApprovalStatus="Rejected", ApprovalDescription=reason[:1024]
        )


def serves_multi_model(model_name: str) -> bool:
    return is_multi_model(describe_model(model_name))
