"""JudgeStage: judges a rollout stage from both variants' metrics since it began (shepherd.rollout.judging)."""

from __future__ import annotations

import os
import time

# numpy's OpenBLAS starts a thread per CPU as it loads: about a third of numpy's import (bench/coldstart.py),
# for a judge whose arrays hold a few hundred numbers. Set before anything below imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import metrics as cloudwatch
from shepherd.aws import s3
from shepherd.aws.idempotency import IdempotencyTable
from shepherd.aws.powertools import powertools
from shepherd.aws.rollouts import RolloutTable
from shepherd.aws.transforms import TransformJobs
from shepherd.edge import setting
from shepherd.rollout import judging

logger, tracer, metrics = powertools()  # shepherd.rollout.judging logs through it: its logger is a child
# The environment (template.yaml) read once per cold start.
deps = judging.JudgeDeps(
    metrics=cloudwatch,
    store=RolloutTable(setting("ROLLOUTS_TABLE")),
    memory=IdempotencyTable(setting("IDEMPOTENCY_TABLE")),
    objects=s3,
    now=clock.now,
    monotonic=time.monotonic,
    jobs=TransformJobs(),
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return judging.judge_stage(deps, judging.JudgeRequest.parse(event))
