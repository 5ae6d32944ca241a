"""The Rollout's promotion paths on the local cloud, with the real template, a really trained model and real
traffic: an approved package deploys itself; the next one walks shadow -> A/B -> full -> the watch to promotion;
a stage that outlives one execution's history goes on in fresh executions; a serverless endpoint switches then
watches; a multi-model one skips shadow, and its kind does not change. One test per path of the state machine
(statemachines/rollout.asl.json) and per endpoint kind; the rollback and lock paths: test_workflow_rollout_safety.py.

The steps' logic is unit-tested on in-memory fakes (tests/unit/test_rollout_steps.py), the judge's on fixed
metrics (tests/unit/test_judge*.py): these tests prove each path runs on the real services, asserting the states
its executions entered. No verdict here depends on how loaded the machine is (workflow.JUDGE). Versions are
registered as a retraining would register them, approved, without training each (the churn model is trained
once, conftest.churn_package): training into a rollout is the demo's story (tests/e2e/test_demo.py) and
training into the registry test_workflow_lifecycle.py's.
"""

from __future__ import annotations

import json
import threading

import pytest

from .conftest import finished_execution, wait_for
from .workflow import (
    CRASHES_ON_SOME,
    FAILING,
    FIRST_DEPLOYMENT,
    JUDGED,
    PROMOTED,
    REJECTED,
    ROLLED_BACK,
    STAGE,
    STARTED,
    Traffic,
    generate,
    rollout_config,
    stages_passed,
    task_attempts,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HANDED_OVER = ["HandOver", "ContinueAsNew", "ContinuedAsNew"]
NOT_STARTED = [
    "Defaults",
    "Continuing",
    "Prepare",
    "ReleaseUnstarted",
    "DescribePrepareFailure",
    "NotifyPrepareFailure",
    "NotStarted",
]
CONTINUED = ["Defaults", "Continuing", "Restore", "Resume", *JUDGED]


class _Shapes:
    """DescribeEndpoint every 200 ms while a rollout runs, and once at the end: each distinct InService shape seen,
    in order (a judged stage lasts at least one judge interval, a wall second at the tests' time scale)."""

    def __init__(self, app, endpoint: str) -> None:
        self.app, self.endpoint, self.seen = app, endpoint, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._look()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._look()

    def _look(self) -> None:
        live = self.app.sagemaker.describe_endpoint(EndpointName=self.endpoint)
        if live["EndpointStatus"] != "InService":
            return
        shape = (
            tuple(
                (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"]) for v in live["ProductionVariants"]
            ),
            tuple((v["VariantName"], v["CurrentInstanceCount"]) for v in live.get("ShadowProductionVariants", [])),
        )
        if not self.seen or self.seen[-1] != shape:
            self.seen.append(shape)


def test_an_approved_package_deploys_itself_then_the_next_one_walks_every_stage_to_promotion(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a model's first package, approved
    model = unique("ro")
    app.upload_project(model, rollout_config(model, watch=True, autoscaling=True, replay=True))
    app.register(model, churn_package)
    # Then its rollout deploys it as the endpoint's first model
    first = app.rollout(model, 1)
    assert first["status"] == "SUCCEEDED", first
    assert app.path(first) == FIRST_DEPLOYMENT
    assert app.serving(model) == [("v1", 1.0)]

    # When the next package is approved while clients call the endpoint, and the judge's Lambda crashes once
    with Traffic(cloud, model) as traffic, _Shapes(app, model) as shapes:
        wait_for(lambda: app.captured(model) >= 250, timeout=60)  # the champion's capture, for replay
        app.register(model, churn_package)
        (running,) = wait_for(lambda: app.rollouts(f"{model}-v2-"), timeout=60)
        run = running["name"]
        wait_for(lambda: any(r.get("run") == run and r["event"] == "verdict" for r in app.records(model)), timeout=120)
        cloud.lambdas.crash_next(app.function("JudgeStageFunction"))
        second = finished_execution(cloud, running["executionArn"], timeout=300)

    # Then it replayed the champion's captured requests, walked shadow, A/B 50 %, full and the post-promotion
    # watch, and was promoted
    assert second["status"] == "SUCCEEDED", (second.get("error"), second.get("cause"), app.records(model)[-4:])
    assert app.path(second) == STARTED + stages_passed(5) + PROMOTED
    records = [r for r in app.records(model) if r.get("run") == run]
    passed = [r["stage"] for r in records if r["event"] == "verdict" and r["verdict"] == "PROMOTE"]
    assert passed == ["replay", "shadow", "ab", "full", "watch"]
    verdicts = [r for r in records if r["event"] == "verdict" and r["verdict"] == "PROMOTE"]
    replayed = verdicts[0]
    assert replayed["statistics"][0]["records"] == 200, replayed
    assert replayed["statistics"][0]["failed"] == replayed["statistics"][0]["disagreed"] == 0
    # each stage with its variants, weights and instances as clients met them; the champion kept for a fast
    # rollback until the watch
    assert shapes.seen == [
        ((("v1", 1.0, 2),), ()),  # the champion
        ((("v1", 1.0, 2),), (("v2", 2),)),  # shadow: a copy of every request
        ((("v1", 50.0, 2), ("v2", 50.0, 2)), ()),  # A/B 50 %
        ((("v1", 0.0, 2), ("v2", 100.0, 2)), ()),  # full
        ((("v2", 1.0, 2),), ()),  # the watch, then the new champion alone
    ], shapes.seen
    # the champion's scaling target went before its variant did; the new champion has its own
    targets = cloud.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    resources = {t["ResourceId"] for t in targets["ScalableTargets"] if f"endpoint/{model}/" in t["ResourceId"]}
    assert resources == {f"endpoint/{model}/variant/v2"}
    # the crashed judge call was retried once and answered; one verdict on record per verdict acted on
    attempts = task_attempts(app.history(running["executionArn"]), "Judge")
    crashed = [a for a in attempts if "error" in a]
    assert [a["error"] for a in crashed] == ["Runtime.ExitError"]
    assert "output" in attempts[attempts.index(crashed[0]) + 1]
    acted_on = [
        (a["output"]["Payload"]["verdict"], a["output"]["Payload"]["explanation"]) for a in attempts if "output" in a
    ]
    assert [(r["verdict"], r["explanation"]) for r in records if r["event"] == "verdict"] == acted_on
    # and no client request failed because of the rollout: only the deliberately malformed ones
    assert traffic.unexpected == []
    assert traffic.ok + traffic.malformed_failed == traffic.sent
    assert traffic.variants.get("v2", 0) > 0


def test_a_candidate_that_crashes_on_some_real_inputs_is_rejected_in_replay_with_no_live_request(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a champion serving real traffic, captured
    model = unique("rp")
    app.upload_project(model, rollout_config(model, ab=False, replay=True))
    app.register(model, churn_package)
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"
    before = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
    with Traffic(cloud, model) as traffic, _Shapes(app, model) as shapes:
        wait_for(lambda: app.captured(model) >= 250, timeout=60)
        # When a candidate that fails on a feature value some of those requests have is approved
        arn = app.register(model, churn_package, inference=CRASHES_ON_SOME)
        rejected = app.rollout(model, 2, timeout=300)

    # Then replay rejected it: the package Rejected, the rollout ended Rejected, nothing else entered
    assert rejected["status"] == "FAILED"
    assert app.path(rejected) == [*STARTED, *STAGE, *REJECTED]
    package = app.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"].startswith("Rejected in replay by Shepherd: ")
    assert "input files produced no output" in package["ApprovalDescription"]
    # with zero live requests: its variant never existed on the endpoint, which kept its config, and the lock is free
    assert shapes.seen == [((("v1", 1.0, 2),), ())]
    assert traffic.variants.get("v2", 0) == 0
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == before
    assert app.lock(model) is None
    run = next(r["run"] for r in app.records(model) if r["event"] == "rejected")
    assert run.startswith(f"{model}-v2-")
    # the notification says why, with examples, and where the rest is
    told = app.notifications("RolloutRejected", model, timeout=30)
    assert "input files produced no output" in told["reason"]
    assert "support_calls above 3 is out of range" in told["detail"]
    prefix = f"capture/{model}/{model}/replay/{run}/"
    assert told["replay_result"] == f"s3://{app.bucket}/{prefix}result.json"
    # and what it cost, as fields: the replay's transform jobs only, no live request
    assert told["live_requests"] == 0
    assert [stage["stage"] for stage in told["cost"]["stages"]] == ["replay"]
    assert told["cost"]["usd"] is not None  # priced: its instance types are in prices.json
    examples = app.s3.get_object(Bucket=app.bucket, Key=f"{prefix}examples.jsonl")["Body"].read().splitlines()
    assert examples
    assert all("error" in json.loads(line) for line in examples)
    # the replay's objects carry the data key, as every Shepherd write
    assert app.s3.head_object(Bucket=app.bucket, Key=f"{prefix}result.json")["ServerSideEncryption"] == "aws:kms"
    assert traffic.unexpected == []


def test_a_stage_that_outlives_one_execution_s_history_continues_in_fresh_executions_and_promotes(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a rollout whose executions each judge at most twice (1,000 by default: 9,000 of 25,000 history
    # events), and stages that cannot promote in fewer than four judge calls: 150 requests a variant, of which
    # at most 40 reach the endpoint in a virtual minute
    model = unique("long")
    config = rollout_config(model, ab=False)  # shadow -> full
    config["rollout"]["judge_calls_per_execution"] = 2
    config["rollout"]["judge"]["error_rate"]["min_samples"] = 150
    app.upload_project(model, config)
    app.register(model, churn_package)
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"

    # When a good candidate rolls out (full's baseline: the champion's 150 requests and more in shadow)
    with Traffic(cloud, model, rate=40.0) as traffic:
        v2 = app.register(model, churn_package)
        wait_for(lambda: any(r["event"] == "promoted" and r["package"] == v2 for r in app.records(model)), timeout=300)

    # Then it went on in a chain of executions, each handing the lock to the next after two judge calls and
    # ending SUCCEEDED, the next resuming the stage where it was; the last one promoted the candidate
    chain = sorted(app.rollouts(f"{model}-v2-"), key=lambda e: e["startDate"])
    run = chain[0]["name"]
    assert [e["name"] for e in chain[1:]] == [f"{run}-c{n}" for n in range(1, len(chain))]
    finished = [finished_execution(cloud, e["executionArn"], timeout=60) for e in chain]
    assert [f["status"] for f in finished] == ["SUCCEEDED"] * len(chain)
    paths = [app.path(e) for e in chain]
    assert paths[0] == STARTED + STAGE + HANDED_OVER
    assert all(p[: len(CONTINUED)] == CONTINUED for p in paths[1:]), paths
    assert all(p[-len(HANDED_OVER) :] == HANDED_OVER for p in paths[:-1]), paths
    assert paths[-1][-len(PROMOTED) :] == PROMOTED
    assert sum(p.count("EnterStage") for p in paths) == 2  # shadow and full, each entered once
    assert len(chain) >= 3
    for execution in chain:
        history = app.history(execution["executionArn"])
        judged = [
            e for e in history if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Judge"
        ]
        assert len(judged) <= 2 + 1  # a PROMOTE enters the next stage first: one call more per stage
    # one rollout on record: its verdicts under one run, each hand-over recorded, the lock given back once
    records = [r for r in app.records(model) if r["package"] == v2]
    assert {r["run"] for r in records} == {run}
    assert [r["successor"] for r in records if r["event"] == "continued"] == [e["name"] for e in chain[1:]]
    assert not any(r["event"] == "reconciled" for r in app.records(model))
    assert app.serving(model) == [("v2", 1.0)]
    assert app.lock(model) is None
    assert traffic.unexpected == []


def test_a_serverless_endpoint_switches_then_its_watch_promotes_a_good_candidate_and_rolls_back_a_failing_one(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a serverless champion (one variant, no shadow, no capture: a rollout switches, then watches)
    model = unique("sls")
    app.upload_project(model, rollout_config(model, kind="serverless", watch=True))
    app.register(model, churn_package)
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"

    with Traffic(cloud, model, rate=40.0) as traffic:
        wait_for(lambda: traffic.sent > 100, timeout=60)  # the champion's baseline, before any rollout
        # When a good candidate (the same model again) rolls out, then one that fails every request
        app.register(model, churn_package)
        good = app.rollout(model, 2)
        promoted = app.sagemaker.describe_endpoint(EndpointName=model)
        app.register(model, churn_package, inference=FAILING)
        failing = app.rollout(model, 3)

    # Then the first is promoted by its watch and the second rolled back by its watch, serverless still
    assert good["status"] == "SUCCEEDED", good
    assert app.path(good) == STARTED + stages_passed(1) + PROMOTED
    assert failing["status"] == "FAILED"
    assert app.path(failing) == STARTED + STAGE + ROLLED_BACK
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == promoted["EndpointConfigName"]
    assert [v["VariantName"] for v in restored["ProductionVariants"]] == ["v2"]
    assert restored["ProductionVariants"][0].get("CurrentServerlessConfig")
    records = app.records(model)
    started = [r for r in records if r["event"] == "started" and r["package"].endswith(("/2", "/3"))]
    assert all(r["strategy"].startswith("serverless: switch, then a post-promotion watch") for r in started)
    # clients of a serverless endpoint do meet a failing candidate's errors while its watch decides (there is no
    # shadow); nothing else failed
    assert all("injected fault" in failure for failure in traffic.unexpected), traffic.unexpected[:3]


def test_a_multi_model_endpoint_rolls_out_through_ab_without_shadow_and_batch_scores_with_its_champion(
    rollout_app, churn_package, cloud
):
    app = rollout_app
    # Given a multi-model champion, whose config asks for shadow, A/B 50 % and full
    model = unique("mme")
    config = rollout_config(model, kind="multi_model")
    app.upload_project(model, config)
    app.register(model, churn_package)
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"
    v1 = app.packages(model)[0]

    def container(endpoint_config: str) -> dict:
        (variant,) = app.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint_config)["ProductionVariants"]
        return app.sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]

    first = container(app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"])
    artifact = v1["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert first["Mode"] == "MultiModel"
    assert first["ModelDataUrl"] + "model.tar.gz" == artifact  # served from where it was registered, uncopied

    # When a good candidate rolls out while clients name the artifact they want (TargetModel)
    with Traffic(cloud, model, target_model="model.tar.gz") as traffic:
        app.register(model, churn_package)
        good = app.rollout(model, 2)

    # Then it goes through A/B and full, without shadow (SageMaker allows none on a multi-model endpoint)
    assert good["status"] == "SUCCEEDED", good
    assert app.path(good) == STARTED + stages_passed(2) + PROMOTED
    promoted = app.sagemaker.describe_endpoint(EndpointName=model)
    assert [v["VariantName"] for v in promoted["ProductionVariants"]] == ["v2"]
    assert container(promoted["EndpointConfigName"])["Mode"] == "MultiModel"
    records = app.records(model)
    (started,) = [r for r in records if r["event"] == "started" and r["package"].endswith("/2")]
    assert "no shadow: SageMaker allows no shadow variant on a multi-model endpoint" in started["strategy"]
    assert started["target_model"] == "model.tar.gz"
    assert {"v1", "v2"} <= set(traffic.variants)
    # no client request failed but, on a loaded machine, one the local cloud fails: a multi-model fleet that an
    # update replaces is stopped without draining (MultiModelFleet.stop), its workers closed under a request
    stopped_under_it = [f for f in traffic.unexpected if "WorkerExited" in f or "pool is closed" in f]
    assert [f for f in traffic.unexpected if f not in stopped_under_it] == [], traffic.unexpected

    # And a transform job, which sends no TargetModel, scores with the champion's package as a single model
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

    # And a rollout that would change the endpoint's kind is refused before it touches the endpoint
    config["endpoint"]["kind"] = "realtime"
    app.upload_project(model, config)
    app.register(model, churn_package)
    refused = app.rollout(model, 3)
    assert refused["status"] == "FAILED"
    assert app.path(refused) == NOT_STARTED
    notification = app.notifications(
        "RolloutFailed", model, match=lambda n: str(n.get("package", "")).endswith(f"/{model}/3")
    )
    assert "does not change an endpoint's kind" in json.dumps(notification)
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == promoted["EndpointConfigName"]
    assert app.lock(model) is None
