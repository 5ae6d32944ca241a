"""What the judge reads (CloudWatch-shaped 60-s bins, shadow pairs, feedback) and what it answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PROMOTE = "PROMOTE"
    CONTINUE = "CONTINUE"
    ROLLBACK = "ROLLBACK"
    INCONCLUSIVE = "INCONCLUSIVE"


class Metric(StrEnum):
    """A bad-event rate the judge compares between candidate and champion."""

    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    QUALITY = "quality"
    SHADOW_ERRORS = "shadow_errors"
    SHADOW_QUALITY = "shadow_quality"


PAIRED_METRICS = frozenset({Metric.SHADOW_ERRORS, Metric.SHADOW_QUALITY})


def _require_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class VariantBin:
    """One complete 60-s CloudWatch bin of one production variant.

    latency_exceedances is the number of requests slower than the stage's latency threshold t:
    SampleCount - TC(:t), or SampleCount x (1 - PR(:t)/100).
    """

    minute: int
    sample_count: int
    error_sum: int = 0
    latency_exceedances: int | None = None

    def __post_init__(self) -> None:
        _require_counts(minute=self.minute, sample_count=self.sample_count, error_sum=self.error_sum)
        _require_counts(latency_exceedances=self.latency_exceedances)
        if self.error_sum > self.sample_count or (self.latency_exceedances or 0) > self.sample_count:
            raise ValueError(f"minute {self.minute}: more bad requests than requests ({self.sample_count})")


@dataclass(frozen=True, slots=True)
class FeedbackBin:
    """Ground-truth outcomes that arrived for one variant's predictions in one minute."""

    minute: int
    labelled: int
    misclassified: int

    def __post_init__(self) -> None:
        _require_counts(minute=self.minute, labelled=self.labelled, misclassified=self.misclassified)
        if self.misclassified > self.labelled:
            raise ValueError(f"minute {self.minute}: more misclassified than labelled ({self.labelled})")


@dataclass(frozen=True, slots=True)
class PairedBin:
    """Shadow pairs (both variants answered the same request, joined by InferenceId) of one minute."""

    minute: int
    pairs: int
    candidate_only: int
    champion_only: int

    def __post_init__(self) -> None:
        _require_counts(
            minute=self.minute, pairs=self.pairs, candidate_only=self.candidate_only, champion_only=self.champion_only
        )
        if self.candidate_only + self.champion_only > self.pairs:
            raise ValueError(f"minute {self.minute}: more discordant pairs than pairs ({self.pairs})")


@dataclass(frozen=True, slots=True)
class Baseline:
    """The champion's recorded counts of one metric (requests and bad events) from before the stage:
    what the candidate is judged against once the champion serves no traffic (the full stage and the
    post-promotion watch)."""

    samples: int
    bad: int

    def __post_init__(self) -> None:
        _require_counts(samples=self.samples, bad=self.bad)
        if self.bad > self.samples:
            raise ValueError(f"baseline: more bad events ({self.bad}) than samples ({self.samples})")


@dataclass(frozen=True, slots=True)
class StageObservations:
    """Everything observed since the stage started; minutes_elapsed is the stage clock.

    With ``baseline`` set for a metric, that metric judges the candidate's bins alone against the
    recorded baseline rate (the champion bins are not used for it)."""

    minutes_elapsed: int
    champion: tuple[VariantBin, ...] = ()
    candidate: tuple[VariantBin, ...] = ()
    champion_feedback: tuple[FeedbackBin, ...] = ()
    candidate_feedback: tuple[FeedbackBin, ...] = ()
    shadow_errors: tuple[PairedBin, ...] = ()
    shadow_quality: tuple[PairedBin, ...] = ()
    baseline: Mapping[Metric, Baseline] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_counts(minutes_elapsed=self.minutes_elapsed)


@dataclass(frozen=True, slots=True)
class MetricSettings:
    """One metric's sequential test; what each setting guarantees: shepherd/judge/README.md."""

    alpha: float = 0.05  # P(ROLLBACK of a candidate as good as the champion)
    beta: float = 0.2  # P(PROMOTE of one whose rate is at least (1 + delta) x the champion's)
    delta: float = 1.0
    min_samples: int = 100  # per variant, before a PROMOTE
    max_minutes: int = 1440  # then at_max, undecided
    at_max: Verdict = Verdict.INCONCLUSIVE
    strict: bool = False  # boundaries ln(1/alpha), ln(beta) (Ville); else exact per look (sprt.grouped_sprt)
    floor: float = 0.0  # a rate below it is good enough whatever the champion's (FLOOR_SHARE of beta)
    drift_margin: float = 0.0  # against a baseline: its upper confidence bound x (1 + drift_margin)
    rollback_only: bool = False  # the watch: no PROMOTE exit, ROLLBACK at ln(1/alpha) for as long as it runs

    def __post_init__(self) -> None:
        if self.drift_margin < 0.0:
            raise ValueError(f"drift_margin must be >= 0, got {self.drift_margin}")
        if not 0.0 <= self.floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {self.floor}")
        if not (0.0 < self.alpha < 1.0 and 0.0 < self.beta < 1.0 and self.alpha + self.beta < 1.0):
            raise ValueError(f"need 0 < alpha, beta and alpha + beta < 1, got {self.alpha}, {self.beta}")
        if self.delta <= 0.0:
            raise ValueError(f"delta must be > 0 (a relative increase), got {self.delta}")
        _require_counts(min_samples=self.min_samples)
        if self.max_minutes < 1:
            raise ValueError(f"max_minutes must be >= 1, got {self.max_minutes}")
        if self.at_max not in (Verdict.INCONCLUSIVE, Verdict.ROLLBACK):
            raise ValueError(
                f"at_max must be INCONCLUSIVE or ROLLBACK (never an untested promotion), got {self.at_max}"
            )


@dataclass(frozen=True, slots=True)
class StageSettings:
    """The metrics a stage judges; alpha is split equally between them (Bonferroni)."""

    metrics: Mapping[Metric, MetricSettings] = field(default_factory=lambda: {Metric.ERROR_RATE: MetricSettings()})

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("a stage judges at least one metric")

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, Any]]) -> StageSettings:
        """From a model's config, e.g. {"error_rate": {"delta": 0.5}, "latency": {"max_minutes": 120}}."""
        known = {item.name for item in fields(MetricSettings)}
        metrics: dict[Metric, MetricSettings] = {}
        for name, values in config.items():
            if name not in Metric.__members__.values():
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(Metric)}")
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"{name}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
            arguments = dict(values)
            if "at_max" in arguments:
                arguments["at_max"] = Verdict(arguments["at_max"])
            metrics[Metric(name)] = MetricSettings(**arguments)
        return cls(metrics)


@dataclass(frozen=True, slots=True)
class MetricJudgement:
    """One metric's state: the statistic is the cumulative log-likelihood ratio (at the decision, if any)."""

    metric: Metric
    verdict: Verdict
    statistic: float
    rollback_boundary: float
    promote_boundary: float
    alpha_spent: float
    beta: float
    candidate_samples: int
    champion_samples: int
    candidate_bad: int
    champion_bad: int
    decided_minute: int | None
    explanation: str


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    metrics: tuple[MetricJudgement, ...]
    explanation: str
