"""Prediction quality from data capture joined with ground truth on InferenceId (pure functions).

Gives the judge its QUALITY bins (A/B), SHADOW_QUALITY pairs (shadow) and, in full and the watch, the
champion's baseline; what cannot be read is skipped, never counted as right. A stage may last days, so a
call reads only what earlier calls did not (:class:`State`). A labelled prediction is binned by the minute
it became readable, never earlier than a minute the judge has seen, so a look is never revised by a late
label. docs/ROLLOUTS.md, "Quality judging".
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shepherd.judge import FeedbackBin, PairedBin
from shepherd.objects import json_objects
from shepherd.rollout.observe import BASELINE_KINDS, complete_until

PERIOD = 60
HOUR = 3600


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


def first_value(text: str) -> str | None:
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


def decoded(payload: Mapping[str, object]) -> str | None:
    """A capture or ground-truth payload's data as text (BASE64 decoded), or None where it cannot be."""
    data = payload.get("data")
    if not isinstance(data, str):
        return None
    if payload.get("encoding") == "BASE64":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except ValueError:
            return None
    return data


def inference_epoch(stamp: object) -> float | None:
    """An ISO 8601 time (eventMetadata.inferenceTime) as epoch seconds, or None."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def predictions(lines: Iterable[str]) -> Iterator[Prediction]:
    """The readable, identified predictions of data-capture JSON lines."""
    for record in json_objects(lines):
        metadata = record.get("eventMetadata") or {}
        output = (record.get("captureData") or {}).get("endpointOutput")
        inference_id = metadata.get("inferenceId") if isinstance(metadata, dict) else None
        epoch = inference_epoch(metadata.get("inferenceTime")) if isinstance(metadata, dict) else None
        if not isinstance(inference_id, str) or epoch is None or not isinstance(output, dict):
            continue
        text = decoded(output)
        value = first_value(text) if text is not None else None
        if value is not None:
            yield Prediction(inference_id, epoch, value)


def ground_truth(lines: Iterable[str]) -> dict[str, str]:
    """InferenceId -> label of ground-truth JSON lines (a later line for the same id wins)."""
    labels: dict[str, str] = {}
    for record in json_objects(lines):
        metadata, data = record.get("eventMetadata") or {}, record.get("groundTruthData") or {}
        event_id = metadata.get("eventId") if isinstance(metadata, dict) else None
        text = decoded(data) if isinstance(data, dict) else None
        value = first_value(text) if text is not None else None
        if isinstance(event_id, str) and value is not None:
            labels[event_id] = value
    return labels


def finite_number(text: str) -> float | None:
    """A label's or an answer's number, or None where it is not a finite one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def wrong(output: str, label: str, rule: Rule) -> bool:
    """Whether a prediction is wrong for its label, per ``rule``."""
    prediction, truth = finite_number(output), finite_number(label)
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
    """One variant's labelled predictions per minute of the stage (minute 0: its first whole minute) of their
    prediction: one read of everything, as before the judge's bins were by arrival (:func:`join`)."""
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
    pairs, and those only the candidate got wrong or only the champion got wrong (one read of everything,
    by prediction minute, as :func:`feedback_bins`)."""
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


# ------------------------------------------------------------------ incremental reading across judge calls

# An hour's prefix is listed until LATE_SECONDS after the hour ended, then closed: its object names are
# forgotten and it is never listed again. SageMaker writes capture within minutes of the request, and ground
# truth goes under the hour of its upload, so an hour is plenty; an object written later is not judged.
LATE_SECONDS = 3600
# Under capture/ so that the bucket's ExpireCapturedData rule expires these objects (and the versions each
# judge call's rewrite leaves) with the captured data they are made of; "_" starts no endpoint name.
STATE_ROOT = "capture/_judge-state/"
STATE_FORMAT = 1
ROLES = ("champion", "candidate")
FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class Source:
    """One prefix read hour by hour (``<prefix>yyyy/mm/dd/hh/<object>``): a variant's capture, or the
    model's ground truth (``name`` "feedback"), for the hours from start to end (None: up to now)."""

    name: str
    prefix: str
    start: float
    end: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """The inference times, start inclusive, end exclusive, of a variant's predictions that are judged."""

    start: float
    end: float = math.inf

    def __contains__(self, epoch: object) -> bool:
        return isinstance(epoch, (int, float)) and self.start <= epoch < self.end


@dataclass(frozen=True)
class Plan:
    """What a stage reads and how it joins; ``identity`` names the stage, so that a state written for
    another stage (or with another rule) is never taken for this one's."""

    identity: Mapping[str, Any]
    sources: tuple[Source, ...]
    windows: Mapping[str, Window]
    paired: bool
    first: float  # the stage's first whole minute: minute 0 of its bins


def plan(
    kind: str,
    *,
    run: str,
    stage_index: int,
    stage_started: float,
    baseline_since: float,
    capture: str,
    feedback: str,
    champion: str,
    candidate: str,
    rule: Rule,
) -> Plan:
    """The stage's sources and windows.

    shadow, ab: both variants' predictions and the labels from the stage's start. full, watch (no
    concurrent champion answers): the candidate's from the stage's start, and the champion's from
    ``baseline_since`` until the stage began, its baseline; labels from ``baseline_since``, since
    ground truth for the champion's earlier answers keeps arriving during the stage."""
    first = math.ceil(stage_started / PERIOD) * PERIOD
    against_baseline = kind in BASELINE_KINDS
    since = baseline_since if against_baseline else stage_started
    sources = (
        Source("champion", f"{capture}{champion}/", since, stage_started if against_baseline else None),
        Source("candidate", f"{capture}{candidate}/", stage_started),
        Source(FEEDBACK, feedback, since),
    )
    windows = {
        "champion": Window(baseline_since, stage_started) if against_baseline else Window(first),
        "candidate": Window(first),
    }
    identity = {
        "run": run,
        "stage_index": stage_index,
        "kind": kind,
        "stage_started": stage_started,
        "since": since,
        "capture": capture,
        "feedback": feedback,
        "champion": champion,
        "candidate": candidate,
        "decision_threshold": rule.decision_threshold,
        "tolerance": rule.tolerance,
    }
    return Plan(identity, sources, windows, paired=kind == "shadow", first=first)


def state_key(endpoint: str, run: str, stage_index: int) -> str:
    """Where JudgeStage keeps a stage's :class:`State` in the data bucket."""
    return f"{STATE_ROOT}{endpoint}/{run}/{stage_index}.json.gz"


@dataclass
class State:
    """What a stage's judge calls have read and not yet joined (docs/ROLLOUTS.md, "Quality judging").

    Its size is bounded by what is not joined yet, not by the stage's length. A pending prediction or a
    label may carry a third element, the epoch its object was last modified (when the listing gives it).
    """

    identity: dict[str, Any]
    closed: dict[str, float]  # per source: every hour that began before this epoch was read for good
    read: dict[str, dict[str, list[str]]]  # per source and open hour ("yyyy/mm/dd/hh"): the names read
    pending: dict[str, dict[str, list[Any]]]  # per variant: InferenceId -> [epoch, output(, arrival)]
    labels: dict[str, list[Any]]  # InferenceId -> [label, epoch of its upload hour(, arrival)], not joined yet
    bins: dict[str, dict[int, list[int]]]  # "champion"/"candidate"/"pairs": minute of arrival -> counts
    looked: int | None = None  # the judge has seen every bin before this stage minute: they never change

    @classmethod
    def fresh(cls, stage: Plan) -> State:
        return cls(
            identity=dict(stage.identity),
            closed={source.name: 0.0 for source in stage.sources},
            read={source.name: {} for source in stage.sources},
            pending={role: {} for role in ROLES},
            labels={},
            bins={"champion": {}, "candidate": {}, "pairs": {}},
        )


def hours(start_epoch: float, end_epoch: float) -> list[tuple[float, str]]:
    """(epoch, "yyyy/mm/dd/hh") of every hour from start to end."""
    hour = datetime.fromtimestamp(start_epoch, UTC).replace(minute=0, second=0, microsecond=0)
    end = datetime.fromtimestamp(end_epoch, UTC)
    out = []
    while hour <= end:
        out.append((hour.timestamp(), f"{hour:%Y/%m/%d/%H}"))
        hour += timedelta(hours=1)
    return out


def to_list(state: State, source: Source, now: float) -> list[tuple[float, str]]:
    """The hours of ``source`` a call at ``now`` lists: from its start, or its first open hour, to now."""
    start = max(source.start, state.closed.get(source.name, 0.0))
    end = now if source.end is None else min(source.end, now)
    return hours(start, end) if start <= end else []


def unread(state: State, source: str, hour: str, names: Iterable[str]) -> list[str]:
    """The names listed in an hour that no call has read yet, in the listing's order."""
    done = set(state.read.get(source, {}).get(hour, ()))
    return [name for name in names if name not in done]


def mark_read(state: State, source: str, hour: str, name: str) -> None:
    state.read.setdefault(source, {}).setdefault(hour, []).append(name)


Listed = str | tuple[str, float]  # a key, or (key, LastModified epoch)


def read_new(
    state: State,
    stage: Plan,
    now: float,
    *,
    list_keys: Callable[[str], Iterable[Listed]],
    read_lines: Callable[[str], list[str]],
    out_of_time: Callable[[], bool] = lambda: False,
) -> tuple[int, bool]:
    """Read into ``state`` every object of the stage's open hours that no earlier call read: each open
    hour is listed again (``list_keys(prefix)``: the keys under it, each alone or with its LastModified
    epoch), so an object written late into an hour already listed is read too. Returns how many objects
    were read, and whether that was all of them: once ``out_of_time()`` (asked after each object) says
    so, the rest is left to the next call, and the state stays consistent (each object read is counted
    whole and marked read)."""
    read = 0
    for source in stage.sources:
        for hour_epoch, hour in to_list(state, source, now):
            prefix = f"{source.prefix}{hour}/"
            arrivals: dict[str, float | None] = {}
            for entry in list_keys(prefix):
                key, arrival = (entry, None) if isinstance(entry, str) else (entry[0], float(entry[1]))
                arrivals[key.removeprefix(prefix)] = arrival
            for name in unread(state, source.name, hour, arrivals):
                if read and out_of_time():
                    return read, False
                lines = read_lines(prefix + name)
                if source.name == FEEDBACK:
                    add_labels(state, ground_truth(lines), hour_epoch, arrival=arrivals[name])
                else:
                    window = stage.windows[source.name]
                    add_predictions(state, source.name, predictions(lines), window, arrival=arrivals[name])
                mark_read(state, source.name, hour, name)
                read += 1
    return read, True


def add_predictions(
    state: State, role: str, captured: Iterable[Prediction], window: Window, *, arrival: float | None = None
) -> None:
    """Keep a variant's predictions that fall in its window until their label arrives (``arrival``: when
    their capture object was last modified, if known)."""
    pending = state.pending[role]
    for prediction in captured:
        if prediction.epoch in window:
            kept = [prediction.epoch, prediction.output] + ([] if arrival is None else [arrival])
            pending.setdefault(prediction.inference_id, kept)


def add_labels(state: State, labels: Mapping[str, str], hour_epoch: float, *, arrival: float | None = None) -> None:
    """Keep the labels uploaded in an hour until they join a prediction or their hour closes (``arrival``:
    when their object was last modified, if known)."""
    for inference_id, label in labels.items():
        state.labels[inference_id] = [label, hour_epoch] + ([] if arrival is None else [arrival])


def filed_minute(state: State, stage: Plan, epoch: float, *arrivals: float | None) -> int:
    """The stage minute a labelled prediction is counted in: the minute it became readable (the latest of
    its inference time and its objects' LastModified, when known), or the first minute no look has seen
    if that is later. A bin the judge has seen therefore never changes (docs/ROLLOUTS.md)."""
    readable = max([epoch, *(a for a in arrivals if a is not None)])
    minute = int((readable - stage.first) // PERIOD)
    return minute if state.looked is None else max(minute, state.looked)


def _arrival(entry: list[Any], index: int) -> float | None:
    return float(entry[index]) if len(entry) > index else None


def _count(bins: dict[int, list[int]], minute: int, values: tuple[int, ...]) -> None:
    cell = bins.setdefault(minute, [0] * len(values))
    for index, value in enumerate(values):
        cell[index] += value


def join(state: State, stage: Plan, rule: Rule) -> int:
    """Join the labels with the predictions waiting for them, into the bins; returns how many joined.

    Shadow: a label joins once both variants' predictions of its id are in (the pair is of the champion's
    answer and its shadow copy). Otherwise: each labelled prediction counts for its variant. Either is
    counted at :func:`filed_minute`. Whatever joined leaves the state, so that no later call counts it again."""
    champion, candidate = state.pending["champion"], state.pending["candidate"]
    joined = 0
    for inference_id, entry in list(state.labels.items()):
        label, arrival = entry[0], _arrival(entry, 2)
        if stage.paired:
            ours, theirs = candidate.get(inference_id), champion.get(inference_id)
            if ours is None or theirs is None:
                continue
            ours_wrong, theirs_wrong = wrong(ours[1], label, rule), wrong(theirs[1], label, rule)
            minute = filed_minute(state, stage, theirs[0], arrival, _arrival(theirs, 2), _arrival(ours, 2))
            _count(state.bins["pairs"], minute, (1, ours_wrong and not theirs_wrong, theirs_wrong and not ours_wrong))
            del candidate[inference_id], champion[inference_id]
        else:
            found = [
                (role, state.pending[role].pop(inference_id)) for role in ROLES if inference_id in state.pending[role]
            ]
            if not found:
                continue
            for role, kept in found:
                minute = filed_minute(state, stage, kept[0], arrival, _arrival(kept, 2))
                _count(state.bins[role], minute, (1, int(wrong(kept[1], label, rule))))
        del state.labels[inference_id]
        joined += 1
    return joined


def close(state: State, stage: Plan, now: float) -> bool:
    """After a call listed and read every open hour at ``now``: show the judge the bins of the minutes
    complete at ``now`` (as CloudWatch's, observe.complete_until), close the hours that ended LATE_SECONDS
    ago (forget their object names), and drop the labels uploaded in them that joined nothing (with, in
    shadow, the one variant's prediction of their id: without the other's it can never pair).
    Returns whether the state changed (hours close only when the horizon moves)."""
    changed = False
    looked = int((complete_until(now) - stage.first) // PERIOD)
    if state.looked is None or looked > state.looked:
        state.looked, changed = looked, True
    horizon = math.floor((now - LATE_SECONDS) / HOUR) * HOUR  # every hour that began before it is closed
    for source in stage.sources:
        if state.closed.get(source.name, 0.0) < horizon:
            state.closed[source.name], changed = horizon, True
        read = state.read.setdefault(source.name, {})
        for hour in [h for h in read if _hour_epoch(h) < horizon]:
            del read[hour]
    for inference_id, entry in list(state.labels.items()):
        if entry[1] < horizon:  # [label, upload hour(, LastModified)]
            del state.labels[inference_id]
            for role in ROLES:
                state.pending[role].pop(inference_id, None)
    return changed


def _hour_epoch(hour: str) -> float:
    return datetime.strptime(hour, "%Y/%m/%d/%H").replace(tzinfo=UTC).timestamp()


def _shown(state: State, name: str) -> list[tuple[int, list[int]]]:
    """The bins the judge may see: those before ``looked``, final (minutes ascending)."""
    looked = state.looked
    return [] if looked is None else [(m, cell) for m, cell in sorted(state.bins[name].items()) if m < looked]


def feedback_of(state: State, role: str) -> tuple[FeedbackBin, ...]:
    """A variant's labelled predictions per stage minute of arrival, final minutes only."""
    return tuple(FeedbackBin(minute=m, labelled=n, misclassified=bad) for m, (n, bad) in _shown(state, role))


def pairs_of(state: State) -> tuple[PairedBin, ...]:
    """Shadow's labelled pairs per stage minute of arrival, final minutes only."""
    return tuple(
        PairedBin(minute=m, pairs=n, candidate_only=c, champion_only=h) for m, (n, c, h) in _shown(state, "pairs")
    )


def totals(state: State, role: str) -> tuple[int, int]:
    """A variant's labelled predictions and wrong ones, all final minutes together (the baseline)."""
    cells = [cell for _, cell in _shown(state, role)]
    return sum(n for n, _ in cells), sum(bad for _, bad in cells)


def encode(state: State) -> bytes:
    """The state as gzip'd JSON (a day's pending predictions compress about fourfold)."""
    document = {
        "format": STATE_FORMAT,
        "identity": state.identity,
        "closed": state.closed,
        "read": state.read,
        "pending": state.pending,
        "labels": state.labels,
        "bins": {name: {str(m): cell for m, cell in cells.items()} for name, cells in state.bins.items()},
        "looked": state.looked,
    }
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 1, wbits=31)


def decode(data: bytes) -> State:
    """A state from :func:`encode`'s bytes; ValueError naming the first thing wrong with them."""
    try:
        document = json.loads(zlib.decompress(data, wbits=31))
    except (zlib.error, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"not gzip'd JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise ValueError(f"not a format-{STATE_FORMAT} judge state")
    identity = _mapping(document, "identity", lambda v: True)
    closed = _mapping(document, "closed", _is_number)
    read = _mapping(document, "read", lambda v: isinstance(v, dict) and all(_is_names(n) for n in v.values()))
    pending = _mapping(
        document, "pending", lambda v: isinstance(v, dict) and all(_is_prediction(p) for p in v.values())
    )
    labels = _mapping(document, "labels", _is_label)
    bins = _mapping(document, "bins", lambda v: isinstance(v, dict))
    looked = document.get("looked")  # absent from a state written before bins were by arrival
    if looked is not None and (not isinstance(looked, int) or isinstance(looked, bool)):
        raise ValueError(f"looked: {looked!r} is not a minute")
    if set(pending) != set(ROLES) or set(bins) != {"champion", "candidate", "pairs"}:
        raise ValueError("pending or bins name the wrong variants")
    counted: dict[str, dict[int, list[int]]] = {}
    for name, cells in bins.items():
        width = 3 if name == "pairs" else 2
        counted[name] = {}
        for minute, cell in cells.items():
            if not (
                isinstance(cell, list)
                and len(cell) == width
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cell)
                and sum(cell[1:]) <= cell[0]
            ):
                raise ValueError(f"bins.{name}.{minute}: {cell!r} is not a count")
            try:
                counted[name][int(minute)] = cell
            except ValueError:
                raise ValueError(f"bins.{name}: {minute!r} is not a minute") from None
    return State(
        identity=identity, closed=closed, read=read, pending=pending, labels=labels, bins=counted, looked=looked
    )


def _mapping(document: dict[str, Any], name: str, valid: Any) -> dict[str, Any]:
    value = document.get(name)
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not an object")
    for key, item in value.items():
        if not valid(item):
            raise ValueError(f"{name}.{key}: {item!r} is not valid")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def _is_prediction(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (2, 3)
        and _is_number(value[0])
        and isinstance(value[1], str)
        and all(_is_number(v) for v in value[2:])
    )


def _is_label(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (2, 3)
        and isinstance(value[0], str)
        and all(_is_number(v) for v in value[1:])
    )
