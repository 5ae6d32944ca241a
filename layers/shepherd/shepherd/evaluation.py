"""Evaluation gates: a trained model is registered only if every gate of its config passes.

A gate compares one metric with a fixed threshold and/or with the current champion (the
latest Approved package of the model's group) by a margin. A metric the job did not report
fails its gate: a model is never registered on missing evidence.
"""

from __future__ import annotations

from pydantic import BaseModel

from shepherd.config import Gate


class GateResult(BaseModel):
    metric: str
    direction: str
    value: float | None
    threshold: float | None
    champion: float | None
    margin: float | None
    passed: bool
    reason: str


class Evaluation(BaseModel):
    passed: bool
    results: list[GateResult]
    summary: str


# Metrics are printed with a few digits: 0.85 against 0.8 + 0.05 (0.8500000000000001 in floats) passes.
TOLERANCE = 1e-9


def _better(value: float, other: float, direction: str, margin: float = 0.0) -> bool:
    gain = value - other if direction == "maximize" else other - value
    return gain >= margin - TOLERANCE


def judge_gate(gate: Gate, value: float | None, champion: float | None) -> GateResult:
    words = "at least" if gate.direction == "maximize" else "at most"
    reasons: list[str] = []
    passed = True
    if value is None:
        passed = False
        reasons.append(f"{gate.metric} was not reported by the training job (check its metric_definitions regex)")
    else:
        if gate.threshold is not None and not _better(value, gate.threshold, gate.direction):
            passed = False
            reasons.append(f"{gate.metric} = {value:g}, must be {words} {gate.threshold:g}")
        if gate.must_beat_champion_by is not None and champion is not None:
            bound = (
                champion + gate.must_beat_champion_by
                if gate.direction == "maximize"
                else champion - gate.must_beat_champion_by
            )
            if not _better(value, champion, gate.direction, gate.must_beat_champion_by):
                passed = False
                reasons.append(
                    f"{gate.metric} = {value:g}, must be {words} {bound:g} "
                    f"(the champion's {champion:g} {'+' if gate.direction == 'maximize' else '-'} "
                    f"margin {gate.must_beat_champion_by:g})"
                )
    if passed:
        shown = "n/a" if value is None else f"{value:g}"
        against = f", champion {champion:g}" if champion is not None and gate.must_beat_champion_by is not None else ""
        reasons.append(f"{gate.metric} = {shown} passes{against}")
    return GateResult(
        metric=gate.metric,
        direction=gate.direction,
        value=value,
        threshold=gate.threshold,
        champion=champion,
        margin=gate.must_beat_champion_by,
        passed=passed,
        reason="; ".join(reasons),
    )


def evaluate(gates: list[Gate], metrics: dict[str, float], champion: dict[str, float] | None) -> Evaluation:
    """Every gate against the job's metrics and, where the gate asks, the champion's."""
    results = [judge_gate(g, metrics.get(g.metric), (champion or {}).get(g.metric)) for g in gates]
    failed = [r for r in results if not r.passed]
    if not gates:
        summary = "no evaluation gates configured: registered on training success alone"
    elif failed:
        summary = "rejected: " + "; ".join(r.reason for r in failed)
    else:
        summary = "all gates passed: " + "; ".join(r.reason for r in results)
    return Evaluation(passed=not failed, results=results, summary=summary)
