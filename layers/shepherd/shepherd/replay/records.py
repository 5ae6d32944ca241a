"""The champion's captured requests and answers, a stratified sample of them, and the Batch Transform input.

Capture records follow "Capture data from real-time endpoint" (SageMaker developer guide): one JSON object a line,
``captureData.endpointInput`` and ``endpointOutput`` each with ``data``, ``encoding`` (CSV, JSON or BASE64) and
``observedContentType``; ``eventMetadata`` with ``eventId``, ``inferenceTime`` and, when the caller gave one,
``inferenceId``. A transform job with SplitType=Line sends each line of its input as one request
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformInput.html), so a shard holds one record a
line, and a request whose body holds a newline cannot be replayed alone.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from shepherd.objects import json_objects
from shepherd.rollout.quality import decoded, inference_epoch

HOUR = 3600
# The file suffix of a shard per content type, so that the transform's output (<name>.out) says what it holds.
SUFFIXES = {"text/csv": ".csv", "application/json": ".jsonl", "application/jsonlines": ".jsonl"}


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured request and the champion's answer (SageMaker data capture, InputAndOutput)."""

    event_id: str  # eventMetadata.inferenceId when present, else eventMetadata.eventId
    epoch: float  # eventMetadata.inferenceTime as epoch seconds
    content_type: str  # captureData.endpointInput.observedContentType
    body: str  # the request, decoded
    answer: str  # the champion's answer (captureData.endpointOutput), decoded


def captured(lines: Iterable[str]) -> Iterator[Captured]:
    """Capture JSON lines -> records; lines without both input and output, or unparsable, are skipped (the caller
    counts lines vs records)."""
    for record in json_objects(lines):
        metadata = record.get("eventMetadata")
        data = record.get("captureData")
        if not isinstance(metadata, dict) or not isinstance(data, dict):
            continue
        request, response = data.get("endpointInput"), data.get("endpointOutput")
        event_id = metadata.get("inferenceId") or metadata.get("eventId")
        epoch = inference_epoch(metadata.get("inferenceTime"))
        if not isinstance(request, dict) or not isinstance(response, dict) or not isinstance(event_id, str):
            continue
        body, answer = decoded(request), decoded(response)
        content_type = request.get("observedContentType")
        if epoch is None or body is None or answer is None or not isinstance(content_type, str):
            continue
        yield Captured(event_id, epoch, content_type, body, answer)


def choose(records: Sequence[Captured], size: int, *, seed: str) -> list[Captured]:
    """At most ``size`` records, stratified across the hours they were captured in (each hour its share, by largest
    remainders), the same for the same seed (use the rollout run as seed), in capture order."""
    if size < 0:
        raise ValueError(f"a sample size is at least 0, not {size}")
    if len(records) <= size:
        return sorted(records, key=lambda r: r.epoch)
    by_hour: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_hour.setdefault(math.floor(record.epoch / HOUR), []).append(index)
    quotas = _shares(size, {hour: len(members) for hour, members in by_hour.items()})
    chosen: list[int] = []
    for hour, members in sorted(by_hour.items()):
        # One generator per hour: an hour's sample does not change when another hour's records do.
        chosen.extend(random.Random(f"{seed}/{hour}").sample(members, quotas[hour]))  # noqa: S311 (not security)
    return [records[i] for i in sorted(chosen, key=lambda i: (records[i].epoch, i))]


def _shares(size: int, counts: dict[int, int]) -> dict[int, int]:
    """``size`` split across the strata in proportion to their counts (Hamilton's largest remainders; ties go to the
    earlier stratum)."""
    total = sum(counts.values())
    exact = {key: size * count / total for key, count in counts.items()}
    quotas = {key: math.floor(value) for key, value in exact.items()}
    left = size - sum(quotas.values())
    for key in sorted(exact, key=lambda k: (quotas[k] - exact[k], k))[:left]:
        quotas[key] += 1
    return quotas


@dataclass(frozen=True, slots=True)
class Shard:
    """One Batch Transform input file: line i is the request of the record ``event_ids[i]``."""

    name: str  # file name, e.g. "part-0003.csv" / ".jsonl"
    content_type: str  # the records' content type (all records of a shard share it)
    body: bytes  # one record per line (Batch Transform SplitType=Line)
    event_ids: tuple[str, ...]  # line i of the file is event_ids[i]


def line(record: Captured) -> str | None:
    """The record's request as one line of a shard, or None where it cannot be one: a JSON body is written compact
    (its whitespace means nothing), any other body keeps its bytes and must hold no line break but a last one."""
    body = record.body
    if _is_json(record.content_type):
        try:
            return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            pass  # not JSON after all: replayed as it came, if it is one line
    body = body.removesuffix("\n").removesuffix("\r")
    return None if not body or len(body.splitlines()) != 1 else body


def left_out(records: Sequence[Captured]) -> list[Captured]:
    """The records :func:`shards` cannot replay: requests of several lines (several records in one request, or
    text that a line split would cut)."""
    return [record for record in records if line(record) is None]


def shards(records: Sequence[Captured], *, per_shard: int = 100) -> list[Shard]:
    """The Batch Transform input: records split into files of at most ``per_shard`` lines, one content type a file,
    so a crash on some inputs is narrowed to a file (a transform job fails as a whole when one record fails).
    Records :func:`left_out` names are not in any shard; :func:`~shepherd.replay.verdict.judge` counts them."""
    if per_shard < 1:
        raise ValueError(f"a shard holds at least one record, not {per_shard}")
    groups: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        text = line(record)
        if text is not None:
            groups.setdefault(_media_type(record.content_type), []).append((record.event_id, text))
    out: list[Shard] = []
    for content_type, members in groups.items():
        suffix = SUFFIXES.get(content_type, ".txt")
        for start in range(0, len(members), per_shard):
            part = members[start : start + per_shard]
            body = "".join(f"{text}\n" for _, text in part).encode("utf-8")
            name = f"part-{len(out):04d}{suffix}"
            out.append(Shard(name, content_type, body, tuple(event_id for event_id, _ in part)))
    return out


def _media_type(content_type: str) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``: parameters do not make another format."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    return _media_type(content_type).endswith(("json", "jsonlines"))
