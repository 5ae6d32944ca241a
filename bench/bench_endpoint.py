"""Real-time endpoint serving on the local cloud vs. the model's handler called directly, in the same run.

A report, not a test: prints a table and a SUMMARY line and exits 0.
How it is built: docs/BENCHMARKS.md, "bench_endpoint.py".
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import joblib  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localcloud.sagemaker import serving  # noqa: E402
from localcloud.sagemaker.endpoints import InvocationRequest  # noqa: E402
from localcloud.sagemaker.inference import ModelHandler  # noqa: E402
from localcloud.server import LocalCloud  # noqa: E402

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
CHURN = ROOT / "examples" / "churn"
CSV = "text/csv"


# ---------------------------------------------------------------------------------------------- model


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem + "_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(kind: str) -> tuple[Any, str, bytes]:
    """The model, its label, and one CSV row of test features (the request payload)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame = _load_module(CHURN / "generate_data.py").generate(6000, 7)
    features, labels = frame.drop(columns=["target"]), frame["target"]
    if kind == "forest":
        model: Any = RandomForestClassifier(n_estimators=100, max_depth=5, random_state=0, n_jobs=1)
        label = "churn RandomForestClassifier(100 trees, depth 5)"
    else:
        model = LogisticRegression(max_iter=1000)
        label = "churn LogisticRegression"
    model.fit(features, labels)
    row = features.iloc[-1].to_numpy()
    payload = (",".join(repr(float(v)) for v in row)).encode()
    return model, label, payload


def model_archive(model: Any, into: Path) -> Path:
    """model.tar.gz (model.joblib + code/inference.py), and the same extracted next to it."""
    extracted = into / "model"
    (extracted / "code").mkdir(parents=True)
    joblib.dump(model, extracted / "model.joblib")
    (extracted / "code" / "inference.py").write_bytes((CHURN / "inference.py").read_bytes())
    archive = into / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(extracted / "model.joblib", arcname="model.joblib")
        tar.add(extracted / "code" / "inference.py", arcname="code/inference.py")
    return archive


# ---------------------------------------------------------------------------------------------- endpoints


def deploy(cloud: LocalCloud, model_url: str, count: int = 1, shadow: bool = False) -> str:
    sm = cloud.client("sagemaker")
    suffix = uuid.uuid4().hex[:8]
    sm.create_model(
        ModelName=f"bench-{suffix}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url},
    )
    variant = {"ModelName": f"bench-{suffix}", "InstanceType": "ml.m5.large", "InitialInstanceCount": count}
    config: dict[str, Any] = {"ProductionVariants": [{"VariantName": "Production", **variant}]}
    if shadow:
        shadow_name = f"Shadow{suffix}"
        config["ShadowProductionVariants"] = [{"VariantName": shadow_name, "InitialVariantWeight": 1.0, **variant}]
    sm.create_endpoint_config(EndpointConfigName=f"bench-{suffix}", **config)
    sm.create_endpoint(EndpointName=f"bench-{suffix}", EndpointConfigName=f"bench-{suffix}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = sm.describe_endpoint(EndpointName=f"bench-{suffix}")["EndpointStatus"]
        if status == "InService":
            return f"bench-{suffix}"
        if status == "Failed":
            raise RuntimeError(sm.describe_endpoint(EndpointName=f"bench-{suffix}").get("FailureReason"))
        time.sleep(0.05)
    raise RuntimeError("endpoint not InService within 120 s")


# ---------------------------------------------------------------------------------------------- measuring


def timed_calls(call: Callable[[], Any], calls: int) -> tuple[list[float], float]:
    """Per-call latencies (s) and the wall time of the whole loop."""
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


def concurrent_calls(make_call: Callable[[], Callable[[], Any]], threads: int, calls: int) -> tuple[list[float], float]:
    per_thread = calls // threads
    results: list[list[float]] = [[] for _ in range(threads)]
    callers = [make_call() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = timed_calls(callers[index], per_thread)[0]

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return [x for r in results for x in r], time.perf_counter() - started


def overhead_p50(cloud: LocalCloud, endpoint: str, since: datetime) -> float | None:
    """OverheadLatency p50 (ms) as CloudWatch answers it for the endpoint's Production variant."""
    assert cloud.sagemaker_runtime is not None
    cloud.sagemaker_runtime.metrics.flush(everything=True)
    now = cloud.clock.now()
    start = since - timedelta(minutes=2)
    end = now + timedelta(minutes=2)
    period = int((end - start).total_seconds()) // 60 * 60 + 60
    stats = cloud.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="OverheadLatency",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "Production"}],
        StartTime=start,
        EndTime=end,
        Period=period,
        ExtendedStatistics=["p50"],
    )
    points = stats["Datapoints"]
    if not points:
        return None
    if len(points) > 1:  # more than one period: the median of the periods' p50s
        return statistics.median(p["ExtendedStatistics"]["p50"] for p in points) / 1000
    return float(points[0]["ExtendedStatistics"]["p50"]) / 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str, str]] = []
        self.verdicts: list[tuple[str, bool]] = []

    def add(
        self,
        metric: str,
        median: float,
        p90: float | None,
        unit: str,
        *,
        target: str = "",
        baseline: float | None = None,
        ratio: float | None = None,
        ok: bool | None = None,
    ) -> None:
        def fmt(value: float | None) -> str:
            return "" if value is None else f"{value:,.3f} {unit}".strip()

        verdict = "" if ok is None else ("PASS" if ok else "OVER")
        if ok is not None:
            self.verdicts.append((metric, ok))
        self.rows.append(
            (metric, fmt(median), fmt(p90), target, fmt(baseline), "" if ratio is None else f"{ratio:.3f}", verdict)
        )

    def print(self) -> None:
        header = ("metric", "median", "p90", "target", "baseline", "ratio", "")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(len(header))]
        for row in [header, tuple("-" * w for w in widths), *self.rows]:
            print(
                "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
            )


# ---------------------------------------------------------------------------------------------- main

MS = 1000.0


class Bench:
    def __init__(self, args: argparse.Namespace, cloud: LocalCloud, handler: ModelHandler, payload: bytes) -> None:
        self.args = args
        self.cloud = cloud
        self.handler = handler
        self.payload = payload
        self.runtime = cloud.client("sagemaker-runtime")
        self.samples: dict[str, list[float]] = {}
        self.rates: dict[str, list[float]] = {}

    def direct(self) -> Any:
        return self.handler.invoke(self.payload, CSV, CSV)

    def endpoint_call(self, name: str, client: Any = None) -> Callable[[], bytes]:
        runtime = client or self.runtime

        def call() -> bytes:
            response = runtime.invoke_endpoint(EndpointName=name, Body=self.payload, ContentType=CSV, Accept=CSV)
            return response["Body"].read()

        return call

    def phase(self, label: str, call: Callable[[], Any], calls: int) -> None:
        latencies, took = timed_calls(call, calls)
        self.samples.setdefault(label, []).extend(latencies)
        self.rates.setdefault(label, []).append(calls / took)
        if label == "shadow":  # the shadow's low-priority copies finish before the next phase is timed
            assert self.cloud.sagemaker_runtime is not None
            self.cloud.sagemaker_runtime.wait_for_mirrors(120)

    def single_client(self, single: str, shadowed: str) -> None:
        """Rounds alternating direct / endpoint / shadowed endpoint / worker pool / fleet."""
        fleet = self.cloud.sagemaker.endpoints[single].variants["Production"].fleet
        assert isinstance(fleet, serving.VariantFleet)
        pool = fleet._instances[0]
        request = InvocationRequest(body=self.payload, content_type=CSV, accept=CSV)
        for _label, call in self._phases(single, shadowed, fleet, pool, request):
            timed_calls(call, 20)  # warm up: first frames, connections, caches
        for _ in range(self.args.rounds):
            for label, call in self._phases(single, shadowed, fleet, pool, request):
                self.phase(label, call, self.args.calls if label in {"direct", "endpoint"} else self.args.calls // 2)

    def _phases(
        self, single: str, shadowed: str, fleet: Any, pool: Any, request: InvocationRequest
    ) -> list[tuple[str, Callable[[], Any]]]:
        phases: list[tuple[str, Callable[[], Any]]] = [
            ("direct", self.direct),
            ("endpoint", self.endpoint_call(single)),
            ("pool", lambda: pool.invoke(self.payload, CSV, CSV)),
            ("fleet", lambda: fleet.invoke(request)),
        ]
        if shadowed:
            phases.insert(2, ("shadow", self.endpoint_call(shadowed)))
        return phases

    def concurrency(self, name: str) -> None:
        timed_calls(self.endpoint_call(name), 20)
        for _ in range(self.args.rounds):
            latencies, took = concurrent_calls(
                lambda: self.endpoint_call(name, self.cloud.client("sagemaker-runtime")),
                self.args.threads,
                self.args.calls,
            )
            self.samples.setdefault("concurrent", []).extend(latencies)
            self.rates.setdefault("concurrent", []).append(len(latencies) / took)

    def p50(self, label: str) -> float:
        return statistics.median(self.samples[label]) * MS

    def p90(self, label: str) -> float:
        return pct(self.samples[label], 0.9) * MS

    def table(self, overhead_cloudwatch: float | None) -> Table:
        table = Table()
        d_rate, e_rate = statistics.median(self.rates["direct"]), statistics.median(self.rates["endpoint"])
        cost, e50 = self.p50("direct"), self.p50("endpoint")
        table.add("direct handler rate", d_rate, None, "/s")
        table.add(
            "endpoint rate, 1 client",
            e_rate,
            None,
            "/s",
            target=">= 0.8x direct",
            baseline=d_rate,
            ratio=e_rate / d_rate,
            ok=e_rate >= 0.8 * d_rate,
        )
        table.add("direct handler latency", cost, self.p90("direct"), "ms")
        table.add("endpoint latency (client)", e50, self.p90("endpoint"), "ms", baseline=cost, ratio=e50 / cost)
        table.add("overhead (client - direct)", e50 - cost, self.p90("endpoint") - self.p90("direct"), "ms")
        table.add(
            "OverheadLatency (CloudWatch)",
            float("nan") if overhead_cloudwatch is None else overhead_cloudwatch,
            None,
            "ms",
            target="< 2 ms",
            ok=overhead_cloudwatch is not None and overhead_cloudwatch < 2.0,
        )
        if "shadow" in self.samples:
            s50 = self.p50("shadow")
            table.add(
                "latency with shadow (client)",
                s50,
                self.p90("shadow"),
                "ms",
                target="< 1.10x no shadow",
                baseline=e50,
                ratio=s50 / e50,
                ok=s50 < 1.10 * e50,
            )
        table.add("worker pool invoke (no HTTP)", self.p50("pool"), self.p90("pool"), "ms")
        table.add(
            "overhead (client - worker pool)", e50 - self.p50("pool"), self.p90("endpoint") - self.p90("pool"), "ms"
        )
        table.add(
            "fleet dispatch added (no HTTP)",
            self.p50("fleet") - self.p50("pool"),
            self.p90("fleet") - self.p90("pool"),
            "ms",
            baseline=self.p50("pool"),
            ratio=self.p50("fleet") / self.p50("pool"),
        )
        if "concurrent" in self.samples:
            c_rate = statistics.median(self.rates["concurrent"])
            threads = self.args.threads
            table.add(
                f"rate, {threads} clients, 2 instances",
                c_rate,
                None,
                "/s",
                target="report",
                baseline=2 * d_rate,
                ratio=c_rate / (2 * d_rate),
            )
            table.add(f"latency, {threads} clients, 2 instances", self.p50("concurrent"), self.p90("concurrent"), "ms")
        return table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--model", choices=("forest", "logistic"), default="forest")
    parser.add_argument("--calls", type=int, default=200, help="calls per phase and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--skip-shadow", action="store_true")
    parser.add_argument("--skip-concurrency", action="store_true")
    args = parser.parse_args()
    threadpool_limits(1)
    wall = time.perf_counter()

    model, label, payload = train(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        archive = model_archive(model, Path(tmp))
        handler = ModelHandler()
        handler.load(Path(tmp) / "model", {})
        cloud = LocalCloud(port=0, state_dir=Path(tmp) / "state").start()
        try:
            s3 = cloud.client("s3")
            s3.create_bucket(Bucket="bench-models")
            s3.upload_file(str(archive), "bench-models", "churn/model.tar.gz")
            url = "s3://bench-models/churn/model.tar.gz"
            since = cloud.clock.now()
            single = deploy(cloud, url)
            shadowed = "" if args.skip_shadow else deploy(cloud, url, shadow=True)
            bench = Bench(args, cloud, handler, payload)
            assert bench.endpoint_call(single)() == bench.direct()[0], "the endpoint answers differently"
            bench.single_client(single, shadowed)
            overhead = overhead_p50(cloud, single, since)
            if not args.skip_concurrency:
                bench.concurrency(deploy(cloud, url, count=2))
        finally:
            cloud.stop()
    cost = bench.p50("direct")
    print(f"model: {label}; per-call cost (direct handler, one CSV row): p50 {cost:.3f} ms")
    print(f"payload: {len(payload)} bytes of CSV, Accept text/csv; shadow workers at nice {serving.SHADOW_NICE}")
    if cloud.sagemaker_runtime is not None and not args.skip_shadow:
        mirrored, dropped = cloud.sagemaker_runtime.shadow_mirrored, cloud.sagemaker_runtime.shadow_dropped
        print(f"shadow copies: {mirrored} mirrored, {dropped} dropped (backlog full)")
    print(f"{args.rounds} rounds x {args.calls} calls per phase; 2 shared cores for client, server and workers\n")
    table = bench.table(overhead)
    table.print()
    failed = [m for m, ok in table.verdicts if not ok]
    print(
        f"\nSUMMARY: {len(table.verdicts) - len(failed)}/{len(table.verdicts)} targets met"
        + (f" (over: {', '.join(failed)})" if failed else "")
        + f"; model per-call cost {cost:.3f} ms; overhead {bench.p50('endpoint') - cost:.3f} ms (client)"
        + f", {'n/a' if overhead is None else f'{overhead:.3f}'} ms (CloudWatch p50)"
        + f"; wall {time.perf_counter() - wall:.0f} s"
    )


if __name__ == "__main__":
    main()
