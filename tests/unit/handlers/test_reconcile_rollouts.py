"""ReconcileRollouts: one endpoint's trouble never keeps the sweep from the others."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from .conftest import Cloud, LambdaContext

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def reconcile(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("reconcile_rollouts")


def _stranded(reconcile: ModuleType, endpoint: str, champion: dict[str, str] | None) -> None:
    """A lock whose execution never existed (it ended long ago), and the endpoint's champion record."""
    reconcile.rollouts.acquire(endpoint, f"{endpoint}-v2-0123456789abcdef", "arn:package/2", 1795000000.0)
    if champion is not None:
        reconcile.rollouts.set_champion(endpoint, champion)


def test_a_champion_record_without_a_config_is_released_not_a_crash(
    aws: Cloud, reconcile: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stranded lock on an endpoint mid-update whose champion record names no config (written by hand)
    _stranded(reconcile, "churn", {"package": "arn:package/1", "variant": "v1"})
    live = {"EndpointStatus": "InService", "EndpointConfigName": "churn-first-v1", "ProductionVariants": []}
    monkeypatch.setattr(reconcile, "describe_endpoint", lambda name: live)
    # When the sweep runs
    results = reconcile.handler({}, LambdaContext())
    # Then nothing is restored (there is nothing to restore to) and the endpoint is free again
    assert results == {"released": 1}
    assert reconcile.rollouts.lock_of("churn") is None


def test_one_lock_that_cannot_be_settled_does_not_stop_the_others(
    aws: Cloud, reconcile: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two stranded locks, and the first endpoint cannot be described
    _stranded(reconcile, "broken", None)
    _stranded(reconcile, "fine", None)

    def describe(name: str) -> dict[str, Any] | None:
        if name == "broken":
            raise reconcile.ShepherdError("describing broken: throttled")
        return None

    monkeypatch.setattr(reconcile, "describe_endpoint", describe)
    # When the sweep runs, it settles the other and then reports the one it could not
    with pytest.raises(reconcile.ReconcileFailed, match="broken"):
        reconcile.handler({}, LambdaContext())
    assert reconcile.rollouts.lock_of("fine") is None
    assert reconcile.rollouts.lock_of("broken") is not None
