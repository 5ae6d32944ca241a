"""`shepherd status`: what the endpoint's last rollouts cost, stage by stage."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from shepherd_cli.status import costs_table

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


def rendered(table: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def ending(event: str, usd: float | None, unknown: list[str] | None = None) -> dict[str, Any]:
    shadow = {
        "stage": "shadow",
        "minutes": 60.0,
        "instances": [{"role": "candidate", "instance_type": "ml.m5.large", "instance_count": 2}],
        "instance_hours": 2.0,
        "usd": usd,
        "live_requests": 12000,
    }
    cost = {"instance_hours": 2.0, "usd": usd, "region": "us-east-1", "prices_as_of": "2026-12-08", "stages": [shadow]}
    if unknown:
        cost["unknown"] = unknown
    return {"package": PACKAGE, "event": event, "cost": cost, "live_requests": 12000}


def test_status_shows_each_ended_rollout_s_cost_per_stage_and_in_total() -> None:
    records = [
        ("2026-12-07T12:00:00+00:00", {"event": "stage-entered", "stage": "shadow"}),
        ("2026-12-07T13:00:00+00:00", ending("rolled-back", 0.2345)),
    ]

    text = rendered(costs_table(records))

    assert "shadow" in text
    assert "2 x ml.m5.large (candidate)" in text
    assert "$0.23" in text
    assert "12,000" in text
    assert "prices as of 2026-12-08" in text
    assert "churn v3 rolled-back" in text


def test_status_says_why_a_cost_is_unknown() -> None:
    records = [("2026-12-07T13:00:00+00:00", ending("promoted", None, ["no price for ml.r7i.large"]))]

    text = rendered(costs_table(records))

    assert "unknown" in text
    assert "USD unknown: no price for ml.r7i.large" in text


def test_status_shows_no_cost_table_before_any_rollout_has_ended() -> None:
    assert costs_table([("2026-12-07T12:00:00+00:00", {"event": "started"})]) is None


def test_status_keeps_the_last_few_rollouts() -> None:
    records = [(f"2026-12-0{day}T13:00:00+00:00", ending("promoted", 0.1)) for day in range(1, 6)]

    text = rendered(costs_table(records, rollouts=2))

    assert "2026-12-05" in text
    assert "2026-12-04" in text
    assert "2026-12-03" not in text
