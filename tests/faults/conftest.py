"""The fault tests' rows, written once the session ends for tools/fault_table.py (one file per xdist worker)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from tests.faults import rows

_rows: list[dict[str, Any]] = []

Row = Callable[..., None]


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[Row]:
    """Record the test's row: fault, injected at, outcome, requests failed, bad answers, files lost, notification.

    Kept only when the test passed (an xfail's row says so instead)."""
    recorded: list[dict[str, Any]] = []

    def record(
        fault: str, injected_at: str, outcome: str, failed: object, bad: object, lost: object, told: str
    ) -> None:
        recorded.append(rows.row(fault, injected_at, outcome, failed, bad, lost, told) | _where(request.node))

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
        _rows.append(
            dict.fromkeys(rows.COLUMNS, "") | {"fault": name, "outcome": f"BUG (xfail): {reason}"} | _where(item)
        )
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    rows.write("fakes", _rows)
