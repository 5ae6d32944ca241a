"""Model quality under Model Monitor's container contract: the ground-truth merge and the model-quality analysis.

The merge joins capture with ground truth on the capture's inferenceId, else its eventId ("Ingest Ground Truth
labels and merge them with predictions", https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-merge.html);
the analysis reads merged records or a baselining dataset and writes model quality's files
(shepherd.monitor.model_quality). Formats and paths: docs/LOCAL_SAGEMAKER.md, Model Monitor.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shepherd.monitor import model_quality
from shepherd.monitor.dataset import Dataset
from shepherd.monitor.model_quality import BINARY, SECTIONS, Labelled
from shepherd.objects import json_objects


class QualityInputError(ValueError):
    """The model-quality job's environment or data do not fit the contract."""


def problem_type(environment: Mapping[str, str]) -> str:
    value = environment.get("problem_type") or ""
    if value not in SECTIONS:
        raise QualityInputError(f"problem_type {value!r} is not one of {', '.join(SECTIONS)}")
    return value


def _text(payload: Any) -> str | None:
    """A capture or ground-truth payload's data as text (CSV, JSON or BASE64 encoded)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
        return None
    if str(payload.get("encoding", "")).upper() == "BASE64":
        try:
            return base64.b64decode(payload["data"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return str(payload["data"])


def _scalar(value: Any) -> str | None:
    while isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    return str(value).strip()


def attribute(text: str, name: str | None) -> str | None:
    """The value ``name`` locates in an answer: a CSV position, a JSON array index or a JSON path ($.a.b or a.b);
    without a name, the answer's first value (as Shepherd's rollout judge reads it)."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        cells = [c.strip() for c in text.strip().splitlines()[0].split(",")] if text.strip() else []
        index = int(name) if name and name.isdigit() else 0
        return cells[index] if index < len(cells) and cells[index] else None
    if name is None or name == "":
        return _scalar(value)
    if name.isdigit():
        if not isinstance(value, list):  # one value (a CSV answer of one column reads as a JSON number)
            return _scalar(value) if name == "0" else None
        return _scalar(value[int(name)]) if int(name) < len(value) else None
    for part in name.removeprefix("$").lstrip(".").split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return _scalar(value)


def record_key(record: Mapping[str, Any]) -> str | None:
    metadata = record.get("eventMetadata") or {}
    key = metadata.get("inferenceId") or metadata.get("eventId") if isinstance(metadata, dict) else None
    return key if isinstance(key, str) else None


def labels_of(lines: Iterable[str]) -> dict[str, dict[str, Any]]:
    """eventId -> groundTruthData of ground-truth JSON lines (a later line for the same id wins)."""
    labels: dict[str, dict[str, Any]] = {}
    for record in json_objects(lines):
        key, data = (record.get("eventMetadata") or {}).get("eventId"), record.get("groundTruthData")
        if isinstance(key, str) and isinstance(data, dict) and _text(data) is not None:
            labels[key] = data
    return labels


def merge(capture_root: Path, truth_root: Path, output: Path) -> str:
    """Join every capture file under ``capture_root`` with the labels under ``truth_root``; the exit message."""
    labels: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in truth_root.rglob("*") if p.is_file()):
        labels |= labels_of(path.read_text().splitlines())
    read = joined = 0
    for path in sorted(p for p in capture_root.rglob("*") if p.is_file()):
        lines = []
        for record in json_objects(path.read_text().splitlines()):
            read += 1
            key = record_key(record)
            if key is not None and key in labels:
                lines.append(json.dumps(record | {"groundTruthData": labels[key]}))
        if lines:
            target = output / path.relative_to(capture_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"{line}\n" for line in lines))
            joined += len(lines)
    if not joined:
        raise QualityInputError(
            f"none of the {read} captured records has a ground-truth label ({len(labels)} labels read; records are "
            "joined on the capture's inferenceId, else its eventId, with the label's eventId)"
        )
    return f"Completed: Job completed successfully: merged {joined} of {read} captured records with ground truth."


def rows_of_merged(records: Iterable[Mapping[str, Any]], environment: Mapping[str, str]) -> tuple[list[Labelled], int]:
    """(labelled rows, unreadable records) of merged records: the prediction the endpoint input's attributes
    locate in the captured answer (a binary classifier's probability when it names one), the label's first value."""
    problem = problem_type(environment)
    rows, unreadable = [], 0
    for record in records:
        answer = _text((record.get("captureData") or {}).get("endpointOutput"))
        truth = _text(record.get("groundTruthData"))
        prediction = _prediction(answer, environment, problem) if answer is not None else None
        label = attribute(truth, None) if truth is not None else None
        if prediction is None or label is None:
            unreadable += 1
        else:
            rows.append(Labelled(prediction, label))
    return rows, unreadable


def _prediction(answer: str, environment: Mapping[str, str], problem: str) -> str | None:
    probability = environment.get("probability_attribute")
    if problem == BINARY and probability:
        return attribute(answer, probability)
    return attribute(answer, environment.get("inference_attribute"))


def rows_of_dataset(dataset: Dataset, environment: Mapping[str, str]) -> tuple[list[Labelled], int]:
    """(labelled rows, unreadable rows) of a baselining dataset, its columns named by the job's attributes
    (a name, or a position for a headerless file)."""
    problem = problem_type(environment)
    truth = _column(dataset, environment.get("ground_truth_attribute"), "ground_truth_attribute")
    name = environment.get("probability_attribute") if problem == BINARY else None
    predicted = _column(dataset, name or environment.get("inference_attribute"), "inference_attribute")
    rows, unreadable = [], 0
    for prediction, label in zip(predicted, truth, strict=True):
        if prediction is None or label is None:
            unreadable += 1
        else:
            rows.append(Labelled(prediction, label))
    return rows, unreadable


def _column(dataset: Dataset, name: str | None, variable: str) -> list[str | None]:
    if not name:
        raise QualityInputError(f"the environment variable {variable} is required to baseline model quality")
    if name in dataset.columns:
        return dataset.columns[name]
    if name.isdigit() and int(name) < len(dataset.names):
        return dataset.columns[dataset.names[int(name)]]
    raise QualityInputError(f"{variable} {name!r} names no column of the dataset ({', '.join(dataset.names)})")


def threshold(environment: Mapping[str, str]) -> float:
    text = environment.get("probability_threshold_attribute") or "0.5"
    try:
        return float(text)
    except ValueError:
        raise QualityInputError(f"probability_threshold_attribute {text!r} is not a number") from None


def analyze(rows: list[Labelled], environment: Mapping[str, str]) -> model_quality.Table:
    data = model_quality.table(rows, problem_type(environment))
    if data.count == 0:
        raise QualityInputError(f"no labelled prediction is readable as {data.problem_type}")
    return data
