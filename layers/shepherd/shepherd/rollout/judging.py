"""A rollout stage's judge call (functions/judge_stage): metrics and quality judged, the verdict recorded once.

No pydantic here or in what this imports (the request is validated with shepherd.edge): JudgeStage runs once
per judge interval of every stage, and pydantic's import was a fifth of its cold start (bench/coldstart.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shepherd.edge import field
from shepherd.errors import InvalidInput, ShepherdError, TransientError
from shepherd.judge import Baseline, Judgement, Metric, MetricSettings, StageObservations, StageSettings, judge
from shepherd.judge.duration import with_derived_max
from shepherd.rollout import observe, quality
from shepherd.rollout.budget import DRIFT_MARGIN, StageBudget
from shepherd.rollout.observe import BASELINE_KINDS, baseline, complete_until, observations, queries, settings
from shepherd.rollout.ports import ABORT, Objects, RolloutStore, TransformJobs

logger = logging.getLogger(__name__)

# Full and the watch: the champion's counts from an hour before the rollout (all a serverless watch has).
BASELINE_LOOKBACK_SECONDS = 3600
# Quality judging reads only the capture and ground truth objects the stage's earlier calls did not. The first
# call of full or the watch after a long rollout (its baseline), or one whose state was lost, may have days of
# them: a call reads for at most READ_SECONDS (Timeout is 120 s), saves its progress, and quality waits for
# the next calls to read the rest.
READ_SECONDS = 60.0
REMEMBER_SECONDS = 86400  # a retried judge call comes within minutes
# A metric's floor_rate when its config names none (config.models.MetricJudge's default): a bad-event rate below it
# is good enough whatever the champion's.
DEFAULT_FLOOR_RATE = 0.002
_CONFIG_NAME = {
    Metric.ERROR_RATE: "error_rate",
    Metric.LATENCY: "latency",
    Metric.QUALITY: "quality",
    Metric.SHADOW_QUALITY: "quality",
    Metric.SHADOW_ERRORS: "error_rate",
}


class MetricReader(Protocol):
    """CloudWatch's GetMetricData, every page's MetricDataResults (shepherd.aws.metrics)."""

    def metric_data(self, queries: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]: ...


class Memory(Protocol):
    """Results kept a day under a key: a retried call answers what its first run did (shepherd.aws.idempotency)."""

    def recall(self, key: str) -> dict[str, Any] | None: ...
    def remember(self, key: str, result: dict[str, Any], *, expires_after_seconds: int) -> None: ...


class Bucket(Objects, Protocol):
    """The data bucket, listed and written too: capture, ground truth and quality state (shepherd.aws.s3)."""

    def keys(self, bucket: str, prefix: str) -> list[str]: ...
    def listing(self, bucket: str, prefix: str) -> list[tuple[str, float]]: ...  # (key, LastModified epoch)
    def write_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str | None: ...


@dataclass(frozen=True)
class JudgeDeps:
    """Everything a judge call touches."""

    metrics: MetricReader
    store: RolloutStore
    memory: Memory
    objects: Bucket
    now: Callable[[], datetime]  # the cloud's clock (virtual on the local cloud)
    monotonic: Callable[[], float]  # how long quality has been reading, against READ_SECONDS
    jobs: TransformJobs | None = None  # the replay stage's transform jobs, polled


@dataclass(frozen=True)
class JudgedStage:
    """The stage being judged, as the Rollout planned it."""

    kind: str
    weight: float
    max_minutes: int
    at_max: str
    # The stage's part of the rollout's error budget (shepherd.rollout.budget), set by the plan; None (a rollout
    # planned before budgets) judges the stage with each metric's alpha and beta whole, as then.
    budget: StageBudget | None = None
    # The maximum derived from the stage's traffic (shepherd.judge.duration), max_minutes its cap; False: max_minutes
    # is the user's.
    max_from_traffic: bool = False


@dataclass(frozen=True)
class JudgeRequest:
    """The Judge state's input, which the Rollout function built."""

    run: str
    endpoint: str
    package_arn: str
    champion_variant: str
    candidate_variant: str
    stage: JudgedStage
    stage_index: int
    stage_started: float
    judge: dict[str, Any]
    attempt: str  # the Judge state's entry time: the same for every retry of one judge call
    rollout_started: float  # full and the watch: the champion's counts since then are the baseline
    loops: int  # judge calls this execution made before this one; answered + 1 (the state machine counts on it)

    @classmethod
    def parse(cls, event: Any) -> JudgeRequest:
        names = ("run", "endpoint", "package_arn", "champion_variant", "candidate_variant")
        strings = {name: field(event, name, str) for name in names}
        stage = field(event, "stage", dict)
        return cls(
            **strings,
            stage=JudgedStage(
                kind=field(stage, "kind", str, choices=("replay", "shadow", "ab", "full", "watch"), where="stage."),
                weight=float(field(stage, "weight", float, minimum=0, where="stage.")),
                max_minutes=field(stage, "max_minutes", int, where="stage."),
                at_max=field(
                    stage, "at_max", str, choices=("INCONCLUSIVE", "ROLLBACK"), default="INCONCLUSIVE", where="stage."
                ),
                budget=_budget(stage),
                max_from_traffic=field(stage, "max_from_traffic", bool, default=False, where="stage."),
            ),
            stage_index=field(event, "stage_index", int, minimum=0),
            stage_started=float(field(event, "stage_started", float, minimum=0)),
            judge=field(event, "judge", dict),
            attempt=field(event, "attempt", str, default=""),
            rollout_started=float(field(event, "rollout_started", float, minimum=0, default=0.0)),
            loops=field(event, "loops", int, minimum=0, default=0),
        )

    def settings(self) -> StageSettings:
        """Each metric's test for this stage: the config's (rollout-level) alpha and beta spent by the stage's budget,
        and the floor rate below which a candidate without a bad event promotes."""
        stage = self.stage
        planned = settings(self.judge, max_minutes=stage.max_minutes, at_max=stage.at_max, kind=stage.kind)
        metrics: dict[Metric, MetricSettings] = {}
        for metric, configured_settings in planned.metrics.items():
            configured = self.judge.get(_CONFIG_NAME[metric]) or {}
            values = replace(configured_settings, floor=float(configured.get("floor_rate", DEFAULT_FLOOR_RATE)))
            if stage.budget is not None:
                values = replace(values, alpha=stage.budget.alpha(values.alpha), beta=stage.budget.beta(values.beta))
                if stage.kind in BASELINE_KINDS:
                    values = replace(values, drift_margin=DRIFT_MARGIN, rollback_only=stage.kind == "watch")
            metrics[metric] = values
        return StageSettings(metrics)

    @property
    def memory_key(self) -> str | None:
        """Where the call's verdict is remembered: None without an attempt (a call nobody retries)."""
        return f"judge#{self.run}#{self.stage_index}#{self.attempt}" if self.attempt else None

    @property
    def baseline_since(self) -> float:
        """The baseline's start: an hour before the rollout began (or this stage, if earlier)."""
        return min(self.rollout_started or self.stage_started, self.stage_started) - BASELINE_LOOKBACK_SECONDS


def _budget(stage: dict[str, Any]) -> StageBudget | None:
    share, power = stage.get("alpha_share"), stage.get("beta_power")
    if share is None or power is None:
        return None
    alpha_share = float(field(stage, "alpha_share", float, minimum=0, where="stage."))
    beta_power = float(field(stage, "beta_power", float, minimum=0, where="stage."))
    if not 0 < alpha_share <= 1 or beta_power > 1:
        raise InvalidInput(f"stage budget out of range: alpha_share {alpha_share}, beta_power {beta_power}")
    return StageBudget(alpha_share=alpha_share, beta_power=beta_power)


def judge_stage(deps: JudgeDeps, request: JudgeRequest) -> dict[str, Any]:
    """Answer the Judge state: a retry's remembered verdict, a human's abort, or the metrics' and quality's."""
    key = request.memory_key
    remembered = deps.memory.recall(key) if key else None
    if remembered is not None:
        # A retry of a call that decided already (it crashed after recording): the same verdict, recorded once.
        deps.store.record(request.endpoint, remembered["entry"], remembered["at"], unique=key)
        return dict(remembered["answer"])
    now = deps.now()
    deps.store.renew(request.endpoint, request.run, now.timestamp())  # LockLost: another rollout has the endpoint
    aborted = deps.store.flag(request.endpoint, ABORT)
    if aborted is not None:
        # StopExecution would skip the Catch that restores the endpoint: an abort is a signal read here.
        deps.store.clear_flag(request.endpoint, ABORT)
        ended = "INCONCLUSIVE" if aborted.get("verdict") == "INCONCLUSIVE" else "ROLLBACK"  # superseded: not bad
        explanation = f"Aborted by {aborted['by']}: {aborted['reason']}"
        return _decided(deps, request, now, ended, explanation, statistics=[], minutes=None)
    if request.stage.kind == "replay":
        return _replay(deps, request, now)
    observed = _observed(deps, request, now.timestamp())
    stage = request.stage
    stage_settings = request.settings()
    if stage.max_from_traffic:
        stage_settings = with_derived_max(observed, stage_settings, cap=stage.max_minutes)
    verdict = judge(observed, stage_settings)
    decided, explanation = str(verdict.verdict), verdict.explanation
    if stage.kind == "watch" and decided == "INCONCLUSIVE":
        # The watch's at_max_duration "inconclusive": no harm found in its time, so the promotion stands.
        decided = "PROMOTE"
        explanation = f"The post-promotion watch found no harm in {stage.max_minutes} minutes: {explanation}"
    statistics = _statistics(verdict, stage_settings)
    return _decided(deps, request, now, decided, explanation, statistics=statistics, minutes=observed.minutes_elapsed)


def _replay(deps: JudgeDeps, request: JudgeRequest, now: datetime) -> dict[str, Any]:
    """The replay stage: CONTINUE while its jobs run, then the candidate's answers judged against the champion's
    captured ones at the stage's alpha (docs/ROLLOUTS.md, "Replay"). It rejects, never rolls back: nothing to undo."""
    from shepherd.rollout import replay_stage  # the replay's judge, only where a replay runs

    if deps.jobs is None:
        raise ValueError("the replay stage needs SageMaker's transform jobs (JudgeDeps.jobs)")
    wanted = field(request.judge, "replay", dict)
    replay = replay_stage.Replay(
        field(wanted, "bucket", str, where="judge.replay."), field(wanted, "prefix", str, where="judge.replay.")
    )
    configured = float((request.judge.get("error_rate") or {}).get("alpha", 0.05))
    alpha = request.stage.budget.alpha(configured) if request.stage.budget is not None else configured
    decision = replay_stage.decide(
        deps.objects,
        deps.jobs,
        replay,
        alpha=alpha,
        tolerance=float(wanted.get("tolerance", 0.5)),
        max_slowdown=float(wanted.get("max_slowdown", 3.0)),
        elapsed_minutes=(now.timestamp() - request.stage_started) / 60,
        max_minutes=request.stage.max_minutes,
        log=lambda message, extra: logger.info(message, extra=extra),
    )
    minutes = int((now.timestamp() - request.stage_started) // 60)
    return _decided(
        deps, request, now, decision.verdict, decision.explanation, statistics=decision.statistics, minutes=minutes
    )


def _observed(deps: JudgeDeps, request: JudgeRequest, now: float) -> StageObservations:
    """The stage's complete metric bins, its baseline in full and the watch, and its quality if judged."""
    latency = request.judge.get("latency") or None
    threshold = float(latency["threshold_ms"]) if latency else None
    variants = {"champion": request.champion_variant, "candidate": request.candidate_variant}
    end = complete_until(now)
    against_baseline = request.stage.kind in BASELINE_KINDS
    since = request.baseline_since
    results: list[dict[str, Any]] = []
    if end > request.stage_started:
        results = deps.metrics.metric_data(
            queries(request.endpoint, variants, threshold),
            datetime.fromtimestamp((since if against_baseline else request.stage_started) - 60, UTC),
            datetime.fromtimestamp(end, UTC),
        )
    observed = observations(results, started_epoch=request.stage_started, now_epoch=now, latency=threshold is not None)
    if against_baseline:
        counts = baseline(results, since_epoch=since, until_epoch=request.stage_started, latency=threshold is not None)
        observed = replace(observed, baseline=counts)
    observed = _settled(deps, request, observed)
    # The stage's clock runs from its start, data or not: max_minutes is a duration, not a sample count.
    elapsed = max(observed.minutes_elapsed, int((now - request.stage_started) // 60))
    observed = replace(observed, minutes_elapsed=elapsed)
    if request.judge.get("quality"):
        observed = _with_quality(deps, observed, request, now)
    return observed


def _settled(deps: JudgeDeps, request: JudgeRequest, observed: StageObservations) -> StageObservations:
    """The CloudWatch bins earlier calls of the stage judged, as they judged them (observe.settle: a datapoint that
    arrives late never revises a look), kept in the judge's memory for the stage's length and a day."""
    key = observe.ledger_key(request.run, request.stage_index)
    stored = deps.memory.recall(key)
    try:
        ledger = observe.Ledger() if stored is None else observe.decode_ledger(stored)
    except ValueError as exc:
        logger.error("the stage's judged bins are unreadable: judged afresh", extra={"key": key, "error": str(exc)})
        ledger = observe.Ledger()
    settled = observe.settle(observed, ledger)
    expires = request.stage.max_minutes * 60 + REMEMBER_SECONDS
    try:
        deps.memory.remember(key, observe.encode_ledger(ledger), expires_after_seconds=expires)
    except ShepherdError as exc:
        logger.error("the stage's judged bins could not be kept", extra={"key": key, "error": str(exc)})
    return settled


def _statistics(verdict: Judgement, settings: StageSettings) -> list[dict[str, Any]]:
    """Each metric's state, with the maximum its stage was judged with (derived from traffic, or the user's)."""
    return [
        {
            "metric": str(m.metric),
            "verdict": str(m.verdict),
            "statistic": round(m.statistic, 4),
            "rollback_boundary": round(m.rollback_boundary, 4),
            "promote_boundary": round(m.promote_boundary, 4),
            "candidate_samples": m.candidate_samples,
            "champion_samples": m.champion_samples,
            "candidate_bad": m.candidate_bad,
            "champion_bad": m.champion_bad,
            "max_minutes": settings.metrics[m.metric].max_minutes,
        }
        for m in verdict.metrics
    ]


def _with_quality(deps: JudgeDeps, observed: StageObservations, request: JudgeRequest, now: float) -> StageObservations:
    """What the judge observes, with the stage's captured predictions joined with their ground truth.

    Shadow: labelled pairs (both variants answered the same request); A/B: each variant's labelled
    predictions; full and the watch: the candidate's against the champion's from the baseline's start
    until the stage began (labels for those keep arriving during the stage)."""
    wanted = request.judge["quality"]
    sources = field(wanted, "sources", dict, where="judge.quality.")
    bucket = field(sources, "bucket", str, where="judge.quality.sources.")
    rule = quality.Rule(
        decision_threshold=float(wanted.get("decision_threshold", 0.5)),
        tolerance=None if wanted.get("tolerance") is None else float(wanted["tolerance"]),
    )
    stage = quality.plan(
        request.stage.kind,
        run=request.run,
        stage_index=request.stage_index,
        stage_started=request.stage_started,
        baseline_since=request.baseline_since,
        capture=field(sources, "capture", str, where="judge.quality.sources."),
        feedback=field(sources, "feedback", str, where="judge.quality.sources."),
        champion=request.champion_variant,
        candidate=request.candidate_variant,
        rule=rule,
    )
    key = quality.state_key(request.endpoint, request.run, request.stage_index)
    state, complete = read_quality(deps, bucket, key, stage, rule, now=now)
    if not complete:
        # Judged on part of the stage's objects, quality could go either way: it waits, CONTINUE, until all are read.
        state = quality.State.fresh(stage)
    if stage.paired:
        return replace(observed, shadow_quality=quality.pairs_of(state))
    candidate = quality.feedback_of(state, "candidate")
    if request.stage.kind in BASELINE_KINDS:
        labelled, wrong = quality.totals(state, "champion")
        baseline_counts = {**observed.baseline, Metric.QUALITY: Baseline(samples=labelled, bad=wrong)}
        return replace(observed, candidate_feedback=candidate, baseline=baseline_counts)
    return replace(observed, champion_feedback=quality.feedback_of(state, "champion"), candidate_feedback=candidate)


def read_quality(
    deps: JudgeDeps, bucket: str, key: str, stage: quality.Plan, rule: quality.Rule, *, now: float
) -> tuple[quality.State, bool]:
    """The stage's quality state with the objects no earlier call read, and whether this call read them all.

    A call reads for at most READ_SECONDS; the next one reads on. The state (s3://bucket/key) is written
    back only once the new objects are read, joined and counted, so a retry after a crash bins as one
    uninterrupted call. S3, not DynamoDB: the predictions waiting for a label outgrow an item's 400 KB."""
    state, changed = _load_state(deps.objects, bucket, key, stage)
    deadline = deps.monotonic() + READ_SECONDS
    read, complete = quality.read_new(
        state,
        stage,
        now,
        # With each object's LastModified, a labelled prediction is filed at the minute it became readable, which a
        # read from scratch (a lost state) reproduces: it never revises a look made before the loss.
        list_keys=lambda prefix: deps.objects.listing(bucket, prefix),
        read_lines=lambda key: deps.objects.read_bytes(bucket, key).decode("utf-8", errors="replace").splitlines(),
        out_of_time=lambda: deps.monotonic() > deadline,
    )
    joined = quality.join(state, stage, rule)
    closed = complete and quality.close(state, stage, now)  # only hours listed and read to the end close
    changed = closed or changed or read > 0 or joined > 0
    size = None
    if changed:
        data = quality.encode(state)
        size = len(data)
        _save_state(deps.objects, bucket, key, data)
    extra = {
        "objects_read": read,
        "joined": joined,
        "waiting_labels": len(state.labels),
        "waiting_predictions": {role: len(state.pending[role]) for role in quality.ROLES},
        "state_bytes": size,
    }
    if not complete:
        logger.warning(
            "quality judging has more objects to read than one call can: it reads on at the next call, and "
            "quality waits (CONTINUE) until then",
            extra=extra,
        )
    else:
        logger.info("quality data", extra=extra)
    return state, complete


def _load_state(objects: Bucket, bucket: str, key: str, stage: quality.Plan) -> tuple[quality.State, bool]:
    """The stage's state, and whether it is new (everything since the stage's start is still to read).

    Unreadable, corrupt or another stage's: an error logged and a new state, never one it cannot trust.
    A transient error is raised for the Judge state to retry, rather than reading a long stage again."""
    # Listed, not read blind: without s3:ListBucket on the key, S3 answers a missing key with 403, not 404.
    if key not in objects.keys(bucket, key):
        return quality.State.fresh(stage), True
    try:
        state = quality.decode(objects.read_bytes(bucket, key))
    except TransientError:
        raise
    except (ShepherdError, ValueError) as exc:
        logger.error(
            "the stage's quality judging state is unreadable: reading its capture and labels again from the start",
            extra={"state": f"s3://{bucket}/{key}", "error": str(exc)},
        )
        return quality.State.fresh(stage), True
    if state.identity != dict(stage.identity):
        logger.error(
            "the quality judging state under this stage's key is another stage's: reading this one's from the start",
            extra={"state": f"s3://{bucket}/{key}", "found": state.identity, "expected": dict(stage.identity)},
        )
        return quality.State.fresh(stage), True
    return state, False


def _save_state(objects: Bucket, bucket: str, key: str, data: bytes) -> None:
    """Write the state, logging a failure rather than raising it.

    This call's verdict stands on what it read; the next call reads again from the previous state (slower,
    not wrong)."""
    try:
        objects.write_bytes(bucket, key, data, content_type="application/gzip")
    except ShepherdError as exc:
        logger.error(
            "the stage's quality judging state could not be saved: the next call reads again what this one read",
            extra={"state": f"s3://{bucket}/{key}", "error": str(exc)},
        )


def _decided(
    deps: JudgeDeps,
    request: JudgeRequest,
    now: datetime,
    verdict: str,
    explanation: str,
    *,
    statistics: list[dict[str, Any]],
    minutes: int | None,
) -> dict[str, Any]:
    """Record the verdict (the rollout record and the event bus) and answer the state machine.

    Remembered under the call's key before it is recorded, so that a retry after a crash answers it
    again and re-writes the same record entry rather than judging twice."""
    entry = {
        "run": request.run,
        "package": request.package_arn,
        "event": "verdict",
        "stage": request.stage.kind,
        "stage_index": request.stage_index,
        "weight": request.stage.weight,
        "verdict": verdict,
        "explanation": explanation,
        "minutes": minutes,
        "statistics": statistics,
    }
    # loops: the Rollout continues in a fresh execution after rollout.judge_calls_per_execution calls (history cap)
    answer = {"verdict": verdict, "explanation": explanation, "statistics": statistics, "loops": request.loops + 1}
    key = request.memory_key
    if key is not None:
        remembered = {"entry": entry, "at": now.isoformat(), "answer": answer}
        deps.memory.remember(key, remembered, expires_after_seconds=REMEMBER_SECONDS)
    deps.store.record(request.endpoint, entry, now.isoformat(), unique=key)
    logger.info("judged", extra=entry)
    return answer
