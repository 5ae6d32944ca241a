"""Settings for the whole suite."""

from __future__ import annotations

import pytest

# The tests that need CPU to keep time: rollouts with live traffic, judged on latency and errors against the
# virtual clock, and autoscaling driven by a request rate. Under pytest-xdist (make test) they run one after
# another on one worker, so two of them never share the CPU; the other tests spread over the other workers.
SERIAL_MODULES = (
    "tests/e2e/test_demo.py",
    "tests/integration/test_seed_cli_workflows.py",
    "tests/integration/test_workflow_rollout.py",
    "tests/integration/test_workflow_rollout_quality.py",
    "tests/integration/test_workflow_rollout_safety.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.nodeid.split("::", 1)[0] in SERIAL_MODULES:
            item.add_marker(pytest.mark.xdist_group("keeps-time"))
