"""What one rollout costs in Step Functions and Lambda: transitions, history events, invocations (issue 7).

Writes bench/results/rollout_cost.json. A report, not a test: always exits 0.
How it is built: docs/BENCHMARKS.md, "bench_rollout_cost.py".
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # localcloud; cloud_run sits beside this script

from cloud_run import RESULTS, STAGE_MAX_MINUTES, CloudRun, churn_project, json_object, perform, table
from shepherd import cost as price_table

from localcloud.demo import MODEL, Traffic

HISTORY_CAP = 25_000
REGION = "us-east-1"
_TABLE = price_table.table()
_REGION = _TABLE["regions"][REGION]
# One source: Shepherd's price table (layers/shepherd/shepherd/cost/prices.json), as the rollout's cost meter reads it
PRICES = {
    "region": REGION,
    "as_of": _TABLE["as_of"],
    "step_functions_standard_per_1000_transitions_usd": _REGION["step_functions"]["standard_per_1000_transitions_usd"],
    "lambda_per_1m_requests_usd": _REGION["lambda"]["per_1m_requests_usd"],
    "lambda_per_gb_second_usd": _REGION["lambda"]["per_gb_second_usd"],
    "note": f"{REGION} list prices as of {_TABLE['as_of']} (x86 Lambda; shepherd/cost/prices.json); free tiers "
    "(4,000 transitions and 1M requests a month) ignored",
}
LOOP_STATES = ("StageWait", "Judge", "Verdict")


# ---------------------------------------------------------------------------------------- the run


class InvocationLog:
    """Every Lambda invocation of the local cloud: (wall time at start, function, seconds)."""

    def __init__(self) -> None:
        from localcloud.lambdas import FunctionPool

        self.calls: list[tuple[float, str, float]] = []
        self._lock = threading.Lock()
        original = FunctionPool.invoke
        log = self

        # FunctionPool.invoke runs every invocation, synchronous or asynchronous ("Event": EventBridge
        # targets), retries included, in a warm worker: its duration is the function's run time.
        def invoke(pool: Any, payload: bytes, client_context: Any) -> Any:
            started = time.time()
            try:
                return original(pool, payload, client_context)
            finally:
                with log._lock:
                    log.calls.append((started, pool.spec.name, time.time() - started))

        FunctionPool.invoke = invoke  # type: ignore[method-assign,assignment]

    def between(self, start: float, stop: float) -> list[tuple[float, str, float]]:
        with self._lock:
            return [c for c in self.calls if start <= c[0] <= stop]


class Run(CloudRun):
    def __init__(self, time_scale: float, rate: float, malformed: float, rows: int) -> None:
        super().__init__(time_scale, rows, "rollout-cost")
        self.rate, self.malformed = rate, malformed
        self.traffic: Traffic | None = None
        self.invocations: InvocationLog | None = None

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        super().stop()

    def memory(self) -> dict[str, int]:
        functions = self.cloud.client("lambda").list_functions()["Functions"]
        return {f["FunctionName"]: int(f.get("MemorySize") or 128) for f in functions}

    def execute(self) -> dict[str, Any]:
        from localcloud.demo import Settings

        self.deploy()
        self.invocations = InvocationLog()
        life1, first = self.first_model(churn_project([10, 25, 50], 1))
        rows = self.held_out_rows()
        client = self.cloud.client("sagemaker-runtime")
        self.traffic = Traffic(client, MODEL, rows, rate=self.rate, malformed=self.malformed).start()
        self.log(f"traffic: {self.rate:g} requests/s, {100 * self.malformed:g} % malformed")

        self.dataset("week-2", seed=8)
        life2 = self.wait("ModelLifecycleStateMachineArn", f"{MODEL}-week-2-", 600)
        self.log(f"ModelLifecycle week-2: {life2['status']}")
        second = self.wait("RolloutStateMachineArn", f"{MODEL}-v2-", 900)
        self.log(f"Rollout v2 (shadow -> A/B 10/25/50 -> full -> watch): {second['status']}")
        if second["status"] != "SUCCEEDED":
            self.log(f"  {second.get('error')}: {str(second.get('cause'))[:600]}")
        self.traffic.stop()
        time.sleep(0.5)  # let the last asynchronous invocations land in the log

        memory = self.memory()
        settings = Settings()
        sfn = self.cloud.client("stepfunctions")
        listed = {
            key: [
                {"name": e["name"], "status": e["status"]}
                for e in sfn.list_executions(stateMachineArn=self.outputs[f"{key}StateMachineArn"])["executions"]
            ]
            for key in ("ModelLifecycle", "Rollout")
        }
        return {
            "executions": listed,
            "first_deployment": self.measure(first, memory),
            "progressive": self.measure(second, memory),
            "lifecycle": {"week-1": self.measure(life1, memory), "week-2": self.measure(life2, memory)},
            "settings": {
                "time_scale": self.time_scale,
                "judge_interval_minutes": 1,
                "ab_steps": [10, 25, 50],
                "stage_max_duration_minutes": STAGE_MAX_MINUTES,
                "min_samples": 50,
                "alpha": settings.alpha,
                "beta": settings.beta,
                "delta": settings.delta,
                "rate_per_second": self.rate,
                "malformed": self.malformed,
                "rows": self.rows,
            },
            "traffic": {
                "sent": self.traffic.sent,
                "answered": self.traffic.answered,
                "malformed_sent": self.traffic.malformed_sent,
                "failed": len(self.traffic.failures),
                "by_variant": dict(self.traffic.by_variant),
            },
        }

    def measure(self, described: dict[str, Any], memory: dict[str, int]) -> dict[str, Any]:
        events = self.history(described["executionArn"])
        start, stop = described["startDate"].timestamp(), described["stopDate"].timestamp()
        figures = count(events)
        wall = stop - start
        assert self.invocations is not None
        calls = self.invocations.between(start, stop)  # each started by, or while, the execution ran
        by_function = Counter(name for _, name, _ in calls)
        gb_seconds = sum(seconds * memory.get(name, 128) / 1024 for _, name, seconds in calls)
        own = {name for name in by_function if _short(name) in figures["lambda_functions"]}
        own_gb_seconds = sum(seconds * memory.get(name, 128) / 1024 for _, name, seconds in calls if name in own)
        result = {
            "execution": described["name"],
            "status": described["status"],
            **figures,
            "wall_seconds": round(wall, 2),
            "virtual_minutes": round(wall * self.time_scale / 60, 1),
            "app_lambda_invocations_in_window": {_short(k): v for k, v in sorted(by_function.items())},
            "lambda_gb_seconds_state_machine_tasks": round(own_gb_seconds, 3),
            "lambda_gb_seconds_all_in_window": round(gb_seconds, 3),
        }
        for stage in result.get("stages", []):
            stage["virtual_minutes"] = round(stage["wall_seconds"] * self.time_scale / 60, 1)
        result["cost_usd"] = cost(figures["state_transitions"], figures["lambda_invocations"], own_gb_seconds)
        return result


def _short(function_name: str) -> str:
    """bench-RolloutFunction-ABC123 -> RolloutFunction."""
    parts = function_name.split("-")
    return next((p for p in parts if p.endswith("Function")), function_name)


def count(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Transitions, events, Lambda tasks, judge calls (per stage) of one execution's history."""
    types = Counter(e["type"] for e in events)
    scheduled = [e["taskScheduledEventDetails"] for e in events if e["type"] == "TaskScheduled"]
    lambda_tasks = [s for s in scheduled if s.get("resourceType") == "lambda"]
    arns = {str(json_object(s.get("parameters")).get("FunctionName", "")) for s in lambda_tasks}
    functions = sorted({_short(arn.split(":function:")[-1].split(":")[0]) for arn in arns})
    by_state: Counter[str] = Counter()
    events_by_state: Counter[str] = Counter()
    current = "(execution)"
    stages: list[dict[str, Any]] = []
    enter_times: list[tuple[float, str]] = []
    lambda_by_state: Counter[str] = Counter()
    for event in events:
        if event["type"].endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            current = details["name"]
            by_state[current] += 1
            if current in ("EnterStage", "Finalize"):
                enter_times.append((event["timestamp"].timestamp(), current))
            if current == "EnterStage":
                entered = json_object(details.get("input"))
                index = entered.get("pos", {}).get("i", len(stages))
                spec = (entered.get("state", {}).get("stages") or [{}] * (index + 1))[index]
                stages.append(
                    {"stage": spec.get("kind"), "weight": spec.get("weight"), "judge_calls": 0, "verdicts": Counter()}
                )
        events_by_state[current] += 1
        if event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"].get("resourceType") == "lambda":
            lambda_by_state[current] += 1
        if event["type"] == "TaskStateExited" and event["stateExitedEventDetails"]["name"] == "Judge" and stages:
            judged = json_object(event["stateExitedEventDetails"].get("output")).get("verdict", {})
            stages[-1]["judge_calls"] += 1
            stages[-1]["verdicts"][judged.get("verdict", "?")] += 1
            stages[-1]["last_explanation"] = judged.get("explanation")
            stages[-1]["last_statistics"] = (judged.get("statistics") or [None])[0]
    for i, stage in enumerate(stages):
        begin = enter_times[i][0] if i < len(enter_times) else None
        end = enter_times[i + 1][0] if i + 1 < len(enter_times) else events[-1]["timestamp"].timestamp()
        stage["wall_seconds"] = round(end - begin, 2) if begin is not None else None
        stage["verdicts"] = dict(stage["verdicts"])
    transitions = sum(v for k, v in types.items() if k.endswith("StateEntered"))
    judge_calls = by_state["Judge"]
    loop_events = sum(events_by_state[s] for s in LOOP_STATES)
    return {
        "state_transitions": transitions,
        "history_events": len(events),
        "lambda_invocations": len(lambda_tasks),
        "lambda_invocations_by_state": dict(sorted(lambda_by_state.items())),
        "lambda_functions": functions,
        "callback_tasks": sum(1 for s in lambda_tasks if str(s.get("resource", "")).endswith("waitForTaskToken")),
        "sns_publishes": sum(1 for s in scheduled if s.get("resourceType") == "sns"),
        "judge_calls": judge_calls,
        "judge_loop_transitions": sum(by_state[s] for s in LOOP_STATES),
        "judge_loop_events": loop_events,
        "fixed_transitions": transitions - sum(by_state[s] for s in LOOP_STATES),
        "fixed_events": len(events) - loop_events,
        "transitions_by_state": dict(by_state.most_common()),
        "events_by_type": dict(types.most_common()),
        **({"stages": stages} if stages else {}),
    }


def cost(transitions: int, requests: int, gb_seconds: float) -> dict[str, float]:
    sfn = transitions * PRICES["step_functions_standard_per_1000_transitions_usd"] / 1000  # type: ignore[operator]
    lam = requests * PRICES["lambda_per_1m_requests_usd"] / 1_000_000  # type: ignore[operator]
    compute = gb_seconds * PRICES["lambda_per_gb_second_usd"]  # type: ignore[operator]
    return {
        "step_functions": round(sfn, 7),
        "lambda_requests": round(lam, 9),
        "lambda_compute_estimate": round(compute, 9),
        "total": round(sfn + lam + compute, 7),
    }


# ---------------------------------------------------------------------------------------- AWS time


def extrapolate(progressive: dict[str, Any], judge_gb_seconds: float) -> dict[str, Any]:
    """The measured fixed part plus 3 transitions (and the measured events) per judge loop, in AWS minutes."""
    calls = max(progressive["judge_calls"], 1)
    per_loop_transitions = progressive["judge_loop_transitions"] / calls  # 3: StageWait, Judge, Verdict
    per_loop_events = progressive["judge_loop_events"] / calls
    per_loop_lambda = progressive["lambda_invocations_by_state"].get("Judge", 0) / calls
    fixed_t, fixed_e = progressive["fixed_transitions"], progressive["fixed_events"]
    fixed_lambda = progressive["lambda_invocations"] - progressive["lambda_invocations_by_state"].get("Judge", 0)
    scenarios = [
        (
            "realistic: shadow 60 min + 3 A/B steps x 60 min + full 30 + watch 60, judge every 5 min",
            5,
            [60, 60, 60, 60, 30, 60],
        ),
        (
            "defaults' ceiling: every stage to its max_duration (120; full 30), judge every 5 min",
            5,
            [120, 120, 120, 120, 30, 120],
        ),
        ("worst case: the same, judge every minute", 1, [120, 120, 120, 120, 30, 120]),
        ("fast: shadow 30 + 3 x 15 min + full 10 + watch 15, judge every 5 min", 5, [30, 15, 15, 15, 10, 15]),
    ]
    rows = []
    for label, interval, minutes in scenarios:
        loops = sum(max(1, m // interval) for m in minutes)
        transitions = round(fixed_t + per_loop_transitions * loops)
        events = round(fixed_e + per_loop_events * loops)
        requests = round(fixed_lambda + per_loop_lambda * loops)
        # Lambda compute: the measured GB-s of the fixed tasks plus a judge call's measured GB-s per loop
        gb = progressive["lambda_gb_seconds_state_machine_tasks"] + judge_gb_seconds * (loops - calls)
        rows.append(
            {
                "scenario": label,
                "judge_interval_minutes": interval,
                "stage_minutes": minutes,
                "judged_minutes": sum(minutes),
                "judge_calls": loops,
                "state_transitions": transitions,
                "history_events": events,
                "history_cap_share": round(events / HISTORY_CAP, 4),
                "lambda_invocations": requests,
                "cost_usd": cost(transitions, requests, max(gb, 0.0)),
            }
        )
    loops_to_cap = math.floor((HISTORY_CAP - fixed_e) / per_loop_events)
    return {
        "model": (
            "fixed part measured on the progressive rollout (Prepare, EnterStage x stages, NextStage, "
            "MoreStages, Finalize, Promoted, notifications) + per judge loop the measured transitions "
            "(StageWait, Judge, Verdict) and history events; a stage of M minutes judged every I minutes "
            "= M / I loops (the last one PROMOTEs)"
        ),
        "fixed_transitions": fixed_t,
        "fixed_history_events": fixed_e,
        "fixed_lambda_invocations": fixed_lambda,
        "transitions_per_judge_loop": round(per_loop_transitions, 2),
        "history_events_per_judge_loop": round(per_loop_events, 2),
        "judge_gb_seconds_per_call": round(judge_gb_seconds, 5),
        "history_cap": HISTORY_CAP,
        "judge_loops_to_history_cap": loops_to_cap,
        "judged_minutes_to_history_cap_at_interval_1": loops_to_cap,
        "scenarios": rows,
    }


# ---------------------------------------------------------------------------------------- report


def usd(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def report(results: dict[str, Any]) -> None:
    executions = [
        ("Rollout: first deployment", results["first_deployment"]),
        ("Rollout: shadow + A/B 10/25/50 + full + watch", results["progressive"]),
        ("ModelLifecycle week-1 (reference)", results["lifecycle"]["week-1"]),
        ("ModelLifecycle week-2 (reference)", results["lifecycle"]["week-2"]),
    ]
    print()
    print(
        table(
            [
                "execution",
                "status",
                "transitions",
                "events",
                "Lambda",
                "judge",
                "wall s",
                "virtual min",
                "SFN $",
                "total $",
            ],
            [
                [
                    label,
                    r["status"],
                    r["state_transitions"],
                    r["history_events"],
                    r["lambda_invocations"],
                    r["judge_calls"],
                    f"{r['wall_seconds']:.1f}",
                    f"{r['virtual_minutes']:.1f}",
                    usd(r["cost_usd"]["step_functions"]),
                    usd(r["cost_usd"]["total"]),
                ]
                for label, r in executions
            ],
        )
    )
    stages = results["progressive"].get("stages", [])
    if stages:
        print("\nprogressive rollout by stage (wall from EnterStage to the next EnterStage / Finalize)")
        print(
            table(
                ["stage", "judge calls", "verdicts", "wall s", "virtual min"],
                [
                    [
                        f"{s['stage']} {s['weight']:g}%" if s["stage"] == "ab" else s["stage"],
                        s["judge_calls"],
                        ", ".join(f"{k} {v}" for k, v in s["verdicts"].items()),
                        s["wall_seconds"],
                        s["virtual_minutes"],
                    ]
                    for s in stages
                ],
            )
        )
        for s in stages:
            print(f"  {s['stage']} {s['weight']:g}: {s.get('last_explanation')}")
    window = results["progressive"]["app_lambda_invocations_in_window"]
    print(f"\nall Lambda invocations in the local cloud during the progressive rollout: {window}")
    x = results["extrapolation"]
    print(
        f"\nextrapolation to AWS time: fixed {x['fixed_transitions']} transitions / {x['fixed_history_events']} events"
        f" / {x['fixed_lambda_invocations']} Lambda, + {x['transitions_per_judge_loop']:g} transitions and"
        f" {x['history_events_per_judge_loop']:g} events per judge loop"
    )
    print(
        table(
            ["scenario", "judge calls", "transitions", "events", "of 25,000", "Lambda", "SFN $", "total $"],
            [
                [
                    s["scenario"],
                    s["judge_calls"],
                    s["state_transitions"],
                    s["history_events"],
                    f"{100 * s['history_cap_share']:.1f} %",
                    s["lambda_invocations"],
                    usd(s["cost_usd"]["step_functions"]),
                    usd(s["cost_usd"]["total"]),
                ]
                for s in x["scenarios"]
            ],
        )
    )
    print(
        f"\nthe 25,000-event history cap is reached after {x['judge_loops_to_history_cap']} judge loops"
        f" ({x['judge_loops_to_history_cap']} judged minutes at judge_interval_minutes 1)"
    )
    print(f"prices: {PRICES['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second during the v2 rollout")
    parser.add_argument("--malformed", type=float, default=0.05)
    parser.add_argument("--rows", type=int, default=3000, help="rows per training dataset")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/rollout_cost.json")
    args = parser.parse_args()
    run = Run(args.time_scale, args.rate, args.malformed, args.rows)

    def measure() -> dict[str, Any]:
        results = run.execute()
        assert run.invocations is not None
        memory = run.memory()
        judge = [(s, name) for _, name, s in run.invocations.calls if _short(name) == "JudgeStageFunction"]
        judge_gb = statistics.median(s for s, _ in judge) * memory.get(judge[0][1], 128) / 1024 if judge else 0.0
        results["extrapolation"] = extrapolate(results["progressive"], judge_gb)
        results["prices"] = PRICES
        return results

    perform(run, measure, report, None if args.no_write else RESULTS / "rollout_cost.json")


if __name__ == "__main__":
    main()
