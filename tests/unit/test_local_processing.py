"""The local Model Monitor's pure parts: when a schedule fires, what its execution runs, and the container contract."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from shepherd.monitor import container

from localcloud.sagemaker.control_plane import SageMakerError
from localcloud.sagemaker.monitoring import executions
from localcloud.sagemaker.monitoring.availability import ANALYZER_IMAGE, refuse_if_closed, refuse_unsupported_image

SEED_CRON = "cron(0 * * * ? *)"  # the seed's hourly schedule
FEATURES = ["sepal_length", "sepal_width"]


def _definition(**overrides: Any) -> dict[str, Any]:
    definition = {
        "JobDefinitionName": "dq",
        "DataQualityAppSpecification": {
            "ImageUri": ANALYZER_IMAGE,
            "Environment": {"publish_cloudwatch_metrics": "Enabled"},
        },
        "DataQualityJobInput": {
            "EndpointInput": {"EndpointName": "churn", "LocalPath": "/opt/ml/processing/input/endpoint"}
        },
        "DataQualityJobOutputConfig": {
            "MonitoringOutputs": [
                {"S3Output": {"S3Uri": "s3://b/monitoring-output", "LocalPath": "/opt/ml/processing/output"}}
            ]
        },
        "JobResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    return definition | overrides


# ------------------------------------------------------------------ cadence


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 12, 7, 17, 45, 12, tzinfo=UTC), datetime(2026, 12, 7, 18, 0, tzinfo=UTC)),
        (datetime(2026, 12, 7, 18, 0, 0, tzinfo=UTC), datetime(2026, 12, 7, 19, 0, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_the_seeds_hourly_cron_fires_on_the_next_hour(moment: datetime, expected: datetime) -> None:
    assert executions.next_scheduled(SEED_CRON, moment) == expected


def test_every_six_hours_from_five_fires_at_five_eleven_seventeen_and_twenty_three() -> None:
    moment, fired = datetime(2026, 12, 7, 0, 0, tzinfo=UTC), []
    for _ in range(4):
        moment = executions.next_scheduled("cron(0 5/6 ? * * *)", moment)
        fired.append(moment.hour)
    assert fired == [5, 11, 17, 23]


def test_scheduled_runs_start_within_model_monitors_0_to_20_minutes_spread_over_schedules() -> None:
    # Given 300 hourly schedules and the hour they are due
    scheduled = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    names = [f"monitoring-schedule-2026-12-07-17-{i:04d}" for i in range(300)]

    # When each one's execution starts
    delays = [executions.start_time(name, SEED_CRON, scheduled) - scheduled for name in names]

    # Then every start lies in AWS's documented delay, and the starts spread over it rather than sit on one minute
    assert all(timedelta(0) <= delay <= timedelta(minutes=20) for delay in delays)
    assert min(delays) < timedelta(minutes=2)
    assert max(delays) > timedelta(minutes=18)
    assert {delay.seconds // 60 for delay in delays} >= set(range(20))  # every minute of the window taken


def test_a_schedules_runs_start_at_the_same_delay_every_hour() -> None:
    first = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    delay = executions.start_time("drift-hourly", SEED_CRON, first) - first
    for hours in (1, 2, 24, 24 * 31):
        later = first + timedelta(hours=hours)
        assert executions.start_time("drift-hourly", SEED_CRON, later) - later == delay


def test_a_now_run_starts_at_once() -> None:
    moment = datetime(2026, 12, 7, 18, 7, 31, tzinfo=UTC)
    assert executions.start_time("adhoc", executions.NOW, moment) == moment


@pytest.mark.parametrize(
    "expression", ["cron(0 * ? * * *)", SEED_CRON, "cron(0 12 ? * * *)", "cron(0 17/12 ? * * *)", "NOW"]
)
def test_model_monitors_documented_expressions_are_accepted(expression: str) -> None:
    executions.check_expression(expression)


@pytest.mark.parametrize(
    "expression",
    ["cron(30 * ? * * *)", "rate(1 hour)", "cron(0 * ? * MON *)", "cron(0 0/25 ? * * *)", "cron(0 24 ? * * *)"],
)
def test_expressions_model_monitor_does_not_support_are_refused(expression: str) -> None:
    with pytest.raises(SageMakerError, match="Invalid ScheduleExpression"):
        executions.check_expression(expression)


# ------------------------------------------------------------------ an execution's processing job


def test_an_execution_reads_the_previous_hour_and_writes_under_models_monitors_output_layout() -> None:
    spec = executions.spec_of_definition("DataQuality", _definition())
    scheduled = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    span = executions.window(spec, scheduled, {"ScheduleExpression": SEED_CRON})
    assert (span.start, span.end) == (scheduled - timedelta(hours=1), scheduled)
    assert span.hours() == [datetime(2026, 12, 7, 17, 0, tzinfo=UTC)]

    request = executions.processing_request(
        spec,
        "hourly",
        span,
        ["s3://b/capture/churn/AllTraffic/2026/12/07/17"],
        {"statistics": "s3://b/base/statistics.json", "constraints": "s3://b/base/constraints.json"},
    )

    assert request["ProcessingJobName"].startswith("model-monitoring-202612071800-")
    (output,) = request["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == "s3://b/monitoring-output/churn/hourly/2026/12/07/18"
    env = request["Environment"]
    assert json.loads(env["dataset_format"]) == {
        "sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}
    }
    assert env["dataset_source"] == "/opt/ml/processing/input/endpoint"
    assert (env["start_time"], env["end_time"]) == ("2026-12-07T17:00:00Z", "2026-12-07T18:00:00Z")
    assert env["baseline_statistics"] == "/opt/ml/processing/baseline/stats/statistics.json"
    assert env["baseline_constraints"] == "/opt/ml/processing/baseline/constraints/constraints.json"
    assert env["publish_cloudwatch_metrics"] == "Enabled"
    capture = request["ProcessingInputs"][0]["S3Input"]
    assert capture["LocalPath"] == "/opt/ml/processing/input/endpoint/churn/AllTraffic/2026/12/07/17"


def test_input_offsets_move_the_window() -> None:
    spec = executions.spec_of_definition(
        "DataQuality",
        _definition(
            DataQualityJobInput={
                "EndpointInput": {
                    "EndpointName": "churn",
                    "LocalPath": "/in",
                    "StartTimeOffset": "-PT3H",
                    "EndTimeOffset": "-PT1H",
                }
            }
        ),
    )
    scheduled = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    span = executions.window(spec, scheduled, {"ScheduleExpression": SEED_CRON})
    assert [h.hour for h in span.hours()] == [15, 16]


def test_batch_transform_inputs_are_refused_locally() -> None:
    with pytest.raises(SageMakerError, match="BatchTransformInput"):
        executions.spec_of_definition(
            "DataQuality", _definition(DataQualityJobInput={"BatchTransformInput": {"LocalPath": "/in"}})
        )


def test_only_model_monitors_analyzer_image_runs() -> None:
    refuse_unsupported_image(ANALYZER_IMAGE)
    refuse_unsupported_image(f"{ANALYZER_IMAGE}:latest")
    with pytest.raises(SageMakerError, match="sagemaker-model-monitor-analyzer"):
        refuse_unsupported_image("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")


def test_the_closed_setting_refuses_as_for_a_new_account(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_if_closed("CreateMonitoringSchedule")
    monkeypatch.setenv("SHEPHERD_LOCAL_MODEL_MONITOR", "closed")
    with pytest.raises(SageMakerError, match="no longer open to new customers") as refused:
        refuse_if_closed("CreateMonitoringSchedule")
    assert refused.value.code == "AccessDeniedException"


# ------------------------------------------------------------------ the container contract


def _rows(rng: random.Random, count: int, shift: float = 0.0) -> list[list[float]]:
    return [[round(rng.gauss(5.8 + shift, 0.8), 2), round(rng.gauss(3.0, 0.4), 2)] for _ in range(count)]


def _capture_line(row: list[float], moment: datetime) -> str:
    data = ",".join(str(v) for v in row)
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": data, "encoding": "CSV"}
            },
            "eventMetadata": {"eventId": "e", "inferenceTime": f"{moment:%Y-%m-%dT%H:%M:%SZ}"},
            "eventVersion": "0",
        }
    )


@pytest.fixture
def baselined(tmp_path: Path) -> Path:
    """A baselining job's container run over a CSV with a header; its root holds the baseline files."""
    rng = random.Random(7)
    source = tmp_path / "opt/ml/processing/input/baseline_dataset_input"
    source.mkdir(parents=True)
    lines = [",".join(FEATURES)] + [",".join(str(v) for v in row) for row in _rows(rng, 400)]
    (source / "train.csv").write_text("\n".join(lines) + "\n")
    env = {
        "SHEPHERD_CONTAINER_ROOT": str(tmp_path),
        "dataset_format": json.dumps({"csv": {"header": True}}),
        "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
        "output_path": "/opt/ml/processing/output",
        "publish_cloudwatch_metrics": "Disabled",
    }
    assert container.main(env) == 0
    return tmp_path


def test_a_baselining_run_writes_statistics_and_constraints_where_model_monitor_does(baselined: Path) -> None:
    output = baselined / "opt/ml/processing/output"
    statistics = json.loads((output / "statistics.json").read_text())
    constraints = json.loads((output / "constraints.json").read_text())
    assert [f["name"] for f in statistics["features"]] == FEATURES
    assert statistics["dataset"]["item_count"] == 400
    assert [f["name"] for f in constraints["features"]] == FEATURES
    assert "monitoring_config" in constraints
    assert not (output / "constraint_violations.json").exists()
    assert (baselined / "opt/ml/output/message").read_text().startswith("Completed:")


def _monitor(root: Path, shift: float, *, late: int = 0) -> dict[str, str]:
    """Capture of one hour (plus ``late`` records after it) as an execution downloads it, and its environment."""
    rng = random.Random(11)
    hour = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
    folder = root / "opt/ml/processing/input/endpoint/churn/AllTraffic/2026/12/07/17"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [_capture_line(row, hour + timedelta(seconds=10 * i)) for i, row in enumerate(_rows(rng, 200, shift))]
    lines += [_capture_line([99.0, 99.0], hour + timedelta(hours=1, seconds=i)) for i in range(late)]
    (folder / "00-01-000-a.jsonl").write_text("\n".join(lines) + "\n")
    baseline = root / "opt/ml/processing/baseline"
    for kind, name in (("stats", "statistics.json"), ("constraints", "constraints.json")):
        (baseline / kind).mkdir(parents=True, exist_ok=True)
        (baseline / kind / name).write_text((root / "opt/ml/processing/output" / name).read_text())
    return {
        "SHEPHERD_CONTAINER_ROOT": str(root),
        "dataset_format": executions.CAPTURE_FORMAT,
        "dataset_source": "/opt/ml/processing/input/endpoint",
        "output_path": "/opt/ml/processing/resultdata",
        "baseline_statistics": "/opt/ml/processing/baseline/stats/statistics.json",
        "baseline_constraints": "/opt/ml/processing/baseline/constraints/constraints.json",
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": "churn",
        "sagemaker_monitoring_schedule_name": "hourly",
        "start_time": "2026-12-07T17:00:00Z",
        "end_time": "2026-12-07T18:00:00Z",
        "metric_time": "2026-12-07T18:00:00Z",
    }


def test_a_monitoring_run_flags_a_drifted_feature_in_constraint_violations(baselined: Path) -> None:
    env = _monitor(baselined, shift=4.0)
    assert container.main(env) == 0
    result = baselined / "opt/ml/processing/resultdata"
    violations = json.loads((result / "constraint_violations.json").read_text())["violations"]
    drifted = {v["feature_name"] for v in violations if v["constraint_check_type"] == "baseline_drift_check"}
    assert drifted == {"sepal_length"}
    assert json.loads((result / "statistics.json").read_text())["dataset"]["item_count"] == 200
    assert (baselined / "opt/ml/output/message").read_text().startswith("CompletedWithViolations: ")
    metric_lines = (baselined / "opt/ml/output/metrics/cloudwatch/cloudwatch_metrics.jsonl").read_text().splitlines()
    metrics = {m["MetricName"]: m for m in map(json.loads, metric_lines)}
    assert "feature_baseline_drift_sepal_length" in metrics
    assert metrics["feature_baseline_drift_sepal_length"]["Dimensions"] == [
        {"Name": "Endpoint", "Value": "churn"},
        {"Name": "MonitoringSchedule", "Value": "hourly"},
    ]


def test_records_outside_the_window_are_left_out(baselined: Path) -> None:
    env = _monitor(baselined, shift=0.0, late=50)
    assert container.main(env) == 0
    statistics = json.loads((baselined / "opt/ml/processing/resultdata/statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == 200


def test_a_broken_contract_fails_the_job_with_its_reason(tmp_path: Path) -> None:
    env = {"SHEPHERD_CONTAINER_ROOT": str(tmp_path), "dataset_format": json.dumps({"parquet": {}})}
    assert container.main(env) == 255
    assert "output_path" in (tmp_path / "opt/ml/output/message").read_text()


# ------------------------------------------------------------------ local IAM


def test_monitoring_requests_are_authorized_on_their_resources_and_pass_their_roles() -> None:
    from tests.unit.test_iam_requests import call, pairs

    definition = _definition()
    found = call("sagemaker", "CreateDataQualityJobDefinition", **definition)
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    assert pairs(found) == [
        ("sagemaker:CreateDataQualityJobDefinition", f"{arn}:data-quality-job-definition/dq"),
        ("iam:PassRole", definition["RoleArn"]),
    ]
    schedule = {
        "ScheduleConfig": {"ScheduleExpression": SEED_CRON},
        "MonitoringJobDefinition": {
            "MonitoringInputs": [definition["DataQualityJobInput"]],
            "MonitoringOutputConfig": definition["DataQualityJobOutputConfig"],
            "MonitoringResources": definition["JobResources"],
            "MonitoringAppSpecification": {"ImageUri": ANALYZER_IMAGE},
            "RoleArn": definition["RoleArn"],
        },
    }
    found = call(
        "sagemaker", "CreateMonitoringSchedule", MonitoringScheduleName="hourly", MonitoringScheduleConfig=schedule
    )
    assert pairs(found) == [
        ("sagemaker:CreateMonitoringSchedule", f"{arn}:monitoring-schedule/hourly"),
        ("iam:PassRole", definition["RoleArn"]),
    ]


# ------------------------------------------------------------------ the processing job's run


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class _S3:
    """Objects by (bucket, key); the calls processing.py makes."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_paginator(self, operation: str) -> _S3:
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix))
        return [{"Contents": [{"Key": k} for k in keys]}]

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": _Body(self.objects[Bucket, Key])}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[Bucket, Key] = Body


class _Context:
    def __init__(self, work_root: Path, s3: _S3) -> None:
        self.work_root = work_root
        self.s3 = s3
        self.lines: list[tuple[str, str]] = []

    def client(self, service: str) -> Any:
        assert service == "s3"
        return self.s3

    def log(self, group: str, stream: str, line: str) -> None:
        self.lines.append((group, line))


def _processing_job(request: dict[str, Any]) -> Any:
    from localcloud.sagemaker.jobs import Job

    description = {"ProcessingJobName": request["ProcessingJobName"], "ProcessingJobStatus": "InProgress"}
    return Job("ProcessingJob", request["ProcessingJobName"], "arn", request, description, lambda job: None)


def _baseline_request(source: str) -> dict[str, Any]:
    return {
        "ProcessingJobName": "baseline-suggestion-job-1",
        "ProcessingInputs": [
            {
                "InputName": "baseline_dataset_input",
                "S3Input": {"S3Uri": source, "LocalPath": "/opt/ml/processing/input/baseline_dataset_input"},
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "monitoring_output",
                    "S3Output": {"S3Uri": "s3://b/results", "LocalPath": "/opt/ml/processing/output"},
                }
            ]
        },
        "AppSpecification": {"ImageUri": ANALYZER_IMAGE},
        "Environment": {
            "dataset_format": json.dumps({"csv": {"header": True}}),
            "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
            "output_path": "/opt/ml/processing/output",
            "publish_cloudwatch_metrics": "Disabled",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
    }


def test_a_baselining_job_downloads_its_input_runs_the_analyzer_and_uploads_its_files(tmp_path: Path) -> None:
    from localcloud.sagemaker.monitoring.processing import LOG_GROUP, run_processing_job

    rows = [",".join(FEATURES)] + [",".join(str(v) for v in row) for row in _rows(random.Random(3), 50)]
    s3 = _S3({("b", "baseline/train.csv"): ("\n".join(rows) + "\n").encode()})
    context = _Context(tmp_path, s3)
    job = _processing_job(_baseline_request("s3://b/baseline/train.csv"))

    run_processing_job(job, context)

    described = job.snapshot()
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["ExitMessage"] == "Completed: Job completed successfully with no violations."
    assert {k for b, k in s3.objects if k.startswith("results/")} == {
        "results/statistics.json",
        "results/constraints.json",
    }
    root = tmp_path / "processing" / job.name
    assert (root / "opt/ml/processing/input/baseline_dataset_input/train.csv").is_file()
    config = json.loads((root / "opt/ml/config/processingjobconfig.json").read_text())
    assert config["Environment"]["output_path"] == "/opt/ml/processing/output"
    assert (LOG_GROUP, "Completed: Job completed successfully with no violations.") in context.lines


def test_a_failing_analyzer_fails_the_job_with_its_message_and_uploads_nothing(tmp_path: Path) -> None:
    from localcloud.sagemaker.monitoring.processing import run_processing_job

    s3 = _S3({("b", "baseline/train.csv"): b"sepal_length,sepal_width\n"})  # a header and no rows
    job = _processing_job(_baseline_request("s3://b/baseline/train.csv"))

    run_processing_job(job, _Context(tmp_path, s3))

    described = job.snapshot()
    assert described["ProcessingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: ContractError: the dataset has no records"
    assert not [k for _, k in s3.objects if k.startswith("results/")]


def test_an_input_without_objects_fails_the_job_as_sagemaker_words_it(tmp_path: Path) -> None:
    from localcloud.sagemaker.monitoring.processing import run_processing_job

    job = _processing_job(_baseline_request("s3://b/absent/train.csv"))

    run_processing_job(job, _Context(tmp_path, _S3({})))

    described = job.snapshot()
    assert described["ProcessingJobStatus"] == "Failed"
    assert "No S3 objects found under S3 URL" in described["FailureReason"]
