"""Deterministic names, so that a duplicated event starts one execution, not two."""

from __future__ import annotations

import hashlib
import re

MAX_EXECUTION_NAME = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def execution_name(readable: str, *identity: str) -> str:
    """``<readable>-<hash of identity>``, within Step Functions' 80 characters and alphabet.

    The hash covers everything that makes the event unique (bucket, key, version), so the
    same object version always maps to the same name and a new version to a new one.
    """
    digest = hashlib.sha256("\x00".join(identity).encode()).hexdigest()[:16]
    prefix = _UNSAFE.sub("-", readable).strip("-")[: MAX_EXECUTION_NAME - len(digest) - 1]
    return f"{prefix}-{digest}" if prefix else digest
