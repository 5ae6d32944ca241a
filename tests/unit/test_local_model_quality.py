"""The local Model Monitor's model quality: its job definitions, its executions' two jobs, the merge and the analysis.

Shapes from the SageMaker API Reference (CreateModelQualityJobDefinition, ModelQualityJobInput: GroundTruthS3Input
"Required: Yes"; MonitoringProblemType) and the guide ("Ingest Ground Truth labels and merge them with
predictions"); Clarify's kinds are refused by name.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from shepherd.monitor import container

from localcloud.sagemaker.control_plane import ResourceInUse, ResourceNotFound, SageMakerError
from localcloud.sagemaker.monitoring import executions
from localcloud.sagemaker.monitoring.availability import ANALYZER_IMAGE, MERGER_IMAGE, refuse_unsupported_image
from localcloud.sagemaker.monitoring.job_definitions import JobDefinitionOperations
from localcloud.sagemaker.monitoring.schedule_operations import MonitoringOperations
from localcloud.sagemaker.validation import RequestInvalid, validate

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
SEED_CRON = "cron(0 * * * ? *)"


def _definition(**overrides: Any) -> dict[str, Any]:
    definition = {
        "JobDefinitionName": "mq",
        "ModelQualityAppSpecification": {
            "ImageUri": ANALYZER_IMAGE,
            "ProblemType": "BinaryClassification",
            "Environment": {"publish_cloudwatch_metrics": "Enabled"},
        },
        "ModelQualityJobInput": {
            "EndpointInput": {
                "EndpointName": "churn",
                "LocalPath": "/opt/ml/processing/input_data",
                "ProbabilityAttribute": "0",
                "ProbabilityThresholdAttribute": 0.4,
            },
            "GroundTruthS3Input": {"S3Uri": "s3://b/ground-truth"},
        },
        "ModelQualityJobOutputConfig": {
            "MonitoringOutputs": [
                {"S3Output": {"S3Uri": "s3://b/monitoring-output", "LocalPath": "/opt/ml/processing/output"}}
            ]
        },
        "ModelQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": "s3://b/base/constraints.json"}},
        "JobResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
    }
    return definition | overrides


class _Definitions(JobDefinitionOperations):
    """The job definition operations over in-memory state; ``in_use`` plays the schedules."""

    def __init__(self) -> None:  # no cloud behind it: roles are taken as assumable
        self.lock = threading.RLock()
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.job_definitions = {}
        self.in_use: dict[tuple[str, str], str] = {}

    def assume(self, role_arn: str) -> Any:
        return None

    def _definition_in_use(self, kind: str, name: str) -> str | None:
        return self.in_use.get((kind, name))


# ------------------------------------------------------------------ job definitions


def test_a_model_quality_job_definition_is_created_described_listed_and_deleted() -> None:
    plane = _Definitions()

    created = plane.create_model_quality_job_definition(_definition(Tags=[{"Key": "team", "Value": "ml"}]))

    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-quality-job-definition/mq"
    assert created == {"JobDefinitionArn": arn}
    described = plane.describe_model_quality_job_definition({"JobDefinitionName": "mq"})
    assert described["ModelQualityAppSpecification"]["ProblemType"] == "BinaryClassification"
    assert described["ModelQualityJobInput"]["GroundTruthS3Input"] == {"S3Uri": "s3://b/ground-truth"}
    assert described["JobDefinitionArn"] == arn
    assert "CreationTime" in described
    assert plane.tags[arn] == [{"Key": "team", "Value": "ml"}]
    listed = plane.list_model_quality_job_definitions({"EndpointName": "churn"})["JobDefinitionSummaries"]
    assert [(s["MonitoringJobDefinitionName"], s["EndpointName"]) for s in listed] == [("mq", "churn")]
    assert plane.list_model_quality_job_definitions({"EndpointName": "other"})["JobDefinitionSummaries"] == []
    assert plane.list_data_quality_job_definitions({})["JobDefinitionSummaries"] == []  # kinds kept apart

    plane.delete_model_quality_job_definition({"JobDefinitionName": "mq"})

    with pytest.raises(ResourceNotFound, match="model-quality-job-definition/mq"):
        plane.describe_model_quality_job_definition({"JobDefinitionName": "mq"})


def test_a_second_definition_of_one_name_and_deleting_one_in_use_are_refused() -> None:
    plane = _Definitions()
    plane.create_model_quality_job_definition(_definition())
    with pytest.raises(ResourceInUse, match="already exists"):
        plane.create_model_quality_job_definition(_definition())
    plane.in_use[("ModelQuality", "mq")] = "hourly-quality"
    with pytest.raises(ResourceInUse, match="in use by schedule hourly-quality"):
        plane.delete_model_quality_job_definition({"JobDefinitionName": "mq"})


def test_a_definition_without_ground_truth_or_with_an_unknown_problem_type_is_refused_as_aws_words_it() -> None:
    # Given a definition without GroundTruthS3Input and with a problem type SageMaker does not know
    params = _definition()
    params["ModelQualityJobInput"] = {"EndpointInput": params["ModelQualityJobInput"]["EndpointInput"]}
    params["ModelQualityAppSpecification"] = params["ModelQualityAppSpecification"] | {"ProblemType": "Ranking"}
    # When the request is validated, Then both are refused in AWS's words
    with pytest.raises(RequestInvalid) as refused:
        validate("CreateModelQualityJobDefinition", params)
    message = str(refused.value)
    assert "'modelQualityJobInput.groundTruthS3Input' failed to satisfy constraint: Member must not be null" in message
    assert "Value 'Ranking' at 'modelQualityAppSpecification.problemType'" in message


def test_a_ground_truth_input_without_an_s3_uri_or_a_definition_without_a_problem_type_is_refused() -> None:
    plane = _Definitions()
    no_uri = _definition()
    no_uri["ModelQualityJobInput"] = no_uri["ModelQualityJobInput"] | {"GroundTruthS3Input": {}}
    with pytest.raises(SageMakerError, match=r"GroundTruthS3Input\.S3Uri is required"):
        plane.create_model_quality_job_definition(no_uri)
    no_problem = _definition()
    no_problem["ModelQualityAppSpecification"] = {"ImageUri": ANALYZER_IMAGE}
    with pytest.raises(SageMakerError, match="ProblemType is required"):
        plane.create_model_quality_job_definition(no_problem)
    assert plane.job_definitions.get("ModelQuality", {}) == {}


def test_customer_scripts_and_other_images_are_refused() -> None:
    plane = _Definitions()
    scripted = _definition()
    scripted["ModelQualityAppSpecification"] |= {"PostAnalyticsProcessorSourceUri": "s3://b/post.py"}
    with pytest.raises(SageMakerError, match="no customer scripts"):
        plane.create_model_quality_job_definition(scripted)
    other = _definition()
    other["ModelQualityAppSpecification"] = other["ModelQualityAppSpecification"] | {"ImageUri": "1.dkr.ecr/x:1"}
    with pytest.raises(SageMakerError, match="sagemaker-model-monitor-analyzer"):
        plane.create_model_quality_job_definition(other)


def test_the_closed_setting_refuses_model_quality_as_for_a_new_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEPHERD_LOCAL_MODEL_MONITOR", "closed")
    with pytest.raises(SageMakerError, match="no longer open to new customers") as refused:
        _Definitions().create_model_quality_job_definition(_definition())
    assert refused.value.code == "AccessDeniedException"


@pytest.mark.parametrize(
    ("operation", "name"),
    [
        ("create_model_bias_job_definition", "CreateModelBiasJobDefinition"),
        ("create_model_explainability_job_definition", "CreateModelExplainabilityJobDefinition"),
    ],
)
def test_clarify_job_definitions_are_refused_by_name_with_the_reason(operation: str, name: str) -> None:
    with pytest.raises(SageMakerError) as refused:
        getattr(_Definitions(), operation)({"JobDefinitionName": "bias"})
    assert refused.value.message.startswith(f"{name}: ")
    assert "SageMaker Clarify" in refused.value.message
    assert "no longer open to new customers" in refused.value.message


def test_the_merger_image_runs_beside_the_analyzer() -> None:
    refuse_unsupported_image(MERGER_IMAGE)
    refuse_unsupported_image(f"{MERGER_IMAGE}:latest")


def test_model_quality_job_definitions_are_authorized_on_their_resource_and_pass_their_role() -> None:
    from tests.unit.test_iam_requests import call, pairs

    found = call("sagemaker", "CreateModelQualityJobDefinition", **_definition())
    assert pairs(found) == [
        (
            "sagemaker:CreateModelQualityJobDefinition",
            "arn:aws:sagemaker:us-east-1:123456789012:model-quality-job-definition/mq",
        ),
        ("iam:PassRole", ROLE),
    ]


# ------------------------------------------------------------------ an execution's two jobs


def test_a_model_quality_execution_merges_then_analyzes_the_merged_records() -> None:
    # Given the definition and the seed's hourly schedule due at 18:00
    spec = executions.spec_of_definition("ModelQuality", _definition())
    scheduled = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    span = executions.window(spec, scheduled, {"ScheduleExpression": SEED_CRON})
    capture = ["s3://b/capture/churn/AllTraffic/2026/12/07/17"]
    suffix = executions.job_suffix(scheduled)

    # When its merge job is built
    merge = executions.merge_request(spec, span, suffix, capture, ["s3://b/ground-truth/2026/12/07/17/"])

    # Then it runs the merger over the hour's capture and labels, as AWS's groundtruth-merge jobs do
    assert merge["ProcessingJobName"] == f"groundtruth-merge-{suffix}"
    assert merge["AppSpecification"] == {"ImageUri": MERGER_IMAGE}
    assert merge["Environment"] == {
        "dataset_source": "/opt/ml/processing/input_data",
        "ground_truth_source": "/opt/ml/processing/groundtruth",
        "output_path": "/opt/ml/processing/output",
    }
    local = {i["InputName"]: i["S3Input"]["LocalPath"] for i in merge["ProcessingInputs"]}
    assert local == {
        "groundtruth_input_1": "/opt/ml/processing/groundtruth/2026/12/07/17",
        "endpoint_input_1": "/opt/ml/processing/input_data/churn/AllTraffic/2026/12/07/17",
    }
    (merged,) = merge["ProcessingOutputConfig"]["Outputs"]
    assert merged["S3Output"]["S3Uri"] == "s3://b/monitoring-output/merge"

    # When its analysis is built over the merged records
    analysis = executions.processing_request(
        spec,
        "hourly-quality",
        span,
        ["s3://b/monitoring-output/merge/churn/AllTraffic/2026/12/07/17/"],
        {"constraints": "s3://b/base/constraints.json"},
        suffix=suffix,
    )

    # Then it is the analyzer's model-quality run, under the same suffix, writing to Model Monitor's layout
    assert analysis["ProcessingJobName"] == f"model-quality-monitoring-{suffix}"
    env = analysis["Environment"]
    assert env["analysis_type"] == "MODEL_QUALITY"
    assert json.loads(env["dataset_format"]) == {"sagemakerMergeJson": {"captureIndexNames": ["endpointOutput"]}}
    assert (env["problem_type"], env["probability_attribute"], env["probability_threshold_attribute"]) == (
        "BinaryClassification",
        "0",
        "0.4",
    )
    assert (env["start_time"], env["end_time"], env["metric_time"]) == (
        "2026-12-07T17:00:00Z",
        "2026-12-07T18:00:00Z",
        "2026-12-07T17:00:00Z",
    )
    assert env["baseline_constraints"] == "/opt/ml/processing/baseline/constraints/constraints.json"
    assert "baseline_statistics" not in env
    (output,) = analysis["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == "s3://b/monitoring-output/churn/hourly-quality/2026/12/07/18"


def test_ground_truth_is_read_from_the_windows_start_to_the_scheduled_time() -> None:
    # Given a window of 15:00-16:00 run at 18:00 (offsets -PT3H / -PT2H)
    spec = executions.spec_of_definition("ModelQuality", _definition())
    spec_input = spec.endpoint_input | {"StartTimeOffset": "-PT3H", "EndTimeOffset": "-PT2H"}
    span = executions.window(
        executions.JobSpec(**{**spec.__dict__, "endpoint_input": spec_input}),
        datetime(2026, 12, 7, 18, 0, tzinfo=UTC),
        {"ScheduleExpression": SEED_CRON},
    )
    # Then labels collected until the run join the window's predictions
    assert [h.hour for h in span.hours()] == [15]
    assert [h.hour for h in executions.truth_hours(span)] == [15, 16, 17]


class _Schedules(MonitoringOperations):
    """The schedule operations over in-memory state, without the ticker."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tags = {}
        self.job_definitions = {"DataQuality": {}, "ModelQuality": {}}
        self.schedules = {}

    def assume(self, role_arn: str) -> Any:
        return None


def test_a_model_quality_schedule_names_a_model_quality_job_definition() -> None:
    schedules = _Schedules()
    schedules.create_model_quality_job_definition(_definition())
    embedded = {"MonitoringType": "ModelQuality", "MonitoringJobDefinition": {}}
    with pytest.raises(SageMakerError, match="MonitoringJobDefinitionName"):
        schedules.create_monitoring_schedule({"MonitoringScheduleName": "q", "MonitoringScheduleConfig": embedded})
    # ... of its own kind: a DataQuality schedule does not find it
    named = {"MonitoringJobDefinitionName": "mq", "ScheduleConfig": {"ScheduleExpression": SEED_CRON}}
    with pytest.raises(ResourceNotFound, match="data-quality-job-definition/mq"):
        schedules.create_monitoring_schedule(
            {"MonitoringScheduleName": "q", "MonitoringScheduleConfig": named | {"MonitoringType": "DataQuality"}}
        )


@pytest.mark.parametrize("kind", ["ModelBias", "ModelExplainability"])
def test_clarify_schedules_are_refused_by_name(kind: str) -> None:
    config = {"MonitoringType": kind, "MonitoringJobDefinitionName": "x"}
    with pytest.raises(SageMakerError, match=f"MonitoringType {kind}: .*SageMaker Clarify"):
        _Schedules().create_monitoring_schedule({"MonitoringScheduleName": "q", "MonitoringScheduleConfig": config})


# ------------------------------------------------------------------ the merge and the analysis in the container


def _capture(inference_id: str | None, event_id: str, probability: float, moment: datetime) -> dict[str, Any]:
    metadata = {"eventId": event_id, "inferenceTime": f"{moment:%Y-%m-%dT%H:%M:%SZ}"}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2", "encoding": "CSV"},
            "endpointOutput": {
                "observedContentType": "text/csv",
                "mode": "OUTPUT",
                "data": f"{probability}",
                "encoding": "CSV",
            },
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


def _label(event_id: str, label: int) -> str:
    return json.dumps(
        {
            "groundTruthData": {"data": str(label), "encoding": "CSV"},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
    )


def _scored(rng: random.Random, count: int, skill: float) -> list[tuple[float, int]]:
    """(probability of class 1, label): ``skill`` 1 is a perfect ranker, 0 a coin."""
    rows = []
    for _ in range(count):
        label = rng.randint(0, 1)
        noise = rng.random()
        rows.append((round(skill * label + (1 - skill) * noise, 3), label))
    return rows


HOUR = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


def _merge_inputs(root: Path, rows: list[tuple[float, int]]) -> None:
    capture = root / "opt/ml/processing/input_data/churn/AllTraffic/2026/12/07/17"
    truth = root / "opt/ml/processing/groundtruth/2026/12/07/17"
    capture.mkdir(parents=True)
    truth.mkdir(parents=True)
    records, labels = [], []
    for i, (probability, label) in enumerate(rows):
        inference_id = f"req-{i}" if i % 2 == 0 else None  # odd records join on their eventId
        records.append(json.dumps(_capture(inference_id, f"event-{i}", probability, HOUR + timedelta(seconds=i))))
        if i % 10 != 9:  # one record in ten is never labelled
            labels.append(_label(inference_id or f"event-{i}", label))
    (capture / "12-00-000-a.jsonl").write_text("\n".join(records) + "\n")
    (truth / "labels.jsonl").write_text("\n".join(labels) + "\n")


def _merge_env(root: Path) -> dict[str, str]:
    return {
        "SHEPHERD_CONTAINER_ROOT": str(root),
        "dataset_source": "/opt/ml/processing/input_data",
        "ground_truth_source": "/opt/ml/processing/groundtruth",
        "output_path": "/opt/ml/processing/output",
    }


def test_the_merge_joins_capture_and_labels_on_inference_id_else_event_id(tmp_path: Path) -> None:
    _merge_inputs(tmp_path, _scored(random.Random(1), 40, skill=0.8))

    assert container.main(_merge_env(tmp_path)) == 0

    merged_file = tmp_path / "opt/ml/processing/output/churn/AllTraffic/2026/12/07/17/12-00-000-a.jsonl"
    merged = [json.loads(line) for line in merged_file.read_text().splitlines()]
    assert len(merged) == 36  # 40 captured, 4 never labelled
    assert {r["eventMetadata"].get("inferenceId") is None for r in merged} == {True, False}
    assert all(r["groundTruthData"]["encoding"] == "CSV" for r in merged)
    assert "merged 36 of 40" in (tmp_path / "opt/ml/output/message").read_text()


def test_a_merge_that_joins_nothing_fails_the_job_with_its_reason(tmp_path: Path) -> None:
    _merge_inputs(tmp_path, [(0.5, 1)])
    (tmp_path / "opt/ml/processing/groundtruth/2026/12/07/17/labels.jsonl").write_text(_label("someone-else", 1))

    assert container.main(_merge_env(tmp_path)) == 255
    assert "none of the 1 captured records has a ground-truth label" in (tmp_path / "opt/ml/output/message").read_text()


def _baseline(root: Path, rows: list[tuple[float, int]]) -> dict[str, Any]:
    source = root / "opt/ml/processing/input/baseline_dataset_input"
    source.mkdir(parents=True)
    lines = ["probability,prediction,label"] + [f"{p},{int(p >= 0.5)},{y}" for p, y in rows]
    (source / "validation.csv").write_text("\n".join(lines) + "\n")
    env = {
        "SHEPHERD_CONTAINER_ROOT": str(root),
        "analysis_type": "MODEL_QUALITY",
        "problem_type": "BinaryClassification",
        "dataset_format": json.dumps({"csv": {"header": True}}),
        "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
        "output_path": "/opt/ml/processing/output",
        "inference_attribute": "prediction",
        "probability_attribute": "probability",
        "ground_truth_attribute": "label",
        "publish_cloudwatch_metrics": "Disabled",
    }
    assert container.main(env) == 0, (root / "opt/ml/output/message").read_text()
    return env


def test_a_model_quality_baseline_writes_model_quality_statistics_and_constraints(tmp_path: Path) -> None:
    _baseline(tmp_path, _scored(random.Random(2), 300, skill=0.8))

    output = tmp_path / "opt/ml/processing/output"
    statistics = json.loads((output / "statistics.json").read_text())
    constraints = json.loads((output / "constraints.json").read_text())
    assert statistics["dataset"]["item_count"] == 300
    assert statistics["binary_classification_metrics"]["auc"]["value"] > 0.9
    assert constraints["binary_classification_constraints"]["auc"]["comparison_operator"] == "LessThanThreshold"


@pytest.mark.parametrize(("skill", "violated"), [(0.8, False), (0.0, True)])
def test_a_model_quality_run_over_merged_records_checks_the_baseline(
    tmp_path: Path, skill: float, violated: bool
) -> None:
    # Given a baseline from a skilled model, and an hour's merged records of a model as skilled, or of a coin
    _baseline(tmp_path / "baseline", _scored(random.Random(3), 300, skill=0.8))
    _merge_inputs(tmp_path, _scored(random.Random(4), 300, skill=skill))
    assert container.main(_merge_env(tmp_path)) == 0
    merged = tmp_path / "opt/ml/processing/output"
    constraints = tmp_path / "baseline/opt/ml/processing/output/constraints.json"
    env = {
        "SHEPHERD_CONTAINER_ROOT": str(tmp_path),
        "analysis_type": "MODEL_QUALITY",
        "problem_type": "BinaryClassification",
        "dataset_format": executions.MERGE_FORMAT,
        "dataset_source": str(merged.relative_to(tmp_path)),
        "baseline_constraints": str(constraints.relative_to(tmp_path)),
        "output_path": "/opt/ml/processing/result",
        "probability_attribute": "0",
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": "churn",
        "sagemaker_monitoring_schedule_name": "hourly-quality",
        "start_time": "2026-12-07T17:00:00Z",
        "end_time": "2026-12-07T18:00:00Z",
        "metric_time": "2026-12-07T17:00:00Z",
    }

    # When the analysis runs
    assert container.main(env) == 0, (tmp_path / "opt/ml/output/message").read_text()

    # Then its statistics count the labelled records, and the coin's loss of AUC is a violation
    result = tmp_path / "opt/ml/processing/result"
    assert json.loads((result / "statistics.json").read_text())["dataset"]["item_count"] == 270
    violations = json.loads((result / "constraint_violations.json").read_text())["violations"]
    assert ("auc" in {v["metric_name"] for v in violations}) is violated
    message = (tmp_path / "opt/ml/output/message").read_text()
    assert message.startswith("CompletedWithViolations" if violated else "Completed:")
    metrics = (tmp_path / "opt/ml/output/metrics/cloudwatch/cloudwatch_metrics.jsonl").read_text().splitlines()
    assert "auc" in {json.loads(line)["MetricName"] for line in metrics}


def test_an_analysis_with_an_unknown_problem_type_fails_with_its_reason(tmp_path: Path) -> None:
    env = {
        "SHEPHERD_CONTAINER_ROOT": str(tmp_path),
        "analysis_type": "MODEL_QUALITY",
        "problem_type": "Ranking",
        "dataset_format": executions.MERGE_FORMAT,
        "dataset_source": "/opt/ml/processing/input_data",
        "output_path": "/opt/ml/processing/output",
    }
    assert container.main(env) == 255
    assert "problem_type 'Ranking' is not one of" in (tmp_path / "opt/ml/output/message").read_text()


@pytest.mark.parametrize(
    ("answer", "name", "expected"),
    [
        ("1,0.83", "1", "0.83"),  # a CSV answer's position
        ("1,0.83", None, "1"),  # no attribute: the first value
        ("0.83", "0", "0.83"),
        ("[2, 0.1]", "0", "2"),  # a JSON array's index
        ('{"predicted_label": 1, "score": 0.9}', "$.score", "0.9"),  # a JSON path
        ('{"predictions": {"label": "spam"}}', "predictions.label", "spam"),
        ('{"score": 0.9}', "$.absent", None),
    ],
)
def test_an_attribute_locates_the_prediction_in_the_captured_answer(
    answer: str, name: str | None, expected: str | None
) -> None:
    from shepherd.monitor.quality_container import attribute

    assert attribute(answer, name) == expected


def _job(name: str, status: str, **fields: Any) -> Any:
    from localcloud.sagemaker.jobs import Job

    description = {"ProcessingJobName": name, "ProcessingJobStatus": "InProgress", "LastModifiedTime": HOUR}
    job = Job("ProcessingJob", name, f"arn:{name}", {}, description, lambda job: None)
    if status != "InProgress":
        job.set_status(status, **fields)
    return job


@pytest.mark.parametrize(
    ("merge_status", "expected"),
    [("InProgress", "InProgress"), ("Completed", "InProgress"), ("Failed", "Failed")],
)
def test_an_execution_is_in_progress_while_its_merge_runs_and_fails_with_it(merge_status: str, expected: str) -> None:
    # Given an execution whose merge job is running, done (its analysis not started yet) or failed
    schedules = _Schedules()
    reason = "AlgorithmError: QualityInputError: none of the 3 captured records has a ground-truth label"
    schedules.processing_jobs = {
        "m": _job("m", merge_status, **({"FailureReason": reason} if merge_status == "Failed" else {}))
    }
    record = {"MonitoringScheduleName": "q", "MonitoringExecutionStatus": "Pending", "merge": "m", "suffix": "x"}
    # When it is summarized, Then its status follows the merge's, its notes stay private
    summary = schedules._execution(record)
    assert summary["MonitoringExecutionStatus"] == expected
    assert not {"merge", "suffix"} & set(summary)
    if expected == "Failed":
        assert summary["FailureReason"] == f"Ground truth merge failed: {reason}"
