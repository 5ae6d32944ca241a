"""Judges a rollout stage from both variants' CloudWatch metrics since the stage began."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints, rollouts
from shepherd.aws.powertools import powertools
from shepherd.edge import field
from shepherd.judge import judge
from shepherd.rollout.observe import complete_until, observations, queries, settings

logger, tracer, metrics = powertools()


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

    @classmethod
    def parse(cls, event: Any) -> Request:
        names = ("run", "endpoint", "package_arn", "champion_variant", "candidate_variant")
        strings = {name: field(event, name, str) for name in names}
        stage = field(event, "stage", dict)
        return cls(
            **strings,
            stage=Stage(
                kind=field(stage, "kind", str, choices=("shadow", "ab"), where="stage."),
                weight=float(field(stage, "weight", float, minimum=0, where="stage.")),
                max_minutes=field(stage, "max_minutes", int, where="stage."),
                at_max=field(
                    stage, "at_max", str, choices=("INCONCLUSIVE", "ROLLBACK"), default="INCONCLUSIVE", where="stage."
                ),
            ),
            stage_index=field(event, "stage_index", int, minimum=0),
            stage_started=float(field(event, "stage_started", float, minimum=0)),
            judge=field(event, "judge", dict),
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.parse(event)
    now = clock.now()
    rollouts.acquire(request.endpoint, request.run, request.package_arn, now.timestamp())  # renew the lease
    aborted = rollouts.flag(request.endpoint, rollouts.ABORT)
    if aborted is not None:
        # StopExecution would skip the Catch that restores the endpoint: an abort is a signal read here.
        rollouts.clear_flag(request.endpoint, rollouts.ABORT)
        return _decided(request, now, "ROLLBACK", f"Aborted by {aborted['by']}: {aborted['reason']}", [], minutes=None)
    latency = request.judge.get("latency") or None
    threshold = float(latency["threshold_ms"]) if latency else None
    variants = {"champion": request.champion_variant, "candidate": request.candidate_variant}
    end = complete_until(now.timestamp())
    results = []
    if end > request.stage_started:
        results = endpoints.metric_data(
            queries(request.endpoint, variants, threshold),
            datetime.fromtimestamp(request.stage_started - 60, UTC),
            datetime.fromtimestamp(end, UTC),
        )
    observed = observations(
        results, started_epoch=request.stage_started, now_epoch=now.timestamp(), latency=threshold is not None
    )
    # The stage's clock runs from its start, data or not: max_minutes is a duration, not a sample count.
    elapsed = max(observed.minutes_elapsed, int((now.timestamp() - request.stage_started) // 60))
    observed = type(observed)(minutes_elapsed=elapsed, champion=observed.champion, candidate=observed.candidate)
    verdict = judge(
        observed, settings(request.judge, max_minutes=request.stage.max_minutes, at_max=request.stage.at_max)
    )
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
    return _decided(request, now, str(verdict.verdict), verdict.explanation, statistics, minutes=elapsed)


def _decided(
    request: Request,
    now: datetime,
    verdict: str,
    explanation: str,
    statistics: list[dict[str, Any]],
    *,
    minutes: int | None,
) -> dict[str, Any]:
    """Record the verdict (the rollout record and the event bus) and answer the state machine."""
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
    rollouts.record(request.endpoint, entry, now.isoformat())
    logger.info("judged", extra=entry)
    return {"verdict": verdict, "explanation": explanation, "statistics": statistics}
