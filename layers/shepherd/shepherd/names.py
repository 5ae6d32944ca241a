"""Names AWS accepts, built the same way everywhere: a readable part and a digest that makes it unique."""

from __future__ import annotations

import hashlib
import re

# What each service allows in a name (anything else becomes "-").
EXECUTION_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")  # Step Functions executions
SAGEMAKER_UNSAFE = re.compile(r"[^a-zA-Z0-9-]+")  # SageMaker jobs, models, endpoint configs
ALPHANUMERIC_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")


def digest(*identity: str, length: int) -> str:
    """The first ``length`` hex characters of the SHA-256 of ``identity`` (parts joined by NUL)."""
    return hashlib.sha256("\x00".join(identity).encode()).hexdigest()[:length]


def bounded(readable: str, tag: str, *, limit: int, unsafe: re.Pattern[str], trim: bool = True) -> str:
    """``<readable>-<tag>`` within ``limit`` characters: unsafe runs become "-" and the readable part is cut.

    ``trim`` drops a "-" left at the cut; execution names keep it, as they always have, so that a
    duplicated event still maps to the name of the execution it duplicates."""
    prefix = unsafe.sub("-", readable).strip("-")[: limit - len(tag) - 1]
    if trim:
        prefix = prefix.rstrip("-")
    return f"{prefix}-{tag}" if prefix else tag
