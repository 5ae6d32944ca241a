"""Shepherd's quality alert: predictions joined with late ground truth, and a CUSUM on the share of misses.

A miss is a wrong class (a binary score on the wrong side of the decision threshold) or, for a regressor, an error
larger than the baseline's 90th-percentile absolute error. Each run's labelled predictions feed one-sided Bernoulli
CUSUM charts of the miss rate against the baseline's (its upper bound, ``margin`` standard errors above), tuned to
``rate_ratios`` times it; as for the drift alert (shepherd.monitor.alert), Ville's inequality makes
h = log(checks a month x charts / rate) hold the stated false alerts a month, whatever each batch's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shepherd.monitor.model_quality import BINARY, MULTICLASS, REGRESSION, Labelled, Table
from shepherd.rollout.quality import Prediction

MISS_QUANTILE = 0.9  # a regressor's miss: an error above this quantile of the baseline's absolute errors
KEEP_SECONDS = 3 * 86400  # a prediction waits this long for its label, a label as long for its prediction
MAX_PENDING = 20_000  # predictions waiting, and labels, at most (the newest kept): bounds state.json


@dataclass(frozen=True)
class QualityReference:
    """What a run's misses are judged against: the baseline's miss rate over ``labelled`` rows."""

    problem_type: str
    decision_threshold: float
    tolerance: float | None  # regression: the absolute error a miss exceeds
    miss_rate: float
    labelled: int

    def to_json(self) -> dict[str, Any]:
        return {
            "problem_type": self.problem_type,
            "decision_threshold": self.decision_threshold,
            "tolerance": self.tolerance,
            "miss_rate": self.miss_rate,
            "labelled": self.labelled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QualityReference:
        tolerance = data.get("tolerance")
        return cls(
            str(data["problem_type"]),
            float(data.get("decision_threshold", 0.5)),
            None if tolerance is None else float(tolerance),
            float(data["miss_rate"]),
            int(data["labelled"]),
        )


def missed(data: Table, problem_type: str, decision_threshold: float, tolerance: float | None) -> list[bool]:
    """Per labelled row: whether it is a miss."""
    if problem_type == MULTICLASS:
        return [p != t for p, t in zip(data.predictions, data.labels, strict=True)]
    scores = np.array([float(p) for p in data.predictions])
    truth = np.array([float(t) for t in data.labels])
    if problem_type == BINARY:
        return [bool(m) for m in (scores >= decision_threshold) != (truth == 1.0)]
    return [bool(m) for m in np.abs(scores - truth) > (tolerance or 0.0)]


def reference(data: Table, decision_threshold: float = 0.5) -> QualityReference:
    """The baseline's miss rate (and, for a regressor, the tolerance that defines a miss)."""
    tolerance = None
    if data.problem_type == REGRESSION:
        errors = np.abs(np.array([float(p) for p in data.predictions]) - np.array([float(t) for t in data.labels]))
        tolerance = float(np.quantile(errors, MISS_QUANTILE))
    misses = missed(data, data.problem_type, decision_threshold, tolerance)
    return QualityReference(data.problem_type, decision_threshold, tolerance, sum(misses) / data.count, data.count)


@dataclass(frozen=True)
class QualitySettings:
    false_alerts_per_month: float = 1.0
    checks_per_month: int = 720
    rate_ratios: tuple[float, ...] = (1.5, 3.0)  # miss-rate increases the charts are tuned to
    margin: float = 2.0  # the baseline's own estimation error tolerated, in its standard errors
    quiet_checks: int = 3


def threshold(settings: QualitySettings) -> float:
    return math.log(settings.checks_per_month * len(settings.rate_ratios) / settings.false_alerts_per_month)


def null_rate(ref: QualityReference, margin: float) -> float:
    """The miss rate taken as no loss: the baseline's, plus ``margin`` standard errors (rule of three for none)."""
    p, n = ref.miss_rate, max(ref.labelled, 1)
    upper = p + margin * math.sqrt(p * (1.0 - p) / n) if p > 0.0 else 3.0 / n
    return min(max(upper, 1e-6), 0.5)


@dataclass
class QualityState:
    """Between runs: the charts, the open episode, predictions and labels waiting for each other."""

    charts: dict[str, float] = field(default_factory=dict)
    episode_open: bool = False
    quiet: int = 0
    episodes: int = 0
    pending: dict[str, list[Any]] = field(default_factory=dict)  # InferenceId -> [inference epoch, output]
    labels: dict[str, list[Any]] = field(default_factory=dict)  # InferenceId -> [label, epoch read]

    def to_json(self) -> dict[str, Any]:
        return {
            "charts": {k: v for k, v in self.charts.items() if v > 0.0},
            "episode_open": self.episode_open,
            "quiet": self.quiet,
            "episodes": self.episodes,
            "pending": self.pending,
            "labels": self.labels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> QualityState:
        data = data or {}
        return cls(
            {str(k): float(v) for k, v in (data.get("charts") or {}).items()},
            bool(data.get("episode_open", False)),
            int(data.get("quiet", 0)),
            int(data.get("episodes", 0)),
            {str(k): list(v) for k, v in (data.get("pending") or {}).items()},
            {str(k): list(v) for k, v in (data.get("labels") or {}).items()},
        )


def join(
    state: QualityState, predictions: Iterable[Prediction], labels: Mapping[str, str], now: float
) -> list[Labelled]:
    """This run's new predictions and labels joined on InferenceId with those waiting in ``state``; what is still
    unmatched waits, up to KEEP_SECONDS (and MAX_PENDING of each). Each pair is returned once, ever."""
    for prediction in predictions:
        state.pending.setdefault(prediction.inference_id, [prediction.epoch, prediction.output])
    for inference_id, label in labels.items():
        state.labels[inference_id] = [label, now]
    joined = []
    for inference_id in [i for i in state.labels if i in state.pending]:
        label, _ = state.labels.pop(inference_id)
        _, output = state.pending.pop(inference_id)
        joined.append(Labelled(prediction=str(output), label=str(label)))
    horizon = now - KEEP_SECONDS
    recent = sorted(((float(v[1]), k) for k, v in state.labels.items() if float(v[1]) >= horizon), reverse=True)
    state.labels = {k: state.labels[k] for _, k in sorted(recent[:MAX_PENDING])}
    kept = sorted(((float(v[0]), k) for k, v in state.pending.items() if float(v[0]) >= horizon), reverse=True)
    state.pending = {k: state.pending[k] for _, k in sorted(kept[:MAX_PENDING])}
    return joined


@dataclass(frozen=True)
class QualityDecision:
    opened: bool
    degraded: bool  # an episode is open: what the retrain gate reads
    firing: bool
    labelled: int
    misses: int
    evidence: tuple[dict[str, Any], ...] = ()

    def to_json(self, ref: QualityReference, settings: QualitySettings) -> dict[str, Any]:
        return {
            "alert": self.opened,
            "degraded": self.degraded,
            "firing": self.firing,
            "labelled": self.labelled,
            "misses": self.misses,
            "baseline_miss_rate": round(ref.miss_rate, 6),
            "null_miss_rate": round(null_rate(ref, settings.margin), 6),
            "evidence": list(self.evidence),
            "reason": _reason(self, ref),
        }


def _reason(decision: QualityDecision, ref: QualityReference) -> str:
    if decision.firing:
        rate = decision.misses / decision.labelled if decision.labelled else math.nan
        return f"quality loss: misses at {rate:.3g} this run against the baseline's {ref.miss_rate:.3g}"
    if decision.degraded:
        return "quality-loss episode open, no chart over threshold now"
    return "no quality loss" if decision.labelled else "no labelled predictions this run"


def step(
    state: QualityState, ref: QualityReference, labelled: int, misses: int, settings: QualitySettings
) -> QualityDecision:
    """Add one run's labelled predictions and misses to the charts; open or close the episode."""
    h = threshold(settings)
    p0 = null_rate(ref, settings.margin)
    evidence: list[dict[str, Any]] = []
    for ratio in settings.rate_ratios:
        name = f"misses/{ratio:g}"
        p1 = min(ratio * p0, 0.999)
        increment = misses * math.log(p1 / p0) + (labelled - misses) * math.log((1.0 - p1) / (1.0 - p0))
        value = min(max(0.0, state.charts.get(name, 0.0) + increment), 2.0 * h)  # capped: it calms soon after
        state.charts[name] = value
        if value >= h:
            evidence.append({"chart": name, "statistic": round(value, 4), "threshold": round(h, 4)})
    firing = bool(evidence)
    opened = firing and not state.episode_open
    if firing:
        state.episode_open, state.quiet = True, 0
        state.episodes += int(opened)
        for entry in evidence:  # a crossing chart restarts: the next crossing needs fresh evidence
            state.charts[str(entry["chart"])] = 0.0
    elif state.episode_open and labelled:
        state.quiet += 1
        if state.quiet >= settings.quiet_checks:
            state.episode_open, state.quiet = False, 0
    return QualityDecision(opened, state.episode_open, firing, labelled, misses, tuple(evidence))
