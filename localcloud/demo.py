"""`shepherd demo`: the whole story on the local cloud, with live progress, a report and a summary.

Decisions in minutes need a large effect and enough traffic, so the report declares the demo's settings
(effect size, alpha, beta, traffic rate, time scale) rather than hiding them. The story and its outputs:
docs/CLI.md, "shepherd demo".
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table
from shepherd.aws.monitor_reports import MonitorReports, feature_drift

from localcloud.demo_summary import rollout_cost
from localcloud.traffic import Feedback, Traffic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "churn"
MODEL = "churn"
FAULT_SHARE = 0.5  # of its requests the faulty candidate fails
# The monitor's drift episode: this feature shifted by as much again as its mean (about 65), on every request
# after the rollouts, until the monitor's second run.
DRIFT_FEATURE, DRIFT_SHIFT = "monthly_charges", 65.0
DRIFT_MINUTES = 20  # virtual minutes of drifted traffic, at least, before the monitor runs on them
FAULTY_SUFFIX = f"""

_predict = predict_fn


def predict_fn(data, model):  # the demo's faulty candidate: fails on half of its requests
    import random

    if random.random() < {FAULT_SHARE}:
        raise RuntimeError("injected fault: this candidate is broken")
    return _predict(data, model)
"""


@dataclass
class Settings:
    """The demo's settings; bench/demo_odds.py computes from them how often the story fails (its report says)."""

    quick: bool = False
    time_scale: float = 60.0
    rate: float = 50.0  # requests/s the client aims at; it reaches what the endpoint's latency allows
    # What the client reaches here, per virtual minute (the clock runs time_scale x faster than the client's
    # seconds): the figure bench/demo_odds.py simulates at, and at a third of it, for a loaded machine.
    measured_requests_per_virtual_minute: float = 25.0
    malformed: float = 0.1  # the errors both variants share: more of them, faster error-rate decisions
    feedback_share: float = 0.5  # answers whose true outcome is uploaded under feedback/churn/
    rows: int = 3000  # training rows per dataset
    validation_rows: int = 1000  # one held-out set for every dataset: evaluation compares models on the same rows
    traffic_pool: int = 50_000  # fresh rows the traffic draws from (few repeat)
    # v1 is a shallow first model, v2 the tuned one: on fresh rows v1 is wrong on about 24 % of customers,
    # v2 on about 20 % (bench/demo_odds.py measures both, as the demo trains them).
    first_max_depth: int = 2
    max_depth: int = 5
    ab_steps: list[int] = field(default_factory=lambda: [25, 50])
    judge_interval_minutes: int = 1
    # Per stage (shadow, each A/B step, full): a good candidate decides in 5-25 virtual minutes at the measured
    # traffic; the limit leaves room for a machine that serves a third of it (bench/demo_odds.py).
    stage_max_minutes: int = 240
    watch_minutes: int = 30  # the watch only looks for harm (rollback-only) for its length; then the promotion stands
    # alpha and beta are the rollout's (shepherd.rollout.budget splits them across the stages): a candidate as
    # good as its champion is rolled back by chance in at most 0.01 % of rollouts.
    alpha: float = 0.0001
    beta: float = 0.2
    # Errors: a 4x worse rate must be caught (the faulty candidate fails half its requests, 5.5x the champion's
    # rate). Full and the watch test against an upper bound on the champion's rate before the stage, with a
    # drift margin (docs/ROLLOUTS.md). Quality: a 3x worse misclassification rate.
    delta: float = 3.0
    quality_delta: float = 2.0
    min_samples: int = 50

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        # Quick (the end-to-end test): more traffic, one A/B step and ground truth for more answers.
        if not quick:
            return cls()
        return cls(quick=True, ab_steps=[50], feedback_share=0.8)


def rollout_config(s: Settings) -> dict[str, Any]:
    """The `rollout` section of the demo's shepherd.yaml."""
    # Anytime boundaries: the default error-spending test can spend its beta on an unlucky start and then never
    # promote (bench/demo_odds.py: about 1 % of the demo's A/B stages); these always can.
    judge = {"alpha": s.alpha, "beta": s.beta, "delta": s.delta, "min_samples": s.min_samples, "anytime": True}
    limit = {"max_duration_minutes": s.stage_max_minutes, "at_max_duration": "inconclusive"}
    return {
        "judge_interval_minutes": s.judge_interval_minutes,
        # The demo's story is judged live (its faulty candidate fails at random, which replay would catch before
        # shadow): replay off until the demo tells its own (issue 21).
        "replay": {"enabled": False},
        "shadow": {"enabled": True, **limit},
        "ab": {"enabled": True, "steps": s.ab_steps, **limit},
        "full": limit,
        "post_promotion_watch": {"enabled": True, "max_duration_minutes": s.watch_minutes},
        "judge": {"error_rate": judge, "quality": judge | {"delta": s.quality_delta}},
    }


class Demo:
    def __init__(self, settings: Settings, out: Path, console: Console) -> None:
        self.settings, self.out, self.console = settings, out, console
        self.phase = "starting"
        self.events: list[str] = []
        self.traffic: Traffic | None = None
        self.decisions: list[tuple[float, str]] = []
        self.batch_scores: list[float] = []
        self.cloud: Any = None
        self.outputs: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing

    def log(self, message: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')}  {message}")

    def client(self, service: str) -> Any:
        return self.cloud.client(service)

    def _config(self, max_depth: int) -> dict[str, Any]:
        config = yaml.safe_load((EXAMPLE / "shepherd.yaml").read_text())
        config["hyperparameters"]["max_depth"] = max_depth
        for gate in config["evaluation"]["gates"]:
            if gate["metric"] == "validation:accuracy":
                gate["threshold"] = 0.7  # v1, the shallow first model, scores about 0.75
        config["endpoint"].pop("autoscaling", None)
        config["rollout"] = rollout_config(self.settings)
        # The story runs the monitor by hand, before and after the drift; an hourly run landing between them
        # would read the capture (and judge the hour) the drifted run is there to show, so it waits a day.
        config.setdefault("monitoring", {})["schedule"] = "rate(1 day)"
        return config

    def _upload_project(self, max_depth: int, inference: bytes | None = None) -> None:
        s3, bucket = self.client("s3"), self.outputs["DataBucketName"]
        config = self._config(max_depth)
        if inference is not None:
            # The faulty candidate fails half its requests, so scoring its validation rows against the champion's
            # would reject it before any rollout (docs/PIPELINES.md, "Evaluation gates"): the story shows serving
            # catch it, so it is registered on its thresholds alone.
            for gate in config["evaluation"]["gates"]:
                gate["must_beat_champion_by"] = None
        body = yaml.safe_dump(config).encode()
        s3.put_object(Bucket=bucket, Key=f"models/{MODEL}/shepherd.yaml", Body=body)
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

    def _lifecycle(self, dataset: str) -> None:
        """Wait for a dataset's ModelLifecycle; a failed one stops the story with its reason."""
        execution = self._wait_execution("ModelLifecycleStateMachineArn", f"{MODEL}-{dataset}-")
        self.log(f"ModelLifecycle {dataset}: {execution['status']}")
        if execution["status"] != "SUCCEEDED":
            raise RuntimeError(
                f"ModelLifecycle {dataset} {execution['status']}: {execution.get('error')}: {execution.get('cause')}"
            )

    def records(self) -> list[dict[str, Any]]:
        items = self.client("dynamodb").query(
            TableName=self.outputs["RolloutsTableName"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": f"endpoint#{MODEL}"}, ":r": {"S": "record#"}},
        )["Items"]
        # The key's time (the cloud's virtual clock) places each record on the report's time axis.
        return [{**json.loads(i["entry"]["S"]), "at": i["sk"]["S"].split("#")[1]} for i in items]

    def _endpoint_metrics(self, origin: datetime) -> dict[str, Any]:
        """What every variant served, shadow included, per demo second: CloudWatch's AWS/SageMaker metrics.

        The client never sees a shadow's answers; the endpoint's metrics (what the judge reads) do."""
        cloudwatch = self.client("cloudwatch")
        endpoint = [{"Name": "EndpointName", "Value": MODEL}]
        pages = cloudwatch.get_paginator("list_metrics").paginate(
            Namespace="AWS/SageMaker", MetricName="Invocations", Dimensions=endpoint
        )
        names = {d["Value"] for page in pages for m in page["Metrics"] for d in m["Dimensions"]}
        variants = sorted(names - {MODEL})
        measures = (("requests", "Invocations", "Sum"), ("errors", "Invocation5XXErrors", "Sum"))
        queries = [
            {
                "Id": f"{key}_{index}",
                "Label": variant,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": metric,
                        "Dimensions": [*endpoint, {"Name": "VariantName", "Value": variant}],
                    },
                    "Period": 60,
                    "Stat": stat,
                },
            }
            for index, variant in enumerate(variants)
            for key, metric, stat in (*measures, ("latency_ms_p50", "ModelLatency", "p50"))
        ]
        seconds: dict[str, dict[str, dict[str, float]]] = {}
        start = origin.replace(second=0, microsecond=0)
        end = self.cloud.clock.now() + timedelta(minutes=1)
        for offset in range(0, len(queries), 500):
            answer = cloudwatch.get_metric_data(
                MetricDataQueries=queries[offset : offset + 500], StartTime=start, EndTime=end
            )
            for result in answer["MetricDataResults"]:
                key = result["Id"].rsplit("_", 1)[0]
                for at, value in zip(result["Timestamps"], result["Values"], strict=True):
                    second = str(math.floor((at - origin).total_seconds() / self.settings.time_scale))
                    bucket = seconds.setdefault(second, {"requests": {}, "errors": {}, "latency_ms_p50": {}})
                    variant, was = result["Label"], bucket[key].get(result["Label"], 0.0)
                    # Above time scale 60 a demo second holds several periods: counts add up, latency keeps the
                    # slowest period's p50. ModelLatency is in microseconds.
                    latency = max(was, round(value / 1000, 2))
                    bucket[key][variant] = latency if key == "latency_ms_p50" else was + value
        return {"seconds": dict(sorted(seconds.items(), key=lambda item: int(item[0])))}

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
            answered = ", ".join(f"{v} {n:,}" for v, n in sorted(t.by_variant.items())) or "none"
            errors = ", ".join(f"{v} {n:,}" for v, n in sorted(t.model_errors.items())) or "none"
            table.add_row(
                "traffic",
                f"{t.sent:,} sent, {t.answered:,} answered ({answered}), model errors ({errors}), "
                f"{len(t.failures):,} failed",
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
        labelled = generate(s.traffic_pool, seed=99)
        held_out = labelled.drop(columns=["target"])
        rows = [
            (",".join(str(v) for v in row), int(target))
            for row, target in zip(held_out.itertuples(index=False), labelled["target"], strict=True)
        ]
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
                batch = self._story(frame, held_out, rows, validation=generate(s.validation_rows, seed=42))
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
        for name in ("authz.jsonl", "authz-roles.json"):  # tools/iam_report.py demo-output/: what each role used
            if (state / name).exists():
                shutil.copyfile(state / name, self.out / name)
        summary["iam"]["log"] = str(self.out / "authz.jsonl")
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        from localcloud.demo_report import write  # matplotlib, loaded only once there is something to draw

        write(summary, self.out)
        return summary

    def _story(self, frame: Any, held_out: Any, rows: list[tuple[str, int]], validation: Any) -> dict[str, Any]:
        from generate_data import generate  # examples/churn/generate_data.py (sys_path_example)

        s = self.settings
        self.phase = "1/7 local cloud"
        self.cloud.start()
        self.outputs = self.cloud.deploy(ROOT / "template.yaml", {"StageName": "demo"}, "shepherd")
        self.log(f"local cloud on {self.cloud.endpoint}, template.yaml deployed")

        self.phase = "2/7 train, register, first deployment"
        self._upload_project(s.first_max_depth)
        self._upload_dataset({"train": frame, "validation": validation}, "week-1")
        self._lifecycle("week-1")
        first = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v1-")
        self.log(f"first deployment of v1: {first['status']}")

        self.phase = "3/7 traffic"
        feedback = Feedback(
            self.client("s3"), self.outputs["DataBucketName"], MODEL, share=s.feedback_share, now=self.cloud.clock.now
        )
        self.traffic = Traffic(
            self.client("sagemaker-runtime"),
            MODEL,
            rows,
            rate=s.rate,
            malformed=s.malformed,
            ids="demo",
            feedback=feedback,
        ).start()
        self.log(
            f"traffic: {s.rate:g} requests/s from held-out rows, {100 * s.malformed:g}% malformed, "
            f"ground truth for {100 * s.feedback_share:g}% of the answers"
        )

        self.phase = "4/7 a better candidate: shadow -> A/B -> full"
        self._upload_project(s.max_depth)  # tuned: deeper trees
        week_2 = {"train": generate(s.rows, seed=8), "validation": validation}
        self._upload_dataset(week_2, "week-2")
        self._lifecycle("week-2")
        # The monitor on the champion's traffic as it is, while v2's rollout begins (the monitor reads the
        # production variants' capture, never a shadow's): a clean run, v1's.
        self._monitor(1)
        second = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v2-")
        self.log(f"rollout of v2: {second['status']}")
        self.decisions.append(
            (self.traffic.elapsed(), "v2 promoted" if second["status"] == "SUCCEEDED" else "v2 ended")
        )

        self.phase = "5/7 a faulty candidate"
        # The same data and model as v2 with a broken inference.py: it passes evaluation (its metrics equal the
        # champion's) and only serving shows the fault.
        self._upload_project(s.max_depth, ((EXAMPLE / "inference.py").read_text() + FAULTY_SUFFIX).encode())
        self._upload_dataset(week_2, "week-3")
        self._lifecycle("week-3")
        third = self._wait_execution("RolloutStateMachineArn", f"{MODEL}-v3-")
        self.log(f"rollout of v3: {third['status']} ({third.get('error', '')})")
        self.decisions.append((self.traffic.elapsed(), f"v3 {str(third.get('error', third['status'])).lower()}"))
        self._upload_project(s.max_depth)  # the good code back

        # After the rollouts, so the drift cannot sway a verdict: drifted traffic while the batch runs, then the
        # monitor on v2's capture. Its first run for the new champion starts the alert afresh, so it need not
        # wait for an hour the clean run did not judge (an alert judges each hour once, docs/MONITORING.md).
        column = list(held_out.columns).index(DRIFT_FEATURE)
        self.traffic.rows = drifted_rows(rows, column, DRIFT_SHIFT)
        drift_began = self.cloud.clock.now()
        self.log(f"drift: {DRIFT_FEATURE} +{DRIFT_SHIFT:g} on every request from now")

        self.phase = "6/7 batch transform, drifted traffic"
        batch_key = f"batch/{MODEL}/input/customers-{uuid.uuid4().hex[:6]}.csv"
        body = held_out.iloc[:200].to_csv(index=False, header=False).encode()
        self.client("s3").put_object(Bucket=self.outputs["DataBucketName"], Key=batch_key, Body=body)
        batch = self._wait_execution("BatchTransformStateMachineArn", f"{MODEL}-batch-")
        self.log(f"batch transform: {batch['status']}")
        self.batch_scores = self._batch_scores(batch)

        self._drifted_run(drift_began)
        self.traffic.rows = rows
        time.sleep(1.0)
        return batch

    def _drifted_run(self, drift_began: datetime) -> None:
        """The monitor on the drifted traffic, once DRIFT_MINUTES of it have been sent."""
        self.phase = "7/7 monitor: the drifted traffic"
        moment = drift_began + timedelta(minutes=DRIFT_MINUTES)
        time.sleep(self.cloud.clock.wall_seconds(self.cloud.clock.until(moment)))
        self._monitor(2)

    def _monitor(self, run: int) -> dict[str, Any]:
        """Start the Monitor state machine by hand and wait for it; its alert.json (``at``, ``decision``), or {}."""
        name = f"{MODEL}-demo-monitor-{run}-{uuid.uuid4().hex[:6]}"
        self.client("stepfunctions").start_execution(
            stateMachineArn=self.outputs["MonitorStateMachineArn"],
            name=name,
            input=json.dumps({"model": MODEL, "trigger": "manual"}),
        )
        execution = self._wait_execution("MonitorStateMachineArn", name, timeout=300)
        outcome = json.loads(execution.get("output") or "{}")
        if execution["status"] != "SUCCEEDED" or outcome.get("status") != "checked":
            self.log(f"monitor: {outcome.get('status') or execution['status']}: {outcome.get('reason') or ''}")
            return {}
        reports = MonitorReports(self.outputs["DataBucketName"], clients=self.client)
        documents = reports.report(outcome["report"])
        version = str(outcome.get("package", "")).rsplit("/", 1)[-1]
        statistics, constraints = reports.baseline(MODEL, version) or (None, None)
        drift = feature_drift(
            documents.get("statistics.json") or {},
            documents.get("constraint_violations.json") or {},
            statistics,
            constraints,
        )
        alert = documents.get("alert.json") or {}
        self.log(monitor_line([d.name for d in drift if d.drifted], alert.get("decision") or {}))
        return alert

    def _batch_scores(self, batch: dict[str, Any]) -> list[float]:
        outputs = json.loads(batch.get("output") or "{}").get("outputs") or []
        scores: list[float] = []
        for uri in outputs:
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            text = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            scores.extend(float(line) for line in text.split() if line.strip())
        return scores

    def _summary(self, batch: dict[str, Any] | None) -> dict[str, Any]:
        """DESIGN.md section 5's summary.json, plus what the report plots."""
        records = self.records() if self.outputs else []
        by_package: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_package.setdefault(record["package"], []).append(record)
        rollouts, first = [], None
        for package, entries in sorted(by_package.items(), key=lambda item: int(item[0].rsplit("/", 1)[1])):
            version = int(package.rsplit("/", 1)[1])
            entry = _rollout_outcome(package, version, entries)
            if entry["outcome"] == "deployed":
                first = entry
            else:
                rollouts.append(entry)
        batch_summary: dict[str, Any] = {"status": "Missing", "records": 0, "output": None}
        if batch is not None:
            output = json.loads(batch.get("output") or "{}")
            batch_summary = {
                "status": "Completed" if batch["status"] == "SUCCEEDED" else "Failed",
                "records": output.get("records"),
                "output": (output.get("outputs") or [None])[0],
                "scores": self.batch_scores,
            }
        clock: dict[str, Any] = {"time_scale": self.settings.time_scale, "origin": None}
        metrics: dict[str, Any] = {"seconds": {}}
        if self.traffic is not None and self.cloud is not None:
            # Demo second 0 is when the traffic started, on the cloud's virtual clock as the records are.
            origin = self.cloud.clock.now() - timedelta(seconds=self.traffic.elapsed() * self.settings.time_scale)
            clock["origin"] = origin.isoformat()
            try:
                metrics = self._endpoint_metrics(origin)
            except Exception as exc:  # a report without the endpoint's metrics, saying why, beats no report
                metrics["error"] = f"{type(exc).__name__}: {exc}"
        return {
            "rollouts": rollouts,
            "first_deployment": first,
            "fault_share": FAULT_SHARE,
            "clock": clock,
            "endpoint_metrics": metrics,
            "batch": batch_summary,
            "traffic": self.traffic.summary() if self.traffic else {"sent": 0, "failed": 0, "model_errors": {}},
            "decisions": [{"t": round(t, 1), "label": label} for t, label in self.decisions],
            # What IAM refused the stack's own roles (docs/LOCAL_IAM.md): a working stack has none.
            "iam": {
                "log": str(self.cloud.authorizer.log_path) if self.cloud is not None else None,
                "refusals": list(self.cloud.authorizer.refusals) if self.cloud is not None else [],
            },
            "monitoring": self._monitoring(),
            "records": records,
            "events": self.events,
        }

    def _monitoring(self) -> dict[str, Any]:
        """What the report's Monitoring section draws: the champion's baseline and the latest reports."""
        if not self.outputs:
            return {}
        try:
            reports = MonitorReports(self.outputs["DataBucketName"], clients=self.client)
            package = str((reports.state(MODEL) or {}).get("package") or "")
            statistics, constraints = reports.baseline(MODEL, package.rsplit("/", 1)[-1]) or (None, None)
            folders = reports.report_folders(MODEL, MODEL, last=48)
            return {"baseline": statistics, "constraints": constraints, "reports": [reports.report(f) for f in folders]}
        except Exception as exc:  # a report without the monitor's runs, saying why, beats no report
            return {"error": f"{type(exc).__name__}: {exc}"}


# The last record that ends a rollout, and the outcome it means.
_ENDINGS = {
    "promoted": "promoted",
    "rolled-back": "rolled_back",
    "rejected": "rejected",  # in replay, before any live request
    "inconclusive": "inconclusive",
    "rollback-failed": "rollback_failed",
    "ended": "failed",
}


def _rollout_outcome(package: str, version: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One package's rollout from its records: every rollout is listed, however it ended (or "running")."""
    kinds = [e["event"] for e in entries]
    entered = list(dict.fromkeys(e["stage"] for e in entries if e["event"] == "stage-entered"))
    ending = next((kind for kind in reversed(kinds) if kind in _ENDINGS), None)
    if ending == "promoted" and not entered:
        return {"model_package": package, "version": version, "outcome": "deployed"}
    outcome = _ENDINGS.get(ending or "", "running")
    metered = rollout_cost(entries)  # "cost" and "live_requests"
    if outcome == "promoted":
        # A direct switch (no judged stages) still ends on the challenger alone: "full".
        return {
            "model_package": package,
            "version": version,
            "outcome": outcome,
            "stages": entered if "full" in entered else [*entered, "full"],
        } | metered
    verdicts = [e for e in entries if e["event"] == "verdict" and e.get("verdict") != "CONTINUE"]
    ended = next((e for e in reversed(entries) if e["event"] == ending), entries[-1])
    reason = verdicts[-1].get("explanation") if verdicts else ended.get("reason") or ended.get("error")
    return {
        "model_package": package,
        "version": version,
        "outcome": outcome,
        "stages": entered,
        "reason": reason,
    } | metered


def drifted_rows(rows: list[tuple[str, int]], column: int, shift: float) -> list[tuple[str, int]]:
    """The CSV rows with one numeric column shifted by ``shift``; labels kept."""
    shifted = []
    for row, label in rows:
        values = row.split(",")
        values[column] = f"{float(values[column]) + shift:g}"
        shifted.append((",".join(values), label))
    return shifted


def monitor_line(drifted: list[str], decision: dict[str, Any]) -> str:
    """One monitor run for the story log: the features past their threshold, and Shepherd's alert."""
    if decision.get("alert"):
        alert = ", alert opened"
    elif decision.get("drifting"):
        alert = ", alert episode open"
    else:
        alert = ""
    if not drifted:
        return f"monitor: no drift{alert}"
    plural = "s" if len(drifted) > 1 else ""
    return f"monitor: {len(drifted)} feature{plural} drifted ({', '.join(drifted)}){alert}"


def sys_path_example() -> None:
    import sys

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))


def run_demo(quick: bool, out: Path, console: Console | None = None) -> dict[str, Any]:
    settings = Settings.for_mode(quick)
    return Demo(settings, out, console or Console()).run()


__all__ = ["Settings", "run_demo"]
