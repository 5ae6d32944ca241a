"""The Rollout's steps (shepherd.rollout.steps) on in-memory ports: every path the state machine takes."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from shepherd.errors import EndpointBusy, InvalidInput, TransientError
from shepherd.rollout import steps
from shepherd.rollout.ports import ABORT, PAUSED, Deps, LockHeld, LockLost, RollbackFailed, Settings
from shepherd.rollout.state import RolloutState

from .fakes import FakeEndpoints, FakeObjects, FakeResumer, FakeRolloutStore, FakeTokens, ManualClock

BUCKET = "shepherd-data"
# A Lambda function's error as Step Functions puts it in a Catch's Cause: Lambda's error document, as JSON.
LAMBDA_CAUSE = json.dumps(
    {
        "errorMessage": "endpoint churn kept config churn-shadow-v2: the update did not take",
        "errorType": "EndpointUpdateFailed",
        "requestId": "5b6c6a1e-3a7e-4f2b-9d0c-2f1e8c1c2a11",
        "stackTrace": [
            '  File "/var/task/app.py", line 61, in handler\n    return dict(getattr(steps, action)(deps, state))\n',
            '  File "/opt/python/shepherd/rollout/steps.py", line 470, in verify_rollback\n    raise X(...)\n',
        ],
    }
)
ROLE = "arn:aws:iam::123456789012:role/shepherd-sagemaker"
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
CONFIG = """\
framework: sklearn
entry_point: train.py
endpoint:
  name: churn
  realtime: {instance_type: ml.m5.large, instance_count: 2}
  autoscaling: {min_capacity: 2, max_capacity: 4, target_invocations_per_instance: 750}
rollout:
  replay: {enabled: false}  # the live stages' mechanics; replay: test_rollout_replay.py
  ab: {steps: [10, 25, 50]}
"""


def package(version: int, status: str = "Approved", model: str = "churn") -> dict[str, Any]:
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{model}/{version}"
    container = {"Image": "sklearn", "ModelDataUrl": f"s3://{BUCKET}/artifacts/{model}/run{version}/model.tar.gz"}
    return {
        "ModelPackageArn": arn,
        "ModelPackageGroupName": model,
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": {"shepherd:model": model},
        "InferenceSpecification": {"Containers": [container]},
    }


@dataclass
class World:
    endpoints: FakeEndpoints = field(default_factory=FakeEndpoints)
    objects: FakeObjects = field(default_factory=FakeObjects)
    store: FakeRolloutStore = field(default_factory=FakeRolloutStore)
    tokens: FakeTokens = field(default_factory=FakeTokens)
    resumer: FakeResumer = field(default_factory=FakeResumer)
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def deps(self) -> Deps:
        return Deps(
            endpoints=self.endpoints,
            packages=self.endpoints,
            objects=self.objects,
            store=self.store,
            tokens=self.tokens,
            resumer=self.resumer,
            settings=Settings(bucket=BUCKET, sagemaker_role_arn=ROLE, kms_key_arn=KEY),
            now=self.clock.now,
            wall=self.clock.now,
        )

    def config(self, text: str = CONFIG) -> None:
        self.objects.objects[(BUCKET, "models/churn/shepherd.yaml")] = text.encode()

    def approve(self, version: int) -> str:
        described = package(version)
        self.endpoints.packages[described["ModelPackageArn"]] = described
        return str(described["ModelPackageArn"])

    def prepare(self, version: int, **kwargs: Any) -> RolloutState:
        arn = self.approve(version) if kwargs.pop("approve", True) else package(version)["ModelPackageArn"]
        state = steps.prepare(self.deps, package_arn=arn, run=f"churn-v{version}-run", overrides=None, manual=False)
        # what the next step receives: the state machine's JSON, validated again at the handler's edge
        return RolloutState.model_validate(state.dump() | kwargs)

    def live(self) -> dict[str, Any]:
        return self.endpoints.live["churn"]

    def weights(self) -> dict[str, float]:
        return {v["VariantName"]: v["CurrentWeight"] for v in self.live()["ProductionVariants"]}


def _counts(world: World) -> dict[str, int]:
    return {v["VariantName"]: v["CurrentInstanceCount"] for v in world.live()["ProductionVariants"]}


def serving_v1(world: World) -> None:
    """v1 deployed and promoted through the first-deployment path."""
    state = world.prepare(1)
    steps.deploy_first(world.deps, state, "token-first")
    steps.promoted(world.deps, state)


def enter(world: World, state: RolloutState, index: int) -> RolloutState:
    state = state.model_copy(update={"stage_index": index})
    steps.enter_stage(world.deps, state, f"token-{index}")
    world.clock.advance(600)
    return state


def roll_back(world: World, state: RolloutState, verdict: dict[str, Any]) -> dict[str, Any]:
    steps.rollback_weights(world.deps, state, "token-weights")
    steps.rollback_config(world.deps, state, "token-config")
    return steps.verify_rollback(world.deps, state.model_copy(update={"verdict": verdict}))


@pytest.fixture
def world() -> World:
    made = World()
    made.config()
    return made


# ---------------------------------------------------------------- prepare


def test_a_first_deployment_creates_the_endpoint_and_promotes_it(world: World) -> None:
    state = world.prepare(1)
    assert (state.first, state.noop, state.champion, state.stages) == (True, False, None, [])
    assert world.store.lock_of("churn")["owner"] == "churn-v1-run"
    answer = steps.deploy_first(world.deps, state, "token-first")
    # the waiter is stored for the config the endpoint is created with
    assert world.tokens.items["endpoint/churn"].expect == answer["config"] == world.live()["EndpointConfigName"]
    assert world.endpoints.models["churn-v1"]["ExecutionRoleArn"] == ROLE
    assert world.endpoints.configs[answer["config"]]["KmsKeyId"] == KEY
    promoted = steps.promoted(world.deps, state)
    assert promoted["champion"]["variant"] == "v1"
    assert world.store.champion("churn")["config"] == answer["config"]
    assert ("churn", "v1") in world.endpoints.scaling
    assert world.store.lock_of("churn") is None
    assert world.store.events("churn") == ["started", "deploying", "promoted"]


def test_a_retried_first_deployment_does_not_create_the_endpoint_twice(world: World) -> None:
    state = world.prepare(1)
    first = steps.deploy_first(world.deps, state, "token-first")
    again = steps.deploy_first(world.deps, state, "token-first-retry")
    assert first == again
    assert [c for c in world.endpoints.calls if c[0] == "create_endpoint"] == [
        ("create_endpoint", "churn", first["config"])
    ]


def test_a_rollout_over_a_champion_plans_every_stage_from_the_live_endpoint(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    assert state.champion is not None
    assert state.champion.variant == "v1"
    assert state.champion.instance_count == 2
    assert [(s.kind, s.weight) for s in state.stages] == [
        ("shadow", 100),
        ("ab", 10),
        ("ab", 25),
        ("ab", 50),
        ("full", 100),
        ("watch", 100),
    ]
    assert state.stage_count == 6
    assert state.last_good == world.store.champion("churn")["config"]
    started = world.store.records("churn")[-1]
    assert started["strategy"] == "shadow -> ab 10% -> ab 25% -> ab 50% -> full -> watch"


def test_a_package_that_is_not_approved_is_refused_and_takes_no_lock(world: World) -> None:
    described = package(2, status="PendingManualApproval")
    world.endpoints.packages[described["ModelPackageArn"]] = described
    with pytest.raises(InvalidInput, match="PendingManualApproval, not Approved"):
        steps.prepare(world.deps, package_arn=described["ModelPackageArn"], run="r", overrides=None, manual=False)
    assert world.store.lock_of("churn") is None


def test_a_missing_or_broken_config_says_which_file(world: World) -> None:
    world.objects.objects.clear()
    with pytest.raises(InvalidInput, match=r"s3://shepherd-data/models/churn/shepherd.yaml does not exist"):
        world.prepare(2)
    world.config("framework: sklearn\nentry_point: train.py\nrollout:\n  ab: {stepz: [10]}\n")
    with pytest.raises(InvalidInput, match="stepz"):
        world.prepare(2)
    assert world.store.lock_of("churn") is None


def test_paused_rollouts_start_only_by_hand(world: World) -> None:
    world.store.set_flag("churn", PAUSED, by="alice", reason="incident")
    arn = world.approve(2)
    with pytest.raises(InvalidInput, match="paused by alice"):
        steps.prepare(world.deps, package_arn=arn, run="auto", overrides=None, manual=False)
    state = steps.prepare(world.deps, package_arn=arn, run="by-hand", overrides=None, manual=True)
    assert state.first


def test_a_held_endpoint_queues_and_supersede_asks_the_running_rollout_to_end(world: World) -> None:
    world.store.acquire("churn", "churn-v2-run", package(2)["ModelPackageArn"], world.clock.now().timestamp())
    arn = world.approve(3)
    with pytest.raises(LockHeld):  # queue, the default: no signal to the running rollout
        steps.prepare(world.deps, package_arn=arn, run="churn-v3-run", overrides=None, manual=False)
    assert world.store.flag("churn", ABORT) is None
    world.config(CONFIG + "  on_new_approval: supersede\n")
    with pytest.raises(LockHeld):
        steps.prepare(world.deps, package_arn=arn, run="churn-v3-run", overrides=None, manual=False)
    aborted = world.store.flag("churn", ABORT)
    assert aborted is not None
    assert aborted["verdict"] == "INCONCLUSIVE"
    assert arn in aborted["by"]


def test_a_duplicate_approval_of_the_running_package_supersedes_nothing(world: World) -> None:
    world.config(CONFIG + "  on_new_approval: supersede\n")
    arn = world.approve(2)
    world.store.acquire("churn", "churn-v2-run", arn, world.clock.now().timestamp())
    with pytest.raises(LockHeld):
        steps.prepare(world.deps, package_arn=arn, run="churn-v2-again", overrides=None, manual=False)
    assert world.store.flag("churn", ABORT) is None


def test_a_prepare_that_fails_after_taking_the_lock_frees_it(world: World) -> None:
    serving_v1(world)
    world.live()["EndpointStatus"] = "Updating"
    with pytest.raises(InvalidInput, match="is Updating: a rollout starts only from InService"):
        world.prepare(2)
    assert world.store.lock_of("churn") is None


def test_a_rollout_does_not_change_an_endpoint_s_kind(world: World) -> None:
    serving_v1(world)
    world.config(CONFIG.replace("  name: churn\n", "  name: churn\n  kind: multi_model\n"))
    with pytest.raises(InvalidInput, match=r"single-model endpoint but the config asks for endpoint\.kind multi_model"):
        world.prepare(2)
    assert world.store.lock_of("churn") is None


def test_the_serving_model_again_is_a_noop(world: World) -> None:
    serving_v1(world)
    state = world.prepare(1)
    assert state.noop
    assert steps.release(world.deps, state) == {"released": True}
    assert world.store.events("churn")[-1] == "ended"


def test_an_abort_left_for_an_earlier_rollout_is_cleared(world: World) -> None:
    serving_v1(world)
    world.store.set_flag("churn", ABORT, by="bob", reason="old")
    world.prepare(2)
    assert world.store.flag("churn", ABORT) is None


# ---------------------------------------------------------------- the stages


def test_a_good_candidate_goes_through_every_stage_and_is_promoted(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    # shadow: the champion alone in production, the candidate mirrored with as many instances
    enter(world, state, 0)
    assert [v["VariantName"] for v in world.live()["ShadowProductionVariants"]] == ["v2"]
    assert world.live()["ShadowProductionVariants"][0]["CurrentInstanceCount"] == 2
    # A/B: a new config with both, then only weights move; the challenger's instances in proportion to its share
    # (the load per instance of the champion's 2), for this step and the next, so they serve before its traffic comes
    enter(world, state, 1)
    assert world.weights() == {"v1": 90, "v2": 10}
    assert "ShadowProductionVariants" not in world.live()
    assert _counts(world) == {"v1": 2, "v2": 1}  # 10 % and 25 %: 2 x 25 / 75 rounds to 1
    updates = len([c for c in world.endpoints.calls if c[0] == "update_endpoint"])
    enter(world, state, 2)
    assert world.weights() == {"v1": 75, "v2": 25}
    assert _counts(world) == {"v1": 2, "v2": 2}  # raised for the 50 % step ahead of it
    world.live()["ProductionVariants"][0]["CurrentInstanceCount"] = 3  # the champion autoscaled meanwhile
    enter(world, state, 3)
    assert world.weights() == {"v1": 50, "v2": 50}
    assert _counts(world) == {"v1": 3, "v2": 3}
    enter(world, state, 4)
    assert world.weights() == {"v1": 0, "v2": 100}
    assert _counts(world) == {"v1": 3, "v2": 3}
    assert len([c for c in world.endpoints.calls if c[0] == "update_endpoint"]) == updates
    # the watch: the challenger alone (the champion's scaling target goes first: SageMaker insists)
    enter(world, state, 5)
    assert [v["VariantName"] for v in world.live()["ProductionVariants"]] == ["v2"]
    assert ("churn", "v1") not in world.endpoints.scaling
    assert ("churn", "v2") in world.endpoints.scaling
    # finalize: done already, resumed at once
    final = steps.finalize(world.deps, state, "token-final")
    assert world.resumer.sent[-1][:2] == ("success", "token-final")
    assert final["config"] == world.live()["EndpointConfigName"]
    promoted = steps.promoted(world.deps, state)
    assert promoted["champion"]["model"] == "churn-v2"
    assert world.store.champion("churn")["variant"] == "v2"
    assert world.store.lock_of("churn") is None
    entered = [r["stage"] for r in world.store.records("churn") if r["event"] == "stage-entered"]
    assert entered == ["shadow", "ab", "ab", "ab", "full", "watch"]


def test_every_endpoint_change_is_awaited_by_a_waiter_stored_before_it(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    seen: list[str] = []
    real = world.endpoints.update_endpoint

    def update(name: str, config: str, *, exclude_weights: bool) -> None:
        waiter = world.tokens.items.get("endpoint/churn")
        seen.append(waiter.expect if waiter else "")
        real(name, config, exclude_weights=exclude_weights)

    world.endpoints.update_endpoint = update  # type: ignore[method-assign]
    enter(world, state, 0)
    enter(world, state, 1)
    assert seen == [c[2] for c in world.endpoints.calls if c[0] == "update_endpoint"][-2:]


def test_a_retried_stage_entry_reuses_its_own_config(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    first = steps.enter_stage(world.deps, state, "token")
    again = steps.enter_stage(world.deps, state, "token-retry")
    assert first == again
    assert len([c for c in world.endpoints.calls if c == ("create_endpoint_config", first["config"])]) == 2
    assert len([n for n in world.endpoints.configs if "shadow" in n]) == 1


def test_a_rollout_that_lost_its_lock_changes_nothing(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    world.store.release("churn", state.run)
    world.store.acquire("churn", "someone-else", "arn:other", world.clock.now().timestamp())
    before = copy.deepcopy(world.live())
    with pytest.raises(LockLost):
        steps.enter_stage(world.deps, state, "token")
    assert world.live() == before
    assert world.tokens.items["endpoint/churn"].token == "token-first"  # no waiter for this change


def test_a_direct_switch_when_shadow_and_ab_are_off(world: World) -> None:
    serving_v1(world)
    world.config(
        CONFIG.replace("  ab: {steps: [10, 25, 50]}\n", "  ab: {enabled: false}\n  shadow: {enabled: false}\n")
    )
    state = world.prepare(2)
    assert state.stages == []
    assert world.store.records("churn")[-1]["strategy"] == "direct switch (shadow and A/B disabled)"
    steps.finalize(world.deps, state, "token-final")
    assert [v["VariantName"] for v in world.live()["ProductionVariants"]] == ["v2"]
    assert world.store.events("churn")[-1] == "finalizing"


def test_old_versions_beyond_the_last_few_are_retired_at_promotion(world: World) -> None:
    serving_v1(world)
    for version in range(2, 9):
        state = world.prepare(version)
        steps.finalize(world.deps, state.model_copy(update={"stages": [], "stage_count": 0}), "t")
        steps.promoted(world.deps, state)
    models = sorted(world.endpoints.models, key=lambda n: world.endpoints.created[n])
    assert models == [f"churn-v{v}" for v in range(4, 9)]
    assert world.store.champion("churn")["model"] == "churn-v8"


# ---------------------------------------------------------------- rollback


def test_a_rollback_in_ab_moves_weights_first_then_restores_and_rejects(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    enter(world, state, 0)
    state = enter(world, state, 1)
    moved = steps.rollback_weights(world.deps, state, "token-weights")
    assert moved == {"moved": True}
    assert world.weights() == {"v1": 100, "v2": 0}
    restored = steps.rollback_config(world.deps, state, "token-config")
    assert restored == {"restored": True}
    verdict = {"verdict": "ROLLBACK", "explanation": "errors 3x the champion's"}
    answer = steps.verify_rollback(world.deps, state.model_copy(update={"verdict": verdict}))
    assert (answer["outcome"], answer["reason"]) == (
        "rolled-back",
        "Rolled back churn v2 on churn: errors 3x the champion's",
    )
    assert f"package {state.package_arn} is Rejected" in answer["detail"]
    record = world.store.records("churn")[-1]
    assert (record["event"], record["outcome"], record["reason"]) == (
        "rolled-back",
        "ROLLED_BACK",
        "errors 3x the champion's",
    )
    assert world.live()["EndpointConfigName"] == state.last_good
    assert world.endpoints.packages[state.package_arn]["ModelApprovalStatus"] == "Rejected"
    assert ("churn", "v1") in world.endpoints.scaling
    assert world.store.lock_of("churn") is None
    assert world.store.events("churn")[-3:] == ["rolling-back", "rolling-back", "rolled-back"]


def test_a_rollback_in_shadow_has_no_weights_to_move(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    assert steps.rollback_weights(world.deps, state, "token-weights") == {"moved": False}
    assert world.resumer.sent[-1][:2] == ("success", "token-weights")
    roll_back(world, state, {"verdict": "ROLLBACK", "explanation": "bad"})
    assert "ShadowProductionVariants" not in world.live()


def test_a_rollback_during_the_watch_deregisters_the_challenger_s_scaling_first(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    for index in range(6):
        state = enter(world, state, index)
    roll_back(world, state, {"verdict": "ROLLBACK", "explanation": "worse after promotion"})
    assert [v["VariantName"] for v in world.live()["ProductionVariants"]] == ["v1"]
    assert ("churn", "v2") not in world.endpoints.scaling
    assert ("churn", "v1") in world.endpoints.scaling


def test_an_inconclusive_rollout_restores_the_champion_but_does_not_reject(world: World) -> None:
    # Given a rollout in its first A/B step (index 1), undecided at the step's maximum duration
    serving_v1(world)
    state = enter(world, enter(world, world.prepare(2), 0), 1)
    # (its maximum derived from its traffic: 120 minutes, which the judge's statistics carry)
    statistics = [{"metric": "error_rate", "verdict": "INCONCLUSIVE", "candidate_samples": 40, "max_minutes": 120}]
    verdict = {
        "verdict": "INCONCLUSIVE",
        "explanation": "No decision in 120 minutes",
        "statistics": statistics,
        "stage_index": 1,
    }

    # When the rollback restores the champion
    answer = roll_back(world, state, verdict)

    # Then it ends as its own outcome: the champion serves, the package stays Approved, the record says INCONCLUSIVE
    assert answer["outcome"] == "inconclusive"
    assert world.live()["EndpointConfigName"] == state.last_good
    assert world.endpoints.packages[state.package_arn]["ModelApprovalStatus"] == "Approved"
    assert world.store.lock_of("churn") is None
    record = world.store.records("churn")[-1]
    assert (record["event"], record["outcome"], record["reason"]) == (
        "inconclusive",
        "INCONCLUSIVE",
        "No decision in 120 minutes",
    )
    # and its notification's first line says a person must decide, and how
    assert answer["reason"].startswith("A person must decide: the rollout of churn v2 on churn was inconclusive")
    assert f"`shepherd rollout start {state.package_arn}`" in answer["reason"]
    assert "\n" not in answer["reason"]
    again, reject = answer["detail"].split("\n")[1:3]
    assert again.endswith(f"shepherd rollout start {state.package_arn} --override rollout.ab.max_duration_minutes=240")
    assert reject.startswith(
        f"To reject it: aws sagemaker update-model-package --model-package-arn {state.package_arn}"
    )


def test_a_superseded_rollout_is_inconclusive_without_a_stage_to_lengthen(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    # Given a rollout that a newer approval superseded: the judge's abort verdict, nothing judged
    verdict = {
        "verdict": "INCONCLUSIVE",
        "explanation": "Aborted by superseded by v3",
        "statistics": [],
        "stage_index": 0,
    }
    answer = roll_back(world, state, verdict)
    # Then a person is told to start it again, with no longer stage to suggest
    assert answer["outcome"] == "inconclusive"
    assert f"To try again: shepherd rollout start {state.package_arn}\n" in answer["detail"]
    assert world.endpoints.packages[state.package_arn]["ModelApprovalStatus"] == "Approved"


def test_a_failed_step_s_error_is_the_rollback_reason(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    answer = roll_back(world, state, {"Error": "States.Timeout", "Cause": "no InService in an hour"})
    assert answer["reason"] == "Rolled back churn v2 on churn: States.Timeout: no InService in an hour"


def test_a_lambda_error_rolls_back_with_its_message_not_its_stack_trace(world: World) -> None:
    # Given a step that failed in its Lambda function: Step Functions' Cause is Lambda's error document
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    error = {"Error": "EndpointUpdateFailed", "Cause": LAMBDA_CAUSE}

    answer = roll_back(world, state, error)

    assert answer["reason"] == (
        "Rolled back churn v2 on churn: EndpointUpdateFailed: endpoint churn kept config churn-shadow-v2: "
        "the update did not take"
    )
    assert world.endpoints.packages[state.package_arn]["ApprovalDescription"].endswith("did not take")
    assert "/var/task" not in str(answer)
    assert "Traceback" not in str(answer)


def test_a_rollback_already_on_the_last_good_config_resumes_at_once(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)  # nothing changed yet
    assert steps.rollback_config(world.deps, state, "token-config") == {"restored": False}
    assert world.resumer.sent[-1][:2] == ("success", "token-config")


def test_a_rollback_is_reported_only_when_the_endpoint_is_restored(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    steps.rollback_config(world.deps, state, "token-config")
    world.live()["EndpointStatus"] = "Failed"
    world.live()["ProductionVariants"][0]["CurrentInstanceCount"] = 0
    with pytest.raises(RollbackFailed, match="status Failed; no instances"):
        steps.verify_rollback(world.deps, state.model_copy(update={"verdict": {"verdict": "ROLLBACK"}}))
    assert world.store.lock_of("churn") is not None  # ReconcileRollouts retries the restore
    assert world.endpoints.packages[state.package_arn]["ModelApprovalStatus"] == "Approved"
    assert world.store.records("churn")[-1]["problems"] == ["status Failed", "no instances"]


def test_rollback_problems_name_each_difference() -> None:
    live = {
        "EndpointStatus": "InService",
        "EndpointConfigName": "churn-ab10",
        "ProductionVariants": [{"VariantName": "v1", "CurrentInstanceCount": 2}, {"VariantName": "v2"}],
        "ShadowProductionVariants": [{"VariantName": "v3"}],
    }
    assert steps.rollback_problems(live, "churn-first", "v1") == [
        "config churn-ab10, not churn-first",
        "variants ['v1', 'v2'], not [v1]",
        "a shadow variant remains",
        "no instances",
    ]


# ---------------------------------------------------------------- executions


def test_a_long_stage_hands_the_lock_over_to_its_continuation(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    handed = steps.hand_over(world.deps, state, "churn-v2-run")
    assert handed == {"name": "churn-v2-run-c1", "continuation": 1}
    assert world.store.lock_of("churn")["successor"] == "churn-v2-run-c1"
    resumed = state.model_copy(update={"continuation": 1})
    steps.resume(world.deps, resumed, "churn-v2-run-c1")
    lock = world.store.lock_of("churn")
    assert lock["execution"] == "churn-v2-run-c1"
    assert "successor" not in lock
    assert steps.hand_over(world.deps, resumed, "churn-v2-run-c1")["name"] == "churn-v2-run-c2"


def test_the_state_round_trips_through_the_state_machine_unchanged(world: World) -> None:
    serving_v1(world)
    state = steps.prepare(world.deps, package_arn=world.approve(2), run="r", overrides=None, manual=False)
    dumped = state.dump()
    assert RolloutState.model_validate(dumped).dump() == dumped
    assert "verdict" not in dumped
    assert "target_model" not in dumped
    assert dumped["champion"]["variant"] == "v1"
    assert dumped["stages"][0]["kind"] == "shadow"


def test_a_serverless_endpoint_switches_then_watches(world: World) -> None:
    world.config(
        "framework: sklearn\nentry_point: train.py\nendpoint:\n  name: churn\n  kind: serverless\n"
        "  serverless: {memory_mb: 2048, max_concurrency: 5}\n"
    )
    serving_v1(world)
    state = world.prepare(2)
    assert [s.kind for s in state.stages] == ["watch"]
    assert world.store.records("churn")[-1]["strategy"].startswith("serverless: switch, then a post-promotion watch")
    enter(world, state, 0)
    live = world.live()["ProductionVariants"]
    assert [v["VariantName"] for v in live] == ["v2"]
    assert "CurrentServerlessConfig" in live[0]
    assert not world.endpoints.models["churn-v2"]["EnableNetworkIsolation"]


def test_a_multi_model_candidate_names_its_target_model(world: World) -> None:
    world.config(CONFIG.replace("  name: churn\n", "  name: churn\n  kind: multi_model\n"))
    state = world.prepare(1)
    assert state.target_model == "model.tar.gz"
    container = world.endpoints.models["churn-v1"]["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"].endswith("/run1/")
    assert world.store.records("churn")[-1]["target_model"] == "model.tar.gz"


# ---------------------------------------------------------------- failure notifications

FACTS = {
    "execution": "arn:aws:states:us-east-1:123456789012:execution:shepherd-rollout:churn-v2-run",
    "model": "churn",
    "endpoint": "churn",
    "package": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2",
}


def test_a_failed_restore_is_told_in_one_line_with_what_happens_next() -> None:
    # Given VerifyRollback's RollbackFailed, caught with Lambda's error document as its Cause
    error = {
        "Error": "RollbackFailed",
        "Cause": json.dumps(
            {
                "errorType": "RollbackFailed",
                "errorMessage": "endpoint churn is not restored: config churn-shadow-v2, not churn-first-v1",
                "stackTrace": ['  File "/var/task/app.py", line 66, in handler\n'],
            }
        ),
    }
    verdict = {"verdict": "ROLLBACK", "explanation": "errors 3x the champion's"}

    told = steps.describe_failure("RollbackFailed", error, FACTS, verdict)

    assert list(told)[:3] == ["reason", "detail", "event"]
    assert told["reason"] == (
        "ROLLBACK FAILED on churn: RollbackFailed: endpoint churn is not restored: config churn-shadow-v2, "
        "not churn-first-v1"
    )
    assert told["detail"].splitlines() == [
        "ReconcileRollouts restores the champion's recorded config on its schedule and notifies "
        "(RolloutReconciled); `shepherd status churn` shows the endpoint.",
        "It was rolling back because: errors 3x the champion's",
    ]
    assert (told["event"], told["error"], told["package"]) == ("RollbackFailed", "RollbackFailed", FACTS["package"])
    assert "/var/task" not in json.dumps(told)


def test_a_rollout_that_did_not_start_says_why_and_how_to_start_it_again() -> None:
    error = {
        "Error": "InvalidInput",
        "Cause": json.dumps(
            {"errorType": "InvalidInput", "errorMessage": "endpoint churn is Updating", "stackTrace": []}
        ),
    }
    facts = {"execution": FACTS["execution"], "package": FACTS["package"]}

    told = steps.describe_failure("RolloutFailed", error, facts)

    assert told["reason"] == "The rollout of churn v2 did not start: InvalidInput: endpoint churn is Updating"
    assert told["detail"] == (
        f"The package stays Approved: fix the cause, then `shepherd rollout start {FACTS['package']}`."
    )
    assert (told["model"], told["endpoint"]) == (None, None)


def test_a_failed_first_deployment_and_a_lost_lock_name_the_endpoint() -> None:
    timeout = {"Error": "States.Timeout", "Cause": ""}
    assert steps.describe_failure("RolloutFailed", timeout, FACTS)["reason"] == (
        "Deploying churn v2 to the new endpoint churn failed: States.Timeout: the step did not finish within its "
        "time limit"
    )
    lost = steps.describe_failure("LockLost", {"Error": "LockLost", "Cause": "another rollout has churn"}, FACTS)
    assert lost["reason"].startswith("The rollout of churn v2 on churn stopped and left the endpoint alone")


def test_describing_a_failure_never_raises_on_a_malformed_error() -> None:
    told = steps.describe_failure("RollbackFailed", None, {}, {"Error": 3})
    assert told["reason"] == "ROLLBACK FAILED on the endpoint: Error: no cause given"


# ---------------------------------------------------------------- a step retried after it finished (issue 20)


def test_prepare_s_failure_path_frees_only_the_lock_this_run_took(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)  # Prepare took the lock, then its function died before answering
    arn = state.package_arn
    other = steps.release_unstarted(world.deps, package_arn=arn, run="churn-v2-other", overrides=None)
    assert other == {"released": False}
    assert (world.store.lock_of("churn") or {}).get("owner") == state.run
    freed = steps.release_unstarted(world.deps, package_arn=arn, run=state.run, overrides=None)
    assert freed == {"released": True, "endpoint": "churn"}
    assert world.store.lock_of("churn") is None
    assert world.store.events("churn")[-1] == "ended"


def test_prepare_s_failure_path_without_a_config_has_no_lock_to_free(world: World) -> None:
    arn = world.approve(2)
    world.objects.objects.clear()
    assert steps.release_unstarted(world.deps, package_arn=arn, run="churn-v2-run", overrides=None) == {
        "released": False
    }


def test_a_retried_promotion_answers_the_same_and_changes_nothing(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    for index in range(state.stage_count):
        state = enter(world, state, index)
    steps.finalize(world.deps, state, "token-final")
    first = steps.promoted(world.deps, state)
    # the function died before answering; a queued rollout took the freed lock before the retry
    world.store.acquire("churn", "churn-v3-run", "arn:v3", world.clock.now().timestamp())
    recorded = len(world.store.records("churn"))
    assert steps.promoted(world.deps, state) == first
    assert len(world.store.records("churn")) == recorded
    assert (world.store.lock_of("churn") or {}).get("owner") == "churn-v3-run"


def test_a_rollback_step_without_the_lock_touches_nothing(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    for index in range(state.stage_count):
        state = enter(world, state, index)
    steps.finalize(world.deps, state, "token-final")
    steps.promoted(world.deps, state)  # the lock is freed: a Catch after this must not roll back
    calls = len(world.endpoints.calls)
    for step in (steps.rollback_weights, steps.rollback_config):
        with pytest.raises(LockLost):
            step(world.deps, state, "token")
    assert len(world.endpoints.calls) == calls
    assert ("churn", "v2") in world.endpoints.scaling


def test_a_retried_verify_rollback_reports_the_rollback_it_finished(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    verdict = {"verdict": "ROLLBACK", "explanation": "errors 3x the champion's"}
    first = roll_back(world, state, verdict)
    recorded = len(world.store.records("churn"))
    world.endpoints.packages[state.package_arn]["ApprovalDescription"] = "marker"
    again = steps.verify_rollback(world.deps, state.model_copy(update={"verdict": verdict}))
    assert again == first
    assert len(world.store.records("churn")) == recorded
    assert world.endpoints.packages[state.package_arn]["ApprovalDescription"] == "marker"  # not rejected twice


def failed_first(world: World) -> RolloutState:
    """v1's first deployment, left Failed by SageMaker."""
    state = world.prepare(1)
    steps.deploy_first(world.deps, state, "token-first")
    world.live()["EndpointStatus"] = "Failed"
    world.live()["FailureReason"] = "the primary container failed to start"
    return state


def test_the_failure_path_of_a_first_deployment_deletes_the_failed_endpoint(world: World) -> None:
    state = failed_first(world)
    assert steps.release(world.deps, state) == {"released": True, "deleted": True}
    assert ("delete_endpoint", "churn") in world.endpoints.calls
    assert world.endpoints.describe_endpoint("churn") is None
    assert world.store.lock_of("churn") is None
    deleted = [r for r in world.store.records("churn") if r["event"] == "deleted-failed-endpoint"]
    assert [r["reason"] for r in deleted] == ["the primary container failed to start"]
    assert world.prepare(2).first  # the next rollout deploys afresh
    told = steps.describe_failure("RolloutFailed", {"Error": "EndpointFailed", "Cause": "failed"}, FACTS)
    assert "Shepherd deletes it" in told["detail"]
    assert "shepherd rollout start" in told["detail"]


def test_prepare_deletes_a_failed_endpoint_that_never_served_then_deploys_afresh(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = failed_first(world)

    def throttled(name: str) -> None:
        raise TransientError(f"deleting endpoint {name}: ThrottlingException")

    monkeypatch.setattr(world.endpoints, "delete_endpoint", throttled)
    assert steps.release(world.deps, state) == {"released": True, "deleted": False}  # the failure path could not
    monkeypatch.undo()
    with pytest.raises(EndpointBusy):  # Prepare's Retry runs it again; SageMaker deletes it meanwhile
        world.prepare(2)
    assert world.endpoints.describe_endpoint("churn") is None
    assert world.store.lock_of("churn") is None
    assert world.prepare(2).first


def test_prepare_waits_while_a_failed_first_deployment_is_deleting(world: World) -> None:
    state = failed_first(world)
    world.live()["EndpointStatus"] = "Deleting"
    steps.release(world.deps, state)
    with pytest.raises(EndpointBusy):
        world.prepare(2)
    assert ("delete_endpoint", "churn") not in world.endpoints.calls


def test_a_failed_endpoint_that_once_served_is_never_deleted(world: World) -> None:
    first = world.prepare(1)
    steps.deploy_first(world.deps, first, "token-first")
    steps.promoted(world.deps, first)
    world.live()["EndpointStatus"] = "Failed"
    with pytest.raises(InvalidInput, match="a rollout starts only from InService"):
        world.prepare(2)
    del world.store.items[("churn", "champion")]  # even with its champion record lost: a promotion is recorded
    with pytest.raises(InvalidInput, match="a rollout starts only from InService"):
        world.prepare(2)
    world.store.acquire("churn", first.run, first.package_arn, world.clock.now().timestamp())
    assert steps.release(world.deps, first) == {"released": True, "deleted": False}
    assert ("delete_endpoint", "churn") not in world.endpoints.calls


def test_the_states_config_is_validated_once_and_again_only_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from shepherd.config import ModelConfig

    world = World()
    world.config()
    serving_v1(world)
    state = world.prepare(2)
    validations: list[object] = []
    original = ModelConfig.model_validate

    def counted(*args: Any, **kwargs: Any) -> ModelConfig:
        validations.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(ModelConfig, "model_validate", counted)
    # Given a step that asks for the config several times, it is validated once
    first = state.parsed_config()
    assert state.parsed_config() is first
    assert state.parsed_config() is first
    assert len(validations) == 1
    # and a config changed in place is validated afresh, never answered from the stale copy
    realtime = state.config["endpoint"].setdefault("realtime", {})
    realtime["instance_count"] = 3
    changed = state.parsed_config()
    assert len(validations) == 2
    assert changed.endpoint.realtime is not None
    assert changed.endpoint.realtime.instance_count == 3
    # and the cache never reaches the JSON the state machine carries
    assert set(state.dump()) == set(RolloutState.model_validate(state.dump()).dump())
    assert "_parsed" not in state.dump()
