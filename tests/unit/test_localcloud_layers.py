"""The local cloud's modules import one another without a cycle, counting type-only and function-local imports.

A cycle is how a service locator shows: a subsystem that reaches through the whole cloud imports the server back,
if only under TYPE_CHECKING or inside a function. Subsystems take what they use (localcloud.services) instead;
lint-imports holds the layers, this check the whole package, imports of every kind included.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "localcloud"


def _modules(package: Path) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module's imports of the package's modules: every import statement, wherever it stands."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        parent = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(parent[: len(parent) - node.level + 1] + ([node.module] if node.module else []))
                # `from a import b` imports the module a.b if there is one, else a name of a
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                imported = [submodule if submodule in modules else base for submodule in submodules]
            else:
                continue
            graph[name].update(target for target in imported if target in modules and target != name)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        for target in graph[pending.pop()] - seen:
            seen.add(target)
            pending.append(target)
    return seen


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted."""
    reach = {name: _reachable(graph, name) for name in graph}
    components = {frozenset(m for m in reach[name] if name in reach[m]) for name in graph if name in reach[name]}
    return sorted(sorted(component) for component in components)


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_local_cloud_s_modules_import_one_another_without_a_cycle():
    assert import_cycles(import_graph(PACKAGE)) == []


def test_the_check_sees_a_cycle_closed_by_a_type_only_and_a_function_local_import(tmp_path):
    # Given a module that imports another only for its types, which imports the first inside a function
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "server.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.worker import Worker\n",
            "sub/__init__.py": "",
            "sub/worker.py": "def run():\n    from .. import server\n",
            "leaf.py": "import pkg.server\n",
        },
    )
    # When the cycles are looked for / Then the two are one, and the module that only imports them is in none
    assert import_cycles(import_graph(package)) == [["pkg.server", "pkg.sub.worker"]]


def test_a_package_that_imports_its_own_modules_is_no_cycle(tmp_path):
    # Given a package whose __init__ imports its modules, which import each other one way
    package = _package(
        tmp_path,
        {
            "__init__.py": "from pkg import alarms, store\n",
            "alarms.py": "from pkg.store import put\n",
            "store.py": "def put():\n    pass\n",
        },
    )
    # When the cycles are looked for / Then there is none
    assert import_cycles(import_graph(package)) == []
