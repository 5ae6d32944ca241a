"""The baseline a model package is registered with: statistics.json and constraints.json of its training data.

Features only: the target column (training.target_column) is left out, as the endpoint's requests hold none.
A baseline that cannot be made (no CSV, no target column named, empty data) is told why, never raised: the
registration stands without one, and the monitor reports "no baseline".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shepherd.monitor import reference
from shepherd.monitor.constraints import suggest_constraints
from shepherd.monitor.dataset import Dataset, read_csv
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
    quality = {
        "ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": statistics_uri},
            "Constraints": {"ContentType": "application/json", "S3Uri": constraints_uri},
        }
    }
    return {"DriftCheckBaselines": quality, "ModelMetrics": quality}
