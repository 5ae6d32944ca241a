"""The demo's odds: how often `shepherd demo` fails to promote its good candidate or to roll back its faulty one.

Writes bench/results/demo_odds.json, which the demo's report quotes. A report, not a test: always exits 0.
How it is built: docs/BENCHMARKS.md, "demo_odds.py".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import chi2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "shepherd"))

from shepherd.judge import judge  # noqa: E402
from shepherd.judge.models import (  # noqa: E402
    Baseline,
    FeedbackBin,
    Metric,
    PairedBin,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
)
from shepherd.rollout import budget  # noqa: E402
from shepherd.rollout.judging import JudgeRequest  # noqa: E402
from shepherd.rollout.observe import LAG_SECONDS  # noqa: E402

from localcloud.demo import FAULT_SHARE, Settings, rollout_config  # noqa: E402

LAG_MINUTES = math.ceil(LAG_SECONDS / 60)
# Before the rollout the champion serves alone; full and the watch judge against its counts from then on. The
# demo trains its candidate for 10-20 virtual minutes first: 10 is the pessimistic end.
MINUTES_BEFORE_ROLLOUT = 10


def _kinds(config: dict[str, Any]) -> list[str]:
    return ["shadow", *(["ab"] * len(config["ab_steps"])), "full", "watch"]


def stage_settings(config: dict[str, Any], kind: str, weight: float, part: budget.StageBudget) -> StageSettings:
    """A stage's tests as JudgeStage builds them (JudgeRequest.settings): the config's alpha and beta are the
    rollout's, and the stage spends its part of them (shepherd.rollout.budget)."""
    stage = {
        "kind": kind,
        "weight": weight,
        "max_minutes": config["limits"][kind],
        "at_max": "INCONCLUSIVE",
        "alpha_share": part.alpha_share,
        "beta_power": part.beta_power,
    }
    request = {
        "run": "demo-odds",
        "endpoint": "demo",
        "package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2",
        "champion_variant": "v1",
        "candidate_variant": "v2",
        "stage": stage,
        "stage_index": 0,
        "stage_started": 1.0,
        "judge": config["judge"],
    }
    return JudgeRequest.parse(request).settings()


def _stage(
    rng: np.random.Generator,
    kind: str,
    weight: float,
    rate: float,
    config: dict[str, Any],
    *,
    part: budget.StageBudget,
    faulty: bool = False,
    baseline: dict[Metric, Baseline] | None = None,
) -> tuple[str, int, dict[str, int]]:
    """One stage of bins up to its limit, judged once: (verdict, deciding minute, champion's counts).

    The champion's counts (requests, errors, labelled, wrong) are those the stage adds to full's baseline:
    its minutes until the judge call that ended the stage, the deciding bin's minute plus CloudWatch's lag."""
    limit = config["limits"][kind]
    minutes = limit - LAG_MINUTES  # at the limit, the last LAG minutes' bins are not complete yet
    m, fault = config["malformed"], FAULT_SHARE if faulty else 0.0
    share = config["feedback_share"]
    wrong_champion, wrong_candidate = (
        (config["models"]["v2_wrong"], config["models"]["v2_wrong"])
        if faulty
        else (
            config["models"]["v1_wrong"],
            config["models"]["v2_wrong"],
        )
    )
    champion, candidate, champion_fb, candidate_fb, pairs = [], [], [], [], []
    kept: list[tuple[int, int, int, int]] = []  # the champion's (requests, errors, labelled, wrong) per minute
    for minute in range(minutes):
        requests = int(rng.poisson(rate))
        malformed = int(rng.binomial(requests, m))
        valid = requests - malformed
        if kind == "shadow":
            # The shadow variant answers a copy of every request: the malformed ones fail on both.
            failed = malformed + int(rng.binomial(valid, fault))
            champion.append(VariantBin(minute, requests, malformed))
            candidate.append(VariantBin(minute, requests, failed))
            both = int(rng.binomial(valid - (failed - malformed), share))
            if faulty:  # v3 is v2's model: they disagree on nothing
                only = (0, 0)
            else:
                p = [config["models"]["v1_only_wrong"], config["models"]["v2_only_wrong"]]
                drawn = rng.multinomial(both, [*p, 1 - sum(p)])
                only = (int(drawn[1]), int(drawn[0]))
            pairs.append(PairedBin(minute, both, only[0], only[1]))
            labelled = int(rng.binomial(valid, share))
            kept.append((requests, malformed, labelled, int(rng.binomial(labelled, wrong_champion))))
            continue
        to_candidate = int(rng.binomial(requests, weight / 100))
        counts = []
        for n, wrong in ((requests - to_candidate, wrong_champion), (to_candidate, wrong_candidate)):
            bad = int(rng.binomial(n, m))
            labelled = int(rng.binomial(n - bad, share))
            counts.append((n, bad, labelled, int(rng.binomial(labelled, wrong))))
        for (n, bad, labelled, wrong), bins, feedback in (
            (counts[0], champion, champion_fb),
            (counts[1], candidate, candidate_fb),
        ):
            if n:
                bins.append(VariantBin(minute, n, bad))
            if labelled:
                feedback.append(FeedbackBin(minute, labelled, wrong))
        kept.append(counts[0])
    observed = StageObservations(
        minutes_elapsed=limit,
        champion=tuple(champion),
        candidate=tuple(candidate),
        champion_feedback=tuple(champion_fb),
        candidate_feedback=tuple(candidate_fb),
        shadow_errors=(),
        shadow_quality=tuple(pairs),
        baseline=baseline or {},
    )
    judged = judge(observed, stage_settings(config, kind, weight, part))
    rolled = [item.decided_minute for item in judged.metrics if item.verdict is Verdict.ROLLBACK]
    promoted = [item.decided_minute for item in judged.metrics if item.verdict is Verdict.PROMOTE]
    if rolled and (len(promoted) < len(judged.metrics) or min(r or 0 for r in rolled) <= max(p or 0 for p in promoted)):
        return "ROLLBACK", min(r or 0 for r in rolled), {}
    if len(promoted) == len(judged.metrics):
        decided = max(p or 0 for p in promoted)
        totals = np.sum(kept[: decided + 1 + LAG_MINUTES], axis=0, dtype=np.int64)
        return "PROMOTE", decided, dict(zip(("n", "bad", "labelled", "wrong"), map(int, totals), strict=True))
    return "INCONCLUSIVE", limit, {}


def _good_rollout(rng: np.random.Generator, config: dict[str, Any], rate: float) -> tuple[str, str, int]:
    """The good candidate's whole rollout: (outcome, the stage that ended it, virtual minutes)."""
    before = int(rng.poisson(rate * MINUTES_BEFORE_ROLLOUT))
    malformed = int(rng.binomial(before, config["malformed"]))
    labelled = int(rng.binomial(before - malformed, config["feedback_share"]))
    history = {"n": before, "bad": malformed, "labelled": labelled}
    history["wrong"] = int(rng.binomial(labelled, config["models"]["v1_wrong"]))
    elapsed = 0
    stages = [("shadow", 100.0)] + [("ab", float(w)) for w in config["ab_steps"]] + [("full", 100.0), ("watch", 100.0)]
    parts = budget.split(_kinds(config))
    baseline: dict[Metric, Baseline] | None = None
    for (kind, weight), part in zip(stages, parts, strict=True):
        if kind in ("full", "watch") and baseline is None:
            baseline = {
                Metric.ERROR_RATE: Baseline(history["n"], history["bad"]),
                Metric.QUALITY: Baseline(history["labelled"], history["wrong"]),
            }
        verdict, minute, kept = _stage(rng, kind, weight, rate, config, part=part, baseline=baseline)
        elapsed += minute + LAG_MINUTES
        if kind == "watch" and verdict == "INCONCLUSIVE":
            verdict = "PROMOTE"  # the watch found no harm in its time: the promotion stands
        if verdict != "PROMOTE":
            return verdict.lower(), kind, elapsed
        for key, value in kept.items():  # empty after the watch: nothing follows it
            history[key] += value
    return "promoted", "watch", elapsed


def _faulty_rollout(rng: np.random.Generator, config: dict[str, Any], rate: float) -> tuple[str, str, int]:
    shadow = budget.split(_kinds(config))[0]
    verdict, minute, _ = _stage(rng, "shadow", 100.0, rate, config, part=shadow, faulty=True)
    return ("rolled_back" if verdict == "ROLLBACK" else verdict.lower()), "shadow", minute + LAG_MINUTES


def rollout_alpha(config: dict[str, Any]) -> dict[str, Any]:
    """Every test's alpha in one rollout, as the product spends the config's (the rollout's) alpha across the stages
    and, within a stage, across its metrics: they add up to the rollout's false-rollback bound."""
    tests = []
    weights = [100.0, *(float(w) for w in config["ab_steps"]), 100.0, 100.0]
    for kind, weight, part in zip(_kinds(config), weights, budget.split(_kinds(config)), strict=True):
        stage = stage_settings(config, kind, weight, part)
        name = kind if kind != "ab" else f"ab {weight:g}%"
        for metric, metric_settings in stage.metrics.items():
            tests.append({"stage": name, "metric": str(metric), "alpha": metric_settings.alpha / len(stage.metrics)})
    return {"tests": tests, "sum": sum(t["alpha"] for t in tests)}


def measure_models(demo: Settings) -> dict[str, float]:
    """v1's and v2's misclassification rates on fresh rows, trained as the demo trains them (train.py's model)."""
    sys.path.insert(0, str(ROOT / "examples" / "churn"))
    from generate_data import generate
    from sklearn.ensemble import RandomForestClassifier

    pool = generate(200_000, seed=12345)
    features, truth = pool.drop(columns=["target"]), pool["target"].to_numpy() == 1
    wrong = {}
    for name, seed, depth in (("v1", 7, demo.first_max_depth), ("v2", 8, demo.max_depth)):
        frame = generate(demo.rows, seed=seed)
        model = RandomForestClassifier(n_estimators=100, max_depth=depth, random_state=0, n_jobs=1)
        model.fit(frame.drop(columns=["target"]), frame["target"])
        wrong[name] = (model.predict_proba(features)[:, 1] >= 0.5) != truth
    return {
        "v1_wrong": float(wrong["v1"].mean()),
        "v2_wrong": float(wrong["v2"].mean()),
        "v1_only_wrong": float((wrong["v1"] & ~wrong["v2"]).mean()),
        "v2_only_wrong": float((wrong["v2"] & ~wrong["v1"]).mean()),
    }


def run(mode: str, rate: float, replications: int, seed: int, models: dict[str, float]) -> dict[str, Any]:
    demo = Settings.for_mode(mode == "quick")
    rollout = rollout_config(demo)
    config = {
        "judge": rollout["judge"],
        "ab_steps": demo.ab_steps,
        "feedback_share": demo.feedback_share,
        "malformed": demo.malformed,
        "models": models,
        "limits": {
            "shadow": demo.stage_max_minutes,
            "ab": demo.stage_max_minutes,
            "full": demo.stage_max_minutes,
            "watch": demo.watch_minutes,
        },
    }
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    good, ended, minutes = Counter(), Counter(), []
    for _ in range(replications):
        outcome, stage, elapsed = _good_rollout(rng, config, rate)
        good[outcome] += 1
        if outcome != "promoted":
            ended[f"{outcome} in {stage}"] += 1
        else:
            minutes.append(elapsed)
    faulty = Counter(_faulty_rollout(rng, config, rate)[0] for _ in range(replications))
    failures = replications - good["promoted"] + replications - faulty["rolled_back"]
    # The exact one-sided 95 % upper bound of a Poisson count (3/n with none: the rule of three).
    upper = float(chi2.ppf(0.95, 2 * failures + 2)) / 2 / replications
    return {
        "mode": mode,
        "settings": asdict(demo),
        "requests_per_virtual_minute": rate,
        "replications": replications,
        "good": dict(good),
        "good_failed_how": dict(ended),
        "faulty": dict(faulty),
        "failure_rate": failures / replications,
        "failure_rate_95_upper": upper,
        "good_virtual_minutes_p50_p99": [float(np.percentile(minutes, q)) for q in (50, 99)] if minutes else None,
        "rollout_alpha": rollout_alpha(config),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 rollouts per case instead of 10,000")
    parser.add_argument("--replications", type=int)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    replications = args.replications or (1000 if args.quick else 10_000)
    models = measure_models(Settings())
    print(f"models on 200,000 fresh rows: {models}", flush=True)
    results = []
    for mode in ("quick", "full"):
        nominal = Settings.for_mode(mode == "quick").measured_requests_per_virtual_minute
        # The nominal rate as measured, and a third of it: a loaded machine slows the clients, not the clock.
        for rate in (nominal, nominal / 3):
            result = run(mode, rate, replications, seed=len(results), models=models)
            results.append(result)
            print(
                f"{mode:5s} {rate:5.1f} req/min: good {result['good']}, faulty {result['faulty']}, failure "
                f"{result['failure_rate']:.2%} (95% upper {result['failure_rate_95_upper']:.3%}), rollout alpha "
                f"{result['rollout_alpha']['sum']:.3%}, minutes p50/p99 {result['good_virtual_minutes_p50_p99']} "
                f"({result['seconds']} s)",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_odds.json").write_text(json.dumps({"models": models, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
