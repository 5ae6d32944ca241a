"""The Rollout's rollback and lock paths on the local cloud, one test per path of statemachines/rollout.asl.json:
a candidate that fails in A/B is rolled back weights first (RolledBack); one slower than the latency threshold is
rolled back in shadow and the restore fails (RollbackFailed, then the reconciler); a new approval supersedes the
running rollout (Inconclusive); a rollout that lost its lock stops (LockLost).

Each candidate that must be rolled back fails every request it serves, or is slower than the threshold on every
one: the verdicts do not depend on how loaded the machine is. The steps are unit-tested on fakes
(tests/unit/test_rollout_steps.py) and every fault along the state machine in tests/faults/; these tests prove
the paths on the real services, asserting the states each execution entered. What the end-to-end tests no longer
repeat, and where it is held: a rollback during the watch with the champion's scaling target restored
(test_rollout_steps.py::test_a_rollback_during_the_watch_deregisters_the_challenger_s_scaling_first, the faults'
watch rows, test_judge_baseline.py against the old champion's rate); a rollback on quality in full
(handlers/test_judge_stage.py's quality tests, test_rollout_quality.py; the demo's test asserts the real capture
and ground truth reach the judge).
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
    rollout_config,
    serving_script,
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


SLOW = serving_script(
    """def predict_fn(data, model):  # a candidate that takes at least half a second to answer, whatever the load
    import time

    time.sleep(0.5)
    return _predict(data, model)
"""
)


def test_a_candidate_slower_than_the_latency_threshold_is_rolled_back_in_shadow_and_a_failed_restore_reconciled(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a latency threshold of 250 ms: the champion answers in a few ms (tens on a loaded 2-core machine),
    # and alpha 0.01 on latency, the rollback's only question (its verdict is ROLLBACK or nothing)
    model = unique("lat")
    config = rollout_config(model)
    config["rollout"]["judge"]["latency"] = JUDGE | {"threshold_ms": 250, "alpha": 0.01}
    champion = _deployed(app, churn_package, model, config)
    # and a candidate that takes half a second over every answer, in shadow: judged CONTINUE while no request
    # arrives
    v2 = app.register(model, churn_package, inference=SLOW)
    wait_for(lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60)
    # and the endpoint's next update, the rollback's restore, set to fail
    app.sagemaker.add_tags(
        ResourceArn=champion["EndpointArn"], Tags=[{"Key": "shepherd:fault:fail-next-update", "Value": "true"}]
    )

    # One request a second: the shadow answers every copy within the second, so no backlog builds up (the local
    # cloud's replaced fleet waits for its queued copies, and the reconciler's restore would wait for them)
    with Traffic(cloud, model, rate=1.0) as traffic:
        # When clients call the endpoint, shadow rolls the candidate back on latency alone
        failed = app.rollout(model, 2)
        (verdict,) = [r for r in app.records(model) if r["package"] == v2 and r.get("verdict") == "ROLLBACK"]
        assert verdict["stage"] == "shadow"
        assert [m["metric"] for m in verdict["statistics"] if m["verdict"] == "ROLLBACK"] == ["latency"]
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
    # and no client waited for the slow candidate
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

    # When another version is approved meanwhile, whose rollout switches directly (shadow and A/B off: the promotion
    # path is test_workflow_rollout.py's; here, that it waits for the endpoint)
    config["rollout"]["shadow"]["enabled"] = False
    app.upload_project(model, config)
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
    promoted = app.rollout(model, 3)
    assert promoted["status"] == "SUCCEEDED", promoted
    assert app.path(promoted) == STARTED + PROMOTED
    (queued,) = app.rollouts(f"{model}-v3-")
    tries = task_attempts(app.history(queued["executionArn"]), "Prepare")
    assert [t.get("error") for t in tries[:-1]] == ["LockHeld"] * (len(tries) - 1)
    assert len(tries) >= 2
    events = [(r["package"], r["event"]) for r in app.records(model)]
    assert events.index((v2, "inconclusive")) < events.index((v3, "started")), events
    assert app.serving(model) == [("v3", 1.0)]
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] != champion["EndpointConfigName"]


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
    assert app.path(lost) == [*STARTED, "EnterStage", "Entered", "StageWait", "Judge", *LOCK_LOST]
    assert not any(event == "rolling-back" for event, *_ in _events(app, model, v2))
    assert _approval(app, v2) == "Approved"
