"""Evaluation gates: a trained model is registered only if every gate of its config passes.

A gate compares one metric with a fixed threshold and/or with the current champion (the latest Approved
package of the model's group) by a margin. The champion is compared on the candidate's own validation rows,
both models scoring them (shepherd.comparison), and the margin must hold at the paired test's confidence
(shepherd.paired). A metric the job did not report fails its gate, and so does a champion comparison that
cannot be made: a model is never registered on missing evidence. docs/PIPELINES.md, "Evaluation gates".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from shepherd.config import Gate
from shepherd.paired import PairedComparison


class GateResult(BaseModel):
    metric: str
    direction: str
    value: float | None
    threshold: float | None
    champion: float | None  # the champion's value of the compared metric on the same rows
    margin: float | None
    passed: bool
    reason: str
    compared: str | None = None  # the metric both models were compared on (accuracy, mae, rmse ...)
    improvement: float | None = None
    lower: float | None = None  # the improvement's one-sided lower confidence bound


class Evaluation(BaseModel):
    passed: bool
    results: list[GateResult]
    summary: str


@dataclass(frozen=True)
class Champion:
    """What the gates compare with: the paired comparison per gate metric, or why none could be made."""

    arn: str
    paired: dict[str, PairedComparison] = field(default_factory=dict)
    unavailable: str | None = None


# Metrics are printed with a few digits: 0.85 against 0.8 + 0.05 (0.8500000000000001 in floats) passes.
TOLERANCE = 1e-9


def _better(value: float, other: float, direction: str) -> bool:
    gain = value - other if direction == "maximize" else other - value
    return gain >= -TOLERANCE


def compares_with_champion(gates: list[Gate]) -> bool:
    return any(gate.must_beat_champion_by is not None for gate in gates)


def _against(gate: Gate, margin: float, champion: Champion) -> tuple[bool, str, PairedComparison | None]:
    """(passed, why, the comparison) of the gate's champion margin."""
    if champion.unavailable is not None:
        return False, f"{gate.metric}: not compared with the champion: {champion.unavailable}", None
    paired = champion.paired.get(gate.metric)
    if paired is None:
        return False, f"{gate.metric}: no comparison with the champion on the same rows was made", None
    told = (
        f"{gate.metric}: on the same {paired.rows} validation rows {paired.metric} {paired.candidate:.4g} "
        f"against the champion's {paired.champion:.4g}, improvement {paired.improvement:+.4g} "
        f"({paired.confidence:.0%} lower bound {paired.lower:+.4g}, p = {paired.p_value:.3g})"
    )
    if paired.beats_by(margin):
        return True, f"{told} beats the champion by at least {margin:g}", paired
    return False, f"{told}: must beat the champion by at least {margin:g} at {paired.confidence:.0%}", paired


def judge_gate(gate: Gate, value: float | None, champion: Champion | None) -> GateResult:
    words = "at least" if gate.direction == "maximize" else "at most"
    reasons: list[str] = []
    passed = True
    paired: PairedComparison | None = None
    if value is None:
        passed = False
        reasons.append(f"{gate.metric} was not reported by the training job (check its metric_definitions regex)")
    elif gate.threshold is not None and not _better(value, gate.threshold, gate.direction):
        passed = False
        reasons.append(f"{gate.metric} = {value:g}, must be {words} {gate.threshold:g}")
    if gate.must_beat_champion_by is not None and champion is not None and value is not None:
        beaten, why, paired = _against(gate, gate.must_beat_champion_by, champion)
        passed = passed and beaten
        if not beaten or passed:
            reasons.append(why)
    if passed and not reasons:
        reasons.append(f"{gate.metric} = {'n/a' if value is None else f'{value:g}'} passes")
    elif passed:
        reasons.insert(0, f"{gate.metric} = {value:g} passes")
    return GateResult(
        metric=gate.metric,
        direction=gate.direction,
        value=value,
        threshold=gate.threshold,
        champion=paired.champion if paired else None,
        margin=gate.must_beat_champion_by,
        passed=passed,
        reason="; ".join(reasons),
        compared=paired.metric if paired else None,
        improvement=paired.improvement if paired else None,
        lower=paired.lower if paired else None,
    )


def evaluate(gates: list[Gate], metrics: dict[str, float], champion: Champion | None) -> Evaluation:
    """Every gate against the job's metrics and, where the gate asks, against the champion on the same rows."""
    results = [judge_gate(g, metrics.get(g.metric), champion) for g in gates]
    failed = [r for r in results if not r.passed]
    if not gates:
        summary = "no evaluation gates configured: registered on training success alone"
    elif failed:
        summary = "rejected: " + "; ".join(r.reason for r in failed)
    else:
        summary = "all gates passed: " + "; ".join(r.reason for r in results)
    return Evaluation(passed=not failed, results=results, summary=summary)
