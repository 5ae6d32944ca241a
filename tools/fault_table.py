"""Write the fault table (docs/FAULTS.md) from the rows the fault tests record.

The tests in tests/faults (on the in-memory fakes) and tests/integration/test_fault_end_to_end.py (on the local
cloud) write each session's rows to .shepherd/faults/rows-<kind>-<worker>.json (or to $SHEPHERD_FAULT_ROWS); this
tool merges them and replaces what follows the line `<!-- fault table -->`:

    .venv/bin/python tools/fault_table.py --run            # run both (~2 min), then write docs/FAULTS.md
    .venv/bin/python tools/fault_table.py --run --check    # exit 1 if docs/FAULTS.md's table is stale
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- fault table -->"
COLUMNS = ("fault", "injected at", "outcome", "requests failed", "bad answers served", "files lost", "notification")
NOTIFICATION_MAX = 160  # a table cell: the reason's first words; the test has the whole reason
TESTS = ("tests/faults", "tests/integration/test_fault_end_to_end.py")


def run_faults(rows: Path) -> None:
    """Run the fault tests with their rows written to ``rows`` (a fresh directory: no stale rows from another run)."""
    env = os.environ | {"SHEPHERD_FAULT_ROWS": str(rows)}
    command = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the fault tests failed (exit {done.returncode}): no table written")


def load(rows: Path) -> list[dict[str, str]]:
    """Every worker's rows, one per test (parametrized tests give one each), in collection order."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(rows.glob("rows-*.json")):
        for row in json.loads(path.read_text()):
            merged[row["test"]] = row
    if not merged:
        raise SystemExit(f"no rows in {rows}: run with --run, or run the fault tests first")
    return sorted(merged.values(), key=lambda row: (int(row.get("order", 0)), row["test"]))


def _cell(value: str, limit: int | None = None) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or "-"


def table(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_cell(row.get(c, ""), NOTIFICATION_MAX if c == "notification" else None) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(current: str | None, generated: str) -> str:
    """The document with everything after the marker line replaced by the table (a new document: the marker and it)."""
    if current is None:
        return f"{MARKER}\n\n{generated}"
    head, found, _ = current.partition(MARKER)
    if not found:
        raise SystemExit(f"no line {MARKER!r} in the document: add it where the table goes")
    return f"{head}{MARKER}\n\n{generated}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=Path, default=Path(os.environ.get("SHEPHERD_FAULT_ROWS", ROOT / ".shepherd/faults"))
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs/FAULTS.md")
    parser.add_argument("--run", action="store_true", help="run the fault tests first, into a fresh rows directory")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out's table differs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as fresh:
        rows = Path(fresh) if args.run else args.rows
        if args.run:
            run_faults(rows)
        generated = table(load(rows))
    current = args.out.read_text() if args.out.exists() else None
    wanted = render(current, generated)
    if args.check:
        if wanted != current:
            print(f"{args.out} is stale: run tools/fault_table.py --run", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(wanted)
    print(f"wrote {len(generated.splitlines()) - 2} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
