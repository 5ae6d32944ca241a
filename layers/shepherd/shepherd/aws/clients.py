"""boto3 clients, created on first use and kept for the warm process (one per service)."""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
    return boto3.client(service, config=config)


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
