"""The drift alert: quiet on a month without drift, quick on real drift, resumable (shepherd.monitor.alert)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from shepherd.monitor import alert
from shepherd.monitor.reference import Reference, build

ROWS = 100
HISTORY_HOURS = 14 * 24
START = datetime(2026, 3, 2, tzinfo=UTC)  # the first monitored hour; the reference's two weeks end here
CATEGORIES = np.array(["red", "green", "blue", "other"], dtype=object)
SHARES = [0.5, 0.3, 0.15, 0.05]
# Ville's bound: the expected number of false alerts in a month is at most this, so a month without drift
# alerts at all with probability at most 1 %.
STRICT = alert.AlertSettings(false_alerts_per_month=0.01)


def _hour(rng: np.random.Generator, hour: int, drift: dict[str, Any] | None = None) -> dict[str, Any]:
    """One hour of capture: a normal, a lognormal, a daily-seasonal and a categorical feature."""
    drift = drift or {}
    angle = 2 * math.pi * (hour + 0.5) / 24
    normal = rng.normal(size=ROWS) + drift.get("shift", 0.0)
    lognormal = np.exp(rng.normal(0.0, 0.5, size=ROWS)).astype(object)
    missing = rng.random(ROWS) < drift.get("missing", 0.0)
    lognormal[missing] = None
    colour = rng.choice(CATEGORIES, p=SHARES, size=ROWS)
    colour[rng.random(ROWS) < drift.get("new", 0.0)] = "violet"
    return {
        "normal": normal.tolist(),
        "lognormal": lognormal.tolist(),
        "seasonal": (rng.normal(size=ROWS) + 2.0 * math.sin(angle)).tolist(),
        "colour": colour.tolist(),
    }


def _reference(seed: int, *, seasonal: bool = True) -> Reference:
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {"normal": [], "lognormal": [], "seasonal": [], "colour": []}
    at: list[datetime] = []
    first = -HISTORY_HOURS
    for hour in range(first, 0):
        for name, values in _hour(rng, hour).items():
            columns[name] += values
        at += [START + timedelta(hours=hour, minutes=30)] * ROWS
    return build(columns, at=at if seasonal else None)


def _run(
    reference: Reference,
    seed: int,
    hours: int,
    *,
    drift: dict[str, Any] | None = None,
    onset: int = 0,
    settings: alert.AlertSettings | None = None,
) -> list[alert.AlertDecision]:
    rng = np.random.default_rng(seed)
    state: alert.AlertState | None = None
    decisions = []
    for hour in range(hours):
        batch = _hour(rng, hour, drift if hour >= onset else None)
        state, decision = alert.step(state, reference, batch, at=START + timedelta(hours=hour), settings=settings)
        decisions.append(decision)
    return decisions


@pytest.fixture(scope="module")
def reference() -> Reference:
    return _reference(7)


def _first_firing(decisions: list[alert.AlertDecision], onset: int) -> int | None:
    return next((i - onset + 1 for i, d in enumerate(decisions) if i >= onset and d.firing), None)


def test_a_month_without_drift_opens_no_alert(reference: Reference) -> None:
    # Given 720 hourly batches like the reference (seasonal feature included), at a 0.01-a-month rate
    decisions = _run(reference, seed=11, hours=720, settings=STRICT)

    # Then no alert opens (chance of failing for a random seed <= 1 %, Ville's bound)
    assert [i for i, d in enumerate(decisions) if d.opened] == []


def test_the_seasonal_cycle_is_in_the_reference(reference: Reference) -> None:
    # Given a reference from two weeks of timed capture, it models the daily cycle of `seasonal` only
    assert reference.cycle_hours == 24
    assert reference.features["seasonal"].parameters > 1  # type: ignore[union-attr]
    assert reference.features["normal"].parameters == 1  # type: ignore[union-attr]

    # When the same rows are judged against a static snapshot of them (no capture times)
    static = _reference(7, seasonal=False)
    decisions = _run(static, seed=11, hours=48, settings=STRICT)

    # Then the cycle itself alerts: a static snapshot cannot tell it from drift
    assert any(d.opened and "seasonal" in d.features for d in decisions)


@pytest.mark.parametrize(
    ("drift", "feature", "within"),
    [
        ({"shift": 0.5}, "normal", 2),  # 5 standard errors an hour at 100 rows
        ({"new": 0.05}, "colour", 2),  # 5 rows an hour of a category the reference never saw
        ({"missing": 0.03}, "lognormal", 4),  # 3 missing an hour where the reference had none
    ],
)
def test_clear_drift_alerts_within_bounded_hours(
    reference: Reference, drift: dict[str, Any], feature: str, within: int
) -> None:
    # Given a quiet day, then drift from hour 24
    decisions = _run(reference, seed=23, hours=48, drift=drift, onset=24)

    # Then an alert opens within `within` hourly checks of the onset, naming the drifted feature with its evidence
    hours = _first_firing(decisions, 24)
    assert hours is not None
    assert hours <= within
    first = decisions[24 + hours - 1]
    assert first.opened
    assert feature in first.features
    assert all(e.statistic >= e.threshold for e in first.evidence)
    assert not any(d.opened for d in decisions[:24])


def test_missing_values_creeping_in_alert(reference: Reference) -> None:
    # Given missing values whose share grows by 0.2 points an hour from hour 24
    rng = np.random.default_rng(31)
    state: alert.AlertState | None = None
    opened_at = None
    for hour in range(96):
        share = max(0, hour - 23) * 0.002
        state, decision = alert.step(
            state, reference, _hour(rng, hour, {"missing": share}), at=START + timedelta(hours=hour)
        )
        if decision.opened:
            opened_at = hour
            break

    # Then the alert opens on the lognormal feature within a day of the onset (by then 5 % are missing)
    assert opened_at is not None
    assert 24 <= opened_at < 48
    assert decision.features == ("lognormal",)


def test_state_and_reference_survive_json_mid_stream(reference: Reference) -> None:
    # Given the decisions of one uninterrupted run through an onset
    drift = {"shift": 0.3}
    straight = _run(reference, seed=41, hours=30, drift=drift, onset=12)

    # When the same run stores its state and reference as JSON at every hour and reads them back
    rng = np.random.default_rng(41)
    stored_state: dict[str, Any] | None = None
    stored_reference = json.dumps(reference.to_json())
    resumed = []
    for hour in range(30):
        ref = Reference.from_json(json.loads(stored_reference))
        batch = _hour(rng, hour, drift if hour >= 12 else None)
        state, decision = alert.step(stored_state, ref, batch, at=START + timedelta(hours=hour))
        stored_state = json.loads(json.dumps(state.to_json()))
        resumed.append(decision)

    # Then every decision is the same, and the drift was seen
    assert resumed == straight
    assert any(d.opened for d in straight)


def test_a_replayed_batch_is_not_counted_twice(reference: Reference) -> None:
    # Given a run where hour 13's batch is fed again (a run that crashed after judging it, then resumed)
    drift = {"shift": 0.3}
    straight = _run(reference, seed=43, hours=20, drift=drift, onset=10)
    rng = np.random.default_rng(43)
    state: alert.AlertState | None = None
    replayed = []
    for hour in range(20):
        batch = _hour(rng, hour, drift if hour >= 10 else None)
        at = START + timedelta(hours=hour)
        state, decision = alert.step(state, reference, batch, at=at)
        replayed.append(decision)
        if hour == 13:
            again, duplicate = alert.step(state, reference, batch, at=at)
            # Then the replay changes nothing and says so
            assert duplicate.duplicate
            assert not duplicate.opened
            assert again == state

    # And the run's decisions are those of the run without the replay
    assert replayed == straight


def test_the_threshold_holds_the_stated_rate(reference: Reference) -> None:
    # h = log(checks a month x charts / rate): each chart crosses at most once per e^h checks on average
    settings = alert.AlertSettings()
    charts = alert.charts(reference, settings)
    assert len(charts) == 3 * (4 + 2) * 2 + (1 + 2) * 2  # numeric: mean/spread up/down; all: missing, unseen
    assert alert.threshold(reference, settings) == pytest.approx(math.log(720 * len(charts) / 1.0))
    assert settings.checks_per_month * len(charts) * math.exp(-alert.threshold(reference, settings)) == pytest.approx(
        settings.false_alerts_per_month
    )
