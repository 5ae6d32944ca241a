"""Model Monitor's analyzer container contract, run by Shepherd's analyzer: ``python -m shepherd.monitor.container``.

Inputs and outputs as the guide's "Container Contract Inputs" / "Container Contract Outputs" give them
(docs/LOCAL_SAGEMAKER.md, Model Monitor); a non-zero exit fails the job. SHEPHERD_CONTAINER_ROOT, set
only by the local cloud, is where the container's "/" is. Model quality's jobs: shepherd.monitor.quality_container.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shepherd.monitor import model_quality, quality_container
from shepherd.monitor.constraints import check, suggest_constraints
from shepherd.monitor.dataset import Dataset, from_capture, read_csv, read_jsonl
from shepherd.monitor.metrics import feature_metrics
from shepherd.monitor.statistics import profile

MESSAGE_FILE = "/opt/ml/output/message"
METRICS_DIRECTORY = "/opt/ml/output/metrics/cloudwatch"
UNSUPPORTED = ("record_preprocessor_script", "post_analytics_processor_script")


class ContractError(ValueError):
    """The job's environment or inputs do not fit the contract."""


class Container:
    def __init__(self, environment: Mapping[str, str]) -> None:
        self.env = environment
        self.root = Path(environment.get("SHEPHERD_CONTAINER_ROOT") or "/")

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def required(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise ContractError(f"the environment variable {name} is required")
        return value

    def run(self) -> str:
        """Analyze the dataset; returns the exit message."""
        for name in UNSUPPORTED:
            if self.env.get(name):
                raise ContractError(f"{name} is not supported by Shepherd's analyzer")
        output = self.path(self.required("output_path"))
        output.mkdir(parents=True, exist_ok=True)
        if self.env.get("ground_truth_source"):
            source, truth = self.path(self.required("dataset_source")), self.path(self.env["ground_truth_source"])
            return quality_container.merge(source, truth, output)
        if self.env.get("analysis_type") == "MODEL_QUALITY":
            return self.model_quality(output)
        statistics_path = self.env.get("baseline_statistics")
        baseline = _load(self.path(statistics_path)) if statistics_path else None
        names = [f["name"] for f in baseline["features"]] if baseline else None
        dataset = self.dataset(names)
        if dataset.item_count == 0:
            raise ContractError("the dataset has no records")
        statistics = profile(dataset)
        _write(output / "statistics.json", statistics)
        if baseline is None:
            _write(output / "constraints.json", suggest_constraints(statistics))
            return "Completed: Job completed successfully with no violations."
        constraints = _load(self.path(self.required("baseline_constraints")))
        violations = check(statistics, baseline, constraints)
        _write(output / "constraint_violations.json", violations)
        if self.env.get("publish_cloudwatch_metrics") == "Enabled":
            self.write_metrics(feature_metrics(statistics, baseline, constraints))
        count = len(violations.get("violations", []))
        if count:
            return f"CompletedWithViolations: Job completed successfully with {count} violations."
        return "Completed: Job completed successfully with no violations."

    def model_quality(self, output: Path) -> str:
        """Model quality of merged records against the baseline constraints, or (without them) its baseline."""
        constraints_path = self.env.get("baseline_constraints")
        dataset_format = json.loads(self.required("dataset_format"))
        if "sagemakerMergeJson" in dataset_format:
            files = sorted(p for p in self.path(self.required("dataset_source")).rglob("*") if p.is_file())
            rows, _ = quality_container.rows_of_merged(self.captured(files), self.env)
        else:
            rows, _ = quality_container.rows_of_dataset(self.dataset(None), self.env)
        data = quality_container.analyze(rows, self.env)
        statistics = model_quality.statistics(data, threshold=quality_container.threshold(self.env))
        _write(output / "statistics.json", statistics)
        if not constraints_path:
            _write(output / "constraints.json", model_quality.suggest_constraints(statistics))
            return "Completed: Job completed successfully with no violations."
        violations = model_quality.check(statistics, _load(self.path(constraints_path)))
        _write(output / "constraint_violations.json", violations)
        if self.env.get("publish_cloudwatch_metrics") == "Enabled":
            self.write_metrics(model_quality.metric_values(statistics))
        count = len(violations["violations"])
        if count:
            return f"CompletedWithViolations: Job completed successfully with {count} violations."
        return "Completed: Job completed successfully with no violations."

    def dataset(self, names: list[str] | None) -> Dataset:
        dataset_format = json.loads(self.required("dataset_format"))
        source = self.path(self.required("dataset_source"))
        files = sorted(p for p in source.rglob("*") if p.is_file())
        if "csv" in dataset_format:
            header = _flag(dataset_format["csv"].get("header", True))
            return _concat(read_csv(p.read_text(), header=header, names=names) for p in files)
        if "json" in dataset_format:
            if not _flag(dataset_format["json"].get("lines", dataset_format["json"].get("line", True))):
                raise ContractError("only JSON Lines datasets are supported")
            return _concat(read_jsonl(p.read_text(), names=names) for p in files)
        if "sagemakerCaptureJson" in dataset_format or "sagemakerMergeJson" in dataset_format:
            return from_capture(list(self.captured(files)), names=names)
        raise ContractError(f"dataset_format {sorted(dataset_format)} is not supported")

    def captured(self, files: list[Path]) -> Iterator[dict[str, Any]]:
        """Capture records inferred within [start_time, end_time): SageMaker may download more than the window."""
        start, end = (_moment(self.env.get(k)) for k in ("start_time", "end_time"))
        for path in files:
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                moment = _moment((record.get("eventMetadata") or {}).get("inferenceTime"))
                if moment is None or ((start is None or moment >= start) and (end is None or moment < end)):
                    yield record

    def write_metrics(self, metrics: dict[str, float]) -> None:
        """One PutMetricData datum per line ("CloudWatch Metrics for Bring Your Own Containers")."""
        directory = self.path(self.env.get("CLOUDWATCH_METRICS_DIRECTORY") or METRICS_DIRECTORY)
        directory.mkdir(parents=True, exist_ok=True)
        dimensions = [
            {"Name": name, "Value": self.env[key]}
            for name, key in (
                ("Endpoint", "sagemaker_endpoint_name"),
                ("MonitoringSchedule", "sagemaker_monitoring_schedule_name"),
            )
            if self.env.get(key)
        ]
        stamp = self.env.get("metric_time") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = [
            json.dumps({"MetricName": name, "Timestamp": stamp, "Dimensions": dimensions, "Value": value})
            for name, value in sorted(metrics.items())
        ]
        (directory / "cloudwatch_metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace(" ", "").replace("Z", "+00:00"))


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2))


def _concat(datasets: Iterator[Dataset]) -> Dataset:
    """Several files of one dataset as one: columns in first-seen order, missing cells None."""
    parts = list(datasets)
    names = list(dict.fromkeys(n for part in parts for n in part.names))
    columns: dict[str, list[str | None]] = {n: [] for n in names}
    for part in parts:
        for name in names:
            columns[name].extend(part.columns.get(name, [None] * part.item_count))
    return Dataset(columns)


def main(environment: Mapping[str, str] | None = None) -> int:
    container = Container(os.environ if environment is None else environment)
    message_file = container.path(MESSAGE_FILE)
    message_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        message = container.run()
    except Exception as exc:
        print(f"Exception performing analysis: {exc}", file=sys.stderr)
        message_file.write_text(f"{type(exc).__name__}: {exc}")
        return 255
    print(message)
    message_file.write_text(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
