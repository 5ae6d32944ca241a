"""The seed's Model Monitor code (its section 4, monitoring) through the SageMaker Python SDK v2 on the local cloud.

The seed's calls are unchanged but for one correction also made in test_seed_endpoint_workflows.py: the monitor
gets a session whose only difference from the stock one is its poll interval. The stock session tails a processing
job's logs by describing it every 30 s, so each ``suggest_baseline`` would last at least 30 s however fast the job.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from tests.event_contract import assert_documented

from . import test_seed_endpoint_workflows as seed_workflows
from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAST_POLL_SECONDS = 0.5
SEED_CRON = "cron(0 * * * ? *)"
ANALYZER = "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
FINISHED = {"Completed", "CompletedWithViolations", "Failed", "Stopped"}
FEATURES, ROLE = seed_workflows.FEATURES, seed_workflows.ROLE
# The seed's fitted estimator and its data, as the endpoint workflows make them (on this module's session).
bucket, iris_train, estimator = seed_workflows.bucket, seed_workflows.iris_train, seed_workflows.estimator


@pytest.fixture(scope="module")
def session(cloud):
    """A SageMaker session that polls endpoints and processing jobs every 0.5 s."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker

    class FastPollSession(sagemaker.Session):
        def wait_for_endpoint(self, endpoint, poll=FAST_POLL_SECONDS, live_logging=False):
            return super().wait_for_endpoint(endpoint, poll=FAST_POLL_SECONDS, live_logging=live_logging)

        def logs_for_processing_job(self, job_name, wait=False, poll=10):
            if wait:
                self.wait_for_processing_job(job_name, poll=FAST_POLL_SECONDS)
            return super().logs_for_processing_job(job_name, wait=wait, poll=FAST_POLL_SECONDS)

    boto_session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    return FastPollSession(boto_session)


def _state_changes(cloud, name: str) -> tuple[Any, str]:
    """An SQS queue receiving this test's processing-job state changes through an EventBridge rule."""
    sqs = cloud.client("sqs")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = cloud.client("events")
    pattern = {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Processing Job State Change"]}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return sqs, queue_url


def test_seed_baseline_schedule_and_hourly_drift_check(cloud, session, bucket, estimator, iris_train, tmp_path):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model_monitor import DataCaptureConfig, DefaultModelMonitor
    from sagemaker.serializers import CSVSerializer

    prefix = f"seed-mm-{uuid.uuid4().hex[:8]}"
    sqs, queue_url = _state_changes(cloud, prefix)
    s3 = boto3.client("s3", region_name="us-east-1")
    # Given the seed's baseline dataset: the training data as the endpoint receives it, with a header
    baseline = tmp_path / "train.csv"
    pd.read_csv(iris_train)[FEATURES].to_csv(baseline, index=False)
    s3.upload_file(str(baseline), bucket, f"{prefix}/baseline/train.csv")

    # ... and the seed's deploy with data capture
    data_capture_config = DataCaptureConfig(
        enable_capture=True, sampling_percentage=100, destination_s3_uri=f"s3://{bucket}/{prefix}/data-capture"
    )
    model = estimator.create_model(entry_point="inference.py")
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.xlarge",
        data_capture_config=data_capture_config,
        serializer=CSVSerializer(),
        deserializer=JSONDeserializer(),
    )

    # When the seed's monitor suggests a baseline
    monitor = DefaultModelMonitor(
        role=ROLE,
        instance_count=1,
        instance_type="ml.m5.xlarge",
        volume_size_in_gb=20,
        max_runtime_in_seconds=3600,
        sagemaker_session=session,
    )
    started = time.monotonic()
    monitor.suggest_baseline(
        baseline_dataset=f"s3://{bucket}/{prefix}/baseline/train.csv", dataset_format={"csv": {"header": True}}
    )
    print(f"\n[timing] suggest_baseline: {time.monotonic() - started:.1f}s")

    # Then the SDK reads back Model Monitor's baseline files: one entry per feature
    statistics = monitor.baseline_statistics().body_dict
    constraints = monitor.suggested_constraints().body_dict
    assert [f["name"] for f in statistics["features"]] == FEATURES
    assert statistics["dataset"]["item_count"] == 150
    assert [f["name"] for f in constraints["features"]] == FEATURES
    baselining = monitor.describe_latest_baselining_job()
    assert baselining["ProcessingJobStatus"] == "Completed"
    assert baselining["AppSpecification"]["ImageUri"] == ANALYZER

    # When the seed's hourly schedule is created
    monitor.create_monitoring_schedule(
        endpoint_input=predictor.endpoint_name,
        output_s3_uri=f"s3://{bucket}/{prefix}/monitoring-output",
        schedule_cron_expression=SEED_CRON,
    )
    schedule = monitor.describe_schedule()
    assert schedule["MonitoringScheduleStatus"] == "Scheduled"
    assert schedule["MonitoringScheduleConfig"]["ScheduleConfig"]["ScheduleExpression"] == SEED_CRON

    # ... and the endpoint serves the training rows with sepal length shifted by 5 cm, early enough in an hour that
    # all of them are captured in that hour
    drifted = pd.read_csv(iris_train)[FEATURES].assign(sepal_length=lambda f: f.sepal_length + 5.0).values.tolist()
    wait_for(lambda: cloud.clock.now().minute < 50, timeout=15, interval=0.1)
    served_at = cloud.clock.now()
    for start in range(0, len(drifted), 10):
        predictor.predict(drifted[start : start + 10])
    scheduled = served_at.replace(minute=0, second=0, microsecond=0) + pd.Timedelta(hours=1).to_pytimedelta()

    # Then after the next hour the schedule runs an execution over that hour's capture
    client = session.sagemaker_client

    def finished() -> list[dict[str, Any]]:
        # (a schedule created late in an hour first runs over the hour before the traffic: "Job inputs had no data")
        summaries = client.list_monitoring_executions(MonitoringScheduleName=monitor.monitoring_schedule_name)
        return [
            e
            for e in summaries["MonitoringExecutionSummaries"]
            if e["ScheduledTime"] == scheduled and e["MonitoringExecutionStatus"] in FINISHED
        ]

    waited = time.monotonic()
    (execution,) = wait_for(finished, timeout=60 * (61 - served_at.minute) / 60 + 30, interval=0.25)
    print(f"[timing] wait for the hour's execution ({served_at:%M:%S} virtual): {time.monotonic() - waited:.1f}s")
    assert execution["MonitoringExecutionStatus"] == "CompletedWithViolations", execution.get("FailureReason")
    assert execution["EndpointName"] == predictor.endpoint_name

    # ... whose constraint_violations.json flags the drifted feature, read back by the SDK
    violations = monitor.latest_monitoring_constraint_violations().body_dict["violations"]
    flagged = {v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"}
    assert flagged == {"sepal_length"}, violations
    assert monitor.latest_monitoring_statistics().body_dict["dataset"]["item_count"] == 150

    # ... under Model Monitor's output layout <output>/<endpoint>/<schedule>/yyyy/mm/dd/hh/
    schedule_name = monitor.monitoring_schedule_name
    folder = f"{prefix}/monitoring-output/{predictor.endpoint_name}/{schedule_name}/{scheduled:%Y/%m/%d/%H}"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])}
    assert keys == {f"{folder}/statistics.json", f"{folder}/constraint_violations.json"}

    # ... and the per-feature metrics Model Monitor publishes, for this endpoint and schedule
    dimensions = [
        {"Name": "Endpoint", "Value": predictor.endpoint_name},
        {"Name": "MonitoringSchedule", "Value": schedule_name},
    ]
    metrics = cloud.client("cloudwatch").list_metrics(
        Namespace="aws/sagemaker/Endpoints/data-metrics", MetricName="feature_baseline_drift_sepal_length"
    )["Metrics"]
    assert [m["Dimensions"] for m in metrics] == [dimensions]

    # ... and the execution's processing job announced its state changes in AWS's documented shape
    job_name = execution["ProcessingJobArn"].rsplit("/", 1)[-1]

    def completed() -> dict[str, Any] | None:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        seen.extend(json.loads(m["Body"]) for m in got)
        return next(
            (
                e
                for e in seen
                if e["detail"]["ProcessingJobName"] == job_name and e["detail"]["ProcessingJobStatus"] == "Completed"
            ),
            None,
        )

    seen: list[dict[str, Any]] = []
    event = wait_for(completed, timeout=10)
    for each in seen:
        assert_documented(each)
    assert event["resources"] == [execution["ProcessingJobArn"]]
    assert event["detail"]["MonitoringScheduleArn"] == schedule["MonitoringScheduleArn"]

    monitor.delete_monitoring_schedule()
    predictor.delete_endpoint()


def _embedded_schedule(output_bucket: str, image: str = ANALYZER) -> dict[str, Any]:
    return {
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
        "MonitoringJobDefinition": {
            "MonitoringInputs": [
                {"EndpointInput": {"EndpointName": "absent", "LocalPath": "/opt/ml/processing/input"}}
            ],
            "MonitoringOutputConfig": {
                "MonitoringOutputs": [
                    {
                        "S3Output": {
                            "S3Uri": f"s3://{bucket}/monitoring-output",
                            "LocalPath": "/opt/ml/processing/output",
                        }
                    }
                ]
            },
            "MonitoringResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
            },
            "MonitoringAppSpecification": {"ImageUri": image},
            "RoleArn": ROLE,
        },
    }


def test_the_closed_setting_refuses_monitoring_as_for_a_new_account(cloud, session, bucket, monkeypatch):
    # Given an account without Model Monitor (the local cloud's setting)
    monkeypatch.setenv("SHEPHERD_LOCAL_MODEL_MONITOR", "closed")
    client = session.sagemaker_client
    # When a schedule is created, Then it is refused
    with pytest.raises(ClientError) as refused:
        client.create_monitoring_schedule(
            MonitoringScheduleName=f"closed-{uuid.uuid4().hex[:8]}", MonitoringScheduleConfig=_embedded_schedule(bucket)
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "no longer open to new customers" in refused.value.response["Error"]["Message"]
    # ... and so is the SDK's first step, the data quality job definition
    from sagemaker.model_monitor import DefaultModelMonitor

    monitor = DefaultModelMonitor(role=ROLE, sagemaker_session=session)
    with pytest.raises(ClientError, match="no longer open to new customers"):
        monitor.create_monitoring_schedule(
            endpoint_input="absent", output_s3_uri=f"s3://{bucket}/out", statistics=None, constraints=None
        )


def test_a_processing_image_other_than_model_monitors_is_refused(cloud, session, bucket):
    sklearn = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    with pytest.raises(ClientError) as refused:
        session.sagemaker_client.create_processing_job(
            ProcessingJobName=f"sklearn-{uuid.uuid4().hex[:8]}",
            AppSpecification={"ImageUri": sklearn},
            ProcessingResources={
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
            },
            RoleArn=ROLE,
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert ANALYZER in refused.value.response["Error"]["Message"]


def test_model_quality_monitor_baselines_merges_ground_truth_and_flags_lost_quality(
    cloud, session, bucket, estimator, iris_train, tmp_path
):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model_monitor import (
        CronExpressionGenerator,
        DataCaptureConfig,
        EndpointInput,
        ModelQualityMonitor,
    )
    from sagemaker.model_monitor.dataset_format import DatasetFormat
    from sagemaker.serializers import CSVSerializer

    prefix = f"seed-mq-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    # Given the seed's model deployed with data capture; it answers {"predictions": [P(setosa)]}
    predictor = estimator.create_model(entry_point="inference.py").deploy(
        initial_instance_count=1,
        instance_type="ml.m5.xlarge",
        data_capture_config=DataCaptureConfig(
            enable_capture=True, sampling_percentage=100, destination_s3_uri=f"s3://{bucket}/{prefix}/data-capture"
        ),
        serializer=CSVSerializer(),
        deserializer=JSONDeserializer(),
    )
    frame = pd.read_csv(iris_train)
    probabilities = predictor.predict(frame[FEATURES].values.tolist())["predictions"]

    # ... and a baseline dataset of its validation predictions with their labels
    validation = pd.DataFrame(
        {"probability": probabilities, "prediction": [int(p >= 0.5) for p in probabilities], "label": frame.target}
    )
    validation.to_csv(tmp_path / "validation.csv", index=False)
    s3.upload_file(str(tmp_path / "validation.csv"), bucket, f"{prefix}/baseline/validation.csv")

    # When ModelQualityMonitor suggests a baseline for a binary classifier
    monitor = ModelQualityMonitor(role=ROLE, instance_count=1, instance_type="ml.m5.xlarge", sagemaker_session=session)
    monitor.suggest_baseline(
        baseline_dataset=f"s3://{bucket}/{prefix}/baseline/validation.csv",
        dataset_format=DatasetFormat.csv(header=True),
        problem_type="BinaryClassification",
        inference_attribute="prediction",
        probability_attribute="probability",
        ground_truth_attribute="label",
        wait=True,
        logs=False,
    )

    # Then its constraints are model quality's, for a binary classifier
    constraints = monitor.suggested_constraints().body_dict
    assert constraints["binary_classification_constraints"]["accuracy"]["threshold"] == 1.0

    # When the endpoint serves one row per request, each with an InferenceId, and labels come back for them, wrong
    # (every label flipped: the world changed under the model)
    rows = frame.iloc[::3]
    for index, row in rows.iterrows():
        predictor.predict([row[FEATURES].tolist()], inference_id=f"iris-{index}")
    collected = cloud.clock.now()
    labels = [
        json.dumps(
            {
                "groundTruthData": {"data": str(1 - int(row.target)), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"iris-{index}"},
                "eventVersion": "0",
            }
        )
        for index, row in rows.iterrows()
    ]
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}/ground-truth/{collected:%Y/%m/%d/%H}/labels.jsonl", Body="\n".join(labels)
    )

    # ... and a one-off (NOW) model-quality schedule checks the last hour
    monitor.create_monitoring_schedule(
        endpoint_input=EndpointInput(
            endpoint_name=predictor.endpoint_name,
            destination="/opt/ml/processing/input_data",
            probability_attribute="predictions",
            probability_threshold_attribute=0.5,
        ),
        ground_truth_input=f"s3://{bucket}/{prefix}/ground-truth",
        problem_type="BinaryClassification",
        output_s3_uri=f"s3://{bucket}/{prefix}/monitoring-output",
        schedule_cron_expression=CronExpressionGenerator.now(),
        data_analysis_start_time="-PT1H",
        data_analysis_end_time="-PT0H",
    )
    client = session.sagemaker_client
    definition = client.describe_model_quality_job_definition(JobDefinitionName=monitor.job_definition_name)
    assert definition["ModelQualityAppSpecification"]["ProblemType"] == "BinaryClassification"

    def finished() -> list[dict[str, Any]]:
        summaries = client.list_monitoring_executions(MonitoringScheduleName=monitor.monitoring_schedule_name)
        return [e for e in summaries["MonitoringExecutionSummaries"] if e["MonitoringExecutionStatus"] in FINISHED]

    waited = time.monotonic()
    (execution,) = wait_for(finished, timeout=120, interval=0.25)
    print(f"[timing] the NOW execution (merge, then analysis): {time.monotonic() - waited:.1f}s")

    # Then the execution merged the labels with the captured predictions and found the quality lost
    assert execution["MonitoringExecutionStatus"] == "CompletedWithViolations", execution.get("FailureReason")
    assert execution["MonitoringType"] == "ModelQuality"
    assert execution["ProcessingJobArn"].rsplit("/", 1)[-1].startswith("model-quality-monitoring-")
    statistics = monitor.latest_monitoring_statistics().body_dict
    assert statistics["dataset"]["item_count"] == len(rows)
    assert statistics["binary_classification_metrics"]["accuracy"]["value"] == 0.0
    violated = {v["metric_name"] for v in monitor.latest_monitoring_constraint_violations().body_dict["violations"]}
    assert {"accuracy", "auc"} <= violated
    metrics = cloud.client("cloudwatch").list_metrics(
        Namespace="aws/sagemaker/Endpoints/model-metrics", MetricName="accuracy"
    )["Metrics"]
    assert {"Name": "MonitoringSchedule", "Value": monitor.monitoring_schedule_name} in metrics[0]["Dimensions"]

    monitor.delete_monitoring_schedule()
    predictor.delete_endpoint()
