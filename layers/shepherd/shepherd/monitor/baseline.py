"""The baseline a model package is registered with: statistics.json and constraints.json of its training data.

Features only: the target column (training.target_column) is left out, as the endpoint's requests hold none.
A baseline that cannot be made (no CSV, no target column named, empty data) is told why, never raised: the
registration stands without one, and the monitor reports "no baseline".
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shepherd.errors import NotFound
from shepherd.monitor import model_quality, quality_alert, reference
from shepherd.monitor.constraints import suggest_constraints
from shepherd.monitor.dataset import Dataset, read_csv
from shepherd.monitor.model_quality import Labelled
from shepherd.monitor.statistics import profile
from shepherd.objects import DataObject, split_s3_uri

REFERENCE = "reference.json"  # beside statistics.json and constraints.json
MAX_BYTES = 32 * 2**20  # of training data profiled; a larger dataset's baseline is made from its first files
TRAIN_CHANNEL = "train"


class Reader(Protocol):
    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class Baseline:
    """The documents, or None and why there are none; ``source`` says what they were made from. ``reference``
    is the drift alert's (shepherd.monitor.reference), kept beside Model Monitor's two files."""

    statistics: dict[str, Any] | None
    constraints: dict[str, Any] | None
    source: str
    reference: dict[str, Any] | None = None


def _train_files(dataset: str, data: Iterable[DataObject]) -> list[DataObject]:
    """The train channel's CSV files: under <dataset>/train/, or directly in the dataset folder."""
    _, prefix = split_s3_uri(dataset)
    prefix = prefix if prefix.endswith("/") else f"{prefix}/"
    chosen = []
    for found in data:
        relative = found.key.removeprefix(prefix)
        if found.key.lower().endswith(".csv") and ("/" not in relative or relative.startswith(f"{TRAIN_CHANNEL}/")):
            chosen.append(found)
    return sorted(chosen, key=lambda o: o.key)


def from_lineage(reader: Reader, lineage_uri: str, *, target_column: str | None) -> Baseline:
    """The baseline of the training data a run's lineage document (lineage.json) names."""
    if not target_column:
        return Baseline(None, None, "training.target_column is not set: the features cannot be told from the target")
    bucket, key = split_s3_uri(lineage_uri)
    lineage = json.loads(reader.read_bytes(bucket, key))
    dataset = str(lineage["dataset"])
    data_bucket, _ = split_s3_uri(dataset)
    files = _train_files(dataset, (DataObject.model_validate(o) for o in lineage.get("data", [])))
    if not files:
        return Baseline(None, None, f"{dataset} holds no CSV training file")
    texts: list[str] = []
    size = 0
    for found in files:
        if size >= MAX_BYTES:
            break
        text = reader.read_bytes(data_bucket, found.key, found.version_id).decode("utf-8", errors="replace")
        size += len(text)
        texts.append(text if not texts else text.split("\n", 1)[1] if "\n" in text else "")
    table = read_csv("\n".join(t.rstrip("\n") for t in texts if t.strip()) + "\n", header=True)
    if target_column not in table.columns:
        return Baseline(None, None, f"the training data has no column {target_column!r} (training.target_column)")
    features = Dataset(columns={k: v for k, v in table.columns.items() if k != target_column})
    if features.item_count == 0 or not features.columns:
        return Baseline(None, None, f"{dataset} holds no rows of features")
    statistics = profile(features, dataset_name=dataset)
    read = f"{len(texts)} of {len(files)} files" if len(texts) < len(files) else f"{len(files)} files"
    source = f"{dataset} ({read}, {features.item_count} rows)"
    return Baseline(statistics, suggest_constraints(statistics), source, reference.build(features.columns).to_json())


def package_references(statistics_uri: str, constraints_uri: str) -> dict[str, Any]:
    """DriftCheckBaselines and ModelMetrics of CreateModelPackage, naming the two files as pipelines do."""
    return _references("ModelDataQuality", statistics_uri, constraints_uri)


def _references(kind: str, statistics_uri: str, constraints_uri: str) -> dict[str, Any]:
    files = {
        kind: {
            "Statistics": {"ContentType": "application/json", "S3Uri": statistics_uri},
            "Constraints": {"ContentType": "application/json", "S3Uri": constraints_uri},
        }
    }
    return {"DriftCheckBaselines": files, "ModelMetrics": files}


# ---------------------------------------------------------------- model quality

VALIDATION_PREDICTIONS = "validation_predictions.csv"  # in the training job's output data (output.tar.gz)
MODEL_QUALITY = "model_quality/"  # the model-quality files' folder under a baseline's (and a report's)
QUALITY_REFERENCE = "quality_reference.json"
MAX_OUTPUT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class QualityBaseline:
    """Model quality's statistics.json, constraints.json and the quality alert's reference, or None and why."""

    statistics: dict[str, Any] | None
    constraints: dict[str, Any] | None
    reference: dict[str, Any] | None
    source: str


def output_data_uri(model_data_url: str) -> str:
    """output.tar.gz beside a training job's model.tar.gz: SageMaker uploads /opt/ml/output/data there."""
    return model_data_url.rsplit("/", 1)[0] + "/output.tar.gz"


def validation_rows(text: str) -> list[Labelled]:
    """The rows of validation_predictions.csv: a header naming ``label`` and ``prediction`` (or
    ``probability``, a binary classifier's score of class 1, taken first), as Model Monitor's ground_truth,
    inference and probability attributes; ValueError when it names neither."""
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    column = "probability" if "probability" in fields else "prediction"
    if "label" not in fields or column not in fields:
        raise ValueError(f"{VALIDATION_PREDICTIONS} needs a header naming label and prediction (or probability)")
    return [
        Labelled(prediction=(row[column] or "").strip(), label=(row["label"] or "").strip())
        for row in reader
        if row.get(column) and row.get("label")
    ]


def quality_from_output(reader: Reader, model_data_url: str, *, decision_threshold: float = 0.5) -> QualityBaseline:
    """The model-quality baseline of the candidate's validation predictions, which the training script writes as
    validation_predictions.csv in SM_OUTPUT_DATA_DIR (docs/MONITORING.md, "Model quality")."""
    uri = output_data_uri(model_data_url)
    bucket, key = split_s3_uri(uri)
    try:
        archive = reader.read_bytes(bucket, key)
    except NotFound:
        return QualityBaseline(None, None, None, f"the training job wrote no output data ({uri})")
    if len(archive) > MAX_OUTPUT_BYTES:
        return QualityBaseline(None, None, None, f"{uri} is over {MAX_OUTPUT_BYTES // 2**20} MB")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(VALIDATION_PREDICTIONS)), None)
        extracted = tar.extractfile(member) if member is not None else None
        if extracted is None:
            return QualityBaseline(None, None, None, f"{uri} holds no {VALIDATION_PREDICTIONS}")
        text = extracted.read().decode("utf-8", errors="replace")
    rows = validation_rows(text)
    if not rows:
        return QualityBaseline(None, None, None, f"{VALIDATION_PREDICTIONS} in {uri} holds no rows")
    data = model_quality.table(rows, model_quality.infer_problem_type(rows))
    if data.count == 0:
        return QualityBaseline(None, None, None, f"{VALIDATION_PREDICTIONS} in {uri} holds no readable rows")
    statistics = model_quality.statistics(data, threshold=decision_threshold)
    source = f"{uri} ({data.count} {data.problem_type} rows)"
    ref = quality_alert.reference(data, decision_threshold)
    return QualityBaseline(statistics, model_quality.suggest_constraints(statistics), ref.to_json(), source)


def quality_references(statistics_uri: str, constraints_uri: str) -> dict[str, Any]:
    """ModelQuality of DriftCheckBaselines and ModelMetrics (merged with package_references's)."""
    return _references("ModelQuality", statistics_uri, constraints_uri)
