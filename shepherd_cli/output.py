"""What the commands print: stdout for scripts, stderr for people, times and model packages in one format."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

# Not on a terminal (a pipe, a file): lines as long as they need, so that names are never split.
UNWRAPPED_WIDTH = 4096
PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/(?P<group>[^/]+)/(?P<version>\d+)$"
)
PACKAGE_EXAMPLE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"


def console() -> Console:
    """Stdout, made per call so that the width follows $COLUMNS and the current stdout."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=UNWRAPPED_WIDTH if wide else None)


def note(message: str) -> None:
    """Guidance for a human, on stderr: stdout stays what scripts read."""
    Console(stderr=True, highlight=False).print(message)


def utc_time(value: Any) -> str:
    """A datetime or ISO 8601 text as `YYYY-MM-DD HH:MM:SS` in UTC; anything else as it is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value or "")
    try:
        return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def epoch_time(value: str | None) -> str:
    """Epoch seconds (as DynamoDB keeps a lease) as `YYYY-MM-DD HH:MM:SS` in UTC."""
    try:
        return datetime.fromtimestamp(float(value or ""), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value or "")


def package_parts(arn: str) -> tuple[str, str] | None:
    """(group, version) of a versioned model package ARN; None for anything else."""
    match = PACKAGE_ARN.match(arn or "")
    return (match["group"], match["version"]) if match else None


def package_label(arn: str | None) -> str:
    """`churn v2` for a package ARN; the text itself for anything else."""
    if not arn:
        return ""
    parts = package_parts(arn)
    return f"{parts[0]} v{parts[1]}" if parts else arn
