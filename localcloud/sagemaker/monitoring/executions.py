"""A monitoring schedule's cadence and the processing job each of its executions runs (pure: no cloud state).

Model Monitor's cron forms, the 0-20 minute start delay, each execution's window and output paths, and the
ModelQuality execution's merge-then-analyse jobs: docs/LOCAL_SAGEMAKER.md, "Model Monitor".
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from localcloud.cron import ScheduleExpression, start_delay
from localcloud.sagemaker.control_plane import SageMakerError
from localcloud.sagemaker.monitoring.availability import MERGER_IMAGE

# "there could be a delay of 0-20 minutes from the actual requested time to run the execution"
# (https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-schedule-expression.html)
START_WINDOW = timedelta(minutes=20)
NOW = "NOW"
_HOUR_FIELD = re.compile(r"\*|(\d{1,2})(/(\d{1,2}))?")
_OFFSET = re.compile(r"-P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?")
CAPTURE_FORMAT = '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'
MERGE_FORMAT = '{"sagemakerMergeJson": {"captureIndexNames": ["endpointOutput"]}}'
DATA_QUALITY, MODEL_QUALITY = "DataQuality", "ModelQuality"
# The merge job's container paths, as AWS's groundtruth-merge requests give them.
MERGE_INPUT = "/opt/ml/processing/input_data"
TRUTH_PATH = "/opt/ml/processing/groundtruth"
MERGE_OUTPUT = "/opt/ml/processing/output"
# EndpointInput members a model-quality analysis reads, and the environment variables that carry them.
_ATTRIBUTES = {
    "InferenceAttribute": "inference_attribute",
    "ProbabilityAttribute": "probability_attribute",
    "ProbabilityThresholdAttribute": "probability_threshold_attribute",
}


def check_expression(expression: str) -> None:
    """Refuse a ScheduleExpression Model Monitor does not support."""
    if expression == NOW:
        return
    fields = expression[5:-1].split() if expression.startswith("cron(") and expression.endswith(")") else []
    valid = len(fields) == 6 and fields[0] == "0" and fields[3] == "*" and fields[5] == "*"
    # The guide writes day-of-month as ?; the seed's cron(0 * * * ? *) puts the ? in day-of-week (unverified on AWS).
    valid = valid and sorted(fields[2:5:2]) == ["*", "?"]
    hour = _HOUR_FIELD.fullmatch(fields[1]) if valid else None
    if hour and hour.group(1) is not None:
        valid = int(hour.group(1)) <= 23 and (hour.group(3) is None or 1 <= int(hour.group(3)) <= 24)
    if not (valid and hour):
        raise SageMakerError(
            f"Invalid ScheduleExpression {expression!r}: Model Monitor supports cron(0 * ? * * *), "
            "cron(0 [00-23] ? * * *), cron(0 [00-23]/[01-24] ? * * *) and NOW."
        )


def offset(value: str | None, default: timedelta) -> timedelta:
    """An ISO 8601 duration before the scheduled time, as StartTimeOffset and DataAnalysisStartTime give it (-PT1H)."""
    if not value:
        return default
    match = _OFFSET.fullmatch(value)
    if not match:
        raise SageMakerError(f"Invalid time offset {value!r}: expected a negative ISO 8601 duration such as -PT1H.")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return -timedelta(days=days, hours=hours, minutes=minutes)


def start_time(schedule: str, expression: str, scheduled: datetime) -> datetime:
    """When an execution scheduled at ``scheduled`` starts: NOW at once; a cron run within Model Monitor's 0-20 minutes,
    at a delay fixed per schedule name, so a schedule's runs start at the same minute past the hour in every run."""
    if expression == NOW:
        return scheduled
    return scheduled + start_delay(f"monitoring-schedule/{schedule}", START_WINDOW)


def next_scheduled(expression: str, after: datetime) -> datetime:
    """The first scheduled time after ``after``: the local cloud's EventBridge cron, which schedule rules use."""
    return ScheduleExpression(expression).next_after(after)


@dataclass(frozen=True)
class JobSpec:
    """A monitoring job's definition: a data or model quality job definition, or a schedule's own
    MonitoringJobDefinition (data quality only: it has no ground-truth input)."""

    kind: str  # DataQuality or ModelQuality
    name: str | None  # the job definition's name, if the schedule names one
    app: dict[str, Any]  # ImageUri, ContainerEntrypoint, ContainerArguments, ...
    environment: dict[str, str]
    endpoint_input: dict[str, Any]
    output_config: dict[str, Any]  # MonitoringOutputs, KmsKeyId
    cluster: dict[str, Any]
    role_arn: str
    baseline: dict[str, Any]
    stopping: dict[str, Any]
    network: dict[str, Any] | None
    ground_truth: str | None = None  # GroundTruthS3Input.S3Uri (model quality)
    problem_type: str | None = None

    @property
    def endpoint(self) -> str:
        return str(self.endpoint_input["EndpointName"])


def spec_of_embedded(definition: dict[str, Any]) -> JobSpec:
    """A schedule's MonitoringJobDefinition (CreateMonitoringSchedule without a job definition name)."""
    inputs = definition["MonitoringInputs"]
    return _spec(
        DATA_QUALITY,
        None,
        app=definition["MonitoringAppSpecification"],
        environment=definition.get("Environment") or {},
        job_input=inputs[0],
        output_config=definition["MonitoringOutputConfig"],
        resources=definition["MonitoringResources"],
        definition=definition,
        baseline=definition.get("BaselineConfig") or {},
    )


def spec_of_definition(kind: str, definition: dict[str, Any]) -> JobSpec:
    """A DataQuality or ModelQuality job definition, as its Create...JobDefinition stored it."""
    app = dict(definition[f"{kind}AppSpecification"])
    environment = app.pop("Environment", None) or {}
    job_input = definition[f"{kind}JobInput"]
    for script in ("RecordPreprocessorSourceUri", "PostAnalyticsProcessorSourceUri"):
        if app.get(script):
            raise SageMakerError(f"{kind}AppSpecification.{script}: Shepherd's analyzer runs no customer scripts.")
    ground_truth = None
    if kind == MODEL_QUALITY:
        ground_truth = (job_input.get("GroundTruthS3Input") or {}).get("S3Uri")
        if not ground_truth:  # the API's MonitoringGroundTruthS3Input; a model-quality job cannot run without it
            raise SageMakerError(
                "ModelQualityJobInput.GroundTruthS3Input.S3Uri is required: model quality "
                "joins the captured predictions with the ground truth stored there."
            )
        if not ground_truth.startswith("s3://"):
            raise SageMakerError(f"GroundTruthS3Input.S3Uri {ground_truth!r} is not an s3:// URI.")
        if not app.get("ProblemType"):
            raise SageMakerError(
                "ModelQualityAppSpecification.ProblemType is required locally: one of BinaryClassification, "
                "MulticlassClassification, Regression."
            )
    return _spec(
        kind,
        definition["JobDefinitionName"],
        app=app,
        environment=environment,
        job_input=job_input,
        output_config=definition[f"{kind}JobOutputConfig"],
        resources=definition["JobResources"],
        definition=definition,
        baseline=definition.get(f"{kind}BaselineConfig") or {},
        ground_truth=ground_truth,
    )


def _spec(
    kind: str,
    name: str | None,
    *,
    app: dict[str, Any],
    environment: dict[str, str],
    job_input: dict[str, Any],
    output_config: dict[str, Any],
    resources: dict[str, Any],
    definition: dict[str, Any],
    baseline: dict[str, Any],
    ground_truth: str | None = None,
) -> JobSpec:
    if "EndpointInput" not in job_input:
        raise SageMakerError(
            "The local SageMaker monitors endpoints only: BatchTransformInput is not supported locally."
        )
    return JobSpec(
        kind=kind,
        name=name,
        app=app,
        environment=dict(environment),
        endpoint_input=job_input["EndpointInput"],
        output_config=output_config,
        cluster=resources["ClusterConfig"],
        role_arn=definition["RoleArn"],
        baseline=baseline,
        stopping=definition.get("StoppingCondition") or {},
        network=definition.get("NetworkConfig"),
        ground_truth=ground_truth,
        problem_type=app.get("ProblemType"),
    )


@dataclass(frozen=True)
class Window:
    scheduled: datetime
    start: datetime
    end: datetime

    def hours(self) -> list[datetime]:
        """The capture hours (yyyy/mm/dd/hh folders) the window touches."""
        hour = self.start.replace(minute=0, second=0, microsecond=0)
        hours = []
        while hour < self.end:
            hours.append(hour)
            hour += timedelta(hours=1)
        return hours


def window(spec: JobSpec, scheduled: datetime, schedule_config: dict[str, Any]) -> Window:
    if schedule_config.get("ScheduleExpression") == NOW:
        start = offset(schedule_config.get("DataAnalysisStartTime"), timedelta(hours=-1))
        end = offset(schedule_config.get("DataAnalysisEndTime"), timedelta(0))
    else:
        start = offset(spec.endpoint_input.get("StartTimeOffset"), timedelta(hours=-1))
        end = offset(spec.endpoint_input.get("EndTimeOffset"), timedelta(0))
    return Window(scheduled, scheduled + start, scheduled + end)


def job_name(scheduled: datetime, kind: str = DATA_QUALITY, suffix: str | None = None) -> str:
    """Model Monitor's execution job names: model-monitoring-<yyyymmddHHMM>-<24 hex digits> for data quality,
    model-quality-monitoring-... for model quality (its merge job: groundtruth-merge-... of the same suffix)."""
    prefix = "model-quality-monitoring" if kind == MODEL_QUALITY else "model-monitoring"
    return f"{prefix}-{suffix or job_suffix(scheduled)}"


def job_suffix(scheduled: datetime) -> str:
    return f"{scheduled:%Y%m%d%H%M}-{uuid.uuid4().hex[:24]}"


def merge_output(spec: JobSpec) -> str:
    """Where an execution's merge job writes the joined records: <S3Uri>/merge."""
    return f"{spec.output_config['MonitoringOutputs'][0]['S3Output']['S3Uri'].rstrip('/')}/merge"


def truth_hours(span: Window) -> list[datetime]:
    """The ground-truth folders (by the hour a label was collected) a model-quality execution reads: from its
    window's start to its scheduled time, so labels collected after the window still join its predictions."""
    return Window(span.scheduled, span.start, max(span.end, span.scheduled)).hours()


def _hour_of(folder: str) -> str:
    """yyyy/mm/dd/hh of an hour's folder."""
    return "/".join(folder.rstrip("/").split("/")[-4:])


def relative(folder: str) -> str:
    """<endpoint>/<variant>/yyyy/mm/dd/hh of a capture folder."""
    return "/".join(folder.rstrip("/").removeprefix("s3://").split("/")[-6:])


def merge_request(
    spec: JobSpec, span: Window, suffix: str, capture_prefixes: list[str], truth_prefixes: list[str]
) -> dict[str, Any]:
    """The groundtruth-merge job of a model-quality execution: the window's capture and ground truth in, the
    records joined on inferenceId (else eventId) out, at their capture paths under <S3Uri>/merge."""
    inputs = [
        _input(f"groundtruth_input_{i + 1}", f"{p.rstrip('/')}/", f"{TRUTH_PATH}/{_hour_of(p)}", {})
        for i, p in enumerate(truth_prefixes)
    ]
    inputs += [
        _input(f"endpoint_input_{i + 1}", f"{p.rstrip('/')}/", f"{MERGE_INPUT}/{relative(p)}", spec.endpoint_input)
        for i, p in enumerate(capture_prefixes)
    ]
    request = _request(spec, f"groundtruth-merge-{suffix}", inputs, merge_output(spec), MERGE_OUTPUT)
    request["AppSpecification"] = {"ImageUri": MERGER_IMAGE}
    request["Environment"] = {
        "dataset_source": MERGE_INPUT,
        "ground_truth_source": TRUTH_PATH,
        "output_path": MERGE_OUTPUT,
    }
    return request


def processing_request(
    spec: JobSpec,
    schedule: str,
    span: Window,
    capture_prefixes: list[str],
    baseline_files: dict[str, str],
    *,
    suffix: str | None = None,
) -> dict[str, Any]:
    """The CreateProcessingJob request of one execution's analysis: its data and baseline in, the reports out.

    ``capture_prefixes`` are s3://<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh: the capture (data quality) or the
    merge job's output (model quality); ``baseline_files`` maps "statistics" and "constraints" to the baseline
    files' S3 URIs.
    """
    local_input = spec.endpoint_input["LocalPath"].rstrip("/")
    inputs = [
        _input(f"input_{index + 1}", f"{folder.rstrip('/')}/", f"{local_input}/{relative(folder)}", spec.endpoint_input)
        for index, folder in enumerate(capture_prefixes)
    ]
    environment = {
        **spec.environment,
        "dataset_format": CAPTURE_FORMAT,
        "dataset_source": local_input,
        "sagemaker_endpoint_name": spec.endpoint,
        "sagemaker_monitoring_schedule_name": schedule,
        "monitoring_input_type": "ENDPOINT_INPUT",
        "start_time": f"{span.start:%Y-%m-%dT%H:%M:%SZ}",
        "end_time": f"{span.end:%Y-%m-%dT%H:%M:%SZ}",
        "metric_time": f"{span.scheduled:%Y-%m-%dT%H:%M:%SZ}",
    }
    if spec.kind == MODEL_QUALITY:
        # As AWS's model-quality analysis is started: the merged records, the problem type and the endpoint
        # input's attributes; its metric time is the window's start.
        environment |= {
            "analysis_type": "MODEL_QUALITY",
            "dataset_format": MERGE_FORMAT,
            "problem_type": str(spec.problem_type),
            "metric_time": f"{span.start:%Y-%m-%dT%H:%M:%SZ}",
        }
        environment |= {
            variable: str(spec.endpoint_input[member])
            for member, variable in _ATTRIBUTES.items()
            if spec.endpoint_input.get(member) is not None
        }
    local_dirs = {
        "statistics": "/opt/ml/processing/baseline/stats",
        "constraints": "/opt/ml/processing/baseline/constraints",
    }
    for kind, uri in baseline_files.items():
        if spec.kind == MODEL_QUALITY and kind != "constraints":
            continue  # a model-quality baseline is its constraints (ModelQualityBaselineConfig)
        inputs.append(_input(f"baseline_{kind}", uri, local_dirs[kind], {}))
        environment[f"baseline_{kind}"] = f"{local_dirs[kind]}/{uri.rsplit('/', 1)[-1]}"
    (output,) = spec.output_config["MonitoringOutputs"][:1]
    target = output["S3Output"]
    environment["output_path"] = target["LocalPath"]
    where = f"{target['S3Uri'].rstrip('/')}/{spec.endpoint}/{schedule}/{span.scheduled:%Y/%m/%d/%H}"
    request = _request(spec, job_name(span.scheduled, spec.kind, suffix), inputs, where, target["LocalPath"])
    request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3UploadMode"] = target.get("S3UploadMode", "EndOfJob")
    request["Environment"] = environment
    return request


def _request(spec: JobSpec, name: str, inputs: list[dict[str, Any]], s3_uri: str, local: str) -> dict[str, Any]:
    output_config: dict[str, Any] = {
        "Outputs": [
            {
                "OutputName": "result",
                "S3Output": {"S3Uri": s3_uri, "LocalPath": local, "S3UploadMode": "EndOfJob"},
            }
        ]
    }
    if spec.output_config.get("KmsKeyId"):
        output_config["KmsKeyId"] = spec.output_config["KmsKeyId"]
    request: dict[str, Any] = {
        "ProcessingJobName": name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": output_config,
        "ProcessingResources": {"ClusterConfig": spec.cluster},
        "StoppingCondition": spec.stopping or {"MaxRuntimeInSeconds": 3600},
        "AppSpecification": {
            k: v for k, v in spec.app.items() if k in ("ImageUri", "ContainerEntrypoint", "ContainerArguments")
        },
        "RoleArn": spec.role_arn,
    }
    if spec.network:
        request["NetworkConfig"] = spec.network
    return request


def _input(name: str, uri: str, local_path: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": source.get("S3InputMode", "File"),
            "S3DataDistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
        },
    }
