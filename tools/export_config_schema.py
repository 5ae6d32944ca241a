"""Write schemas/shepherd.schema.json, the JSON Schema of models/<model>/shepherd.yaml, from shepherd.config.

Editors (VS Code's YAML extension, JetBrains) use it for completion and checks: see docs/CONFIG.md.
A unit test fails when the committed file differs from a fresh export, so run this after changing
shepherd/config/models.py.

Usage: python tools/export_config_schema.py [--check] [--out PATH]
Exit status: 0 when written (or, with --check, up to date); 1 when --check finds it stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shepherd.config import render_json_schema

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "schemas" / "shepherd.schema.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="only compare; do not write")
    args = parser.parse_args(argv)
    fresh = render_json_schema()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != fresh:
            sys.stderr.write(f"{args.out} is stale: run python tools/export_config_schema.py\n")
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
