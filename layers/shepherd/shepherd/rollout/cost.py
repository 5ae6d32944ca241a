"""What a rollout cost, stage by stage, from its record (pure functions).

A stage costs the capacity it adds beside the champion's own fleet (recorded when the stage is entered): the shadow's
instances, the A/B challenger's, the champion's fleet kept at weight 0 in full; the watch adds none (the candidate
has replaced the champion). It lasts from its ``stage-entered`` record until the next change of the endpoint or
the rollout's end. A replay stage costs its transform jobs. Orchestration is modelled per judge call as measured by
bench/bench_rollout_cost.py. docs/ROLLOUTS.md, "What a rollout costs".
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from shepherd.cost import Prices
from shepherd.rollout.plan import VariantSpec

# Step Functions transitions per judge call (StageWait, Judge, Verdict) and per stage entered (MoreStages,
# EnterStage, NextStage), and the Lambda behind them: bench/results/rollout_cost.json
TRANSITIONS_PER_JUDGE_CALL = 3
TRANSITIONS_PER_STAGE = 3
# A judge call is one 512 MB Lambda invocation (template.yaml, JudgeStageFunction); a second is an upper estimate
# of its duration on AWS (CloudWatch and S3 reads), locally it takes 0.03 s.
LAMBDA_GB_SECONDS_PER_CALL = 0.5
# Records after which the endpoint no longer holds a stage's added capacity
STAGE_ENDS = frozenset({"stage-entered", "finalizing", "promoted", "rolled-back", "inconclusive", "rejected", "ended"})


def shadow_fleet(
    candidate: VariantSpec, *, champion_count: int | None, sampling_percentage: int, count: int | None
) -> VariantSpec:
    """The shadow variant for a copy of ``sampling_percentage`` % of the requests: ``count`` instances, else as many
    as carry that share at the champion's load per instance (at least one; at 100 %, never fewer than configured)."""
    if candidate.instance_count is None:  # serverless: no instances to size
        return candidate
    if count is None:
        count = candidate.instance_count
        if champion_count:
            sampled = max(1, math.floor(champion_count * sampling_percentage / 100 + 0.5))
            count = max(count, sampled) if sampling_percentage >= 100 else sampled
    return candidate.model_copy(update={"instance_count": count})


def added_capacity(kind: str, candidate: VariantSpec, champion: VariantSpec | None) -> list[dict[str, Any]]:
    """The instances a stage of ``kind`` runs beside the champion's own fleet, as its record keeps them."""
    if kind == "watch" or candidate.instance_count is None:
        return []
    if kind == "full":
        if champion is None or champion.instance_count is None:
            return []
        added = champion  # the challenger serves everything; the champion's fleet waits at weight 0
        role = "champion"
    else:
        added, role = candidate, "candidate"
    return [{"role": role, "instance_type": added.instance_type, "instance_count": added.instance_count}]


def _at(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record["at"]))
    except (KeyError, ValueError):
        return None


def _live_requests(verdicts: list[dict[str, Any]]) -> int:
    """The candidate's requests in a stage: the error-rate test's candidate samples at its last look (complete
    CloudWatch minutes of Invocations; a shadow's copies included)."""
    for verdict in reversed(verdicts):
        for metric in verdict.get("statistics") or []:
            if isinstance(metric, dict) and metric.get("metric") == "error_rate":
                return int(metric.get("candidate_samples") or 0)
    return 0


def _priced(prices: Prices, instances: list[dict[str, Any]], hours: float) -> tuple[float, float | None, list[str]]:
    """Instance-hours, their USD (None if any is unknown) and why unknown."""
    instance_hours, usd, unknown = 0.0, 0.0, []
    for fleet in instances:
        fleet_hours = float(fleet.get("instance_count") or 0) * hours
        instance_hours += fleet_hours
        estimate = prices.instance_hours(fleet.get("instance_type"), fleet_hours)
        if estimate.usd is None:
            unknown.append(estimate.unknown)
        else:
            usd += estimate.usd
    return instance_hours, (None if unknown else usd), unknown


def _stage_entry(
    prices: Prices, name: str, instances: list[dict[str, Any]], *, hours: float, calls: int, requests: int
) -> dict[str, Any]:
    instance_hours, instance_usd, unknown = _priced(prices, instances, hours)
    lambda_requests = calls + 1
    orchestration = prices.orchestration(
        calls * TRANSITIONS_PER_JUDGE_CALL + TRANSITIONS_PER_STAGE,
        lambda_requests,
        lambda_requests * LAMBDA_GB_SECONDS_PER_CALL,
    )
    if orchestration.usd is None:
        unknown.append(orchestration.unknown)
    usd = None if instance_usd is None or orchestration.usd is None else instance_usd + orchestration.usd
    entry: dict[str, Any] = {
        "stage": name,
        "minutes": round(hours * 60, 1),
        "instances": instances,
        "instance_hours": round(instance_hours, 4),
        "judge_calls": calls,
        "usd": None if usd is None else round(usd, 4),
        "live_requests": requests,
    }
    if unknown:
        entry["unknown"] = sorted(set(unknown))
    return entry


def _replay(prices: Prices, record: dict[str, Any]) -> dict[str, Any]:
    """A replay stage's transform jobs (no live requests: it scores captured ones)."""
    jobs = [job for job in record.get("jobs") or [] if isinstance(job, dict)]
    instance_hours, usd, unknown = 0.0, 0.0, []
    for job in jobs:
        hours = float(job.get("instance_count") or 0) * float(job.get("seconds") or 0) / 3600
        instance_hours += hours
        estimate = prices.instance_hours(job.get("instance_type"), hours)
        if estimate.usd is None:
            unknown.append(estimate.unknown)
        else:
            usd += estimate.usd
    entry: dict[str, Any] = {
        "stage": "replay",
        "minutes": round(max((float(job.get("seconds") or 0) for job in jobs), default=0.0) / 60, 1),
        "instances": [{k: job.get(k) for k in ("role", "instance_type", "instance_count", "seconds")} for job in jobs],
        "instance_hours": round(instance_hours, 4),
        "judge_calls": 0,
        "usd": None if unknown else round(usd, 4),
        "live_requests": 0,
    }
    if unknown:
        entry["unknown"] = sorted(set(unknown))
    return entry


def summary(records: list[dict[str, Any]], *, run: str, ended_at: datetime, prices: Prices) -> dict[str, Any]:
    """The rollout ``run``'s cost per stage and in total, and the requests its candidate answered live, from the
    endpoint's record (entries with their ``at``), as its ending record keeps them."""
    timed = sorted(
        ((at, r) for r in records if r.get("run") == run and (at := _at(r)) is not None), key=lambda pair: pair[0]
    )
    stages = [_replay(prices, r) for _, r in timed if r.get("event") == "replay"]
    entered = [(position, at, r) for position, (at, r) in enumerate(timed) if r.get("event") == "stage-entered"]
    # A retried stage entry records the stage again: it began at its first record, holds its last one's capacity
    began = {r.get("stage_index"): at for _, at, r in reversed(entered)}
    last = {r.get("stage_index"): position for position, _, r in entered}
    for position, _, record in entered:
        index = record.get("stage_index")
        if last[index] != position:
            continue
        start = began[index]
        stop = next((at for at, r in timed[position + 1 :] if r.get("event") in STAGE_ENDS), ended_at)
        verdicts = [r for _, r in timed if r.get("event") == "verdict" and r.get("stage_index") == index]
        kind = str(record.get("stage"))
        name = f"{kind} {float(record.get('weight') or 0):g}%" if kind == "ab" else kind
        instances = [i for i in record.get("instances") or [] if isinstance(i, dict)]
        hours = max(0.0, (stop - start).total_seconds() / 3600)
        stages.append(
            _stage_entry(prices, name, instances, hours=hours, calls=len(verdicts), requests=_live_requests(verdicts))
        )
    unknown = sorted({reason for stage in stages for reason in stage.get("unknown", [])})
    total_usd = sum(stage["usd"] for stage in stages if stage["usd"] is not None)
    cost: dict[str, Any] = {
        "instance_hours": round(sum(stage["instance_hours"] for stage in stages), 4),
        "usd": None if unknown else round(total_usd, 4),
        "region": prices.region,
        "prices_as_of": prices.as_of,
        "stages": stages,
    }
    if unknown:
        cost["unknown"] = unknown
    return {"cost": cost, "live_requests": sum(stage["live_requests"] for stage in stages)}
