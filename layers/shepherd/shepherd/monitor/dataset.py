"""A dataset as Model Monitor reads it: ordered columns of raw string cells; readers for CSV, JSON Lines and capture.

Headerless columns are named ``_c0``, ``_c1``, … as Model Monitor names them; an empty cell is missing.
Capture records follow "Capture data from real-time endpoint" (SageMaker developer guide): ``encoding`` CSV or JSON
carries the payload as text, BASE64 as the base64 of its bytes, read by ``observedContentType``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Cell = str | None


@dataclass(frozen=True)
class Dataset:
    """Ordered columns of raw cells (None = missing); every column has the same length.

    ``unreadable`` counts the capture records left out because their request could not be read, so a report can
    say how many there were instead of dropping them silently.
    """

    columns: dict[str, list[str | None]] = field(default_factory=dict)
    unreadable: int = 0

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return list(self.columns)

    @property
    def item_count(self) -> int:
        """The number of rows."""
        return len(next(iter(self.columns.values()), []))


def _column_names(width: int, names: Sequence[str] | None) -> list[str]:
    given = list(names or [])
    return [given[i] if i < len(given) else f"_c{i}" for i in range(width)]


def _from_rows(rows: Sequence[Sequence[Cell]], names: Sequence[str] | None, *, width: int = 0) -> Dataset:
    """Positional rows as columns (at least ``width``); a short row's missing trailing cells are missing values."""
    width = max([width, *(len(row) for row in rows)])
    columns: dict[str, list[Cell]] = {name: [] for name in _column_names(width, names)}
    for row in rows:
        for i, cells in enumerate(columns.values()):
            cells.append(row[i] if i < len(row) else None)
    return Dataset(columns)


def _from_objects(objects: Sequence[dict[str, Any]]) -> Dataset:
    """Rows of name → value as columns, in order of first appearance; an absent key is a missing value."""
    order: dict[str, None] = {}
    for item in objects:
        order.update(dict.fromkeys(item))
    return Dataset({name: [_cell(item.get(name)) for item in objects] for name in order})


def _cell(value: Any) -> Cell:
    """A JSON value as a raw cell: numbers and strings as text, null or "" as missing, nested values as JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def _csv_rows(text: str) -> list[list[Cell]]:
    return [[cell if cell != "" else None for cell in row] for row in csv.reader(io.StringIO(text)) if row]


def read_csv(text: str, *, header: bool, names: Sequence[str] | None = None) -> Dataset:
    """Parse CSV text; without a header, columns are ``_c0``, ``_c1``, … (as Model Monitor names them) unless named."""
    rows = _csv_rows(text)
    if header and rows:
        first, rows = rows[0], rows[1:]
        names = [cell or f"_c{i}" for i, cell in enumerate(first)]
        return _from_rows(rows, names, width=len(names))
    return _from_rows(rows, names)


def read_jsonl(text: str, *, names: Sequence[str] | None = None) -> Dataset:
    """Parse JSON Lines of flat objects (or arrays, named like headerless CSV) into columns."""
    values = [json.loads(line) for line in text.splitlines() if line.strip()]
    return _from_values(values, names)


def _from_values(values: Sequence[Any], names: Sequence[str] | None) -> Dataset:
    if values and all(isinstance(value, dict) for value in values):
        return _from_objects(values)
    if all(isinstance(value, list) for value in values):
        return _from_rows([[_cell(cell) for cell in value] for value in values], names)
    raise ValueError("expected rows that are all JSON objects or all JSON arrays")


def _json_rows(payload: Any) -> list[Any]:
    """The rows of a JSON request: {"instances": rows}, a list of rows, one row (array or object)."""
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        payload = payload["instances"]
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and payload and all(isinstance(row, list | dict) for row in payload):
        return payload
    if isinstance(payload, list):
        return [payload]
    return [[payload]]


def _json_documents(text: str) -> list[Any]:
    """One JSON document, or JSON Lines; ValueError if neither."""
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _request_text(captured: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a captured payload, kind "csv" or "json"; ValueError if it is neither."""
    data, encoding = captured.get("data"), captured.get("encoding")
    content_type = str(captured.get("observedContentType") or "").split(";", 1)[0].strip().lower()
    if not isinstance(data, str):
        raise ValueError("capture record without data")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("capture data is not base64 of UTF-8 text") from exc
    elif encoding not in {"CSV", "JSON"}:
        raise ValueError(f"unknown capture encoding: {encoding!r}")
    if encoding == "CSV" or (encoding == "BASE64" and content_type.endswith("csv")):
        return "csv", data
    if encoding == "JSON" or content_type.endswith(("json", "jsonlines")):
        return "json", data
    raise ValueError(f"cannot read captured content type {content_type!r}")


def from_capture(records: Iterable[dict], *, names: Sequence[str] | None) -> Dataset:
    """The request features of SageMaker data-capture records (``captureData.endpointInput``), named by ``names``.

    A CSV request's positions take the baseline's feature names (``_cN`` beyond them); a JSON request's rows are
    arrays (positional, likewise) or objects (by key). A record without a readable input is counted in
    ``unreadable``.
    """
    positional: list[list[Cell]] = []
    keyed: list[dict[str, Any]] = []
    unreadable = 0
    for record in records:
        captured = (record.get("captureData") or {}).get("endpointInput")
        if not isinstance(captured, dict):
            unreadable += 1
            continue
        try:
            kind, text = _request_text(captured)
            if kind == "csv":
                positional.extend(_csv_rows(text))
                continue
            rows = [row for document in _json_documents(text) for row in _json_rows(document)]
        except ValueError:
            unreadable += 1
            continue
        for row in rows:
            if isinstance(row, dict):
                keyed.append(row)
            else:
                positional.append([_cell(cell) for cell in row])
    named = [dict(zip(_column_names(len(row), names), row, strict=True)) for row in positional]
    dataset = _from_rows(positional, names) if not keyed else _from_objects([*named, *keyed])
    return Dataset(dataset.columns, unreadable=unreadable)
