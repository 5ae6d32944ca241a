"""Judges a rollout stage from both variants' CloudWatch metrics since the stage began."""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per CPU as it loads: about a third of numpy's import (bench/coldstart.py),
# for a judge whose arrays hold a few hundred numbers. Set before anything below imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints, idempotency, rollouts, s3
from shepherd.aws.powertools import powertools
from shepherd.edge import field
from shepherd.judge import StageObservations, judge
from shepherd.rollout import quality
from shepherd.rollout.observe import BASELINE_KINDS, baseline, complete_until, observations, queries, settings

# Full and the watch: the champion's counts from an hour before the rollout (all a serverless watch has).
BASELINE_LOOKBACK_SECONDS = 3600

logger, tracer, metrics = powertools()
# Quality judging re-reads the stage's capture and ground truth each call; beyond this many objects
# a call is logged as slow (Timeout is 120 s): lower the capture sampling or the stage's duration.
LARGE_READ = 2000
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
    aborted = rollouts.flag(request.endpoint, rollouts.ABORT)
    if aborted is not None:
        # StopExecution would skip the Catch that restores the endpoint: an abort is a signal read here.
        rollouts.clear_flag(request.endpoint, rollouts.ABORT)
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
        results = endpoints.metric_data(
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
    if request.judge.get("quality") and not against_baseline:  # settings() judges no quality in full or the watch
        observed = _with_quality(observed, request, now.timestamp())
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


def _lines(bucket: str, prefix: str, until: float, *, start: float) -> list[str]:
    """Every line of the objects under prefix/yyyy/mm/dd/hh/ for the hours from start to until."""
    lines: list[str] = []
    keys = [key for hour in quality.hour_prefixes(prefix, start, until) for key in s3.keys(bucket, hour)]
    if len(keys) > LARGE_READ:
        logger.warning("quality judging reads many objects", extra={"prefix": prefix, "objects": len(keys)})
    for key in keys:
        lines.extend(s3.read_bytes(bucket, key).decode("utf-8", errors="replace").splitlines())
    return lines


def _with_quality(observed: StageObservations, request: Request, now: float) -> StageObservations:
    """The stage's captured predictions joined with their ground truth: labelled pairs in shadow
    (both variants answered the same request), per-variant labelled predictions in A/B."""
    settings_ = request.judge["quality"]
    sources = field(settings_, "sources", dict, where="judge.quality.")
    bucket = field(sources, "bucket", str, where="judge.quality.sources.")
    capture = field(sources, "capture", str, where="judge.quality.sources.")
    feedback = field(sources, "feedback", str, where="judge.quality.sources.")
    rule = quality.Rule(
        decision_threshold=float(settings_.get("decision_threshold", 0.5)),
        tolerance=None if settings_.get("tolerance") is None else float(settings_["tolerance"]),
    )
    start = request.stage_started
    labels = quality.ground_truth(_lines(bucket, feedback, now, start=start))
    champion, candidate = (
        list(quality.predictions(_lines(bucket, f"{capture}{variant}/", now, start=start)))
        for variant in (request.champion_variant, request.candidate_variant)
    )
    logger.info(
        "quality data",
        extra={"labels": len(labels), "champion_predictions": len(champion), "candidate_predictions": len(candidate)},
    )
    if request.stage.kind == "shadow":
        pairs = quality.paired_bins(champion, candidate, labels, started_epoch=start, rule=rule)
        return replace(observed, shadow_quality=pairs)
    return replace(
        observed,
        champion_feedback=quality.feedback_bins(champion, labels, started_epoch=start, rule=rule),
        candidate_feedback=quality.feedback_bins(candidate, labels, started_epoch=start, rule=rule),
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
