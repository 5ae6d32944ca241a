"""Prediction quality through the whole rollout on the local cloud: real endpoints, data capture on, traffic
that sends an InferenceId with every request and uploads the true outcome of most answers under
feedback/<model>/. A good candidate is promoted through A/B, full and the post-promotion watch with its
quality judged in each; one that answers as fast and with no more errors but turns wrong once it takes all
the traffic is rolled back on quality in full, judged against the champion's labelled predictions before.

No shadow stage: the candidates are the champion's model again (a copied package: no training), and the
shadow's paired tests learn only from requests the two answer differently, which identical models never do."""

from __future__ import annotations

import time

import pytest

from localcloud.demo import Feedback
from localcloud.demo import Traffic as LabelledTraffic
from localcloud.deployer import Deployer

from .conftest import wait_for
from .test_workflow_rollout import _config, _records, _rollout
from .test_workflow_rollout_safety import _copy_package
from .workflow import EXAMPLE, ROOT, App, generate, unique

# Like the other rollouts with live traffic (tests/conftest.py's SERIAL_MODULES): under pytest-xdist it runs
# on the one worker that runs those in sequence, so that two of them never share the CPU.
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # serial under xdist: tests/conftest.py SERIAL_MODULES


@pytest.fixture(scope="module")
def app(cloud):
    outputs = Deployer(cloud, "wq").deploy(ROOT / "template.yaml", {"StageName": "wqtest"})
    return App(cloud, outputs | {"_stack": "wq"})


def _turns_wrong(flag) -> str:
    """The example's serving script, right until ``flag`` exists, then answering every row with the
    opposite probability: no error, no slower, only wrong (the test raises it once the candidate serves alone)."""
    return (
        (EXAMPLE / "inference.py").read_text()
        + f"""

_predict_right = predict_fn


def predict_fn(data, model):  # right until the test raises the flag, then the opposite of right
    import os

    scores = _predict_right(data, model)
    return 1.0 - scores if os.path.exists({str(flag)!r}) else scores
"""
    )


def _verdicts(app, model: str, version: int, stage: str) -> list[dict]:
    return [
        r
        for r in _records(app, model)
        if r["event"] == "verdict" and r["package"].endswith(f"/{version}") and r["stage"] == stage
    ]


def _metric(verdict: dict, name: str) -> dict:
    (found,) = [m for m in verdict["statistics"] if m["metric"] == name]
    return found


def test_quality_is_judged_in_full_and_the_watch_and_a_candidate_that_turns_wrong_is_rolled_back_on_it(
    app, cloud, tmp_path
):
    began = time.monotonic()
    model = unique("qual")
    flag = tmp_path / "turn-wrong"
    config = _config(model, watch=True)
    config["rollout"]["shadow"]["enabled"] = False  # A/B 50 % -> full -> watch
    config["rollout"]["ab"]["max_duration_minutes"] = 180  # decided in 5-15 here; room for a loaded machine
    # Twin candidates: the tests that rule out a 4x (errors) or 3x (wrong answers) worse candidate decide in a
    # few minutes, a doubling would take 10-80. alpha 0.001 on quality: a false rollback rarer still; the wrong
    # candidate (about 75 % of its answers wrong, against the champion's 20 %) is caught in a minute or two.
    config["rollout"]["judge"]["error_rate"] |= {"delta": 3.0}
    config["rollout"]["judge"]["quality"] = {"min_samples": 50, "alpha": 0.001, "delta": 2.0}
    code = {"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": _turns_wrong(flag).encode()}
    app.upload_project(model, config, code=code)
    app.upload_dataset(model, "d1")
    assert app.run_of(model, "d1")["status"] == "SUCCEEDED"
    assert _rollout(app, model, 1)["status"] == "SUCCEEDED"
    v1 = app.sagemaker.describe_model_package(ModelPackageName=app.packages(model)[0]["ModelPackageArn"])

    frame = generate(400, seed=21)  # held-out rows, with the true outcome the traffic uploads later
    features = frame.drop(columns=["target"]).itertuples(index=False)
    rows = [(",".join(str(v) for v in row), int(label)) for row, label in zip(features, frame["target"], strict=True)]
    feedback = Feedback(app.s3, app.bucket, model, share=0.8, now=cloud.clock.now, every=0.5)
    traffic = LabelledTraffic(
        cloud.client("sagemaker-runtime"), model, rows, rate=80.0, malformed=0.1, feedback=feedback
    ).start()
    try:
        wait_for(lambda: feedback.uploaded > 100, timeout=30)  # the champion's labelled answers, the baseline
        # A good candidate (the same model again): promoted through A/B, full and the watch, quality judged in each
        _copy_package(app, model, v1)
        good = _rollout(app, model, 2)
        assert good["status"] == "SUCCEEDED", good
        for stage in ("full", "watch"):
            promoted = _verdicts(app, model, 2, stage)[-1]
            assert promoted["verdict"] == "PROMOTE", promoted
            quality = _metric(promoted, "quality")
            assert quality["verdict"] == "PROMOTE", promoted
            assert quality["candidate_samples"] >= 50, quality
            assert quality["champion_samples"] >= 50, quality  # the champion's labelled answers before the stage
        assert _metric(_verdicts(app, model, 2, "ab")[-1], "quality")["verdict"] == "PROMOTE"
        promoted_config = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
        promoted_at = time.monotonic()

        # A candidate that passes A/B, then answers every request wrongly once it takes all the traffic
        _copy_package(app, model, v1)
        try:
            wait_for(
                lambda: any(
                    r["event"] == "stage-entered" and r.get("stage") == "full" and r["package"].endswith("/3")
                    for r in _records(app, model)
                ),
                timeout=240,
            )
        except AssertionError:
            print(*[r for r in _records(app, model) if r["package"].endswith("/3")], sep="\n")
            raise
        flag.touch()
        wrong = _rollout(app, model, 3)
        flag.unlink()
    finally:
        traffic.stop()

    assert wrong["status"] == "FAILED"
    rolled_back = _verdicts(app, model, 3, "full")[-1]
    assert rolled_back["verdict"] == "ROLLBACK", rolled_back
    assert [m["metric"] for m in rolled_back["statistics"] if m["verdict"] == "ROLLBACK"] == ["quality"]
    assert "misclassification rate is higher than the old champion's" in rolled_back["explanation"]
    assert _metric(rolled_back, "quality")["champion_samples"] >= 50
    restored = app.sagemaker.describe_endpoint(EndpointName=model)
    assert restored["EndpointConfigName"] == promoted_config
    assert [v["VariantName"] for v in restored["ProductionVariants"]] == ["v2"]
    assert (
        app.sagemaker.describe_model_package(ModelPackageName=f"{v1['ModelPackageArn'][:-2]}/3")["ModelApprovalStatus"]
        == "Rejected"
    )
    # each stage kept its quality reading in S3 between judge calls
    states = app.s3.list_objects_v2(Bucket=app.bucket, Prefix=f"capture/_judge-state/{model}/").get("Contents", [])
    assert len(states) >= 5, [s["Key"] for s in states]  # v2: A/B, full, watch; v3: A/B, full
    assert traffic.failures == []
    print(
        f"good rollout in {promoted_at - began:.0f} s from the start, wrong one rolled back "
        f"{time.monotonic() - promoted_at:.0f} s later; {feedback.uploaded} labels uploaded, {traffic.sent} requests"
    )
