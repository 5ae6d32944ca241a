"""The reference learnt from captured history (shepherd.monitor.history): per-hour summaries, the guard that
leaves drift out, and what the alert does with the learnt reference (a daily cycle quiet, a shift still seen).

Hours hold at most 28 rows here, so each hour-of-day sketch stays under KLL's k = 200 items and is exact: the
tests are deterministic for their seed (DataSketches' compaction is random and cannot be seeded)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from shepherd.monitor import alert, history, reference

EPOCH = datetime(2026, 3, 2, tzinfo=UTC)
ROWS = 28
WEEK = 7 * 24


def traffic(rng: np.random.Generator, hour: int, *, shift: float = 0.0, rows: int = ROWS) -> dict[str, Any]:
    """An hour's capture: x follows a daily cycle (1.5 sd), y is lognormal, c a categorical mix."""
    angle = 2 * math.pi * (hour + 0.5) / 24
    x = rng.normal(size=rows) + 1.5 * (math.sin(angle) + 0.3 * math.cos(2 * angle)) + shift
    y = rng.lognormal(0.0, 0.5, size=rows)
    c = rng.choice(["a", "b", "c", "d"], p=[0.4, 0.3, 0.2, 0.1], size=rows)
    return {"x": list(x), "y": list(y), "c": list(c)}


def training_reference(rng: np.random.Generator) -> reference.Reference:
    """What registration builds: rows pooled over many days, without capture times (a static snapshot)."""
    pooled: dict[str, list[Any]] = {"x": [], "y": [], "c": []}
    for hour in range(20 * 24):
        for name, values in traffic(rng, hour, rows=5).items():
            pooled[name] += values
    return reference.build(pooled)


def learn_week(rng: np.random.Generator, training: reference.Reference) -> tuple[history.Observed, int]:
    """Hours fed to observe until the reference is learnt: (the last observation, training-reference alerts)."""
    document: dict[str, Any] | None = None
    state: alert.AlertState | None = None
    alerts = 0
    for hour in range(3 * WEEK):
        batch, at = traffic(rng, hour), EPOCH + timedelta(hours=hour)
        state, decision = alert.step(state, training, batch, at=at)
        alerts += decision.opened
        observed = history.observe(
            document, training, batch, hour=at, settings=history.LearnSettings(), alert_settings=alert.AlertSettings()
        )
        if observed.learnt is not None:
            return observed, alerts
        document = observed.document
    raise AssertionError("never learnt")


def test_the_summaries_learn_what_the_rows_would() -> None:
    # Given a week of hours with a daily cycle, kept as rows with their capture times and as summaries
    rng = np.random.default_rng(5)
    kinds = training_reference(np.random.default_rng(1)).features
    summaries = history.History(24)
    rows: dict[str, list[Any]] = {"x": [], "y": [], "c": []}
    at: list[datetime] = []
    for hour in range(WEEK):
        batch = traffic(rng, hour)
        summaries.add(kinds, batch, EPOCH + timedelta(hours=hour))
        for name, values in batch.items():
            rows[name] += values
        at += [EPOCH + timedelta(hours=hour, minutes=30)] * ROWS
    # When the reference is learnt from the summaries
    learnt, exact = summaries.learn(), reference.build(rows, at=at)
    # Then location (with its daily terms) and scale are those the rows give, the quantiles nearly so
    x, exact_x = learnt.features["x"], exact.features["x"]
    assert isinstance(x, reference.NumericReference)
    assert isinstance(exact_x, reference.NumericReference)
    assert x.parameters == exact_x.parameters == 7
    assert learnt.cycle_hours == exact.cycle_hours == 24
    assert np.allclose(x.location, exact_x.location)
    assert x.scale == pytest.approx(exact_x.scale)
    central = np.abs(reference.Z_GRID) <= 2.0
    assert np.abs(np.subtract(x.knots, exact_x.knots))[central].max() < 0.05
    assert learnt.features["c"] == exact.features["c"]


def test_a_daily_cycle_stops_alerting_once_learnt_and_a_shift_still_alerts() -> None:
    # Given a model whose training reference is a static snapshot of traffic with a daily cycle
    rng = np.random.default_rng(11)
    training = training_reference(rng)
    # When a week of captured hours goes through the learning
    observed, training_alerts = learn_week(rng, training)
    learnt = observed.learnt
    assert learnt is not None
    # Then the cycle alerted against the training reference, the learnt one models it
    assert training_alerts >= 1
    assert observed.document["status"] == "learnt"
    assert observed.document["hours"] >= WEEK
    assert learnt.cycle_hours == 24
    # and 30 days of the same cycle open no alert against the learnt reference (seeded)
    state: alert.AlertState | None = None
    start = observed.document["hours"] + observed.document["left_out"]
    for hour in range(start, start + 30 * 24):
        state, decision = alert.step(state, learnt, traffic(rng, hour), at=EPOCH + timedelta(hours=hour))
        assert not decision.opened, (hour, decision.to_json())
    # while a shift of x by half its within-hour sd alerts within a day
    onset = start + 30 * 24
    for hour in range(onset, onset + 24):
        state, decision = alert.step(state, learnt, traffic(rng, hour, shift=0.5), at=EPOCH + timedelta(hours=hour))
        if decision.firing:
            assert "x" in decision.features
            break
    else:
        raise AssertionError("the shift was not seen within a day")


def test_a_drift_during_learning_is_left_out_and_learning_waits() -> None:
    # Given two days of learning, then traffic shifted by one sd for the rest of a week
    rng = np.random.default_rng(3)
    training = training_reference(rng)
    settings = history.LearnSettings()
    document: dict[str, Any] | None = None
    for hour in range(WEEK):
        batch = traffic(rng, hour, shift=1.0 if hour >= 48 else 0.0)
        observed = history.observe(
            document,
            training,
            batch,
            hour=EPOCH + timedelta(hours=hour),
            settings=settings,
            alert_settings=alert.AlertSettings(),
        )
        assert observed.learnt is None
        document = observed.document
    # Then the drifted hours are left out (the guard's provisional reference knows the first days' cycle)
    assert document is not None
    assert document["status"] == "learning"
    assert document["left_out"] > WEEK - 48 - 12
    assert document["history"]["hours"] < 48 + 12


def test_a_replayed_hour_changes_nothing() -> None:
    # Given an hour taken into the learning
    rng = np.random.default_rng(2)
    training = training_reference(rng)
    batch, at = traffic(rng, 0), EPOCH
    kwargs: dict[str, Any] = {"hour": at, "settings": history.LearnSettings(), "alert_settings": alert.AlertSettings()}
    first = history.observe(None, training, batch, **kwargs)
    # When a run that crashed before saving its state replays it, then nothing is counted twice
    again = history.observe(first.document, training, batch, **kwargs)
    assert again.note == "hour already taken"
    assert again.document == first.document
    assert first.document["history"]["hours"] == 1


def test_the_summaries_stay_bounded_however_long_the_history() -> None:
    # Given 200-row hours accumulated for one week, then for four
    rng = np.random.default_rng(4)
    kinds = training_reference(np.random.default_rng(1)).features
    summaries = history.History(24)
    sizes = {}
    for hour in range(4 * WEEK):
        summaries.add(kinds, traffic(rng, hour, rows=200), EPOCH + timedelta(hours=hour))
        if hour + 1 in (WEEK, 4 * WEEK):
            sizes[hour + 1] = len(json.dumps(summaries.to_json()))
    # Then four times the hours take well under four times the room (KLL keeps about k log(n / k) items)
    assert sizes[4 * WEEK] < 2.5 * sizes[WEEK]
    assert sizes[4 * WEEK] < 600_000  # two numeric features and a categorical one
