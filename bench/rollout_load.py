"""Bounded load through a full rollout and a rollback (issue 20): per-stage failures and latency, against the same
load with no rollout.

Writes bench/results/rollout_load.json (or --out DIR). A report, not a test: always exits 0.
How it is built: docs/BENCHMARKS.md, "rollout_load.py".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # localcloud; cloud_run sits beside this script

from cloud_run import RESULTS, CloudRun, churn_project, json_object, perform, table

from localcloud.demo import EXAMPLE, FAULTY_SUFFIX, MODEL, Traffic
from localcloud.server import CREDENTIALS, REGION

# A request slower than this is a timeout: a failure (SageMaker's own invocation limit is 60 s; a client that
# waits that long in a rollout has been failed already).
READ_TIMEOUT_SECONDS = 10
# An error-free candidate promotes after ln(0.1 x beta_i) / ln(1 - floor) clean requests (shepherd.judge.engine
# floor_samples): about 190 in shadow and 120 per guard A/B step at 0.02, against 1,900 and 1,200 at the default
# 0.002. No malformed requests here, so no variant has errors for the sequential tests: the floor decides.
FLOOR_RATE = 0.02
STAGE_MAX_MINUTES, FULL_MAX_MINUTES = 480, 180  # virtual minutes (8 and 3 wall minutes): see LoadRun.project
SKIP_AFTER_SECONDS = 1.0  # a client this far behind its schedule drops the slots it missed (counted), never bursts


@dataclass
class Settings:
    quick: bool = False
    rate: float = 20.0  # requests per second, on a fixed schedule (open loop)
    senders: int = 4  # client threads sharing the schedule: one reached 6-14 requests/s on a loaded machine
    time_scale: float = 60.0
    warmup_seconds: float = 3.0
    baseline_seconds: float = 60.0  # the baseline: v1 serving, no rollout
    after_seconds: float = 20.0  # after each rollout: the champion serving, no rollout (a later baseline)
    rollout_cap_seconds: float = 900.0  # a rollout's phase ends here if the rollout has not
    rollback: bool = True  # then a faulty v3 (the demo's: half its answers are errors), no shadow, rolled back
    ab_steps: list[int] = field(default_factory=lambda: [10, 25, 50])
    watch_minutes: int = 20
    rows: int = 3000

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if not quick:
            return cls()
        return cls(
            quick=True,
            baseline_seconds=30.0,
            after_seconds=10.0,
            rollout_cap_seconds=180.0,
            ab_steps=[50],
            watch_minutes=10,
        )


@dataclass
class Sample:
    scheduled: float  # wall time (time.time()) the schedule gave this request
    sent: float  # wall time it was sent
    ms: float  # client wall time from send to answer (or error)
    outcome: str  # ok | model_error | failed
    variant: str = ""  # the variant that answered, or whose container answered with an error
    error: str = ""
    part: str = ""  # <scenario>/<part of the run> it was sent in, from the executions' histories


class Load(Traffic):
    """localcloud.traffic.Traffic on a fixed schedule (open loop), each request kept with its time and outcome.

    ``senders`` threads each own every senders-th slot of the schedule (staggered by 1/rate), so one slow answer
    delays one sender's slots, not the rate. Traffic counts outcomes (answered, a model's own error answer, a
    failure of the system) under its lock; each send returns its own. It stops by itself at ``until`` (wall time)
    whatever the caller does."""

    def __init__(self, client: Any, rows: list[tuple[str, int]], rate: float, until: float, senders: int) -> None:
        super().__init__(client, MODEL, rows, rate=rate, malformed=0.0, ids="", senders=senders)
        self.until = until
        self.samples: list[Sample] = []
        self.skipped_slots = 0

    def _run(self, sender: int) -> None:
        interval = self.senders / self.rate
        due = time.monotonic() + (sender + 1) / self.rate
        while time.time() < self.until:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            late = time.monotonic() - due
            if late > SKIP_AFTER_SECONDS:
                missed = int(late / interval)
                with self._lock:
                    self.skipped_slots += missed
                due += missed * interval
            self.measure(time.time() - max(0.0, time.monotonic() - due))
            due += interval

    def measure(self, scheduled: float) -> None:
        sent, began = time.time(), time.perf_counter()
        outcome = self.send()
        ms = 1000 * (time.perf_counter() - began)
        sample = Sample(scheduled, sent, ms, outcome.kind, variant=outcome.variant, error=outcome.error[:300])
        with self._lock:
            self.samples.append(sample)


class LoadRun(CloudRun):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.time_scale, settings.rows, "rollout-load")
        self.settings = settings
        self.load: Load | None = None
        self.marks: list[tuple[float, str, str]] = []  # (wall time, scenario, part) where each part begins
        self.loadavg: list[tuple[float, float]] = []
        self.stopped = 0.0
        self._sampling = threading.Event()

    def runtime_client(self) -> Any:
        """No retries (a retried failure is still one the client would see without them); a read timeout."""
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.cloud.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},  # max_attempts counts the first try
                connect_timeout=2,
                read_timeout=READ_TIMEOUT_SECONDS,
                max_pool_connections=max(4, self.settings.senders),
            ),
        )

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        self._sampling.set()
        super().stop()

    def sample_load(self) -> None:
        while not self._sampling.wait(1.0):
            self.loadavg.append((time.time(), os.getloadavg()[0]))

    def project(self, *, shadow: bool = True) -> dict[str, Any]:
        s = self.settings
        raw = churn_project(s.ab_steps, 1)
        raw["endpoint"]["autoscaling"] = {"enabled": False, "reason": "the load bench compares fixed capacity"}
        raw["rollout"]["shadow"]["enabled"] = shadow
        # Room for a loaded machine, whose one client reaches a third of the rate: each stage decides on a number of
        # requests (shadow ~190 pairs, ~120 candidate requests per A/B step, ~300 in full against the champion's
        # error-free ~3,000 before it), and at 7 requests/s A/B 10 % needs ~170 virtual minutes for its 120. The
        # first full runs, at 9 and 7 requests/s, ended inconclusive in full (30) and in A/B 10 % (120).
        for kind in ("shadow", "ab"):
            raw["rollout"][kind]["max_duration_minutes"] = STAGE_MAX_MINUTES
        raw["rollout"]["full"] = {"max_duration_minutes": FULL_MAX_MINUTES}
        raw["rollout"]["post_promotion_watch"] = {"enabled": True, "max_duration_minutes": s.watch_minutes}
        raw["rollout"]["judge"]["error_rate"]["floor_rate"] = FLOOR_RATE
        return raw

    def rollout_done(self, prefix: str) -> bool:
        sfn = self.cloud.client("stepfunctions")
        listed = sfn.list_executions(stateMachineArn=self.outputs["RolloutStateMachineArn"])["executions"]
        mine = [e for e in listed if e["name"].startswith(prefix)]
        return bool(mine) and all(e["status"] != "RUNNING" for e in mine)

    def mark(self, scenario: str, part: str) -> None:
        self.marks.append((time.time(), scenario, part))

    def execute(self) -> dict[str, Any]:
        s = self.settings
        self.deploy()
        self.first_model(self.project())
        rows = self.held_out_rows()
        threading.Thread(target=self.sample_load, name="loadavg", daemon=True).start()
        phase = 120 + s.rollout_cap_seconds + s.after_seconds  # training, the rollout, the phase after it
        budget = s.warmup_seconds + s.baseline_seconds + phase * (2 if s.rollback else 1)
        self.mark(NO_ROLLOUT, "warmup")
        self.load = Load(self.runtime_client(), rows, s.rate, until=self.marks[0][0] + budget, senders=s.senders)
        self.load.start()
        self.log(
            f"baseline: {s.rate:g} requests/s from {s.senders} senders, v1 serving, {s.baseline_seconds:g} s"
            f" after {s.warmup_seconds:g} s warm-up"
        )
        time.sleep(s.warmup_seconds)
        self.mark(NO_ROLLOUT, "baseline")
        time.sleep(s.baseline_seconds)
        good = (EXAMPLE / "inference.py").read_bytes()
        ended = {"promotion": self.scenario("promotion", "week-2", 2, self.project(), good)}
        if s.rollback:
            # The demo's faulty candidate: v2's data and model, an inference.py failing half its requests. It
            # passes evaluation; no shadow, so it serves clients in A/B until the judge rolls it back.
            faulty = good + FAULTY_SUFFIX.encode()
            ended["rollback"] = self.scenario("rollback", "week-3", 3, self.project(shadow=False), faulty)
        self.stopped = time.time()
        self.load.stop()
        self._sampling.set()
        return self.results(ended)

    def scenario(self, name: str, dataset: str, version: int, project: dict[str, Any], inference: bytes) -> bool:
        """Train ``version`` on ``dataset`` and roll it out under the load; then ``after_seconds`` with no rollout."""
        s = self.settings
        self.mark(name, "training")
        self.upload_project(project, inference)
        self.dataset(dataset, seed=8)
        life = self.wait("ModelLifecycleStateMachineArn", f"{MODEL}-{dataset}-", 600)
        self.log(
            f"{name}: ModelLifecycle {dataset}: {life['status']};"
            f" the v{version} rollout, at most {s.rollout_cap_seconds:g} s"
        )
        cap = time.time() + s.rollout_cap_seconds
        prefix = f"{MODEL}-v{version}-"
        while time.time() < cap and not self.rollout_done(prefix):
            time.sleep(0.5)
        ended = self.rollout_done(prefix)
        self.log(f"{name}: the rollout {'is over' if ended else 'was capped'}; {s.after_seconds:g} s with no rollout")
        time.sleep(s.after_seconds)
        return ended

    # ------------------------------------------------------------------------------------ stages

    def boundaries(self, scenario: str, version: int) -> tuple[list[tuple[float, str, str]], list[dict[str, Any]]]:
        """(wall time, scenario, part) where each part of a rollout begins, from its executions' histories."""
        sfn = self.cloud.client("stepfunctions")
        listed = sfn.list_executions(stateMachineArn=self.outputs["RolloutStateMachineArn"])["executions"]
        prefix = f"{MODEL}-v{version}-"
        executions = sorted((e for e in listed if e["name"].startswith(prefix)), key=lambda e: e["startDate"])
        marks: list[tuple[float, str, str]] = []
        described = []
        for execution in executions:
            d = sfn.describe_execution(executionArn=execution["executionArn"])
            described.append(
                {
                    "name": d["name"],
                    "status": d["status"],
                    "error": d.get("error"),
                    "cause": str(d.get("cause") or "")[:300],
                }
            )
            if execution is executions[0]:  # from its start to the first stage: Prepare, configs, the lock
                marks.append((d["startDate"].timestamp(), scenario, "prepare"))
            state = ""  # the state the history is in
            for event in self.history(execution["executionArn"]):
                if event["type"] in FAILED_EVENTS:  # which step failed or timed out, and how: a States.Timeout's state
                    details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                    failed = {"state": state, "event": event["type"], "error": details.get("error")}
                    described[-1].setdefault("failed_steps", []).append(failed)
                if not event["type"].endswith("StateEntered"):
                    continue
                details, at = event["stateEnteredEventDetails"], event["timestamp"].timestamp()
                state = details["name"]
                if details["name"] == "EnterStage":
                    entered = json_object(details.get("input"))
                    index = int(entered.get("pos", {}).get("i", 0))
                    stages = entered.get("state", {}).get("stages") or []
                    spec = stages[index] if index < len(stages) else {}
                    kind, weight = spec.get("kind", "?"), spec.get("weight")
                    label = f"ab{weight:g}" if kind == "ab" and weight is not None else kind
                    marks.append((at, scenario, label))
                elif details["name"] in ("Finalize", "RollbackWeights", "RollbackConfig"):
                    label = "finalize" if details["name"] == "Finalize" else "rollback"
                    if not marks or marks[-1][2] != label:
                        marks.append((at, scenario, label))
        if executions:
            stopped = [e.get("stopDate") for e in executions]
            if all(stopped):
                marks.append((max(t.timestamp() for t in stopped if t), scenario, "after"))
        return marks, described

    def outcome(self, version: int) -> str:
        items = self.cloud.client("dynamodb").query(
            TableName=self.outputs["RolloutsTableName"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": f"endpoint#{MODEL}"}, ":r": {"S": "record#"}},
        )["Items"]
        events = [json.loads(i["entry"]["S"]) for i in items]
        ends = [e["event"] for e in events if e.get("package", "").endswith(f"/{version}") and e["event"] in ENDINGS]
        return ends[-1] if ends else "running"

    def results(self, ended: dict[str, bool]) -> dict[str, Any]:
        assert self.load is not None
        versions = {"promotion": 2, "rollback": 3}
        marks = list(self.marks)
        executions = {}
        for name in ended:
            found, executions[name] = self.boundaries(name, versions[name])
            marks.extend(found)
        marks.sort()
        samples = sorted(self.load.samples, key=lambda x: x.sent)
        tagged: dict[tuple[str, str], list[Sample]] = {}
        for sample in samples:
            scenario, part = next(
                ((sc, p) for at, sc, p in reversed(marks) if at <= sample.sent), (NO_ROLLOUT, "warmup")
            )
            sample.part = f"{scenario}/{part}"
            tagged.setdefault((scenario, part), []).append(sample)
        base = tagged.get((NO_ROLLOUT, "baseline"), [])
        reference = {"p50": percentile([x.ms for x in base], 50), "p99": percentile([x.ms for x in base], 99)}
        order = [
            "training",
            "prepare",
            "shadow",
            *(f"ab{w}" for w in self.settings.ab_steps),
            "full",
            "watch",
            "finalize",
            "rollback",
            "after",
        ]
        scenarios: dict[str, Any] = {}
        for name, over in ended.items():
            parts = {p for sc, p in tagged if sc == name}
            labels = [p for p in order if p in parts] + sorted(parts - set(order))
            rows = {p: stage(tagged[(name, p)], reference, self.loadavg) for p in labels}
            during = [p for p in labels if p not in ("training", "after")]
            failures = sum(rows[p]["failed"] for p in during)
            outcome = self.outcome(versions[name])
            expected = "promoted" if name == "promotion" else "rolled-back"
            scenarios[name] = {
                "version": versions[name],
                "ended": over,
                "outcome": outcome,
                "executions": executions[name],
                "stages": rows,
                "rollout_caused_failures": failures,
                # a faulty candidate's own error answers: served to clients, counted apart, not excused
                "bad_answers_served": sum(rows[p]["model_errors"] for p in during),
                "holds": over and outcome == expected and failures == 0,
            }
        baseline = stage(base, reference, self.loadavg) if base else {}
        started = self.marks[0][0]
        return {
            "settings": asdict(self.settings)
            | {
                "floor_rate": FLOOR_RATE,
                "stage_max_duration_minutes": STAGE_MAX_MINUTES,
                "full_max_duration_minutes": FULL_MAX_MINUTES,
                "read_timeout_seconds": READ_TIMEOUT_SECONDS,
                "retries": 0,
                "instances_per_variant": 2,
                "autoscaling": False,
            },
            "baseline": baseline,
            "scenarios": scenarios,
            "marks": [{"at": round(at - started, 2), "scenario": sc, "part": p} for at, sc, p in marks],
            "claim": {
                "rollout_caused_failures": sum(x["rollout_caused_failures"] for x in scenarios.values()),
                "bad_answers_served": sum(x["bad_answers_served"] for x in scenarios.values()),
                "holds": all(x["holds"] for x in scenarios.values()),
            },
            "requests": len(samples),
            "skipped_slots": self.load.skipped_slots,
            "failures": [asdict(x) for x in samples if x.outcome == "failed"][:20],
            "wall_seconds": round(self.stopped - started, 1),
        }


NO_ROLLOUT = "none"  # the scenario of the warm-up and the baseline
FAILED_EVENTS = ("TaskFailed", "TaskTimedOut", "LambdaFunctionFailed", "LambdaFunctionTimedOut", "ExecutionTimedOut")
ENDINGS = ("promoted", "rolled-back", "inconclusive", "rollback-failed", "ended")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 2) if value is not None and reference else None


def stage(
    samples: list[Sample], reference: dict[str, float | None], loadavg: list[tuple[float, float]]
) -> dict[str, Any]:
    """One part of the run: requests, failures (of the system) apart from the model's own errors, latency."""
    ms = [x.ms for x in samples]
    lag = [1000 * (x.sent - x.scheduled) + x.ms for x in samples]  # from the scheduled time: queueing included
    first, last = samples[0].sent, samples[-1].sent
    load = [value for at, value in loadavg if first <= at <= last]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    variants: dict[str, int] = {}
    errors_from: dict[str, int] = {}
    for x in samples:
        if x.outcome == "ok":
            variants[x.variant] = variants.get(x.variant, 0) + 1
        elif x.outcome == "model_error":
            errors_from[x.variant] = errors_from.get(x.variant, 0) + 1
    return {
        "requests": len(samples),
        "seconds": round(last - first, 1),
        "rate": round((len(samples) - 1) / (last - first), 1) if last > first else None,
        "failed": sum(x.outcome == "failed" for x in samples),
        "model_errors": sum(x.outcome == "model_error" for x in samples),
        "answered_by": variants,
        "model_errors_from": errors_from,
        "p50_ms": round(p50, 2) if p50 is not None else None,
        "p99_ms": round(p99, 2) if p99 is not None else None,
        "p50_ratio": ratio(p50, reference["p50"]),
        "p99_ratio": ratio(p99, reference["p99"]),
        "p99_from_schedule_ms": round(percentile(lag, 99) or 0.0, 2),
        "loadavg_1m_median": round(statistics.median(load), 2) if load else None,
    }


def report(results: dict[str, Any]) -> None:
    s = results["settings"]
    print(
        f"\n{s['rate']:g} requests/s from {s['senders']} senders, open loop, no retries,"
        f" {s['read_timeout_seconds']} s timeout"
    )
    rows = [("baseline (no rollout)", results["baseline"])] + [
        (f"{name}: {part}", x)
        for name, scenario in results["scenarios"].items()
        for part, x in scenario["stages"].items()
    ]
    print(
        table(
            [
                "part",
                "requests",
                "req/s",
                "failed",
                "model errors",
                "p50 ms",
                "p99 ms",
                "p50 x",
                "p99 x",
                "load",
                "answered by",
            ],
            [
                [
                    name,
                    x["requests"],
                    x["rate"],
                    x["failed"],
                    x["model_errors"],
                    x["p50_ms"],
                    x["p99_ms"],
                    x["p50_ratio"],
                    x["p99_ratio"],
                    x["loadavg_1m_median"],
                    ", ".join(f"{k} {v}" for k, v in sorted(x["answered_by"].items())),
                ]
                for name, x in rows
                if x
            ],
        )
    )
    for name, x in results["scenarios"].items():
        print(
            f"{name}: v{x['version']} {x['outcome']}; rollout-caused failures {x['rollout_caused_failures']},"
            f" bad answers served {x['bad_answers_served']}; {'holds' if x['holds'] else 'NOT shown'}"
        )
        for execution in x["executions"]:
            for step in execution.get("failed_steps", []):
                print(f"  {execution['name']}: {step['state']} {step['event']} ({step['error']})")
    c = results["claim"]
    print(
        f"\nrollout-caused failures: {c['rollout_caused_failures']} (bad answers a candidate served:"
        f" {c['bad_answers_served']}); claim {'holds' if c['holds'] else 'NOT shown'};"
        f" skipped schedule slots {results['skipped_slots']};"
        f" {results['requests']} requests in {results['wall_seconds']} s"
    )
    for failure in results["failures"][:5]:
        print(f"  {failure['part']}: {failure['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter phases, one A/B step (about 4 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for rollout_load.json")
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default 20)")
    parser.add_argument("--senders", type=int, default=None, help="client threads sharing the rate (default 4)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="virtual seconds per wall second (default 60; lower gives a loaded machine's endpoint updates more"
        " wall time within a stage's 1-hour wait)",
    )
    parser.add_argument("--no-rollback", action="store_true", help="the promotion only, no faulty candidate")
    args = parser.parse_args()
    settings = Settings.for_mode(args.quick)
    if args.rate:
        settings.rate = args.rate
    if args.senders:
        settings.senders = args.senders
    if args.time_scale:
        settings.time_scale = args.time_scale
    settings.rollback = not args.no_rollback
    run = LoadRun(settings)
    perform(run, run.execute, report, args.out / "rollout_load.json")


if __name__ == "__main__":
    main()
