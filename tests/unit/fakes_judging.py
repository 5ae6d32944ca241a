"""In-memory implementations of shepherd.rollout.judging's ports, answering as CloudWatch, S3 and DynamoDB do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shepherd.errors import ShepherdError

from .fakes import FakeObjects, FakeRolloutStore


@dataclass
class FakeMetrics:
    """MetricReader: per query Id, the values stored per minute; GetMetricData answers the ones in [start, end)."""

    series: dict[str, dict[float, float]] = field(default_factory=dict)
    asked: list[tuple[datetime, datetime]] = field(default_factory=list)

    def put(self, query_id: str, first_minute: float, values: list[float]) -> None:
        """One value per minute from ``first_minute`` (an epoch on a minute), as the query's statistic gives it."""
        points = self.series.setdefault(query_id, {})
        for offset, value in enumerate(values):
            points[first_minute + 60 * offset] = value

    def serve(self, role: str, first_minute: float, minutes: int, *, requests: int, errors: int) -> None:
        """``requests`` Invocations a minute with ``errors`` of them 5XX, for ``role``'s variant."""
        self.put(f"{role}_requests", first_minute, [float(requests)] * minutes)
        self.put(f"{role}_errors", first_minute, [float(errors)] * minutes)

    def metric_data(self, queries: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
        self.asked.append((start, end))
        results = []
        for query in queries:
            points = sorted(
                (t, v) for t, v in self.series.get(query["Id"], {}).items() if start.timestamp() <= t < end.timestamp()
            )
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query["MetricStat"]["Metric"]["MetricName"],
                    "Timestamps": [datetime.fromtimestamp(t, UTC) for t, _ in points],
                    "Values": [v for _, v in points],
                    "StatusCode": "Complete",
                }
            )
        return results


@dataclass
class FakeMemory:
    """Memory: results kept as the idempotency table keeps them, as JSON."""

    items: dict[str, str] = field(default_factory=dict)
    expires_after: dict[str, int] = field(default_factory=dict)

    def recall(self, key: str) -> dict[str, Any] | None:
        return dict(json.loads(self.items[key])) if key in self.items else None

    def remember(self, key: str, result: dict[str, Any], *, expires_after_seconds: int) -> None:
        self.items[key] = json.dumps(result, sort_keys=True)
        self.expires_after[key] = expires_after_seconds


@dataclass
class RecordingStore(FakeRolloutStore):
    """FakeRolloutStore whose record keeps one entry per (at, unique), as the table's sort key does, and whose
    next ``crashes`` record calls die as a runtime that stops does."""

    crashes: int = 0
    slots: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def record(self, endpoint: str, entry: dict[str, Any], at_iso: str, *, unique: str | None = None) -> None:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("the runtime died")
        written = (endpoint, dict(entry) | {"at": at_iso})
        slot = None if unique is None else (endpoint, at_iso, unique)
        if slot in self.slots:
            self.entries[self.slots[slot]] = written
            return
        if slot is not None:
            self.slots[slot] = len(self.entries)
        self.entries.append(written)


@dataclass
class FakeBucket(FakeObjects):
    """Bucket: keys listed in S3's (lexicographic) order; the reads of ``unreadable`` keys, and every write
    while ``refusal`` is set, fail with that error."""

    read: list[str] = field(default_factory=list)
    unreadable: dict[str, ShepherdError] = field(default_factory=dict)
    refusal: ShepherdError | None = None
    modified: dict[tuple[str, str], float] = field(default_factory=dict)  # LastModified epochs; 0 where not given

    def put(self, bucket: str, key: str, lines: list[str], *, modified: float = 0.0) -> None:
        self.objects[(bucket, key)] = ("\n".join(lines) + "\n").encode()
        self.modified[(bucket, key)] = modified

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, float]]:
        return [(key, self.modified.get((bucket, key), 0.0)) for key in self.keys(bucket, prefix)]

    def read_bytes(self, bucket: str, key: str) -> bytes:
        self.read.append(key)
        if key in self.unreadable:
            raise self.unreadable[key]
        return super().read_bytes(bucket, key)

    def write_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str | None:
        if self.refusal is not None:
            raise self.refusal
        self.objects[(bucket, key)] = data
        return None


@dataclass
class SteppingTimer:
    """A monotonic clock that moves ``step`` seconds each time it is read: reading an object takes that long."""

    at: float = 0.0
    step: float = 0.0

    def __call__(self) -> float:
        self.at += self.step
        return self.at
