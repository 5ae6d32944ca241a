"""Rollout on the local cloud with the real template, real models and real traffic.

An approved package deploys itself (first deployment); a better one walks shadow -> A/B -> full
while a traffic generator counts every request; a faulty one is caught in shadow and rolled back,
with no client ever seeing its errors.
"""

from __future__ import annotations

import json

import pytest

from localcloud.deployer import Deployer

from .conftest import finished_execution, wait_for
from .workflow import EXAMPLE, ROOT, App, Traffic, churn_config, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTY = (
    (EXAMPLE / "inference.py").read_text()
    + """

_predict = predict_fn


def predict_fn(data, model):  # a candidate that fails on a third of its requests
    import random

    if random.random() < 0.33:
        raise RuntimeError("injected fault")
    return _predict(data, model)
"""
)


@pytest.fixture(scope="module")
def app(cloud):
    outputs = Deployer(cloud, "wr").deploy(ROOT / "template.yaml", {"StageName": "wrtest"})
    return App(cloud, outputs | {"_stack": "wr"})


def _config(model: str, *, autoscaling: bool = False, ab: bool = True, watch: bool = False) -> dict:
    """The churn example for a rollout test: judged every virtual minute; shadow, A/B 50 % and full; the
    post-promotion watch only where a test is about it (it adds a stage to every rollout)."""
    config = churn_config(model, approval="automatic")
    for gate in config["evaluation"]["gates"]:
        gate["must_beat_champion_by"] = None  # the datasets differ by seed; the thresholds still hold
    if not autoscaling:
        config["endpoint"].pop("autoscaling")
    config["rollout"] = {
        "judge_interval_minutes": 1,
        # 3 virtual hours a stage: on a loaded machine the traffic thins, and two equal models take longer to decide
        "shadow": {"enabled": True, "max_duration_minutes": 180},
        "ab": {"enabled": ab, "steps": [50], "max_duration_minutes": 180},
        "full": {"max_duration_minutes": 120},
        "post_promotion_watch": {"enabled": watch, "max_duration_minutes": 60},
        # alpha 0.01: a test that expects its good candidate promoted may roll it back by chance at most 1 % a stage
        "judge": {"error_rate": {"min_samples": 50, "alpha": 0.01}},
    }
    return config


def _rollout(app, model: str, version: int, timeout: float = 240.0) -> dict:
    arn = app.outputs["RolloutStateMachineArn"]

    def started() -> list[dict]:
        return [
            e
            for e in app.sfn.list_executions(stateMachineArn=arn)["executions"]
            if e["name"].startswith(f"{model}-v{version}-")
        ]

    (execution,) = wait_for(started, timeout=60)
    finished = finished_execution(app.cloud, execution["executionArn"], timeout=timeout)
    if finished["status"] != "SUCCEEDED":  # shown with a failing test's output
        print(f"{execution['name']}: {finished['status']} {finished.get('error')}: {finished.get('cause')}")
        for record in _records(app, model)[-4:]:
            print(json.dumps(record, default=str)[:1500])
    return finished


def faulty_rollout(app, model: str, config: dict, version: int = 3) -> dict:
    """Train a candidate whose serving fails a third of its requests (FAULTY) and wait for its rollout."""
    app.upload_project(
        model, config, code={"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": FAULTY.encode()}
    )
    app.upload_dataset(model, "d3", seed=9)
    assert app.run_of(model, "d3")["status"] == "SUCCEEDED"
    return _rollout(app, model, version)


def _records(app, endpoint: str) -> list[dict]:
    items = app.cloud.client("dynamodb").query(
        TableName=app.outputs["RolloutsTableName"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
        ExpressionAttributeValues={":pk": {"S": f"endpoint#{endpoint}"}, ":r": {"S": "record#"}},
    )["Items"]
    return [json.loads(i["entry"]["S"]) for i in items]


def test_an_approved_package_deploys_then_a_better_one_is_promoted_and_a_faulty_one_rolled_back(app):
    model = unique("ro")
    app.upload_project(model, _config(model, autoscaling=True))
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"

    first = _rollout(app, model, 1)

    assert first["status"] == "SUCCEEDED", first
    endpoint = app.sagemaker.describe_endpoint(EndpointName=model)
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == ["v1"]
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 2

    with Traffic(app.cloud, model) as traffic:
        # a second model, trained on new data, walks shadow -> A/B 50 % -> full
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        seen_shadow = wait_for(
            lambda: app.sagemaker.describe_endpoint(EndpointName=model).get("ShadowProductionVariants"), timeout=60
        )
        assert [v["VariantName"] for v in seen_shadow] == ["v2"]
        second = _rollout(app, model, 2)
        assert second["status"] == "SUCCEEDED", second
        promoted = app.sagemaker.describe_endpoint(EndpointName=model)
        assert [v["VariantName"] for v in promoted["ProductionVariants"]] == ["v2"]
        assert not promoted.get("ShadowProductionVariants")
        # the champion's scaling target went before its variant did; the new champion has its own
        targets = app.cloud.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
        resources = {t["ResourceId"] for t in targets["ScalableTargets"] if f"endpoint/{model}/" in t["ResourceId"]}
        assert resources == {f"endpoint/{model}/variant/v2"}

        # a faulty third model is caught in shadow: rolled back, rejected, the champion untouched
        third = faulty_rollout(app, model, _config(model, autoscaling=True))

    assert third["status"] == "FAILED"
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == promoted["EndpointConfigName"]
    assert [v["VariantName"] for v in restored["ProductionVariants"]] == ["v2"]
    assert not restored.get("ShadowProductionVariants")
    packages = {p["ModelPackageVersion"]: p["ModelApprovalStatus"] for p in app.packages(model)}
    assert packages == {1: "Approved", 2: "Approved", 3: "Rejected"}
    # every stage change and verdict is on record
    events = [
        (r["package"].rsplit("/", 1)[1], r["event"], r.get("stage"), r.get("verdict")) for r in _records(app, model)
    ]
    assert ("2", "verdict", "shadow", "PROMOTE") in events
    assert ("2", "verdict", "ab", "PROMOTE") in events
    assert ("2", "promoted", None, None) in events
    assert ("3", "verdict", "shadow", "ROLLBACK") in events
    assert ("3", "rolled-back", None, None) in events
    # in shadow the candidate saw a copy of (nearly) every request the champion answered
    (shadow_verdict,) = [
        r for r in _records(app, model) if r["package"].endswith("/3") and r.get("verdict") == "ROLLBACK"
    ]
    samples = shadow_verdict["statistics"][0]
    assert samples["candidate_samples"] >= 0.6 * samples["champion_samples"], samples
    # and no client request failed because of the rollouts: only the deliberately malformed ones
    print(f"traffic: {traffic.sent} sent, {traffic.ok} answered, {traffic.malformed_failed} malformed refused")
    print(f"answered by variant: {traffic.variants}")
    assert traffic.unexpected == []
    assert traffic.ok + traffic.malformed_failed == traffic.sent
    assert traffic.variants.get("v2", 0) > 0
    assert "v3" not in traffic.variants


class _Snapshots:
    """DescribeEndpoint every 50 ms while a rollout runs: each distinct InService shape seen, in order."""

    def __init__(self, app, endpoint: str) -> None:
        import threading

        self.app, self.endpoint, self.seen = app, endpoint, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            live = self.app.sagemaker.describe_endpoint(EndpointName=self.endpoint)
            if live["EndpointStatus"] != "InService":
                continue
            shape = (
                tuple(
                    (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"])
                    for v in live["ProductionVariants"]
                ),
                tuple((v["VariantName"], v["CurrentInstanceCount"]) for v in live.get("ShadowProductionVariants", [])),
            )
            if not self.seen or self.seen[-1] != shape:
                self.seen.append(shape)


def test_every_stage_has_its_variants_weights_and_instance_counts_and_the_champion_keeps_its_capacity(app):
    model = unique("cap")
    config = _config(model)
    # 25 % then 50 %: the challenger is raised entering 25 %, before it carries half the traffic
    config["rollout"]["ab"]["steps"] = [25, 50]
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    # an operator (or the autoscaler) has grown the champion beyond the configured 2 instances
    app.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=model, DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredInstanceCount": 3}]
    )
    wait_for(
        lambda: (
            (live := app.sagemaker.describe_endpoint(EndpointName=model))["EndpointStatus"] == "InService"
            and live["ProductionVariants"][0]["CurrentInstanceCount"] == 3
        ),
        timeout=30,
    )

    with Traffic(app.cloud, model) as traffic, _Snapshots(app, model) as snapshots:
        app.upload_dataset(model, "d2", seed=8)
        assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
        assert _rollout(app, model, 2)["status"] == "SUCCEEDED"

    expected = [
        ((("v1", 1.0, 3),), ()),  # the champion
        ((("v1", 1.0, 3),), (("v2", 3),)),  # shadow: a copy of every request, the champion's capacity
        ((("v1", 75.0, 3), ("v2", 25.0, 3)), ()),  # A/B 25 %: the champion keeps its 3 instances
        ((("v1", 50.0, 3), ("v2", 50.0, 3)), ()),  # A/B 50 %
        ((("v1", 0.0, 3), ("v2", 100.0, 3)), ()),  # full: the champion's variant kept for a fast rollback
        ((("v2", 1.0, 3),), ()),  # done: the challenger alone, at the capacity it reached
    ]
    assert snapshots.seen == expected, snapshots.seen
    assert traffic.unexpected == []
