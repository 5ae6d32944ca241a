"""Tests for ScheduleExpression (localcloud/scheduler.py) and VirtualClock (localcloud/clock.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from localcloud import clock as clock_module
from localcloud.clock import VirtualClock
from localcloud.cron import ScheduleExpression, start_delay

# 2024-03-08 is a Friday.
FRIDAY_MORNING = datetime(2024, 3, 8, 9, 30, 0, tzinfo=UTC)


# ---------------------------------------------------------------- rate expressions


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 3 * 86400),
    ],
)
def test_rate_period(expression: str, seconds: int) -> None:
    # Given a rate expression
    # When it is parsed
    schedule = ScheduleExpression(expression)
    # Then its period is the stated duration in seconds
    assert schedule.period == seconds


def test_rate_next_after_adds_one_period() -> None:
    # Given rate(5 minutes)
    schedule = ScheduleExpression("rate(5 minutes)")
    # When asked for the next firing after a moment
    # Then it is exactly one period later
    assert schedule.next_after(FRIDAY_MORNING) == FRIDAY_MORNING + timedelta(minutes=5)


def test_surrounding_whitespace_is_ignored() -> None:
    # Given an expression padded with spaces / When parsed / Then it is the same rate
    assert ScheduleExpression("  rate(2 hours) ").period == 7200


def test_rate_zero_is_refused() -> None:
    # Given rate(0 minutes)
    # When it is parsed
    # Then it is refused, naming the expression
    with pytest.raises(ValueError, match=r"rate\(0 minutes\)"):
        ScheduleExpression("rate(0 minutes)")


# ---------------------------------------------------------------- cron expressions


def test_cron_daily_at_noon_later_the_same_day() -> None:
    # Given cron(0 12 * * ? *) and a moment at 09:30
    schedule = ScheduleExpression("cron(0 12 * * ? *)")
    # When asked for the next firing
    # Then it is noon the same day, UTC
    assert schedule.next_after(FRIDAY_MORNING) == datetime(2024, 3, 8, 12, 0, tzinfo=UTC)


def test_cron_next_after_is_strictly_after() -> None:
    # Given cron(0 12 * * ? *) and a moment exactly at noon
    schedule = ScheduleExpression("cron(0 12 * * ? *)")
    noon = datetime(2024, 3, 8, 12, 0, tzinfo=UTC)
    # When asked for the next firing
    # Then it is noon the following day, not the same instant
    assert schedule.next_after(noon) == datetime(2024, 3, 9, 12, 0, tzinfo=UTC)


def test_cron_ignores_seconds_of_the_moment() -> None:
    # Given cron(0 12 * * ? *) and a moment seconds before noon
    schedule = ScheduleExpression("cron(0 12 * * ? *)")
    # When asked for the next firing
    # Then it is noon on the minute
    assert schedule.next_after(datetime(2024, 3, 8, 11, 59, 59, 500000, tzinfo=UTC)) == datetime(
        2024, 3, 8, 12, 0, tzinfo=UTC
    )


def test_cron_weekday_names_skip_the_weekend() -> None:
    # Given weekdays at 09:00 and a Friday moment after 09:00
    schedule = ScheduleExpression("cron(0 9 ? * MON-FRI *)")
    # When asked for the next firing
    # Then it is Monday 09:00
    assert schedule.next_after(FRIDAY_MORNING) == datetime(2024, 3, 11, 9, 0, tzinfo=UTC)


def test_cron_weekday_names_fire_on_a_weekday() -> None:
    # Given weekdays at 09:00 and a Thursday moment before 09:00
    schedule = ScheduleExpression("cron(0 9 ? * MON-FRI *)")
    # When asked for the next firing
    # Then it is that Thursday
    assert schedule.next_after(datetime(2024, 3, 7, 8, 0, tzinfo=UTC)) == datetime(2024, 3, 7, 9, 0, tzinfo=UTC)


def test_cron_single_day_name_uses_sunday_as_one() -> None:
    # Given Sundays at midnight (SUN=1 in EventBridge cron)
    schedule = ScheduleExpression("cron(0 0 ? * SUN *)")
    # When asked for the next firing after a Friday
    # Then it is Sunday
    assert schedule.next_after(FRIDAY_MORNING) == datetime(2024, 3, 10, 0, 0, tzinfo=UTC)


def test_cron_numeric_day_of_week_matches_name() -> None:
    # Given day-of-week 2, which is MON
    by_number = ScheduleExpression("cron(0 9 ? * 2 *)")
    by_name = ScheduleExpression("cron(0 9 ? * MON *)")
    # When both are asked for the next firing
    # Then they agree on Monday
    assert by_number.next_after(FRIDAY_MORNING) == by_name.next_after(FRIDAY_MORNING)
    assert by_number.next_after(FRIDAY_MORNING).weekday() == 0


def test_cron_month_names() -> None:
    # Given the first of every JUN at midnight
    schedule = ScheduleExpression("cron(0 0 1 JUN ? *)")
    # When asked late in May
    # Then it is 1 June
    assert schedule.next_after(datetime(2024, 5, 28, 12, 0, tzinfo=UTC)) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)


def test_cron_star_step_every_fifteen_minutes() -> None:
    # Given */15 in the minute field and a moment at 09:30
    schedule = ScheduleExpression("cron(*/15 * * * ? *)")
    # When asked for successive firings
    first = schedule.next_after(FRIDAY_MORNING)
    second = schedule.next_after(first)
    # Then they fall on the quarter hours after it
    assert first == datetime(2024, 3, 8, 9, 45, tzinfo=UTC)
    assert second == datetime(2024, 3, 8, 10, 0, tzinfo=UTC)


def test_cron_step_with_start_offset() -> None:
    # Given 5/15 (minutes 5, 20, 35, 50)
    schedule = ScheduleExpression("cron(5/15 * * * ? *)")
    # When asked after 09:30
    # Then it is 09:35
    assert schedule.next_after(FRIDAY_MORNING) == datetime(2024, 3, 8, 9, 35, tzinfo=UTC)


def test_cron_list_of_hours() -> None:
    # Given hours 8,17
    schedule = ScheduleExpression("cron(0 8,17 * * ? *)")
    # When asked after 09:30
    # Then it is 17:00
    assert schedule.next_after(FRIDAY_MORNING) == datetime(2024, 3, 8, 17, 0, tzinfo=UTC)


def test_cron_year_field_limits_firing() -> None:
    # Given noon daily, in 2025 only
    schedule = ScheduleExpression("cron(0 12 * * ? 2025)")
    # When asked on the morning of 31 December 2024
    # Then that day's noon is skipped for noon on 1 January 2025
    assert schedule.next_after(datetime(2024, 12, 31, 9, 0, tzinfo=UTC)) == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- invalid expressions


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "every 5 minutes",
        "rate(5 weeks)",
        "rate(five minutes)",
        "rate(-1 minutes)",
        "cron(0 12 * *)",
        "cron(0 12 * * ? * *)",
        "cron 0 12 * * ? *",
    ],
)
def test_invalid_expression_raises_with_the_expression(expression: str) -> None:
    # Given something that is not a schedule EventBridge accepts
    # When it is parsed
    with pytest.raises(ValueError) as err:
        ScheduleExpression(expression)
    # Then the error quotes it
    assert repr(expression) in str(err.value)


@pytest.mark.parametrize("expression", ["cron(0 12 L * ? *)", "cron(0 12 15W * ? *)", "cron(0 12 ? * 6#3 *)"])
def test_cron_l_w_hash_are_refused(expression: str) -> None:
    # Given EventBridge's L, W or # extensions
    # When parsed
    # Then the local cloud refuses them by name
    with pytest.raises(ValueError, match="L, W and #") as err:
        ScheduleExpression(expression)
    assert repr(expression) in str(err.value)


def test_cron_names_containing_l_or_w_are_not_mistaken_for_extensions() -> None:
    # Given JUL (contains L) and WED (contains W)
    # When parsed
    schedule = ScheduleExpression("cron(0 0 ? JUL WED *)")
    # Then it is accepted and, asked at the end of June, fires on the first Wednesday of July
    assert schedule.next_after(datetime(2024, 6, 28, tzinfo=UTC)) == datetime(2024, 7, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["cron(foo 12 * * ? *)", "cron(0 25 * * ? *)"])
def test_cron_with_invalid_field_is_refused_when_parsed(expression: str) -> None:
    # Given a cron whose minute is not a number, or whose hour is out of range
    # When it is parsed (the Scheduler only guards the constructor against ValueError)
    # Then it is refused at once, naming the expression
    with pytest.raises(ValueError) as err:
        ScheduleExpression(expression)
    assert repr(expression) in str(err.value)


# ---------------------------------------------------------------- VirtualClock


class FakeMonotonic:
    """A controllable time.monotonic."""

    def __init__(self, start: float = 1000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(clock_module.time, "monotonic", fake)
    return fake


def test_wall_seconds_divides_by_scale() -> None:
    # Given a clock 60x faster than wall time
    clock = VirtualClock(time_scale=60)
    # When a virtual minute is converted
    # Then it lasts one real second
    assert clock.wall_seconds(60) == 1.0


def test_wall_seconds_never_negative() -> None:
    # Given any clock / When a negative duration is converted / Then it is zero
    assert VirtualClock(time_scale=60).wall_seconds(-5) == 0.0


def test_default_scale_is_real_time() -> None:
    # Given a clock with no scale / When a duration is converted / Then it is unchanged
    assert VirtualClock().wall_seconds(42) == 42.0


def test_now_advances_scale_times_faster(monotonic: FakeMonotonic) -> None:
    # Given a clock 60x faster than wall time
    clock = VirtualClock(time_scale=60)
    before = clock.now()
    # When 10 wall seconds pass
    monotonic.value += 10
    # Then 600 virtual seconds have passed
    assert clock.now() - before == timedelta(seconds=600)


def test_now_stands_still_without_wall_time(monotonic: FakeMonotonic) -> None:
    # Given a clock whose wall time does not move
    clock = VirtualClock(time_scale=60)
    # When now() is read twice
    # Then it is the same moment
    assert clock.now() == clock.now()


def test_now_is_timezone_aware_utc(monotonic: FakeMonotonic) -> None:
    # Given a clock / When now() is read / Then it is in UTC (schedules are evaluated in UTC)
    assert VirtualClock().now().utcoffset() == timedelta(0)


def test_until_counts_virtual_seconds(monotonic: FakeMonotonic) -> None:
    # Given a clock 60x faster and a moment 600 virtual seconds ahead
    clock = VirtualClock(time_scale=60)
    target = clock.now() + timedelta(seconds=600)
    # When 5 wall seconds (300 virtual) pass
    monotonic.value += 5
    # Then 300 virtual seconds remain
    assert clock.until(target) == pytest.approx(300.0)


def test_until_a_past_moment_is_zero(monotonic: FakeMonotonic) -> None:
    # Given a moment already behind the clock
    clock = VirtualClock(time_scale=60)
    # When the time until it is asked / Then it is zero
    assert clock.until(clock.now() - timedelta(hours=1)) == 0.0


def test_sleep_returns_true_when_stop_is_already_set() -> None:
    # Given a stop event that is already set
    stop = threading.Event()
    stop.set()
    # When a long virtual sleep is asked for
    # Then it returns at once, reporting the stop
    assert VirtualClock(time_scale=60).sleep(3600, stop) is True


@pytest.mark.parametrize("scale", [0, -1, -0.5])
def test_non_positive_scale_is_refused(scale: float) -> None:
    # Given a scale that is not positive
    # When a clock is made
    # Then it is refused, naming the value
    with pytest.raises(ValueError, match="time scale"):
        VirtualClock(time_scale=scale)


def test_fractional_scale_slows_time(monotonic: FakeMonotonic) -> None:
    # Given a clock at half speed
    clock = VirtualClock(time_scale=0.5)
    before = clock.now()
    # When 10 wall seconds pass
    monotonic.value += 10
    # Then 5 virtual seconds have passed, and a virtual second lasts two real ones
    assert clock.now() - before == timedelta(seconds=5)
    assert clock.wall_seconds(1) == 2.0


# ---------------------------------------------------------------- start delays


def test_a_start_delay_lies_in_its_window_and_depends_on_its_key() -> None:
    window = timedelta(minutes=20)
    delays = {start_delay(f"schedule-{i}", window) for i in range(100)}
    assert all(timedelta(0) <= d <= window for d in delays)
    assert len(delays) > 90  # whole seconds out of 1,201: keys rarely share one


def test_a_start_delay_is_the_same_in_every_process() -> None:
    # Given two interpreters whose str hashes differ (PYTHONHASHSEED)
    code = "from datetime import timedelta; from localcloud.cron import start_delay; "
    code += "print(start_delay('monitoring-schedule/churn', timedelta(minutes=20)))"
    printed = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    # Then both give this process's delay
    assert printed == {f"{start_delay('monitoring-schedule/churn', timedelta(minutes=20))}\n"}
