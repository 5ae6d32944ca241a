"""Deterministic names, so that a duplicated event starts one execution, not two."""

from __future__ import annotations

from shepherd.names import EXECUTION_UNSAFE, bounded, digest

MAX_EXECUTION_NAME = 80


def execution_name(readable: str, *identity: str) -> str:
    """``<readable>-<hash of identity>``, within Step Functions' 80 characters and alphabet.

    The hash covers everything that makes the event unique (bucket, key, version), so the
    same object version always maps to the same name and a new version to a new one.
    """
    return bounded(
        readable, digest(*identity, length=16), limit=MAX_EXECUTION_NAME, unsafe=EXECUTION_UNSAFE, trim=False
    )
