"""Where monitor runs write their reports: one folder per run, Model Monitor's hourly folder for the scheduled run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shepherd.monitor.layout import report_prefix

from .test_monitor_run import BUCKET, World, world  # noqa: F401 (the fixture)

AT = datetime(2026, 12, 7, 14, 5, 9, 250000, tzinfo=UTC)
HOUR = "monitoring/churn/reports/churn/2026/12/07/14/"


def test_the_scheduled_run_writes_model_monitor_s_folder_of_its_hour() -> None:
    assert report_prefix("churn", "churn", AT) == HOUR
    assert report_prefix("churn", "churn", AT, "schedule") == HOUR


def test_a_run_by_hand_writes_a_folder_of_its_own_inside_its_hour_listed_in_time_order() -> None:
    first = report_prefix("churn", "churn", AT, "manual")
    second = report_prefix("churn", "churn", AT + timedelta(minutes=20), "manual")
    assert first == f"{HOUR}manual-05-09.250000/"
    assert len({HOUR, first, second}) == 3
    later_hour = report_prefix("churn", "churn", AT + timedelta(hours=1))
    assert sorted([later_hour, second, first, HOUR]) == [HOUR, first, second, later_hour]


def test_two_runs_in_one_hour_keep_both_reports(world: World) -> None:  # noqa: F811 (the fixture)
    # Given an hour of traffic and the scheduled run of the next hour
    world.hour_of_traffic(seed=1)
    scheduled = world.run()
    # When more traffic arrives and a person runs the monitor by hand in the same hour
    world.hour_of_traffic(seed=2)
    world.clock.at -= timedelta(minutes=30)
    by_hand = world.run("manual")
    # Then each run has its own report, the scheduled one in Model Monitor's folder of the hour
    assert scheduled["report"] == f"s3://{BUCKET}/monitoring/churn/reports/churn/2026/12/07/13/"
    assert by_hand["report"].startswith(f"{scheduled['report']}manual-")
    alerts = [
        json.loads(world.bucket.objects[outcome["report"].removeprefix(f"s3://{BUCKET}/") + "alert.json"])
        for outcome in (scheduled, by_hand)
    ]
    assert [a["trigger"] for a in alerts] == ["schedule", "manual"]
    # the run by hand judged the same hour for the alert again: a replay, which changes nothing
    assert (alerts[0]["decision"]["duplicate"], alerts[1]["decision"]["duplicate"]) == (False, True)
    assert world.state()["last_report"] == by_hand["report"]
