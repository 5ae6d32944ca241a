"""JudgeStage: a malformed input is one specific InvalidInput; a retried call judges once."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from shepherd.errors import InvalidInput

from .conftest import ROLLOUTS_TABLE, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def judge_stage(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("judge_stage")


def test_the_sample_event_parses_into_the_request(judge_stage: ModuleType) -> None:
    request = judge_stage.Request.parse(sample_event("judge_stage"))
    assert request.stage == judge_stage.Stage(kind="shadow", weight=100.0, max_minutes=60, at_max="INCONCLUSIVE")
    assert (request.stage_index, request.stage_started) == (0, 1795000000.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("endpoint"), "the event has no 'endpoint'"),
        (lambda e: e["stage"].update(kind="canary"), "stage.kind must be one of shadow, ab, full, watch, got 'canary'"),
        (lambda e: e["stage"].pop("max_minutes"), "stage has no 'max_minutes'"),
        (lambda e: e.update(stage_index=-1), "stage_index must be >= 0, got -1"),
        (lambda e: e.update(stage_started="yesterday"), "stage_started must be a number, got 'yesterday'"),
        (lambda e: e.update(judge=[]), "judge must be an object, got []"),
    ],
)
def test_a_malformed_input_names_the_field(
    environment: dict[str, str], judge_stage: ModuleType, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    event = sample_event("judge_stage")
    change(event)
    with pytest.raises(InvalidInput) as raised:
        judge_stage.handler(event, LambdaContext())
    assert str(raised.value) == message


@pytest.fixture
def held(aws: Cloud, judge_stage: ModuleType) -> dict[str, Any]:
    """The sample event's rollout holds its endpoint's lock, as Prepare left it."""
    event = sample_event("judge_stage")
    judge_stage.rollouts.acquire(event["endpoint"], event["run"], event["package_arn"], 1795000000.0)
    return event


def _verdicts(aws: Cloud) -> list[dict[str, Any]]:
    items = aws.dynamodb.scan(TableName=ROLLOUTS_TABLE)["Items"]
    return [item for item in items if item["sk"]["S"].startswith("record#")]


def test_a_retry_after_a_crash_between_remembering_and_recording_records_the_verdict_once(
    aws: Cloud, judge_stage: ModuleType, monkeypatch: pytest.MonkeyPatch, held: dict[str, Any]
) -> None:
    # Given a judge call whose first attempt dies right after it remembered its verdict
    event = sample_event("judge_stage") | {"attempt": "2026-11-25T16:00:00.000Z"}
    real_record = judge_stage.rollouts.record
    calls = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("the runtime died")
        real_record(*args, **kwargs)

    monkeypatch.setattr(judge_stage.rollouts, "record", crash_once)
    with pytest.raises(RuntimeError):
        judge_stage.handler(event, LambdaContext())
    # When Step Functions retries it (same attempt), twice (the second retry after a crash past the record)
    first = judge_stage.handler(event, LambdaContext(aws_request_id="retry-1"))
    second = judge_stage.handler(event, LambdaContext(aws_request_id="retry-2"))
    # Then both answer the remembered verdict, and the record holds it once
    assert first == second
    [recorded] = _verdicts(aws)
    assert json.loads(recorded["entry"]["S"])["verdict"] == first["verdict"]


def test_each_judge_call_of_a_stage_is_its_own_verdict(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any]
) -> None:
    for attempt in ("2026-11-25T16:00:00.000Z", "2026-11-25T16:01:00.000Z"):
        judge_stage.handler(sample_event("judge_stage") | {"attempt": attempt}, LambdaContext())
    assert len(_verdicts(aws)) == 2


def test_each_call_renews_the_lease_and_counts_the_execution_s_judge_calls(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any]
) -> None:
    # Given the lock Prepare took
    before = judge_stage.rollouts.lock_of(held["endpoint"])
    # When the judge is called for the fourth time in this execution
    answer = judge_stage.handler(held | {"loops": 3}, LambdaContext())
    # Then it answers the count the state machine hands on, and the lock's lease and version moved on
    assert answer["loops"] == 4
    after = judge_stage.rollouts.lock_of(held["endpoint"])
    assert int(after["version"]) == int(before["version"]) + 1
    assert int(after["lease_until"]) > int(before["lease_until"])


def test_a_rollout_that_lost_its_lock_is_told_so_and_records_no_verdict(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any]
) -> None:
    # Given another rollout has taken the endpoint (this one's lock was cleaned up after it)
    judge_stage.rollouts.release(held["endpoint"], held["run"])
    judge_stage.rollouts.acquire(held["endpoint"], "churn-v3-other", held["package_arn"], 1795000000.0)
    # When this rollout's judge runs
    with pytest.raises(judge_stage.rollouts.LockLost, match="churn-v3-other"):
        judge_stage.handler(held, LambdaContext())
    # Then it judged nothing, and the other rollout's lock is untouched
    assert _verdicts(aws) == []
    assert judge_stage.rollouts.lock_of(held["endpoint"])["owner"] == "churn-v3-other"
