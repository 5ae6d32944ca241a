"""Time for money: a sampled shadow (rollout.shadow.sampling_percentage) on a smaller fleet, judged as production
judges it, at several traffic levels (issue 21).

Per traffic level and sampling percentage: how long the shadow stage takes to decide, how often it rolls back a good
candidate and catches a bad one (the stage's error rates hold: the judge judges what it sees), and what it costs in
instance-hours and dollars per good candidate promoted out of shadow. Sampling changes the shadow stage only: the
A/B steps, full and the watch run the same at every percentage. Writes bench/results/cost.json (or --out DIR).
How it is built: docs/BENCHMARKS.md, "cost.py".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # judge.py beside this script

from judge import (
    LAG_MINUTES,
    PREFIX_MINUTES,
    _rollout_stages,
    _stage_settings,
    derived_end,
    stage_verdict,
)
from shepherd import cost as prices
from shepherd.rollout import cost
from shepherd.rollout.plan import VariantSpec

RESULTS = Path(__file__).resolve().parent / "results"
INSTANCE_TYPE = "ml.m5.large"  # the default config's
CONFIGURED_INSTANCES = 2  # endpoint.realtime.instance_count's default
SAMPLING = (100, 50, 25, 10, 5)
ERROR_RATE = 0.01


@dataclass(frozen=True)
class Traffic:
    rpm: float
    champion_instances: int  # the champion's fleet at this traffic (what the shadow is sized against)


TRAFFIC = (Traffic(200, 2), Traffic(1_000, 4), Traffic(5_000, 12))


def shadow_stage(
    traffic: Traffic, sampling: int, ratio: float, rng: np.random.Generator, *, stage: Any, config: Any
) -> tuple[str, int]:
    """One shadow stage at ``sampling`` %, judged as production judges it (every 5 minutes, CloudWatch's lag, the
    maximum derived from the traffic seen): (verdict, the minute of the deciding call)."""
    from shepherd.judge import StageObservations, VariantBin, judge
    from shepherd.judge.duration import with_derived_max

    settings = _stage_settings(stage, config)
    cap = int(stage["max_minutes"])
    seen = cap - 1 - LAG_MINUTES
    served = rng.poisson(traffic.rpm, seen + LAG_MINUTES + 1)
    copied = rng.binomial(served, sampling / 100.0)  # SageMaker copies each request with this chance
    champion_bad = rng.binomial(served, ERROR_RATE)
    candidate_bad = rng.binomial(copied, min(1.0, ERROR_RATE * ratio))

    def observed(upto: int, elapsed: int = cap) -> StageObservations:
        def bins(n: Any, bad: Any) -> tuple[VariantBin, ...]:
            return tuple(VariantBin(m, int(n[m]), int(bad[m])) for m in range(upto + 1) if n[m])

        return StageObservations(
            minutes_elapsed=elapsed, champion=bins(served, champion_bad), candidate=bins(copied, candidate_bad)
        )

    judged = with_derived_max(observed(-1, 0), settings, cap=cap)
    verdict, decided = stage_verdict(judge(observed(min(PREFIX_MINUTES, seen)), judged))
    if decided is None and seen > PREFIX_MINUTES:
        verdict, decided = stage_verdict(judge(observed(seen), judged))

    def limit(call: int) -> int:
        derived = with_derived_max(observed(call - 1 - LAG_MINUTES, call), settings, cap=cap)
        return min(values.max_minutes for values in derived.metrics.values())

    reached, at = derived_end(decided, limit, cap)
    if not reached:
        verdict = str(next(iter(judged.metrics.values())).at_max)
    return verdict, at


def shadow_instances(traffic: Traffic, sampling: int) -> int:
    """The shadow's instances as the product sizes them (shepherd.rollout.cost.shadow_fleet)."""
    spec = VariantSpec(
        variant="v2", model_name="bench", instance_type=INSTANCE_TYPE, instance_count=CONFIGURED_INSTANCES
    )
    sized = cost.shadow_fleet(spec, champion_count=traffic.champion_instances, sampling_percentage=sampling, count=None)
    return int(sized.instance_count or 0)


def row(traffic: Traffic, sampling: int, replications: int, rng: np.random.Generator) -> dict[str, Any]:
    (_, _, _, (stage, config)) = next(s for s in _rollout_stages("shepherd") if s[0] == "shadow")
    table = prices.prices("us-east-1")
    hourly = table.instance_usd_per_hour[INSTANCE_TYPE]
    instances = shadow_instances(traffic, sampling)
    out: dict[str, Any] = {"rpm": traffic.rpm, "sampling_percentage": sampling, "shadow_instances": instances}
    for candidate, ratio in (("good", 1.0), ("bad", 2.0)):
        runs = [shadow_stage(traffic, sampling, ratio, rng, stage=stage, config=config) for _ in range(replications)]
        verdicts = np.array([verdict for verdict, _ in runs])
        minutes = np.array([at for _, at in runs], dtype=float)
        hours = instances * minutes / 60
        summary: dict[str, Any] = {
            "rollback": round(float(np.mean(verdicts == "ROLLBACK")), 4),
            "promote": round(float(np.mean(verdicts == "PROMOTE")), 4),
            "undecided": round(float(np.mean((verdicts != "ROLLBACK") & (verdicts != "PROMOTE"))), 4),
            "mean_minutes": round(float(minutes.mean()), 1),
            "p90_minutes": round(float(np.quantile(minutes, 0.9)), 1),
            "mean_instance_hours": round(float(hours.mean()), 3),
            "mean_usd": round(float(hours.mean() * hourly), 4),
        }
        if candidate == "good":
            promoted = float(np.mean(verdicts == "PROMOTE"))
            summary["usd_per_promotion"] = round(float(hours.mean() * hourly) / promoted, 4) if promoted else None
        out[candidate] = summary
    return out


def markdown(rows: list[dict[str, Any]], replications: int) -> str:
    lines = [
        f"Shadow stage at the product's cadence, {replications:,} replications per cell, {ERROR_RATE:.0%} errors, "
        f"{INSTANCE_TYPE} at ${prices.prices('us-east-1').instance_usd_per_hour[INSTANCE_TYPE]}/h "
        f"(list price as of {prices.table()['as_of']}).",
        "",
        "| rpm | sampled | shadow instances | good: minutes mean (p90) | good: false rollback | good: undecided "
        "| $ per promotion | bad: minutes mean | bad: caught |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        good, bad = r["good"], r["bad"]
        per = good["usd_per_promotion"]
        lines.append(
            f"| {r['rpm']:,.0f} | {r['sampling_percentage']} % | {r['shadow_instances']} "
            f"| {good['mean_minutes']:.0f} ({good['p90_minutes']:.0f}) | {good['rollback']:.4f} "
            f"| {good['undecided']:.3f} | {'-' if per is None else f'${per:.3f}'} "
            f"| {bad['mean_minutes']:.0f} | {bad['rollback']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 replications per cell instead of 2,000")
    parser.add_argument("--replications", type=int, default=0)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    replications = args.replications or (200 if args.quick else 2_000)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows = [row(traffic, sampling, replications, rng) for traffic in TRAFFIC for sampling in SAMPLING]
    seconds = time.perf_counter() - started
    table = markdown(rows, replications)
    print(table)
    print(f"{seconds:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    alpha_note = "the shadow stage's share of the rollout's alpha and beta (shepherd/rollout/budget.py)"
    report = {
        "replications": replications,
        "error_rate": ERROR_RATE,
        "instance_type": INSTANCE_TYPE,
        "prices": {"as_of": prices.table()["as_of"], "region": "us-east-1"},
        "judged_with": alpha_note,
        "rows": rows,
        "seconds": round(seconds, 1),
        "monte_carlo_margin_at_0.05": round(1.96 * math.sqrt(0.05 * 0.95 / replications), 4),
    }
    (args.out / "cost.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "cost.md").write_text(table)


if __name__ == "__main__":
    main()
