"""ReconcileRollouts' sweep (shepherd.rollout.reconcile) on in-memory ports: what it leaves, restores and frees."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from shepherd.errors import TransientError
from shepherd.rollout.reconcile import MISSING, RUNNING, Deps, ReconcileFailed, reconcile

from .fakes import FakeEndpoints, FakeRolloutStore, ManualClock

RUN = "churn-v2-0123456789abcdef"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"
CHAMPION_CONFIG = "churn-final-v1-aaaa"
CANDIDATE_CONFIG = "churn-final-v2-bbbb"
SCALING: dict[str, Any] = {"minimum": 2, "maximum": 4, "target": 750.0, "scale_in": 300, "scale_out": 60}


@dataclass
class FakeExecutions:
    """Executions: a status per name, MISSING for any other; an unreachable one fails as a throttled call."""

    statuses: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)

    def status(self, name: str) -> str:
        if name in self.unreachable:
            raise TransientError(f"describing execution {name}: ThrottlingException: Rate exceeded")
        return self.statuses.get(name, MISSING)


@dataclass
class FakeTopic:
    """Notifications: what was published, in order."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        self.sent.append((subject, message))


@dataclass
class World:
    endpoints: FakeEndpoints = field(default_factory=FakeEndpoints)
    store: FakeRolloutStore = field(default_factory=FakeRolloutStore)
    executions: FakeExecutions = field(default_factory=FakeExecutions)
    topic: FakeTopic = field(default_factory=FakeTopic)
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def deps(self) -> Deps:
        return Deps(
            store=self.store,
            endpoints=self.endpoints,
            executions=self.executions,
            notifications=self.topic,
            now=self.clock.now,
        )

    def sweep(self) -> dict[str, int]:
        outcomes = reconcile(self.deps)
        self.clock.advance(600)  # the schedule: every ten minutes
        return outcomes

    def stranded(self, endpoint: str = "churn", run: str = RUN) -> None:
        """A lock whose rollout's execution ended (stopped by hand: no Catch ran)."""
        self.store.acquire(endpoint, run, PACKAGE, self.clock.now().timestamp())
        self.executions.statuses[run] = "ABORTED"

    def lock(self, endpoint: str = "churn") -> dict[str, str] | None:
        return self.store.lock_of(endpoint)


def variant(name: str) -> dict[str, Any]:
    return {"VariantName": name, "ModelName": f"churn-{name}", "InitialInstanceCount": 2, "InitialVariantWeight": 1.0}


@pytest.fixture
def world() -> World:
    """v1 is the recorded champion (autoscaled); the endpoint serves v2 alone, in its post-promotion watch,
    with v2's scaling target registered and v1's deregistered."""
    made = World()
    made.endpoints.configs[CHAMPION_CONFIG] = {
        "EndpointConfigName": CHAMPION_CONFIG,
        "ProductionVariants": [variant("v1")],
    }
    made.endpoints.configs[CANDIDATE_CONFIG] = {
        "EndpointConfigName": CANDIDATE_CONFIG,
        "ProductionVariants": [variant("v2")],
    }
    made.endpoints.create_endpoint("churn", CANDIDATE_CONFIG, {})
    made.endpoints.register_scaling("churn", "v2", **SCALING)
    made.endpoints.calls.clear()
    champion = {"package": PACKAGE[:-1] + "1", "model": "churn-v1", "variant": "v1", "config": CHAMPION_CONFIG}
    made.store.set_champion("churn", champion | {"scaling": json.dumps(SCALING)})
    return made


def test_a_rollout_that_still_runs_is_left_alone(world: World) -> None:
    # Given a lock whose execution is RUNNING
    world.stranded()
    world.executions.statuses[RUN] = RUNNING
    # When the sweep runs
    outcomes = world.sweep()
    # Then the endpoint, the lock and the topic are untouched
    assert outcomes == {"running": 1}
    assert world.endpoints.calls == []
    assert world.lock() is not None
    assert world.store.records("churn") == []
    assert world.topic.sent == []


def test_a_rollout_handing_over_to_a_running_successor_is_left_alone(world: World) -> None:
    # Given a long stage whose execution has ended after naming its successor on the lock, which runs
    world.stranded()
    world.store.hand_over("churn", RUN, f"{RUN}-c1", world.clock.now().timestamp())
    world.executions.statuses[f"{RUN}-c1"] = RUNNING
    # When the sweep runs, then the rollout counts as running
    assert world.sweep() == {"running": 1}
    assert world.endpoints.calls == []
    assert world.lock() is not None


def test_a_hand_over_completed_since_the_scan_is_judged_as_it_is_now(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a scan that saw the old execution (ended, no successor yet) just before the successor took over
    world.stranded()
    scanned = world.store.locks()
    world.store.hand_over("churn", RUN, f"{RUN}-c1", world.clock.now().timestamp())
    world.store.take_over("churn", RUN, f"{RUN}-c1", world.clock.now().timestamp())
    world.executions.statuses[f"{RUN}-c1"] = RUNNING
    monkeypatch.setattr(world.store, "locks", lambda: scanned)
    # When the sweep runs, then it re-reads the lock and leaves the running successor alone
    assert world.sweep() == {"running": 1}
    assert world.endpoints.calls == []


def test_an_endpoint_mid_update_waits_for_a_later_sweep(world: World) -> None:
    # Given a stranded lock on an endpoint that is Updating
    world.stranded()
    world.endpoints.live["churn"]["EndpointStatus"] = "Updating"
    # When the sweep runs
    outcomes = world.sweep()
    # Then nothing changes until the update has settled, and the lock stays taken
    assert outcomes == {"waiting": 1}
    assert world.endpoints.calls == []
    assert world.lock() is not None
    assert world.topic.sent == []


def test_a_stranded_endpoint_is_restored_to_the_champion_config_scaling_deregistered_first(world: World) -> None:
    # Given a rollout stopped during its watch: the endpoint serves v2 alone, with v2's scaling target
    world.stranded()
    # When the sweep runs
    outcomes = world.sweep()
    # Then v2's scaling target goes before the update that removes v2 (SageMaker refuses it otherwise)
    assert outcomes == {"restored": 1}
    assert world.endpoints.calls == [
        ("deregister_scaling", "churn", "v2"),
        ("update_endpoint", "churn", CHAMPION_CONFIG),
    ]
    assert world.endpoints.live["churn"]["EndpointConfigName"] == CHAMPION_CONFIG
    # and the lock stays taken, noting the restore, until a later sweep sees it settled
    assert (world.lock() or {}).get("restoring") == CHAMPION_CONFIG
    (entry,) = world.store.records("churn")
    assert (entry["event"], entry["action"], entry["config"], entry["execution_status"]) == (
        "reconciled",
        "restored",
        CHAMPION_CONFIG,
        "ABORTED",
    )


def test_the_next_sweep_gives_the_champion_its_scaling_back_and_releases(world: World) -> None:
    # Given an endpoint the previous sweep restored
    world.stranded()
    world.sweep()
    world.endpoints.calls.clear()
    # When the next sweep runs
    outcomes = world.sweep()
    # Then the champion's scaling target is registered again and the endpoint is free
    assert outcomes == {"released": 1}
    assert world.endpoints.calls == [("register_scaling", "churn", "v1")]
    assert world.endpoints.scaling[("churn", "v1")] == {"minimum": 2, "maximum": 4, "target": 750.0}
    assert world.lock() is None
    assert [(e["action"], e["scaling_registered"]) for e in world.store.records("churn")] == [
        ("restored", False),
        ("released", True),
    ]


def test_with_nothing_to_restore_the_lock_is_released(world: World) -> None:
    # Given a first deployment that died before any champion was recorded
    world.store.items.pop(("churn", "champion"))
    world.stranded()
    # When the sweep runs
    outcomes = world.sweep()
    # Then the endpoint is left as it is and freed
    assert outcomes == {"released": 1}
    assert world.endpoints.calls == []
    assert world.lock() is None


def test_a_lock_gone_since_the_scan_is_left_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a scan that saw a lock its rollout released just after
    world.stranded()
    scanned = world.store.locks()
    world.store.release("churn", RUN)
    monkeypatch.setattr(world.store, "locks", lambda: scanned)
    # When the sweep runs, then there is nothing to settle
    assert world.sweep() == {"gone": 1}
    assert world.endpoints.calls == []
    assert world.topic.sent == []


def test_one_lock_that_cannot_be_settled_does_not_stop_the_others(world: World) -> None:
    # Given two stranded locks, and the first one's execution cannot be described
    world.stranded("broken", "broken-v2-run")
    world.executions.unreachable.add("broken-v2-run")
    world.stranded()
    # When the sweep runs, it settles the other, then reports the one it could not
    with pytest.raises(ReconcileFailed, match=r"rollout locks of broken \(settled: \{'restored': 1\}\)"):
        world.sweep()
    assert (world.lock() or {}).get("restoring") == CHAMPION_CONFIG
    assert world.lock("broken") is not None


def test_the_clean_up_is_notified_once(world: World) -> None:
    # Given a stranded rollout whose execution no longer exists
    world.stranded()
    world.executions.statuses.pop(RUN)
    # When one sweep restores the endpoint and the next releases it
    world.sweep()
    world.sweep()
    # Then one notification said so, when the clean-up began
    ((subject, message),) = world.topic.sent
    assert subject == "Shepherd: a missing rollout was cleaned up"
    assert (message["event"], message["endpoint"], message["run"], message["execution_status"]) == (
        "RolloutReconciled",
        "churn",
        RUN,
        "MISSING",
    )
    assert (message["action"], message["config"]) == ("restored", CHAMPION_CONFIG)
    assert list(message)[:3] == ["reason", "detail", "event"]
    assert message["reason"] == (
        f"The rollout {RUN} on churn ended missing without its clean-up: ReconcileRollouts is restoring the "
        f"champion's config {CHAMPION_CONFIG}"
    )


def test_a_release_without_a_restore_says_the_lock_was_freed(world: World) -> None:
    # Given a stranded rollout on an endpoint already serving the champion's config
    world.endpoints.deregister_scaling("churn", "v2")
    world.endpoints.update_endpoint("churn", CHAMPION_CONFIG, exclude_weights=True)
    world.stranded()
    # When the sweep runs
    world.sweep()
    # Then the notification says the lock was freed, and on which config the endpoint serves
    ((_, message),) = world.topic.sent
    assert message["reason"] == (
        f"The rollout {RUN} on churn ended aborted without its clean-up: ReconcileRollouts freed the endpoint's lock"
    )
    assert message["detail"] == f"The endpoint serves the champion's config {CHAMPION_CONFIG}."


@pytest.mark.parametrize(("renewals", "told"), [(0, 0), (1, 1)])
def test_a_failed_rollout_that_never_changed_the_endpoint_is_freed_without_a_second_notice(
    world: World, renewals: int, told: int
) -> None:
    # Given a FAILED rollout on the champion's config; with its lock never renewed (no endpoint change, no judge
    # call) it failed in Prepare, whose failure path told RolloutFailed already
    world.endpoints.deregister_scaling("churn", "v2")
    world.endpoints.update_endpoint("churn", CHAMPION_CONFIG, exclude_weights=True)
    world.stranded()
    world.executions.statuses[RUN] = "FAILED"
    for _ in range(renewals):
        world.store.renew("churn", RUN, world.clock.now().timestamp())
    # When the sweep runs
    assert world.sweep() == {"released": 1}
    # Then the lock is freed; only a rollout that went further is told of again
    assert world.lock() is None
    assert len(world.topic.sent) == told
