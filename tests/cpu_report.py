"""CPU seconds per test and per fixture setup, of the whole process tree: `pytest --cpu-report`.

The suite shares a CPU-bound machine, so wall time measures the neighbours; CPU seconds of the pytest process and
its descendants (local cloud threads, Lambda, model and training workers) measure the test. docs/TOOLS.md says how
to read the report. Linux only (/proc); a process that outlives its parent and is adopted by init is not counted.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17 (proc(5))
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and every live descendant, with the children each has reaped."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p)) is not None}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


class CpuReport:
    """Records CPU and wall seconds per test phase and per fixture setup; writes one JSON file per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.tests: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.fixtures: list[dict[str, Any]] = []
        self._last: tuple[float, float] | None = None
        self._fixture_cpu = 0.0  # reported per fixture, so left out of the test that set it up

    def _measure(self) -> tuple[float, float]:
        return tree_cpu(os.getpid()), time.monotonic()

    def _phase(self, item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
        # a phase starts where the item's previous one ended: one /proc scan (about 4 ms) per phase
        cpu, wall = self._last if phase != "setup" and self._last else self._measure()
        fixtures = self._fixture_cpu
        try:
            return (yield)
        finally:
            cpu_after, wall_after = self._last = self._measure()
            used = cpu_after - cpu - (self._fixture_cpu - fixtures)
            record = self.tests[item.nodeid]
            record[f"{phase}_cpu"] += used
            record["cpu"] += used
            record["wall"] += wall_after - wall

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._phase(item, "setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._phase(item, "call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._phase(item, "teardown"))

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        # pytest sets up a fixture's dependencies before this hook: the figure is the fixture's own
        if fixturedef.scope == "function":
            return (yield)
        cpu, wall = self._measure()
        try:
            return (yield)
        finally:
            cpu_after, wall_after = self._measure()
            self._fixture_cpu += cpu_after - cpu
            self.fixtures.append(
                {
                    "fixture": fixturedef.argname,
                    "scope": fixturedef.scope,
                    "for": request.node.nodeid,
                    "worker": self.worker,
                    "cpu": round(cpu_after - cpu, 2),
                    "wall": round(wall_after - wall, 2),
                }
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        tests: list[dict[str, Any]] = [
            {"test": nodeid, "worker": self.worker, **{k: round(v, 2) for k, v in record.items()}}
            for nodeid, record in self.tests.items()
        ]
        part = self.path.with_name(f"{self.path.stem}.{self.worker}.json")
        if hasattr(session.config, "workerinput"):  # an xdist worker: its controller merges the parts
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_text(json.dumps({"tests": tests, "fixtures": self.fixtures}))
            return
        parts = [json.loads(p.read_text()) for p in self.path.parent.glob(f"{self.path.stem}.gw*.json")]
        for p in self.path.parent.glob(f"{self.path.stem}.gw*.json"):
            p.unlink()
        for loaded in parts:
            tests += loaded["tests"]
            self.fixtures += loaded["fixtures"]
        modules: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for test in tests:
            module = modules[test["test"].split("::", 1)[0]]
            module["cpu"] += test["cpu"]
            module["wall"] += test["wall"]
            module["tests"] += 1
        report: dict[str, Any] = {
            "total_cpu": round(sum(t["cpu"] for t in tests), 1),
            "modules": sorted(
                ({"module": m, **{k: round(v, 1) for k, v in r.items()}} for m, r in modules.items()),
                key=lambda m: -m["cpu"],
            ),
            "tests": sorted(tests, key=lambda t: -t["cpu"]),
            "fixtures": sorted(self.fixtures, key=lambda f: -f["cpu"]),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(report, indent=1) + "\n")
        self.summary = report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = getattr(self, "summary", None)
        if report is None:
            return
        write = terminalreporter.write_line
        terminalreporter.section(f"CPU seconds (process tree), {report['total_cpu']} in all: {self.path}")
        write("tests (setup without the module and session fixtures, which follow):")
        for test in report["tests"][:15]:
            write(f"{test['cpu']:8.1f} cpu {test['wall']:8.1f} wall  {test['test']}")
        for fixture in report["fixtures"][:5]:
            name = f"fixture {fixture['fixture']} ({fixture['worker']})"
            write(f"{fixture['cpu']:8.1f} cpu {fixture['wall']:8.1f} wall  {name}")
