"""Batch Transform inputs through the same data-quality check: each file BatchTransform scored (moved to
``batch/<model>/processed/``) since the last run, profiled against the champion's baseline.

Model Monitor monitors a batch transform job's input as a dataset of its own, with metrics in
``aws/sagemaker/ModelMonitoring/data-metrics`` and a ``MonitoringSchedule`` dimension (SageMaker guide, "CloudWatch
metrics for bring your own containers"). Files are found by listing processed/ and remembered by LastModified,
so each is checked by one run (the listing, not the reading, grows with the folder).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shepherd.monitor.dataset import Dataset, read_csv, read_jsonl
from shepherd.objects import DataObject

NAMESPACE = "aws/sagemaker/ModelMonitoring/data-metrics"
MAX_BYTES = 32 * 2**20  # a larger file is named in the run's outcome, not profiled by the function
MAX_FILES = 20  # per run: the rest is checked by the next


def processed_prefix(model: str) -> str:
    return f"batch/{model}/processed/"


@dataclass
class BatchCheckpoint:
    """Files last modified before ``since`` (an epoch) were checked, and those named in ``names`` at it too."""

    since: float
    names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "names": list(self.names)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, first: float) -> BatchCheckpoint:
        if not data:
            return cls(since=first)
        return cls(since=float(data["since"]), names=[str(n) for n in data.get("names") or []])


def modified(found: DataObject) -> float | None:
    """A listed object's LastModified as an epoch (S3 gives it as a timestamp, written with a space or a T)."""
    try:
        return datetime.fromisoformat(found.last_modified or "").timestamp()
    except ValueError:
        return None


def new_files(listed: Iterable[DataObject], checkpoint: BatchCheckpoint) -> list[tuple[float, DataObject]]:
    """The files not checked yet with their LastModified, oldest first, at most MAX_FILES."""
    fresh = []
    for found in listed:
        stamp = modified(found)
        if stamp is not None and (
            stamp > checkpoint.since or (stamp == checkpoint.since and found.key not in checkpoint.names)
        ):
            fresh.append((stamp, found))
    return sorted(fresh, key=lambda pair: (pair[0], pair[1].key))[:MAX_FILES]


def mark_checked(checkpoint: BatchCheckpoint, stamp: float, key: str) -> None:
    if stamp > checkpoint.since:
        checkpoint.since, checkpoint.names = stamp, []
    checkpoint.names.append(key)


def dataset_of(text: str, content_type: str, names: Sequence[str]) -> Dataset:
    """A batch input's rows: CSV (a first line naming a baseline feature is a header, else columns take the
    baseline's names by position) or JSON Lines; ValueError for what it cannot read."""
    if content_type.split(";", 1)[0].strip().lower() in ("text/csv", "text/plain"):
        first = text.lstrip().split("\n", 1)[0]
        header = bool({cell.strip() for cell in first.split(",")} & set(names))
        return read_csv(text, header=header, names=None if header else names)
    return read_jsonl(text, names=names)
