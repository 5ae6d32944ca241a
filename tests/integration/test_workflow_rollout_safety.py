"""Rollout safety on the local cloud: duplicate events, a failed endpoint update, an abort, an approval that
arrives during a rollout, a stage that reaches its maximum duration undecided, and a judge that crashes."""

from __future__ import annotations

import json
import uuid

import pytest

from localcloud.deployer import Deployer
from tests.event_contract import sample

from .conftest import finished_execution, wait_for
from .test_workflow_rollout import _config, _records, _rollout, faulty_rollout
from .workflow import EXAMPLE, ROOT, App, Traffic, generate, task_attempts, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(cloud):
    outputs = Deployer(cloud, "ws").deploy(ROOT / "template.yaml", {"StageName": "wstest"})
    return App(cloud, outputs | {"_stack": "ws"})


def _copy_package(app, model: str, source: dict) -> str:
    """Register another approved version of an existing package (what a retraining would produce), fast."""
    spec = source["InferenceSpecification"]
    return app.sagemaker.create_model_package(
        ModelPackageGroupName=model,
        InferenceSpecification={
            k: spec[k] for k in ("Containers", "SupportedContentTypes", "SupportedResponseMIMETypes")
        },
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties={"shepherd:model": model},
    )["ModelPackageArn"]


def _executions(app, prefix: str) -> list[dict]:
    listed = app.sfn.list_executions(stateMachineArn=app.outputs["RolloutStateMachineArn"])["executions"]
    return [e for e in listed if e["name"].startswith(prefix)]


def _turns_bad(flag) -> str:
    """The example's serving script, fine until ``flag`` exists, then failing half its requests."""
    return (
        (EXAMPLE / "inference.py").read_text()
        + f"""

_predict_good = predict_fn


def predict_fn(data, model):  # fine until the test raises the flag, then fails half its requests
    import os
    import random

    if os.path.exists({str(flag)!r}) and random.random() < 0.5:
        raise RuntimeError("turned bad")
    return _predict_good(data, model)
"""
    )


def test_rollouts_stay_safe_when_things_go_wrong(app, cloud):
    model = unique("safe")
    app.upload_project(model, _config(model))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=f"{app.packages(model)[0]['ModelPackageArn']}")
    first_config = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]

    # SageMaker re-sends "Approved": the same package starts nothing new
    event = sample("start_rollout")
    event["detail"] |= {"ModelPackageArn": v1["ModelPackageArn"], "ModelPackageGroupName": model}
    response = cloud.client("lambda").invoke(
        FunctionName=app.function("StartRolloutFunction"), Payload=json.dumps(event).encode()
    )
    assert json.loads(response["Payload"].read())["started"] is False
    assert len(_executions(app, f"{model}-v1-")) == 1

    # an endpoint update that fails leaves the champion serving; the rollout reports it and rejects the candidate
    endpoint_arn = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointArn"]
    app.sagemaker.add_tags(ResourceArn=endpoint_arn, Tags=[{"Key": "shepherd:fault:fail-next-update", "Value": "true"}])
    _copy_package(app, model, v1)
    failed = _rollout(app, model, 2)
    assert failed["status"] == "FAILED"
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == first_config
    assert (
        app.sagemaker.describe_model_package(ModelPackageName=f"{v1['ModelPackageArn'][:-2]}/2")["ModelApprovalStatus"]
        == "Rejected"
    )
    assert any(r["event"] == "rolled-back" and "did not take" in r["reason"] for r in _records(app, model))

    with Traffic(cloud, model) as traffic:
        # an abort rolls the running rollout back at its next judge call; an approval meanwhile waits its turn
        v3 = _copy_package(app, model, v1)
        (running,) = wait_for(lambda: _executions(app, f"{model}-v3-"), timeout=30)
        wait_for(
            lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60
        )
        _copy_package(app, model, v1)  # v4
        (queued,) = wait_for(lambda: _executions(app, f"{model}-v4-"), timeout=30)
        app.cloud.client("dynamodb").put_item(
            TableName=app.outputs["RolloutsTableName"],
            Item={
                "pk": {"S": f"endpoint#{model}"},
                "sk": {"S": "flag#abort"},
                "by": {"S": "test"},
                "reason": {"S": "changed my mind"},
            },
        )
        aborted = finished_execution(cloud, running["executionArn"], timeout=120)
        assert aborted["status"] == "FAILED"
        assert app.sagemaker.describe_model_package(ModelPackageName=v3)["ModelApprovalStatus"] == "Rejected"
        promoted = finished_execution(cloud, queued["executionArn"], timeout=240)
        v4_records = [r for r in _records(app, model) if r["package"].endswith("/4")]
        assert promoted["status"] == "SUCCEEDED", (promoted.get("error"), promoted.get("cause"), v4_records[-4:])
    events = [(r["package"].rsplit("/", 1)[1], r["event"]) for r in _records(app, model)]
    assert events.index(("3", "rolled-back")) < events.index(("4", "started")), events
    assert [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]] == [
        "v4"
    ]
    assert traffic.unexpected == []

    # paused: an approval does not roll out by itself...
    table = app.outputs["RolloutsTableName"]
    app.cloud.client("dynamodb").put_item(
        TableName=table,
        Item={
            "pk": {"S": f"endpoint#{model}"},
            "sk": {"S": "flag#paused"},
            "by": {"S": "test"},
            "reason": {"S": "freeze"},
        },
    )
    v5 = _copy_package(app, model, v1)
    (automatic,) = wait_for(lambda: _executions(app, f"{model}-v5-"), timeout=30)
    assert finished_execution(cloud, automatic["executionArn"], timeout=60)["status"] == "FAILED"
    assert (
        "paused"
        in app.notifications("RolloutFailed", "", timeout=10, match=lambda n: n.get("package") == v5)["error"]["Cause"]
    )
    # ...but a human can start one; without traffic its shadow stage reaches its maximum duration undecided:
    # INCONCLUSIVE, the champion keeps all traffic and the candidate is not rejected (a human decides)
    manual = app.sfn.start_execution(
        stateMachineArn=app.outputs["RolloutStateMachineArn"],
        name=f"{model}-manual-{uuid.uuid4().hex[:8]}",
        input=json.dumps(
            {"ModelPackageArn": v5, "Manual": True, "Overrides": {"rollout": {"shadow": {"max_duration_minutes": 3}}}}
        ),
    )
    undecided = finished_execution(cloud, manual["executionArn"], timeout=90)
    assert undecided["status"] == "FAILED"
    assert app.sagemaker.describe_model_package(ModelPackageName=v5)["ModelApprovalStatus"] == "Approved"
    assert [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]] == [
        "v4"
    ]
    assert ("5", "inconclusive") in [(r["package"].rsplit("/", 1)[1], r["event"]) for r in _records(app, model)]


SLOW = (
    (EXAMPLE / "inference.py").read_text()
    + """

_predict_fast = predict_fn


def predict_fn(data, model):  # a candidate three times slower than the 25 ms the judge allows
    import time

    time.sleep(0.075)
    return _predict_fast(data, model)
"""
)


def test_a_slow_candidate_is_rolled_back_on_latency_and_a_stopped_rollout_is_cleaned_up(app, cloud):
    model = unique("lat")
    config = _config(model)
    # 25 ms: the champion answers in a few ms, but a loaded 2-core machine pushed it past 10 ms on both sides
    config["rollout"]["judge"]["latency"] = {"threshold_ms": 25, "min_samples": 50}
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion_config = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]

    with Traffic(cloud, model) as traffic:
        # a candidate whose every answer takes 75 ms: the latency judge sees exceedances on one side only
        app.upload_project(
            model, config, code={"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": SLOW.encode()}
        )
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        slow = _rollout(app, model, 2)
        v2 = [r for r in _records(app, model) if r["package"].endswith("/2")]
        judged = [(r["stage"], r["verdict"], r["explanation"]) for r in v2 if r["event"] == "verdict"]
        assert slow["status"] == "FAILED", judged[-3:]
        verdicts = [r for r in v2 if r.get("verdict") == "ROLLBACK"]
        assert [m["metric"] for m in verdicts[0]["statistics"] if m["verdict"] == "ROLLBACK"] == ["latency"]

        # a rollout stopped by hand (StopExecution skips every Catch) is cleaned up by the reconciler
        app.upload_project(model, config)
        _copy_package(
            app, model, app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])
        )
        (running,) = wait_for(lambda: _executions(app, f"{model}-v3-"), timeout=30)
        wait_for(
            lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60
        )
        app.sfn.stop_execution(executionArn=running["executionArn"], cause="stopped by a human in the console")
        restored = wait_for(
            lambda: (
                (d := app.sagemaker.describe_endpoint(EndpointName=model))["EndpointConfigName"] == champion_config
                and d["EndpointStatus"] == "InService"
                and d
            ),
            timeout=60,
        )
    assert not restored.get("ShadowProductionVariants")
    # the endpoint is freed once the restore has settled (the reconciler's next sweep)
    wait_for(
        lambda: (
            "Item"
            not in app.cloud.client("dynamodb").get_item(
                TableName=app.outputs["RolloutsTableName"], Key={"pk": {"S": f"endpoint#{model}"}, "sk": {"S": "lock"}}
            )
        ),
        timeout=60,
    )
    assert any(r["event"] == "reconciled" and r["action"] == "restored" for r in _records(app, model))
    assert traffic.unexpected == []


def test_a_candidate_that_turns_bad_during_ab_is_rolled_back_to_the_whole_champion(app, cloud, tmp_path):
    model = unique("turn")
    flag = tmp_path / "turn-bad"
    turns_bad = _turns_bad(flag)
    app.upload_project(model, _config(model))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion = app.sagemaker.describe_endpoint(EndpointName=model)

    with Traffic(cloud, model) as traffic:
        code = {"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": turns_bad.encode()}
        app.upload_project(model, _config(model), code=code)
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        wait_for(
            lambda: any(r["event"] == "stage-entered" and r.get("stage") == "ab" for r in _records(app, model)),
            timeout=120,
        )
        flag.touch()  # the candidate now fails half of the requests it serves (clients see them in A/B)
        rolled_back = _rollout(app, model, 2)
        failures_at_rollback = len(traffic.unexpected)
        time_after = traffic.sent
        wait_for(lambda: traffic.sent > time_after + 100, timeout=30)

    assert rolled_back["status"] == "FAILED"
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == champion["EndpointConfigName"]
    assert [(v["VariantName"], v["CurrentWeight"]) for v in restored["ProductionVariants"]] == [("v1", 1.0)]
    events = [(r["event"], r.get("step"), r.get("stage"), r.get("verdict")) for r in _records(app, model)]
    assert ("verdict", None, "ab", "ROLLBACK") in events
    assert ("rolling-back", "weights", None, None) in events  # weights first: seconds, no redeploy
    assert ("rolling-back", "config", None, None) in events
    assert (
        app.sagemaker.describe_model_package(ModelPackageName=f"{app.packages(model)[0]['ModelPackageArn'][:-2]}/2")[
            "ModelApprovalStatus"
        ]
        == "Rejected"
    )
    # once rolled back, no client request fails any more
    assert len(traffic.unexpected) == failures_at_rollback


def test_a_restore_that_fails_is_reported_as_a_failed_rollout_and_retried_by_the_reconciler(app, cloud):
    model = unique("restore")
    app.upload_project(model, _config(model))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion_config = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
    endpoint_arn = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointArn"]

    with Traffic(cloud, model) as traffic:
        faulty = (
            (EXAMPLE / "inference.py").read_text()
            + """

_predict_ok = predict_fn


def predict_fn(data, model):
    raise RuntimeError("always wrong")
"""
        )
        code = {"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": faulty.encode()}
        app.upload_project(model, _config(model), code=code)
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        wait_for(
            lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60
        )
        # the next endpoint update (the rollback's restore) fails
        app.sagemaker.add_tags(
            ResourceArn=endpoint_arn, Tags=[{"Key": "shepherd:fault:fail-next-update", "Value": "true"}]
        )
        failed = _rollout(app, model, 2)
        # reported as a failed rollback, never as a success
        assert failed["status"] == "FAILED"
        assert failed.get("error") == "RollbackFailed"
        notification = app.notifications("RollbackFailed", "", match=lambda n: n.get("endpoint") == model)
        assert "did not take" in json.dumps(notification["error"])
        # the reconciler then restores the champion's config and frees the endpoint
        wait_for(
            lambda: (
                (d := app.sagemaker.describe_endpoint(EndpointName=model))["EndpointConfigName"] == champion_config
                and d["EndpointStatus"] == "InService"
            ),
            timeout=60,
        )
    assert any(r["event"] == "reconciled" and r["action"] == "restored" for r in _records(app, model))
    assert traffic.unexpected == []


def test_a_judge_that_crashes_mid_stage_is_retried_and_the_rollout_promotes_as_if_nothing_happened(app, cloud):
    model = unique("crash")
    app.upload_project(model, _config(model))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])
    table = app.outputs["RolloutsTableName"]

    def lock_owner() -> str | None:
        lock = app.cloud.client("dynamodb").get_item(
            TableName=table, Key={"pk": {"S": f"endpoint#{model}"}, "sk": {"S": "lock"}}, ConsistentRead=True
        )
        return lock.get("Item", {}).get("owner", {}).get("S")

    with Traffic(cloud, model) as traffic:
        v2 = _copy_package(app, model, v1)  # the same model again: a good candidate
        (running,) = wait_for(lambda: _executions(app, f"{model}-v2-"), timeout=30)
        run = running["name"]
        wait_for(lambda: any(r.get("run") == run and r["event"] == "verdict" for r in _records(app, model)), timeout=60)
        # the judge's next invocation dies: its runtime process is killed before it answers
        cloud.lambdas.crash_next(app.function("JudgeStageFunction"))
        crashed = wait_for(
            lambda: [a for a in task_attempts(app.history(running["executionArn"]), "Judge") if "error" in a],
            timeout=30,
        )
        owner_after_crash = lock_owner()
        finished = finished_execution(cloud, running["executionArn"], timeout=240)

    # the crash was retried, once, and the rollout promoted its candidate
    assert finished["status"] == "SUCCEEDED", (finished.get("error"), finished.get("cause"))
    assert [a["error"] for a in crashed] == ["Runtime.ExitError"]
    assert "Runtime exited with error" in crashed[0]["cause"]
    history = app.history(running["executionArn"])
    attempts = task_attempts(history, "Judge")
    assert [a for a in attempts if "error" in a] == crashed
    failed_at = attempts.index(crashed[0])
    assert failed_at > 0, "the crash came after the stage had been judged"
    assert "output" in attempts[failed_at + 1], "the retry answered"
    entered = {e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")}
    assert "RollbackWeights" not in entered
    assert [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]] == [
        "v2"
    ]
    assert app.sagemaker.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Approved"
    # no side effect: one verdict on record per verdict the state machine acted on, none for the crash
    acted_on = [
        (a["output"]["Payload"]["verdict"], a["output"]["Payload"]["explanation"]) for a in attempts if "output" in a
    ]
    records = [r for r in _records(app, model) if r.get("run") == run]
    assert [(r["verdict"], r["explanation"]) for r in records if r["event"] == "verdict"] == acted_on
    assert {r["event"] for r in records}.isdisjoint({"rolling-back", "rolled-back", "rollback-failed"})
    assert records[-1]["event"] == "promoted"
    # the run kept its lock through the crash and gave it back at the end; no client request failed
    assert owner_after_crash == run
    assert lock_owner() is None
    assert traffic.unexpected == []


def test_a_stage_that_outlives_one_execution_s_history_continues_in_fresh_executions_and_promotes(app, cloud):
    # Given a rollout whose executions each judge at most twice (1,000 by default: 9,000 of 25,000 history events)
    model = unique("long")
    config = _config(model, ab=False)  # shadow -> full
    config["rollout"]["judge_calls_per_execution"] = 2
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])

    # When a good candidate's stages take more judge calls than that
    with Traffic(cloud, model) as traffic:
        v2 = _copy_package(app, model, v1)
        wait_for(
            lambda: any(r["event"] == "promoted" and r["package"] == v2 for r in _records(app, model)), timeout=240
        )

    # Then the rollout went on in a chain of executions - each handing the lock to the next and ending
    # SUCCEEDED after about two judge calls - and the last one promoted the candidate
    chain = sorted(_executions(app, f"{model}-v2-"), key=lambda e: e["startDate"])
    run = chain[0]["name"]
    assert [e["name"] for e in chain[1:]] == [f"{run}-c{n}" for n in range(1, len(chain))]
    assert len(chain) >= 3, chain
    for execution in chain:
        finished = finished_execution(cloud, execution["executionArn"], timeout=60)
        assert finished["status"] == "SUCCEEDED", finished
        history = app.history(execution["executionArn"])
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]
        assert entered.count("Judge") <= 2 + 1  # a PROMOTE enters the next stage first: one call more per stage
        assert "RollbackWeights" not in entered
        if execution is not chain[-1]:
            assert entered[-1] == "ContinueAsNew"
    assert json.loads(finished["output"])["event"] == "RolloutPromoted"
    # one rollout on record: its verdicts under one run, each hand-over recorded, the lock given back once
    records = [r for r in _records(app, model) if r["package"] == v2]
    assert {r["run"] for r in records} == {run}
    assert [r["successor"] for r in records if r["event"] == "continued"] == [e["name"] for e in chain[1:]]
    assert [r["execution"] for r in records if r["event"] == "resumed"] == [e["name"] for e in chain[1:]]
    assert not any(r["event"] == "reconciled" for r in _records(app, model))
    assert [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]] == [
        "v2"
    ]
    lock = app.cloud.client("dynamodb").get_item(
        TableName=app.outputs["RolloutsTableName"], Key={"pk": {"S": f"endpoint#{model}"}, "sk": {"S": "lock"}}
    )
    assert "Item" not in lock
    assert traffic.unexpected == []


def test_a_candidate_that_turns_bad_after_promotion_is_caught_by_the_watch_and_the_champion_restored(
    app, cloud, tmp_path
):
    model = unique("watch")
    flag = tmp_path / "turn-bad"
    turns_bad = _turns_bad(flag)
    config = _config(model, autoscaling=True, ab=False, watch=True)  # shadow -> full -> watch
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion = app.sagemaker.describe_endpoint(EndpointName=model)
    scaling = cloud.client("application-autoscaling")

    def targets() -> set[str]:
        listed = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        return {t["ResourceId"].rsplit("/", 1)[1] for t in listed if f"endpoint/{model}/" in t["ResourceId"]}

    with Traffic(cloud, model) as traffic:
        code = {"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": turns_bad.encode()}
        app.upload_project(model, config, code=code)
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        wait_for(
            lambda: any(r["event"] == "stage-entered" and r.get("stage") == "watch" for r in _records(app, model)),
            timeout=180,
        )
        # the candidate passed shadow and full, and serves alone now, with its own scaling target
        wait_for(
            lambda: (
                [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]]
                == ["v2"]
            ),
            timeout=60,
        )
        assert targets() == {"v2"}
        flag.touch()  # then it turns bad
        rolled_back = _rollout(app, model, 2)

    assert rolled_back["status"] == "FAILED"
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == champion["EndpointConfigName"]
    assert [v["VariantName"] for v in restored["ProductionVariants"]] == ["v1"]
    assert targets() == {"v1"}  # the champion's scaling target is back, the candidate's gone with its variant
    records = [r for r in _records(app, model) if r["package"].endswith("/2")]
    events = [(r["event"], r.get("stage"), r.get("verdict")) for r in records]
    assert ("verdict", "full", "PROMOTE") in events
    assert ("verdict", "watch", "ROLLBACK") in events
    assert ("rolled-back", None, None) in events
    watch_verdict = next(r for r in records if r.get("stage") == "watch" and r.get("verdict") == "ROLLBACK")
    assert "old champion" in watch_verdict["explanation"]
    assert watch_verdict["statistics"][0]["champion_samples"] > 0  # judged against the champion's baseline
    packages = {p["ModelPackageVersion"]: p["ModelApprovalStatus"] for p in app.packages(model)}
    assert packages == {1: "Approved", 2: "Rejected"}
    print(f"watch rollback: {watch_verdict['explanation']}; traffic {traffic.sent} sent")


def test_a_serverless_endpoint_switches_and_the_watch_promotes_a_good_candidate_and_rolls_back_a_faulty_one(app, cloud):
    model = unique("sls")
    config = _config(model)
    config["endpoint"] = {"name": model, "kind": "serverless", "serverless": {"memory_mb": 2048, "max_concurrency": 20}}
    config["rollout"]["post_promotion_watch"] = {"max_duration_minutes": 60}
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])

    with Traffic(cloud, model, rate=40.0) as traffic:
        wait_for(lambda: traffic.sent > 200, timeout=30)  # the champion's baseline, before any rollout
        _copy_package(app, model, v1)  # v2: a good candidate (the same model)
        good = _rollout(app, model, 2)
        assert good["status"] == "SUCCEEDED", good
        promoted = app.sagemaker.describe_endpoint(EndpointName=model)
        assert [v["VariantName"] for v in promoted["ProductionVariants"]] == ["v2"]
        faulty = faulty_rollout(app, model, config)

    assert faulty["status"] == "FAILED"
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == promoted["EndpointConfigName"]
    assert [v["VariantName"] for v in restored["ProductionVariants"]] == ["v2"]
    assert restored["ProductionVariants"][0].get("CurrentServerlessConfig")  # still serverless
    records = _records(app, model)
    started = [r for r in records if r["event"] == "started" and r["package"].endswith(("/2", "/3"))]
    assert all(r["strategy"].startswith("serverless: switch, then a post-promotion watch") for r in started)
    events = [(r["package"].rsplit("/", 1)[1], r["event"], r.get("stage"), r.get("verdict")) for r in records]
    assert ("2", "verdict", "watch", "PROMOTE") in events
    assert ("3", "verdict", "watch", "ROLLBACK") in events
    assert ("3", "rolled-back", None, None) in events
    # clients of a serverless endpoint do see a faulty candidate's errors while the watch decides: no shadow
    # exists there; the watch bounds how many, and no request failed for any other reason
    assert all("ModelError" in failure or "injected fault" in failure for failure in traffic.unexpected)


def test_a_rollout_stopped_during_its_watch_is_restored_by_the_reconciler(app, cloud):
    model = unique("stopw")
    config = _config(model, autoscaling=True, ab=False, watch=True)
    config["rollout"]["post_promotion_watch"]["max_duration_minutes"] = 240  # still watching when stopped
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion = app.sagemaker.describe_endpoint(EndpointName=model)
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])
    scaling = cloud.client("application-autoscaling")

    def targets() -> set[str]:
        listed = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        return {t["ResourceId"].rsplit("/", 1)[1] for t in listed if f"endpoint/{model}/" in t["ResourceId"]}

    def serving() -> list[str]:
        return [v["VariantName"] for v in app.sagemaker.describe_endpoint(EndpointName=model)["ProductionVariants"]]

    table, lock_key = app.outputs["RolloutsTableName"], {"pk": {"S": f"endpoint#{model}"}, "sk": {"S": "lock"}}
    with Traffic(cloud, model) as traffic:
        _copy_package(app, model, v1)  # v2
        wait_for(lambda: serving() == ["v2"], timeout=180)  # in its watch: alone, with its scaling target
        assert targets() == {"v2"}
        (running,) = [e for e in _executions(app, f"{model}-v2-") if e["status"] == "RUNNING"]
        app.sfn.stop_execution(executionArn=running["executionArn"], cause="stopped by a human in the console")
        # the reconciler removes the candidate's scaling target, restores the champion's config, frees the lock
        wait_for(
            lambda: any(r["event"] == "reconciled" and r["action"] == "restored" for r in _records(app, model)),
            timeout=120,
        )
        wait_for(lambda: serving() == ["v1"], timeout=60)
        # once the restore has settled, the champion gets its scaling target back and the endpoint is free
        wait_for(lambda: targets() == {"v1"}, timeout=60)
        wait_for(lambda: app.cloud.client("dynamodb").get_item(TableName=table, Key=lock_key).get("Item") is None)
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == champion["EndpointConfigName"]
    assert traffic.unexpected == []


def test_a_multi_model_endpoint_rolls_out_through_ab_without_shadow_and_batch_scores_with_its_champion(app, cloud):
    model = unique("mme")
    config = _config(model)  # asks for shadow, A/B 50 % and full
    config["endpoint"]["kind"] = "multi_model"
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])

    def container(endpoint_config: str) -> dict:
        (variant,) = app.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint_config)["ProductionVariants"]
        return app.sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]

    first = container(app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"])
    artifact = v1["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert first["Mode"] == "MultiModel"
    assert first["ModelDataUrl"] + "model.tar.gz" == artifact  # served from where RegisterModel left it, uncopied

    with Traffic(cloud, model, target_model="model.tar.gz") as traffic:
        wait_for(lambda: traffic.sent > 100, timeout=30)
        _copy_package(app, model, v1)  # v2: a good candidate (the same model)
        good = _rollout(app, model, 2)
        assert good["status"] == "SUCCEEDED", good
        promoted = app.sagemaker.describe_endpoint(EndpointName=model)
        assert [v["VariantName"] for v in promoted["ProductionVariants"]] == ["v2"]
        assert container(promoted["EndpointConfigName"])["Mode"] == "MultiModel"
        faulty = faulty_rollout(app, model, config)

    assert faulty["status"] == "FAILED"
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == promoted["EndpointConfigName"]
    assert [(v["VariantName"], v["CurrentWeight"]) for v in restored["ProductionVariants"]] == [("v2", 1.0)]
    records = _records(app, model)
    started = {r["package"].rsplit("/", 1)[1]: r for r in records if r["event"] == "started"}
    assert "no shadow: SageMaker allows no shadow variant on a multi-model endpoint" in started["2"]["strategy"]
    assert started["2"]["target_model"] == "model.tar.gz"
    entered = [
        (r["stage"], r["weight"]) for r in records if r["event"] == "stage-entered" and r["package"].endswith("/2")
    ]
    assert entered == [("ab", 50), ("full", 100)]  # no shadow stage
    events = [(r["package"].rsplit("/", 1)[1], r["event"], r.get("stage"), r.get("verdict")) for r in records]
    assert ("3", "verdict", "ab", "ROLLBACK") in events
    assert ("3", "rolled-back", None, None) in events
    assert {"v1", "v2", "v3"} <= set(traffic.variants)  # every version answered TargetModel requests
    # clients see the faulty candidate's errors in A/B (there is no shadow); nothing else failed
    assert all("ModelError" in failure or "injected fault" in failure for failure in traffic.unexpected)

    # a transform job sends no TargetModel: batch scores with the champion's package as a single-model model
    key = f"batch/{model}/input/customers.csv"
    rows = generate(50, seed=11).drop(columns=["target"])
    app.s3.put_object(Bucket=app.bucket, Key=key, Body=rows.to_csv(index=False, header=False).encode())
    (execution,) = wait_for(
        lambda: [
            e
            for e in app.sfn.list_executions(stateMachineArn=app.outputs["BatchTransformStateMachineArn"])["executions"]
            if json.loads(app.sfn.describe_execution(executionArn=e["executionArn"])["input"])["key"] == key
        ],
        timeout=30,
    )
    assert finished_execution(cloud, execution["executionArn"], timeout=90)["status"] == "SUCCEEDED"
    jobs = app.sagemaker.list_transform_jobs()["TransformJobSummaries"]
    described = [app.sagemaker.describe_transform_job(TransformJobName=j["TransformJobName"]) for j in jobs]
    assert any(d["ModelName"] == f"{model}-v2-batch" for d in described)

    # a rollout does not change an endpoint's kind: refused before it touches the endpoint, the lock freed
    config["endpoint"]["kind"] = "realtime"
    app.upload_project(model, config)
    _copy_package(app, model, v1)  # v4
    refused = _rollout(app, model, 4)
    assert refused["status"] == "FAILED"
    notification = app.notifications(
        "RolloutFailed", model, match=lambda n: str(n.get("package", "")).endswith(f"/{model}/4")
    )
    assert "does not change an endpoint's kind" in json.dumps(notification)
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == promoted["EndpointConfigName"]
    lock = {"pk": {"S": f"endpoint#{model}"}, "sk": {"S": "lock"}}
    assert "Item" not in cloud.client("dynamodb").get_item(TableName=app.outputs["RolloutsTableName"], Key=lock)


def test_with_supersede_a_new_approval_ends_the_running_rollout_without_rejecting_it_then_rolls_out(app, cloud):
    model = unique("sup")
    config = _config(model)
    config["rollout"]["on_new_approval"] = "supersede"
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    champion = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])

    v2 = _copy_package(app, model, v1)  # no traffic: its shadow stage judges CONTINUE until superseded
    (running,) = wait_for(lambda: _executions(app, f"{model}-v2-"), timeout=30)
    wait_for(lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60)
    _copy_package(app, model, v1)  # v3, approved while v2 rolls out
    superseded = finished_execution(cloud, running["executionArn"], timeout=120)
    assert superseded["status"] == "FAILED"
    assert app.sagemaker.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Approved"
    with Traffic(cloud, model) as traffic:
        assert _rollout(app, model, 3)["status"] == "SUCCEEDED"
    records = _records(app, model)
    events = [(r["package"].rsplit("/", 1)[1], r["event"]) for r in records]
    assert events.index(("2", "inconclusive")) < events.index(("3", "started")), events
    (verdict,) = [
        r for r in records if r["package"].endswith("/2") and r["event"] == "verdict" and r["verdict"] != "CONTINUE"
    ]
    assert verdict["verdict"] == "INCONCLUSIVE"
    assert verdict["explanation"].startswith(f"Aborted by superseded by {v2[:-1]}3")
    promoted = app.sagemaker.describe_endpoint(EndpointName=model)
    assert [v["VariantName"] for v in promoted["ProductionVariants"]] == ["v3"]
    assert promoted["EndpointConfigName"] != champion
    assert traffic.unexpected == []
