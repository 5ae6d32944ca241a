"""Shepherd's drift alert: what notifies a human and may retrain, at a stated false-alarm rate per model per month.

Every feature's hourly batch gives standard scores (mean, spread, category mix) and counts (missing, unseen or
unparseable values); each feeds one-sided likelihood-ratio CUSUM charts. A CUSUM crossing e^h needs some stretch
of checks whose likelihood ratio, a nonnegative supermartingale without drift, reached e^h: by Ville's inequality
each chart crosses at most once per e^h checks on average, so h = log(checks a month x charts / rate) holds
`false_alerts_per_month` over every feature and check. The derivation and the benchmark: docs/MONITORING.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shepherd.monitor.reference import (
    CategoricalReference,
    NumericReference,
    Reference,
    Value,
    category,
    cycle_phase,
    parse_numbers,
)

MIN_EXPECTED = 5.0  # categories expected fewer times than this in a batch are pooled for the chi-square


@dataclass(frozen=True)
class AlertSettings:
    """The alert's knobs; the defaults are what docs/MONITORING.md states and bench/monitor.py measures."""

    false_alerts_per_month: float = 1.0
    checks_per_month: int = 720  # hourly
    shifts: tuple[float, ...] = (1.0, 3.0)  # score shifts each normal chart is tuned to, in standard errors
    rate_ratios: tuple[float, ...] = (2.0, 8.0)  # rate increases each count chart is tuned to
    reference_margin: float = 2.0  # the reference's own estimation error tolerated, in its standard errors
    quiet_checks: int = 3  # an episode ends after this many checks without a chart over its threshold


def charts(reference: Reference, settings: AlertSettings) -> list[str]:
    """Every chart's name, `feature/test/size`."""
    names: list[str] = []
    for feature, ref in reference.features.items():
        tests = ["mean+", "mean-", "spread+", "spread-"] if isinstance(ref, NumericReference) else ["mix+"]
        names += [f"{feature}/{test}/{shift:g}" for test in tests for shift in settings.shifts]
        names += [f"{feature}/{test}/{ratio:g}" for test in ("missing", "unseen") for ratio in settings.rate_ratios]
    return names


def threshold(reference: Reference, settings: AlertSettings) -> float:
    """h: each chart's log likelihood-ratio threshold for the stated rate."""
    count = len(charts(reference, settings))
    return math.log(settings.checks_per_month * count / settings.false_alerts_per_month)


@dataclass
class AlertState:
    """JSON-serialisable state between runs: the charts, the open episode, the last batch's hour."""

    charts: dict[str, float] = field(default_factory=dict)
    last_at: str | None = None
    episode_open: bool = False
    quiet: int = 0
    crossed: list[str] = field(default_factory=list)  # charts over threshold in the open episode
    episodes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "charts": {k: v for k, v in self.charts.items() if v > 0.0},
            "last_at": self.last_at,
            "episode_open": self.episode_open,
            "quiet": self.quiet,
            "crossed": list(self.crossed),
            "episodes": self.episodes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> AlertState:
        data = data or {}
        return cls(
            {str(k): float(v) for k, v in (data.get("charts") or {}).items()},
            data.get("last_at"),
            bool(data.get("episode_open", False)),
            int(data.get("quiet", 0)),
            [str(c) for c in data.get("crossed") or []],
            int(data.get("episodes", 0)),
        )


@dataclass(frozen=True)
class Evidence:
    """One chart over its threshold: its statistic (log likelihood ratio), h, and this batch's score or count."""

    feature: str
    test: str
    statistic: float
    threshold: float
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "test": self.test,
            "statistic": round(self.statistic, 4),
            "threshold": round(self.threshold, 4),
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class AlertDecision:
    """opened: a new alert episode (notify); firing: some chart is over its threshold at this check."""

    opened: bool
    firing: bool
    episode_open: bool
    features: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    duplicate: bool = False  # this batch's hour was already judged: nothing changed

    @property
    def reason(self) -> str:
        if self.duplicate:
            return "batch already judged"
        if not self.features:
            return "no drift" if not self.episode_open else "drift episode open, no chart over threshold now"
        return "drift in " + ", ".join(self.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.opened,
            "drifting": self.episode_open,
            "firing": self.firing,
            "features": list(self.features),
            "reason": self.reason,
            "duplicate": self.duplicate,
            "evidence": [e.to_json() for e in self.evidence],
        }


def _wilson_hilferty(statistic: float, df: int) -> float:
    """A chi-square(df) statistic as an approximately standard normal score."""
    c = 2.0 / (9.0 * df)
    return ((statistic / df) ** (1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)


def _rate_increments(count: int, total: int, seen: int, rows: int, settings: AlertSettings) -> dict[str, float]:
    """Poisson log likelihood ratios for a rate `ratio` times the reference's upper bound (one per ratio)."""
    upper = (seen + 1.0 + settings.reference_margin * math.sqrt(seen + 1.0)) / max(rows, 1)
    expected = total * min(upper, 1.0)
    return {f"{r:g}": count * math.log(r) - (r - 1.0) * expected for r in settings.rate_ratios}


def _normal_increments(score: float, margin: float, shifts: tuple[float, ...]) -> dict[str, float]:
    return {f"{d:g}": d * (score - margin) - d * d / 2.0 for d in shifts}


def _numeric_scores(
    ref: NumericReference, values: Sequence[Value], phase: float | None, cycle: int | None, settings: AlertSettings
) -> dict[str, tuple[float, dict[str, float]]]:
    numbers, missing, invalid = parse_numbers(values)
    total = len(numbers) + missing + invalid
    rows = ref.rows + ref.missing + ref.invalid
    out = {
        "missing": (float(missing), _rate_increments(missing, total, ref.missing, rows, settings)),
        "unseen": (float(invalid), _rate_increments(invalid, total, ref.invalid, rows, settings)),
    }
    n = len(numbers)
    if n >= 2:
        effective = ref.rows / ref.parameters
        inflation = math.sqrt(1.0 + n / effective)
        margin = settings.reference_margin * math.sqrt(n / effective)
        scores = ref.standard_scores(numbers, phase, cycle)
        mean = float(scores.sum()) / math.sqrt(n) / inflation
        spread = _wilson_hilferty(float(scores @ scores), n) / inflation
        out["mean+"] = (mean, _normal_increments(mean, margin, settings.shifts))
        out["mean-"] = (-mean, _normal_increments(-mean, margin, settings.shifts))
        out["spread+"] = (spread, _normal_increments(spread, margin, settings.shifts))
        out["spread-"] = (-spread, _normal_increments(-spread, margin, settings.shifts))
    return out


def _categorical_scores(
    ref: CategoricalReference, values: Sequence[Value], settings: AlertSettings
) -> dict[str, tuple[float, dict[str, float]]]:
    cells: Counter[str | None] = Counter()
    for value, count in Counter(values).items():
        cells[category(value)] += count
    missing = cells.pop(None, 0)
    total = missing + sum(cells.values())
    unseen = sum(c for name, c in cells.items() if name not in ref.counts)
    known_rows = sum(ref.counts.values())
    # Good-Turing: categories seen once in the reference estimate how often a new one turns up
    singletons = sum(1 for c in ref.counts.values() if c == 1)
    out = {
        "missing": (float(missing), _rate_increments(missing, total, ref.missing, ref.rows, settings)),
        "unseen": (float(unseen), _rate_increments(unseen, total, singletons, ref.rows, settings)),
    }
    n = total - missing - unseen
    if n >= 2 and known_rows > 0:
        observed, expected = [0.0], [0.0]
        for name, seen in ref.counts.items():
            share = n * seen / known_rows
            if share >= MIN_EXPECTED:
                observed.append(float(cells.get(name, 0)))
                expected.append(share)
            else:
                observed[0] += cells.get(name, 0)
                expected[0] += share
        if expected[0] < MIN_EXPECTED:  # a pool too small to stand alone joins the smallest category
            small = int(np.argmin(expected[1:])) + 1 if len(expected) > 1 else 0
            observed[small] += observed[0]
            expected[small] += expected[0]
            observed, expected = observed[1:], expected[1:]
        df = len(expected) - 1
        if df >= 1:
            o, e = np.asarray(observed), np.asarray(expected)
            statistic = float(((o - e) ** 2 / e).sum()) / (1.0 + n / known_rows)
            score = _wilson_hilferty(statistic, df)
            margin = settings.reference_margin * math.sqrt(n / known_rows)
            out["mix+"] = (score, _normal_increments(score, margin, settings.shifts))
    return out


def scores(
    reference: Reference,
    batch: Mapping[str, Sequence[Value]],
    *,
    at: datetime,
    settings: AlertSettings,
) -> dict[str, tuple[float, float]]:
    """Each chart's increment for one batch: chart name -> (log likelihood ratio increment, the batch's score)."""
    cycle = reference.cycle_hours
    phase = cycle_phase(at + timedelta(minutes=30), cycle) if cycle else None
    out: dict[str, tuple[float, float]] = {}
    for feature, ref in reference.features.items():
        values = batch.get(feature)
        if values is None:
            values = []
        if isinstance(ref, NumericReference):
            tests = _numeric_scores(ref, values, phase, cycle, settings)
        else:
            tests = _categorical_scores(ref, values, settings)
        for test, (score, increments) in tests.items():
            for size, increment in increments.items():
                out[f"{feature}/{test}/{size}"] = (increment, score)
    return out


def _hour(at: datetime) -> str:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def step(
    state: AlertState | Mapping[str, Any] | None,
    reference: Reference,
    batch: Mapping[str, Sequence[Value]],
    *,
    at: datetime,
    settings: AlertSettings | None = None,
) -> tuple[AlertState, AlertDecision]:
    """Judge one batch (the capture of the hour starting `at`) and advance the charts.

    A batch whose `at` is not after the last judged one is a replay (a run resumed after a crash): nothing changes."""
    settings = settings or AlertSettings()
    current = state if isinstance(state, AlertState) else AlertState.from_json(state)
    hour = _hour(at)
    if current.last_at is not None and hour <= current.last_at:
        return current, AlertDecision(False, False, current.episode_open, duplicate=True)
    h = threshold(reference, settings)
    values = dict(current.charts)
    evidence: list[Evidence] = []
    for name, (increment, score) in scores(reference, batch, at=at, settings=settings).items():
        value = min(max(0.0, values.get(name, 0.0) + increment), 2.0 * h)  # capped: it calms soon after drift ends
        values[name] = value
        if value >= h:
            feature, test, _ = name.rsplit("/", 2)
            evidence.append(Evidence(feature, test, value, h, score))
    firing = bool(evidence)
    crossed = sorted(set(current.crossed) | {f"{e.feature}/{e.test}" for e in evidence})
    opened = firing and not current.episode_open
    quiet = 0 if firing else current.quiet + 1
    episode_open = firing or (current.episode_open and quiet < settings.quiet_checks)
    if current.episode_open and not episode_open:  # the episode ended: its charts start afresh
        ended = set(current.crossed)
        values = {k: (0.0 if k.rsplit("/", 1)[0] in ended else v) for k, v in values.items()}
        crossed = []
    features = tuple(sorted({e.feature for e in evidence}))
    new_state = AlertState(
        {k: v for k, v in values.items() if v > 0.0},
        hour,
        episode_open,
        quiet if episode_open else 0,
        crossed if episode_open else [],
        current.episodes + int(opened),
    )
    strongest: dict[tuple[str, str], Evidence] = {}
    for item in sorted(evidence, key=lambda e: e.statistic, reverse=True):  # one per test: its strongest chart
        strongest.setdefault((item.feature, item.test), item)
    return new_state, AlertDecision(opened, firing, episode_open, features, tuple(strongest.values()))
