"""`shepherd monitor run|status <model>`: a manual monitor run, and drift per feature read back from the data bucket.

S3 is moto in-process (the documents are the analyzer's own, from seeded data); Step Functions is a fake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import yaml
from botocore.exceptions import ClientError
from moto import mock_aws
from shepherd.aws.monitor_reports import feature_drift
from shepherd.monitor.constraints import check, suggest_constraints
from shepherd.monitor.dataset import read_csv
from shepherd.monitor.layout import baseline_prefix, report_prefix, state_key
from shepherd.monitor.metrics import feature_metrics
from shepherd.monitor.statistics import profile
from typer.testing import CliRunner

from shepherd_cli import cloud as cli_cloud
from shepherd_cli import monitor
from shepherd_cli.main import app

BUCKET = "shepherd-data"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:shepherd-dev-monitor"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"
CONFIG = (Path(__file__).resolve().parents[2] / "examples" / "churn" / "shepherd.yaml").read_text()
RUN_AT = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
WALL = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOCK = f"{WALL.timestamp()},{WALL.timestamp()},1"


def _csv(rng: np.random.Generator, rows: int, *, shift: float, plans: list[str]) -> str:
    lines = ["tenure,plan,charges"]
    for _ in range(rows):
        lines.append(f"{rng.normal(24 + shift, 6):.2f},{rng.choice(plans)},{rng.normal(70, 10):.2f}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    """Given a baseline and one hour's capture whose tenure moved up and whose plan gained a new value."""
    rng = np.random.default_rng(19)
    baseline = profile(read_csv(_csv(rng, 2000, shift=0, plans=["basic", "plus"]), header=True))
    constraints = suggest_constraints(baseline)
    current = profile(read_csv(_csv(rng, 400, shift=12, plans=["basic", "plus", "gold"]), header=True))
    violations = check(current, baseline, constraints)
    evidence = {"feature": "tenure", "test": "mean+", "statistic": 31.2, "threshold": 12.4, "score": 19.9}
    smaller = evidence | {"statistic": 25.0}  # the same test's chart tuned to another shift size
    alert = {
        "model": "churn",
        "endpoint": "churn",
        "package": PACKAGE,
        "at": RUN_AT.isoformat(),
        "trigger": "schedule",
        "decision": {
            "alert": True,
            "drifting": True,
            "firing": True,
            "features": ["tenure"],
            "reason": "drift in tenure",
            "evidence": [evidence, smaller],
            "hour": "2026-12-01T09:00:00+00:00",
        },
        "violations": len(violations["violations"]),
        "retrain": {"started": False, "reason": "retraining on drift is not configured", "evidence": {}},
    }
    state = {
        "format": 1,
        "package": PACKAGE,
        "capture": {"closed": datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp(), "read": {"v2/2026/12/01/09": ["a"]}},
        "alert": {
            "charts": {},
            "last_at": "2026-12-01T09:00:00+00:00",
            "episode_open": True,
            "quiet": 0,
            "crossed": ["tenure/mean+"],
            "episodes": 1,
        },
        "retrain": {
            "drift_since": "2026-12-01T08:05:00+00:00",
            "last_trigger": "2026-11-30T20:05:00+00:00",
            "triggers": [{"execution_name": "churn-retrain-0a1b", "dataset": "s3://d/training/churn/x/"}],
        },
        "last_run": RUN_AT.isoformat(),
        "last_report": f"s3://{BUCKET}/{report_prefix('churn', 'churn', RUN_AT)}",
    }
    return {
        "baseline": baseline,
        "constraints": constraints,
        "current": current,
        "violations": violations,
        "alert": alert,
        "state": state,
    }


class FakeStepFunctions:
    """StartExecution and DescribeExecution; an execution ends as ``ending`` says."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.ending: dict[str, Any] = {"status": "SUCCEEDED", "output": "{}"}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        self.started.append({"machine": stateMachineArn, "name": name, "input": json.loads(input)})
        return {"executionArn": MACHINE.replace(":stateMachine:", ":execution:") + f":{name}"}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"executionArn": executionArn, **self.ending}


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An empty data bucket (moto), a fake Step Functions, the stack's outputs, the CLI's clients on them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(cli_cloud, "_health", lambda endpoint_url: {"clock": CLOCK})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"DataBucketName": BUCKET, "MonitorStateMachineArn": MACHINE}))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sfn = FakeStepFunctions()
        services = {"s3": s3, "stepfunctions": sfn}
        monkeypatch.setattr(cli_cloud.Target, "client", lambda self, service: services[service])
        yield {"s3": s3, "sfn": sfn, "outputs": outputs}


def _put(cloud: dict[str, Any], key: str, document: dict[str, Any] | str) -> None:
    body = document if isinstance(document, str) else json.dumps(document)
    cloud["s3"].put_object(Bucket=BUCKET, Key=key, Body=body.encode())


def _config(**monitoring: Any) -> str:
    document = yaml.safe_load(CONFIG)
    document["monitoring"] |= monitoring
    return yaml.safe_dump(document)


def _shepherd(cloud: dict[str, Any], *args: str) -> Any:
    connection = ["--endpoint-url", "http://127.0.0.1:9", "--outputs", str(cloud["outputs"])]
    return CliRunner().invoke(app, [*args, *connection])


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def _monitored(cloud: dict[str, Any], documents: dict[str, dict[str, Any]], *, runs: bool = True) -> None:
    _put(cloud, "models/churn/shepherd.yaml", _config(retrain={"on": ["drift"], "cooldown_hours": 24}))
    _put(cloud, f"{baseline_prefix('churn', 2)}statistics.json", documents["baseline"])
    _put(cloud, f"{baseline_prefix('churn', 2)}constraints.json", documents["constraints"])
    if not runs:
        return
    earlier = report_prefix("churn", "churn", RUN_AT - timedelta(hours=1))
    quiet = documents["alert"] | {"at": (RUN_AT - timedelta(hours=1)).isoformat(), "violations": 0}
    _put(cloud, f"{earlier}alert.json", quiet | {"decision": {"alert": False, "drifting": False, "reason": "no drift"}})
    where = report_prefix("churn", "churn", RUN_AT)
    _put(cloud, f"{where}statistics.json", documents["current"])
    _put(cloud, f"{where}constraint_violations.json", documents["violations"])
    _put(cloud, f"{where}alert.json", documents["alert"])
    _put(cloud, state_key("churn"), documents["state"])


# ---------------------------------------------------------------- drift per feature


def test_the_drift_per_feature_is_the_distance_model_monitor_publishes(documents: dict[str, Any]) -> None:
    rows = feature_drift(documents["current"], documents["violations"], documents["baseline"], documents["constraints"])

    published = feature_metrics(documents["current"], documents["baseline"], documents["constraints"])
    by_name = {row.name: row for row in rows}
    assert {name: row.distance for name, row in by_name.items()} == {
        name: published[f"feature_baseline_drift_{name}"] for name in ("tenure", "plan", "charges")
    }
    assert by_name["tenure"].drifted
    assert by_name["tenure"].threshold == 0.1
    assert not by_name["charges"].drifted
    assert "baseline_drift_check" in by_name["tenure"].violations
    assert "categorical_values_check" in by_name["plan"].violations


def test_a_model_s_threshold_override_moves_the_line(documents: dict[str, Any]) -> None:
    rows = feature_drift(
        documents["current"],
        documents["violations"],
        documents["baseline"],
        documents["constraints"],
        {"comparison_threshold": 0.99},
    )

    tenure = next(row for row in rows if row.name == "tenure")
    assert tenure.threshold == 0.99
    assert not tenure.drifted


# ---------------------------------------------------------------- status


def test_status_shows_drift_violations_alert_checkpoint_and_retrain(
    cloud: dict[str, Any], documents: dict[str, Any]
) -> None:
    _monitored(cloud, documents)

    result = _shepherd(cloud, "monitor", "status", "churn")

    assert result.exit_code == 0, result.output
    text = result.stdout
    lines = text.splitlines()
    tenure = next(line for line in lines if line.strip().startswith("tenure ") and "numerical" in line)
    rows = {
        r.name: r
        for r in feature_drift(
            documents["current"], documents["violations"], documents["baseline"], documents["constraints"]
        )
    }
    assert f"{rows['tenure'].distance:.3f}" in tenure
    assert "> 0.1" in tenure
    assert "100.0%" in tenure
    assert "baseline_drift_check" in tenure
    assert lines.index(tenure) < next(i for i, line in enumerate(lines) if line.strip().startswith("charges "))
    assert "drift episode open since 2026-12-01 08:05:00 on tenure/mean+" in text
    evidence = next(line for line in lines if "31.20" in line)
    assert "25.00" not in text  # one row per feature and test: the strongest chart
    assert evidence.split()[:3] == ["tenure", "│", "mean+"]
    assert "12.40" in evidence
    assert "every capture hour before 2026-12-01 08:00:00 read; 1 file(s) read in 1 open hour folder(s)" in text
    assert "last retrain 2026-11-30 20:05:00: churn-retrain-0a1b" in text
    assert "cooldown until 2026-12-01 20:05:00" in text
    assert "champion churn v2" in text
    history = lines[lines.index(next(line for line in lines if line.startswith("Last 2 reports"))) :]
    opened, quiet = (next(line for line in history if stamp in line) for stamp in ("10:05:00", "09:05:00"))
    assert "opened: drift in tenure" in opened
    assert history.index(opened) < history.index(quiet)  # newest first
    assert "-: no drift" in quiet


@pytest.mark.parametrize(
    ("reference", "config", "expected"),
    [
        (None, {}, "Reference: none used yet"),
        (
            {
                "source": "training",
                "uri": "s3://shepherd-data/monitoring/churn/baseline/2/reference.json",
                "learning": {"hours": 36, "needed": 168, "note": "hour taken"},
            },
            {},
            "Reference: the training data's (s3://shepherd-data/monitoring/churn/baseline/2/reference.json);"
            " learning from capture: 36 of 168 h (7 days), hour taken",
        ),
        (
            {"source": "training", "uri": "s3://shepherd-data/monitoring/churn/baseline/2/reference.json"},
            {"reference": {"learn": False}},
            "learning from capture is off (monitoring.reference.learn)",
        ),
        (
            {
                "source": "capture",
                "uri": "s3://shepherd-data/monitoring/churn/learnt_reference.json",
                "cycle_hours": 24,
                "hours": 180,
                "from": "2026-11-23T09:00:00+00:00",
                "to": "2026-11-30T20:00:00+00:00",
                "learnt_at": "2026-11-30T20:00:00+00:00",
                "left_out": 3,
            },
            {},
            "Reference: learnt from capture, 180 h (7.5 days) of history from 2026-11-23 09:00:00 to"
            " 2026-11-30 20:00:00, a 24-h cycle; learnt 2026-11-30 20:00:00; 3 h left out as drift",
        ),
    ],
    ids=["none-yet", "training-learning", "training-only", "learnt"],
)
def test_status_shows_which_reference_the_alert_used(
    cloud: dict[str, Any],
    documents: dict[str, Any],
    reference: dict[str, Any] | None,
    config: dict[str, Any],
    expected: str,
) -> None:
    _monitored(cloud, documents)
    _put(cloud, "models/churn/shepherd.yaml", _config(**config))
    _put(cloud, state_key("churn"), documents["state"] | {"reference": reference})

    result = _shepherd(cloud, "monitor", "status", "churn", "--last", "1")

    assert result.exit_code == 0, result.output
    assert expected in " ".join(result.stdout.split())


def test_status_of_a_model_that_does_not_exist_is_one_error_line(cloud: dict[str, Any]) -> None:
    line = _one_error_line(_shepherd(cloud, "monitor", "status", "nosuch"))

    assert line.startswith("error: no model named nosuch in the local cloud at http://127.0.0.1:9")
    assert f"s3://{BUCKET}/models/nosuch/shepherd.yaml does not exist" in line


def test_status_of_a_model_without_monitoring_says_so(cloud: dict[str, Any]) -> None:
    _put(cloud, "models/churn/shepherd.yaml", _config(enabled=False))

    line = _one_error_line(_shepherd(cloud, "monitor", "status", "churn"))

    assert line.startswith("error: monitoring is not enabled for churn")


def test_status_before_any_baseline_says_where_one_comes_from(cloud: dict[str, Any]) -> None:
    _put(cloud, "models/churn/shepherd.yaml", CONFIG)

    line = _one_error_line(_shepherd(cloud, "monitor", "status", "churn"))

    assert line.startswith("error: no baseline yet for churn: registration makes one")


def test_status_before_any_run_says_how_to_start_one(cloud: dict[str, Any], documents: dict[str, Any]) -> None:
    _monitored(cloud, documents, runs=False)

    line = _one_error_line(_shepherd(cloud, "monitor", "status", "churn"))

    assert line == "error: no monitor runs yet for churn: `shepherd monitor run churn` starts one"


# ---------------------------------------------------------------- run


def test_run_starts_the_monitor_by_hand_under_a_manual_name(cloud: dict[str, Any], documents: dict[str, Any]) -> None:
    _monitored(cloud, documents, runs=False)

    result = _shepherd(cloud, "monitor", "run", "churn")

    assert result.exit_code == 0, result.output
    [started] = cloud["sfn"].started
    assert started["machine"] == MACHINE
    assert started["input"] == {"model": "churn", "trigger": "manual"}
    assert started["name"].startswith("manual-churn-monitor-")
    assert len(started["name"]) <= 80
    assert result.stdout.strip() == f"{MACHINE.replace(':stateMachine:', ':execution:')}:{started['name']}"


def test_two_manual_runs_in_the_same_second_have_different_names() -> None:
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)

    assert monitor.monitor_execution_name("churn", at) != monitor.monitor_execution_name("churn", at)


def test_run_wait_prints_what_the_run_found(
    cloud: dict[str, Any], documents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _monitored(cloud, documents, runs=False)
    report = documents["state"]["last_report"]
    output = {
        "status": "checked",
        "endpoint": "churn",
        "records": 400,
        "objects_read": 3,
        "complete": True,
        "violations": 3,
        "report": report,
        "notify": True,
        "notification": {"reason": "churn: data drift on churn (tenure)"},
    }
    cloud["sfn"].ending = {"status": "SUCCEEDED", "output": json.dumps(output)}

    result = _shepherd(cloud, "monitor", "run", "churn", "--wait")

    assert result.exit_code == 0, result.output
    assert "checked 400 captured requests of churn (3 capture files): 3 Model Monitor violations" in result.stdout
    assert "notified: churn: data drift on churn (tenure)" in result.stdout
    assert f"report {report}" in result.stdout


@pytest.mark.parametrize(
    ("status", "records", "said"),
    [
        ("checked", 400, "(3 capture files; 7 captured requests unreadable, left out): 0 Model Monitor violations"),
        ("no_data", 0, "no captured requests of churn since the last run; 7 captured requests unreadable, left out"),
    ],
)
def test_run_wait_says_how_many_captured_requests_it_could_not_read(
    cloud: dict[str, Any], documents: dict[str, Any], status: str, records: int, said: str
) -> None:
    # Given a run that left out 7 captured requests it could not read
    _monitored(cloud, documents, runs=False)
    output = {
        "status": status,
        "endpoint": "churn",
        "records": records,
        "unreadable": 7,
        "objects_read": 3,
        "violations": 0,
        "reason": "no captured requests of churn since the last run",
    }
    cloud["sfn"].ending = {"status": "SUCCEEDED", "output": json.dumps(output)}

    # When `monitor run --wait` prints what it found
    result = _shepherd(cloud, "monitor", "run", "churn", "--wait")

    # Then the count is said beside what was read
    assert result.exit_code == 0, result.output
    assert said in result.stdout


@pytest.mark.parametrize(
    ("ending", "said"),
    [
        (
            {"status": "FAILED", "error": "MonitoringFailed", "cause": "The monitor run failed"},
            "failed: MonitoringFailed: The monitor run failed",
        ),
        (
            {
                "status": "SUCCEEDED",
                "output": json.dumps({"status": "no_baseline", "reason": "churn v2 has no baseline"}),
            },
            "checked nothing (no_baseline): churn v2 has no baseline",
        ),
    ],
)
def test_a_run_that_failed_or_checked_nothing_is_one_error_line(
    cloud: dict[str, Any], documents: dict[str, Any], ending: dict[str, Any], said: str
) -> None:
    _monitored(cloud, documents, runs=False)
    cloud["sfn"].ending = ending

    result = _shepherd(cloud, "monitor", "run", "churn", "--wait")

    assert said in _one_error_line(result)


def test_run_of_a_model_that_does_not_exist_starts_nothing(cloud: dict[str, Any]) -> None:
    line = _one_error_line(_shepherd(cloud, "monitor", "run", "nosuch"))

    assert line.startswith("error: no model named nosuch")
    assert cloud["sfn"].started == []


def test_run_of_a_model_without_monitoring_starts_nothing(cloud: dict[str, Any]) -> None:
    _put(cloud, "models/churn/shepherd.yaml", _config(enabled=False))

    line = _one_error_line(_shepherd(cloud, "monitor", "run", "churn"))

    assert line.startswith("error: monitoring is not enabled for churn")
    assert cloud["sfn"].started == []


def test_run_on_a_stack_without_the_monitor_says_so(cloud: dict[str, Any]) -> None:
    cloud["outputs"].write_text(json.dumps({"DataBucketName": BUCKET}))

    line = _one_error_line(_shepherd(cloud, "monitor", "run", "churn"))

    assert "have no MonitorStateMachineArn: the stack predates the monitor" in line


def test_an_unreadable_bucket_is_one_line_naming_the_call(
    cloud: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Denied:
        def get_paginator(self, name: str) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")

    monkeypatch.setattr(cli_cloud.Target, "client", lambda self, service: Denied())

    line = _one_error_line(_shepherd(cloud, "monitor", "status", "churn"))

    assert line == "error: ListObjectsV2 failed: AccessDenied: Access Denied"


def test_the_cli_starts_without_the_analyzer() -> None:
    # numpy and the analyzer load only when `monitor status` measures drift: every other command starts as before
    code = "import sys, shepherd_cli.main; print(sorted(m for m in ('numpy', 'shepherd.monitor') if m in sys.modules))"

    started = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert started.stdout.strip() == "[]"
