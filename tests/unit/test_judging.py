"""A stage's judge call (shepherd.rollout.judging) on in-memory ports: every answer the Judge state acts on."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import Any

import pytest
from shepherd.errors import ShepherdError, TransientError
from shepherd.rollout import judging, quality
from shepherd.rollout.ports import ABORT, LockLost

from .fakes import ManualClock
from .fakes_judging import FakeBucket, FakeMemory, FakeMetrics, RecordingStore, SteppingTimer

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "events" / "judge_stage.json").read_text())
RUN, ENDPOINT, PACKAGE = SAMPLE["run"], SAMPLE["endpoint"], SAMPLE["package_arn"]
STARTED = SAMPLE["stage_started"]
FIRST = math.ceil(STARTED / 60) * 60  # the stage's first whole minute: minute 0 of its bins
ROLLOUT_STARTED = STARTED - 7200
BASELINE_FIRST = math.ceil((ROLLOUT_STARTED - 3600) / 60) * 60  # the first whole minute of the champion's baseline
BUCKET = "shepherd-data"
CAPTURE, FEEDBACK = f"capture/{ENDPOINT}/{ENDPOINT}/", "feedback/churn/"
INDEX = {"shadow": 0, "ab": 1, "full": 2, "watch": 3}
UNDECIDED = 10**6  # min_samples no stage here reaches


def stage(kind: str, max_minutes: int = 600) -> dict[str, Any]:
    """The Judge state's stage fields for a stage of ``kind``, in a rollout begun two hours before it."""
    weight = 50.0 if kind == "ab" else 100.0
    return {
        "stage": {"kind": kind, "weight": weight, "max_minutes": max_minutes},
        "stage_index": INDEX[kind],
        "rollout_started": ROLLOUT_STARTED,
    }


def on_quality(min_samples: int = 100) -> dict[str, Any]:
    """rollout.judge with quality alone, and where Prepare says its capture and ground truth are."""
    sources = {"bucket": BUCKET, "capture": CAPTURE, "feedback": FEEDBACK}
    return {"judge": {"quality": {"min_samples": min_samples, "delta": 1.0, "sources": sources}}}


@dataclass
class World:
    """The judge's ports, half an hour into a stage whose rollout holds its endpoint."""

    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    store: RecordingStore = field(default_factory=RecordingStore)
    memory: FakeMemory = field(default_factory=FakeMemory)
    bucket: FakeBucket = field(default_factory=FakeBucket)
    clock: ManualClock = field(default_factory=lambda: ManualClock(at=datetime.fromtimestamp(STARTED + 1800, UTC)))
    timer: SteppingTimer = field(default_factory=SteppingTimer)

    def __post_init__(self) -> None:
        self.store.acquire(ENDPOINT, RUN, PACKAGE, STARTED)  # as Prepare left it

    @property
    def deps(self) -> judging.JudgeDeps:
        return judging.JudgeDeps(
            metrics=self.metrics,
            store=self.store,
            memory=self.memory,
            objects=self.bucket,
            now=self.clock.now,
            monotonic=self.timer,
        )

    def judge(self, **changes: Any) -> dict[str, Any]:
        """One judge call on the sample event with ``changes``."""
        return judging.judge_stage(self.deps, judging.JudgeRequest.parse(SAMPLE | changes))

    def verdicts(self) -> list[dict[str, Any]]:
        return [entry for entry in self.store.records(ENDPOINT) if entry["event"] == "verdict"]

    def answers(self, variant: str, minutes: range, *, wrong: int) -> None:
        """Ten captured answers of ``variant`` per minute from the stage's first, ``wrong`` of them wrong, and
        their ground truth uploaded in the same minute (the answer, 0.9, is right for a label 1)."""
        for minute in minutes:
            at = FIRST + 60 * minute + 30
            stamp, hour = _stamp(at, "%Y-%m-%dT%H:%M:%SZ"), _stamp(at, "%Y/%m/%d/%H")
            ids = [f"{variant}-{minute}-{n}" for n in range(10)]
            output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.9\n", "encoding": "CSV"}
            captured = [
                {"captureData": {"endpointOutput": output}, "eventMetadata": {"inferenceId": i, "inferenceTime": stamp}}
                for i in ids
            ]
            name = f"{_stamp(at, '%M-%S')}-{variant}.jsonl"
            self.bucket.put(BUCKET, f"{CAPTURE}{variant}/{hour}/{name}", [json.dumps(c) for c in captured])
            truth = [
                {
                    "groundTruthData": {"data": "0" if n < wrong else "1", "encoding": "CSV"},
                    "eventMetadata": {"eventId": i},
                }
                for n, i in enumerate(ids)
            ]
            self.bucket.put(BUCKET, f"{FEEDBACK}{hour}/{name}", [json.dumps(t) for t in truth])


def _stamp(epoch: float, pattern: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(pattern)


def _metric(answer: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in answer["statistics"] if m["metric"] == name]
    return dict(found)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def errors() -> Iterator[list[logging.LogRecord]]:
    """The errors shepherd.rollout.judging logs, their extra fields as attributes."""
    kept = BufferingHandler(capacity=1000)
    kept.setLevel(logging.ERROR)
    judging.logger.addHandler(kept)
    yield kept.buffer
    judging.logger.removeHandler(kept)


# ------------------------------------------------------------------ abort, lock and retries


def test_an_abort_rolls_the_stage_back_and_clears_the_flag(world: World) -> None:
    # Given a human aborted the rollout
    world.store.set_flag(ENDPOINT, ABORT, by="alice", reason="paging spike")
    # When the stage is judged
    answer = world.judge()
    # Then it rolls back, says who asked, judged no metric, and the flag is gone
    assert (answer["verdict"], answer["explanation"]) == ("ROLLBACK", "Aborted by alice: paging spike")
    assert answer["statistics"] == []
    assert world.metrics.asked == []
    assert world.store.flag(ENDPOINT, ABORT) is None


def test_a_rollout_superseded_by_a_newer_approval_ends_inconclusive(world: World) -> None:
    # Given a newer package was approved with on_new_approval: supersede (Prepare's flag)
    world.store.set_flag(ENDPOINT, ABORT, by="superseded by v3", reason="v3 was approved", verdict="INCONCLUSIVE")
    # When the stage is judged
    answer = world.judge()
    # Then it ends INCONCLUSIVE, not bad: the champion is restored without rejecting the package
    assert (answer["verdict"], answer["explanation"]) == (
        "INCONCLUSIVE",
        "Aborted by superseded by v3: v3 was approved",
    )


def test_a_rollout_that_lost_its_lock_reads_and_records_nothing(world: World) -> None:
    # Given another rollout holds the endpoint now
    world.store.release(ENDPOINT, RUN)
    world.store.acquire(ENDPOINT, "churn-v3-other", PACKAGE, STARTED)
    # When this rollout's judge runs
    with pytest.raises(LockLost, match="no longer holds"):
        world.judge(attempt="call-1")
    # Then it read no metric and recorded and remembered no verdict
    assert (world.metrics.asked, world.verdicts(), world.memory.items) == ([], [], {})


def test_a_retry_after_a_crash_answers_the_remembered_verdict_and_records_it_once(world: World) -> None:
    # Given a call that rolled back, then died between remembering its verdict and recording it
    world.metrics.serve("champion", FIRST, 28, requests=100, errors=0)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=20)
    world.store.crashes = 1
    with pytest.raises(RuntimeError):
        world.judge(attempt="call-1")
    first_call = world.clock.now().isoformat()
    # When Step Functions retries it twice, a minute later, with the candidate's errors gone meanwhile
    world.clock.advance(60)
    world.metrics.serve("candidate", FIRST, 29, requests=100, errors=0)
    retries = [world.judge(attempt="call-1") for _ in range(2)]
    # Then both answer the first call's verdict without judging again, and the record holds it once
    assert [r["verdict"] for r in retries] == ["ROLLBACK", "ROLLBACK"]
    assert retries[0] == retries[1]
    assert len(world.metrics.asked) == 1
    [recorded] = world.verdicts()
    assert (recorded["verdict"], recorded["at"]) == ("ROLLBACK", first_call)


def test_the_verdict_is_remembered_for_a_day_under_the_call_s_run_stage_and_attempt(world: World) -> None:
    # When a judge call decides
    answer = world.judge(attempt="2026-11-18T11:36:40.000Z")
    # Then what a retry needs is remembered under judge#<run>#<stage index>#<attempt>, for a day
    key = f"judge#{RUN}#0#2026-11-18T11:36:40.000Z"
    assert world.memory.expires_after[key] == 86400
    [entry] = world.verdicts()
    at = entry.pop("at")
    assert world.memory.recall(key) == {"entry": entry, "at": at, "answer": answer}


def test_a_call_without_an_attempt_is_not_remembered(world: World) -> None:
    # When a call comes without the Judge state's entry time (a call nobody retries)
    world.judge()
    # Then nothing is remembered, and its verdict is recorded
    assert [k for k in world.memory.items if k.startswith("judge#")] == []
    assert len(world.verdicts()) == 1


# ------------------------------------------------------------------ the answer and the record


def test_the_answer_carries_the_verdict_its_statistics_and_the_execution_s_call_count(world: World) -> None:
    # Given the execution's fourth judge call
    answer = world.judge(loops=3)
    # Then the answer has what the Judge state's ResultSelector picks, loops counting this call
    assert set(answer) == {"verdict", "explanation", "statistics", "loops"}
    assert answer["loops"] == 4
    assert set(answer["statistics"][0]) == {
        "metric",
        "verdict",
        "statistic",
        "rollback_boundary",
        "promote_boundary",
        "candidate_samples",
        "champion_samples",
        "candidate_bad",
        "champion_bad",
        "max_minutes",
    }


def test_the_record_entry_names_the_run_the_stage_and_its_minutes(world: World) -> None:
    # When an A/B stage is judged half an hour in
    answer = world.judge(**stage("ab"))
    # Then the rollout record holds the verdict with the stage it judged
    [entry] = world.verdicts()
    assert entry == {
        "run": RUN,
        "package": PACKAGE,
        "event": "verdict",
        "stage": "ab",
        "stage_index": 1,
        "weight": 50.0,
        "verdict": answer["verdict"],
        "explanation": answer["explanation"],
        "minutes": 30,
        "statistics": answer["statistics"],
        "at": world.clock.now().isoformat(),
    }


# ------------------------------------------------------------------ verdicts from the metrics


def test_without_data_the_stage_continues_on_its_own_clock(world: World) -> None:
    # Given half an hour of a stage whose variants had no traffic
    # When it is judged
    answer = world.judge(**stage("ab"))
    # Then it goes on, its clock running from the stage's start all the same
    assert answer["verdict"] == "CONTINUE"
    assert world.verdicts()[0]["minutes"] == 30


def test_no_metric_is_read_before_the_stage_s_first_complete_minute(world: World) -> None:
    # Given a stage that began a minute ago (CloudWatch's last two minutes are not complete yet)
    world.clock.at = datetime.fromtimestamp(STARTED + 60, UTC)
    # When it is judged
    answer = world.judge()
    # Then it goes on without asking CloudWatch
    assert answer["verdict"] == "CONTINUE"
    assert world.metrics.asked == []


def test_in_shadow_a_candidate_erring_more_than_the_champion_is_rolled_back(world: World) -> None:
    # Given a shadow candidate with 20 % errors beside a champion with none
    world.metrics.serve("champion", FIRST, 28, requests=100, errors=0)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=20)
    # When the stage is judged
    answer = world.judge(**stage("shadow"))
    # Then it rolls back on the error rate
    assert answer["verdict"] == "ROLLBACK"
    assert _metric(answer, "error_rate")["verdict"] == "ROLLBACK"


def test_in_ab_a_candidate_erring_no_more_than_the_champion_is_promoted(world: World) -> None:
    # Given an A/B candidate with half the champion's error rate
    world.metrics.serve("champion", FIRST, 28, requests=200, errors=10)
    world.metrics.serve("candidate", FIRST, 28, requests=200, errors=5)
    # When the stage is judged
    answer = world.judge(**stage("ab"))
    # Then it is promoted to the next stage
    assert answer["verdict"] == "PROMOTE"


def test_in_ab_a_stage_undecided_at_its_max_minutes_is_inconclusive(world: World) -> None:
    # Given an A/B stage of 20 minutes whose test cannot decide
    world.metrics.serve("champion", FIRST, 28, requests=100, errors=1)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=1)
    # When it is judged at minute 30
    answer = world.judge(**stage("ab", max_minutes=20), judge={"error_rate": {"min_samples": UNDECIDED}})
    # Then it ends INCONCLUSIVE (the champion gets its traffic back)
    assert answer["verdict"] == "INCONCLUSIVE"


def test_in_full_the_candidate_is_judged_against_the_champion_s_counts_before_the_stage(world: World) -> None:
    # Given the champion's requests in the hour before the rollout and its first, and the candidate's 20 % errors
    world.metrics.serve("champion", BASELINE_FIRST, 120, requests=100, errors=1)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=20)
    # When the full stage is judged
    answer = world.judge(**stage("full"))
    # Then it rolls back against the champion's baseline, read from an hour before the rollout
    assert answer["verdict"] == "ROLLBACK"
    assert _metric(answer, "error_rate")["champion_samples"] == 120 * 100
    [(start, _end)] = world.metrics.asked
    assert start.timestamp() == ROLLOUT_STARTED - 3600 - 60


def test_the_watch_undecided_at_its_max_minutes_lets_the_promotion_stand(world: World) -> None:
    # Given a post-promotion watch of 20 minutes whose test cannot decide
    world.metrics.serve("champion", BASELINE_FIRST, 120, requests=100, errors=1)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=1)
    # When it is judged at minute 30
    answer = world.judge(**stage("watch", max_minutes=20), judge={"error_rate": {"min_samples": UNDECIDED}})
    # Then the promotion stands: no harm found in its time
    assert answer["verdict"] == "PROMOTE"
    assert answer["explanation"].startswith("The post-promotion watch found no harm in 20 minutes: No decision")
    assert _metric(answer, "error_rate")["verdict"] == "INCONCLUSIVE"


def test_a_stage_spends_its_part_of_the_rollouts_budget(world: World) -> None:
    # Given A/B bins the judge cannot decide on yet, and the same stage with and without its part of the budget
    world.metrics.serve("champion", FIRST, 28, requests=100, errors=1)
    world.metrics.serve("candidate", FIRST, 28, requests=100, errors=1)
    whole = stage("ab")
    guard = {**whole, "stage": {**whole["stage"], "alpha_share": 0.1, "beta_power": 0.1}}
    # When both are judged
    judge = {"error_rate": {"min_samples": UNDECIDED}}
    before = _metric(world.judge(**whole, judge=judge), "error_rate")
    after = _metric(world.judge(**guard, judge=judge, attempt="second"), "error_rate")
    # Then the guard's rollback boundary is further (alpha / 10), as the rollout's alpha is shared by its stages
    assert after["rollback_boundary"] > before["rollback_boundary"] + 1.0


def test_two_error_free_variants_promote_on_the_floor(world: World) -> None:
    # Given A/B bins without a single error on either side (before the floor rate: no evidence, never a PROMOTE)
    world.metrics.serve("champion", FIRST, 28, requests=200, errors=0)
    world.metrics.serve("candidate", FIRST, 28, requests=200, errors=0)
    # When the stage is judged with the default floor (0.2 %): 5,400 candidate requests, none failed
    answer = world.judge(**stage("ab"))
    # Then it promotes, and says why
    assert answer["verdict"] == "PROMOTE"
    assert "below the floor" in answer["explanation"]
    # and with the floor off it waits
    waiting = world.judge(**stage("ab"), judge={"error_rate": {"floor_rate": 0.0}}, attempt="off")
    assert waiting["verdict"] == "CONTINUE"


# ------------------------------------------------------------------ prediction quality


def test_in_ab_a_candidate_that_predicts_worse_is_rolled_back_on_quality(world: World) -> None:
    # Given the champion's labelled answers 10 % wrong, the candidate's 50 %
    world.answers("v1", range(20), wrong=1)
    world.answers("v2", range(20), wrong=5)
    # When the A/B stage is judged on quality
    answer = world.judge(**stage("ab"), **on_quality())
    # Then it rolls back on quality
    assert (answer["verdict"], _metric(answer, "quality")["verdict"]) == ("ROLLBACK", "ROLLBACK")


def test_quality_with_more_to_read_than_one_call_can_waits_and_saves_what_it_read(world: World) -> None:
    # Given 80 objects of labelled answers, the candidate's half wrong, each taking a second to read
    world.answers("v1", range(20), wrong=1)
    world.answers("v2", range(20), wrong=5)
    world.timer.step = 1.0
    # When the stage is judged, by a call that may read for READ_SECONDS
    answer = world.judge(**stage("ab"), **on_quality())
    # Then quality waits, judged on none of the answers it read, and what it read is saved for the next call
    found = _metric(answer, "quality")
    assert (answer["verdict"], found["verdict"]) == ("CONTINUE", "CONTINUE")
    assert (found["candidate_samples"], found["champion_samples"]) == (0, 0)
    read = len(world.bucket.read)
    assert 1 < read < 80
    saved = quality.decode(world.bucket.read_bytes(BUCKET, quality.state_key(ENDPOINT, RUN, INDEX["ab"])))
    assert sum(len(names) for hours in saved.read.values() for names in hours.values()) == read


def test_a_corrupt_quality_state_is_logged_and_everything_read_again(
    world: World, errors: list[logging.LogRecord]
) -> None:
    # Given the stage's quality state overwritten with something that is not one
    world.answers("v1", range(20), wrong=1)
    world.answers("v2", range(20), wrong=1)
    key = quality.state_key(ENDPOINT, RUN, INDEX["ab"])
    world.bucket.objects[(BUCKET, key)] = b"\x1f\x8b truncated"
    # When the stage is judged
    answer = world.judge(**stage("ab"), **on_quality(UNDECIDED))
    # Then the error names the object, every answer is read and counted, and a readable state is back
    [logged] = errors
    assert "unreadable" in logged.getMessage()
    assert logged.state == f"s3://{BUCKET}/{key}"
    assert _metric(answer, "quality")["candidate_samples"] == 200
    quality.decode(world.bucket.read_bytes(BUCKET, key))


def test_another_stage_s_quality_state_is_logged_and_everything_read_again(
    world: World, errors: list[logging.LogRecord]
) -> None:
    # Given, under the A/B stage's key, the shadow stage's state, which counted labelled answers of its own
    world.answers("v1", range(20), wrong=1)
    world.answers("v2", range(20), wrong=1)
    world.judge(**stage("shadow"), **on_quality(UNDECIDED))
    shadow = world.bucket.read_bytes(BUCKET, quality.state_key(ENDPOINT, RUN, INDEX["shadow"]))
    world.bucket.objects[(BUCKET, quality.state_key(ENDPOINT, RUN, INDEX["ab"]))] = shadow
    # When the A/B stage is judged
    answer = world.judge(**stage("ab"), **on_quality(UNDECIDED))
    # Then the mix-up is logged and the A/B stage counts its own reading, from the start
    [logged] = errors
    assert "another stage's" in logged.getMessage()
    found = _metric(answer, "quality")
    assert (found["candidate_samples"], found["champion_samples"]) == (200, 200)


def test_a_quality_state_that_cannot_be_saved_is_logged_and_the_verdict_stands(
    world: World, errors: list[logging.LogRecord]
) -> None:
    # Given a bucket that refuses the state's write
    world.answers("v1", range(20), wrong=1)
    world.answers("v2", range(20), wrong=5)
    world.bucket.refusal = ShepherdError("AccessDenied writing the state")
    # When the stage is judged
    answer = world.judge(**stage("ab"), **on_quality())
    # Then it judges on what it read, and says the next call reads it again
    assert answer["verdict"] == "ROLLBACK"
    [logged] = errors
    assert "could not be saved" in logged.getMessage()


def test_a_transient_error_reading_the_quality_state_fails_the_call_for_a_retry(world: World) -> None:
    # Given a saved state S3 throttles the read of
    key = quality.state_key(ENDPOINT, RUN, INDEX["ab"])
    world.bucket.objects[(BUCKET, key)] = b"saved"
    world.bucket.unreadable[key] = TransientError("SlowDown")
    # When the stage is judged
    # Then the call fails for the Judge state to retry, rather than reading a long stage again from the start
    with pytest.raises(TransientError):
        world.judge(**stage("ab"), **on_quality())


# ------------------------------------------------------------------ the stage's maximum


def test_a_stage_without_a_configured_maximum_ends_when_its_traffic_says_a_good_candidate_should_have_decided(
    world: World,
) -> None:
    # Given an A/B step planned with its maximum derived from traffic (a cap of a day), two hours in, whose traffic
    # (200 requests a minute, the candidate 10 % with 3.3 % errors, the champion 2.2 %: between the hypotheses) leaves
    # it undecided
    world.clock.at = datetime.fromtimestamp(STARTED + 7200 + 130, UTC)
    world.metrics.serve("champion", FIRST, 120, requests=180, errors=4)
    world.metrics.serve("candidate", FIRST, 120, requests=20, errors=0)
    world.metrics.put("candidate_errors", FIRST, [1.0 if m % 3 < 2 else 0.0 for m in range(120)])
    planned = stage("ab", max_minutes=1440)
    planned["stage"] = planned["stage"] | {"weight": 10.0, "max_from_traffic": True}
    answer = world.judge(**planned)
    # Then the judge ends it as its at_max says, at the maximum it derived (well under the cap), and says so
    [metric] = answer["statistics"]
    assert metric["max_minutes"] < 120
    assert answer["verdict"] == "INCONCLUSIVE"
    assert f"within {metric['max_minutes']} minutes" in answer["explanation"]
    # while the same stage with the user's maximum of a day judges on (and here, in its second hour, finds the
    # candidate worse)
    fixed = world.judge(**(planned | {"stage": planned["stage"] | {"max_from_traffic": False}, "attempt": "again"}))
    assert (fixed["verdict"], fixed["statistics"][0]["max_minutes"]) == ("ROLLBACK", 1440)
