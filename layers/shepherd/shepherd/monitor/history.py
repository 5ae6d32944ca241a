"""The drift alert's reference learnt from captured history, from per-hour summaries the runs accumulate.

Per numeric feature and hour of the cycle: the count, sum and sum of squares of the values (exact) and a KLL sketch
of them (Apache DataSketches); per categorical feature: category counts. The size is bounded by features x cycle
hours, whatever the history's length, so an hourly run never re-reads a week of capture. docs/MONITORING.md,
"The learnt reference", says which hours count and what the alert's rate becomes.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from datasketches import kll_floats_sketch

from shepherd.monitor import alert
from shepherd.monitor.layout import monitoring_root
from shepherd.monitor.reference import (
    LEVELS,
    SEASONAL_SIGMAS,
    CategoricalReference,
    FeatureReference,
    NumericReference,
    Reference,
    Value,
    category,
    cycle_phase,
    fourier_basis,
    parse_numbers,
)

FORMAT = 1
K = 1_000  # KLL accuracy: at 200, tail quantiles varied enough to fire spread charts (MONITORING.md)
MAX_CATEGORIES = 1_000  # categories a feature's history counts by name; later new ones are counted as rows only


def document_key(model: str) -> str:
    """The learning document: the champion's accumulated hours, then its learnt reference (kept; not a report)."""
    return f"{monitoring_root(model)}learnt_reference.json"


@dataclass(frozen=True)
class LearnSettings:
    """When the reference is learnt: `history_days` of accepted hours covering every hour of the cycle."""

    history_days: int = 7
    cycle_hours: int = 24
    harmonics: int = 3

    @property
    def hours_needed(self) -> int:
        return self.history_days * 24

    @property
    def per_bin(self) -> int:
        """Accepted hours each hour of the cycle needs: half the cycles the history spans, at least one."""
        return max(1, self.hours_needed // self.cycle_hours // 2)


def _sketch_text(sketch: kll_floats_sketch) -> str:
    return base64.b64encode(sketch.serialize()).decode("ascii")


def _sketch(text: str | None) -> kll_floats_sketch:
    return kll_floats_sketch.deserialize(base64.b64decode(text)) if text else kll_floats_sketch(K)


class History:
    """Summaries of accepted hours, per feature and hour of the cycle; JSON between runs."""

    def __init__(self, cycle_hours: int, data: Mapping[str, Any] | None = None) -> None:
        data = data or {}
        self.cycle_hours = int(data.get("cycle_hours", cycle_hours))
        self.hours = int(data.get("hours", 0))
        self.covered = [int(c) for c in data.get("covered") or [0] * self.cycle_hours]
        self.first: str | None = data.get("first")
        self.last: str | None = data.get("last")
        self.features: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (data.get("features") or {}).items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "cycle_hours": self.cycle_hours,
            "hours": self.hours,
            "covered": list(self.covered),
            "first": self.first,
            "last": self.last,
            "features": self.features,
        }

    def _numeric(self, name: str) -> dict[str, Any]:
        zeros = [0.0] * self.cycle_hours
        empty = {"kind": "numeric", "origin": None, "missing": 0, "invalid": 0, "n": list(zeros)}
        return self.features.setdefault(
            name, empty | {"sum": list(zeros), "squares": list(zeros), "sketches": [""] * self.cycle_hours}
        )

    def _categorical(self, name: str) -> dict[str, Any]:
        return self.features.setdefault(name, {"kind": "categorical", "rows": 0, "missing": 0, "counts": {}})

    def add(self, kinds: Mapping[str, FeatureReference], batch: Mapping[str, Sequence[Value]], hour: datetime) -> None:
        """One hour's batch (the capture of the hour starting `hour`), each feature as the training reference
        judges it (numeric or categorical)."""
        slot = int(cycle_phase(hour, self.cycle_hours))
        for name, kind in kinds.items():
            found = batch.get(name)
            values = [] if found is None else found
            if isinstance(kind, NumericReference):
                numbers, missing, invalid = parse_numbers(values)
                item = self._numeric(name)
                item["missing"] += missing
                item["invalid"] += invalid
                if len(numbers) == 0:
                    continue
                if item["origin"] is None:
                    item["origin"] = float(numbers.mean())
                shifted = numbers - item["origin"]
                item["n"][slot] += len(shifted)
                item["sum"][slot] += float(shifted.sum())
                item["squares"][slot] += float(shifted @ shifted)
                sketch = _sketch(item["sketches"][slot])
                sketch.update(np.ascontiguousarray(shifted, dtype=np.float32))
                item["sketches"][slot] = _sketch_text(sketch)
            else:
                cells: Counter[str | None] = Counter()
                for value, count in Counter(values).items():
                    cells[category(value)] += count
                item = self._categorical(name)
                item["missing"] += cells.pop(None, 0)
                item["rows"] += len(values)
                counts = item["counts"]
                for key, count in cells.items():
                    if key in counts or len(counts) < MAX_CATEGORIES:
                        counts[str(key)] = counts.get(str(key), 0) + count
        self.hours += 1
        self.covered[slot] += 1
        stamp = _hour(hour)
        self.first = min(self.first or stamp, stamp)
        self.last = max(self.last or stamp, stamp)

    def ready(self, settings: LearnSettings) -> bool:
        return self.hours >= settings.hours_needed and min(self.covered) >= settings.per_bin

    def learn(self, harmonics: int = 3) -> Reference:
        """The reference these hours give: as reference.build would from their rows with capture times, the
        residual quantiles from the sketches."""
        features: dict[str, FeatureReference] = {}
        for name, item in self.features.items():
            if item["kind"] == "numeric":
                features[name] = _numeric(item, self.cycle_hours, harmonics)
            else:
                counts = {str(k): int(v) for k, v in item["counts"].items()}
                features[name] = CategoricalReference(int(item["rows"]), int(item["missing"]), counts)
        seasonal = any(isinstance(f, NumericReference) and f.parameters > 1 for f in features.values())
        return Reference(features, self.cycle_hours if seasonal else None)


def _numeric(item: Mapping[str, Any], cycle_hours: int, harmonics: int) -> NumericReference:
    n, sums, squares = (np.asarray(item[key], dtype=float) for key in ("n", "sum", "squares"))
    total = float(n.sum())
    origin = float(item["origin"] or 0.0)
    if total < 2:
        return NumericReference(int(total), int(item["missing"]), int(item["invalid"]), (origin,), 1.0, _flat())
    mean = float(sums.sum()) / total
    rss0 = float(squares.sum()) - total * mean * mean
    coef = np.array([mean])
    rss = rss0
    rows = fourier_basis(np.arange(cycle_hours) + 0.5, cycle_hours, harmonics)[n > 0]  # rows at the hour's midpoint
    if harmonics > 0 and total > 10 * rows.shape[1] and len(rows) >= rows.shape[1]:
        gram, moment = rows.T @ (rows * n[n > 0][:, None]), rows.T @ sums[n > 0]
        fitted = np.linalg.solve(gram, moment)
        rss1 = float(squares.sum()) - float(fitted @ moment)
        explained = (rss0 - rss1) / max(rss1 / (total - len(fitted)), 1e-300)
        terms = rows.shape[1] - 1
        if explained > terms + SEASONAL_SIGMAS * math.sqrt(2 * terms):
            coef, rss = fitted, rss1
    scale = math.sqrt(max(rss, 0.0) / total) or 1.0
    phases = np.arange(cycle_hours) + 0.5
    locations = fourier_basis(phases, cycle_hours, harmonics) @ coef if len(coef) > 1 else np.full(cycle_hours, mean)
    residuals, weights = [], []
    for slot, text in enumerate(item["sketches"]):
        if not text or not n[slot]:
            continue
        items = np.asarray(list(_sketch(text)), dtype=float)
        residuals.append((items[:, 0] - locations[slot]) / scale)
        weights.append(items[:, 1])
    r, w = np.concatenate(residuals), np.concatenate(weights)
    order = np.argsort(r)
    r, w = r[order], w[order]
    positions = (np.cumsum(w) - w / 2.0) / w.sum()
    knots = np.maximum.accumulate(np.interp(LEVELS, positions, r))
    knots = knots + np.arange(len(knots)) * 1e-9  # strictly increasing for interpolation
    location = (float(coef[0]) + origin, *(float(c) for c in coef[1:]))
    return NumericReference(
        int(total), int(item["missing"]), int(item["invalid"]), location, scale, tuple(float(k) for k in knots)
    )


def _flat() -> tuple[float, ...]:
    return tuple(float(v) for v in np.linspace(-3.5, 3.5, len(LEVELS)))


def _hour(at: datetime) -> str:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Observed:
    """What one run did to the learning: its new document, the reference learnt now (if any), a word on why."""

    document: dict[str, Any]
    learnt: Reference | None
    note: str


def observe(
    document: Mapping[str, Any] | None,
    training: Reference,
    batch: Mapping[str, Sequence[Value]],
    *,
    hour: datetime,
    settings: LearnSettings,
    alert_settings: alert.AlertSettings,
) -> Observed:
    """Take one hour into the learning document unless a guard alert calls it drift; once the history is
    ready, learn the reference.

    The guard is the drift alert against a provisional reference learnt from the accepted hours at each whole
    cycle of them (the training reference would call the cycle itself drift); the first cycle is unguarded.
    A replayed hour (not after the document's last) changes nothing."""
    doc = dict(document or {})
    stamp = _hour(hour)
    if doc.get("last_hour") and stamp <= doc["last_hour"]:
        return Observed(doc, None, "hour already taken")
    history = History(settings.cycle_hours, doc.get("history"))
    provisional = doc.get("provisional")
    accept, note = True, "hour taken (first cycle: unguarded)"
    if provisional is not None:
        guard, decision = alert.step(
            doc.get("guard"), Reference.from_json(provisional), batch, at=hour, settings=alert_settings
        )
        doc["guard"] = guard.to_json()
        accept = not decision.episode_open
        note = "hour taken" if accept else f"hour left out: {decision.reason} against the provisional reference"
    if accept:
        history.add(training.features, batch, hour)
    else:
        doc["left_out"] = int(doc.get("left_out", 0)) + 1
    cycles = history.hours // settings.cycle_hours
    if accept and min(history.covered) >= 1 and cycles > int(doc.get("provisional_cycles", 0)):
        doc |= {"provisional": history.learn(settings.harmonics).to_json(), "provisional_cycles": cycles}
        doc["guard"] = None  # the guard's charts start afresh against the new provisional reference
    doc |= {"format": FORMAT, "status": "learning", "last_hour": stamp, "history": history.to_json()}
    if history.ready(settings):
        learnt = history.learn(settings.harmonics)
        summary = {"hours": history.hours, "from": history.first, "to": history.last, "learnt_at": stamp}
        summary["left_out"] = int(doc.get("left_out", 0))
        return Observed(
            {"format": FORMAT, "status": "learnt", "last_hour": stamp, "reference": learnt.to_json()} | summary,
            learnt,
            "reference learnt",
        )
    return Observed(doc, None, note)
