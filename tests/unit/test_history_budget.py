"""A rollout that queued for the lock and then judged for days stays under Step Functions' 25,000-event cap."""

from __future__ import annotations

import json
from pathlib import Path

from shepherd.config.models import (
    EVENTS_PER_JUDGE_CALL,
    EVENTS_PER_LOCK_TRY,
    FIRST_EXECUTION_JUDGE_CALLS,
    HISTORY_EVENTS_MAX,
    LOCK_TRIES,
    MAX_JUDGE_CALLS_PER_EXECUTION,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_queue_and_the_first_executions_judge_calls_fit_one_history() -> None:
    prepare = json.loads((ROOT / "statemachines" / "rollout.asl.json").read_text())["States"]["Prepare"]
    lock_held = next(retry for retry in prepare["Retry"] if retry["ErrorEquals"] == ["LockHeld"])
    assert lock_held["MaxAttempts"] == LOCK_TRIES
    worst = LOCK_TRIES * EVENTS_PER_LOCK_TRY + FIRST_EXECUTION_JUDGE_CALLS * EVENTS_PER_JUDGE_CALL
    assert worst <= HISTORY_EVENTS_MAX - 1_000, "room for the fixed states and transient retries"
    # Before, the first execution could judge the configured maximum after the longest queue: past the cap.
    assert LOCK_TRIES * EVENTS_PER_LOCK_TRY + MAX_JUDGE_CALLS_PER_EXECUTION * EVENTS_PER_JUDGE_CALL > HISTORY_EVENTS_MAX
