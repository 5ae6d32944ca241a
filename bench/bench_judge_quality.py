"""A judge call's quality read on a long stage: the full re-read every call made before, against the incremental read;
and (``late_labels``) quality judging's false-rollback rate with late labels, bins by prediction minute vs by arrival.

Writes bench/results/judge_quality.json. A report, not a test: always exits 0.
How it is built: docs/BENCHMARKS.md, "bench_judge_quality.py"; the simulation: docs/ROLLOUTS.md, "Quality judging".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "shepherd"))

from shepherd.aws import s3  # noqa: E402
from shepherd.aws.clients import client  # noqa: E402
from shepherd.judge import (  # noqa: E402
    FeedbackBin,
    Metric,
    MetricSettings,
    StageObservations,
    StageSettings,
    Verdict,
    judge,
)
from shepherd.rollout import judging, quality  # noqa: E402
from shepherd.rollout.judging import JudgeRequest  # noqa: E402
from shepherd.rollout.observe import LAG_SECONDS  # noqa: E402

from localcloud.server import LocalCloud  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "judge_quality.json"
BUCKET = "bench-judge-quality"
ENDPOINT = "churn"
CAPTURE = f"capture/{ENDPOINT}/{ENDPOINT}/"
FEEDBACK = "feedback/churn/"
VARIANTS = ("v1", "v2")
STARTED = datetime(2026, 11, 25, 0, 0, 30, tzinfo=UTC).timestamp()
LABEL_DELAY_MINUTES = 10
LABELLED = 0.8


def _load_handler() -> Any:
    os.environ.update(
        {
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "ERROR",  # the per-call "quality data" lines would swamp the report
            "POWERTOOLS_SERVICE_NAME": "shepherd",
            "POWERTOOLS_METRICS_NAMESPACE": "Shepherd",
            "ROLLOUTS_TABLE": "bench-rollouts",  # the handler's deps name it; quality reading never touches it
        }
    )
    spec = importlib.util.spec_from_file_location("judge_stage_app", ROOT / "functions" / "judge_stage" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _stamp(epoch: float, pattern: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(pattern)


def _objects(minutes: int, per_object: int) -> dict[int, list[tuple[str, bytes]]]:
    """minute -> the objects written in it: one capture object per variant, one ground-truth object."""
    rng = random.Random(7)
    out: dict[int, list[tuple[str, bytes]]] = {}
    outputs: dict[str, tuple[str, str]] = {}
    for minute in range(minutes):
        at = STARTED + 60 * minute + 30
        written: list[tuple[str, bytes]] = []
        for variant in VARIANTS:
            lines = []
            for n in range(per_object):
                inference_id = f"{variant}-{minute}-{n}"
                score = f"{rng.random():.4f}"
                outputs[inference_id] = (score, "1" if rng.random() < 0.8 else "0")
                output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": score, "encoding": "CSV"}
                metadata = {
                    "eventId": inference_id,
                    "inferenceId": inference_id,
                    "inferenceTime": _stamp(at, "%Y-%m-%dT%H:%M:%SZ"),
                }
                lines.append(json.dumps({"captureData": {"endpointOutput": output}, "eventMetadata": metadata}))
            key = f"{CAPTURE}{variant}/{_stamp(at, '%Y/%m/%d/%H')}/{_stamp(at, '%M-%S')}-{variant}.jsonl"
            written.append((key, ("\n".join(lines) + "\n").encode()))
        labelled_minute = minute - LABEL_DELAY_MINUTES
        if labelled_minute >= 0:
            truth = []
            for variant in VARIANTS:
                for n in range(per_object):
                    inference_id = f"{variant}-{labelled_minute}-{n}"
                    if rng.random() < LABELLED:
                        record = {"groundTruthData": {"data": outputs[inference_id][1], "encoding": "CSV"}}
                        truth.append(json.dumps(record | {"eventMetadata": {"eventId": inference_id}}))
            key = f"{FEEDBACK}{_stamp(at, '%Y/%m/%d/%H')}/{_stamp(at, '%M-%S')}.jsonl"
            written.append((key, ("\n".join(truth) + "\n").encode()))
        out[minute] = written
    return out


def old_full_reread(app: Any, request: Any, now: float) -> tuple[Any, Any]:
    """JudgeStage's quality read before the change (main at 173bb50, its A/B branch), with the same S3 calls."""
    sources = request.judge["quality"]["sources"]
    bucket, capture, feedback = sources["bucket"], sources["capture"], sources["feedback"]
    rule = quality.Rule()
    start = request.stage_started

    def lines(prefix: str) -> list[str]:
        out: list[str] = []
        keys = [key for hour in quality.hour_prefixes(prefix, start, now) for key in s3.keys(bucket, hour)]
        for key in keys:
            out.extend(s3.read_bytes(bucket, key).decode("utf-8", errors="replace").splitlines())
        return out

    labels = quality.ground_truth(lines(feedback))
    champion, candidate = (
        list(quality.predictions(lines(f"{capture}{variant}/")))
        for variant in (request.champion_variant, request.candidate_variant)
    )
    return (
        quality.feedback_bins(champion, labels, started_epoch=start, rule=rule),
        quality.feedback_bins(candidate, labels, started_epoch=start, rule=rule),
    )


def incremental(app: Any, request: Any, now: float) -> tuple[Any, Any]:
    observed = judging._with_quality(app.deps, StageObservations(minutes_elapsed=0), request, now)
    return observed.champion_feedback, observed.candidate_feedback


class Requests:
    """The S3 requests the layer's client makes, by operation."""

    def __init__(self, app: Any) -> None:
        self.counts: Counter[str] = Counter()
        client("s3").meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> dict[str, int]:
        counts, self.counts = dict(self.counts), Counter()
        return counts


def _row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"| {name} | {statistics.median(samples) * 1000:,.1f} | {p90 * 1000:,.1f} | {len(samples)} |"


def _request(app: Any, minutes: int) -> Any:
    return JudgeRequest.parse(
        {
            "run": "churn-v2-bench",
            "endpoint": ENDPOINT,
            "package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2",
            "champion_variant": VARIANTS[0],
            "candidate_variant": VARIANTS[1],
            "stage": {"kind": "ab", "weight": 50.0, "max_minutes": 2 * minutes},
            "stage_index": 1,
            "stage_started": STARTED,
            "judge": {"quality": {"sources": {"bucket": BUCKET, "capture": CAPTURE, "feedback": FEEDBACK}}},
        }
    )


def _measure(
    app: Any, s3: Any, objects: dict[int, list[tuple[str, bytes]]], args: argparse.Namespace
) -> dict[str, Any]:
    """The stage's first call (untimed: no state yet, it reads everything and writes the state) one minute
    before the end, the last minute's objects written, then the samples, alternating."""
    request = _request(app, args.minutes)
    requests = Requests(app)
    state_key = quality.state_key(ENDPOINT, request.run, request.stage_index)
    last = args.minutes - 1
    started = time.perf_counter()
    incremental(app, request, STARTED + 60 * last)
    out: dict[str, Any] = {"first_call": time.perf_counter() - started, "first_requests": requests.take()}
    saved = s3.get_object(Bucket=BUCKET, Key=state_key)["Body"].read()
    for key, body in objects[last]:  # the last minute: three new objects
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    now = STARTED + 60 * last + 59
    samples: dict[str, list[float]] = {"old": [], "new": []}
    rounds = max(args.old_runs, args.new_runs)
    for index in range(rounds):
        if index < args.new_runs:
            s3.put_object(Bucket=BUCKET, Key=state_key, Body=saved)  # as the previous call left it
            requests.take()
            started = time.perf_counter()
            out["new"] = incremental(app, request, now)
            samples["new"].append(time.perf_counter() - started)
            out["new_requests"] = requests.take()
        if index < args.old_runs:
            requests.take()
            started = time.perf_counter()
            out["old"] = old_full_reread(app, request, now)
            samples["old"].append(time.perf_counter() - started)
            out["old_requests"] = requests.take()
        print(f"  round {index + 1}/{rounds} done", flush=True)
    return out | {"samples": samples, "state_bytes": len(saved)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cloud = LocalCloud(port=0, state_dir=Path(tmp))
        cloud.start()
        try:
            os.environ.update(cloud.exports())
            app = _load_handler()
            s3 = cloud.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            objects = _objects(args.minutes, args.per_object)
            upload = [item for minute in range(args.minutes - 1) for item in objects[minute]]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), upload))
            print(f"uploaded {len(upload):,} objects in {time.perf_counter() - began:.0f} s", flush=True)
            measured = _measure(app, s3, objects, args)
        finally:
            cloud.stop()

    old, new = measured["samples"]["old"], measured["samples"]["new"]
    old_median, new_median = statistics.median(old), statistics.median(new)
    same = measured["old"] == measured["new"]
    labelled = sum(b.labelled for bins in measured["new"] for b in bins)
    total = sum(len(v) for v in objects.values())
    print()
    print(
        f"A/B stage of {args.minutes:,} minutes, {args.per_object} predictions per capture object: "
        f"{total:,} objects, {labelled:,} labelled predictions joined"
    )
    print("| one judge call's quality read | median ms | p90 ms | samples |")
    print("| --- | ---: | ---: | ---: |")
    print(_row("full re-read (before)", old))
    print(_row("incremental (state + new objects)", new))
    print(f"\nratio full re-read / incremental: {old_median / new_median:,.0f}x (medians)")
    print(f"S3 requests per call: full re-read {measured['old_requests']}; incremental {measured['new_requests']}")
    print(f"state: {measured['state_bytes']:,} bytes gzip'd")
    print(
        f"the stage's first incremental call (no state): {measured['first_call']:.2f} s, {measured['first_requests']}"
    )
    print(f"same bins both ways: {'yes' if same else 'NO'}")
    print(f"\n({time.perf_counter() - began:.0f} s; 2 shared cores here: quote the medians and the ratio)")
    return {
        "minutes": args.minutes,
        "per_object": args.per_object,
        "objects": total,
        "labelled_joined": labelled,
        "full_reread_median_ms": round(old_median * 1000, 1),
        "incremental_median_ms": round(new_median * 1000, 1),
        "ratio": round(old_median / new_median, 1),
        "samples": {"full_reread": len(old), "incremental": len(new)},
        "s3_requests": {"full_reread": measured["old_requests"], "incremental": measured["new_requests"]},
        "state_bytes": measured["state_bytes"],
        "first_incremental_call_s": round(measured["first_call"], 2),
        "same_bins": same,
    }


# ------------------------------------------------------------------ late labels: the false-rollback rate

CALL_EVERY = 300  # seconds between judge calls (the Rollout's Wait)
RULES = {
    "prediction_minute": "before: a labelled prediction in its prediction's minute, re-binned at every call",
    "first_look": "now, keys only (JudgeStage today): its prediction's minute, or the first minute no look saw",
    "arrival_minute": "now, with LastModified: its label's arrival minute, or the first minute no look saw",
}


def _late_stage(rng: Any, rule: str, delay_minutes: float, args: argparse.Namespace, settings: StageSettings) -> str:
    """One A/B quality stage of identical variants judged every CALL_EVERY s: its verdict."""
    import numpy as np

    minutes = args.max_minutes
    counts = rng.poisson(args.rate, size=minutes)
    predicted = np.repeat(np.arange(minutes), counts)  # each labelled prediction's minute
    at = predicted * 60 + rng.uniform(0, 60, size=predicted.size)
    candidate = rng.random(predicted.size) < args.share
    wrong = rng.random(predicted.size) < args.error
    arrives = at + 60 + rng.exponential(delay_minutes * 60, size=predicted.size)  # captured, then labelled
    filed = np.full(predicted.size, -1)
    looked: int | None = None
    for now in range(CALL_EVERY, minutes * 60 + CALL_EVERY, CALL_EVERY):
        until = min((now - LAG_SECONDS) // 60, minutes)  # observe.complete_until: minutes shown to the judge
        seen = arrives <= now
        if rule == "prediction_minute":
            key = np.where(seen, predicted, -1)
        else:
            new = seen & (filed < 0)
            base = predicted if rule == "first_look" else (arrives // 60).astype(int)
            filed[new] = base[new] if looked is None else np.maximum(base[new], looked)
            key = filed
            if not args.every_call and now < minutes * 60:
                # bins are never revised, so the first look that decides sees the first crossing of the last
                # look's path: one judge call at the end gives the stage's verdict (--every-call checks it)
                looked = until
                continue
        shown = (key >= 0) & (key < until)
        k, c, w = key[shown], candidate[shown], wrong[shown]
        size = max(until, 1)
        n1, b1 = np.bincount(k[c], minlength=size), np.bincount(k[c & w], minlength=size)
        n0, b0 = np.bincount(k[~c], minlength=size), np.bincount(k[~c & w], minlength=size)
        used = np.nonzero(n0 + n1)[0].tolist()
        observed = StageObservations(
            minutes_elapsed=until,
            champion_feedback=tuple(FeedbackBin(m, int(n0[m]), int(b0[m])) for m in used),
            candidate_feedback=tuple(FeedbackBin(m, int(n1[m]), int(b1[m])) for m in used),
        )
        looked = until
        verdict = judge(observed, settings).verdict
        if verdict is not Verdict.CONTINUE:
            return str(verdict)
    return str(Verdict.INCONCLUSIVE)


def late_labels(args: argparse.Namespace) -> dict[str, Any]:
    """False rollbacks of identical variants on quality, per label delay and binning rule (seeded)."""
    import numpy as np

    began = time.perf_counter()
    settings = StageSettings({Metric.QUALITY: MetricSettings(max_minutes=args.max_minutes)})
    out: dict[str, Any] = {
        "what": (
            f"A/B quality stage, identical variants: {args.rate:g} labelled predictions a minute, "
            f"{args.share:.0%} to the candidate, {args.error:.0%} misclassified; label delay exponential "
            f"(1 min capture + mean below); judged every {CALL_EVERY // 60} min, {LAG_SECONDS} s lag; "
            f"alpha 0.05, beta 0.2, delta 1, min_samples 100, max {args.max_minutes} min"
        ),
        "replications": args.replications,
        "seed": args.seed,
        "rules": RULES,
        "delays": {},
    }
    print(f"\nlate labels: {out['what']}; {args.replications:,} replications per cell")
    print("| mean label delay | rule | false rollback | ± 1 s.e. | undecided |")
    print("| --- | --- | ---: | ---: | ---: |")
    for delay in args.delays:
        cells: dict[str, Any] = {}
        for rule in RULES:
            rng = np.random.default_rng([args.seed, int(delay)])  # the same stages for every rule
            verdicts = Counter(_late_stage(rng, rule, delay, args, settings) for _ in range(args.replications))
            rate = verdicts["ROLLBACK"] / args.replications
            error = math.sqrt(rate * (1 - rate) / args.replications)
            undecided = verdicts["INCONCLUSIVE"] / args.replications
            cells[rule] = {"false_rollback": round(rate, 4), "standard_error": round(error, 4), "undecided": undecided}
            print(f"| {delay:g} min | {rule} | {rate:.4f} | {error:.4f} | {undecided:.4f} |", flush=True)
        out["delays"][f"{delay:g}"] = cells
    out["seconds"] = round(time.perf_counter() - began)
    print(f"({out['seconds']} s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=1440, help="the stage's length so far (default a day)")
    parser.add_argument("--per-object", type=int, default=10, help="predictions per capture object")
    parser.add_argument("--old-runs", type=int, default=3)
    parser.add_argument("--new-runs", type=int, default=9)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--late-labels-only", action="store_true", help="only the false-rollback simulation")
    parser.add_argument("--replications", type=int, default=4000, help="late labels: stages per delay and rule")
    parser.add_argument("--delays", type=float, nargs="+", default=[30.0, 120.0], help="mean label delays, minutes")
    parser.add_argument("--rate", type=float, default=20.0, help="labelled predictions a minute")
    parser.add_argument("--share", type=float, default=0.5, help="the candidate's share")
    parser.add_argument("--error", type=float, default=0.05, help="both variants' misclassification rate")
    parser.add_argument("--max-minutes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--every-call", action="store_true", help="late labels: judge every call for every rule")
    args = parser.parse_args()
    try:
        kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        figures = kept if args.late_labels_only else run(args)
        figures["late_labels"] = late_labels(args)
    except Exception:  # a report, not a test
        traceback.print_exc()
        return
    if not args.no_write:
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
