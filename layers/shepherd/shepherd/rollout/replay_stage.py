"""The rollout's replay stage: the candidate answers the champion's captured requests before any live one.

EnterStage samples the champion's capture (shepherd.replay.choose), writes the sample as Batch Transform input
under the run's replay prefix and starts two transform jobs on it, the candidate's and the champion's (the
throughput baseline). The Judge loop polls both; once they end it compares the candidate's answers with the
champion's captured ones (shepherd.replay.judge) and writes result.json and examples.jsonl beside them.
docs/ROLLOUTS.md, "Replay".
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shepherd.errors import InvalidInput, NotFound
from shepherd.instances import TRANSFORM_INSTANCE_TYPES, has_instance_storage
from shepherd.replay.records import Captured, captured, choose, shards
from shepherd.replay.verdict import Expectation, ShardOutcome, expectation, judge
from shepherd.rollout import plan
from shepherd.rollout.ports import CaptureBucket, TransformJobs
from shepherd.rollout.quality import hour_prefixes

# Fewer captured requests than this in the window: too few to say anything, the stage is skipped.
MIN_RECORDS = 50
PER_SHARD = 100  # records per input file: a crash is narrowed to the file it happened in
# Objects read per hour of capture, at most: enough for the hour's share of the sample twice over.
SPARE = 2.0
ANSWER_TYPE_LINES = 20  # lines of each capture object whose answer's media type is looked at
ROLES = ("candidate", "champion")
RUNNING = ("InProgress", "Stopping")
# The examples the notification quotes (result.json and examples.jsonl keep all the judge gives).
NOTIFIED_EXAMPLES = 3
# Invocations: a replayed request gets what a live one would (the endpoint's 60 s), retried once.
INVOCATIONS_TIMEOUT_SECONDS = 60
INVOCATIONS_MAX_RETRIES = 1
# The throughput check compares the jobs' durations only when the champion's took this long: a shorter job's time
# is mostly starting up (instances, the model's load), and two such times differ by chance, not by the models.
MIN_TIMED_SECONDS = 300.0


@dataclass(frozen=True)
class Replay:
    """Where a run's replay lives and what it runs on."""

    bucket: str
    prefix: str  # <capture prefix>replay/<run>/

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"


def instance_type(configured: str | None, endpoint: str | None, fallback: str) -> str:
    """The jobs' instance type: the config's, else the endpoint's where Batch Transform offers it, else batch's."""
    if configured:
        return configured
    if endpoint and endpoint in TRANSFORM_INSTANCE_TYPES:
        return endpoint
    return fallback


def transform_request(
    replay: Replay,
    *,
    role: str,
    job_name: str,
    model_name: str,
    content_type: str,
    accept: str,
    instance: str,
    kms_key_arn: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    """A CreateTransformJob request scoring every input file of the replay: one request a line (SingleRecord), each
    as the endpoint received it, asking for the answer type the champion gave, one answer a line."""
    output: dict[str, Any] = {"S3OutputPath": replay.uri(f"{role}/"), "Accept": accept, "AssembleWith": "Line"}
    resources: dict[str, Any] = {"InstanceType": instance, "InstanceCount": 1}
    if kms_key_arn:
        output["KmsKeyId"] = kms_key_arn
        if not has_instance_storage(instance):
            resources["VolumeKmsKeyId"] = kms_key_arn
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": INVOCATIONS_TIMEOUT_SECONDS,
            "InvocationsMaxRetries": INVOCATIONS_MAX_RETRIES,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": replay.uri("input/")}},
            "ContentType": content_type,
            "SplitType": "Line",
        },
        "TransformOutput": output,
        "TransformResources": resources,
        "Tags": [{"Key": key, "Value": value} for key, value in sorted(tags.items())],
    }


# ---------------------------------------------------------------- reading the capture


def answer_type(lines: Iterable[str]) -> Counter[str]:
    """The media types of the champion's captured answers (endpointOutput.observedContentType): the replay asks the
    candidate for the same (TransformOutput.Accept), so that answers compare like with like."""
    found: Counter[str] = Counter()
    for line in lines:
        try:
            output = json.loads(line)["captureData"]["endpointOutput"]["observedContentType"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(output, str):
            found[_media(output)] += 1
    return found


def sample(
    bucket: CaptureBucket,
    name: str,
    folder: str,
    *,
    now: float,
    window_hours: int,
    size: int,
    seed: str,
    answer_types: Counter[str] | None = None,
) -> tuple[list[Captured], int]:
    """The champion's captured records of the window, sampled (stratified by hour), and the records read; the
    answers' media types counted into ``answer_types``.

    Each hour with capture is read up to about twice its share of the sample, object by object: a busy endpoint's
    day of capture is not read whole for a sample of a few thousand."""
    answer_types = Counter() if answer_types is None else answer_types
    hours = hour_prefixes(folder, now - window_hours * 3600, now)
    listed = {prefix: bucket.keys(name, prefix) for prefix in hours}
    busy = [prefix for prefix, keys in listed.items() if keys]
    if not busy:
        return [], 0
    quota = math.ceil(SPARE * size / len(busy))
    records: list[Captured] = []
    for prefix in busy:
        found = 0
        for key in listed[prefix]:
            lines = bucket.read_bytes(name, key).decode("utf-8", errors="replace").splitlines()
            answer_types.update(answer_type(lines[:ANSWER_TYPE_LINES]))
            batch = [r for r in captured(lines) if now - window_hours * 3600 <= r.epoch <= now]
            records.extend(batch)
            found += len(batch)
            if found >= quota:
                break
    return choose(records, size, seed=seed), len(records)


def dominant(records: Iterable[Captured]) -> tuple[str, list[Captured], int]:
    """The most common media type and its records (a transform job takes one ContentType), and how many others."""
    records = list(records)
    media = Counter(_media(r.content_type) for r in records)
    kind = media.most_common(1)[0][0]
    chosen = [r for r in records if _media(r.content_type) == kind]
    return kind, chosen, len(records) - len(chosen)


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def encode_records(records: Iterable[Captured]) -> bytes:
    return "".join(json.dumps(asdict(r), separators=(",", ":")) + "\n" for r in records).encode()


def decode_records(data: bytes) -> list[Captured]:
    return [Captured(**json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- entering: sample, write, start


@dataclass(frozen=True)
class Start:
    """What EnterStage(replay) needs beyond the bucket and the jobs."""

    replay: Replay
    run: str
    endpoint: str
    version: int
    capture_folder: str  # the champion variant's capture: <capture prefix><variant>/
    candidate_model: str
    champion_model: str
    metadata: dict[str, str]  # the candidate package's CustomerMetadataProperties
    problem: str | None
    sample_size: int
    window_hours: int
    default_disagreement: float
    instance: str
    kms_key_arn: str | None
    tags: dict[str, str]


def start(bucket: CaptureBucket, jobs: TransformJobs, wanted: Start, now: float) -> dict[str, Any]:
    """Sample the capture, write the input and the plan, start both jobs: {"skipped": reason} when there is too
    little to replay. A retry finds the plan written and starts the same jobs on the same input."""
    replay = wanted.replay
    existing = _plan(bucket, replay)
    if existing is None:
        answer_types: Counter[str] = Counter()
        chosen, read = sample(
            bucket,
            replay.bucket,
            wanted.capture_folder,
            now=now,
            window_hours=wanted.window_hours,
            size=wanted.sample_size,
            seed=wanted.run,
            answer_types=answer_types,
        )
        if len(chosen) < MIN_RECORDS:
            return {
                "skipped": f"{len(chosen)} captured requests in the last {wanted.window_hours} hours under "
                f"{replay.bucket}/{wanted.capture_folder} (replay needs at least {MIN_RECORDS})"
            }
        content_type, records, other_types = dominant(chosen)
        parts = shards(records, per_shard=PER_SHARD)
        if not parts:
            return {"skipped": f"none of the {len(records)} sampled requests fits on one line of a transform input"}
        try:
            expected = expectation(
                wanted.metadata, problem=wanted.problem, default_disagreement=wanted.default_disagreement
            )
        except ValueError as exc:  # the evaluation's metadata unreadable: crashes and formats are still judged
            expected = Expectation("classification", 1.0, 0.0, f"unreadable evaluation metadata ({exc}): not judged")
        jobs_named = {role: plan.replay_job_name(wanted.endpoint, wanted.version, wanted.run, role) for role in ROLES}
        existing = {
            "content_type": content_type,
            "accept": answer_types.most_common(1)[0][0] if answer_types else content_type,
            "records": len(records),
            "read": read,
            "other_content_types": other_types,
            "per_shard": PER_SHARD,
            "shards": [s.name for s in parts],
            "jobs": jobs_named,
            "models": {"candidate": wanted.candidate_model, "champion": wanted.champion_model},
            "expectation": asdict(expected),
            "instance_type": wanted.instance,
            "window_hours": wanted.window_hours,
        }
        bucket.write_bytes(replay.bucket, replay.key("records.jsonl"), encode_records(records), "application/jsonlines")
        for part in parts:
            bucket.write_bytes(replay.bucket, replay.key(f"input/{part.name}"), part.body, part.content_type)
        # Written last: a retry that finds it knows the input is complete.
        bucket.write_bytes(replay.bucket, replay.key("plan.json"), json.dumps(existing).encode(), "application/json")
    for role in ROLES:
        jobs.create_transform(
            transform_request(
                replay,
                role=role,
                job_name=existing["jobs"][role],
                model_name=existing["models"][role],
                content_type=existing["content_type"],
                accept=existing["accept"],
                instance=existing["instance_type"],
                kms_key_arn=wanted.kms_key_arn,
                tags=wanted.tags,
            ),
        )
    return {
        "jobs": existing["jobs"],
        "records": existing["records"],
        "shards": len(existing["shards"]),
        "prefix": replay.uri(),
    }


def _plan(bucket: CaptureBucket, replay: Replay) -> dict[str, Any] | None:
    key = replay.key("plan.json")
    # Listed, not read blind: without s3:ListBucket on the key, S3 answers a missing key with 403, not 404.
    if key not in bucket.keys(replay.bucket, key):
        return None
    return dict(json.loads(bucket.read_bytes(replay.bucket, key)))


# ---------------------------------------------------------------- judging: poll, compare, write


@dataclass(frozen=True)
class Decision:
    """The replay's verdict for the Judge state: PROMOTE (passed or skipped), REJECT, or CONTINUE (jobs running)."""

    verdict: str
    explanation: str
    statistics: list[dict[str, Any]]


def decide(
    bucket: CaptureBucket,
    jobs: TransformJobs,
    replay: Replay,
    *,
    alpha: float,
    tolerance: float,
    max_slowdown: float,
    elapsed_minutes: float,
    max_minutes: int,
    log: Callable[[str, dict[str, Any]], None] = lambda _m, _e: None,
) -> Decision:
    """Both jobs ended: the candidate's answers judged against the champion's captured ones, written to S3."""
    found = _plan(bucket, replay)
    if found is None:
        raise InvalidInput(f"{replay.uri('plan.json')} does not exist: the replay stage was not entered")
    described = {role: jobs.describe_transform(found["jobs"][role]) or {} for role in ROLES}
    status = {role: str(described[role].get("TransformJobStatus", "Missing")) for role in ROLES}
    if any(s in RUNNING for s in status.values()):
        if elapsed_minutes < max_minutes:
            return Decision("CONTINUE", f"replay jobs running ({status['candidate']}, {status['champion']})", [])
        for role in ROLES:  # a transform job has no runtime limit of its own: it would run, and cost, on
            if status[role] == "InProgress":
                jobs.stop_transform(found["jobs"][role])
        return _skipped(bucket, replay, f"its jobs did not finish in {max_minutes} minutes", status)
    if status["champion"] != "Completed":
        why = described["champion"].get("FailureReason") or status["champion"]
        return _skipped(bucket, replay, f"the champion's own replay did not complete ({why})", status)
    records = decode_records(bucket.read_bytes(replay.bucket, replay.key("records.jsonl")))
    parts = shards(records, per_shard=int(found["per_shard"]))
    outcomes = [ShardOutcome(part.name, _answers(bucket, replay, part.name)) for part in parts]
    job_failure = None
    failure = str(described["candidate"].get("FailureReason") or f"the job ended {status['candidate']}")
    # No file transformed, and the job names none of them (a crash on load): it failed outright. A failure that names
    # an input file is a record's, judged per file (every file may have one).
    if (
        status["candidate"] != "Completed"
        and all(o.answers is None for o in outcomes)
        and not any(f"input/{part.name}" in failure for part in parts)
    ):
        job_failure = failure
    seconds = _seconds(described["candidate"]) if status["candidate"] == "Completed" else None
    champion_seconds = _seconds(described["champion"])
    if champion_seconds is None or champion_seconds < MIN_TIMED_SECONDS:
        seconds = champion_seconds = None
    result = judge(
        records,
        parts,
        outcomes,
        Expectation(**found["expectation"]),
        alpha=alpha,
        tolerance=tolerance,
        job_failure=job_failure,
        seconds=seconds,
        champion_seconds=champion_seconds,
        max_slowdown=max_slowdown,
    )
    judged = asdict(result)  # (by key: a RolloutStore's records() is no attribute to reach here, tools/aws_calls.py)
    counts = {name: judged[name] for name in ("verdict", "records", "failed", "malformed", "disagreed")}
    summary = counts | {
        "reasons": judged["reasons"],
        "statistics": judged["statistics"],
        "jobs": found["jobs"],
        "status": status,
        "candidate_failure": described["candidate"].get("FailureReason"),
        "expectation": found["expectation"],
        "examples": judged["examples"][:NOTIFIED_EXAMPLES],
    }
    bucket.write_bytes(replay.bucket, replay.key("result.json"), json.dumps(summary).encode(), "application/json")
    examples = "".join(json.dumps(example) + "\n" for example in judged["examples"]).encode()
    bucket.write_bytes(replay.bucket, replay.key("examples.jsonl"), examples, "application/jsonlines")
    log("replay judged", {k: v for k, v in summary.items() if k != "examples"})
    statistics = [
        {"metric": "replay", **counts, **{key: _finite(value) for key, value in judged["statistics"].items()}}
    ]
    if counts["verdict"] == "PASS":
        explanation = (
            f"Replay passed: the candidate answered {counts['records']} captured requests "
            f"({counts['disagreed']} disagreeing with the champion; {replay.uri('result.json')})"
        )
        return Decision("PROMOTE", explanation, statistics)
    return Decision("REJECT", "Rejected in replay: " + "; ".join(judged["reasons"]), statistics)


def _skipped(bucket: CaptureBucket, replay: Replay, why: str, status: dict[str, str]) -> Decision:
    summary = {"verdict": "SKIPPED", "reasons": [why], "status": status}
    bucket.write_bytes(replay.bucket, replay.key("result.json"), json.dumps(summary).encode(), "application/json")
    return Decision("PROMOTE", f"Replay skipped: {why}; the rollout goes on", [{"metric": "replay", "skipped": why}])


def _answers(bucket: CaptureBucket, replay: Replay, shard: str) -> tuple[str, ...] | None:
    """A shard's output lines (<S3OutputPath>/<file>.out), None when the job wrote none for it."""
    key = replay.key(f"candidate/{shard}.out")
    try:
        data = bucket.read_bytes(replay.bucket, key)
    except NotFound:
        return None
    return tuple(data.decode("utf-8", errors="replace").splitlines())


def _seconds(described: dict[str, Any]) -> float | None:
    started, ended = described.get("TransformStartTime"), described.get("TransformEndTime")
    if not isinstance(started, datetime) or not isinstance(ended, datetime):
        return None
    return max((ended - started).total_seconds(), 0.001)


def _finite(value: float) -> float | None:
    number = float(value)
    return float(f"{number:.6g}") if math.isfinite(number) else None


def rejection(result: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The reasons and the first examples result.json holds, for the notification."""
    reasons = [str(r) for r in result.get("reasons") or []]
    examples = [dict(e) for e in (result.get("examples") or [])[:NOTIFIED_EXAMPLES]]
    return reasons, examples


def read_result(bucket: Any, replay: Replay) -> dict[str, Any] | None:
    try:
        return dict(json.loads(bucket.read_bytes(replay.bucket, replay.key("result.json"))))
    except (NotFound, ValueError):
        return None
