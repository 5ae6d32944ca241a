"""Settings for the whole suite."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

# The tests that need CPU to keep time: the demo (a user's run, its own local cloud, judged on live traffic) and
# autoscaling driven by a request rate. Under pytest-xdist (make test) they run one after another on one worker,
# so the two never share the CPU; the other tests spread over the workers. The rollout tests are not among them:
# their verdicts do not depend on the machine's load (tests/integration/workflow.py, JUDGE).
SERIAL_MODULES = (
    "tests/e2e/test_demo.py",
    "tests/integration/test_seed_cli_workflows.py",
)
SERIAL_GROUP = "keeps-time"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-report",
        metavar="PATH",
        nargs="?",
        const=".shepherd/test-cpu.json",
        help="write CPU seconds per test and fixture (the process tree) to PATH (.shepherd/test-cpu.json)",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("cpu_report")
    if path:
        from tests.cpu_report import CpuReport

        config.pluginmanager.register(CpuReport(Path(path)), "cpu-report")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None]:
    serial = [item for item in items if item.nodeid.split("::", 1)[0] in SERIAL_MODULES]
    if config.pluginmanager.hasplugin("xdist"):
        for item in serial:
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUP))
    yield
    if getattr(config.option, "loadgroup", False):
        # pytest-xdist 3.8 names the group on the nodeid as item._nodeid, which pytest 9 no longer reads (the nodeid
        # is item._id): without this, --dist loadgroup schedules as --dist load and the group spreads over workers.
        for item in serial:
            if not item.nodeid.endswith(f"@{SERIAL_GROUP}"):
                item._id = type(item._id).parse(f"{item.nodeid}@{SERIAL_GROUP}")


# Hypothesis fails an example that takes over 200 ms by default: on a loaded machine that measures the machine.
settings.register_profile("shepherd", deadline=None)
settings.load_profile("shepherd")
