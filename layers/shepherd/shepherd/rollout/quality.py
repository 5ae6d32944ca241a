"""Prediction quality from data capture joined with ground truth (pure functions).

The endpoint's data capture records every sampled prediction with the client's InferenceId
(``eventMetadata.inferenceId``), production and shadow variants alike. Ground truth arrives
later, uploaded under ``feedback/<model>/yyyy/mm/dd/hh/*.jsonl`` in the format SageMaker Model
Monitor merges with capture::

    {"groundTruthData": {"data": "1", "encoding": "CSV"},
     "eventMetadata": {"eventId": "<InferenceId>"}, "eventVersion": "0"}

Joined on that id, each labelled prediction is right or wrong (:func:`wrong`), which gives the
judge its QUALITY bins (per variant, in A/B) and SHADOW_QUALITY pairs (both variants answered the
same labelled request, in shadow). Predictions without an InferenceId, or never labelled, are
not judged; a prediction or label that cannot be read is skipped, never counted as right.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shepherd.judge import FeedbackBin, PairedBin

PERIOD = 60


@dataclass(frozen=True, slots=True)
class Prediction:
    inference_id: str
    epoch: float
    output: str


@dataclass(frozen=True, slots=True)
class Rule:
    """When a labelled prediction is wrong.

    - tolerance set (regression): when |prediction - label| > tolerance;
    - a probability in [0, 1] against a 0/1 label (binary classification): when the prediction's
      side of decision_threshold is not the label's;
    - otherwise (class labels): when the prediction is not the label, compared as numbers when
      both are numbers, else as text.
    """

    decision_threshold: float = 0.5
    tolerance: float | None = None


def _first_value(text: str) -> str | None:
    """The first prediction of a response or label: the first CSV cell, or the first JSON value."""
    text = text.strip()
    if not text:
        return None
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if isinstance(data, dict):
            data = data.get("predictions", data.get("prediction", data.get("label")))
        while isinstance(data, list) and data:
            data = data[0]
        if isinstance(data, dict):
            data = data.get("score", data.get("predicted_label", data.get("label")))
        return None if data is None or isinstance(data, (list, dict)) else str(data)
    return text.splitlines()[0].split(",", 1)[0].strip() or None


def _decoded(payload: Mapping[str, object]) -> str | None:
    data = payload.get("data")
    if not isinstance(data, str):
        return None
    if payload.get("encoding") == "BASE64":
        try:
            return base64.b64decode(data).decode("utf-8")
        except ValueError:
            return None
    return data


def _epoch(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of JSON lines; an unreadable line is skipped (never counted as right)."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def predictions(lines: Iterable[str]) -> Iterator[Prediction]:
    """The readable, identified predictions of data-capture JSON lines."""
    for record in _objects(lines):
        metadata = record.get("eventMetadata") or {}
        output = (record.get("captureData") or {}).get("endpointOutput")
        inference_id = metadata.get("inferenceId") if isinstance(metadata, dict) else None
        epoch = _epoch(metadata.get("inferenceTime")) if isinstance(metadata, dict) else None
        if not isinstance(inference_id, str) or epoch is None or not isinstance(output, dict):
            continue
        text = _decoded(output)
        value = _first_value(text) if text is not None else None
        if value is not None:
            yield Prediction(inference_id, epoch, value)


def ground_truth(lines: Iterable[str]) -> dict[str, str]:
    """InferenceId -> label of ground-truth JSON lines (a later line for the same id wins)."""
    labels: dict[str, str] = {}
    for record in _objects(lines):
        metadata, data = record.get("eventMetadata") or {}, record.get("groundTruthData") or {}
        event_id = metadata.get("eventId") if isinstance(metadata, dict) else None
        text = _decoded(data) if isinstance(data, dict) else None
        value = _first_value(text) if text is not None else None
        if isinstance(event_id, str) and value is not None:
            labels[event_id] = value
    return labels


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def wrong(output: str, label: str, rule: Rule) -> bool:
    """Whether a prediction is wrong for its label, per ``rule``."""
    prediction, truth = _number(output), _number(label)
    if prediction is None or truth is None:
        return output.strip() != label.strip()
    if rule.tolerance is not None:
        return abs(prediction - truth) > rule.tolerance
    if truth in (0.0, 1.0) and 0.0 <= prediction <= 1.0:
        return (prediction >= rule.decision_threshold) != (truth == 1.0)
    return prediction != truth


def _minute(epoch: float, first: float) -> int | None:
    return int((epoch - first) // PERIOD) if epoch >= first else None


def feedback_bins(
    captured: Iterable[Prediction], labels: Mapping[str, str], *, started_epoch: float, rule: Rule
) -> tuple[FeedbackBin, ...]:
    """One variant's labelled predictions per minute of the stage (minute 0: its first whole minute)."""
    first = math.ceil(started_epoch / PERIOD) * PERIOD
    counts: dict[int, list[int]] = {}
    seen: set[str] = set()
    for prediction in captured:
        label = labels.get(prediction.inference_id)
        minute = _minute(prediction.epoch, first)
        if label is None or minute is None or prediction.inference_id in seen:
            continue
        seen.add(prediction.inference_id)
        cell = counts.setdefault(minute, [0, 0])
        cell[0] += 1
        cell[1] += wrong(prediction.output, label, rule)
    return tuple(FeedbackBin(minute=m, labelled=n, misclassified=bad) for m, (n, bad) in sorted(counts.items()))


def paired_bins(
    champion: Iterable[Prediction],
    candidate: Iterable[Prediction],
    labels: Mapping[str, str],
    *,
    started_epoch: float,
    rule: Rule,
) -> tuple[PairedBin, ...]:
    """Labelled requests both variants answered (shadow), per minute of the champion's answer:
    pairs, and those only the candidate got wrong or only the champion got wrong."""
    first = math.ceil(started_epoch / PERIOD) * PERIOD
    theirs = {p.inference_id: p for p in champion}
    counts: dict[int, list[int]] = {}
    seen: set[str] = set()
    for ours in candidate:
        label, other = labels.get(ours.inference_id), theirs.get(ours.inference_id)
        if label is None or other is None or ours.inference_id in seen:
            continue
        minute = _minute(other.epoch, first)
        if minute is None:
            continue
        seen.add(ours.inference_id)
        candidate_wrong, champion_wrong = wrong(ours.output, label, rule), wrong(other.output, label, rule)
        cell = counts.setdefault(minute, [0, 0, 0])
        cell[0] += 1
        cell[1] += candidate_wrong and not champion_wrong
        cell[2] += champion_wrong and not candidate_wrong
    return tuple(
        PairedBin(minute=m, pairs=n, candidate_only=c, champion_only=h) for m, (n, c, h) in sorted(counts.items())
    )


def hour_prefixes(prefix: str, start_epoch: float, end_epoch: float) -> list[str]:
    """``<prefix>yyyy/mm/dd/hh/`` for every hour from start to end (the capture and feedback layout)."""
    hour = datetime.fromtimestamp(start_epoch, UTC).replace(minute=0, second=0, microsecond=0)
    end = datetime.fromtimestamp(end_epoch, UTC)
    out = []
    while hour <= end:
        out.append(f"{prefix}{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return out
