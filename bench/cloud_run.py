"""A benchmark run on a fresh local cloud with Shepherd's template.yaml deployed, and its run-report-teardown block.

Shared by bench_rollout_cost.py and rollout_load.py: set-up (the cloud, examples/churn's project, the first model),
the helpers both use (uploads, datasets, waits, execution histories, tables), and ``perform``, which runs a
measurement, prints its report, writes its JSON and always tears the cloud down. A report, not a test: it exits 0.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localcloud.demo import EXAMPLE, MODEL, sys_path_example  # noqa: E402
from localcloud.server import LocalCloud  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# The documented default (demo.py uses 60): at 25 requests per virtual minute an A/B step between two
# equally good models needs tens of errors, and 60 virtual minutes (1,500 requests) is sometimes short.
STAGE_MAX_MINUTES = 120


def churn_project(ab_steps: list[int], interval: int) -> dict[str, Any]:
    """examples/churn/shepherd.yaml as the demo changes it (Demo._config), fixed capacity, the given A/B steps."""
    raw = yaml.safe_load((EXAMPLE / "shepherd.yaml").read_text())
    for gate in raw["evaluation"]["gates"]:
        gate["must_beat_champion_by"] = None  # the datasets differ by seed; the thresholds hold
    raw["endpoint"]["autoscaling"] = {"enabled": False, "reason": "the bench measures fixed capacity"}
    raw["rollout"] = {
        "judge_interval_minutes": interval,
        "shadow": {"enabled": True, "max_duration_minutes": STAGE_MAX_MINUTES},
        "ab": {"enabled": True, "steps": ab_steps, "max_duration_minutes": STAGE_MAX_MINUTES},
        "judge": {"error_rate": {"alpha": 0.05, "beta": 0.2, "delta": 1.0, "min_samples": 50}},
    }
    return raw


class CloudRun:
    """A local cloud (in this process, its own state directory) with template.yaml deployed as stack "bench"."""

    def __init__(self, time_scale: float, rows: int, prefix: str) -> None:
        self.time_scale, self.rows = time_scale, rows
        self.cloud = LocalCloud(port=0, time_scale=time_scale, state_dir=Path(tempfile.mkdtemp(prefix=f"{prefix}-")))
        self.outputs: dict[str, str] = {}

    def log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)

    def deploy(self) -> None:
        sys_path_example()  # examples/churn/generate_data.py
        self.cloud.start()
        self.outputs = self.cloud.deploy(ROOT / "template.yaml", {"StageName": "bench"}, "bench")
        self.log(f"local cloud on {self.cloud.endpoint} (time scale {self.time_scale:g}), template.yaml deployed")

    def upload(self, key: str, body: bytes) -> None:
        self.cloud.client("s3").put_object(Bucket=self.outputs["DataBucketName"], Key=key, Body=body)

    def upload_project(self, project: dict[str, Any], inference: bytes | None = None) -> None:
        """models/churn/: the config, train.py, and inference.py (examples/churn's unless given)."""
        self.upload(f"models/{MODEL}/shepherd.yaml", yaml.safe_dump(project).encode())
        self.upload(f"models/{MODEL}/code/train.py", (EXAMPLE / "train.py").read_bytes())
        self.upload(f"models/{MODEL}/code/inference.py", inference or (EXAMPLE / "inference.py").read_bytes())

    def dataset(self, name: str, seed: int) -> None:
        from generate_data import generate  # examples/churn/generate_data.py (sys_path_example)

        frame = generate(self.rows, seed=seed)
        cut = int(len(frame) * 0.75)
        for split, part in (("train", frame.iloc[:cut]), ("validation", frame.iloc[cut:])):
            self.upload(f"training/{MODEL}/{name}/{split}/{split}.csv", part.to_csv(index=False).encode())
        self.upload(f"training/{MODEL}/{name}/_READY", b"")

    def first_model(self, project: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """v1 from dataset week-1: its ModelLifecycle execution and its first deployment's Rollout execution."""
        self.upload_project(project)
        self.dataset("week-1", seed=7)
        lifecycle = self.wait("ModelLifecycleStateMachineArn", f"{MODEL}-week-1-", 600)
        self.log(f"ModelLifecycle week-1: {lifecycle['status']}")
        first = self.wait("RolloutStateMachineArn", f"{MODEL}-v1-", 600)
        self.log(f"Rollout v1 (first deployment): {first['status']}")
        return lifecycle, first

    def held_out_rows(self) -> list[tuple[str, int]]:
        """600 fresh rows as InvokeEndpoint bodies (labels unused)."""
        from generate_data import generate

        held_out = generate(600, seed=99).drop(columns=["target"])
        return [(",".join(str(v) for v in row), 0) for row in held_out.itertuples(index=False)]

    def wait(self, arn_key: str, prefix: str, timeout: float) -> dict[str, Any]:
        """The first execution named ``prefix``* of that state machine to finish, described."""
        sfn = self.cloud.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in sfn.list_executions(stateMachineArn=self.outputs[arn_key])["executions"]:
                if e["name"].startswith(prefix) and e["status"] != "RUNNING":
                    return dict(sfn.describe_execution(executionArn=e["executionArn"]))
            time.sleep(0.3)
        raise TimeoutError(f"no {prefix} execution finished within {timeout:.0f} s")

    def history(self, arn: str) -> list[dict[str, Any]]:
        sfn, events, token = self.cloud.client("stepfunctions"), [], None
        while True:
            page = sfn.get_execution_history(
                executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
            )
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                return events

    def stop(self) -> None:
        """Tear down: subclasses stop their traffic first."""
        self.cloud.stop()


def perform(
    run: CloudRun,
    measure: Callable[[], dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
    out: Path | None,
) -> None:
    """Measure, add the wall time, print the report, write ``out``; whatever fails, report it and tear down."""
    started = time.monotonic()
    try:
        results = measure()
        results["bench_wall_seconds"] = round(time.monotonic() - started, 1)
        report(results)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2, default=str) + "\n")
            print(f"\nwrote {out}")
    except Exception:
        traceback.print_exc()
        print("FAILED: the run did not complete (a report, not a test: exit 0)")
    finally:
        run.stop()
    print(f"done in {time.monotonic() - started:.0f} s")


def json_object(text: str | None) -> dict[str, Any]:
    """A history event's JSON input or output as a dict ({} when it is not one)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
