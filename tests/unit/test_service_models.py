"""The layer's trimmed SageMaker and S3 service models (tools/trim_service_models.py) stay right.

They must be what the tool writes from the installed botocore (a botocore upgrade regenerates them),
and hold every operation the layer and the functions call: a missing one would be an
AttributeError in production, at the first call of a path no test ran.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*ROOT.glob("layers/shepherd/shepherd/**/*.py"), *ROOT.glob("functions/*/app.py")]


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("trim_service_models", ROOT / "tools/trim_service_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def called_operations(service: str) -> set[str]:
    """snake_case operations called as client("<service>").op(...), paginated ones included, plus the
    job operations shepherd.aws.sagemaker reaches with getattr."""
    found: set[str] = set()
    for path in SOURCES:
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call)):
                continue
            call = node.value
            name = getattr(call.func, "id", getattr(call.func, "attr", None))
            if name == "client" and call.args and getattr(call.args[0], "value", None) == service:
                found.add(node.attr)
            # a paginated call: client(service).get_paginator(<operation>)
            if name == "get_paginator" and isinstance(call.func, ast.Attribute):
                inner = call.func.value
                if (
                    isinstance(inner, ast.Call)
                    and getattr(inner.func, "id", None) == "client"
                    and getattr(inner.args[0], "value", None) == service
                ):
                    found.add(call.args[0].value)
        if service == "sagemaker" and path.name == "sagemaker.py":
            found |= set(re.findall(r'"((?:describe|create|stop)_(?:training|transform)_job)"', text))
    found.discard("get_paginator")
    return found


@pytest.mark.parametrize("service", ["sagemaker", "s3"])
def test_every_called_operation_is_in_the_trimmed_model(service: str) -> None:
    from botocore import xform_name

    operations = _tool().OPERATIONS[service]
    kept = {xform_name(op) for op in operations}
    called = called_operations(service)
    assert len(called) >= 5  # the scan still finds the calls
    assert called <= kept, f"add {sorted(called - kept)} to OPERATIONS in tools/trim_service_models.py"


def test_the_committed_models_are_what_the_tool_writes() -> None:
    for path, text in _tool().outputs().items():
        assert path.exists(), f"run tools/trim_service_models.py: {path.relative_to(ROOT)} is missing"
        assert path.read_text() == text, f"run tools/trim_service_models.py: {path.relative_to(ROOT)} is stale"


def test_the_layer_clients_use_the_trimmed_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from shepherd.aws import clients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.reset()
    try:
        sagemaker = clients.client("sagemaker")
        assert len(sagemaker.meta.service_model.operation_names) == len(_tool().OPERATIONS["sagemaker"])
        assert sagemaker.can_paginate("list_model_packages")  # paginators still come from botocore
    finally:
        clients.reset()
