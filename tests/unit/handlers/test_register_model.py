"""RegisterModel and EvaluateModel: one package per run whatever the retries; gates against the registry's champion."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from shepherd.errors import InvalidInput

from tests.tarballs import tar_gz

from .conftest import BUCKET, IDEMPOTENCY_TABLE, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
MODEL_FILES = {"model.joblib": b"a fitted forest"}
CODE_FILES = {"train.py": b"print('train')\n", "inference.py": b"def model_fn(model_dir):\n    return None\n"}


def key_of(uri: str) -> str:
    return uri.removeprefix(f"s3://{BUCKET}/")


@pytest.fixture(autouse=True)
def trained_run(aws: Cloud) -> dict[str, Any]:
    """The sample run's artifacts: the training job's model.tar.gz and PrepareTraining's sourcedir.tar.gz."""
    event = sample_event("register_model")
    aws.put(key_of(event["job"]["model_data_url"]), tar_gz(MODEL_FILES))
    aws.put(key_of(event["source_uri"]), tar_gz(CODE_FILES))
    return event


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
    real = register_model.sagemaker.create_model_package

    def record_token(request: dict[str, Any]) -> str:
        sent.append(request["ClientToken"])
        return real(request)

    monkeypatch.setattr(register_model.sagemaker, "create_model_package", record_token)
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


def _validation_rows(aws: Cloud, event: dict[str, Any]) -> None:
    """The run's lineage.json naming one validation file with a target column, as PrepareTraining writes it."""
    key = "training/churn/coldstart/validation/validation.csv"
    rows = "tenure,spend,target\n" + "".join(f"{i},{i * 1.5},{i % 2}\n" for i in range(20))
    version = aws.put(key, rows)
    lineage = {
        "dataset": f"s3://{BUCKET}/training/churn/coldstart/",
        "data": [{"key": key, "version_id": version, "size": len(rows)}],
    }
    aws.put(key_of(event["lineage_uri"]), json.dumps(lineage))


def test_with_an_approved_champion_evaluate_plans_both_models_on_the_same_rows(
    aws: Cloud, register_model: ModuleType, evaluate_model: ModuleType
) -> None:
    # Given an Approved champion, and a candidate whose run has a validation channel with a target column
    champion = register_model.handler(sample_event("register_model"), aws.context)
    event = sample_event("evaluate_model")
    event["config"]["training"]["target_column"] = "target"
    _validation_rows(aws, event)
    # When Evaluate runs
    result = evaluate_model.handler(event, aws.context)
    # Then it asks for both models to score the candidate's validation rows, and SageMaker has both models
    assert (result["compare"], result["champion_arn"]) == (True, champion["model_package_arn"])
    assert result["comparison"]["rows"] == 20
    for side in ("candidate", "champion"):
        name = result["comparison"][side]["model_name"]
        assert aws.sagemaker.describe_model(ModelName=name)["ModelName"] == name
    assert aws.read("artifacts/churn/churn-coldstart-4be2d1a97c03f518/comparison/features.csv").startswith(b"0,0.0\n")


def test_without_a_target_column_the_champion_cannot_be_compared_and_the_candidate_is_rejected(
    aws: Cloud, register_model: ModuleType, evaluate_model: ModuleType
) -> None:
    champion = register_model.handler(sample_event("register_model"), aws.context)
    result = evaluate_model.handler(sample_event("evaluate_model"), aws.context)
    assert (result["passed"], result["compare"]) == (False, False)
    assert result["champion_arn"] == champion["model_package_arn"]
    assert "not compared with the champion: training.target_column is not set" in result["summary"]


def test_the_package_carries_the_champion_comparison(aws: Cloud, register_model: ModuleType) -> None:
    event = sample_event("register_model") | {
        "comparison": {
            "shepherd:problem": "classification",
            "shepherd:paired-rows": "1000",
            "shepherd:paired-disagreement": "0.084",
            "shepherd:evaluation": "s3://bucket/artifacts/churn/run/evaluation.json",
        }
    }
    result = register_model.handler(event, aws.context)
    metadata = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])[
        "CustomerMetadataProperties"
    ]
    assert {k: metadata[k] for k in event["comparison"]} == event["comparison"]


def test_the_package_serves_the_model_repacked_with_its_code_beside_the_runs_source(
    aws: Cloud, register_model: ModuleType, trained_run: dict[str, Any]
) -> None:
    # Given a run whose training job left model.tar.gz and whose PrepareTraining left sourcedir.tar.gz
    # When Register runs
    result = register_model.handler(trained_run, aws.context)
    # Then the package serves a new model.tar.gz under the run's artifacts: the model, and the code under code/
    container = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])[
        "InferenceSpecification"
    ]["Containers"][0]
    repacked = trained_run["source_uri"].removesuffix("sourcedir.tar.gz") + "model.tar.gz"
    assert container["ModelDataUrl"] == repacked
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    with tarfile.open(fileobj=io.BytesIO(aws.read(key_of(repacked))), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert files == MODEL_FILES | {f"code/{name}": data for name, data in CODE_FILES.items()}
    assert aws.s3.head_object(Bucket=BUCKET, Key=key_of(repacked))["ContentType"] == "application/gzip"


def test_a_model_archive_with_a_link_registers_nothing(
    aws: Cloud, register_model: ModuleType, trained_run: dict[str, Any]
) -> None:
    # Given a training job whose model directory held a symbolic link out of it
    aws.put(key_of(trained_run["job"]["model_data_url"]), tar_gz(MODEL_FILES, symlinks={"leak": "/etc/passwd"}))
    # When Register runs, then it fails as invalid input naming the member, and no package exists
    with pytest.raises(InvalidInput, match=r"member 'leak' is a link"):
        register_model.handler(trained_run, aws.context)
    assert aws.sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


# ---------------------------------------------------------------- the monitoring baseline and schedule


def _training_data(aws: Cloud, event: dict[str, Any], csv: str) -> None:
    """The run's lineage.json naming one training file, as PrepareTraining writes it."""
    key = "training/churn/coldstart/train/data.csv"
    version = aws.put(key, csv)
    lineage = {**event["lineage"], "data": [{"key": key, "version_id": version, "size": len(csv)}]}
    aws.put(key_of(event["lineage_uri"]), json.dumps(lineage))


def test_the_package_references_the_baseline_of_its_training_features(aws: Cloud, register_model: ModuleType) -> None:
    # Given a run trained on data with a target column
    event = sample_event("register_model")
    event["config"]["training"]["target_column"] = "target"
    rows = "\n".join(f"{i % 7},{(i * 13) % 100 / 10},{'ab'[i % 2]},{i % 2}" for i in range(200))
    _training_data(aws, event, "tenure,spend,plan,target\n" + rows + "\n")
    # When Register runs
    result = register_model.handler(event, aws.context)
    # Then the package names statistics.json and constraints.json of the features (not the target), under its version
    described = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    prefix = f"s3://{BUCKET}/monitoring/churn/baseline/1/"
    quality = {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"{prefix}statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": f"{prefix}constraints.json"},
    }
    assert described["DriftCheckBaselines"] == described["ModelMetrics"] == {"ModelDataQuality": quality}
    statistics = json.loads(aws.read("monitoring/churn/baseline/1/statistics.json"))
    assert [f["name"] for f in statistics["features"]] == ["tenure", "spend", "plan"]
    assert statistics["dataset"]["item_count"] == 200
    assert described["CustomerMetadataProperties"]["shepherd:baseline"] == prefix
    assert "monitoring/churn/baseline/1/reference.json" in aws.keys("monitoring/")


def test_the_package_references_the_model_quality_baseline_of_its_validation_predictions(
    aws: Cloud, register_model: ModuleType
) -> None:
    # Given a run whose training script wrote its validation predictions into its output data
    event = sample_event("register_model")
    event["config"]["training"]["target_column"] = "target"
    _training_data(aws, event, "tenure,target\n" + "\n".join(f"{i % 7},{i % 2}" for i in range(50)) + "\n")
    rows = "\n".join(f"{i % 2},{0.8 if (i % 2) == (i % 5 > 0) else 0.2:.2f}" for i in range(300))
    output = event["job"]["model_data_url"].rsplit("/", 1)[0] + "/output.tar.gz"
    aws.put(key_of(output), tar_gz({"validation_predictions.csv": ("label,probability\n" + rows + "\n").encode()}))
    # When Register runs
    result = register_model.handler(event, aws.context)
    # Then the package also names model quality's statistics and constraints, beside the data baseline
    described = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    prefix = f"s3://{BUCKET}/monitoring/churn/baseline/1/model_quality/"
    expected = {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"{prefix}statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": f"{prefix}constraints.json"},
    }
    for section in ("DriftCheckBaselines", "ModelMetrics"):
        assert described[section]["ModelQuality"] == expected
        assert "ModelDataQuality" in described[section]
    statistics = json.loads(aws.read("monitoring/churn/baseline/1/model_quality/statistics.json"))
    assert statistics["dataset"]["item_count"] == 300
    assert statistics["binary_classification_metrics"]["accuracy"]["value"] == pytest.approx(0.8)
    constraints = json.loads(aws.read("monitoring/churn/baseline/1/model_quality/constraints.json"))
    assert constraints["binary_classification_constraints"]["accuracy"]["comparison_operator"] == "LessThanThreshold"
    assert described["CustomerMetadataProperties"]["shepherd:quality_baseline"] == prefix


def test_a_run_without_validation_predictions_is_registered_and_says_so(aws: Cloud, register_model: ModuleType) -> None:
    # Given a run whose training job wrote no output data
    event = sample_event("register_model")
    # When Register runs, then the package exists without a model-quality baseline, and its metadata says why
    result = register_model.handler(event, aws.context)
    described = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    assert "ModelQuality" not in (described.get("ModelMetrics") or {})
    assert "no output data" in described["CustomerMetadataProperties"]["shepherd:quality_baseline"]


def test_a_baseline_that_cannot_be_made_does_not_lose_the_registration(aws: Cloud, register_model: ModuleType) -> None:
    # Given training data without the configured target column
    event = sample_event("register_model")
    event["config"]["training"]["target_column"] = "churned"
    _training_data(aws, event, "a,b\n1,2\n")
    # When Register runs, then the package exists, without baselines, and says why
    result = register_model.handler(event, aws.context)
    described = aws.sagemaker.describe_model_package(ModelPackageName=result["model_package_arn"])
    assert "DriftCheckBaselines" not in described
    assert "churned" in described["CustomerMetadataProperties"]["shepherd:baseline"]
    assert aws.keys("monitoring/") == set()


def test_registration_schedules_the_models_monitor_as_its_config_says(aws: Cloud, register_model: ModuleType) -> None:
    # Given a model whose config monitors every two hours
    event = sample_event("register_model")
    event["config"]["monitoring"] = {"schedule": "rate(2 hours)"}
    # When it is registered
    register_model.handler(event, aws.context)
    # Then its schedule starts the monitor state machine for it, with the stack's role
    schedule = boto3.client("scheduler", region_name="us-east-1").get_schedule(Name="shepherd-test-monitor-churn")
    assert schedule["ScheduleExpression"] == "rate(2 hours)"
    assert schedule["Target"]["Arn"].endswith(":stateMachine:shepherd-test-monitor")
    assert json.loads(schedule["Target"]["Input"]) == {"model": "churn", "trigger": "schedule"}


def test_turning_monitoring_off_deletes_the_schedule(aws: Cloud, register_model: ModuleType) -> None:
    register_model.handler(sample_event("register_model"), aws.context)
    event = sample_event("register_model") | {"run": "churn-later-run"}
    event["config"]["monitoring"] = {"enabled": False}
    register_model.handler(event, aws.context)
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == []
