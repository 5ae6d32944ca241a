"""Benchmark of the local cloud: how fast `shepherd local up` is ready, how fast a state machine runs.

A report, not a test: it prints its figures (median, p90, a same-run baseline and the ratio to
it) and always exits 0. See bench/README.md for what each figure means.

    .venv/bin/python bench/bench_localcloud.py [--runs N] [--executions M] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "template.yaml"
PYTHON = Path(sys.executable)
SHEPHERD = PYTHON.parent / "shepherd"

STARTUP_TARGET_S = 3.0
EXECUTION_TARGET_S = 0.5
POLL_INTERVAL_S = 0.005
SPAWN_TIMEOUT_S = 60.0
_READY = re.compile(r"ready at http://127\.0\.0\.1:(\d+)")

# The baseline server: the bare interpreter, `import moto.server`, a ThreadedMotoServer on a free port.
_MOTO_BASELINE = """
import signal, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(f"ready at http://127.0.0.1:{server.get_host_and_port()[1]}", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
"""


# ---------------------------------------------------------------- statistics and the table


@dataclass
class Figure:
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p90(self) -> float:
        if len(self.samples) < 2:
            return self.median
        return statistics.quantiles(self.samples, n=10, method="inclusive")[8]

    def runs(self, unit: float = 1.0, digits: int = 2) -> str:
        return ", ".join(f"{s * unit:.{digits}f}" for s in self.samples)


@dataclass
class Row:
    metric: str
    figure: Figure
    target: float | None = None
    baseline: Figure | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.samples or self.baseline.median == 0:
            return None
        return self.figure.median / self.baseline.median

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        if not self.figure.samples:
            return "FAILED"
        return "PASS" if self.figure.median <= self.target else "OVER"


def print_table(rows: list[Row]) -> None:
    header = ["metric", "median", "p90", "target", "baseline", "ratio", "verdict"]
    body = []
    for row in rows:
        body.append(
            [
                row.metric,
                f"{row.figure.median:.3f} s",
                f"{row.figure.p90:.3f} s",
                "-" if row.target is None else f"<= {row.target:.1f} s",
                "-" if row.baseline is None else f"{row.baseline.median:.3f} s",
                "-" if row.ratio is None else f"{row.ratio:.1f}x",
                row.verdict,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    print(line)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print(line)
    for cells in body:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")
    print(line)


# ---------------------------------------------------------------- 1. startup, as a user sees it


def _line_reader(stream: Any) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_port(process: subprocess.Popen[str], lines: queue.Queue[str | None], deadline: float) -> int:
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            raise TimeoutError("no 'ready at' line before the deadline") from None
        if line is None:
            raise RuntimeError(f"exited with {process.wait()} before printing 'ready at'")
        match = _READY.search(line)
        if match:
            return int(match.group(1))


def _wait_for_200(url: str, deadline: float, want_ready: bool) -> None:
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and (not want_ready or json.loads(response.read()).get("status") == "ready"):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"{url} did not answer 200 before the deadline")


@contextlib.contextmanager
def _spawned(argv: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log_path = cwd / "stderr.log"
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as stderr:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            yield process, log_path
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def time_until_ready(argv: list[str], health_path: str, want_ready: bool) -> tuple[float, float]:
    """Seconds from spawn until health_path answers 200, and seconds from SIGTERM until exit."""
    with tempfile.TemporaryDirectory(prefix="shepherd-bench-") as tmp, _spawned(argv, Path(tmp)) as (process, log):
        started = time.perf_counter()
        deadline = started + SPAWN_TIMEOUT_S
        lines = _line_reader(process.stdout)
        try:
            port = _wait_for_port(process, lines, deadline)
            _wait_for_200(f"http://127.0.0.1:{port}{health_path}", deadline, want_ready)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{' '.join(argv[:4])}: {exc}\n{log.read_text()[-2000:]}") from exc
        ready = time.perf_counter() - started
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{argv[0]} did not exit within 15 s of SIGTERM") from None
        if code != 0:
            raise RuntimeError(f"{argv[0]} exited with {code} after SIGTERM\n{log.read_text()[-2000:]}")
        return ready, time.perf_counter() - stopping


def bench_startup(runs: int) -> tuple[Figure, Figure, Figure]:
    shepherd = [str(SHEPHERD), "local", "up", "--port", "0", "--template", str(FIXTURE), "--quiet"]
    baseline = [str(PYTHON), "-c", _MOTO_BASELINE]
    ready, stop, bare = Figure(), Figure(), Figure()
    for i in range(runs):  # interleaved, so both see the same noise
        seconds, stopped = time_until_ready(shepherd, "/_shepherd/health", want_ready=True)
        ready.samples.append(seconds)
        stop.samples.append(stopped)
        bare.samples.append(time_until_ready(baseline, "/moto-api/", want_ready=False)[0])
        print(f"  startup run {i + 1}/{runs}: shepherd {seconds:.2f} s, bare moto {bare.samples[-1]:.2f} s", flush=True)
    return ready, stop, bare


# ---------------------------------------------------------------- 1b. where startup goes (fresh interpreter)


def _timed(record: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record[key] = record.get(key, 0.0) + time.perf_counter() - started

    return wrapper


def breakdown_child(profile: bool) -> None:
    """Runs in a fresh interpreter: times the imports, start() and deploy() (its phases too)."""
    entered = time.time()
    marks: dict[str, float] = {}
    t = time.perf_counter()
    import shepherd_cli.main  # noqa: F401  # what `shepherd` imports before the command runs (typer, rich)

    marks["import shepherd_cli.main (typer, rich)"] = time.perf_counter() - t
    t = time.perf_counter()
    from localcloud import deployer, template
    from localcloud import moto as local_moto
    from localcloud.server import LocalCloud

    marks["import localcloud.server (boto3, werkzeug)"] = time.perf_counter() - t
    phases: dict[str, float] = {}
    local_moto.install = _timed(phases, "start: localcloud.moto.install (imports the SFN engine)", local_moto.install)
    template._read_yaml = _timed(phases, "deploy: parse YAML (cfn-lint decode)", template._read_yaml)
    template._sam_transform = _timed(phases, "deploy: SAM transform (samtranslator)", template._sam_transform)
    deployer.check_definition = _timed(
        phases, "deploy:   of which ASL check (moto StaticAnalyser)", deployer.check_definition
    )
    for kind, handler in list(deployer._HANDLERS.items()):
        deployer._HANDLERS[kind] = _timed(phases, f"deploy: create {kind}", handler)

    with tempfile.TemporaryDirectory(prefix="shepherd-bench-") as tmp:
        cloud = LocalCloud(port=0, state_dir=Path(tmp))
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t = time.perf_counter()
        cloud.start()
        marks["LocalCloud.start() (moto app, patches)"] = time.perf_counter() - t
        t = time.perf_counter()
        cloud.deploy(FIXTURE)
        marks["LocalCloud.deploy(bench template)"] = time.perf_counter() - t
        if profiler is not None:
            profiler.disable()
        t = time.perf_counter()
        _wait_for_200(f"{cloud.endpoint}/_shepherd/health", time.perf_counter() + 10, want_ready=True)
        marks["first GET /_shepherd/health"] = time.perf_counter() - t
        cloud.stop()
    print(json.dumps({"entered": entered, "marks": marks, "phases": phases}), flush=True)
    if profiler is not None:
        import pstats

        print("\ncProfile of start()+deploy(), top 30 by cumulative time:", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)


def bench_breakdown(profile: bool) -> dict[str, Any]:
    argv = [str(PYTHON), str(Path(__file__).resolve()), "--breakdown-child"] + (["--profile"] if profile else [])
    spawned = time.time()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"breakdown child failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["interpreter"] = data["entered"] - spawned
    data["profile"] = result.stderr if profile else ""
    return data


def print_breakdown(data: dict[str, Any]) -> None:
    print("\nWhere startup goes (one cold run in a fresh interpreter, in-process timers):")
    rows = [("python interpreter start (spawn -> main)", data["interpreter"]), *data["marks"].items()]
    total = sum(seconds for _, seconds in rows)
    for name, seconds in rows:
        print(f"  {name:<56} {seconds:6.3f} s")
        prefix = {"LocalCloud.start": "start:", "LocalCloud.deploy": "deploy:"}.get(name.split("(")[0].strip())
        for phase, phase_seconds in sorted(data["phases"].items(), key=lambda kv: -kv[1]):
            if prefix and phase.startswith(prefix):
                print(f"    {phase:<54} {phase_seconds:6.3f} s")
    print(f"  {'total':<56} {total:6.3f} s")
    if data["profile"]:
        print(data["profile"])


# ---------------------------------------------------------------- 2. executions on a warm cloud


def run_execution(sfn: Any, arn: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 0}))["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            elapsed = time.perf_counter() - started
            break
        time.sleep(POLL_INTERVAL_S)
    if described["status"] != "SUCCEEDED":
        raise RuntimeError(f"{arn}: execution ended {described['status']}: {described.get('error')}")
    return elapsed, json.loads(described.get("output") or "null")


def bench_executions(executions: int) -> tuple[Figure, Figure, Figure, float]:
    from localcloud.server import LocalCloud

    with tempfile.TemporaryDirectory(prefix="shepherd-bench-") as tmp:
        cloud = LocalCloud(port=0, state_dir=Path(tmp))
        cloud.start()
        try:
            outputs = cloud.deploy(FIXTURE)
            sfn, lam = cloud.client("stepfunctions"), cloud.client("lambda")
            machine, passes = outputs["TwentyStatesArn"], outputs["TwentyPassesArn"]
            cold, output = run_execution(sfn, machine)  # starts the function's worker process
            if output != {"n": 5}:
                raise RuntimeError(f"20-state machine returned {output!r}, expected 5 Lambda tasks to run")
            run_execution(sfn, passes)
            lambdas, pass_only, invoke = Figure(), Figure(), Figure()
            for _ in range(executions):  # interleaved, so both see the same noise
                lambdas.samples.append(run_execution(sfn, machine)[0])
                pass_only.samples.append(run_execution(sfn, passes)[0])
                started = time.perf_counter()
                lam.invoke(FunctionName="shepherd-NoopFunction", Payload=b'{"n": 0}')["Payload"].read()
                invoke.samples.append(time.perf_counter() - started)
            return lambdas, pass_only, invoke, cold
        finally:
            cloud.stop()


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="startups of `shepherd local up` (default 5)")
    parser.add_argument("--executions", type=int, default=30, help="timed executions per machine (default 30)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of start()+deploy()")
    parser.add_argument("--skip-startup", action="store_true", help="only the execution figures")
    parser.add_argument("--breakdown-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.breakdown_child:
        breakdown_child(args.profile)
        return

    began = time.perf_counter()
    print(f"Shepherd local cloud benchmark - {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    print(f"fixture: {FIXTURE.relative_to(ROOT)}; runs={args.runs}, executions={args.executions}\n")
    rows: list[Row] = []
    errors: list[str] = []
    breakdown: dict[str, Any] | None = None

    if not args.skip_startup:
        print("1. startup: `shepherd local up --port 0` -> GET /_shepherd/health 200 ready", flush=True)
        try:
            ready, stop, bare = bench_startup(args.runs)
            rows.append(Row("`shepherd local up` ready", ready, STARTUP_TARGET_S, bare))
            rows.append(Row("  baseline: python + moto.server -> 200", bare))
            rows.append(Row("  SIGTERM -> exit (informational)", stop))
        except (RuntimeError, OSError) as exc:
            errors.append(f"startup: {exc}")
            rows.append(Row("`shepherd local up` ready", Figure(), STARTUP_TARGET_S))
        try:
            breakdown = bench_breakdown(args.profile)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            errors.append(f"breakdown: {exc}")

    print("2. executions: in-process LocalCloud, warm workers, start_execution + describe every 5 ms", flush=True)
    try:
        lambdas, pass_only, invoke, cold = bench_executions(args.executions)
        rows.append(Row("20 states / 5 Lambda tasks, warm", lambdas, EXECUTION_TARGET_S, pass_only))
        rows.append(Row("  baseline: 20 Pass states", pass_only))
        rows.append(Row("  warm Lambda Invoke via boto3 (informational)", invoke))
        rows.append(Row("  first execution, cold worker (informational)", Figure([cold])))
    except (RuntimeError, OSError) as exc:
        errors.append(f"executions: {exc}")
        rows.append(Row("20 states / 5 Lambda tasks, warm", Figure(), EXECUTION_TARGET_S))

    print()
    print_table(rows)
    if breakdown is not None:
        print_breakdown(breakdown)
    for error in errors:
        print(f"\nERROR {error}")
    print("\nNoise: 2 shared cores are typical here; quote the medians and the ratios to the same-run baselines.")
    verdicts = [
        f"{r.metric.replace('`', '')}: median {r.figure.median:.3f} s vs {r.target} s {r.verdict}"
        for r in rows
        if r.target
    ]
    overall = "ALL PASS" if all(r.verdict == "PASS" for r in rows if r.target) else "NOT ALL PASS"
    print(f"SUMMARY ({time.perf_counter() - began:.0f} s): {overall} - " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
