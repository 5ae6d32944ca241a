"""Monitor: one run of a model's monitor against moto, and the notification of a run that failed."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from shepherd.monitor.constraints import suggest_constraints
from shepherd.monitor.dataset import Dataset
from shepherd.monitor.reference import build
from shepherd.monitor.statistics import profile

from .conftest import BUCKET, ROOT, Cloud

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
CONFIG = "framework: sklearn\nentry_point: train.py\ntraining: {target_column: target}\n"
FEATURES = ("tenure", "spend")
SCHEMA = json.loads(Path(ROOT, "schemas/notification.schema.json").read_text())


@pytest.fixture
def monitor(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("monitor")


def _columns(rows: int, shift: float, seed: int) -> dict[str, list[str | None]]:
    rng = random.Random(seed)
    return {name: [f"{rng.gauss(shift, 1.0):.4f}" for _ in range(rows)] for name in FEATURES}


@pytest.fixture
def served(aws: Cloud) -> str:
    """The churn model: its config, an Approved package with a baseline, and its endpoint in service."""
    aws.put("models/churn/shepherd.yaml", CONFIG)
    training = _columns(1000, 0.0, seed=1)
    statistics = profile(Dataset(columns=training), dataset_name="train")
    prefix = "monitoring/churn/baseline/1/"
    aws.put(f"{prefix}statistics.json", json.dumps(statistics))
    aws.put(f"{prefix}constraints.json", json.dumps(suggest_constraints(statistics)))
    aws.put(f"{prefix}reference.json", json.dumps(build(training).to_json()))
    quality = {
        "ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}statistics.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{prefix}constraints.json"},
        }
    }
    aws.sagemaker.create_model_package_group(ModelPackageGroupName="churn")
    container = {"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"}
    arn = aws.sagemaker.create_model_package(
        ModelPackageGroupName="churn",
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        DriftCheckBaselines=quality,
        ModelMetrics=quality,
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    role = "arn:aws:iam::123456789012:role/shepherd-test-sagemaker"
    aws.sagemaker.create_model(ModelName="churn-1", PrimaryContainer=container, ExecutionRoleArn=role)
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "churn-1",
        "InitialInstanceCount": 2,
        "InstanceType": "ml.m5.large",
    }
    aws.sagemaker.create_endpoint_config(EndpointConfigName="churn-1", ProductionVariants=[variant])
    aws.sagemaker.create_endpoint(EndpointName="churn", EndpointConfigName="churn-1")
    return str(arn)


def _capture(aws: Cloud, at: datetime, rows: int, shift: float) -> None:
    columns = _columns(rows, shift, seed=2)
    lines = []
    for i in range(rows):
        body = ",".join(str(columns[name][i]) for name in FEATURES)
        lines.append(
            json.dumps(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "text/csv",
                            "mode": "INPUT",
                            "data": body,
                            "encoding": "CSV",
                        }
                    },
                    "eventMetadata": {"eventId": f"e{i}", "inferenceTime": at.isoformat()},
                    "eventVersion": "0",
                }
            )
        )
    aws.put(f"capture/churn/churn/AllTraffic/{at:%Y/%m/%d/%H}/capture-{at:%M}.jsonl", "\n".join(lines) + "\n")


def test_a_run_reports_drift_publishes_metrics_and_asks_to_notify(aws: Cloud, served: str, monitor: ModuleType) -> None:
    # Given the last hour's capture, shifted from the training data
    now = datetime.now(UTC)
    _capture(aws, now - timedelta(minutes=1), 300, shift=3.0)
    # When the monitor runs by hand
    result = monitor.handler({"model": "churn", "trigger": "manual"}, aws.context)
    # Then the report folder holds Model Monitor's files and alert.json, and the metrics are published
    assert (result["status"], result["records"], result["package"]) == ("checked", 300, served)
    folder = result["report"].removeprefix(f"s3://{BUCKET}/")
    assert {k.removeprefix(folder) for k in aws.keys(folder)} == {
        "statistics.json",
        "constraint_violations.json",
        "alert.json",
    }
    checks = {
        v["constraint_check_type"] for v in json.loads(aws.read(f"{folder}constraint_violations.json"))["violations"]
    }
    assert "baseline_drift_check" in checks
    listed = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(
        Namespace="aws/sagemaker/Endpoints/data-metrics"
    )["Metrics"]
    assert {"feature_baseline_drift_tenure", "feature_baseline_drift_spend"} <= {m["MetricName"] for m in listed}
    assert result["notify"] is True
    assert list(result["notification"])[:3] == ["reason", "detail", "event"]
    assert result["notification"]["event"] == "MonitoringAlert"
    assert json.loads(aws.read("monitoring/churn/state.json"))["package"] == served


def test_a_model_without_an_endpoint_is_not_monitored_yet(aws: Cloud, monitor: ModuleType) -> None:
    aws.put("models/churn/shepherd.yaml", CONFIG)
    result = monitor.handler({"model": "churn"}, aws.context)
    assert (result["status"], result["notify"]) == ("no_endpoint", False)


def test_a_failed_run_is_told_in_one_line_without_a_stack_trace(monitor: ModuleType, aws: Cloud) -> None:
    cause = json.dumps(
        {
            "errorType": "InvalidInput",
            "errorMessage": "s3://bucket/models/churn/shepherd.yaml does not exist: no config for churn",
            "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n'],
        }
    )
    state: dict[str, Any] = {"model": "churn", "error": {"Error": "InvalidInput", "Cause": cause}}
    notice = monitor.handler(
        {"action": "describe_failure", "execution": "arn:aws:states:::execution:m:e", "state": state}, aws.context
    )
    assert list(notice)[:3] == ["reason", "detail", "event"]
    assert notice["event"] == "MonitoringFailed" in SCHEMA["properties"]["event"]["enum"]
    assert "no config for churn" in notice["reason"]
    assert "app.py" not in json.dumps(notice)
