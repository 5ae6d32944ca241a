"""Write the CloudFormation that SAM's transform makes of a template, for checkov (`make lint`).

Scanned as SAM, the functions' and state machines' generated IAM roles go unchecked; SAM's transform keeps a
function's Metadata, so the checkov suppressions written on it in template.yaml still apply.
Usage: python tools/translate_template.py template.yaml OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from localcloud.template import load_template

REGION, STACK = "us-east-1", "shepherd"


def translate(template: Path) -> dict[str, Any]:
    """The template as CloudFormation, with the parameters' defaults."""
    return load_template(template, {}, REGION, STACK).body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(translate(args.template), indent=1) + "\n")


if __name__ == "__main__":
    main()
