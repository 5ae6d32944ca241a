"""Where the fault table's rows go: one JSON file per pytest process, merged by tools/fault_table.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROWS_DIR = Path(os.environ.get("SHEPHERD_FAULT_ROWS", Path(__file__).resolve().parents[2] / ".shepherd/faults"))
COLUMNS = ("fault", "injected at", "outcome", "requests failed", "bad answers served", "files lost", "notification")


def row(
    fault: str, injected_at: str, outcome: str, failed: object, bad: object, lost: object, told: str
) -> dict[str, str]:
    """A table row, every cell text."""
    values = (fault, injected_at, outcome, failed, bad, lost, told)
    return dict(zip(COLUMNS, (str(v) for v in values), strict=True))


def write(name: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` (each with its "test" and "order") as rows-<name>-<worker>.json."""
    kept = sorted(rows, key=lambda r: r["order"])
    if not kept:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    ROWS_DIR.mkdir(parents=True, exist_ok=True)
    (ROWS_DIR / f"rows-{name}-{worker}.json").write_text(json.dumps(kept, indent=1) + "\n")
