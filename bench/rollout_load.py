"""Bounded load through a full rollout (issue 20): per-stage failures and latency against the same load, no rollout.

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
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_rollout_cost import Run, config, table  # noqa: E402

from localcloud.demo import MODEL, Traffic  # noqa: E402
from localcloud.server import CREDENTIALS, REGION  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# A request slower than this is a timeout: a failure (SageMaker's own invocation limit is 60 s; a client that
# waits that long in a rollout has been failed already).
READ_TIMEOUT_SECONDS = 10
# An error-free candidate promotes after ln(0.1 x beta_i) / ln(1 - floor) clean requests (shepherd.judge.engine
# floor_samples): about 190 in shadow and 120 per guard A/B step at 0.02, against 1,900 and 1,200 at the default
# 0.002. No malformed requests here, so no variant has errors for the sequential tests: the floor decides.
FLOOR_RATE = 0.02
SKIP_AFTER_SECONDS = 1.0  # a client this far behind its schedule drops the slots it missed (counted), never bursts


@dataclass
class Settings:
    quick: bool = False
    rate: float = 20.0  # requests per second, on a fixed schedule (open loop)
    time_scale: float = 60.0
    warmup_seconds: float = 3.0
    baseline_seconds: float = 60.0  # phase A: v1 serving, no rollout
    after_seconds: float = 20.0  # phase C: v2 serving after the rollout, no rollout (a second baseline)
    rollout_cap_seconds: float = 600.0  # phase B stops here if the rollout has not ended
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
    variant: str = ""
    error: str = ""


class Load(Traffic):
    """localcloud.traffic.Traffic on a fixed schedule (open loop), each request kept with its time and outcome.

    Traffic counts outcomes (answered, a model's own error answer, a failure of the system); this only reads its
    counters around each send. It stops by itself at ``until`` (wall time) whatever the caller does."""

    def __init__(self, client: Any, rows: list[tuple[str, int]], rate: float, until: float) -> None:
        super().__init__(client, MODEL, rows, rate=rate, malformed=0.0, ids="")
        self.until = until
        self.samples: list[Sample] = []
        self.skipped_slots = 0

    def _run(self) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic() + interval
        while time.time() < self.until:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            late = time.monotonic() - due
            if late > SKIP_AFTER_SECONDS:
                missed = int(late / interval)
                self.skipped_slots += missed
                due += missed * interval
            self.measure(time.time() - max(0.0, time.monotonic() - due))
            due += interval

    def measure(self, scheduled: float) -> None:
        answered, failed, refused = self.answered, len(self.failures), sum(self.model_errors.values())
        before = dict(self.by_variant)
        sent, began = time.time(), time.perf_counter()
        self.send()
        ms = 1000 * (time.perf_counter() - began)
        if len(self.failures) > failed:
            sample = Sample(scheduled, sent, ms, "failed", error=self.failures[-1][:300])
        elif sum(self.model_errors.values()) > refused:
            sample = Sample(scheduled, sent, ms, "model_error", error=self.unexpected[-1][:300])
        elif self.answered > answered:
            variant = next((v for v, n in self.by_variant.items() if n > before.get(v, 0)), "?")
            sample = Sample(scheduled, sent, ms, "ok", variant=variant)
        else:  # Traffic counted nothing: never expected, kept visible
            sample = Sample(scheduled, sent, ms, "failed", error="no outcome counted")
        self.samples.append(sample)


class LoadRun(Run):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.time_scale, settings.rate, 0.0, settings.rows)
        self.settings = settings
        self.load: Load | None = None
        self.marks: dict[str, float] = {}
        self.loadavg: list[tuple[float, float]] = []
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
                max_pool_connections=4,
            ),
        )

    def sample_load(self) -> None:
        while not self._sampling.wait(1.0):
            self.loadavg.append((time.time(), os.getloadavg()[0]))

    def project(self) -> dict[str, Any]:
        s = self.settings
        raw = config(s.ab_steps, 1)
        raw["endpoint"]["autoscaling"] = {"enabled": False, "reason": "the load bench compares fixed capacity"}
        raw["rollout"]["full"] = {"max_duration_minutes": 30}
        raw["rollout"]["post_promotion_watch"] = {"enabled": True, "max_duration_minutes": s.watch_minutes}
        raw["rollout"]["judge"]["error_rate"]["floor_rate"] = FLOOR_RATE
        return raw

    def rollout_done(self, prefix: str) -> bool:
        sfn = self.cloud.client("stepfunctions")
        listed = sfn.list_executions(stateMachineArn=self.outputs["RolloutStateMachineArn"])["executions"]
        mine = [e for e in listed if e["name"].startswith(prefix)]
        return bool(mine) and all(e["status"] != "RUNNING" for e in mine)

    def execute(self) -> dict[str, Any]:
        import yaml

        from localcloud.demo import EXAMPLE, sys_path_example

        s = self.settings
        sys_path_example()
        from generate_data import generate  # examples/churn/generate_data.py

        self.cloud.start()
        self.outputs = self.cloud.deploy(ROOT / "template.yaml", {"StageName": "bench"}, "bench")
        self.log(f"local cloud on {self.cloud.endpoint} (time scale {s.time_scale:g}), template.yaml deployed")
        self.upload(f"models/{MODEL}/shepherd.yaml", yaml.safe_dump(self.project()).encode())
        for name in ("train.py", "inference.py"):
            self.upload(f"models/{MODEL}/code/{name}", (EXAMPLE / name).read_bytes())
        self.dataset("week-1", seed=7)
        self.log(
            f"ModelLifecycle week-1: {self.wait('ModelLifecycleStateMachineArn', f'{MODEL}-week-1-', 600)['status']}"
        )
        self.log(f"Rollout v1 (first deployment): {self.wait('RolloutStateMachineArn', f'{MODEL}-v1-', 600)['status']}")

        held_out = generate(600, seed=99).drop(columns=["target"])
        rows = [(",".join(str(v) for v in row), 0) for row in held_out.itertuples(index=False)]
        threading.Thread(target=self.sample_load, name="loadavg", daemon=True).start()
        budget = s.warmup_seconds + s.baseline_seconds + 120 + s.rollout_cap_seconds + s.after_seconds
        self.marks["start"] = time.time()
        self.load = Load(self.runtime_client(), rows, s.rate, until=self.marks["start"] + budget)
        self.load.start()
        self.log(
            f"phase A: {s.rate:g} requests/s, v1 serving, {s.baseline_seconds:g} s after {s.warmup_seconds:g} s warm-up"
        )
        time.sleep(s.warmup_seconds)
        self.marks["baseline"] = time.time()
        time.sleep(s.baseline_seconds)
        self.marks["training"] = time.time()
        self.dataset("week-2", seed=8)
        life = self.wait("ModelLifecycleStateMachineArn", f"{MODEL}-week-2-", 600)
        self.log(
            f"ModelLifecycle week-2: {life['status']}; phase B: the v2 rollout, at most {s.rollout_cap_seconds:g} s"
        )
        cap = time.time() + s.rollout_cap_seconds
        while time.time() < cap and not self.rollout_done(f"{MODEL}-v2-"):
            time.sleep(0.5)
        ended = self.rollout_done(f"{MODEL}-v2-")
        self.marks["rollout_over"] = time.time()
        self.log(f"phase B {'over' if ended else 'capped'}; phase C: v2 serving, {s.after_seconds:g} s")
        time.sleep(s.after_seconds)
        self.marks["stop"] = time.time()
        self.load.stop()
        self._sampling.set()
        return self.results(ended)

    # ------------------------------------------------------------------------------------ stages

    def boundaries(self) -> tuple[list[tuple[float, str]], list[dict[str, Any]]]:
        """(wall time, label) where each part of the run begins, from the v2 executions' histories."""
        sfn = self.cloud.client("stepfunctions")
        listed = sfn.list_executions(stateMachineArn=self.outputs["RolloutStateMachineArn"])["executions"]
        executions = sorted((e for e in listed if e["name"].startswith(f"{MODEL}-v2-")), key=lambda e: e["startDate"])
        marks = [
            (self.marks["start"], "warmup"),
            (self.marks["baseline"], "baseline"),
            (self.marks["training"], "training"),
        ]
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
                marks.append((d["startDate"].timestamp(), "prepare"))
            for event in self.history(execution["executionArn"]):
                if not event["type"].endswith("StateEntered"):
                    continue
                details, at = event["stateEnteredEventDetails"], event["timestamp"].timestamp()
                if details["name"] == "EnterStage":
                    entered = _json(details.get("input"))
                    index = int(entered.get("pos", {}).get("i", 0))
                    stages = entered.get("state", {}).get("stages") or []
                    spec = stages[index] if index < len(stages) else {}
                    kind, weight = spec.get("kind", "?"), spec.get("weight")
                    marks.append((at, f"ab{weight:g}" if kind == "ab" and weight is not None else kind))
                elif details["name"] in ("Finalize", "RollbackWeights", "RollbackConfig"):
                    label = "finalize" if details["name"] == "Finalize" else "rollback"
                    if marks[-1][1] != label:
                        marks.append((at, label))
        if executions:
            stopped = [e.get("stopDate") for e in executions]
            if all(stopped):
                marks.append((max(t.timestamp() for t in stopped if t), "after"))
        return sorted(marks), described

    def outcome(self) -> str:
        items = self.cloud.client("dynamodb").query(
            TableName=self.outputs["RolloutsTableName"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": f"endpoint#{MODEL}"}, ":r": {"S": "record#"}},
        )["Items"]
        events = [json.loads(i["entry"]["S"]) for i in items]
        ends = [e["event"] for e in events if e.get("package", "").endswith("/2") and e["event"] in ENDINGS]
        return ends[-1] if ends else "running"

    def results(self, ended: bool) -> dict[str, Any]:
        assert self.load is not None
        marks, executions = self.boundaries()
        samples = self.load.samples
        tagged: dict[str, list[Sample]] = {}
        for sample in samples:
            label = next((name for at, name in reversed(marks) if at <= sample.sent), "warmup")
            tagged.setdefault(label, []).append(sample)
        base = tagged.get("baseline", [])
        after = tagged.get("after", [])
        reference = {"p50": percentile([x.ms for x in base], 50), "p99": percentile([x.ms for x in base], 99)}
        order = [
            "baseline",
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
        labels = [name for name in order if name in tagged] + sorted(set(tagged) - set(order) - {"warmup"})
        rows = {name: stage(tagged[name], reference, self.loadavg) for name in labels}
        rollout_labels = [n for n in labels if n not in ("baseline", "training", "after", "warmup")]
        rollout_failures = sum(rows[n]["failed"] for n in rollout_labels)
        return {
            "settings": asdict(self.settings)
            | {
                "floor_rate": FLOOR_RATE,
                "read_timeout_seconds": READ_TIMEOUT_SECONDS,
                "retries": 0,
                "instances_per_variant": 2,
                "autoscaling": False,
            },
            "rollout": {"ended": ended, "outcome": self.outcome(), "executions": executions},
            "marks": [{"at": round(at - self.marks["start"], 2), "part": name} for at, name in marks],
            "stages": rows,
            "claim": {
                "rollout_caused_failures": rollout_failures,
                "rollout_model_errors": sum(rows[n]["model_errors"] for n in rollout_labels),
                "holds": ended and rollout_failures == 0,
            },
            "after_vs_baseline_p50": ratio(rows.get("after", {}).get("p50_ms"), reference["p50"]),
            "requests": len(samples),
            "skipped_slots": self.load.skipped_slots,
            "failures": [asdict(x) for x in samples if x.outcome != "ok"][:20],
            "wall_seconds": round(self.marks["stop"] - self.marks["start"], 1),
            "after_samples": len(after),
        }


ENDINGS = ("promoted", "rolled-back", "inconclusive", "rollback-failed", "ended")


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
    for x in samples:
        if x.variant:
            variants[x.variant] = variants.get(x.variant, 0) + 1
    return {
        "requests": len(samples),
        "seconds": round(last - first, 1),
        "rate": round((len(samples) - 1) / (last - first), 1) if last > first else None,
        "failed": sum(x.outcome == "failed" for x in samples),
        "model_errors": sum(x.outcome == "model_error" for x in samples),
        "answered_by": variants,
        "p50_ms": round(p50, 2) if p50 is not None else None,
        "p99_ms": round(p99, 2) if p99 is not None else None,
        "p50_ratio": ratio(p50, reference["p50"]),
        "p99_ratio": ratio(p99, reference["p99"]),
        "p99_from_schedule_ms": round(percentile(lag, 99) or 0.0, 2),
        "loadavg_1m_median": round(statistics.median(load), 2) if load else None,
    }


def report(results: dict[str, Any]) -> None:
    s, r = results["settings"], results["rollout"]
    print(
        f"\n{s['rate']:g} requests/s, open loop, no retries, {s['read_timeout_seconds']} s timeout;"
        f" rollout {r['outcome']}"
    )
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
                for name, x in results["stages"].items()
            ],
        )
    )
    c = results["claim"]
    print(
        f"\nrollout-caused failures: {c['rollout_caused_failures']} (model errors {c['rollout_model_errors']});"
        f" claim 0 failures {'holds' if c['holds'] else 'NOT shown'}; skipped schedule slots {results['skipped_slots']}"
    )
    for failure in results["failures"][:5]:
        print(f"  {failure['outcome']}: {failure['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter phases, one A/B step (under 5 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for rollout_load.json")
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default 20)")
    args = parser.parse_args()
    settings = Settings.for_mode(args.quick)
    if args.rate:
        settings.rate = args.rate
    run = LoadRun(settings)
    started = time.monotonic()
    try:
        results = run.execute()
        results["bench_wall_seconds"] = round(time.monotonic() - started, 1)
        report(results)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "rollout_load.json"
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")
    except Exception:
        traceback.print_exc()
        print("FAILED: the run did not complete (a report, not a test: exit 0)")
    finally:
        if run.load is not None:
            run.load.stop()
        run._sampling.set()
        run.cloud.stop()
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
