"""BatchTransform on the local cloud with the real template: a file under batch/<model>/input/ is scored
by the champion with a real transform job, or refused with a reason, and never lost."""

from __future__ import annotations

import json

import pytest

from .conftest import finished_execution, wait_for
from .workflow import churn_config, generate, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(rollout_app):
    """The session's stack (conftest.rollout_app): each test scores for a model of its own."""
    return rollout_app


@pytest.fixture(scope="module")
def trained(app):
    """A model with an Approved package (the example config approves automatically), and no endpoint."""
    model = unique("scorer")
    app.upload_project(model, churn_config(model, approval="automatic"))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    return model


def _batch_run(app, key: str, timeout: float = 60.0) -> dict:
    """The BatchTransform execution started by the upload of key."""
    arn = app.outputs["BatchTransformStateMachineArn"]

    def started() -> list[dict]:
        return [
            e
            for e in app.sfn.list_executions(stateMachineArn=arn)["executions"]
            if json.loads(app.sfn.describe_execution(executionArn=e["executionArn"])["input"])["key"] == key
        ]

    (execution,) = wait_for(started, timeout=20)
    return finished_execution(app.cloud, execution["executionArn"], timeout=timeout)


def _keys(app, prefix: str) -> list[str]:
    return [o["Key"] for o in app.s3.list_objects_v2(Bucket=app.bucket, Prefix=prefix).get("Contents", [])]


def test_a_batch_file_is_scored_by_the_champion_and_moved_to_processed(app, trained):
    rows = generate(120, seed=11).drop(columns=["target"])
    body = rows.to_csv(index=False, header=False).encode()
    key = f"batch/{trained}/input/2026/11/customers.csv"
    app.s3.put_object(Bucket=app.bucket, Key=key, Body=body)

    execution = _batch_run(app, key)

    assert execution["status"] == "SUCCEEDED", execution
    assert _keys(app, f"batch/{trained}/input/") == []
    (processed,) = _keys(app, f"batch/{trained}/processed/")
    assert processed.endswith("2026__11__customers.csv")
    outputs = _keys(app, f"batch/{trained}/output/")
    (predictions,) = [k for k in outputs if k.endswith(".out")]
    scores = app.s3.get_object(Bucket=app.bucket, Key=predictions)["Body"].read().decode().split()
    assert len(scores) == 120
    assert all(0.0 <= float(s) <= 1.0 for s in scores)
    (summary_key,) = [k for k in outputs if k.endswith("_summary.json")]
    summary = json.loads(app.s3.get_object(Bucket=app.bucket, Key=summary_key)["Body"].read())
    assert summary["status"] == "Completed"
    assert summary["records"] == 120
    assert summary["model_package_arn"].endswith("/1")
    notification = app.notifications("BatchTransformCompleted", trained)
    assert notification["records"] == 120

    # And when those customers' outcomes arrive for the scored file (one label per record, in its order), the
    # monitor run by hand joins them with the scores by row and checks the model quality of the batch
    run = predictions.split("/")[-2]
    labels = "\n".join(str(t) for t in generate(120, seed=11)["target"]) + "\n"
    app.s3.put_object(Bucket=app.bucket, Key=f"feedback/{trained}/batch/{run}/customers.csv.labels", Body=labels)
    started = app.sfn.start_execution(
        stateMachineArn=app.outputs["MonitorStateMachineArn"],
        name=f"{trained}-batch-labels",
        input=json.dumps({"model": trained, "trigger": "manual"}),
    )
    finished = finished_execution(app.cloud, started["executionArn"], timeout=60)
    assert finished["status"] == "SUCCEEDED", finished
    (entry,) = json.loads(finished["output"])["batch_quality"]
    assert (entry["status"], entry["labelled"], entry["package"]) == ("checked", 120, summary["model_package_arn"])
    folder = entry["report"].removeprefix(f"s3://{app.bucket}/")
    assert folder == f"monitoring/{trained}/batch/{processed.rsplit('/', 1)[-1]}/model_quality/"
    assert sorted(k.removeprefix(folder) for k in _keys(app, folder)) == [
        "constraint_violations.json",
        "statistics.json",
    ]
    namespace = "aws/sagemaker/ModelMonitoring/model-metrics"  # published under the monitor's least-privilege role
    published = app.cloud.client("cloudwatch").list_metrics(Namespace=namespace)["Metrics"]
    assert {"accuracy", "auc"} <= {m["MetricName"] for m in published}


def test_a_malformed_batch_file_goes_to_failed_with_a_reason_and_a_notification(app, trained):
    key = f"batch/{trained}/input/broken.csv"
    app.s3.put_object(Bucket=app.bucket, Key=key, Body=b"1,2,3\n4,5\n")

    execution = _batch_run(app, key)

    assert execution["status"] == "FAILED"
    failed = _keys(app, f"batch/{trained}/failed/")
    (reason_key,) = [k for k in failed if k.endswith(".reason.txt")]
    reason = app.s3.get_object(Bucket=app.bucket, Key=reason_key)["Body"].read().decode()
    assert "line 2 has 2 fields" in reason
    assert [k for k in failed if k.endswith("broken.csv")]
    assert _keys(app, f"batch/{trained}/input/") == []
    notification = app.notifications("BatchTransformFailed", trained)
    assert notification["reason"].startswith(f"{key} failed: ")
    assert "line 2 has 2 fields" in notification["reason"]


def test_a_batch_file_for_a_model_without_an_approved_package_fails_clearly(app):
    model = unique("untrained")
    app.upload_project(model, churn_config(model, approval="automatic"))
    key = f"batch/{model}/input/a.csv"
    app.s3.put_object(Bucket=app.bucket, Key=key, Body=b"1,2\n")

    execution = _batch_run(app, key)

    assert execution["status"] == "FAILED"
    notification = app.notifications("BatchTransformFailed", model)
    assert "no Approved package" in notification["reason"]
    assert [k for k in _keys(app, f"batch/{model}/failed/") if k.endswith("a.csv")]
