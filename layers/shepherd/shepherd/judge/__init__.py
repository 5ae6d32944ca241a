"""Shepherd's rollout judge: sequential tests with stated error rates that hold under continuous monitoring.

See README.md beside this file for the method and its guarantees.
"""

from shepherd.judge.engine import judge, judge_metric
from shepherd.judge.models import (
    Baseline,
    FeedbackBin,
    Judgement,
    Metric,
    MetricJudgement,
    MetricSettings,
    PairedBin,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
)

__all__ = [
    "Baseline",
    "FeedbackBin",
    "Judgement",
    "Metric",
    "MetricJudgement",
    "MetricSettings",
    "PairedBin",
    "StageObservations",
    "StageSettings",
    "VariantBin",
    "Verdict",
    "judge",
    "judge_metric",
]
