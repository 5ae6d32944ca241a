"""`shepherd demo`: the whole story on the local cloud, with live progress, a report and a summary.

It starts the local cloud with the real template.yaml, uploads examples/churn and its data, and
plays: training -> registration -> first deployment; steady traffic from a held-out set; new data
-> a better candidate -> shadow -> A/B -> full promotion; a deliberately faulty candidate (its
predict_fn fails on a third of requests) caught in shadow and rolled back, champion intact; a
batch file scored; a clean shutdown. It writes demo-output/summary.json and report.html.

Statistical honesty: the judge decides from real counts with its stated error rates; decisions in
minutes need a large effect and enough traffic, so the demo declares its settings (effect size,
alpha, beta, traffic rate, time scale) in the report rather than hiding them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import html
import io
import json
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "churn"
MODEL = "churn"
FAULTY_SUFFIX = """

_predict = predict_fn


def predict_fn(data, model):  # the demo's faulty candidate: fails on a third of its requests
    import random

    if random.random() < 0.33:
        raise RuntimeError("injected fault: this candidate is broken")
    return _predict(data, model)
"""


@dataclass
class Settings:
    quick: bool = False
    time_scale: float = 60.0
    rate: float = 25.0
    malformed: float = 0.05
    rows: int = 3000
    ab_steps: list[int] = field(default_factory=lambda: [25, 50])
    judge_interval_minutes: int = 1
    # Generous: under load a stage needs more virtual minutes for the same evidence; decisions come far earlier.
    stage_max_minutes: int = 240
    alpha: float = 0.05
    beta: float = 0.2
    delta: float = 1.0
    min_samples: int = 50

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        return cls(quick=True, rows=1200, ab_steps=[50], rate=50.0) if quick else cls()


class Traffic:
    """Steady InvokeEndpoint traffic from held-out rows; every outcome counted, per second and per variant."""

    def __init__(self, client: Any, endpoint: str, rows: list[str], rate: float, malformed: float) -> None:
        self.client, self.endpoint, self.rows, self.rate, self.malformed = client, endpoint, rows, rate, malformed
        self.random = random.Random(5)  # noqa: S311 - traffic sampling, not security
        self.sent = self.answered = self.malformed_refused = 0
        self.failures: list[str] = []
        self.by_variant: Counter[str] = Counter()
        self.timeline: list[dict[str, Any]] = []
        self._second: Counter[str] = Counter()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _tick(self) -> None:
        now = int(time.monotonic() - self._started)
        if not self.timeline or self.timeline[-1]["t"] != now:
            if self._second:
                self.timeline.append({"t": now, **self._second})
            self._second = Counter()

    def _run(self) -> None:
        interval = 1.0 / self.rate
        while not self._stop.wait(interval):
            self._tick()
            bad = self.random.random() < self.malformed
            body = "1,2" if bad else self.rows[self.random.randrange(len(self.rows))]
            self.sent += 1
            try:
                answer = self.client.invoke_endpoint(EndpointName=self.endpoint, ContentType="text/csv", Body=body)
            except self.client.exceptions.ModelError:
                if bad:
                    self.malformed_refused += 1
                    self._second["malformed"] += 1
                else:
                    self.failures.append("ModelError on a valid request")
                    self._second["failed"] += 1
                continue
            except Exception as exc:  # the endpoint was unavailable: the rollout's fault, counted
                self.failures.append(f"{type(exc).__name__}: {exc}")
                self._second["failed"] += 1
                continue
            variant = answer["InvokedProductionVariant"]
            self.answered += 1
            self.by_variant[variant] += 1
            self._second[variant] += 1


class Demo:
    def __init__(self, settings: Settings, out: Path, console: Console) -> None:
        self.settings, self.out, self.console = settings, out, console
        self.phase = "starting"
        self.events: list[str] = []
        self.traffic: Traffic | None = None
        self.cloud: Any = None
        self.outputs: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing

    def log(self, message: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')}  {message}")

    def client(self, service: str) -> Any:
        return self.cloud.client(service)

    def _config(self) -> dict[str, Any]:
        config = yaml.safe_load((EXAMPLE / "shepherd.yaml").read_text())
        s = self.settings
        for gate in config["evaluation"]["gates"]:
            gate["must_beat_champion_by"] = None  # the demo's datasets differ by seed; the thresholds hold
        config["endpoint"].pop("autoscaling", None)
        judge = {"alpha": s.alpha, "beta": s.beta, "delta": s.delta, "min_samples": s.min_samples}
        config["rollout"] = {
            "judge_interval_minutes": s.judge_interval_minutes,
            "shadow": {"enabled": True, "max_duration_minutes": s.stage_max_minutes},
            "ab": {"enabled": True, "steps": s.ab_steps, "max_duration_minutes": s.stage_max_minutes},
            "judge": {"error_rate": judge},
        }
        return config

    def _upload_project(self, inference: bytes | None = None) -> None:
        s3, bucket = self.client("s3"), self.outputs["DataBucketName"]
        s3.put_object(Bucket=bucket, Key=f"models/{MODEL}/shepherd.yaml", Body=yaml.safe_dump(self._config()).encode())
        s3.put_object(Bucket=bucket, Key=f"models/{MODEL}/code/train.py", Body=(EXAMPLE / "train.py").read_bytes())
        body = inference or (EXAMPLE / "inference.py").read_bytes()
        s3.put_object(Bucket=bucket, Key=f"models/{MODEL}/code/inference.py", Body=body)

    def _upload_dataset(self, frames: dict[str, Any], dataset: str) -> None:
        s3, bucket = self.client("s3"), self.outputs["DataBucketName"]
        for split in ("train", "validation"):
            key = f"training/{MODEL}/{dataset}/{split}/{split}.csv"
            s3.put_object(Bucket=bucket, Key=key, Body=frames[split].to_csv(index=False).encode())
        s3.put_object(Bucket=bucket, Key=f"training/{MODEL}/{dataset}/_READY", Body=b"")

    def _wait_execution(self, arn_key: str, prefix: str, timeout: float = 600) -> dict[str, Any]:
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = sfn.list_executions(stateMachineArn=self.outputs[arn_key])["executions"]
            found = [e for e in listed if e["name"].startswith(prefix) and e["status"] != "RUNNING"]
            if found:
                return dict(sfn.describe_execution(executionArn=found[0]["executionArn"]))
            time.sleep(0.3)
        raise TimeoutError(f"no {prefix} execution finished within {timeout:.0f} s")

    def records(self) -> list[dict[str, Any]]:
        items = self.client("dynamodb").query(
            TableName=self.outputs["RolloutsTableName"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": f"endpoint#{MODEL}"}, ":r": {"S": "record#"}},
        )["Items"]
        return [json.loads(i["entry"]["S"]) for i in items]

    # ------------------------------------------------------------------ the live view

    def view(self) -> Table:
        table = Table(title=f"shepherd demo — {self.phase}", expand=True, show_lines=False)
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("now")
        if self.cloud is not None and self.outputs:
            try:
                endpoint = self.client("sagemaker").describe_endpoint(EndpointName=MODEL)
                variants = ", ".join(
                    f"{v['VariantName']} {100 * v.get('CurrentWeight', 0):.0f}% x{v.get('CurrentInstanceCount')}"
                    for v in endpoint.get("ProductionVariants", [])
                )
                shadows = ", ".join(v["VariantName"] for v in endpoint.get("ShadowProductionVariants") or [])
                table.add_row(
                    "endpoint", f"{endpoint['EndpointStatus']}: {variants}" + (f"; shadow {shadows}" if shadows else "")
                )
            except Exception:  # no endpoint yet
                table.add_row("endpoint", "not deployed yet")
            verdicts = [r for r in self.records() if r.get("event") == "verdict"][-3:]
            for record in verdicts:
                table.add_row(
                    f"judge v{record['package'].rsplit('/', 1)[1]} {record.get('stage')}",
                    f"{record['verdict']}: {record['explanation']}",
                )
        if self.traffic is not None:
            t = self.traffic
            answered = f"{t.answered} answered ({dict(t.by_variant)})"
            table.add_row(
                "traffic",
                f"{t.sent} sent, {answered}, {t.malformed_refused} malformed refused, {len(t.failures)} failed",
            )
        for line in self.events[-6:]:
            table.add_row("", line)
        return table

    # ------------------------------------------------------------------ the story

    def run(self) -> dict[str, Any]:
        from localcloud.server import LocalCloud

        started = time.monotonic()
        s = self.settings
        sys_path_example()
        from generate_data import generate  # examples/churn/generate_data.py

        frame = generate(s.rows, seed=7)
        held_out = generate(600, seed=99).drop(columns=["target"])
        rows = [",".join(str(v) for v in row) for row in held_out.itertuples(index=False)]
        state = Path(tempfile.mkdtemp(prefix="shepherd-demo-"))
        self.cloud = LocalCloud(port=0, time_scale=s.time_scale, state_dir=state)
        summary: dict[str, Any] = {"settings": asdict(s)}
        with Live(self.view(), console=self.console, refresh_per_second=4, transient=False) as live:
            stop_view = threading.Event()

            def refresh() -> None:
                while not stop_view.wait(0.5):
                    with contextlib.suppress(Exception):  # a view that cannot render now renders next time
                        live.update(self.view())

            threading.Thread(target=refresh, name="demo-view", daemon=True).start()
            batch: dict[str, Any] | None = None
            try:
                batch = self._story(frame, held_out, rows)
            finally:
                if self.traffic is not None:
                    self.traffic.stop()
                self.phase = "shutting down"
                summary |= self._summary(batch)
                stop_view.set()
                live.update(self.view())
                self.cloud.stop()
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (self.out / "report.html").write_text(report(summary))
        return summary

    def _story(self, frame: Any, held_out: Any, rows: list[str]) -> dict[str, Any]:
        from generate_data import generate  # examples/churn/generate_data.py (sys_path_example)

        s = self.settings
        self.phase = "1/6 local cloud"
        self.cloud.start()
        self.outputs = self.cloud.deploy(ROOT / "template.yaml", {"StageName": "demo"}, "shepherd")
        self.log(f"local cloud on {self.cloud.endpoint}, template.yaml deployed")

        self.phase = "2/6 train, register, first deployment"
        self._upload_project()
        cut = int(len(frame) * 0.75)
        self._upload_dataset({"train": frame.iloc[:cut], "validation": frame.iloc[cut:]}, "week-1")
        lifecycle = self._wait_execution("ModelLifecycleStateMachineArn", f"{MODEL}-week-1-")
        self.log(f"ModelLifecycle week-1: {lifecycle['status']}")
        first = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v1-")
        self.log(f"first deployment of v1: {first['status']}")

        self.phase = "3/6 traffic"
        self.traffic = Traffic(self.client("sagemaker-runtime"), MODEL, rows, s.rate, s.malformed).start()
        self.log(f"traffic: {s.rate:g} requests/s from held-out rows, {100 * s.malformed:g}% malformed")

        self.phase = "4/6 a better candidate: shadow -> A/B -> full"
        second_frame = generate(s.rows, seed=8)
        self._upload_dataset({"train": second_frame.iloc[:cut], "validation": second_frame.iloc[cut:]}, "week-2")
        self._wait_execution("ModelLifecycleStateMachineArn", f"{MODEL}-week-2-")
        second = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v2-")
        self.log(f"rollout of v2: {second['status']}")

        self.phase = "5/6 a faulty candidate"
        self._upload_project(((EXAMPLE / "inference.py").read_text() + FAULTY_SUFFIX).encode())
        third_frame = generate(s.rows, seed=9)
        self._upload_dataset({"train": third_frame.iloc[:cut], "validation": third_frame.iloc[cut:]}, "week-3")
        self._wait_execution("ModelLifecycleStateMachineArn", f"{MODEL}-week-3-")
        third = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v3-")
        self.log(f"rollout of v3: {third['status']} ({third.get('error', '')})")
        self._upload_project()  # the good code back

        self.phase = "6/6 batch transform"
        batch_key = f"batch/{MODEL}/input/customers-{uuid.uuid4().hex[:6]}.csv"
        body = held_out.iloc[:200].to_csv(index=False, header=False).encode()
        self.client("s3").put_object(Bucket=self.outputs["DataBucketName"], Key=batch_key, Body=body)
        batch = self._wait_execution("BatchTransformStateMachineArn", f"{MODEL}-batch-")
        self.log(f"batch transform: {batch['status']}")
        time.sleep(1.0)
        return batch

    def _summary(self, batch: dict[str, Any] | None) -> dict[str, Any]:
        records = self.records() if self.outputs else []
        by_version: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_version.setdefault(record["package"].rsplit("/", 1)[1], []).append(record)
        promotions, rollbacks = [], []
        for version, entries in sorted(by_version.items()):
            kinds = [e["event"] for e in entries]
            stages = [e["stage"] for e in entries if e["event"] == "verdict" and e.get("verdict") == "PROMOTE"]
            if "promoted" in kinds:
                promotions.append(
                    {"version": int(version), "stages": [*dict.fromkeys(stages), "full"] if stages else ["first"]}
                )
            if "rolled-back" in kinds:
                last = [e for e in entries if e["event"] == "verdict"][-1:] or [{}]
                rollbacks.append(
                    {"version": int(version), "stage": last[0].get("stage"), "reason": last[0].get("explanation")}
                )
        batch_summary: dict[str, Any] = {"status": "Missing"}
        if batch is not None:
            output = json.loads(batch.get("output") or "{}")
            batch_summary = {
                "status": "Completed" if batch["status"] == "SUCCEEDED" else "Failed",
                "records": output.get("records"),
                "outputs": output.get("outputs"),
            }
        t = self.traffic
        return {
            "promotions": [p for p in promotions if p["stages"] != ["first"]],
            "first_deployment": next((p for p in promotions if p["stages"] == ["first"]), None),
            "rollbacks": rollbacks,
            "batch": batch_summary,
            "traffic": {
                "sent": t.sent if t else 0,
                "answered": t.answered if t else 0,
                "malformed_refused": t.malformed_refused if t else 0,
                "failed": len(t.failures) if t else 0,
                "failures": (t.failures[:10] if t else []),
                "by_variant": dict(t.by_variant) if t else {},
                "timeline": t.timeline if t else [],
            },
            "records": records,
            "events": self.events,
        }


def sys_path_example() -> None:
    import sys

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))


def _figure_png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(summary: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    timeline = summary["traffic"]["timeline"]
    if timeline:
        figure, axis = plt.subplots(figsize=(9, 3.2))
        series = sorted({k for point in timeline for k in point if k != "t"})
        for name in series:
            axis.plot([p["t"] for p in timeline], [p.get(name, 0) for p in timeline], label=name, linewidth=1.4)
        axis.set_xlabel("seconds since traffic started (wall clock)")
        axis.set_ylabel("requests per second")
        axis.set_title("Who answered: traffic by variant")
        axis.legend(loc="upper left", fontsize=8)
        plots.append(("Traffic by variant", _figure_png(figure)))
        plt.close(figure)
    verdicts = [r for r in summary["records"] if r.get("event") == "verdict" and r.get("statistics")]
    if verdicts:
        figure, axis = plt.subplots(figsize=(9, 3.2))
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in verdicts:
            groups.setdefault(
                f"v{record['package'].rsplit('/', 1)[1]} {record['stage']} {record.get('weight', '')}", []
            ).append(record)
        for label, records in groups.items():
            stats = [r["statistics"][0] for r in records]
            line = axis.plot(range(len(stats)), [st["statistic"] for st in stats], marker="o", label=label)[0]
            axis.axhline(stats[-1]["rollback_boundary"], color=line.get_color(), linestyle="--", linewidth=0.8)
            axis.axhline(stats[-1]["promote_boundary"], color=line.get_color(), linestyle=":", linewidth=0.8)
        axis.set_xlabel("judge call in the stage")
        axis.set_ylabel("log-likelihood ratio (error rate)")
        axis.set_title("The judge's evidence: dashed = rollback boundary, dotted = promote boundary")
        axis.legend(loc="upper left", fontsize=8)
        plots.append(("The judge's evidence per stage", _figure_png(figure)))
        plt.close(figure)
    return plots


def report(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    t = summary["traffic"]
    rows = "".join(
        f"<tr><td>v{html.escape(r['package'].rsplit('/', 1)[1])}</td><td>{html.escape(str(r.get('event')))}</td>"
        f"<td>{html.escape(str(r.get('stage') or ''))}</td><td>{html.escape(str(r.get('verdict') or ''))}</td>"
        f"<td>{html.escape(str(r.get('explanation') or r.get('reason') or ''))}</td></tr>"
        for r in summary["records"]
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        for title, data in _plots(summary)
    )
    promotions = ", ".join(f"v{p['version']} via {' → '.join(p['stages'])}" for p in summary["promotions"]) or "none"
    rollbacks = ", ".join(
        f"v{r['version']} in {r['stage']}: {str(r['reason']).rstrip('.')}" for r in summary["rollbacks"]
    )
    rollbacks = rollbacks or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shepherd demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:13px}}
td,th{{border-bottom:1px solid #ddd;padding:4px;text-align:left}}
.big{{font-size:20px}}img{{max-width:100%}}</style></head><body>
<h1>Shepherd demo</h1>
<p class="big">Promoted: {html.escape(promotions)}.<br>Rolled back: {html.escape(rollbacks)}.<br>
Batch: {html.escape(str(summary["batch"].get("status")))} ({summary["batch"].get("records")} records).<br>
Traffic: {t["sent"]} requests, {t["answered"]} answered, {t["malformed_refused"]} malformed refused as expected,
<b>{t["failed"]} failed because of a rollout</b>. Wall time {summary.get("wall_seconds", "?")} s.</p>
{images}
<h2>What the judge was asked to do</h2>
<p>Error rate judged with a sequential probability ratio test: alpha = {settings["alpha"]} (chance of rolling back a
candidate as good as the champion), beta = {settings["beta"]} (chance of promoting one whose error rate is
{1 + settings["delta"]:g}x the champion's), at least {settings["min_samples"]} requests per variant before a promotion.
Traffic {settings["rate"]:g} requests/s with {100 * settings["malformed"]:g}% malformed requests (the errors both
variants share), time scale {settings["time_scale"]:g}x (one judge call per virtual minute).
Decisions this fast need a large effect (the faulty candidate fails a third of its requests) and enough traffic:
with a subtle regression the same judge would, honestly, take longer.</p>
<h2>Rollout record</h2>
<table><tr><th>package</th><th>event</th><th>stage</th><th>verdict</th><th>why</th></tr>{rows}</table>
</body></html>
"""


def run_demo(quick: bool, out: Path, console: Console | None = None) -> dict[str, Any]:
    settings = Settings.for_mode(quick)
    return Demo(settings, out, console or Console()).run()


__all__ = ["Settings", "copy", "run_demo"]
