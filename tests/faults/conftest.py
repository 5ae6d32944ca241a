"""The fault tests' rows, written once the session ends for tools/fault_table.py (one file per xdist worker)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROWS_DIR = Path(os.environ.get("SHEPHERD_FAULT_ROWS", Path(__file__).resolve().parents[2] / ".shepherd/faults"))
COLUMNS = ("fault", "injected at", "outcome", "requests failed", "bad answers served", "files lost", "notification")
_rows: list[dict[str, Any]] = []
# Faults the in-memory fakes cannot show (they need the real serving); each waits for an end-to-end test.
END_TO_END_ONLY = (
    ("candidate crashes on load", "model_fn in the serving container"),
    ("malformed invocation payload", "InvokeEndpoint (the container's 4XX/5XX)"),
    ("oversized invocation payload (> 6 MB)", "InvokeEndpoint"),
    ("training fails (the job)", "training job"),
)

Row = Callable[..., None]


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[Row]:
    """Record the test's row: fault, injected at, outcome, requests failed, bad answers, files lost, notification.

    Kept only when the test passed (an xfail's row says so instead)."""
    recorded: list[dict[str, Any]] = []

    def record(
        fault: str, injected_at: str, outcome: str, failed: object, bad: object, lost: object, told: str
    ) -> None:
        values = (fault, injected_at, outcome, failed, bad, lost, told)
        recorded.append(dict(zip(COLUMNS, (str(v) for v in values), strict=True)) | _where(request.node))

    yield record
    if _passed.get(request.node.nodeid):
        _rows.extend(recorded)


_passed: dict[str, bool] = {}


def _where(item: pytest.Item) -> dict[str, Any]:
    """The test and its place in the collection (the same in every xdist worker): the table's row order."""
    return {"test": item.nodeid, "order": item.session.items.index(item)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if call.when != "call":
        return report
    _passed[item.nodeid] = report.passed
    marker = item.get_closest_marker("xfail")
    if marker is not None and report.skipped:  # an expected failure: a bug the row names
        reason = str(marker.kwargs.get("reason", ""))
        name = item.nodeid.split("::")[-1].removeprefix("test_").replace("_", " ")
        _rows.append(dict.fromkeys(COLUMNS, "") | {"fault": name, "outcome": f"BUG (xfail): {reason}"} | _where(item))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _rows:
        return
    for index, (fault, where) in enumerate(END_TO_END_ONLY):
        _rows.append(
            dict.fromkeys(COLUMNS, "")
            | {
                "fault": fault,
                "injected at": where,
                "outcome": "end-to-end only",
                "test": f"~end-to-end/{fault}",
                "order": 10**6 + index,
            }
        )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    ROWS_DIR.mkdir(parents=True, exist_ok=True)
    (ROWS_DIR / f"rows-{worker}.json").write_text(json.dumps(sorted(_rows, key=lambda r: r["order"]), indent=1) + "\n")
