"""The rollout's pure planning: stages from a config, endpoint config requests, retiring old versions."""

from __future__ import annotations

import pytest
from shepherd.config import load_config
from shepherd.rollout import plan


def _config(text: str = "") -> object:
    return load_config("framework: sklearn\nentry_point: train.py\n" + text, "models/churn/shepherd.yaml")


def test_stages_follow_the_config_and_serverless_has_the_watch_alone():
    config = _config("rollout:\n  ab:\n    steps: [10, 50]\n")
    assert [(s.kind, s.weight) for s in plan.stages(config)] == [
        ("replay", 0),
        ("shadow", 100),
        ("ab", 10),
        ("ab", 50),
        ("full", 100),
        ("watch", 100),
    ]
    # serverless: one production variant and no capture, so the switch, then the watch
    assert [(s.kind, s.weight) for s in plan.stages(config, "serverless")] == [("watch", 100)]
    unwatched = _config("rollout:\n  post_promotion_watch:\n    enabled: false\n")
    assert plan.stages(unwatched, "serverless") == []


def test_a_multi_model_endpoint_skips_shadow_and_keeps_ab_full_and_the_watch():
    config = _config("rollout:\n  ab:\n    steps: [10, 50]\n")
    assert [(s.kind, s.weight) for s in plan.stages(config, "multi_model")] == [
        ("replay", 0),
        ("ab", 10),
        ("ab", 50),
        ("full", 100),
        ("watch", 100),
    ]
    shadow_only = _config("rollout:\n  ab:\n    enabled: false\n")
    assert plan.stages(shadow_only, "multi_model") == []  # nothing left to judge: a direct switch


def test_replay_comes_first_where_the_endpoint_captures_and_its_budget_is_a_tenth_of_alpha():
    config = _config()
    stages = plan.stages(config)
    assert stages[0].kind == "replay"
    assert (stages[0].alpha_share, stages[0].beta_power) == (0.1, 0.0)
    assert sum(s.alpha_share or 0 for s in stages) == pytest.approx(1.0)
    # Asked off, or no capture to replay: the path without it, its alpha back with the others
    for text in ("rollout:\n  replay:\n    enabled: false\n", "endpoint:\n  data_capture:\n    enabled: false\n"):
        kinds = [s.kind for s in plan.stages(_config(text))]
        assert kinds == ["shadow", "ab", "ab", "ab", "full", "watch"]
    # A direct switch stays one
    assert plan.stages(_config("rollout:\n  shadow:\n    enabled: false\n  ab:\n    enabled: false\n")) == []


def test_replay_jobs_take_a_transform_instance_type_and_a_name_per_run():
    from shepherd.rollout.replay_stage import instance_type

    assert instance_type(None, "ml.m5.xlarge", "ml.m5.large") == "ml.m5.xlarge"
    assert instance_type(None, "ml.t2.medium", "ml.m5.large") == "ml.m5.large"  # Batch Transform has no ml.t2
    assert instance_type("ml.c5.xlarge", "ml.m5.xlarge", "ml.m5.large") == "ml.c5.xlarge"
    first = plan.replay_job_name("a" * 63, 12, "run-1", "candidate")
    assert len(first) <= 63
    assert first == plan.replay_job_name("a" * 63, 12, "run-1", "candidate")
    assert first not in {
        plan.replay_job_name("a" * 63, 12, "run-2", "candidate"),
        plan.replay_job_name("a" * 63, 12, "run-1", "champion"),
    }
    with pytest.raises(Exception, match="Batch Transform instance type"):
        _config("rollout:\n  replay:\n    instance_type: ml.t2.medium\n")


def test_a_multi_model_container_serves_the_package_artifact_from_its_folder():
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"
    package = {
        "Image": "img",
        "ModelDataUrl": "s3://bucket/artifacts/churn/run/job/output/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
    }
    container, target = plan.multi_model_container(package, arn)
    assert target == "model.tar.gz"
    assert container == {
        "Image": "img",
        "ModelDataUrl": "s3://bucket/artifacts/churn/run/job/output/",
        "Mode": "MultiModel",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SHEPHERD_MODEL_PACKAGE": arn},
    }
    assert package["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}  # the package's own is untouched
    for url in ("", "s3://bucket/model.tar.gz", "s3://bucket/artifacts/model.bin", "https://x/y/model.tar.gz"):
        with pytest.raises(ValueError, match="cannot be served by a multi-model endpoint"):
            plan.multi_model_container({"Image": "img", "ModelDataUrl": url}, arn)


def test_full_and_the_watch_follow_their_config_and_a_direct_switch_has_neither():
    config = _config(
        "rollout:\n  ab:\n    enabled: false\n  full:\n    max_duration_minutes: 15\n    at_max_duration: rollback\n"
        "  post_promotion_watch:\n    enabled: false\n"
    )
    stages = plan.stages(config)
    assert [(s.kind, s.max_minutes, s.at_max) for s in stages] == [
        ("replay", 120, "INCONCLUSIVE"),
        ("shadow", 1440, "INCONCLUSIVE"),  # derived from its traffic, a day at most
        ("full", 15, "ROLLBACK"),
    ]
    direct = _config("rollout:\n  shadow:\n    enabled: false\n  ab:\n    enabled: false\n")
    assert plan.stages(direct) == []


def test_shadow_gets_the_weight_it_is_given_and_capture_and_kms_are_set():
    config = _config()
    spec = plan.candidate_spec(config, endpoint="churn", version=2)
    champion = plan.VariantSpec(variant="v1", model_name="churn-v1", instance_type="ml.m5.large", instance_count=3)
    request = plan.endpoint_config(
        config,
        name="c",
        production=[(champion, 1.0)],
        shadow=spec,
        shadow_weight=50.0,
        bucket="b",
        endpoint="churn",
        kms_key_arn="arn:aws:kms:us-east-1:1:key/k",
        tags={},
    )
    assert request["ShadowProductionVariants"][0]["InitialVariantWeight"] == 50.0
    assert request["ProductionVariants"][0]["InitialInstanceCount"] == 3
    assert request["DataCaptureConfig"]["DestinationS3Uri"] == "s3://b/capture/churn"
    # SageMaker writes <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/: where the judge looks
    assert f"s3://b/{plan.capture_prefix('churn')}" == request["DataCaptureConfig"]["DestinationS3Uri"] + "/churn/"
    assert request["KmsKeyId"] == "arn:aws:kms:us-east-1:1:key/k"


def test_config_names_are_unique_per_run_and_stage_and_fit_63_characters():
    names = {plan.config_name("e" * 63, stage, 12, run) for stage in ("shadow", "ab10") for run in ("r1", "r2")}
    assert len(names) == 4
    assert all(len(n) <= 63 for n in names)


def test_retired_keeps_the_newest_and_what_is_in_use_and_never_batch_models():
    names = [(f"churn-v{i}", i) for i in range(1, 10)] + [("churn-v1-batch", 0), ("other-v1", 0)]
    gone = plan.retired(names, prefix="churn-", keep={"churn-v2"}, newest=5)
    assert gone == ["churn-v4", "churn-v3", "churn-v1"]


def test_continuation_names_are_readable_stable_and_fit_80_characters():
    assert plan.continuation_name("churn-v2-7138434a4612e93b", 3) == "churn-v2-7138434a4612e93b-c3"
    long = "m" * 70 + "-v12-7138434a4612e93b"  # a run name at the 80-character limit already
    first, again, second = (plan.continuation_name(long[:80], n) for n in (1, 1, 2))
    assert first == again
    assert first != second
    assert max(len(first), len(second)) <= 80
    assert first.endswith("-c1")
    assert plan.continuation_name(long[:80], 1) != plan.continuation_name(long[:79] + "x", 1)


def test_the_challenger_s_capacity_is_in_proportion_to_its_share_and_raised_a_step_ahead():
    # Per instance, the challenger at w % carries what the champion's fleet does at 100 - w %
    assert [plan.proportional_count(6, w) for w in (1, 10, 25, 50, 75, 100)] == [1, 1, 2, 6, 18, 6]
    assert plan.proportional_count(0, 10) == 1  # at least one
    config = _config("rollout:\n  ab:\n    steps: [10, 25, 50]\n")
    path = plan.stages(config)  # replay, shadow, ab 10, ab 25, ab 50, full, watch
    counts = [plan.challenger_count(path, i, champion_count=6) for i in range(len(path))]
    # replay serves nothing; shadow is sized on its own; each A/B step gets what it and the next need; full 6
    assert counts == [None, None, 2, 6, 6, 6, None]
    single = plan.stages(_config("rollout:\n  shadow:\n    enabled: false\n  ab:\n    steps: [10]\n"))
    assert [plan.challenger_count(single, i, champion_count=4) for i in range(len(single))] == [
        None,  # replay
        4,  # A/B 10 % is followed by full: its instances are InService before full moves the traffic
        4,
        None,
    ]
    assert plan.weights("v1", "v2", 25, 5) == [
        {"VariantName": "v1", "DesiredWeight": 75.0},
        {"VariantName": "v2", "DesiredWeight": 25.0, "DesiredInstanceCount": 5},
    ]
    assert "DesiredInstanceCount" not in plan.weights("v1", "v2", 10)[1]
