"""ReconcileRollouts: one endpoint's trouble never keeps the sweep from the others."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from shepherd.aws import clients, endpoints
from shepherd.aws.rollouts import RolloutTable
from shepherd.errors import ShepherdError
from shepherd.rollout.reconcile import ReconcileFailed

from .conftest import Cloud, LambdaContext, aws_error

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def reconcile(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("reconcile_rollouts")


@pytest.fixture
def rollouts(reconcile: ModuleType) -> RolloutTable:
    """The rollout table the function's environment names."""
    return reconcile.deps.store


def _stranded(rollouts: RolloutTable, endpoint: str, champion: dict[str, str] | None) -> None:
    """A lock whose execution never existed (it ended long ago), and the endpoint's champion record."""
    rollouts.acquire(endpoint, f"{endpoint}-v2-0123456789abcdef", "arn:package/2", 1795000000.0)
    if champion is not None:
        rollouts.set_champion(endpoint, champion)


def test_a_champion_record_without_a_config_is_released_not_a_crash(
    aws: Cloud, reconcile: ModuleType, rollouts: RolloutTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stranded lock on an endpoint mid-update whose champion record names no config (written by hand)
    _stranded(rollouts, "churn", {"package": "arn:package/1", "variant": "v1"})
    live = {"EndpointStatus": "InService", "EndpointConfigName": "churn-first-v1", "ProductionVariants": []}
    monkeypatch.setattr(endpoints, "describe_endpoint", lambda name: live)
    # When the sweep runs
    results = reconcile.handler({}, LambdaContext())
    # Then nothing is restored (there is nothing to restore to) and the endpoint is free again
    assert results == {"released": 1}
    assert rollouts.lock_of("churn") is None


def test_one_lock_that_cannot_be_settled_does_not_stop_the_others(
    aws: Cloud, reconcile: ModuleType, rollouts: RolloutTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two stranded locks, and the first endpoint cannot be described
    _stranded(rollouts, "broken", None)
    _stranded(rollouts, "fine", None)

    def describe(name: str) -> dict[str, Any] | None:
        if name == "broken":
            raise ShepherdError("describing broken: throttled")
        return None

    monkeypatch.setattr(endpoints, "describe_endpoint", describe)
    # When the sweep runs, it settles the other and then reports the one it could not
    with pytest.raises(ReconcileFailed, match="broken"):
        reconcile.handler({}, LambdaContext())
    assert rollouts.lock_of("fine") is None
    assert rollouts.lock_of("broken") is not None


def test_an_execution_that_cannot_be_described_is_not_taken_for_a_missing_one(
    aws: Cloud, reconcile: ModuleType, rollouts: RolloutTable
) -> None:
    # Given a stranded lock, and Step Functions refusing DescribeExecution (a role without the permission)
    _stranded(rollouts, "churn", None)
    clients.client("stepfunctions").meta.events.register(
        "before-call.sfn.DescribeExecution",
        lambda **_: aws_error("AccessDeniedException", "not authorized to perform: states:DescribeExecution"),
    )
    # When the sweep runs, then it reports the lock and keeps it: only ExecutionDoesNotExist means no execution
    with pytest.raises(ReconcileFailed, match="churn"):
        reconcile.handler({}, LambdaContext())
    assert rollouts.lock_of("churn") is not None
