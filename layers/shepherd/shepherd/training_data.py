"""A dataset's CSV files checked before a (paid) training job starts; every refusal names the S3 key and the line.

A bounded scan, streamed line by line from ranged reads (no file is held in memory): the limits and what
is checked are in docs/PIPELINES.md, "Training data checked before training".
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from shepherd.errors import InvalidInput
from shepherd.objects import DataObject

HEAD_BYTES = 64 * 2**10  # every CSV file: its header and first rows
FILE_SCAN_BYTES = 8 * 2**20  # at most this much of one file
TOTAL_SCAN_BYTES = 64 * 2**20  # at most this much of the dataset; later files get their HEAD_BYTES only
MAX_LINE_CHARS = 1 * 2**20  # a longer "line" is not CSV (csv's own field limit is 128 KiB)
# ASCII only, as the batch check: a field that is a number makes the first row a record, not a header.
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", re.ASCII)


class TrainingDataError(InvalidInput):
    """A training file the job would fail on; the message is one line: ``<key> line <n>: <problem>``."""


class DataFiles(Protocol):
    """Reads an object version's first bytes as a stream of chunks (shepherd.aws.training_runs)."""

    def read_head(self, bucket: str, key: str, version_id: str | None, limit: int) -> Iterable[bytes]: ...


@dataclass(frozen=True)
class DataCheck:
    """What the scan read: files checked, rows seen, and the files it read only in part."""

    files: int
    rows: int
    columns: list[str] | None  # the header all files share; None when they have none
    partly_read: list[str]


@dataclass(frozen=True)
class _Shape:
    """The first row of a file: its fields, and whether it is a header."""

    key: str
    fields: list[str]
    header: bool


def is_csv(key: str) -> bool:
    return key.lower().endswith(".csv")


def check_dataset(
    files: DataFiles, bucket: str, objects: list[DataObject], *, target_column: str | None = None
) -> DataCheck:
    """Check every CSV among a dataset's objects, in key order; raise TrainingDataError at the first problem."""
    budget = TOTAL_SCAN_BYTES
    reference: _Shape | None = None
    rows = checked = 0
    partly: list[str] = []
    for found in objects:
        if not is_csv(found.key):
            continue
        if found.size == 0:
            raise TrainingDataError(f"{found.key}: the file is empty (0 bytes)")
        limit = min(found.size, max(HEAD_BYTES, min(FILE_SCAN_BYTES, budget)))
        budget -= min(limit, budget)
        complete = limit >= found.size
        if not complete:
            partly.append(found.key)
        chunks = files.read_head(bucket, found.key, found.version_id, limit)
        shape, count = _check_file(found.key, _lines(found.key, chunks, complete=complete), complete=complete)
        _check_shape(shape, reference, target_column)
        reference = reference or shape
        rows += count
        checked += 1
    columns = reference.fields if reference and reference.header else None
    return DataCheck(files=checked, rows=rows, columns=columns, partly_read=partly)


def _check_file(key: str, lines: Iterator[tuple[int, str]], *, complete: bool) -> tuple[_Shape, int]:
    """The file's first row and its number of rows; every row must have as many fields as the first."""
    first: _Shape | None = None
    rows = 0
    held: tuple[int, list[str]] | None = None  # a read cut short may end inside a quoted field: its last row waits
    for line, row in _rows(key, lines):
        if held is not None:
            rows += _check_row(key, first, *held)
        if first is None:
            # Names as pandas reads them: not stripped, so " target" is not "target".
            first = _Shape(key=key, fields=row, header=not any(_NUMBER.match(f) for f in row))
            rows += 0 if first.header else 1
            continue
        held = (line, row)
    if held is not None and complete:
        rows += _check_row(key, first, *held)
    if first is None:
        raise TrainingDataError(f"{key}: no rows, only blank lines")
    if rows == 0 and complete:
        raise TrainingDataError(f"{key} line 1: a header and no rows")
    return first, rows


def _check_row(key: str, first: _Shape | None, line: int, row: list[str]) -> int:
    assert first is not None  # a held row always follows the first
    if len(row) != len(first.fields):
        what = "the header has" if first.header else "line 1 has"
        raise TrainingDataError(f"{key} line {line}: {_count(len(row), 'field')}, {what} {len(first.fields)}")
    return 1


def _check_shape(shape: _Shape, reference: _Shape | None, target: str | None) -> None:
    """The target column in the header; the same columns as the first file (every channel feeds one model)."""
    if target is not None and not shape.header:
        raise TrainingDataError(
            f"{shape.key} line 1: no header row naming {target!r} (training.target_column): line 1 holds numbers"
        )
    if target is not None and target not in shape.fields:
        raise TrainingDataError(
            f"{shape.key} line 1: no column {target!r} (training.target_column); the header has {_listed(shape.fields)}"
        )
    if reference is None or (shape.fields == reference.fields and shape.header == reference.header):
        return
    if shape.header != reference.header:
        problem = (
            f"a header row, but {reference.key} starts with a record"
            if shape.header
            else f"no header row, but {reference.key} has one"
        )
    elif not shape.header:
        problem = f"{_count(len(shape.fields), 'field')}, {reference.key} has {len(reference.fields)}"
    else:
        missing = [c for c in reference.fields if c not in shape.fields]
        extra = [c for c in shape.fields if c not in reference.fields]
        if missing or extra:
            parts = ([f"no {_listed(missing)}"] if missing else []) + ([f"extra {_listed(extra)}"] if extra else [])
            problem = f"the header differs from {reference.key}'s: {', '.join(parts)}"
        else:
            problem = f"the columns are in another order than in {reference.key}"
    raise TrainingDataError(f"{shape.key} line 1: {problem}")


def _rows(key: str, lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV record, quoted line breaks included."""
    numbers: list[int] = []

    def tracked() -> Iterator[str]:
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(tracked())
    while True:
        start = len(numbers) + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise TrainingDataError(f"{key} line {start}: not readable as CSV ({exc})") from None
        if row is None:
            return
        if len(row) <= 1 and not "".join(row).strip():
            continue  # blank lines: pandas skips them too
        yield start, row


def _lines(key: str, chunks: Iterable[bytes], *, complete: bool) -> Iterator[tuple[int, str]]:
    """Numbered text lines of a UTF-8 stream (a byte order mark dropped); a cut-off last line is left out."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    number = 0
    first = True
    for chunk in chunks:
        if first and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[len(codecs.BOM_UTF8) :]  # noqa: PLW2901 -- the one chunk that may carry it
        first = False
        if b"\x00" in chunk:
            line = number + pending.count("\n") + chunk[: chunk.index(b"\x00")].count(b"\n") + 1
            raise TrainingDataError(f"{key} line {line}: a NUL byte; this looks like a binary file, not CSV")
        try:
            pending += decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            line = number + pending.count("\n") + chunk[: exc.start].count(b"\n") + 1
            raise TrainingDataError(f"{key} line {line}: not UTF-8 text; save the file as UTF-8") from None
        *complete_lines, pending = pending.split("\n")
        for text in complete_lines:
            number += 1
            yield number, text + "\n"
        if len(pending) > MAX_LINE_CHARS:
            raise TrainingDataError(f"{key} line {number + 1}: longer than {MAX_LINE_CHARS} characters")
    if complete:
        try:
            pending += decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise TrainingDataError(f"{key} line {number + 1}: not UTF-8 text; save the file as UTF-8") from None
        if pending:
            yield number + 1, pending


def _listed(columns: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
