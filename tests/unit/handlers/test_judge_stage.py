"""JudgeStage: a malformed input is one specific InvalidInput; a retried call judges once."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from shepherd.errors import InvalidInput
from shepherd.rollout import judging
from shepherd.rollout.ports import LockLost
from shepherd.rollout.quality import decode

from .conftest import BUCKET, ROLLOUTS_TABLE, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def judge_stage(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("judge_stage")


def test_the_sample_event_parses_into_the_request() -> None:
    request = judging.JudgeRequest.parse(sample_event("judge_stage"))
    assert request.stage == judging.JudgedStage(kind="shadow", weight=100.0, max_minutes=60, at_max="INCONCLUSIVE")
    assert (request.stage_index, request.stage_started) == (0, 1795000000.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("endpoint"), "the event has no 'endpoint'"),
        (
            lambda e: e["stage"].update(kind="canary"),
            "stage.kind must be one of replay, shadow, ab, full, watch, got 'canary'",
        ),
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
    judge_stage.deps.store.acquire(event["endpoint"], event["run"], event["package_arn"], 1795000000.0)
    return event


def _verdicts(aws: Cloud) -> list[dict[str, Any]]:
    items = aws.dynamodb.scan(TableName=ROLLOUTS_TABLE)["Items"]
    return [item for item in items if item["sk"]["S"].startswith("record#")]


def test_a_retry_after_a_crash_between_remembering_and_recording_records_the_verdict_once(
    aws: Cloud, judge_stage: ModuleType, monkeypatch: pytest.MonkeyPatch, held: dict[str, Any]
) -> None:
    # Given a judge call whose first attempt dies right after it remembered its verdict
    event = sample_event("judge_stage") | {"attempt": "2026-11-25T16:00:00.000Z"}
    real_record = judge_stage.deps.store.record
    calls = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("the runtime died")
        real_record(*args, **kwargs)

    monkeypatch.setattr(judge_stage.deps.store, "record", crash_once)
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
    before = judge_stage.deps.store.lock_of(held["endpoint"])
    # When the judge is called for the fourth time in this execution
    answer = judge_stage.handler(held | {"loops": 3}, LambdaContext())
    # Then it answers the count the state machine hands on, and the lock's lease and version moved on
    assert answer["loops"] == 4
    after = judge_stage.deps.store.lock_of(held["endpoint"])
    assert int(after["version"]) == int(before["version"]) + 1
    assert int(after["lease_until"]) > int(before["lease_until"])


def test_a_rollout_that_lost_its_lock_is_told_so_and_records_no_verdict(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any]
) -> None:
    # Given another rollout has taken the endpoint (this one's lock was cleaned up after it)
    judge_stage.deps.store.release(held["endpoint"], held["run"])
    judge_stage.deps.store.acquire(held["endpoint"], "churn-v3-other", held["package_arn"], 1795000000.0)
    # When this rollout's judge runs
    with pytest.raises(LockLost, match="churn-v3-other"):
        judge_stage.handler(held, LambdaContext())
    # Then it judged nothing, and the other rollout's lock is untouched
    assert _verdicts(aws) == []
    assert judge_stage.deps.store.lock_of(held["endpoint"])["owner"] == "churn-v3-other"


# ------------------------------------------------------------------ prediction quality

CAPTURE = "capture/churn/churn/"  # the sample event's endpoint, as the Rollout names its capture prefix
FEEDBACK = "feedback/churn/"
STARTED = 1795000000.0  # the sample event's stage_started
STATE = "capture/_judge-state/churn/churn-v2-7138434a4612e93b/{index}.json.gz"
PER_MINUTE = 10
UNDECIDED = 10**6  # min_samples no stage here reaches: the quality test's counts run to its last bin


def _hour(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y/%m/%d/%H")


def _minute(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%M-%S")


def _serve(aws: Cloud, variant: str, minutes: range, *, wrong: float, seed: int, labelled: bool = True) -> None:
    """PER_MINUTE answers of ``variant`` in each minute from the stage's start, a ``wrong`` share of them
    wrong: one capture object per minute, and their ground truth uploaded ten minutes later."""
    rng = random.Random(seed)
    for minute in minutes:
        at = STARTED + 60 * minute + 30
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        captured, truth = [], []
        for n in range(PER_MINUTE):
            inference_id = f"{variant}-{minute}-{n}"
            output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.9\n", "encoding": "CSV"}
            metadata = {"eventId": f"e-{inference_id}", "inferenceId": inference_id, "inferenceTime": stamp}
            captured.append(json.dumps({"captureData": {"endpointOutput": output}, "eventMetadata": metadata}))
            label = "0" if rng.random() < wrong else "1"  # the answer, 0.9, is right for a label 1
            truth.append(
                json.dumps(
                    {"groundTruthData": {"data": label, "encoding": "CSV"}, "eventMetadata": {"eventId": inference_id}}
                )
            )
        _put_at(aws, at, f"{CAPTURE}{variant}/{_hour(at)}/{_minute(at)}-{variant}.jsonl", "\n".join(captured) + "\n")
        if labelled:
            uploaded = at + 600
            key = f"{FEEDBACK}{_hour(uploaded)}/{_minute(uploaded)}-{variant}-{minute}.jsonl"
            _put_at(aws, uploaded, key, "\n".join(truth) + "\n")


def _put_at(aws: Cloud, epoch: float, key: str, body: str) -> None:
    """Upload an object whose LastModified is ``epoch`` (the judge's clock, set by _at, is in the same past):
    the judge files a label at the minute its object arrived."""
    from unittest import mock

    with mock.patch("moto.s3.models.utcnow", return_value=datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)):
        aws.put(key, body)


def _quality_event(kind: str, attempt: str = "call", min_samples: int = 100) -> dict[str, Any]:
    """The sample event for a stage of ``kind`` judged on quality too, in a rollout begun two hours before
    (a huge min_samples keeps the quality test undecided, so that its counts run to the last bin)."""
    event = sample_event("judge_stage")
    event["stage"] = {"kind": kind, "weight": 50.0 if kind == "ab" else 100.0, "max_minutes": 600}
    event["stage_index"] = {"shadow": 0, "ab": 1, "full": 2, "watch": 3}[kind]
    event["rollout_started"] = STARTED - 7200
    event["attempt"] = attempt
    sources = {"bucket": BUCKET, "capture": CAPTURE, "feedback": FEEDBACK}
    event["judge"]["quality"] = {"min_samples": min_samples, "delta": 1.0, "sources": sources}
    return event


def _at(monkeypatch: pytest.MonkeyPatch, epoch: float) -> None:
    """The judge's clock stands at ``epoch`` (the local cloud's virtual clock, at scale 0)."""
    monkeypatch.setenv("SHEPHERD_LOCAL_CLOCK", f"{epoch},{time.time()},0")


def _quality(answer: dict[str, Any]) -> dict[str, Any]:
    (found,) = [m for m in answer["statistics"] if m["metric"] == "quality"]
    return dict(found)


class GetObjects:
    """The keys the judge reads, per call."""

    def __init__(self, judge_stage: ModuleType) -> None:
        self.keys: list[str] = []
        client = judge_stage.s3.client("s3")
        client.meta.events.register(
            "before-parameter-build.s3.GetObject", lambda params, **_: self.keys.append(params["Key"])
        )

    def take(self) -> list[str]:
        keys, self.keys = self.keys, []
        return keys


@pytest.mark.parametrize("kind", ["full", "watch"])
def test_after_promotion_a_candidate_that_predicts_worse_than_the_champion_did_is_rolled_back_on_quality(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Given the champion's answers before the stage, 15 % wrong, and the candidate's since, 50 % wrong
    _serve(aws, "v1", range(-120, 0), wrong=0.15, seed=1)
    _serve(aws, "v2", range(50), wrong=0.5, seed=2)
    _at(monkeypatch, STARTED + 3600)
    # When the stage is judged
    answer = judge_stage.handler(_quality_event(kind), LambdaContext())
    # Then it rolls back on quality, against the champion's labelled predictions before the stage
    assert answer["verdict"] == "ROLLBACK"
    quality = _quality(answer)
    assert quality["verdict"] == "ROLLBACK"
    assert quality["champion_samples"] == 120 * PER_MINUTE
    assert 0.1 < quality["champion_bad"] / quality["champion_samples"] < 0.2
    assert "misclassification rate is higher than the old champion's" in answer["explanation"]


def test_after_promotion_a_candidate_that_predicts_as_well_is_not_rolled_back_on_quality(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(aws, "v1", range(-120, 0), wrong=0.15, seed=1)
    _serve(aws, "v2", range(50), wrong=0.15, seed=3)
    _at(monkeypatch, STARTED + 3600)
    answer = judge_stage.handler(_quality_event("full"), LambdaContext())
    assert _quality(answer)["verdict"] == "PROMOTE"
    assert answer["verdict"] == "CONTINUE"  # the error rate, without CloudWatch data here, still waits


def test_after_promotion_no_labels_is_no_promotion_on_quality(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(aws, "v1", range(-120, 0), wrong=0.15, seed=1)
    _serve(aws, "v2", range(50), wrong=0.0, seed=3, labelled=False)
    _at(monkeypatch, STARTED + 3600)
    quality = _quality(judge_stage.handler(_quality_event("full"), LambdaContext()))
    assert (quality["verdict"], quality["candidate_samples"]) == ("CONTINUE", 0)


def test_each_call_reads_only_the_objects_written_since_the_last_one_late_ones_included(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = GetObjects(judge_stage)
    _serve(aws, "v1", range(30), wrong=0.15, seed=1)
    _serve(aws, "v2", range(30), wrong=0.15, seed=2)
    _at(monkeypatch, STARTED + 45 * 60)
    first = _quality(judge_stage.handler(_quality_event("ab", "call-1", UNDECIDED), LambdaContext()))
    assert len(reads.take()) == 2 * 30 + 2 * 30  # no state yet: everything
    # a capture object written late into an hour already listed, with its labels
    _serve(aws, "v2", range(30, 31), wrong=0.0, seed=4)
    _at(monkeypatch, STARTED + 46 * 60)
    second = _quality(judge_stage.handler(_quality_event("ab", "call-2", UNDECIDED), LambdaContext()))
    state = STATE.format(index=1)
    late_capture = f"{CAPTURE}v2/{_hour(STARTED + 1830)}/{_minute(STARTED + 1830)}-v2.jsonl"
    late_labels = f"{FEEDBACK}{_hour(STARTED + 2430)}/{_minute(STARTED + 2430)}-v2-30.jsonl"
    assert sorted(reads.take()) == sorted([state, late_capture, late_labels])
    assert second["candidate_samples"] == first["candidate_samples"] + PER_MINUTE
    assert second["champion_samples"] == first["champion_samples"]


def _fresh_answer(aws: Cloud, judge_stage: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    """What one uninterrupted call answers, having read everything (no state, its own attempt)."""
    aws.s3.delete_object(Bucket=BUCKET, Key=STATE.format(index=event["stage_index"]))
    answer = judge_stage.handler(event | {"attempt": "uninterrupted"}, LambdaContext())
    return {name: answer[name] for name in ("verdict", "explanation", "statistics")}


@pytest.mark.parametrize("crash", ["reading", "judging"])
def test_a_judge_call_retried_after_a_crash_answers_as_an_uninterrupted_one(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    # Given a stage already judged once (its state saved), and new answers since
    _serve(aws, "v1", range(20), wrong=0.2, seed=1)
    _serve(aws, "v2", range(20), wrong=0.2, seed=2)
    _at(monkeypatch, STARTED + 35 * 60)
    judge_stage.handler(_quality_event("ab", "call-1", UNDECIDED), LambdaContext())
    saved = aws.read(STATE.format(index=1))
    _serve(aws, "v1", range(20, 30), wrong=0.2, seed=3)
    _serve(aws, "v2", range(20, 30), wrong=0.2, seed=4)
    _at(monkeypatch, STARTED + 45 * 60)
    event = _quality_event("ab", "call-2", UNDECIDED)
    # When the next call dies part-way through reading the new objects (nothing saved), or once it has
    # saved its state but before it judged (nothing remembered)
    with pytest.MonkeyPatch.context() as patch:
        if crash == "reading":
            real = judge_stage.s3.read_bytes
            seen: list[str] = []

            def dies_on_the_fifth(bucket: str, key: str, version_id: str | None = None) -> bytes:
                seen.append(key)
                if len(seen) == 5:
                    raise RuntimeError("the runtime died")
                return bytes(real(bucket, key, version_id))

            patch.setattr(judge_stage.s3, "read_bytes", dies_on_the_fifth)
        else:
            patch.setattr(judging, "judge", lambda *args: (_ for _ in ()).throw(RuntimeError("the runtime died")))
        with pytest.raises(RuntimeError):
            judge_stage.handler(event, LambdaContext())
    # Then Step Functions' retry answers what one uninterrupted call on the saved state answers: each object
    # counted once (labels read after call-1's look count at minutes it did not see, so not a fresh read's)
    retried = judge_stage.handler(event, LambdaContext(aws_request_id="retry"))
    aws.put(STATE.format(index=1), saved)
    uninterrupted = judge_stage.handler(event | {"attempt": "uninterrupted"}, LambdaContext())
    assert {name: retried[name] for name in ("verdict", "explanation", "statistics")} == {
        name: uninterrupted[name] for name in ("verdict", "explanation", "statistics")
    }
    assert _quality(retried)["candidate_samples"] == 30 * PER_MINUTE


def test_a_corrupt_state_is_logged_and_everything_read_again(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(aws, "v1", range(20), wrong=0.2, seed=1)
    _serve(aws, "v2", range(20), wrong=0.2, seed=2)
    _at(monkeypatch, STARTED + 35 * 60)
    event = _quality_event("ab", "call-1", UNDECIDED)
    judge_stage.handler(event, LambdaContext())
    # Given the stage's state overwritten with something that is not one (truncated here)
    key = STATE.format(index=1)
    aws.put(key, aws.read(key)[:40])
    errors: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(judging.logger, "error", lambda message, **kwargs: errors.append((message, kwargs)))
    # When the stage is judged again
    answer = judge_stage.handler(event | {"attempt": "call-2"}, LambdaContext())
    # Then the error is logged with the object and the reason, and the verdict is the one of a full read
    [(message, details)] = errors
    assert "unreadable" in message
    assert details["extra"]["state"] == f"s3://{BUCKET}/{key}"
    assert "not gzip'd JSON" in details["extra"]["error"]
    assert {name: answer[name] for name in ("verdict", "explanation", "statistics")} == _fresh_answer(
        aws, judge_stage, event
    )
    assert _quality(answer)["candidate_samples"] == 20 * PER_MINUTE
    decode(aws.read(key))  # and a readable state is back in its place


def test_a_stage_with_more_to_read_than_one_call_can_reads_on_at_the_next_calls_and_judges_quality_once_done(
    aws: Cloud, judge_stage: ModuleType, held: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a full stage after a long rollout: the champion's baseline to read, and the candidate's answers
    _serve(aws, "v1", range(-8, 0), wrong=0.15, seed=1)
    _serve(aws, "v2", range(8), wrong=0.5, seed=2)
    _at(monkeypatch, STARTED + 30 * 60)
    event = _quality_event("full")
    expected = _fresh_answer(aws, judge_stage, event)
    assert _quality(expected)["verdict"] == "ROLLBACK"
    aws.s3.delete_object(Bucket=BUCKET, Key=STATE.format(index=2))
    # When each call may read for no time at all (one object, then out of time)
    monkeypatch.setattr(judging, "READ_SECONDS", -1.0)
    answers = [judge_stage.handler(event | {"attempt": f"call-{n}"}, LambdaContext()) for n in range(32)]
    # Then quality waits (CONTINUE, nothing judged on part of the objects) while the calls read on, one object
    # each, then judges what one call reading everything judges
    waiting = [_quality(a) for a in answers[:31]]
    assert {(q["verdict"], q["candidate_samples"], q["champion_samples"]) for q in waiting} == {("CONTINUE", 0, 0)}
    assert {name: answers[31][name] for name in ("verdict", "explanation", "statistics")} == expected
