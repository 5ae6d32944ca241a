"""A model's pipeline configuration, models/<model>/shepherd.yaml: schema, loader and JSON Schema.

config = load_config(text, "models/churn/shepherd.yaml")   # ModelConfig, or ConfigError
"""

from shepherd.config.errors import ConfigError
from shepherd.config.loader import check_overrides, load_config, model_name_from_source
from shepherd.config.models import (
    AbStage,
    AutoScaling,
    Batch,
    DataCapture,
    Endpoint,
    Evaluation,
    FullStage,
    Gate,
    JudgeSettings,
    LatencyJudge,
    MetricDefinition,
    MetricJudge,
    ModelConfig,
    Monitoring,
    MonitoringAlert,
    RealtimeHosting,
    Registry,
    Retrain,
    Rollout,
    ServerlessHosting,
    ShadowStage,
    Spot,
    Training,
    WatchStage,
)
from shepherd.config.schema import json_schema, render_json_schema

__all__ = [
    "AbStage",
    "AutoScaling",
    "Batch",
    "ConfigError",
    "DataCapture",
    "Endpoint",
    "Evaluation",
    "FullStage",
    "Gate",
    "JudgeSettings",
    "LatencyJudge",
    "MetricDefinition",
    "MetricJudge",
    "ModelConfig",
    "Monitoring",
    "MonitoringAlert",
    "RealtimeHosting",
    "Registry",
    "Retrain",
    "Rollout",
    "ServerlessHosting",
    "ShadowStage",
    "Spot",
    "Training",
    "WatchStage",
    "check_overrides",
    "json_schema",
    "load_config",
    "model_name_from_source",
    "render_json_schema",
]
