"""Judges a rollout stage from both variants' CloudWatch metrics since the stage began."""

from __future__ import annotations

import os
import time

# numpy's OpenBLAS starts a thread per CPU as it loads: about a third of numpy's import (bench/coldstart.py),
# for a judge whose arrays hold a few hundred numbers. Set before anything below imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import idempotency, s3
from shepherd.aws.metrics import metric_data
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.edge import field
from shepherd.errors import ShepherdError, TransientError
from shepherd.judge import Baseline, Metric, StageObservations, judge
from shepherd.rollout import quality
from shepherd.rollout.observe import BASELINE_KINDS, baseline, complete_until, observations, queries, settings
from shepherd.rollout.ports import ABORT

# Full and the watch: the champion's counts from an hour before the rollout (all a serverless watch has).
BASELINE_LOOKBACK_SECONDS = 3600

logger, tracer, metrics = powertools()
rollouts = RolloutTable()
# Quality judging reads only the capture and ground truth objects the stage's earlier calls did not. The first
# call of full or the watch after a long rollout (its baseline), or one whose state was lost, may have days of
# them: a call reads for at most READ_SECONDS (Timeout is 120 s), saves its progress, and quality waits for
# the next calls to read the rest.
READ_SECONDS = 60.0
REMEMBER_SECONDS = 86400  # a retried judge call comes within minutes


@dataclass(frozen=True)
class Stage:
    kind: str
    weight: float
    max_minutes: int
    at_max: str


@dataclass(frozen=True)
class Request:
    """The Judge state's input, which the Rollout function built. Validated with shepherd.edge, not
    pydantic: this runs once per judge interval of every stage, and pydantic's import and schema
    building were a fifth of its cold start (bench/coldstart.py)."""

    run: str
    endpoint: str
    package_arn: str
    champion_variant: str
    candidate_variant: str
    stage: Stage
    stage_index: int
    stage_started: float
    judge: dict[str, Any]
    attempt: str  # the Judge state's entry time: the same for every retry of one judge call
    rollout_started: float  # full and the watch: the champion's counts since then are the baseline
    loops: int  # judge calls this execution made before this one; answered + 1 (the state machine counts on it)

    @classmethod
    def parse(cls, event: Any) -> Request:
        names = ("run", "endpoint", "package_arn", "champion_variant", "candidate_variant")
        strings = {name: field(event, name, str) for name in names}
        stage = field(event, "stage", dict)
        return cls(
            **strings,
            stage=Stage(
                kind=field(stage, "kind", str, choices=("shadow", "ab", "full", "watch"), where="stage."),
                weight=float(field(stage, "weight", float, minimum=0, where="stage.")),
                max_minutes=field(stage, "max_minutes", int, where="stage."),
                at_max=field(
                    stage, "at_max", str, choices=("INCONCLUSIVE", "ROLLBACK"), default="INCONCLUSIVE", where="stage."
                ),
            ),
            stage_index=field(event, "stage_index", int, minimum=0),
            stage_started=float(field(event, "stage_started", float, minimum=0)),
            judge=field(event, "judge", dict),
            attempt=field(event, "attempt", str, default=""),
            rollout_started=float(field(event, "rollout_started", float, minimum=0, default=0.0)),
            loops=field(event, "loops", int, minimum=0, default=0),
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.parse(event)
    key = f"judge#{request.run}#{request.stage_index}#{request.attempt}" if request.attempt else None
    remembered = idempotency.recall(key) if key else None
    if remembered is not None:
        # A retry of a call that decided already (it crashed after recording): the same verdict, recorded once.
        rollouts.record(request.endpoint, remembered["entry"], remembered["at"], unique=key)
        return dict(remembered["answer"])
    now = clock.now()
    rollouts.renew(request.endpoint, request.run, now.timestamp())  # LockLost: another rollout has the endpoint
    aborted = rollouts.flag(request.endpoint, ABORT)
    if aborted is not None:
        # StopExecution would skip the Catch that restores the endpoint: an abort is a signal read here.
        rollouts.clear_flag(request.endpoint, ABORT)
        ended = "INCONCLUSIVE" if aborted.get("verdict") == "INCONCLUSIVE" else "ROLLBACK"  # superseded: not bad
        return _decided(
            request, now, ended, f"Aborted by {aborted['by']}: {aborted['reason']}", [], minutes=None, key=key
        )
    latency = request.judge.get("latency") or None
    threshold = float(latency["threshold_ms"]) if latency else None
    variants = {"champion": request.champion_variant, "candidate": request.candidate_variant}
    end = complete_until(now.timestamp())
    against_baseline = request.stage.kind in BASELINE_KINDS
    # The baseline: the champion's counts from an hour before the rollout began until this stage.
    since = min(request.rollout_started or request.stage_started, request.stage_started) - BASELINE_LOOKBACK_SECONDS
    results = []
    if end > request.stage_started:
        results = metric_data(
            queries(request.endpoint, variants, threshold),
            datetime.fromtimestamp((since if against_baseline else request.stage_started) - 60, UTC),
            datetime.fromtimestamp(end, UTC),
        )
    observed = observations(
        results, started_epoch=request.stage_started, now_epoch=now.timestamp(), latency=threshold is not None
    )
    if against_baseline:
        counts = baseline(results, since_epoch=since, until_epoch=request.stage_started, latency=threshold is not None)
        observed = replace(observed, baseline=counts)
    # The stage's clock runs from its start, data or not: max_minutes is a duration, not a sample count.
    elapsed = max(observed.minutes_elapsed, int((now.timestamp() - request.stage_started) // 60))
    observed = replace(observed, minutes_elapsed=elapsed)
    if request.judge.get("quality"):
        observed = _with_quality(observed, request, now.timestamp(), baseline_since=since)
    verdict = judge(
        observed,
        settings(
            request.judge, max_minutes=request.stage.max_minutes, at_max=request.stage.at_max, kind=request.stage.kind
        ),
    )
    decided, explanation = str(verdict.verdict), verdict.explanation
    if request.stage.kind == "watch" and decided == "INCONCLUSIVE":
        # The watch's at_max_duration "inconclusive": no harm found in its time, so the promotion stands.
        decided = "PROMOTE"
        explanation = f"The post-promotion watch found no harm in {request.stage.max_minutes} minutes: {explanation}"
    statistics = [
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
        }
        for m in verdict.metrics
    ]
    return _decided(request, now, decided, explanation, statistics, minutes=elapsed, key=key)


def _with_quality(
    observed: StageObservations, request: Request, now: float, *, baseline_since: float
) -> StageObservations:
    """The stage's captured predictions joined with their ground truth: labelled pairs in shadow (both
    variants answered the same request), per-variant labelled predictions in A/B, and in full and the
    watch the candidate's against the champion's labelled predictions from baseline_since until the
    stage began (its baseline; labels for them keep arriving during the stage)."""
    settings_ = request.judge["quality"]
    sources = field(settings_, "sources", dict, where="judge.quality.")
    bucket = field(sources, "bucket", str, where="judge.quality.sources.")
    rule = quality.Rule(
        decision_threshold=float(settings_.get("decision_threshold", 0.5)),
        tolerance=None if settings_.get("tolerance") is None else float(settings_["tolerance"]),
    )
    stage = quality.plan(
        request.stage.kind,
        run=request.run,
        stage_index=request.stage_index,
        stage_started=request.stage_started,
        baseline_since=baseline_since,
        capture=field(sources, "capture", str, where="judge.quality.sources."),
        feedback=field(sources, "feedback", str, where="judge.quality.sources."),
        champion=request.champion_variant,
        candidate=request.candidate_variant,
        rule=rule,
    )
    key = quality.state_key(request.endpoint, request.run, request.stage_index)
    state, complete = read_quality(bucket, key, stage, rule, now)
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
    bucket: str, key: str, stage: quality.Plan, rule: quality.Rule, now: float
) -> tuple[quality.State, bool]:
    """The stage's quality state once this call has read the objects no earlier call of the stage read,
    and whether it read them all (not when they take more than READ_SECONDS: the next call reads on).

    The state (s3://bucket/key) says which objects of each open hour were read; every open hour is
    listed again, so an object written late into an hour already listed is still read. The state is
    written back only after all the new objects were read, joined and counted: a call that crashes
    before that leaves the previous state, which its retry reads the same objects onto again, and a
    call that crashes after it leaves a state that counts them once, which its retry reads nothing
    new onto. Either way the retry's bins are those of one uninterrupted call. S3 rather than
    DynamoDB: the predictions waiting for their label (hours, at any traffic) outgrow an item's 400 KB."""
    state, changed = _load_state(bucket, key, stage)
    deadline = time.monotonic() + READ_SECONDS
    read, complete = quality.read_new(
        state,
        stage,
        now,
        list_keys=lambda prefix: s3.keys(bucket, prefix),
        read_lines=lambda key: s3.read_bytes(bucket, key).decode("utf-8", errors="replace").splitlines(),
        out_of_time=lambda: time.monotonic() > deadline,
    )
    joined = quality.join(state, stage, rule)
    closed = complete and quality.close(state, stage, now)  # only hours listed and read to the end close
    changed = closed or changed or read > 0 or joined > 0
    size = None
    if changed:
        data = quality.encode(state)
        size = len(data)
        _save_state(bucket, key, data)
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


def _load_state(bucket: str, key: str, stage: quality.Plan) -> tuple[quality.State, bool]:
    """The stage's state, and whether it is new (nothing read yet: everything since the stage's start
    will be). Unreadable or corrupt: an error logged and a new state, so the call reads everything again
    and judges on what it read, never on a state it cannot trust. A transient error is raised (the Judge
    state retries it) rather than turned into a full re-read of a long stage."""
    # Listed, not read blind: without s3:ListBucket on the key, S3 answers a missing key with 403, not 404.
    if key not in s3.keys(bucket, key):
        return quality.State.fresh(stage), True
    try:
        state = quality.decode(s3.read_bytes(bucket, key))
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


def _save_state(bucket: str, key: str, data: bytes) -> None:
    """Write the state; a failure is logged, not raised: this call's verdict stands on what it read, and
    the next call reads again from the previous state (slower, not wrong)."""
    try:
        s3.write_bytes(bucket, key, data, content_type="application/gzip")
    except ShepherdError as exc:
        logger.error(
            "the stage's quality judging state could not be saved: the next call reads again what this one read",
            extra={"state": f"s3://{bucket}/{key}", "error": str(exc)},
        )


def _decided(
    request: Request,
    now: datetime,
    verdict: str,
    explanation: str,
    statistics: list[dict[str, Any]],
    *,
    minutes: int | None,
    key: str | None,
) -> dict[str, Any]:
    """Record the verdict (the rollout record and the event bus) and answer the state machine.

    The verdict is remembered under the call's key before it is recorded, so that a retry after a
    crash answers it again and re-writes the same record entry rather than judging twice."""
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
    if key is not None:
        remembered = {"entry": entry, "at": now.isoformat(), "answer": answer}
        idempotency.remember(key, remembered, expires_after_seconds=REMEMBER_SECONDS)
    rollouts.record(request.endpoint, entry, now.isoformat(), unique=key)
    logger.info("judged", extra=entry)
    return answer
