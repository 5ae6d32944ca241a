"""The demo's summary lists every rollout however it ended, and its settings are the ones bench/demo_odds.py judges."""

from __future__ import annotations

import pytest
from shepherd.config import ModelConfig

from localcloud.demo import Settings, _rollout_outcome, rollout_config

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"


def _entries(*events: dict[str, object]) -> list[dict[str, object]]:
    return [{"package": PACKAGE, **event} for event in events]


def test_an_inconclusive_rollout_is_listed_with_its_reason() -> None:
    entries = _entries(
        {"event": "started"},
        {"event": "stage-entered", "stage": "shadow"},
        {"event": "verdict", "stage": "shadow", "verdict": "PROMOTE", "explanation": "passed"},
        {"event": "stage-entered", "stage": "full"},
        {"event": "verdict", "stage": "full", "verdict": "CONTINUE", "explanation": "not yet"},
        {"event": "verdict", "stage": "full", "verdict": "INCONCLUSIVE", "explanation": "No decision in 30 minutes"},
        {"event": "rolling-back", "step": "weights"},
        {"event": "inconclusive", "reason": "undecided"},
    )
    assert _rollout_outcome(PACKAGE, 2, entries) == {
        "model_package": PACKAGE,
        "version": 2,
        "outcome": "inconclusive",
        "stages": ["shadow", "full"],
        "reason": "No decision in 30 minutes",
    }


SHADOW = {"event": "stage-entered", "stage": "shadow"}


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([{"event": "started"}, {"event": "deploying", "stage": "first"}, {"event": "promoted"}], "deployed"),
        ([{"event": "started"}, SHADOW, {"event": "promoted"}], "promoted"),
        (
            [{"event": "started"}, SHADOW, {"event": "rolled-back"}],
            "rolled_back",
        ),
        ([{"event": "started"}, {"event": "rollback-failed", "problems": ["x"]}], "rollback_failed"),
        ([{"event": "started"}, {"event": "ended", "error": "States.Timeout"}], "failed"),
        ([{"event": "started"}, SHADOW], "running"),
    ],
)
def test_every_ending_has_an_outcome(events: list[dict[str, object]], outcome: str) -> None:
    assert _rollout_outcome(PACKAGE, 2, _entries(*events))["outcome"] == outcome


def test_a_failed_rollout_without_verdicts_carries_its_error() -> None:
    entries = _entries({"event": "started"}, {"event": "ended", "error": "States.Timeout"})
    assert _rollout_outcome(PACKAGE, 2, entries)["reason"] == "States.Timeout"


@pytest.mark.parametrize("quick", [True, False])
def test_the_demos_rollout_settings_are_a_valid_config(quick: bool) -> None:
    rollout = rollout_config(Settings.for_mode(quick))
    config = ModelConfig.model_validate(
        {"framework": "sklearn", "entry_point": "train.py", "rollout": rollout}, strict=False
    )
    assert config.rollout.judge.error_rate.anytime
    assert config.rollout.full.max_duration_minutes == Settings.for_mode(quick).stage_max_minutes


def test_the_report_quotes_the_simulated_odds_of_exactly_these_settings() -> None:
    from dataclasses import asdict

    from localcloud.demo import odds

    quick = asdict(Settings.for_mode(True))
    assert "demos failed" in odds(quick)  # bench/results/demo_odds.json simulated these very settings
    assert "8 judged tests" in odds(quick)
    changed = quick | {"alpha": 0.05}
    assert "demos failed" not in odds(changed)  # results of other settings are not quoted
