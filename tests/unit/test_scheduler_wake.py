"""The local Scheduler (localcloud/scheduler.py) sleeps until a schedule is due or one changes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.events.models import EventsBackend
from moto.scheduler.models import EventBridgeSchedulerBackend

from localcloud.moto import events as moto_events
from localcloud.moto import scheduler as moto_scheduler
from localcloud.scheduler import Scheduler

START = datetime(2024, 3, 8, 9, 30, tzinfo=UTC)


class ManualClock:
    """Virtual time that moves only when told; one virtual second lasts one wall second."""

    def __init__(self) -> None:
        self.moment = START

    def now(self) -> datetime:
        return self.moment

    def until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.moment).total_seconds())

    def wall_seconds(self, virtual_seconds: float) -> float:
        return max(0.0, virtual_seconds)


class Deliveries:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def deliver(self, arn: str, payload: Any, *_: Any) -> None:
        self.seen.append(arn)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto in process, its rule and schedule changes telling listeners as the local cloud's patches make them."""
    for name in moto_events.RULE_CHANGES:
        monkeypatch.setattr(EventsBackend, name, moto_events._telling_rule_listeners(getattr(EventsBackend, name)))
    for name in moto_scheduler.SCHEDULE_CHANGES:
        method = getattr(EventBridgeSchedulerBackend, name)
        monkeypatch.setattr(EventBridgeSchedulerBackend, name, moto_scheduler._telling_listeners(method))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("events", region_name="us-east-1")


def _target(events: Any, rule: str) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:tick"
    events.put_targets(Rule=rule, Targets=[{"Id": "tick", "Arn": arn}])


def test_check_fires_what_is_due_and_says_when_the_next_one_is(aws):
    clock, deliveries = ManualClock(), Deliveries()
    scheduler = Scheduler(clock, deliveries)  # type: ignore[arg-type]
    arn = aws.put_rule(Name="tick", ScheduleExpression="rate(5 minutes)")["RuleArn"]
    _target(aws, "tick")
    assert scheduler.check() == START + timedelta(minutes=5)
    clock.moment += timedelta(minutes=5)
    assert scheduler.check() == START + timedelta(minutes=10)
    assert deliveries.seen == ["arn:aws:lambda:us-east-1:123456789012:function:tick"]
    aws.disable_rule(Name="tick")
    assert scheduler.check() == datetime.max.replace(tzinfo=UTC)
    assert arn not in scheduler.upcoming()


def test_an_idle_scheduler_wakes_when_a_rule_is_put_not_on_a_tick(aws):
    # Given a scheduler with nothing to fire, asleep for its idle minute (a wall minute on this clock)
    scheduler = Scheduler(ManualClock(), Deliveries())  # type: ignore[arg-type]
    scheduler.start()
    try:
        time.sleep(0.2)
        assert scheduler.upcoming() == {}
        # When a schedule rule is put through the API
        arn = aws.put_rule(Name="tick", ScheduleExpression="rate(1 minute)")["RuleArn"]
        # Then it knows when the rule is due within moments, not after its minute's sleep
        deadline = time.monotonic() + 10
        while arn not in scheduler.upcoming() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.upcoming() == {arn: START + timedelta(minutes=1)}
    finally:
        scheduler.stop()
    assert not scheduler._thread.is_alive()


def test_a_failed_check_does_not_stop_the_scheduler(aws, monkeypatch):
    # Given a check that fails once (as when an in-process mock resets moto's backends under it)
    scheduler = Scheduler(ManualClock(), Deliveries())  # type: ignore[arg-type]
    rules, calls = scheduler._rules, []

    def flaky() -> list[Any]:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("us-east-1")
        return rules()

    monkeypatch.setattr(scheduler, "_rules", flaky)
    scheduler.start()
    try:
        # When a rule is put afterwards, then the scheduler still learns it
        arn = aws.put_rule(Name="later", ScheduleExpression="rate(1 minute)")["RuleArn"]
        deadline = time.monotonic() + 10
        while arn not in scheduler.upcoming() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert arn in scheduler.upcoming()
        assert len(calls) >= 2
    finally:
        scheduler.stop()
