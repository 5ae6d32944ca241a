"""Tests for shepherd.config: the per-model shepherd.yaml, its loader, its messages and its JSON Schema."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from shepherd.config import ConfigError, ModelConfig, load_config, model_name_from_source, render_json_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn" / "shepherd.yaml"
SCHEMA = ROOT / "schemas" / "shepherd.schema.json"
SOURCE = "models/churn/shepherd.yaml"
MINIMAL: dict[str, Any] = {"framework": "sklearn", "entry_point": "train.py"}
METRICS = [{"name": "validation:auc", "regex": r"validation:auc=([0-9.]+);"}]


def _load_tool() -> ModuleType:
    # tools/ holds scripts, not a package, so load the module from its file.
    spec = importlib.util.spec_from_file_location("export_config_schema", ROOT / "tools" / "export_config_schema.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_text(**sections: Any) -> str:
    """The minimal config with top-level keys added or replaced, as YAML."""
    return yaml.safe_dump({**copy.deepcopy(MINIMAL), **sections}, sort_keys=False)


def problems(text: str, source: str = SOURCE) -> list[str]:
    """The lines of the ConfigError that loading the text raises."""
    with pytest.raises(ConfigError) as raised:
        load_config(text, source)
    return str(raised.value).splitlines()


# ---------------------------------------------------------------- valid configs


def test_example_config_loads() -> None:
    # Given the documented churn example
    # When it is loaded as the churn model's config
    config = load_config(EXAMPLE.read_text(), SOURCE)
    # Then it says what examples/churn needs
    assert (config.framework, config.framework_version) == ("sklearn", "1.2-1")
    assert (config.entry_point, config.inference_entry_point) == ("train.py", "inference.py")
    assert config.hyperparameters == {"n_estimators": 100, "max_depth": 5, "random_state": 0}
    assert [d.name for d in config.training.metric_definitions] == ["validation:accuracy", "validation:auc"]
    assert [g.metric for g in config.evaluation.gates] == ["validation:auc", "validation:accuracy"]
    assert config.registry.approval == "automatic"


def test_example_metric_regexes_match_what_train_py_prints() -> None:
    # Given the example's metric definitions and the line format of examples/churn/train.py
    config = load_config(EXAMPLE.read_text(), SOURCE)
    log = "validation:accuracy=0.8114;\nvalidation:auc=0.8236;\n"
    # When each regex runs over the log
    matches = {d.name: re.search(d.regex, log) for d in config.training.metric_definitions}
    # Then each finds its value in its first group
    assert {name: match.group(1) if match else None for name, match in matches.items()} == {
        "validation:accuracy": "0.8114",
        "validation:auc": "0.8236",
    }


def test_minimal_config_gets_the_documented_defaults() -> None:
    # Given a config with only framework and entry_point
    # When it is loaded
    config = load_config(config_text(), SOURCE)
    # Then every other key has the default docs/CONFIG.md gives
    assert (config.framework_version, config.py_version, config.inference_entry_point) == ("1.2-1", "py3", "train.py")
    assert config.hyperparameters == {}
    training = config.training
    assert (training.instance_type, training.instance_count, training.volume_size_gb) == ("ml.m5.large", 1, 30)
    assert (training.max_runtime_seconds, training.network_isolation, training.metric_definitions) == (3600, True, [])
    assert (training.spot.enabled, training.spot.max_wait_seconds, training.spot.checkpoint_s3_uri) == (
        False,
        None,
        None,
    )
    assert config.evaluation.gates == []
    assert (config.registry.model_package_group, config.registry.approval) == ("churn", "manual")
    endpoint = config.endpoint
    assert (endpoint.name, endpoint.kind, endpoint.serverless) == ("churn", "realtime", None)
    assert endpoint.realtime is not None
    assert (endpoint.realtime.instance_type, endpoint.realtime.instance_count) == ("ml.m5.large", 2)
    assert (endpoint.realtime.allow_single_instance, endpoint.realtime.single_instance_reason) == (False, None)
    assert (endpoint.data_capture.enabled, endpoint.data_capture.sampling_percentage) == (True, 100)
    scaling = endpoint.autoscaling
    assert scaling is not None
    assert (scaling.enabled, scaling.min_capacity, scaling.max_capacity) == (True, 2, 10)
    assert (scaling.target_invocations_per_instance, scaling.scale_in_cooldown_seconds) == (70.0, 300)
    assert scaling.scale_out_cooldown_seconds == 60
    monitoring = config.monitoring
    assert (monitoring.enabled, monitoring.schedule, monitoring.monitoring_config) == (True, "rate(1 hour)", {})
    assert monitoring.alert.false_alarms_per_month == 1.0
    retrain = monitoring.retrain
    assert (retrain.on, retrain.sustained_hours, retrain.cooldown_hours, retrain.dataset) == ([], 3, 24, None)
    rollout = config.rollout
    assert rollout.judge_interval_minutes == 5
    assert (rollout.shadow.enabled, rollout.shadow.max_duration_minutes, rollout.shadow.at_max_duration) == (
        True,
        None,  # derived from the stage's traffic
        "inconclusive",
    )
    assert (rollout.ab.steps, rollout.ab.max_duration_minutes, rollout.ab.at_max_duration) == (
        [10, 25, 50],
        None,
        "inconclusive",
    )
    assert (rollout.full.max_duration_minutes, rollout.post_promotion_watch.max_duration_minutes) == (None, 120)
    error_rate = rollout.judge.error_rate
    assert (error_rate.alpha, error_rate.beta, error_rate.delta, error_rate.min_samples) == (0.05, 0.2, 1.0, 100)
    assert (rollout.judge.latency, rollout.judge.quality) == (None, None)
    batch = config.batch
    assert (batch.instance_type, batch.instance_count, batch.max_concurrent_transforms) == ("ml.m5.large", 1, 1)
    assert (batch.max_payload_mb, batch.strategy, batch.split_type, batch.assemble_with) == (
        6,
        "MultiRecord",
        "Line",
        "Line",
    )
    assert (batch.content_type, batch.accept, batch.max_runtime_seconds) == ("text/csv", "text/csv", 3600)


def test_xgboost_defaults_to_its_own_version() -> None:
    # Given an xgboost config without a version
    # When it is loaded
    config = load_config(config_text(framework="xgboost"), SOURCE)
    # Then it gets the xgboost default
    assert config.framework_version == "1.7-1"


def test_spot_wait_defaults_to_twice_the_runtime() -> None:
    # Given spot training without max_wait_seconds
    text = config_text(training={"max_runtime_seconds": 900, "spot": {"enabled": True}})
    # When it is loaded
    config = load_config(text, SOURCE)
    # Then SageMaker gets a wait that covers the runtime
    assert config.training.spot.max_wait_seconds == 1800


def test_serverless_endpoint_defaults() -> None:
    # Given a serverless endpoint with nothing else said
    # When it is loaded
    config = load_config(config_text(endpoint={"kind": "serverless"}), SOURCE)
    endpoint = config.endpoint
    # Then it has serverless defaults, no instances, no scaling target, and data capture and monitoring off
    assert endpoint.serverless is not None
    assert (endpoint.serverless.memory_mb, endpoint.serverless.max_concurrency) == (2048, 5)
    assert (endpoint.realtime, endpoint.autoscaling) == (None, None)
    assert (endpoint.data_capture.enabled, config.monitoring.enabled) == (False, False)


def test_single_instance_allowed_when_asked_with_a_reason() -> None:
    # Given one instance with the explicit opt-in and why
    realtime = {"instance_count": 1, "allow_single_instance": True, "single_instance_reason": "internal, no SLA"}
    # When it is loaded
    endpoint = load_config(config_text(endpoint={"realtime": realtime}), SOURCE).endpoint
    # Then one instance is accepted, and the default scaling target starts from it
    assert endpoint.realtime is not None
    assert endpoint.realtime.instance_count == 1
    assert endpoint.autoscaling is not None
    assert (endpoint.autoscaling.min_capacity, endpoint.autoscaling.max_capacity) == (1, 10)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        pytest.param({"realtime": {"instance_count": 3}}, (3, 10, 70.0), id="min-follows-the-count"),
        pytest.param({"realtime": {"instance_count": 12}}, (12, 12, 70.0), id="max-at-least-the-count"),
        pytest.param({"autoscaling": {"max_capacity": 4}}, (2, 4, 70.0), id="partial-override"),
        pytest.param(
            {"kind": "multi_model", "autoscaling": {"target_invocations_per_instance": 750}},
            (2, 10, 750.0),
            id="multi-model",
        ),
    ],
)
def test_autoscaling_is_on_by_default_for_instance_endpoints(
    endpoint: dict[str, Any], expected: tuple[int, int, float]
) -> None:
    # Given a real-time or multi-model endpoint that says little or nothing about scaling
    # When it is loaded
    scaling = load_config(config_text(endpoint=endpoint), SOURCE).endpoint.autoscaling
    # Then it gets target tracking with the seed's values, its capacity range holding instance_count
    assert scaling is not None
    assert scaling.enabled is True
    assert (scaling.min_capacity, scaling.max_capacity, scaling.target_invocations_per_instance) == expected


def test_autoscaling_opt_out_keeps_a_fixed_count() -> None:
    # Given an endpoint that opts out of autoscaling, saying why
    opt_out = {"enabled": False, "reason": "steady traffic, sized by load test"}
    # When it is loaded
    scaling = load_config(config_text(endpoint={"autoscaling": opt_out}), SOURCE).endpoint.autoscaling
    # Then no capacity range is filled in
    assert scaling is not None
    assert (scaling.enabled, scaling.reason, scaling.min_capacity, scaling.max_capacity) == (
        False,
        "steady traffic, sized by load test",
        None,
        None,
    )


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"endpoint": {"kind": "serverless"}}, id="serverless"),
        pytest.param({"endpoint": {"autoscaling": {"enabled": False, "reason": "fixed"}}}, id="scaling-opt-out"),
        pytest.param({"endpoint": {"data_capture": {"enabled": False}}}, id="no-capture"),
        pytest.param(
            {"monitoring": {"schedule": "cron(0 */6 * * ? *)", "monitoring_config": {"comparison_threshold": 0.2}}},
            id="monitoring",
        ),
    ],
)
def test_every_kind_of_config_survives_a_round_trip(sections: dict[str, Any]) -> None:
    # Given a loaded config whose defaults depend on other keys (scaling, capture, monitoring)
    config = load_config(config_text(**sections), SOURCE)
    payload = json.loads(json.dumps(config.model_dump(mode="json")))
    # When the next handler validates the payload
    # Then it gets the same config back
    assert ModelConfig.model_validate(payload) == config


@pytest.mark.parametrize(
    "schedule",
    [
        "rate(1 minute)",
        "rate(6 hours)",
        "rate(1 day)",
        "cron(0 * * * ? *)",
        "cron(15 9 ? * MON-FRI *)",
        "cron(0 0 L * ? *)",
        "cron(0 8 ? * 2#1 *)",
    ],
)
def test_monitoring_takes_eventbridge_schedule_expressions(schedule: str) -> None:
    # Given a monitoring schedule as EventBridge Scheduler writes them
    # When it is loaded
    # Then it is kept as given
    assert load_config(config_text(monitoring={"schedule": schedule}), SOURCE).monitoring.schedule == schedule


def test_a_bare_on_key_is_read_as_written() -> None:
    # Given retrain.on written unquoted, which YAML 1.1 (PyYAML) reads as the key true
    text = config_text() + "monitoring:\n  retrain:\n    on: [drift]\n"
    # When it is loaded
    # Then it is the key on
    assert load_config(text, SOURCE).monitoring.retrain.on == ["drift"]


def test_monitoring_follows_data_capture() -> None:
    # Given an endpoint whose data capture is off
    config = load_config(config_text(endpoint={"data_capture": {"enabled": False}}), SOURCE)
    # When it is loaded
    # Then monitoring is off too: there is nothing to read
    assert config.monitoring.enabled is False


def test_monitoring_overrides_and_retraining_are_kept() -> None:
    # Given Model Monitor threshold overrides and retraining on drift
    monitoring = {
        "monitoring_config": {"comparison_threshold": 0.2, "categorical_drift_method": "ChiSquared"},
        "alert": {"false_alarms_per_month": 0.5},
        "retrain": {"on": ["drift"], "dataset": "s3://shepherd-data/training/churn/2026-12/"},
    }
    # When it is loaded
    config = load_config(config_text(monitoring=monitoring), SOURCE).monitoring
    # Then they are as given
    assert config.monitoring_config == {"comparison_threshold": 0.2, "categorical_drift_method": "ChiSquared"}
    assert (config.alert.false_alarms_per_month, config.retrain.on) == (0.5, ["drift"])
    assert config.retrain.dataset == "s3://shepherd-data/training/churn/2026-12/"


def test_retraining_on_quality_loss_is_taken_and_each_cause_only_once() -> None:
    config = load_config(config_text(monitoring={"retrain": {"on": ["drift", "quality"]}}), SOURCE)
    assert config.monitoring.retrain.on == ["drift", "quality"]
    with pytest.raises(ConfigError) as refused:
        load_config(config_text(monitoring={"retrain": {"on": ["quality", "quality"]}}), SOURCE)
    assert "at most once" in str(refused.value)


def test_explicit_names_win_over_the_model_name() -> None:
    # Given a config naming its package group and endpoint
    text = config_text(registry={"model_package_group": "churn-v2"}, endpoint={"name": "churn-prod"})
    # When it is loaded
    config = load_config(text, SOURCE)
    # Then the names given are kept
    assert (config.registry.model_package_group, config.endpoint.name) == ("churn-v2", "churn-prod")


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ("models/churn/shepherd.yaml", "churn"),
        ("s3://shepherd-data-123456789012/models/churn-eu/shepherd.yaml", "churn-eu"),
        ("examples/churn/shepherd.yaml", "churn"),
        ("models/churn_v2/shepherd.yaml", None),
        ("shepherd.yaml", None),
    ],
)
def test_model_name_comes_from_the_directory(source: str, model: str | None) -> None:
    # Given a config's location
    # When the model's name is derived from it
    # Then it is the directory holding the file, when that is a valid SageMaker name
    assert model_name_from_source(source) == model


def test_model_argument_overrides_the_source() -> None:
    # Given a config read from a path that names no model
    # When it is loaded with the model's name given
    config = load_config(config_text(), "<stdin>", model="fraud")
    # Then the name fills the name defaults
    assert (config.registry.model_package_group, config.endpoint.name) == ("fraud", "fraud")


def test_unknown_model_name_is_refused() -> None:
    # Given a source that names no valid model
    # When it is loaded without a model name
    # Then the error says the model's name is unknown
    assert problems(config_text(), "models/churn_v2/shepherd.yaml") == [
        "models/churn_v2/shepherd.yaml: cannot tell the model's name: "
        "expected models/<model>/shepherd.yaml, got 'models/churn_v2/shepherd.yaml'"
    ]


def test_loaded_config_survives_a_round_trip() -> None:
    # Given a loaded config, as a handler passes it on in a state machine's payload
    config = load_config(EXAMPLE.read_text(), SOURCE)
    payload = json.loads(json.dumps(config.model_dump(mode="json")))
    # When the next handler validates the payload
    # Then it gets the same config back
    assert ModelConfig.model_validate(payload) == config


# ---------------------------------------------------------------- each rule refuses: key, value, what is allowed


REFUSALS = [
    pytest.param(
        {"framework": "pytorch"},
        "framework: \"pytorch\" is not allowed (must be 'sklearn' or 'xgboost')",
        id="framework",
    ),
    pytest.param(
        {"framework_version": "9.9-1"},
        'framework_version: "9.9-1" is not allowed (sklearn versions: 0.20.0, 0.23-1, 1.0-1, 1.2-1, 1.4-2)',
        id="framework_version",
    ),
    pytest.param(
        {"framework_version": 1.2},
        'framework_version: 1.2 is not allowed (must be a string; quote it, e.g. "1.2-1")',
        id="unquoted-version",
    ),
    pytest.param({"py_version": "py2"}, "py_version: \"py2\" is not allowed (must be 'py3')", id="py_version"),
    pytest.param(
        {"entry_point": "train.sh"},
        'entry_point: "train.sh" is not allowed '
        "(must be a .py file such as train.py, relative to models/<model>/code/)",
        id="entry_point-not-python",
    ),
    pytest.param(
        {"entry_point": "src/../../train.py"},
        'entry_point: "src/../../train.py" is not allowed (must be a path inside models/<model>/code/, without ..)',
        id="entry_point-escapes",
    ),
    pytest.param(
        {"hyperparameters": {"layers": [1, 2]}},
        "hyperparameters.layers: [1, 2] is not allowed (must be a string, number or boolean)",
        id="hyperparameter-list",
    ),
    pytest.param(
        {"hyperparameters": {"sagemaker_program": "x.py"}},
        'hyperparameters.sagemaker_program: "x.py" is not allowed '
        "(names starting with sagemaker_ are set by the framework container)",
        id="hyperparameter-reserved",
    ),
    pytest.param(
        {"training": {"instance_type": "m5.large"}},
        'training.instance_type: "m5.large" is not allowed (must be a SageMaker instance type such as ml.m5.large)',
        id="instance_type",
    ),
    pytest.param(
        {"training": {"instance_count": 2}},
        "training.instance_count: 2 is not allowed (scikit-learn trains on 1 instance)",
        id="sklearn-distributed",
    ),
    pytest.param(
        {"training": {"instance_type": "ml.g5.xlarge"}},
        'training.instance_type: "ml.g5.xlarge" is not allowed (the scikit-learn images run on CPU instances only)',
        id="sklearn-gpu",
    ),
    pytest.param(
        {"training": {"max_runtime_seconds": 0}},
        "training.max_runtime_seconds: 0 is not allowed (must be >= 1)",
        id="max_runtime_seconds-low",
    ),
    pytest.param(
        {"training": {"max_runtime_seconds": 3000000}},
        "training.max_runtime_seconds: 3000000 is not allowed (must be <= 2419200)",
        id="max_runtime_seconds-high",
    ),
    pytest.param(
        {"training": {"volume_size_gb": "30"}},
        'training.volume_size_gb: "30" is not allowed (must be a whole number)',
        id="volume_size_gb-string",
    ),
    pytest.param(
        {"training": {"max_runtime_seconds": 7200, "spot": {"enabled": True, "max_wait_seconds": 3600}}},
        "training.spot.max_wait_seconds: 3600 is not allowed (must be >= training.max_runtime_seconds, 7200)",
        id="spot-wait-shorter-than-runtime",
    ),
    pytest.param(
        {"training": {"spot": {"enabled": True, "checkpoint_s3_uri": "/tmp/ckpt"}}},
        'training.spot.checkpoint_s3_uri: "/tmp/ckpt" is not allowed (must be an S3 URI such as s3://bucket/prefix/)',
        id="checkpoint-uri",
    ),
    pytest.param(
        {"training": {"network_isolation": "yes please"}},
        'training.network_isolation: "yes please" is not allowed (must be true or false)',
        id="network_isolation",
    ),
    pytest.param(
        {"training": {"metric_definitions": [{"name": "auc", "regex": "auc=([0-9.]+"}]}},
        'training.metric_definitions[0].regex: "auc=([0-9.]+" is not allowed '
        "(must be a valid regular expression: missing ), unterminated subpattern at position 4)",
        id="regex-invalid",
    ),
    pytest.param(
        {"training": {"metric_definitions": [{"name": "auc", "regex": "auc=[0-9.]+"}]}},
        'training.metric_definitions[0].regex: "auc=[0-9.]+" is not allowed '
        "(must have a capture group around the value, e.g. accuracy=([0-9.]+))",
        id="regex-without-group",
    ),
    pytest.param(
        {"training": {"metric_definitions": METRICS + METRICS}},
        'training.metric_definitions[1].name: "validation:auc" is not allowed (must be unique)',
        id="metric-duplicate",
    ),
    pytest.param(
        {"evaluation": {"gates": [{"metric": "validation:f1", "direction": "maximize", "threshold": 0.5}]}},
        'evaluation.gates[0].metric: "validation:f1" is not allowed (must name one of training.metric_definitions)',
        id="gate-unknown-metric",
    ),
    pytest.param(
        {"training": {"metric_definitions": METRICS}, "evaluation": {"gates": [{"metric": "validation:auc"}]}},
        "evaluation.gates[0].direction: missing (required; one of maximize | minimize)",
        id="gate-direction-missing",
    ),
    pytest.param(
        {
            "training": {"metric_definitions": METRICS},
            "evaluation": {"gates": [{"metric": "validation:auc", "direction": "up"}]},
        },
        "evaluation.gates[0].direction: \"up\" is not allowed (must be 'maximize' or 'minimize')",
        id="gate-direction",
    ),
    pytest.param(
        {
            "training": {"metric_definitions": METRICS},
            "evaluation": {
                "gates": [{"metric": "validation:auc", "direction": "maximize", "must_beat_champion_by": -0.1}]
            },
        },
        "evaluation.gates[0].must_beat_champion_by: -0.1 is not allowed (must be >= 0)",
        id="gate-negative-margin",
    ),
    pytest.param(
        {
            "training": {"metric_definitions": METRICS},
            "evaluation": {
                "gates": [{"metric": "validation:auc", "direction": "maximize", "must_beat_champion_by": None}]
            },
        },
        "evaluation.gates[0].must_beat_champion_by: null is not allowed "
        "(a gate needs a threshold, a champion margin, or both)",
        id="gate-tests-nothing",
    ),
    pytest.param(
        {
            "training": {"metric_definitions": METRICS},
            "evaluation": {
                "gates": [
                    {"metric": "validation:auc", "direction": "maximize", "threshold": 0.7},
                    {"metric": "validation:auc", "direction": "maximize", "threshold": 0.8},
                ]
            },
        },
        'evaluation.gates[1].metric: "validation:auc" is not allowed (one gate per metric)',
        id="gate-duplicate",
    ),
    pytest.param(
        {"registry": {"approval": "auto"}},
        "registry.approval: \"auto\" is not allowed (must be 'manual' or 'automatic')",
        id="approval",
    ),
    pytest.param(
        {"registry": {"model_package_group": "churn_model"}},
        'registry.model_package_group: "churn_model" is not allowed '
        "(must be 1..63 letters, digits and hyphens, starting and ending with a letter or digit)",
        id="package-group-name",
    ),
    pytest.param(
        {"endpoint": {"kind": "async"}},
        "endpoint.kind: \"async\" is not allowed (must be 'realtime', 'serverless' or 'multi_model')",
        id="endpoint-kind",
    ),
    pytest.param(
        {"endpoint": {"realtime": {"instance_count": 0}}},
        "endpoint.realtime.instance_count: 0 is not allowed (must be >= 1)",
        id="realtime-zero-instances",
    ),
    pytest.param(
        {"endpoint": {"realtime": {"instance_count": 1}}},
        "endpoint.realtime.instance_count: 1 is not allowed (must be >= 2 so the endpoint survives an Availability "
        "Zone outage; set allow_single_instance: true and single_instance_reason to allow 1)",
        id="realtime-single-instance",
    ),
    pytest.param(
        {"endpoint": {"realtime": {"instance_count": 1, "allow_single_instance": True}}},
        "endpoint.realtime.single_instance_reason: null is not allowed (required with allow_single_instance: true: "
        "say why one instance, without Availability Zone redundancy, is acceptable)",
        id="single-instance-without-reason",
    ),
    pytest.param(
        {"endpoint": {"realtime": {"single_instance_reason": "dev"}}},
        "endpoint.realtime.allow_single_instance: false is not allowed "
        "(must be true when single_instance_reason is given)",
        id="reason-without-opt-in",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless", "serverless": {"memory_mb": 1500}}},
        "endpoint.serverless.memory_mb: 1500 is not allowed (must be a multiple of 1024)",
        id="serverless-memory-step",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless", "serverless": {"memory_mb": 8192}}},
        "endpoint.serverless.memory_mb: 8192 is not allowed (must be <= 6144)",
        id="serverless-memory-high",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless", "serverless": {"max_concurrency": 201}}},
        "endpoint.serverless.max_concurrency: 201 is not allowed (must be <= 200)",
        id="serverless-concurrency",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless", "data_capture": {"enabled": True}}},
        "endpoint.data_capture.enabled: true is not allowed (SageMaker serverless endpoints do not capture data: "
        "they are monitored only for errors, latency and batch outputs)",
        id="serverless-capture",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless"}, "monitoring": {"enabled": True}},
        "monitoring.enabled: true is not allowed (SageMaker serverless endpoints do not capture data: "
        "they are monitored only for errors, latency and batch outputs)",
        id="serverless-monitoring",
    ),
    pytest.param(
        {"endpoint": {"data_capture": {"enabled": False}}, "monitoring": {"enabled": True}},
        "monitoring.enabled: true is not allowed (the monitor reads captured data: needs data capture)",
        id="monitoring-without-capture",
    ),
    pytest.param(
        {"monitoring": {"enabled": False, "retrain": {"on": ["drift"]}}},
        'monitoring.retrain.on: ["drift"] is not allowed (needs monitoring.enabled)',
        id="retrain-without-monitoring",
    ),
    pytest.param(
        {"monitoring": {"schedule": "rate(1 hours)"}},
        'monitoring.schedule: "rate(1 hours)" is not allowed '
        "(a rate's unit is singular for 1 and plural otherwise: rate(1 hour), rate(6 hours))",
        id="schedule-rate-plural",
    ),
    pytest.param(
        {"monitoring": {"schedule": "rate(1 week)"}},
        'monitoring.schedule: "rate(1 week)" is not allowed '
        "(must be rate(<value> <unit>) with unit minute(s), hour(s) or day(s), e.g. rate(1 hour))",
        id="schedule-rate-unit",
    ),
    pytest.param(
        {"monitoring": {"schedule": "0 * * * *"}},
        'monitoring.schedule: "0 * * * *" is not allowed '
        "(must be a rate(...) or cron(...) expression, e.g. rate(1 hour) or cron(0 * * * ? *))",
        id="schedule-unix-cron",
    ),
    pytest.param(
        {"monitoring": {"schedule": "cron(0 * * * *)"}},
        'monitoring.schedule: "cron(0 * * * *)" is not allowed '
        "(cron needs six fields separated by single spaces: minutes hours day-of-month month day-of-week year)",
        id="schedule-cron-five-fields",
    ),
    pytest.param(
        {"monitoring": {"schedule": "cron(0 9 * * MON *)"}},
        'monitoring.schedule: "cron(0 9 * * MON *)" is not allowed '
        "(exactly one of day-of-month and day-of-week must be ?, e.g. cron(0 * * * ? *))",
        id="schedule-cron-both-days",
    ),
    pytest.param(
        {"monitoring": {"schedule": "cron(0 24 * * ? *)"}},
        "monitoring.schedule: \"cron(0 24 * * ? *)\" is not allowed (cron hours field '24' is outside 0-23)",
        id="schedule-cron-range",
    ),
    pytest.param(
        {"monitoring": {"monitoring_config": {"comparison_treshold": 0.2}}},
        "monitoring.monitoring_config.comparison_treshold: 0.2 is not allowed (unknown key; did you mean "
        "comparison_threshold? allowed here: datatype_check_threshold, domain_content_threshold, "
        "comparison_threshold, categorical_comparison_threshold, comparison_method, categorical_drift_method)",
        id="monitoring-config-unknown-key",
    ),
    pytest.param(
        {"monitoring": {"monitoring_config": {"comparison_threshold": 1.5}}},
        "monitoring.monitoring_config.comparison_threshold: 1.5 is not allowed (must be a number from 0 to 1)",
        id="monitoring-config-threshold",
    ),
    pytest.param(
        {"monitoring": {"monitoring_config": {"comparison_method": "robust"}}},
        'monitoring.monitoring_config.comparison_method: "robust" is not allowed (must be Simple or Robust)',
        id="monitoring-config-method",
    ),
    pytest.param(
        {"monitoring": {"alert": {"false_alarms_per_month": 0}}},
        "monitoring.alert.false_alarms_per_month: 0 is not allowed (must be > 0)",
        id="false-alarms-zero",
    ),
    pytest.param(
        {"monitoring": {"retrain": {"on": ["latency"]}}},
        "monitoring.retrain.on[0]: \"latency\" is not allowed (must be 'drift' or 'quality')",
        id="retrain-on-unknown",
    ),
    pytest.param(
        {"monitoring": {"retrain": {"on": ["drift", "drift"]}}},
        'monitoring.retrain.on: ["drift", "drift"] is not allowed (each of drift and quality at most once)',
        id="retrain-on-twice",
    ),
    pytest.param(
        {"monitoring": {"retrain": {"dataset": "training/churn/"}}},
        'monitoring.retrain.dataset: "training/churn/" is not allowed (must be an S3 URI such as s3://bucket/prefix/)',
        id="retrain-dataset-uri",
    ),
    pytest.param(
        {"endpoint": {"kind": "serverless", "realtime": {"instance_count": 3}}},
        'endpoint.realtime: {"instance_count": 3} is not allowed (not with kind serverless)',
        id="serverless-with-instances",
    ),
    pytest.param(
        {"endpoint": {"serverless": {"memory_mb": 2048}}},
        'endpoint.serverless: {"memory_mb": 2048} is not allowed (only with kind serverless, not realtime)',
        id="realtime-with-serverless",
    ),
    pytest.param(
        {
            "endpoint": {
                "kind": "serverless",
                "autoscaling": {"min_capacity": 2, "max_capacity": 4, "target_invocations_per_instance": 100},
            }
        },
        'endpoint.autoscaling: {"min_capacity": 2, "max_capacity": 4, "target_invocations_… '
        "is not allowed (serverless endpoints scale themselves)",
        id="serverless-autoscaling",
    ),
    pytest.param(
        {"endpoint": {"data_capture": {"enabled": False}}, "rollout": {"judge": {"quality": {}}}},
        "rollout.judge.quality: {} is not allowed (the judge reads captured predictions: "
        "needs endpoint.data_capture.enabled (serverless endpoints cannot capture))",
        id="quality-without-capture",
    ),
    pytest.param(
        {"rollout": {"judge": {"quality": {"decision_threshold": 1.5}}}},
        "rollout.judge.quality.decision_threshold: 1.5 is not allowed (must be <= 1)",
        id="quality-threshold",
    ),
    pytest.param(
        {"endpoint": {"data_capture": {"sampling_percentage": 101}}},
        "endpoint.data_capture.sampling_percentage: 101 is not allowed (must be <= 100)",
        id="capture-percentage",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"min_capacity": 1, "max_capacity": 4, "target_invocations_per_instance": 100}}},
        "endpoint.autoscaling.min_capacity: 1 is not allowed "
        "(must be >= 2; set realtime.allow_single_instance: true and single_instance_reason to allow 1)",
        id="autoscaling-single",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": None}},
        "endpoint.autoscaling: null is not allowed (leave it out for the default target tracking, or opt out with "
        "{enabled: false, reason: <why a fixed instance count>})",
        id="autoscaling-null",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"enabled": False}}},
        "endpoint.autoscaling.reason: null is not allowed (required with enabled: false: say why it is fixed)",
        id="autoscaling-opt-out-without-reason",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"max_capacity": 1}}},
        "endpoint.autoscaling.max_capacity: 1 is not allowed (must be >= min_capacity, 2)",
        id="autoscaling-max-below-default-min",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"min_capacity": 4, "max_capacity": 3, "target_invocations_per_instance": 100}}},
        "endpoint.autoscaling.max_capacity: 3 is not allowed (must be >= min_capacity, 4)",
        id="autoscaling-max-below-min",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"min_capacity": 3, "max_capacity": 6, "target_invocations_per_instance": 100}}},
        "endpoint.realtime.instance_count: 2 is not allowed (must be between autoscaling.min_capacity and "
        "max_capacity, 3..6)",
        id="autoscaling-excludes-count",
    ),
    pytest.param(
        {"endpoint": {"autoscaling": {"min_capacity": 2, "max_capacity": 4, "target_invocations_per_instance": 0}}},
        "endpoint.autoscaling.target_invocations_per_instance: 0 is not allowed (must be > 0)",
        id="autoscaling-target",
    ),
    pytest.param(
        {"rollout": {"ab": {"steps": [10, 100]}}},
        "rollout.ab.steps: [10, 100] is not allowed (each step must be 1..99 percent; 100 is the full stage)",
        id="ab-step-100",
    ),
    pytest.param(
        {"rollout": {"ab": {"steps": [25, 10]}}},
        "rollout.ab.steps: [25, 10] is not allowed (steps must increase)",
        id="ab-steps-decrease",
    ),
    pytest.param(
        {"rollout": {"ab": {"steps": []}}},
        "rollout.ab.steps: [] is not allowed (must have at least 1 item(s))",
        id="ab-no-steps",
    ),
    pytest.param(
        {"rollout": {"shadow": {"at_max_duration": "promote"}}},
        "rollout.shadow.at_max_duration: \"promote\" is not allowed (must be 'inconclusive' or 'rollback')",
        id="never-promote-at-max",
    ),
    pytest.param(
        {"rollout": {"judge_interval_minutes": 10, "full": {"max_duration_minutes": 5}}},
        "rollout.full.max_duration_minutes: 5 is not allowed "
        "(must be >= judge_interval_minutes, 10, or the stage is never judged)",
        id="stage-shorter-than-interval",
    ),
    pytest.param(
        {"rollout": {"judge": {"error_rate": {"alpha": 0}}}},
        "rollout.judge.error_rate.alpha: 0 is not allowed (must be > 0)",
        id="alpha-zero",
    ),
    pytest.param(
        {"rollout": {"judge": {"error_rate": {"alpha": 0.5, "beta": 0.5}}}},
        "rollout.judge.error_rate.beta: 0.5 is not allowed (alpha + beta must be < 1; alpha is 0.5)",
        id="alpha-plus-beta",
    ),
    pytest.param(
        {"rollout": {"judge": {"quality": {"delta": 0}}}},
        "rollout.judge.quality.delta: 0 is not allowed (must be > 0)",
        id="delta",
    ),
    pytest.param(
        {"rollout": {"judge": {"latency": {"min_samples": 10}}}},
        "rollout.judge.latency.threshold_ms: missing (required)",
        id="latency-threshold-missing",
    ),
    pytest.param(
        {"batch": {"max_payload_mb": 101}},
        "batch.max_payload_mb: 101 is not allowed (must be <= 100)",
        id="batch-payload",
    ),
    pytest.param(
        {"batch": {"max_concurrent_transforms": 4, "max_payload_mb": 50}},
        "batch.max_payload_mb: 50 is not allowed "
        "(max_concurrent_transforms x max_payload_mb must be <= 100 MB; 4 x 50 = 200)",
        id="batch-payload-product",
    ),
    pytest.param(
        {"batch": {"split_type": "line"}},
        "batch.split_type: \"line\" is not allowed (must be 'None', 'Line', 'RecordIO' or 'TFRecord')",
        id="batch-split-type",
    ),
    pytest.param(
        {"batch": {"assemble_with": "Lines"}},
        "batch.assemble_with: \"Lines\" is not allowed (must be 'None' or 'Line')",
        id="batch-assemble-with",
    ),
]


@pytest.mark.parametrize(("sections", "line"), REFUSALS)
def test_rule_refuses_naming_key_value_and_what_is_allowed(sections: dict[str, Any], line: str) -> None:
    # Given the minimal config with one rule broken
    text = config_text(**sections)
    # When it is loaded
    # Then exactly that problem is reported, on one line
    assert problems(text) == [f"{SOURCE}: {line}"]


def test_minimal_keys_are_required() -> None:
    # Given a config without framework and entry_point
    # When it is loaded
    # Then both are reported missing
    assert problems("hyperparameters: {}\n") == [
        f"{SOURCE}: framework: missing (required; one of sklearn | xgboost)",
        f"{SOURCE}: entry_point: missing (required)",
    ]


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    # Given a misspelt key inside a section
    text = config_text(training={"instance_typ": "ml.m5.large"})
    # When it is loaded
    # Then the error names it, the likely key and the keys allowed there
    assert problems(text) == [
        f"{SOURCE}: training.instance_typ: unknown key (did you mean instance_type? allowed here: instance_type, "
        "instance_count, volume_size_gb, max_runtime_seconds, spot, network_isolation, metric_definitions, "
        "target_column)"
    ]


def test_unknown_top_level_key_is_refused() -> None:
    # Given a key no section has
    text = config_text(source_dir="code/")
    # When it is loaded
    lines = problems(text)
    # Then it is refused (the source dir is implicit)
    assert len(lines) == 1
    assert lines[0].startswith(f"{SOURCE}: source_dir: unknown key (allowed here: framework, framework_version,")


def test_every_problem_is_reported_at_once() -> None:
    # Given three independent mistakes
    text = config_text(
        framework="tensorflow", training={"instance_count": 0}, batch={"accept": "text/csv", "bogus": True}
    )
    # When it is loaded
    lines = problems(text)
    # Then each has its own line
    assert [line.split(": ")[1] for line in lines] == ["framework", "training.instance_count", "batch.bogus"]


# ---------------------------------------------------------------- files that are not a config


def test_yaml_syntax_error_names_line_and_column() -> None:
    # Given YAML with a bad indentation on line 2
    text = "framework: sklearn\n  entry_point: train.py\n"
    # When it is loaded
    lines = problems(text)
    # Then the error gives the line and column (libyaml and pure-Python PyYAML word the rest differently)
    assert len(lines) == 1
    assert lines[0].startswith(f"{SOURCE}: line 2, column 14: mapping values are not allowed")


def test_duplicate_key_is_refused() -> None:
    # Given a key written twice (plain YAML would keep the last silently)
    text = "framework: sklearn\nentry_point: train.py\nframework: xgboost\n"
    # When it is loaded
    # Then both places are named
    assert problems(text) == [f"{SOURCE}: line 3, column 1: duplicate key 'framework' (first at line 1)"]


@pytest.mark.parametrize("text", ["", "\n", "# nothing configured yet\n"])
def test_empty_file_is_refused(text: str) -> None:
    # Given a file with no content
    # When it is loaded
    # Then it is refused, saying what it needs
    assert problems(text) == [f"{SOURCE}: the file is empty (it needs at least framework and entry_point)"]


@pytest.mark.parametrize(("text", "found"), [("- framework\n", "a list"), ("sklearn\n", "a string")])
def test_non_mapping_is_refused(text: str, found: str) -> None:
    # Given a document that is not a mapping of keys
    # When it is loaded
    # Then it is refused, saying what was found
    assert problems(text) == [f"{SOURCE}: the document is {found}, not a mapping of keys such as framework: sklearn"]


# ---------------------------------------------------------------- JSON Schema


def test_committed_schema_is_a_fresh_export() -> None:
    # Given the committed schemas/shepherd.schema.json
    # When the schema is exported from the models now
    # Then they are identical (run tools/export_config_schema.py after changing the models)
    assert SCHEMA.read_text(encoding="utf-8") == render_json_schema()


def test_export_tool_check_flags_a_stale_schema(tmp_path: Path) -> None:
    # Given the export tool and a stale copy of the schema
    tool = _load_tool()
    stale = tmp_path / "shepherd.schema.json"
    stale.write_text("{}\n")
    # When it checks, writes, then checks again
    # Then the stale file fails, and the written one passes
    assert tool.main(["--check", "--out", str(stale)]) == 1
    assert tool.main(["--out", str(stale)]) == 0
    assert tool.main(["--check", "--out", str(stale)]) == 0


def test_schema_validates_the_example() -> None:
    # Given the committed schema and the example config
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    # When the example is checked against it
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(EXAMPLE.read_text())))
    # Then it conforms
    assert errors == []


def test_schema_refuses_an_unknown_key_too() -> None:
    # Given the committed schema, as an editor uses it
    schema = json.loads(SCHEMA.read_text())
    # When a config has an unknown key
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors({**MINIMAL, "trainig": {}}))
    # Then the editor flags it
    assert [error.validator for error in errors] == ["additionalProperties"]


# ---------------------------------------------------------------- runs in Lambda


def test_config_package_imports_without_boto3() -> None:
    # Given a fresh interpreter, as a Lambda cold start
    code = "import sys, shepherd.config; print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    # When shepherd.config is imported
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Then no AWS SDK came with it (domain code)
    assert result.stdout.strip() == "[]"


def test_hyperparameters_leave_room_for_the_four_sagemaker_adds() -> None:
    found = problems(config_text(hyperparameters={f"h{index}": index for index in range(97)}))
    assert any("hyperparameters" in line and "96" in line for line in found), found


def test_a_hyperparameter_is_measured_as_sagemaker_receives_it_json_encoded() -> None:
    found = problems(config_text(hyperparameters={"quoted": '"' * 1300}))
    assert any("once JSON-encoded" in line for line in found), found


def test_metric_names_must_fit_the_model_package_metadata() -> None:
    found = problems(config_text(training={"metric_definitions": [{"name": "f1 (macro)", "regex": "f1=([0-9.]+)"}]}))
    assert any("metric_definitions" in line for line in found), found


def test_a_stage_may_last_days_and_continues_in_fresh_executions() -> None:
    # Given stages far longer than one execution's history holds at one judge call a minute
    long = {"judge_interval_minutes": 1, "ab": {"steps": [10, 25, 50], "max_duration_minutes": 4320}}
    config = load_config(config_text(rollout=long), SOURCE)
    # Then they are accepted, with the default number of judge calls per execution
    assert config.rollout.ab.max_duration_minutes == 4320
    assert config.rollout.judge_calls_per_execution == 1000
    # And a number of judge calls that would overflow an execution's 25,000 history events is refused by name
    found = problems(config_text(rollout={"judge_calls_per_execution": 5000}))
    assert any("judge_calls_per_execution" in line and "2000" in line for line in found), found


def test_overrides_merge_into_the_document_before_validation() -> None:
    text = config_text(rollout={"shadow": {"max_duration_minutes": 90}})
    config = load_config(text, SOURCE, overrides={"rollout": {"shadow": {"enabled": False}}})
    assert config.rollout.shadow.enabled is False
    assert config.rollout.shadow.max_duration_minutes == 90  # the file's sibling keys stay
    with pytest.raises(ConfigError, match=r"ab\.steps"):
        load_config(text, SOURCE, overrides={"rollout": {"ab": {"steps": [50, 10]}}})
