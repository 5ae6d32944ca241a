"""tools/fault_table.py: the table it writes after the marker line, and nothing else of the document."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fault_table", ROOT / "tools/fault_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROW = {
    "fault": "candidate | 5XX",
    "injected at": "ab 10%",
    "outcome": "rolled back",
    "requests failed": "0",
    "bad answers served": "12",
    "files lost": "-",
    "notification": "Rolled back churn v2\\non churn: " + "x" * 300,
}


def test_the_table_replaces_what_follows_the_marker_and_keeps_the_rest(tmp_path: Path) -> None:
    fault_table = tool()
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows/rows-gw1.json").write_text(json.dumps([ROW | {"test": "a-second", "order": 2}]))
    (tmp_path / "rows/rows-gw0.json").write_text(json.dumps([ROW | {"test": "b-first", "fault": "first", "order": 1}]))
    out = tmp_path / "FAULTS.md"
    out.write_text("# Faults\n\nWhy.\n\n<!-- fault table -->\n| old | table |\n")
    assert fault_table.main(["--rows", str(tmp_path / "rows"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Faults\n\nWhy.\n\n<!-- fault table -->\n\n| fault | injected at |")
    lines = text.splitlines()
    assert [line.split(" | ")[0] for line in lines[-2:]] == ["| first", "| candidate \\| 5XX"]
    assert "old" not in text
    assert lines[-1].endswith("… |")  # a long reason is cut in the cell
    assert fault_table.main(["--rows", str(tmp_path / "rows"), "--out", str(out), "--check"]) == 0
    out.write_text(text.replace("rolled back", "promoted"))
    assert fault_table.main(["--rows", str(tmp_path / "rows"), "--out", str(out), "--check"]) == 1


def test_a_document_without_the_marker_is_left_alone(tmp_path: Path) -> None:
    fault_table = tool()
    (tmp_path / "rows-main.json").write_text(json.dumps([ROW | {"test": "a"}]))
    out = tmp_path / "FAULTS.md"
    out.write_text("# Faults\n")
    with pytest.raises(SystemExit, match="fault table"):
        fault_table.main(["--rows", str(tmp_path), "--out", str(out)])
    assert out.read_text() == "# Faults\n"
