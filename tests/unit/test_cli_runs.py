"""`shepherd runs`: the stack's executions read back as runs, with one-line reasons and their whole story."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from shepherd.aws.runs import Step, StepFunctionsRuns, error_line, fold_loops
from shepherd.errors import NotFound
from typer.testing import CliRunner

from shepherd_cli import cloud as cli_cloud
from shepherd_cli.main import app

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:shepherd-{}"
MACHINES = {kind: MACHINE.format(kind) for kind in ("lifecycle", "batch", "rollout")}
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LAMBDA_CAUSE = json.dumps(
    {
        "errorMessage": "Error tokenizing data. C error: Expected 9 fields in line 50, saw 11\n",
        "errorType": "ParserError",
        "requestId": "1f0c",
        "stackTrace": ['  File "/var/task/app.py", line 30, in handler\n    frame = pandas.read_csv(body)\n'],
    }
)
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


class FakeStepFunctions:
    """ListExecutions, DescribeExecution and GetExecutionHistory over executions kept in memory."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}

    def add(
        self,
        kind: str,
        name: str,
        *,
        minutes: int,
        status: str,
        given: dict[str, Any],
        events: list[tuple[str, dict[str, Any]]],
        output: dict[str, Any] | None = None,
        error: str = "",
        cause: str = "",
    ) -> str:
        arn = MACHINES[kind].replace(":stateMachine:", ":execution:") + f":{name}"
        started = START + timedelta(minutes=minutes)
        self.executions[arn] = {
            "executionArn": arn,
            "stateMachineArn": MACHINES[kind],
            "name": name,
            "status": status,
            "startDate": started,
            "input": json.dumps(given),
            **({"stopDate": started + timedelta(minutes=5)} if status != "RUNNING" else {}),
            **({"output": json.dumps(output)} if output is not None else {}),
            **({"error": error, "cause": cause} if error else {}),
        }
        self.histories[arn] = [
            {"id": index, "type": kind_, "timestamp": started + timedelta(seconds=index), **details}
            for index, (kind_, details) in enumerate(events, start=1)
        ]
        return arn

    def list_executions(self, stateMachineArn: str, maxResults: int, nextToken: str | None = None) -> dict[str, Any]:
        mine = [e for e in self.executions.values() if e["stateMachineArn"] == stateMachineArn]
        mine.sort(key=lambda e: e["startDate"], reverse=True)
        return {"executions": [{k: e[k] for k in ("executionArn", "name", "status", "startDate")} for e in mine]}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise ClientError(
                {"Error": {"Code": "ExecutionDoesNotExist", "Message": f"Execution Does Not Exist: '{executionArn}'"}},
                "DescribeExecution",
            )
        return self.executions[executionArn]

    def get_execution_history(
        self, executionArn: str, maxResults: int, reverseOrder: bool = False, nextToken: str | None = None
    ) -> dict[str, Any]:
        events = self.histories[executionArn]
        return {"events": (list(reversed(events)) if reverseOrder else events)[:maxResults]}


def entered(name: str) -> tuple[str, dict[str, Any]]:
    return "TaskStateEntered", {"stateEnteredEventDetails": {"name": name}}


def published(notification: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parameters = {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": json.dumps(notification)}
    details = {"resourceType": "sns", "resource": "publish", "parameters": json.dumps(parameters)}
    return "TaskScheduled", {"taskScheduledEventDetails": details}


def failed(error: str, cause: str) -> tuple[str, dict[str, Any]]:
    return "TaskFailed", {"taskFailedEventDetails": {"error": error, "cause": cause}}


@pytest.fixture
def sfn() -> FakeStepFunctions:
    fake = FakeStepFunctions()
    # Given a failed training of churn, a rolled-back rollout of churn, a batch of another model, a running training
    fake.add(
        "lifecycle",
        "churn-2026-12-01-a1",
        minutes=0,
        status="FAILED",
        given={"model": "churn", "dataset": "2026-12-01"},
        events=[
            entered("PrepareTraining"),
            failed("ParserError", LAMBDA_CAUSE),
            entered("DescribeFailure"),
            entered("NotifyFailure"),
            published(
                {"event": "ModelLifecycleFailed", "model": "churn", "error": "ParserError", "cause": LAMBDA_CAUSE}
            ),
            ("ExecutionFailed", {"executionFailedEventDetails": {"error": "ModelLifecycleFailed", "cause": "A step"}}),
        ],
        error="ModelLifecycleFailed",
        cause="A step failed; the notification and the execution history carry the error and its cause.",
    )
    fake.add(
        "rollout",
        "churn-v3-0f1e",
        minutes=10,
        status="FAILED",
        given={"ModelPackageArn": PACKAGE},
        events=[
            entered("Prepare"),
            *[entered(state) for _ in range(3) for state in ("StageWait", "Judge", "Verdict")],
            entered("RollbackWeights"),
            published({"event": "RolloutRolledBack", "reason": "error rate 4.1% vs 1.0%: ROLLBACK in shadow"}),
        ],
        error="RolledBack",
        cause="The candidate was rolled back and rejected; the champion serves on its last good config.",
    )
    fake.add(
        "batch",
        "fraud-batch-77aa",
        minutes=20,
        status="SUCCEEDED",
        given={"model": "fraud", "key": "batch/fraud/input/a.csv"},
        events=[entered("PrepareTransform")],
        output={"event": "BatchTransformCompleted", "model": "fraud", "records": 120},
    )
    fake.add(
        "lifecycle",
        "churn-2026-12-02-b2",
        minutes=30,
        status="RUNNING",
        given={"model": "churn", "dataset": "2026-12-02"},
        events=[entered("PrepareTraining"), entered("Train")],
    )
    return fake


def test_a_lambda_error_is_its_type_and_the_first_line_of_its_message_without_the_stack_trace() -> None:
    assert error_line("ParserError", LAMBDA_CAUSE) == (
        "ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11"
    )
    nested = json.dumps({"Error": "InvalidInput", "Cause": LAMBDA_CAUSE})
    assert error_line("States.TaskFailed", nested).startswith("ParserError: Error tokenizing data.")
    traceback = "Traceback (most recent call last):\n  File \"/home/u/x.py\", line 3\nKeyError: 'target'"
    assert error_line("KeyError", traceback) == "KeyError: 'target'"


def test_runs_of_a_model_are_newest_first_with_their_outcome_and_reason(sfn: FakeStepFunctions) -> None:
    runs = StepFunctionsRuns(MACHINES, clients={"stepfunctions": sfn}.__getitem__).recent("churn", 10)

    assert [(r.kind, r.status, r.outcome) for r in runs] == [
        ("lifecycle", "RUNNING", "RUNNING"),
        ("rollout", "FAILED", "RolloutRolledBack"),
        ("lifecycle", "FAILED", "ModelLifecycleFailed"),
    ]
    assert runs[0].reason == "in Train"
    assert runs[1].reason == "error rate 4.1% vs 1.0%: ROLLBACK in shadow"
    assert runs[2].reason == "ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11"


def test_every_model_s_runs_are_listed_up_to_the_limit(sfn: FakeStepFunctions) -> None:
    runs = StepFunctionsRuns(MACHINES, clients={"stepfunctions": sfn}.__getitem__).recent(None, 2)

    assert [(r.model, r.kind) for r in runs] == [("churn", "lifecycle"), ("fraud", "batch")]
    assert runs[1].reason == "records 120"


def test_a_run_is_found_by_name_and_an_unknown_one_is_not_found(sfn: FakeStepFunctions) -> None:
    reader = StepFunctionsRuns(MACHINES, clients={"stepfunctions": sfn}.__getitem__)

    assert reader.find("churn-v3-0f1e").kind == "rollout"
    with pytest.raises(NotFound, match="no run nothing-here"):
        reader.find("nothing-here")


def test_the_story_notes_failures_and_folds_the_judge_loop(sfn: FakeStepFunctions) -> None:
    reader = StepFunctionsRuns(MACHINES, clients={"stepfunctions": sfn}.__getitem__)

    rollout = reader.story(reader.find("churn-v3-0f1e"))
    training = reader.story(reader.find("churn-2026-12-01-a1"))

    assert [(s.state, s.repeats) for s in rollout] == [
        ("Prepare", 1),
        ("StageWait → Judge → Verdict", 3),
        ("RollbackWeights", 1),
    ]
    assert training[0].state == "PrepareTraining"
    assert (
        training[0].note == "failed: ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11"
    )
    assert training[-1].state == "(end)"


def test_a_loop_broken_by_a_failure_is_not_folded() -> None:
    at = START
    steps = [Step(at, "Wait"), Step(at, "Judge"), Step(at, "Wait"), Step(at, "Judge", "failed: TransientError: x")]

    assert fold_loops(steps) == steps


# ---------------------------------------------------------------- the command


@pytest.fixture
def shepherd(sfn: FakeStepFunctions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`shepherd <args>` against the fake Step Functions, on a local cloud whose clock is a day ahead, 60x."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({f"{k}": v for k, v in zip(_output_keys(), MACHINES.values(), strict=True)}))
    wall = START.timestamp()
    spec = f"{wall + 86400},{wall},60"
    monkeypatch.setattr(cli_cloud, "_health", lambda endpoint_url: {"clock": spec})
    monkeypatch.setattr(cli_cloud.Target, "client", lambda self, service: {"stepfunctions": sfn}[service])
    monkeypatch.delenv("COLUMNS", raising=False)

    def run(*args: str) -> Any:
        connection = ["--endpoint-url", "http://127.0.0.1:9", "--outputs", str(outputs)]
        return CliRunner().invoke(app, [*args, *connection])

    return run


def _output_keys() -> list[str]:
    return ["ModelLifecycleStateMachineArn", "BatchTransformStateMachineArn", "RolloutStateMachineArn"]


def test_runs_lists_one_line_per_run_on_the_local_cloud_clock(shepherd: Any) -> None:
    result = shepherd("runs", "churn")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    failed_training = next(line for line in lines if "churn-2026-12-01-a1" in line)
    assert "ModelLifecycleFailed" in failed_training
    assert "ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11" in failed_training
    # started 09:00 wall time: a day ahead on the virtual clock
    assert "2026-12-02 09:00:00" in failed_training
    assert "stackTrace" not in result.stdout
    assert "/var/task" not in result.stdout
    assert "fraud" not in result.stdout
    assert "times: local cloud clock (virtual, 60x wall time)" in result.stdout


def test_runs_show_tells_the_steps_the_reason_and_the_input(shepherd: Any) -> None:
    result = shepherd("runs", "show", "churn-v3-0f1e")

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "reason: error rate 4.1% vs 1.0%: ROLLBACK in shadow" in text
    assert "StageWait → Judge → Verdict  x3" in text
    assert PACKAGE in text  # the input
    assert "times: local cloud clock" in text


def test_runs_show_keeps_the_error_of_a_notification_and_drops_its_stack_trace(shepherd: Any) -> None:
    result = shepherd("runs", "show", "churn-2026-12-01-a1")

    assert result.exit_code == 0, result.output
    assert "PrepareTraining  failed: ParserError: Error tokenizing data." in result.stdout
    assert '"errorMessage": "Error tokenizing data.' in result.stdout
    assert "stackTrace" not in result.stdout
    assert "/var/task" not in result.stdout


def test_runs_show_of_an_unknown_run_is_one_error_line(shepherd: Any) -> None:
    result = shepherd("runs", "show", "nothing-here")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: no run nothing-here among the executions of the stack's lifecycle, batch, rollout state machines"
    ]
