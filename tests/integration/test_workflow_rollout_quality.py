"""Prediction quality in a rollout on the local cloud: real endpoints with data capture, traffic that sends an
InferenceId with every request and uploads the true outcome of most answers under feedback/<model>/. A candidate
that answers as fast and with no more errors, but wrongly once it takes all the traffic, passes A/B on quality
and is rolled back on quality in full, judged against the champion's labelled predictions before the stage.

No shadow stage: the candidate is the champion's model again until it turns (the shadow's paired tests learn only
from requests the two answer differently). It turns wrong in the traffic's own thread, before the first request
that full sends it: no verdict here depends on how loaded the machine is. How quality is judged is unit-tested
(tests/unit/test_rollout_quality.py, tests/unit/test_judge.py, tests/unit/handlers/test_judge_stage.py).
"""

from __future__ import annotations

import pytest

from localcloud.demo import Feedback

from .workflow import JUDGE, ROLLED_BACK, STAGE, STARTED, Traffic, rollout_config, serving_script, stages_passed, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _turns_wrong(flag) -> str:
    """The example's serving script, right until ``flag`` exists, then answering every row with the opposite
    probability: no error, no slower, only wrong."""
    return serving_script(
        f"""def predict_fn(data, model):  # right until the test raises the flag, then the opposite of right
    import os

    scores = _predict(data, model)
    return 1.0 - scores if os.path.exists({str(flag)!r}) else scores
"""
    )


def _metric(verdict: dict, name: str) -> dict:
    (found,) = [m for m in verdict["statistics"] if m["metric"] == name]
    return found


def test_a_candidate_that_answers_wrongly_once_it_takes_all_the_traffic_is_rolled_back_on_quality_in_full(
    rollout_app, churn_package, cloud, tmp_path
):
    app = rollout_app
    # Given a champion whose answers' true outcomes arrive as feedback, and rollouts through A/B 50 % and full
    # judged on quality too (a candidate 3x as often wrong must be caught)
    model = unique("qual")
    config = rollout_config(model, shadow=False)
    config["rollout"]["judge"]["quality"] = JUDGE | {"delta": 2.0}
    app.upload_project(model, config)
    app.register(model, churn_package)
    assert app.rollout(model, 1)["status"] == "SUCCEEDED"
    champion = app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
    flag = tmp_path / "turn-wrong"

    def turn_wrong_in_full() -> None:
        if not flag.exists() and dict(app.serving(model)).get("v2") == 100.0:
            flag.touch()

    feedback = Feedback(app.s3, app.bucket, model, share=0.8, now=cloud.clock.now, every=0.5)
    with Traffic(cloud, model, malformed=0.1, feedback=feedback, before_each=turn_wrong_in_full) as traffic:
        # When a candidate passes A/B, then answers every request wrongly once it takes all the traffic (full's
        # baseline: the champion's labelled answers, in A/B at least the 50 a promotion needs)
        v2 = app.register(model, churn_package, inference=_turns_wrong(flag))
        wrong = app.rollout(model, 2)

    # Then full rolls it back on quality alone, judged against the champion's labelled predictions before it
    assert wrong["status"] == "FAILED"
    assert app.path(wrong) == STARTED + stages_passed(1) + STAGE + ROLLED_BACK
    verdicts = [r for r in app.records(model) if r["package"] == v2 and r["event"] == "verdict"]
    passed = [v for v in verdicts if v["stage"] == "ab"][-1]
    assert _metric(passed, "quality")["verdict"] == "PROMOTE"  # A/B: each variant's labelled answers
    rolled_back = verdicts[-1]
    assert (rolled_back["stage"], rolled_back["verdict"]) == ("full", "ROLLBACK")
    assert [m["metric"] for m in rolled_back["statistics"] if m["verdict"] == "ROLLBACK"] == ["quality"]
    assert "misclassification rate is higher than the old champion's" in rolled_back["explanation"]
    assert _metric(rolled_back, "quality")["champion_samples"] >= 50
    assert app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"] == champion
    assert app.sagemaker.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Rejected"
    # each stage kept its quality reading in S3 between judge calls
    states = app.s3.list_objects_v2(Bucket=app.bucket, Prefix=f"capture/_judge-state/{model}/").get("Contents", [])
    assert len(states) >= 2, [s["Key"] for s in states]  # A/B, full
    assert traffic.unexpected == []
