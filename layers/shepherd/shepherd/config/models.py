"""The schema of models/<model>/shepherd.yaml: what a model's pipeline may say, with sound defaults.

Every section refuses unknown keys and coerces nothing (strict mode: `"2"` is not a count and
`1.2` is not a version string). Rules that involve several keys run after the keys themselves
are valid and report every broken rule of a section at once, each naming its key (see errors.py).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shepherd.config.schedules import schedule_problem
from shepherd.instances import TRANSFORM_INSTANCE_TYPES

# SageMaker's name pattern for endpoints and model package groups; a model's name must fit it too.
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z][a-z0-9-]*\.[a-z0-9]+$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
SCRIPT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py$"

Framework = Literal["sklearn", "xgboost"]
Verdict = Literal["inconclusive", "rollback"]

# The script-mode framework images SageMaker publishes (sagemaker SDK 2.257 image_uri_config).
FRAMEWORK_VERSIONS: dict[str, tuple[str, ...]] = {
    "sklearn": ("0.20.0", "0.23-1", "1.0-1", "1.2-1", "1.4-2"),
    "xgboost": ("0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1", "1.7-1", "3.0-5"),
}
DEFAULT_FRAMEWORK_VERSION: dict[str, str] = {"sklearn": "1.2-1", "xgboost": "1.7-1"}
# The scikit-learn images are CPU-only: GPU, Inferentia and Trainium families cannot run them.
ACCELERATED_FAMILY = re.compile(r"^ml\.(p|g|inf|trn)\d")
# The framework containers set these themselves from entry_point and the source dir.
RESERVED_HYPERPARAMETER_PREFIX = "sagemaker_"

# A judge loop is 3 states (Wait, Judge, Verdict), 9 history events, more with retries; a Step Functions Standard
# execution holds 25,000 events. 1,000 judge calls (9,000 events) leave room for the fixed part and retries
# before a rollout continues in a fresh execution; 2,000 is the most that stays clear of the cap.
MAX_JUDGE_CALLS_PER_EXECUTION = 2000
# The first execution may also have queued for the endpoint's lock: the Rollout's Prepare retries LockHeld up to
# LOCK_TRIES times (statemachines/rollout.asl.json), 3 events a try. Its judge calls are capped so that both fit:
# (25,000 - 2,500 x 3 - 1,500 for the fixed part and retries) / 9 events a call.
HISTORY_EVENTS_MAX = 25_000
LOCK_TRIES = 2_500
EVENTS_PER_LOCK_TRY = 3
EVENTS_PER_JUDGE_CALL = 9
FIRST_EXECUTION_JUDGE_CALLS = (HISTORY_EVENTS_MAX - LOCK_TRIES * EVENTS_PER_LOCK_TRY - 1_500) // EVENTS_PER_JUDGE_CALL

# The usual SageMaker autoscaling practice: register-scalable-target --min-capacity 2 --max-capacity 10.
DEFAULT_MAX_CAPACITY = 10
SERVERLESS_NO_CAPTURE = (
    "SageMaker serverless endpoints do not capture data: they are monitored only for errors, latency and batch outputs"
)

Problem = tuple[str, Any, str]
"""A broken rule: the key (relative to the section, dotted), the value found, and what is allowed."""


def refuse(problems: list[Problem]) -> None:
    """Raise every broken rule of a section as one error that errors.py splits back into lines."""
    if problems:
        summary = "; ".join(f"{key}: {value!r} is not allowed ({allowed})" for key, value, allowed in problems)
        raise PydanticCustomError("config_rules", "{summary}", {"summary": summary, "problems": problems})


def not_allowed(allowed: str) -> PydanticCustomError:
    """A single value refused by a field validator, with what is allowed instead."""
    return PydanticCustomError("config_value", "not allowed ({allowed})", {"allowed": allowed})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------- training


class MetricDefinition(Section):
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:/=+@ -]+$",
        description="Metric name, e.g. validation:accuracy: letters, digits, spaces and _.:/=+-@ "
        "(it also names the metric in the model package's metadata).",
    )
    regex: str = Field(
        min_length=1,
        max_length=500,
        description="Python regex run over the training log; its first capture group is the value.",
    )

    @field_validator("regex")
    @classmethod
    def _compiles_with_a_group(cls, regex: str) -> str:
        try:
            groups = re.compile(regex).groups
        except re.error as exc:
            raise not_allowed(f"must be a valid regular expression: {exc}") from None
        if groups < 1:
            raise not_allowed("must have a capture group around the value, e.g. accuracy=([0-9.]+)")
        return regex


class Spot(Section):
    enabled: bool = Field(default=False, description="Train on spot capacity (up to 90% cheaper, may be interrupted).")
    max_wait_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Longest wait for spot capacity plus training; >= training.max_runtime_seconds. "
        "Default: twice max_runtime_seconds.",
    )
    checkpoint_s3_uri: str | None = Field(
        default=None,
        pattern=S3_URI_PATTERN,
        description="Where the job's /opt/ml/checkpoints is synced so an interrupted job resumes. "
        "Default: s3://<data bucket>/checkpoints/<model>/<training job>/.",
    )


class Training(Section):
    instance_type: str = Field(default="ml.m5.large", pattern=INSTANCE_TYPE_PATTERN)
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_size_gb: int = Field(default=30, ge=1, le=16384, description="ML storage volume per instance.")
    max_runtime_seconds: int = Field(
        default=3600, ge=1, le=2419200, description="SageMaker stops the job after this long (at most 28 days)."
    )
    spot: Spot = Field(default_factory=Spot)
    network_isolation: bool = Field(
        default=True,
        description="No network access for the training container. It then cannot pip-install "
        "requirements.txt: ship dependencies inside the code dir, or turn this off.",
    )
    metric_definitions: list[MetricDefinition] = Field(
        default_factory=list, max_length=40, description="Metrics SageMaker parses from the training log."
    )
    target_column: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The label column every training CSV's header must name; checked before the job starts.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Training:
        problems: list[Problem] = []
        names = [definition.name for definition in self.metric_definitions]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append((f"metric_definitions[{index}].name", name, "must be unique"))
        if self.spot.enabled:
            if self.spot.max_wait_seconds is None:
                self.spot.max_wait_seconds = 2 * self.max_runtime_seconds
            elif self.spot.max_wait_seconds < self.max_runtime_seconds:
                problems.append(
                    (
                        "spot.max_wait_seconds",
                        self.spot.max_wait_seconds,
                        f"must be >= training.max_runtime_seconds, {self.max_runtime_seconds}",
                    )
                )
        refuse(problems)
        return self


# ---------------------------------------------------------------- evaluation and registry


class Gate(Section):
    metric: str = Field(min_length=1, max_length=255, description="A training.metric_definitions name.")
    direction: Literal["maximize", "minimize"] = Field(description="Whether a higher or a lower value is better.")
    threshold: float | None = Field(
        default=None, description="The value must be at least (maximize) or at most (minimize) this."
    )
    must_beat_champion_by: float | None = Field(
        default=0.0,
        ge=0,
        description="Both models score the candidate's validation rows; the one-sided 95% lower bound of the "
        "candidate's improvement (a paired test) must be at least this margin (0: shown not worse); "
        "null: not compared with the champion.",
    )

    @model_validator(mode="after")
    def _tests_something(self) -> Gate:
        if self.threshold is None and self.must_beat_champion_by is None:
            refuse([("must_beat_champion_by", None, "a gate needs a threshold, a champion margin, or both")])
        return self


class Evaluation(Section):
    gates: list[Gate] = Field(default_factory=list, description="Every gate must pass for the model to be registered.")

    @model_validator(mode="after")
    def _one_gate_per_metric(self) -> Evaluation:
        metrics = [gate.metric for gate in self.gates]
        refuse(
            [
                (f"gates[{index}].metric", metric, "one gate per metric")
                for index, metric in enumerate(metrics)
                if metric in metrics[:index]
            ]
        )
        return self


class Registry(Section):
    model_package_group: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Model package group. Default: the model's name."
    )
    approval: Literal["manual", "automatic"] = Field(
        default="manual",
        description="manual: packages wait for a human (PendingManualApproval); automatic: registered Approved, "
        "which starts the rollout.",
    )


# ---------------------------------------------------------------- endpoint


class RealtimeHosting(Section):
    instance_type: str = Field(default="ml.m5.large", pattern=INSTANCE_TYPE_PATTERN)
    instance_count: int = Field(
        default=2, ge=1, description="Instances per variant; SageMaker spreads them over Availability Zones."
    )
    allow_single_instance: bool = Field(
        default=False,
        description="Allow instance_count 1 (and autoscaling.min_capacity 1): no AZ redundancy. "
        "Needs single_instance_reason.",
    )
    single_instance_reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Why one instance is acceptable for this endpoint (e.g. an internal tool without an SLA); "
        "required with allow_single_instance: true.",
    )

    @model_validator(mode="after")
    def _redundant(self) -> RealtimeHosting:
        problems: list[Problem] = []
        if self.allow_single_instance and self.single_instance_reason is None:
            problems.append(
                (
                    "single_instance_reason",
                    None,
                    "required with allow_single_instance: true: say why one instance, without Availability "
                    "Zone redundancy, is acceptable",
                )
            )
        if self.single_instance_reason is not None and not self.allow_single_instance:
            problems.append(("allow_single_instance", False, "must be true when single_instance_reason is given"))
        if self.instance_count < 2 and not self.allow_single_instance:
            problems.append(
                (
                    "instance_count",
                    self.instance_count,
                    "must be >= 2 so the endpoint survives an Availability Zone outage; "
                    "set allow_single_instance: true and single_instance_reason to allow 1",
                )
            )
        refuse(problems)
        return self


class ServerlessHosting(Section):
    memory_mb: int = Field(default=2048, ge=1024, le=6144, multiple_of=1024)
    max_concurrency: int = Field(default=5, ge=1, le=200)


class DataCapture(Section):
    enabled: bool | None = Field(
        default=None,
        description="Capture requests and responses to S3 (needed to pair shadow traffic, join feedback and "
        "monitor drift). Default: true, except serverless (SageMaker does not support it there: serverless "
        "endpoints are monitored only for errors, latency and batch outputs).",
    )
    sampling_percentage: int = Field(default=100, ge=0, le=100)


class AutoScaling(Section):
    """Target tracking on SageMakerVariantInvocationsPerInstance; the defaults are the usual SageMaker practice."""

    enabled: bool = Field(
        default=True, description="false: a fixed realtime.instance_count, with a reason (opting out)."
    )
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Why the endpoint keeps a fixed instance count; required with enabled: false.",
    )
    min_capacity: int | None = Field(
        default=None, ge=1, description="Default: realtime.instance_count (>= 2 unless allow_single_instance)."
    )
    max_capacity: int | None = Field(
        default=None, ge=1, description="Default: 10, or realtime.instance_count when that is more."
    )
    target_invocations_per_instance: float = Field(
        default=70.0,
        gt=0,
        description="Target of SageMakerVariantInvocationsPerInstance (requests per instance per minute).",
    )
    scale_in_cooldown_seconds: int = Field(default=300, ge=0)
    scale_out_cooldown_seconds: int = Field(default=60, ge=0)


class Endpoint(Section):
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="Default: the model's name.")
    kind: Literal["realtime", "serverless", "multi_model"] = Field(
        default="realtime", description="multi_model endpoints are real-time endpoints: they use `realtime`."
    )
    realtime: RealtimeHosting | None = Field(
        default=None, description="Only for kind realtime and multi_model, where it defaults to 2 x ml.m5.large."
    )
    serverless: ServerlessHosting | None = Field(
        default=None, description="Only for kind serverless, where it defaults to 2048 MB, 5 concurrent requests."
    )
    data_capture: DataCapture = Field(default_factory=DataCapture)
    autoscaling: AutoScaling | None = Field(
        default=None,
        description="Only for kind realtime and multi_model, where it is on by default (min realtime.instance_count, "
        "max 10, target 70, cooldowns 300/60 s); opt out with {enabled: false, reason: ...}.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Endpoint:
        problems = self._serverless_problems() if self.kind == "serverless" else self._instance_problems()
        refuse(problems)
        return self

    def _serverless_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.realtime is not None:
            problems.append(("realtime", self.realtime.model_dump(exclude_unset=True), "not with kind serverless"))
        if self.autoscaling is not None:
            problems.append(
                (
                    "autoscaling",
                    self.autoscaling.model_dump(exclude_unset=True),
                    "serverless endpoints scale themselves",
                )
            )
        if self.data_capture.enabled:
            problems.append(("data_capture.enabled", True, SERVERLESS_NO_CAPTURE))
        self.serverless = self.serverless or ServerlessHosting()
        self.data_capture.enabled = False
        return problems

    def _instance_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.serverless is not None:
            problems.append(
                (
                    "serverless",
                    self.serverless.model_dump(exclude_unset=True),
                    f"only with kind serverless, not {self.kind}",
                )
            )
        realtime = self.realtime = self.realtime or RealtimeHosting()
        if self.data_capture.enabled is None:
            self.data_capture.enabled = True
        if self.autoscaling is None:
            if "autoscaling" in self.model_fields_set:
                problems.append(
                    (
                        "autoscaling",
                        None,
                        "leave it out for the default target tracking, or opt out with "
                        "{enabled: false, reason: <why a fixed instance count>}",
                    )
                )
                return problems
            self.autoscaling = AutoScaling()
        scaling = self.autoscaling
        if not scaling.enabled:
            if scaling.reason is None:
                problems.append(("autoscaling.reason", None, "required with enabled: false: say why it is fixed"))
            return problems
        if scaling.min_capacity is None:
            scaling.min_capacity = realtime.instance_count
        if scaling.max_capacity is None:
            scaling.max_capacity = max(DEFAULT_MAX_CAPACITY, realtime.instance_count, scaling.min_capacity)
        if scaling.min_capacity < 2 and not realtime.allow_single_instance:
            problems.append(
                (
                    "autoscaling.min_capacity",
                    scaling.min_capacity,
                    "must be >= 2; set realtime.allow_single_instance: true and single_instance_reason to allow 1",
                )
            )
        if scaling.max_capacity < scaling.min_capacity:
            problems.append(
                ("autoscaling.max_capacity", scaling.max_capacity, f"must be >= min_capacity, {scaling.min_capacity}")
            )
        elif not scaling.min_capacity <= realtime.instance_count <= scaling.max_capacity:
            problems.append(
                (
                    "realtime.instance_count",
                    realtime.instance_count,
                    f"must be between autoscaling.min_capacity and max_capacity, "
                    f"{scaling.min_capacity}..{scaling.max_capacity}",
                )
            )
        return problems


# ---------------------------------------------------------------- rollout


class MetricJudge(Section):
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Chance, per rollout (over every stage), of rolling back a candidate as good as the champion.",
    )
    beta: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Chance, per rollout, that a candidate (1 + delta) times as bad reaches full (all traffic).",
    )
    delta: float = Field(
        default=1.0, gt=0, description="The relative worsening to catch: 1.0 = twice the champion's bad-event rate."
    )
    min_samples: int = Field(default=100, ge=1, description="Requests (pairs in shadow) per variant before a PROMOTE.")
    floor_rate: float = Field(
        default=0.002,
        ge=0,
        lt=1,
        description="A bad-event rate below this is good enough whatever the champion's: a candidate without a "
        "single bad event in enough samples promotes (two error-free models otherwise never would). 0: off.",
    )
    anytime: bool = Field(
        default=False,
        description="Fixed boundaries ln(1/alpha) and ln(beta) (Ville's inequality): valid however often it looks "
        "and never left unable to promote, at the cost of more requests to roll back. Two-variant stages only.",
    )

    @model_validator(mode="after")
    def _error_rates_leave_room(self) -> MetricJudge:
        if self.alpha + self.beta >= 1:
            refuse([("beta", self.beta, f"alpha + beta must be < 1; alpha is {self.alpha}")])
        return self


class LatencyJudge(MetricJudge):
    threshold_ms: float = Field(gt=0, description="A request slower than this counts as a bad event.")


class QualityJudge(MetricJudge):
    """Wrong predictions as the bad events: data capture joined with ground truth on InferenceId."""

    min_samples: int = Field(
        default=100, ge=1, description="Labelled predictions per variant (labelled pairs in shadow) before a PROMOTE."
    )
    decision_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Binary classification: a probability at or above it predicts label 1.",
    )
    tolerance: float | None = Field(
        default=None,
        ge=0,
        description="Regression: a prediction further than this from its label is wrong. "
        "Unset: predictions are classes (or probabilities against 0/1 labels).",
    )


class JudgeSettings(Section):
    error_rate: MetricJudge = Field(default_factory=MetricJudge, description="Always judged.")
    latency: LatencyJudge | None = Field(default=None, description="Judged when set.")
    quality: QualityJudge | None = Field(
        default=None,
        description="Judged when set (needs endpoint.data_capture): predictions captured with the client's "
        "InferenceId, joined with ground truth uploaded under feedback/<model>/yyyy/mm/dd/hh/ in SageMaker "
        "Model Monitor's format. Paired on the same requests in shadow, per variant in A/B.",
    )


# A stage whose max_duration_minutes is unset ends when the traffic it sees says a good candidate should have been
# decided (shepherd.judge.duration), and at the latest after this long.
DERIVED_CAP_MINUTES = 1440
MAX_FROM_TRAFFIC = (
    "Unset: derived from the stage's observed traffic (the minutes a candidate as good as the champion needs to a "
    f"decision, with margin; at most {DERIVED_CAP_MINUTES}). Set: the user's, fixed."
)


class ShadowStage(Section):
    enabled: bool = True
    max_duration_minutes: int | None = Field(default=None, ge=1, description=MAX_FROM_TRAFFIC)
    at_max_duration: Verdict = Field(
        default="inconclusive", description="Verdict when undecided at max_duration_minutes (never promote)."
    )
    sampling_percentage: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Percent of requests copied to the shadow. Below 100, time for money: a smaller shadow fleet, "
        "judged on the sampled copy with the same error rates, decides later (docs/ROLLOUTS.md, "
        '"What a rollout costs").',
    )
    instance_count: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Shadow instances. Unset: as many as carry the sampled share at the champion's load per "
        "instance (the champion's count x sampling_percentage / 100, at least 1).",
    )


class AbStage(Section):
    enabled: bool = True
    steps: list[int] = Field(
        default=[10, 25, 50],
        min_length=1,
        max_length=10,
        description="The challenger's traffic percentage at each step, increasing, each 1..99.",
    )
    max_duration_minutes: int | None = Field(default=None, ge=1, description="Per step. " + MAX_FROM_TRAFFIC)
    at_max_duration: Verdict = "inconclusive"

    @field_validator("steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= step <= 99 for step in steps):
            raise not_allowed("each step must be 1..99 percent; 100 is the full stage")
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise not_allowed("steps must increase")
        return steps


class FullStage(Section):
    max_duration_minutes: int | None = Field(
        default=None,
        ge=1,
        description="All traffic on the challenger, the champion's variant kept for a fast rollback. "
        + MAX_FROM_TRAFFIC,
    )
    at_max_duration: Verdict = "inconclusive"


class WatchStage(Section):
    enabled: bool = True
    max_duration_minutes: int = Field(default=120, ge=1)
    at_max_duration: Verdict = Field(
        default="inconclusive",
        description="inconclusive keeps the promoted model; rollback restores the last good one.",
    )


class RolloutCost(Section):
    instance_prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per instance-hour by SageMaker instance type (ml.m5.large: 0.115), over Shepherd's "
        "price table (us-east-1 on-demand list prices, dated): your region's or your discounted prices.",
    )

    @field_validator("instance_prices")
    @classmethod
    def _priced_instance_types(cls, prices: dict[str, float]) -> dict[str, float]:
        for instance_type, price in prices.items():
            if not re.fullmatch(INSTANCE_TYPE_PATTERN, instance_type):
                raise not_allowed(f"{instance_type!r} is not a SageMaker instance type such as ml.m5.large")
            if not 0 <= price < float("inf"):
                raise not_allowed(f"{instance_type}: a price is a finite number of USD per hour, >= 0")
        return prices


class ReplayStage(Section):
    """The pre-flight replay (docs/ROLLOUTS.md, "Replay"): the candidate answers the champion's captured requests in
    two Batch Transform jobs before any live request reaches it."""

    enabled: bool = Field(
        default=True,
        description="Replay captured requests before shadow (realtime and multi-model endpoints with data capture).",
    )
    sample_size: int = Field(default=2000, ge=100, le=100_000, description="Captured requests replayed, at most.")
    window_hours: int = Field(default=24, ge=1, le=24 * 30, description="The capture hours sampled, the latest.")
    tolerance: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="Live disagreement may be up to (1 + tolerance) x what the evaluation predicted before replay "
        "rejects: live traffic is not the validation data.",
    )
    default_disagreement: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="The disagreement expected when the package carries no paired evaluation.",
    )
    max_slowdown: float = Field(
        default=3.0, gt=1, description="Reject when the candidate's job takes more than this x the champion's."
    )
    instance_type: str | None = Field(
        default=None,
        pattern=INSTANCE_TYPE_PATTERN,
        description="The transform jobs' instance type. Default: the endpoint's, or batch.instance_type where "
        "Batch Transform does not offer the endpoint's.",
    )
    max_duration_minutes: int = Field(
        default=120, ge=1, description="Jobs unfinished by then: replay is skipped and the rollout goes on to shadow."
    )

    @field_validator("instance_type")
    @classmethod
    def _a_transform_instance(cls, value: str | None) -> str | None:
        if value is not None and value not in TRANSFORM_INSTANCE_TYPES:
            close = difflib.get_close_matches(value, sorted(TRANSFORM_INSTANCE_TYPES), n=3)
            raise not_allowed(
                "a Batch Transform instance type (TransformResources.InstanceType)"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        return value


class Rollout(Section):
    judge_interval_minutes: int = Field(default=5, ge=1, le=60, description="Wait between two judge calls.")
    replay: ReplayStage = Field(default_factory=ReplayStage)
    shadow: ShadowStage = Field(default_factory=ShadowStage)
    ab: AbStage = Field(default_factory=AbStage)
    full: FullStage = Field(default_factory=FullStage)
    post_promotion_watch: WatchStage = Field(default_factory=WatchStage)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    cost: RolloutCost = Field(default_factory=RolloutCost)
    on_new_approval: Literal["queue", "supersede"] = Field(
        default="queue",
        description="A package approved while a rollout runs on the endpoint: queue (it starts when the running "
        "one ends) or supersede (the running one ends at its next judge call, the champion restored and the "
        "superseded package left Approved, then the new one starts). Never two at once.",
    )
    judge_calls_per_execution: int = Field(
        default=1000,
        ge=1,
        le=MAX_JUDGE_CALLS_PER_EXECUTION,
        description="Judge calls one Step Functions execution makes before the rollout continues in a fresh one "
        "(an execution holds 25,000 history events): stages may last days.",
    )

    @model_validator(mode="after")
    def _stages_outlast_an_interval(self) -> Rollout:
        stages: dict[str, ShadowStage | AbStage | FullStage | WatchStage] = {
            "shadow": self.shadow,
            "ab": self.ab,
            "full": self.full,
            "post_promotion_watch": self.post_promotion_watch,
        }
        refuse(
            [
                (
                    f"{name}.max_duration_minutes",
                    stage.max_duration_minutes,
                    f"must be >= judge_interval_minutes, {self.judge_interval_minutes}, or the stage is never judged",
                )
                for name, stage in stages.items()
                if stage.max_duration_minutes is not None and stage.max_duration_minutes < self.judge_interval_minutes
            ]
        )
        return self


# ---------------------------------------------------------------- batch


class Batch(Section):
    instance_type: str = Field(default="ml.m5.large", pattern=INSTANCE_TYPE_PATTERN)
    instance_count: int = Field(default=1, ge=1, le=100)
    max_concurrent_transforms: int = Field(default=1, ge=1, le=100, description="Parallel requests per instance.")
    max_payload_mb: int = Field(
        default=6, ge=1, le=100, description="Largest mini-batch per request; x max_concurrent_transforms <= 100."
    )
    strategy: Literal["MultiRecord", "SingleRecord"] = Field(default="MultiRecord", description="Records per request.")
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "Line"
    content_type: str = Field(default="text/csv", min_length=1, max_length=256)
    accept: str = Field(default="text/csv", min_length=1, max_length=256)
    assemble_with: Literal["None", "Line"] = "Line"
    max_runtime_seconds: int = Field(
        default=3600, ge=60, le=2419200, description="Shepherd stops the transform job after this long."
    )

    @model_validator(mode="after")
    def _payload_fits(self) -> Batch:
        total = self.max_concurrent_transforms * self.max_payload_mb
        if total > 100:
            refuse(
                [
                    (
                        "max_payload_mb",
                        self.max_payload_mb,
                        f"max_concurrent_transforms x max_payload_mb must be <= 100 MB; "
                        f"{self.max_concurrent_transforms} x {self.max_payload_mb} = {total}",
                    )
                ]
            )
        return self


# ---------------------------------------------------------------- monitoring

# Model Monitor's constraints.json monitoring_config keys a model may override, and what each takes
# (docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html).
MONITORING_THRESHOLDS = (
    "datatype_check_threshold",
    "domain_content_threshold",
    "comparison_threshold",
    "categorical_comparison_threshold",
)
MONITORING_METHODS: dict[str, tuple[str, ...]] = {
    "comparison_method": ("Simple", "Robust"),
    "categorical_drift_method": ("LInfinity", "ChiSquared"),
}
MONITORING_CONFIG_SCHEMA: dict[str, Any] = {
    "properties": {
        **{key: {"type": "number", "minimum": 0, "maximum": 1} for key in MONITORING_THRESHOLDS},
        **{key: {"enum": list(choices)} for key, choices in MONITORING_METHODS.items()},
    },
    "additionalProperties": False,
}


class MonitoringAlert(Section):
    false_alarms_per_month: float = Field(
        default=1.0,
        gt=0,
        description="Alerts (notifications, retraining) the monitor may raise per month on data that has not "
        "drifted, over all features and checks together.",
    )


class MonitoringReference(Section):
    learn: bool = Field(
        default=True,
        description="Learn the drift alert's reference (with its cycle) from the champion's captured history once "
        "it covers history_days; until then, and with false, the reference is the training data's.",
    )
    history_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="Days of captured hours outside drift episodes the learnt reference needs (at least one cycle).",
    )
    cycle_hours: Literal[24, 168] = Field(
        default=24, description="The traffic's cycle: 24 (daily) or 168 (weekly; history_days at least 7)."
    )

    @model_validator(mode="after")
    def _history_covers_cycle(self) -> MonitoringReference:
        if self.history_days * 24 < self.cycle_hours:
            refuse([("history_days", self.history_days, f"at least {self.cycle_hours // 24}: one whole cycle")])
        return self


class Retrain(Section):
    on: list[Literal["drift", "quality"]] = Field(
        default_factory=list,
        description="What starts a retrain: sustained drift alerts, sustained quality-loss alerts (ground truth "
        "joined with captured predictions against the model-quality baseline). Empty: never retrain on monitoring.",
    )
    sustained_hours: int = Field(
        default=3, ge=1, le=720, description="Hours an alert must last before it starts a retrain."
    )
    cooldown_hours: int = Field(
        default=24, ge=0, le=8760, description="Hours after a monitoring-started retrain before another may start."
    )
    dataset: str | None = Field(
        default=None,
        pattern=S3_URI_PATTERN,
        description="The dataset prefix a retrain trains on. Default: the model's newest marked dataset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _on_as_written(cls, data: Any) -> Any:
        # YAML 1.1, which PyYAML reads, takes an unquoted `on:` key for the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _each_once(cls, on: list[str]) -> list[str]:
        if len(set(on)) != len(on):
            raise not_allowed("each of drift and quality at most once")
        return on


class Monitoring(Section):
    enabled: bool | None = Field(
        default=None,
        description="Check the endpoint's captured data against the baseline on a schedule. "
        "Default: endpoint.data_capture.enabled (never on serverless, which captures nothing).",
    )
    schedule: str = Field(
        default="rate(1 hour)",
        min_length=1,
        max_length=256,
        description="An EventBridge Scheduler rate() or cron() expression, in UTC: rate(1 hour), cron(0 * * * ? *).",
    )
    monitoring_config: dict[str, float | str] = Field(
        default_factory=dict,
        description="Overrides of Model Monitor's constraints.json monitoring_config: datatype_check_threshold, "
        "domain_content_threshold, comparison_threshold, categorical_comparison_threshold (0..1), "
        "comparison_method (Simple | Robust), categorical_drift_method (LInfinity | ChiSquared).",
        json_schema_extra=MONITORING_CONFIG_SCHEMA,
    )
    alert: MonitoringAlert = Field(default_factory=MonitoringAlert)
    reference: MonitoringReference = Field(default_factory=MonitoringReference)
    retrain: Retrain = Field(default_factory=Retrain)

    @field_validator("schedule")
    @classmethod
    def _schedule_expression(cls, schedule: str) -> str:
        problem = schedule_problem(schedule)
        if problem:
            raise not_allowed(problem)
        return schedule

    @field_validator("monitoring_config", mode="before")
    @classmethod
    def _known_overrides(cls, overrides: Any) -> Any:
        if not isinstance(overrides, dict):
            return overrides
        problems: list[Problem] = []
        checked: dict[str, float | str] = {}
        known = ", ".join((*MONITORING_THRESHOLDS, *MONITORING_METHODS))
        for key, value in overrides.items():
            if key in MONITORING_THRESHOLDS:
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    problems.append((str(key), value, "must be a number from 0 to 1"))
                else:
                    checked[key] = float(value)
            elif key in MONITORING_METHODS:
                if value not in MONITORING_METHODS[key]:
                    problems.append((str(key), value, f"must be {' or '.join(MONITORING_METHODS[key])}"))
                else:
                    checked[key] = value
            else:
                close = difflib.get_close_matches(str(key), known.split(", "), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                problems.append((str(key), value, f"unknown key; {hint}allowed here: {known}"))
        refuse(problems)
        return checked


# ---------------------------------------------------------------- the file


class ModelConfig(Section):
    """models/<model>/shepherd.yaml. The model's source dir is models/<model>/code/, implicitly."""

    model_config = ConfigDict(
        title="Shepherd model configuration",
        json_schema_extra={
            "description": "models/<model>/shepherd.yaml: how Shepherd trains, registers, "
            "deploys, rolls out, batch-scores and monitors one model. Documented in docs/CONFIG.md."
        },
    )

    framework: Framework = Field(description="The SageMaker framework container that runs the scripts.")
    framework_version: str | None = Field(
        default=None, description="Container version. Default: 1.2-1 (sklearn), 1.7-1 (xgboost)."
    )
    py_version: Literal["py3"] = "py3"
    entry_point: str = Field(pattern=SCRIPT_PATTERN, description="Training script, relative to models/<model>/code/.")
    inference_entry_point: str | None = Field(
        default=None,
        pattern=SCRIPT_PATTERN,
        description="Serving script (model_fn, input_fn, predict_fn, output_fn). Default: entry_point.",
    )
    hyperparameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        max_length=96,
        description="Passed to the entry point as --name value (at most 96: SageMaker adds 4 of its own).",
    )
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    registry: Registry = Field(default_factory=Registry)
    endpoint: Endpoint = Field(default_factory=Endpoint)
    rollout: Rollout = Field(default_factory=Rollout)
    batch: Batch = Field(default_factory=Batch)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @field_validator("entry_point", "inference_entry_point")
    @classmethod
    def _inside_code_dir(cls, script: str | None) -> str | None:
        if script is not None and ".." in script.split("/"):
            raise not_allowed("must be a path inside models/<model>/code/, without ..")
        return script

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _scalar_values(cls, hyperparameters: Any) -> Any:
        if not isinstance(hyperparameters, dict):
            return hyperparameters
        problems: list[Problem] = []
        for name, value in hyperparameters.items():
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                problems.append((str(name), name, "names must be strings of 1..256 characters"))
            elif name.startswith(RESERVED_HYPERPARAMETER_PREFIX):
                problems.append((name, value, "names starting with sagemaker_ are set by the framework container"))
            elif not isinstance(value, str | int | float | bool):
                problems.append((name, value, "must be a string, number or boolean"))
            elif isinstance(value, str) and len(json.dumps(value)) > 2500:
                # SageMaker receives the JSON-encoded value (quotes and escapes count), as the SDK sends it.
                problems.append((name, f"{value[:20]}…", "must be at most 2500 characters once JSON-encoded"))
        refuse(problems)
        return hyperparameters

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> ModelConfig:
        problems: list[Problem] = []
        versions = FRAMEWORK_VERSIONS[self.framework]
        if self.framework_version is None:
            self.framework_version = DEFAULT_FRAMEWORK_VERSION[self.framework]
        elif self.framework_version not in versions:
            problems.append(
                ("framework_version", self.framework_version, f"{self.framework} versions: {', '.join(versions)}")
            )
        if self.inference_entry_point is None:
            self.inference_entry_point = self.entry_point
        if self.framework == "sklearn":
            problems.extend(self._sklearn_problems())
        metrics = {definition.name for definition in self.training.metric_definitions}
        problems.extend(
            (f"evaluation.gates[{index}].metric", gate.metric, "must name one of training.metric_definitions")
            for index, gate in enumerate(self.evaluation.gates)
            if gate.metric not in metrics
        )
        if self.rollout.judge.quality is not None and not self.endpoint.data_capture.enabled:
            problems.append(
                (
                    "rollout.judge.quality",
                    self.rollout.judge.quality.model_dump(exclude_unset=True),
                    "the judge reads captured predictions: needs endpoint.data_capture.enabled "
                    "(serverless endpoints cannot capture)",
                )
            )
        problems.extend(self._monitoring_problems())
        refuse(problems)
        model = (info.context or {}).get("model")
        if model is not None:
            self.registry.model_package_group = self.registry.model_package_group or model
            self.endpoint.name = self.endpoint.name or model
        return self

    def _monitoring_problems(self) -> list[Problem]:
        monitoring, capture = self.monitoring, bool(self.endpoint.data_capture.enabled)
        if monitoring.enabled is None:
            monitoring.enabled = capture
        problems: list[Problem] = []
        if monitoring.enabled and self.endpoint.kind == "serverless":
            problems.append(("monitoring.enabled", True, SERVERLESS_NO_CAPTURE))
        elif monitoring.enabled and not capture:
            problems.append(("monitoring.enabled", True, "the monitor reads captured data: needs data capture"))
        if monitoring.retrain.on and not monitoring.enabled:
            problems.append(("monitoring.retrain.on", monitoring.retrain.on, "needs monitoring.enabled"))
        return problems

    def _sklearn_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.training.instance_count != 1:
            problems.append(
                ("training.instance_count", self.training.instance_count, "scikit-learn trains on 1 instance")
            )
        instance_types = {
            "training.instance_type": self.training.instance_type,
            "endpoint.realtime.instance_type": self.endpoint.realtime.instance_type if self.endpoint.realtime else "",
            "batch.instance_type": self.batch.instance_type,
        }
        problems.extend(
            (key, instance_type, "the scikit-learn images run on CPU instances only")
            for key, instance_type in instance_types.items()
            if ACCELERATED_FAMILY.match(instance_type)
        )
        return problems
