"""Batch transform's records: DataProcessing's JSONPath subset, CSV and JSON records, one output per input record."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from localcloud.sagemaker.inference import CSV, JSON, media_type

JSON_TYPES = {JSON, "application/jsonlines", "application/json-lines", "application/x-jsonlines"}


class JobFailed(Exception):
    """Ends the job as Failed with this FailureReason (already worded as SageMaker words it)."""


# ---------------------------------------------------------------------------------------------- JSONPath subset


_STEP = re.compile(r"\.(?P<name>[A-Za-z_][\w-]*|\*)|\[(?P<bracket>[^\]]*)\]")


def compile_jsonpath(expression: str) -> list[tuple[str, Any]]:
    """The operators SageMaker documents for DataProcessing: $, .name, ['a','b'], [*], [i,j], [a:b].

    Raises ValueError on anything else, so a filter never silently selects the wrong thing.
    """
    expr = expression.strip()
    if not expr.startswith("$"):
        raise ValueError(f"JSONPath {expression!r} must start with $")
    steps: list[tuple[str, Any]] = []
    position = 1
    while position < len(expr):
        match = _STEP.match(expr, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {expression!r} at {expr[position:]!r}")
        position = match.end()
        if match["name"] is not None:
            steps.append(("all", None) if match["name"] == "*" else ("name", match["name"]))
            continue
        inside = match["bracket"].strip()
        if inside == "*":
            steps.append(("all", None))
        elif inside[:1] in "'\"":
            names = [part.strip()[1:-1] for part in inside.split(",")]
            steps.append(("names", names))
        else:
            items: list[int | slice] = []
            for raw in inside.split(","):
                part = raw.strip()
                if ":" in part:
                    start, _, end = part.partition(":")
                    items.append(slice(int(start) if start.strip() else None, int(end) if end.strip() else None))
                else:
                    items.append(int(part))
            if not items:
                raise ValueError(f"empty brackets in JSONPath {expression!r}")
            steps.append(("select", items))
    return steps


def apply_jsonpath(steps: list[tuple[str, Any]], value: Any) -> Any:
    for kind, arg in steps:
        if kind == "name":
            if not isinstance(value, dict) or arg not in value:
                raise ValueError(f"the record has no attribute {arg!r}")
            value = value[arg]
        elif kind == "names":
            if not isinstance(value, dict):
                raise ValueError(f"the record is not a JSON object, cannot select {arg}")
            missing = [n for n in arg if n not in value]
            if missing:
                raise ValueError(f"the record has no attribute {missing[0]!r}")
            value = value[arg[0]] if len(arg) == 1 else {n: value[n] for n in arg}
        elif kind == "all":
            value = list(value.values()) if isinstance(value, dict) else value
        else:
            if not isinstance(value, list):
                raise ValueError("the record is not an array, cannot select indexes")
            if len(arg) == 1 and isinstance(arg[0], int):
                index = arg[0]
                if not -len(value) <= index < len(value):
                    raise ValueError(f"index {index} is outside the record's {len(value)} values")
                value = value[index]
                continue
            selected: list[Any] = []
            for item in arg:
                if isinstance(item, slice):
                    selected.extend(value[item])
                else:
                    if not -len(value) <= item < len(value):
                        raise ValueError(f"index {item} is outside the record's {len(value)} values")
                    selected.append(value[item])
            value = selected
    return value


# ---------------------------------------------------------------------------------------------- records


class RecordCodec:
    """CSV or JSON records: parse a line into a JSON value for JSONPath, and write it back."""

    def __init__(self, content_type: str | None) -> None:
        kind = media_type(content_type)
        self.csv = kind == CSV
        self.supported = self.csv or kind in JSON_TYPES

    def parse(self, line: str) -> Any:
        if self.csv:
            return next(csv.reader([line]), [])
        return json.loads(line)

    def dump(self, value: Any) -> str:
        if self.csv:
            fields = value if isinstance(value, list) else [value]
            stream = io.StringIO()
            csv.writer(stream, lineterminator="").writerow(
                [json.dumps(f, separators=(",", ":")) if isinstance(f, dict | list) else f for f in fields]
            )
            return stream.getvalue()
        return json.dumps(value, separators=(",", ":"))


def split_response(body: bytes, count: int, accept: str) -> list[str]:
    """One output per request record: a JSON array of `count` items, else `count` lines."""
    text = body.decode("utf-8")
    if count == 1:
        return [text.rstrip("\n")]
    if media_type(accept) in JSON_TYPES:
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            if isinstance(parsed, list) and len(parsed) == count:
                return [json.dumps(item, separators=(",", ":")) for item in parsed]
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    if len(lines) != count:
        raise JobFailed(
            f"ClientError: the model returned {len(lines)} records for a request of {count} records, so the "
            "output cannot be joined with the input (JoinSource/OutputFilter need one output per record)"
        )
    return lines


def joined_record(source: Any, output: Any, is_csv: bool) -> Any:
    """JoinSource Input: CSV appends the output's values; JSON adds SageMakerOutput (or wraps both)."""
    if is_csv:
        return [*source, *(output if isinstance(output, list) else [output])]
    if isinstance(source, dict):
        return {**source, "SageMakerOutput": output}
    return {"SageMakerInput": source, "SageMakerOutput": output}


def line_records(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Records of SplitType Line (\\n or \\r\\n); blank lines are no records."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            record = line.rstrip(b"\r")
            if record:
                yield record
    rest = rest.rstrip(b"\r")
    if rest:
        yield rest
