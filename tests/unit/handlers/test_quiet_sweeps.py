"""ReconcileJobs runs every 10 (virtual) minutes: a sweep that only sees running jobs logs nothing at INFO."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import ORPHAN_AFTER_SECONDS, Waiter

from .conftest import TOKENS_TABLE, Cloud, sample_event

# powertools() filters the warning when a function loads; pytest resets warning filters after each test.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def _token(created: datetime) -> None:
    waiter = Waiter("churn-train-000000000000", "training", "a-token", "exec", created)
    DynamoTokenStore(TOKENS_TABLE).put(waiter, expires_after_seconds=3600)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.getMessage() == "reconciled"]


def test_a_sweep_with_nothing_to_do_logs_nothing_at_info(
    aws: Cloud, load_handler: Callable[[str], ModuleType], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a young token whose job has not appeared yet: the sweep leaves it
    _token(datetime.now(UTC))
    caplog.set_level(logging.DEBUG)
    counts = load_handler("reconcile_jobs").handler(sample_event("reconcile_jobs"), aws.context)
    assert counts == {"job-missing": 1}
    assert _said(caplog) == []


def test_a_sweep_that_acts_says_what_it_did(
    aws: Cloud, load_handler: Callable[[str], ModuleType], caplog: pytest.LogCaptureFixture
) -> None:
    # Given an orphaned token: the sweep forgets it, and says so
    _token(datetime.now(UTC) - timedelta(seconds=ORPHAN_AFTER_SECONDS + 60))
    caplog.set_level(logging.DEBUG)
    counts = load_handler("reconcile_jobs").handler(sample_event("reconcile_jobs"), aws.context)
    assert counts == {"forgotten": 1}
    assert _said(caplog) == ["reconciled"]
