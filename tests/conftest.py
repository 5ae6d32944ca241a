"""Settings for the whole suite."""

from __future__ import annotations

import pytest

# The tests that walk rollouts with live traffic and judge latency and errors against the virtual clock. Under
# pytest-xdist (make test) they run one after another on one worker, so two of them never share the CPU; the
# other tests spread over the other workers meanwhile.
ROLLOUT_MODULES = (
    "tests/e2e/test_demo.py",
    "tests/integration/test_workflow_rollout.py",
    "tests/integration/test_workflow_rollout_safety.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.nodeid.split("::", 1)[0] in ROLLOUT_MODULES:
            item.add_marker(pytest.mark.xdist_group("rollouts"))
