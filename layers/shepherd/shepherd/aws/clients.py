"""AWS clients, created on first use and kept for the warm process (one per service).

botocore clients from one session (boto3 would import s3transfer for nothing, about 100 ms), reading the
layer's trimmed data; the first is made with the garbage collector paused, then everything frozen. All
cold-start savings measured by bench/coldstart.py: docs/COLD_START.md, "Clients".
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from collections.abc import Iterator
from typing import Any


def new_session() -> Any:
    """A botocore session that reads botocore's data through the layer's loader."""
    import botocore.session

    from shepherd.aws.data_loader import create_loader

    session = botocore.session.get_session()
    session.register_component("data_loader", create_loader(session.get_config_variable("data_path")))
    return session


@functools.cache
def _session() -> Any:
    return new_session()


@contextlib.contextmanager
def _long_lived_objects() -> Iterator[None]:
    """Pause the collector while the process's first client is made; then freeze what exists, so that
    later collections skip it. Once per process (nothing frozen yet), and only if the collector runs."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@functools.cache
def client(service: str) -> Any:
    with _long_lived_objects():
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
        return _session().create_client(service, config=config)


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def reset() -> None:
    """Forget the session and its clients (tests that change credentials or endpoints between cases)."""
    client.cache_clear()
    _session.cache_clear()
