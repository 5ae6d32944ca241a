"""RegisterModel and EvaluateModel: one package per run whatever the retries; gates against the registry's champion."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from .conftest import IDEMPOTENCY_TABLE, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def register_model(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("register_model")


@pytest.fixture
def evaluate_model(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("evaluate_model")


def packages(aws: Cloud, group: str = "churn") -> list[dict[str, Any]]:
    return list(aws.sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"])


def test_registering_one_run_twice_returns_the_same_package(aws: Cloud, register_model: ModuleType) -> None:
    # Given a run that passed its gates
    event = sample_event("register_model")
    # When Register runs, and Step Functions retries it
    first = register_model.handler(event, aws.context)
    second = register_model.handler(sample_event("register_model"), LambdaContext(aws_request_id="retry"))
    # Then both answers name one package, and only one exists
    assert second == first
    assert [p["ModelPackageArn"] for p in packages(aws)] == [first["model_package_arn"]]
    stored = aws.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert [item["status"]["S"] for item in stored] == ["COMPLETED"]


def test_a_retry_after_a_lost_record_sends_the_same_client_token(
    aws: Cloud, register_model: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a first attempt that created its package but crashed before recording it
    sent: list[str] = []
    real = register_model.create_model_package

    def record_token(request: dict[str, Any]) -> str:
        sent.append(request["ClientToken"])
        return real(request)

    monkeypatch.setattr(register_model, "create_model_package", record_token)
    register_model.handler(sample_event("register_model"), aws.context)
    aws.dynamodb.delete_item(
        TableName=IDEMPOTENCY_TABLE, Key={"id": {"S": "register_model#" + sample_event("register_model")["run"]}}
    )
    # When Step Functions retries it
    register_model.handler(sample_event("register_model"), LambdaContext(aws_request_id="retry"))
    # Then the retry asks SageMaker with the same token (which answers with the package it created)
    assert len(sent) == 2
    assert sent[0] == sent[1]
    assert len(sent[0]) == 36


def test_another_run_registers_another_package(aws: Cloud, register_model: ModuleType) -> None:
    first = register_model.handler(sample_event("register_model"), aws.context)
    other = register_model.handler(sample_event("register_model") | {"run": "churn-other-run"}, aws.context)
    assert other["model_package_arn"] != first["model_package_arn"]
    assert len(packages(aws)) == 2


def test_the_package_carries_approval_metrics_and_lineage(aws: Cloud, register_model: ModuleType) -> None:
    event = sample_event("register_model")
    result = register_model.handler(event, aws.context)
    described = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    assert result["approval_status"] == described["ModelApprovalStatus"] == "Approved"  # the example is automatic
    metadata = described["CustomerMetadataProperties"]
    assert metadata["metric:validation:auc"] == repr(event["job"]["metrics"]["validation:auc"])
    assert metadata["shepherd:execution"] == event["run"]
    assert metadata["shepherd:lineage"] == event["lineage_uri"]


def test_manual_approval_registers_pending(aws: Cloud, register_model: ModuleType) -> None:
    event = sample_event("register_model")
    event["config"]["registry"]["approval"] = "manual"
    assert register_model.handler(event, aws.context)["approval_status"] == "PendingManualApproval"


def test_without_a_champion_only_the_thresholds_decide(aws: Cloud, evaluate_model: ModuleType) -> None:
    result = evaluate_model.handler(sample_event("evaluate_model"), aws.context)
    assert result["passed"] is True
    assert result["champion_arn"] is None


def test_a_candidate_worse_than_the_approved_champion_is_rejected(
    aws: Cloud, register_model: ModuleType, evaluate_model: ModuleType
) -> None:
    # Given an Approved champion registered with its metrics
    champion = register_model.handler(sample_event("register_model"), aws.context)
    # When a candidate with a lower AUC (still above the threshold) is evaluated
    event = sample_event("evaluate_model")
    event["job"]["metrics"]["validation:auc"] = 0.80
    result = evaluate_model.handler(event, aws.context)
    # Then it is rejected against the champion, which is named
    assert result["passed"] is False
    assert result["champion_arn"] == champion["model_package_arn"]
    assert "validation:auc = 0.8, must be at least" in result["summary"]
