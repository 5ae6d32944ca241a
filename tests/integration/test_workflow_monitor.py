"""The monitor on the local cloud with the real template: a model trained, registered with its baselines and
deployed with data capture, clients sending it drifted requests (and ground truth for them), then its monitor
run by hand.

Reports in Model Monitor's layout, violations, per-feature CloudWatch metrics, model quality from the ground
truth and a MonitoringAlert on the topic.
"""

from __future__ import annotations

import json

import pytest

from .conftest import finished_execution, wait_for
from .workflow import generate, rollout_config, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"


def drifted_rows(count: int) -> list[tuple[str, int]]:
    """The example's customers, charged three times as much: a shift no hour of undrifted traffic shows; with
    their labels."""
    frame = generate(count, seed=31)
    frame["monthly_charges"] = frame["monthly_charges"] * 3
    features = frame.drop(columns=["target"]).itertuples(index=False)
    return [(",".join(str(v) for v in row), int(t)) for row, t in zip(features, frame["target"], strict=True)]


def test_drifted_requests_are_reported_published_and_notified(rollout_app, cloud):
    app = rollout_app
    # Given a model trained and registered with its baseline, and deployed with data capture
    model = unique("mon")
    config = rollout_config(model)
    config["monitoring"] = {"schedule": "rate(7 days)"}  # not due during the test (an hour is a minute here)
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    (package,) = app.packages(model)
    baseline = package["DriftCheckBaselines"]["ModelDataQuality"]
    assert baseline == package["ModelMetrics"]["ModelDataQuality"]
    quality = package["ModelMetrics"]["ModelQuality"]  # from train.py's validation_predictions.csv
    assert quality["Statistics"]["S3Uri"].endswith(f"/monitoring/{model}/baseline/1/model_quality/statistics.json")
    assert baseline["Statistics"]["S3Uri"] == f"s3://{app.bucket}/monitoring/{model}/baseline/1/statistics.json"
    schedule = cloud.client("scheduler").get_schedule(Name=f"shepherd-rotest-monitor-{model}")
    assert schedule["ScheduleExpression"] == "rate(7 days)"
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"

    # When clients send it drifted requests, ground truth arrives for them, and the monitor is run by hand
    runtime = cloud.client("sagemaker-runtime")
    labels = []
    for number, (row, label) in enumerate(drifted_rows(200)):
        runtime.invoke_endpoint(EndpointName=model, ContentType="text/csv", Body=row, InferenceId=f"q-{number}")
        truth = {
            "groundTruthData": {"data": str(label), "encoding": "CSV"},
            "eventMetadata": {"eventId": f"q-{number}"},
        }
        labels.append(json.dumps(truth | {"eventVersion": "0"}))
    wait_for(lambda: app.s3.list_objects_v2(Bucket=app.bucket, Prefix=f"capture/{model}/").get("KeyCount"))
    captured = app.s3.list_objects_v2(Bucket=app.bucket, Prefix=f"capture/{model}/")["Contents"][0]["Key"]
    hour = "/".join(captured.split("/")[-5:-1])  # the capture's yyyy/mm/dd/hh, on the local cloud's clock
    app.s3.put_object(Bucket=app.bucket, Key=f"feedback/{model}/{hour}/labels.jsonl", Body="\n".join(labels).encode())
    started = app.sfn.start_execution(
        stateMachineArn=app.outputs["MonitorStateMachineArn"],
        name=f"{model}-by-hand",
        input=json.dumps({"model": model, "trigger": "manual"}),
    )
    finished = finished_execution(cloud, started["executionArn"], timeout=60)

    # Then the run checked the captured requests against the baseline and found the drift
    assert finished["status"] == "SUCCEEDED", finished
    result = json.loads(finished["output"])
    assert (result["status"], result["package"], result["notify"]) == ("checked", package["ModelPackageArn"], True)
    assert result["records"] == 200
    folder = result["report"].removeprefix(f"s3://{app.bucket}/")
    listed = app.s3.list_objects_v2(Bucket=app.bucket, Prefix=folder)["Contents"]
    assert {o["Key"].removeprefix(folder) for o in listed} == {
        "statistics.json",
        "constraint_violations.json",
        "alert.json",
        "model_quality/statistics.json",
        "model_quality/constraint_violations.json",
    }
    assert (result["quality"]["status"], result["quality"]["labelled"]) == ("checked", 200)
    violations = json.loads(
        app.s3.get_object(Bucket=app.bucket, Key=f"{folder}constraint_violations.json")["Body"].read()
    )
    drifted = {
        v["feature_name"] for v in violations["violations"] if v["constraint_check_type"] == "baseline_drift_check"
    }
    assert "monthly_charges" in drifted
    # per-feature metrics as Model Monitor names them, for the endpoint and the model's schedule
    metrics = cloud.client("cloudwatch").list_metrics(
        Namespace=NAMESPACE, Dimensions=[{"Name": "Endpoint", "Value": model}]
    )["Metrics"]
    assert "feature_baseline_drift_monthly_charges" in {m["MetricName"] for m in metrics}
    assert {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "MonitoringSchedule"} == {
        f"shepherd-rotest-monitor-{model}"
    }
    # and model quality in Model Monitor's namespace for it
    quality_metrics = cloud.client("cloudwatch").list_metrics(
        Namespace="aws/sagemaker/Endpoints/model-metrics", Dimensions=[{"Name": "Endpoint", "Value": model}]
    )["Metrics"]
    assert {"accuracy", "auc", "f1"} <= {m["MetricName"] for m in quality_metrics}
    # and a person was told, reason first
    note = app.notifications("MonitoringAlert", model)
    assert list(note)[:3] == ["reason", "detail", "event"]
    assert "monthly_charges" in note["reason"]
    assert note["report"] == result["report"]

    # When the model's schedule fires, its run finds nothing new to read
    def runs() -> set[str]:
        listed = app.sfn.list_executions(stateMachineArn=app.outputs["MonitorStateMachineArn"])["executions"]
        return {e["executionArn"] for e in listed}

    before = runs()
    cloud.scheduler.trigger(f"shepherd-rotest-monitor-{model}")
    (scheduled,) = wait_for(lambda: runs() - before)
    again = finished_execution(cloud, scheduled, timeout=60)
    assert again["status"] == "SUCCEEDED", again
    assert json.loads(again["output"])["trigger"] == "schedule"
