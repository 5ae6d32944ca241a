"""The Rollout's rollback and lock paths on the local cloud: a candidate that fails in A/B, one that fails once
promoted (the watch), one slower than the latency threshold on every request, a restore that fails (RollbackFailed,
then the reconciler), a new approval that supersedes the running rollout, and a rollout that lost its lock.

Each candidate that must be rolled back fails every request it serves, or is slower than the threshold on every
one: the verdicts do not depend on how loaded the machine is. A trigger that must act at a stage's start (a
candidate that turns bad once it serves alone) runs in the traffic's own thread before every request, so no
request of that stage reaches the candidate before it. The steps are unit-tested on fakes
(tests/unit/test_rollout_steps.py); these tests prove the paths on the real services, asserting the states each
execution entered.
"""

from __future__ import annotations

import pytest

from .conftest import finished_execution, wait_for
from .workflow import (
    FAILING,
    INCONCLUSIVE,
    JUDGE,
    PROMOTED,
    ROLLED_BACK,
    STAGE,
    STARTED,
    Traffic,
    failing_once,
    rollout_config,
    serving_script,
    stages_passed,
    task_attempts,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCK_LOST = ["DescribeLockLost", "NotifyLockLost", "LockLost"]
ROLLBACK_FAILED = ["DescribeRollbackFailure", "NotifyRollbackFailure", "RollbackFailed"]


def _deployed(app, package: dict, model: str, config: dict) -> dict:
    """``model``'s first version deployed (the first-deployment path); its endpoint as DescribeEndpoint gives it."""
    app.upload_project(model, config)
    app.register(model, package)
    first = app.rollout(model, 1)
    assert first["status"] == "SUCCEEDED", first
    return app.sagemaker.describe_endpoint(EndpointName=model)


def _events(app, model: str, package: str) -> list[tuple]:
    return [
        (r["event"], r.get("step"), r.get("stage"), r.get("verdict"))
        for r in app.records(model)
        if r["package"] == package
    ]


def _approval(app, package: str) -> str:
    return app.sagemaker.describe_model_package(ModelPackageName=package)["ModelApprovalStatus"]


def test_a_candidate_that_fails_in_ab_is_rolled_back_weights_first_to_the_whole_champion(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a champion serving clients, and rollouts that go straight to A/B 50 %
    model = unique("ab")
    champion = _deployed(app, churn_package, model, rollout_config(model, shadow=False))

    with Traffic(cloud, model) as traffic:
        # When a candidate that fails every request it serves takes half the traffic
        v2 = app.register(model, churn_package, inference=FAILING)
        rolled_back = app.rollout(model, 2)
        failures_at_rollback, sent_at_rollback = len(traffic.unexpected), traffic.sent
        wait_for(lambda: traffic.sent > sent_at_rollback + 100, timeout=30)

    # Then it is rolled back at its A/B stage's verdict: weights first (seconds, no redeploy), then the
    # champion's config; the candidate is rejected
    assert rolled_back["status"] == "FAILED"
    assert app.path(rolled_back) == STARTED + STAGE + ROLLED_BACK
    events = _events(app, model, v2)
    assert ("verdict", None, "ab", "ROLLBACK") in events
    assert events.index(("rolling-back", "weights", None, None)) < events.index(("rolling-back", "config", None, None))
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == champion["EndpointConfigName"]
    assert app.serving(model) == [("v1", 1.0)]
    assert _approval(app, v2) == "Rejected"
    # clients met its errors while it served half the traffic, and none once it was rolled back
    assert failures_at_rollback > 0
    assert all("injected fault" in failure for failure in traffic.unexpected), traffic.unexpected[:3]
    assert len(traffic.unexpected) == failures_at_rollback


def test_a_candidate_that_fails_once_it_serves_alone_is_caught_by_the_watch_and_the_champion_restored(
    rollout_app, churn_package, cloud, tmp_path
):
    app = rollout_app
    # Given an autoscaled champion serving clients, and rollouts through shadow, full and the watch
    model = unique("watch")
    config = rollout_config(model, ab=False, watch=True, autoscaling=True)
    champion = _deployed(app, churn_package, model, config)
    scaling = cloud.client("application-autoscaling")

    def targets() -> set[str]:
        listed = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        return {t["ResourceId"].rsplit("/", 1)[1] for t in listed if f"endpoint/{model}/" in t["ResourceId"]}

    flag = tmp_path / "turn-bad"

    def turn_bad_once_alone() -> None:
        if not flag.exists() and [name for name, _ in app.serving(model)] == ["v2"]:
            flag.touch()

    with Traffic(cloud, model, before_each=turn_bad_once_alone) as traffic:
        # When a candidate passes shadow and full, then fails every request once it serves alone (the watch);
        # the baseline of both: the champion's requests in shadow
        v2 = app.register(model, churn_package, inference=failing_once(flag))
        rolled_back = app.rollout(model, 2)

    # Then the watch rolls it back: the champion's config, variant and scaling target are back
    assert rolled_back["status"] == "FAILED"
    assert app.path(rolled_back) == STARTED + stages_passed(2) + STAGE + ROLLED_BACK
    events = _events(app, model, v2)
    assert ("verdict", None, "full", "PROMOTE") in events
    assert ("verdict", None, "watch", "ROLLBACK") in events
    (verdict,) = [r for r in app.records(model) if r["package"] == v2 and r.get("verdict") == "ROLLBACK"]
    assert "old champion" in verdict["explanation"]
    assert verdict["statistics"][0]["champion_samples"] > 0  # judged against the champion's baseline
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == champion["EndpointConfigName"]
    assert app.serving(model) == [("v1", 1.0)]
    assert targets() == {"v1"}
    assert _approval(app, v2) == "Rejected"
    # clients met its errors only while it served alone
    assert all("turned bad" in failure for failure in traffic.unexpected), traffic.unexpected[:3]


SLOW = serving_script(
    """def predict_fn(data, model):  # a candidate that takes at least half a second to answer, whatever the load
    import time

    time.sleep(0.5)
    return _predict(data, model)
"""
)


def test_a_candidate_slower_than_the_latency_threshold_is_rolled_back_in_shadow(rollout_app, churn_package, cloud):
    app = rollout_app
    # Given a latency threshold of 250 ms: the champion answers in a few ms (tens on a loaded 2-core machine),
    # and alpha 0.01 on latency, this test's only question (its verdict is ROLLBACK or nothing)
    model = unique("lat")
    config = rollout_config(model)
    config["rollout"]["judge"]["latency"] = JUDGE | {"threshold_ms": 250, "alpha": 0.01}
    champion = _deployed(app, churn_package, model, config)

    # One request a second: the shadow answers every copy within the second, so no backlog builds up (the local
    # cloud's replaced fleet waits for its queued copies, and the rollback's restore would wait for them)
    with Traffic(cloud, model, rate=1.0) as traffic:
        # When a candidate takes half a second over every answer
        v2 = app.register(model, churn_package, inference=SLOW)
        slow = app.rollout(model, 2)

    # Then shadow rolls it back on latency alone, and no client waited for it
    assert slow["status"] == "FAILED"
    assert app.path(slow) == STARTED + STAGE + ROLLED_BACK
    (verdict,) = [r for r in app.records(model) if r["package"] == v2 and r.get("verdict") == "ROLLBACK"]
    assert verdict["stage"] == "shadow"
    assert [m["metric"] for m in verdict["statistics"] if m["verdict"] == "ROLLBACK"] == ["latency"]
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == champion["EndpointConfigName"]
    assert traffic.unexpected == []


def test_a_restore_that_fails_is_reported_as_a_failed_rollback_and_retried_by_the_reconciler(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    model = unique("restore")
    champion = _deployed(app, churn_package, model, rollout_config(model))
    # Given a candidate that fails every request, in shadow: judged CONTINUE while no request arrives
    app.register(model, churn_package, inference=FAILING)
    wait_for(lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60)
    # and the endpoint's next update, the rollback's restore, set to fail
    app.sagemaker.add_tags(
        ResourceArn=champion["EndpointArn"], Tags=[{"Key": "shepherd:fault:fail-next-update", "Value": "true"}]
    )

    with Traffic(cloud, model) as traffic:
        # When clients call the endpoint, the candidate fails their copies and is rolled back
        failed = app.rollout(model, 2)
        # Then the restore's failure is reported as a failed rollback, never as a success
        assert failed["status"] == "FAILED"
        assert failed.get("error") == "RollbackFailed"
        assert app.path(failed) == STARTED + STAGE + ["RollbackWeights", "RollbackConfig", *ROLLBACK_FAILED]
        notification = app.notifications("RollbackFailed", "", match=lambda n: n.get("endpoint") == model)
        assert notification["reason"].startswith(f"ROLLBACK FAILED on {model}: ")
        assert "did not take" in notification["reason"] + notification["detail"]
        # and the reconciler then restores the champion's config and frees the endpoint
        wait_for(
            lambda: (
                (d := app.sagemaker.describe_endpoint(EndpointName=model))["EndpointConfigName"]
                == champion["EndpointConfigName"]
                and d["EndpointStatus"] == "InService"
            ),
            timeout=60,
        )
        wait_for(lambda: app.lock(model) is None, timeout=60)
    assert any(r["event"] == "reconciled" and r["action"] == "restored" for r in app.records(model))
    assert traffic.unexpected == []


def test_with_supersede_a_new_approval_ends_the_running_rollout_without_rejecting_it_then_rolls_out(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    model = unique("sup")
    config = rollout_config(model, ab=False)  # shadow -> full
    config["rollout"]["on_new_approval"] = "supersede"
    champion = _deployed(app, churn_package, model, config)
    # Given a rollout in shadow, judged CONTINUE while no request arrives
    v2 = app.register(model, churn_package)
    (running,) = wait_for(lambda: app.rollouts(f"{model}-v2-"), timeout=30)
    wait_for(lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60)

    # When another version is approved meanwhile
    v3 = app.register(model, churn_package)

    # Then the running rollout ends at its next judge call, INCONCLUSIVE: restored, its candidate not rejected
    superseded = finished_execution(cloud, running["executionArn"], timeout=120)
    assert (superseded["status"], superseded.get("error")) == ("FAILED", "Inconclusive")
    assert app.path(superseded) == STARTED + STAGE + INCONCLUSIVE
    assert _approval(app, v2) == "Approved"
    notification = app.notifications("RolloutInconclusive", model, match=lambda n: n.get("package") == v2)
    assert notification["reason"].startswith("A person must decide")
    assert superseded["cause"] == notification["reason"]
    (verdict,) = [r for r in app.records(model) if r["package"] == v2 and r.get("verdict") not in (None, "CONTINUE")]
    assert verdict["verdict"] == "INCONCLUSIVE"
    assert verdict["explanation"].startswith(f"Aborted by superseded by {v3}")
    # and the new version, queued until the endpoint was free, rolls out
    with Traffic(cloud, model) as traffic:
        promoted = app.rollout(model, 3)
    assert promoted["status"] == "SUCCEEDED", promoted
    assert app.path(promoted) == STARTED + stages_passed(2) + PROMOTED
    (queued,) = app.rollouts(f"{model}-v3-")
    tries = task_attempts(app.history(queued["executionArn"]), "Prepare")
    assert [t.get("error") for t in tries[:-1]] == ["LockHeld"] * (len(tries) - 1)
    assert len(tries) >= 2
    events = [(r["package"], r["event"]) for r in app.records(model)]
    assert events.index((v2, "inconclusive")) < events.index((v3, "started")), events
    assert app.serving(model) == [("v3", 1.0)]
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] != champion["EndpointConfigName"]
    assert traffic.unexpected == []


def test_a_rollout_that_lost_its_lock_stops_at_its_next_step_and_changes_nothing(rollout_app, churn_package, cloud):
    app = rollout_app
    model = unique("lost")
    _deployed(app, churn_package, model, rollout_config(model))
    # Given a rollout in shadow, judged CONTINUE while no request arrives
    v2 = app.register(model, churn_package)
    (running,) = wait_for(lambda: app.rollouts(f"{model}-v2-"), timeout=30)
    wait_for(lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60)

    # When another rollout holds the endpoint's lock (as once this one's lease had expired)
    lock = app.lock(model)
    assert lock is not None
    app.cloud.client("dynamodb").put_item(
        TableName=app.outputs["RolloutsTableName"],
        Item=lock | {"owner": {"S": f"{model}-other"}, "execution": {"S": f"{model}-other"}},
    )

    # Then its next judge call finds the lock lost, and the rollout stops: no rollback, no rejection
    lost = finished_execution(cloud, running["executionArn"], timeout=60)
    assert lost["status"] == "FAILED"
    assert app.path(lost) == [*STARTED, "EnterStage", "StageWait", "Judge", *LOCK_LOST]
    assert not any(event == "rolling-back" for event, *_ in _events(app, model, v2))
    assert _approval(app, v2) == "Approved"
