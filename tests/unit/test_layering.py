"""The Lambda handlers keep the application's layering: lint-imports checks the packages, this the handlers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# What a handler may not import: the emulator and moto (never deployed), and AWS's SDK, which only the adapters in
# shepherd.aws use (a handler is parse -> domain step(ports) -> return).
FORBIDDEN = ("localcloud", "moto", "boto3", "botocore")


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(FUNCTIONS.glob("*/*.py")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_handler_imports_neither_the_emulator_nor_the_aws_sdk(path):
    bad = sorted(n for n in _imported(path) if n.split(".", 1)[0] in FORBIDDEN)
    assert not bad, f"{path.relative_to(FUNCTIONS.parent)} imports {bad}"


def test_the_check_sees_plain_and_from_imports(tmp_path):
    handler = tmp_path / "app.py"
    handler.write_text("import boto3\nfrom localcloud.server import LocalCloud\nfrom . import sibling\n")
    assert _imported(handler) == {"boto3", "localcloud.server"}
