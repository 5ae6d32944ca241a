"""One test per fault in a rollout (issue 20): the endpoint ends on the last good model, no client request fails
because of the system, and exactly one clear notification says what happened. Bad answers a faulty candidate
served are counted in the row, not excused. The harness is tests/faults/driver.py."""

from __future__ import annotations

import pytest
from shepherd.errors import EndpointBusy
from shepherd.rollout import steps
from shepherd.rollout.ports import LockHeld

from tests.unit.test_rollout_steps import CONFIG

from .conftest import Row
from .driver import (
    Candidate,
    Harness,
    Hook,
    LambdaCrash,
    Stopped,
    Throttled,
    abort,
    assert_one_clear_notification,
)

STAGES = ["shadow", "ab 10%", "ab 25%", "ab 50%", "full", "watch"]


def on_champion(harness: Harness, model: str = "churn-v1", variant: str = "v1") -> None:
    """DescribeEndpoint shows the last good config serving alone, clients' answers come from its model, no lock."""
    harness.settle_down()
    seen = harness.check()
    assert (seen["status"], seen["variants"], seen["shadow"]) == ("InService", [variant], False)
    assert seen["config"] == seen["champion_config"]
    assert seen["answered_by"] == [model]
    assert seen["lock"] is None


def at_judge_of(stage: int, action: Hook) -> dict[str, Hook]:
    """A hook that acts at the first judge call of the stage ``stage`` (0-based)."""
    calls = {"n": 0}

    def hook(harness: Harness) -> None:
        entered = harness.path.count("EnterStage")
        if entered == stage + 1 and calls["n"] == 0:
            calls["n"] += 1
            action(harness)

    return {"Judge": hook}


def at_entry_of(stage: int, action: Hook, when: str = "EnterStage") -> dict[str, Hook]:
    """A hook that acts on the entry of the stage ``stage`` (or after it, when ``when`` is "EnterStage:after")."""
    calls = {"n": 0}

    def hook(harness: Harness) -> None:
        if harness.path.count("EnterStage") == stage + 1 and calls["n"] == 0:
            calls["n"] += 1
            action(harness)

    return {when: hook}


# ---------------------------------------------------------------- control


def test_no_fault_promotes_with_no_failed_request(row: Row) -> None:
    harness = Harness()
    assert harness.run() == "Done"
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    assert harness.clients.failed == harness.clients.bad == 0
    row("none (control)", "-", "promoted", harness.clients.failed, harness.clients.bad, "-", told["reason"])


# ---------------------------------------------------------------- a faulty candidate


@pytest.mark.parametrize(
    ("fault", "candidate"),
    [
        ("candidate answers 5XX on 20 % of requests", Candidate(error_share=0.2)),
        ("candidate answers 5XX on 2 % of requests", Candidate(error_share=0.02)),
        ("candidate 3x slower (past judge.latency.threshold_ms)", Candidate(slowdown=3.0)),
        ("candidate crashes after 3000 requests", Candidate(crash_after=3000)),
    ],
)
def test_a_faulty_candidate_is_rolled_back(row: Row, fault: str, candidate: Candidate) -> None:
    harness = Harness(candidate=candidate)
    assert harness.run() == "RolledBack"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert harness.clients.failed == 0
    pkg = harness.endpoints.packages[harness.world.store.records("churn")[-1]["package"]]
    assert pkg["ModelApprovalStatus"] == "Rejected"
    stage = STAGES[harness.path.count("EnterStage") - 1]
    row(
        fault,
        "candidate model",
        f"rolled back in {stage}",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


# ---------------------------------------------------------------- SageMaker refuses or fails a change


@pytest.mark.parametrize("stage", [0, 1, 5], ids=["shadow", "ab10", "watch"])
def test_an_endpoint_update_that_fails_rolls_back(row: Row, stage: int) -> None:
    def fail(harness: Harness) -> None:
        harness.endpoints.failing_updates = 1

    harness = Harness(hooks=at_entry_of(stage, fail))
    assert harness.run() == "RolledBack"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert "EndpointUpdateFailed" in told["reason"]
    assert harness.clients.failed == 0
    row(
        "endpoint update fails (SageMaker keeps the old config)",
        f"UpdateEndpoint, {STAGES[stage]}",
        "rolled back",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_a_failed_endpoint_creation_is_told_and_leaves_no_lock(row: Row) -> None:
    harness = Harness(champion=False)
    harness.endpoints.failing_create = True
    assert harness.run(1) == "FirstDeploymentFailed"
    told = assert_one_clear_notification(harness, "RolloutFailed")
    assert "EndpointFailed" in told["reason"]
    assert harness.world.store.lock_of("churn") is None
    assert harness.clients.failed == 0  # no client had an endpoint to call yet
    row(
        "endpoint create fails",
        "CreateEndpoint (first deployment)",
        "failed, told",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_a_fixed_package_deploys_after_a_failed_endpoint_creation() -> None:
    harness = Harness(champion=False)
    harness.endpoints.failing_create = True
    harness.run(1)
    assert harness.endpoints.describe_endpoint("churn") is None  # the failure path deleted the Failed endpoint
    harness.endpoints.failing_create = False
    harness.topic.published.clear()
    assert harness.run(2) == "Done"
    on_champion(harness, "churn-v2", "v2")
    assert_one_clear_notification(harness, "RolloutPromoted")


# ---------------------------------------------------------------- SageMaker's events


@pytest.mark.parametrize(
    ("fault", "events", "delay"),
    [
        ("SageMaker event lost (every one)", "lost", 0.0),
        ("SageMaker event duplicated", "twice", 0.0),
        ("SageMaker events out of order (a stale one first)", "stale-first", 0.0),
        ("SageMaker event delayed 2 h (past the 1 h wait)", "delayed", 7200.0),
    ],
)
def test_lost_late_duplicate_and_stale_events_change_nothing(row: Row, fault: str, events: str, delay: float) -> None:
    harness = Harness(events=events, event_delay=delay)
    assert harness.run() == "Done"
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    assert harness.clients.failed == 0
    how = "ReconcileJobs settles the wait (every 10 min)" if events in ("lost", "delayed") else "settled once"
    row(
        fault,
        "every endpoint change",
        f"promoted; {how}",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_an_endpoint_change_slower_than_the_wait_times_out_and_rolls_back(row: Row) -> None:
    def slow(harness: Harness) -> None:
        harness.endpoints.live["churn"]["EndpointStatus"] = "Updating"
        harness.endpoints.settles_at = harness.world.clock.now().timestamp() + 5400

    harness = Harness(hooks=at_entry_of(0, slow, "EnterStage:after"))
    assert harness.run() == "RolledBack"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert "States.Timeout" in told["reason"]
    assert harness.clients.failed == 0
    row(
        "SageMaker event delayed past the wait (update takes 90 min)",
        "UpdateEndpoint, shadow",
        "rolled back (EndpointBusy retried until InService)",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


# ---------------------------------------------------------------- a Lambda function crashes


def crash_once(state: str, error: Exception) -> dict[str, Hook]:
    fired = {"n": 0}

    def hook(harness: Harness) -> None:
        if fired["n"] == 0:
            fired["n"] += 1
            raise error

    return {f"{state}:after": hook}


@pytest.mark.parametrize("state", ["EnterStage", "Judge", "Finalize"])
def test_a_transient_lambda_error_after_a_step_s_side_effects_is_retried(row: Row, state: str) -> None:
    """Lambda.ServiceException after the step did its work: Step Functions retries it; the step is idempotent."""
    error = type("ServiceException", (Exception,), {"error": "Lambda.ServiceException"})("Lambda: 500")
    harness = Harness(hooks=crash_once(state, error))
    assert harness.run() == "Done"
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    assert harness.clients.failed == 0
    row(
        "Lambda service error mid-step (retried)",
        state,
        "promoted",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


@pytest.mark.parametrize(
    "state", ["EnterStage", "Judge", "Finalize", "RollbackWeights", "RollbackConfig", "VerifyRollback"]
)
def test_a_lambda_crash_after_a_step_s_side_effects(row: Row, state: str) -> None:
    """Runtime.ExitError: every step after Prepare retries it (rollout.asl.json); the steps are idempotent."""
    hooks = crash_once(state, LambdaCrash("RequestId: 1 Error: Runtime exited with error: signal: killed"))
    candidate = Candidate(error_share=0.2) if state.startswith(("Rollback", "Verify")) else Candidate()
    harness = Harness(candidate=candidate, hooks=hooks)
    ended = harness.run()
    on_champion(harness, *(("churn-v2", "v2") if ended == "Done" else ("churn-v1", "v1")))
    events = [n["event"] for n in harness.topic.published]
    assert harness.clients.failed == 0
    assert len(events) == 1, events
    told = harness.topic.published[0]
    assert told["event"] in ("RolloutPromoted", "RolloutRolledBack")
    outcome = {"Done": "promoted (retried)", "RolledBack": "rolled back"}.get(ended, ended)
    row("Lambda crashes mid-step", state, outcome, harness.clients.failed, harness.clients.bad, "-", told["reason"])


def test_a_lambda_crash_after_prepare_took_the_lock() -> None:
    harness = Harness(hooks=crash_once("Prepare", LambdaCrash("Runtime exited")))
    assert harness.run() == "NotStarted"
    assert harness.world.store.lock_of("churn") is None  # ReleaseUnstarted freed it, not the reconciler
    on_champion(harness)
    assert_one_clear_notification(harness, "RolloutFailed")


def test_a_lambda_crash_after_promoted_released_the_lock() -> None:
    harness = Harness(hooks=crash_once("Promoted", LambdaCrash("Runtime exited")))
    harness.run()
    on_champion(harness, "churn-v2", "v2")
    assert ("churn", "v2") in harness.endpoints.scaling
    assert_one_clear_notification(harness, "RolloutPromoted")


# ---------------------------------------------------------------- throttling


def throttle(times: int, stage: int) -> Hook:
    """ThrottlingException on the stage's endpoint change: A/B steps after the first move weights only."""
    method = "update_weights" if 2 <= stage <= 4 else "update_endpoint"

    def refuse(harness: Harness) -> None:
        harness.endpoints.refuse[method] = [Throttled("ThrottlingException: Rate exceeded") for _ in range(times)]

    return refuse


@pytest.mark.parametrize("stage", range(6), ids=STAGES)
def test_api_throttling_during_a_stage_change_is_retried(row: Row, stage: int) -> None:
    harness = Harness(hooks=at_entry_of(stage, throttle(3, stage)))
    assert harness.run() == "Done"
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    assert harness.clients.failed == 0
    row(
        "API throttling (3 in a row)",
        f"stage change, {STAGES[stage]}",
        "promoted (retried)",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_throttling_past_the_retries_rolls_back(row: Row) -> None:
    harness = Harness(hooks=at_entry_of(1, throttle(5, 1)))
    assert harness.run() == "RolledBack"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert "TransientError" in told["reason"]
    row(
        "API throttling past 4 retries",
        "stage change, ab 10%",
        "rolled back",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


# ---------------------------------------------------------------- people: approvals, aborts, StopExecution


@pytest.mark.parametrize("stage", range(6), ids=STAGES)
def test_an_abort_during_a_stage_rolls_back(row: Row, stage: int) -> None:
    harness = Harness(hooks=at_judge_of(stage, abort()))
    assert harness.run() == "RolledBack"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutRolledBack")
    assert "Aborted by alice: incident" in told["reason"]
    assert harness.clients.failed == 0
    row(
        "abort (shepherd rollout abort)",
        STAGES[stage],
        "rolled back",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


@pytest.mark.parametrize("stage", range(6), ids=STAGES)
def test_a_rollout_stopped_from_outside_is_cleaned_up_by_the_reconciler(row: Row, stage: int) -> None:
    def stop(harness: Harness) -> None:
        raise Stopped

    harness = Harness(hooks=at_judge_of(stage, stop))
    assert harness.run() == "Stopped"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutReconciled")
    assert harness.clients.failed == 0
    row(
        "StopExecution",
        STAGES[stage],
        "restored by ReconcileRollouts",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_an_approval_during_a_rollout_queues(row: Row) -> None:
    queued: list[Exception] = []

    def approve_v3(harness: Harness) -> None:
        arn = harness.world.approve(3)
        try:
            steps.prepare(harness.world.deps, package_arn=arn, run="churn-v3-run", overrides=None, manual=False)
        except LockHeld as exc:  # Prepare's Retry on LockHeld: it starts once this rollout ends
            queued.append(exc)

    harness = Harness(hooks=at_judge_of(1, approve_v3))
    assert harness.run() == "Done"
    assert len(queued) == 1
    promoted_v2 = assert_one_clear_notification(harness, "RolloutPromoted")
    harness.topic.published.clear()
    assert harness.run(3) == "Done"
    on_champion(harness, "churn-v3", "v3")
    assert_one_clear_notification(harness, "RolloutPromoted")
    assert harness.clients.failed == 0
    row(
        "approval during a rollout (on_new_approval: queue)",
        "ab 10%",
        "v2 promoted, then v3",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        promoted_v2["reason"],
    )


def test_an_approval_during_a_rollout_supersedes(row: Row) -> None:
    def approve_v3(harness: Harness) -> None:
        arn = harness.world.approve(3)
        with pytest.raises(LockHeld):
            steps.prepare(harness.world.deps, package_arn=arn, run="churn-v3-run", overrides=None, manual=False)

    harness = Harness(hooks=at_judge_of(1, approve_v3))
    harness.world.config(
        harness.world.objects.objects[("shepherd-data", "models/churn/shepherd.yaml")].decode()
        + "  on_new_approval: supersede\n"
    )
    assert harness.run() == "Inconclusive"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutInconclusive")
    assert harness.endpoints.packages[told["package"]]["ModelApprovalStatus"] == "Approved"
    row(
        "approval during a rollout (supersede)",
        "ab 10%",
        "inconclusive, champion restored",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_two_approvals_of_one_package_at_once_roll_it_out_once(row: Row) -> None:
    duplicate: list[Exception] = []

    def approve_again(harness: Harness) -> None:
        arn = harness.world.approve(2)
        try:
            steps.prepare(harness.world.deps, package_arn=arn, run="churn-v2-again", overrides=None, manual=False)
        except LockHeld as exc:
            duplicate.append(exc)

    harness = Harness(hooks={"EnterStage": approve_again})
    assert harness.run() == "Done"
    assert duplicate
    assert harness.run(2) == "Noop"  # the queued duplicate finds v2 serving
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    row(
        "two approvals at once (same package)",
        "Prepare",
        "one rollout; the other a no-op",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


# ---------------------------------------------------------------- malformed input


def test_a_malformed_model_config_does_not_start(row: Row) -> None:
    harness = Harness()
    harness.world.config(CONFIG.replace("ab: {steps: [10, 25, 50]}", "ab: {steps: [50, 10]}"))
    assert harness.run() == "NotStarted"
    on_champion(harness)
    told = assert_one_clear_notification(harness, "RolloutFailed")
    assert "InvalidInput" in told["reason"]
    row(
        "malformed model config (shepherd.yaml)",
        "Prepare",
        "not started",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )


def test_an_endpoint_busy_with_autoscaling_is_waited_for(row: Row) -> None:
    def busy(harness: Harness) -> None:
        harness.endpoints.refuse["update_endpoint"] = [EndpointBusy("Cannot update in-progress endpoint churn")] * 2

    harness = Harness(hooks=at_entry_of(1, busy))
    assert harness.run() == "Done"
    on_champion(harness, "churn-v2", "v2")
    told = assert_one_clear_notification(harness, "RolloutPromoted")
    row(
        "endpoint busy (autoscaling)",
        "UpdateEndpoint, ab 10%",
        "promoted (retried)",
        harness.clients.failed,
        harness.clients.bad,
        "-",
        told["reason"],
    )
