"""AWS clients, created on first use and kept for the warm process (one per service).

Two cold-start savings, both measured by bench/coldstart.py:

- They are botocore clients from one botocore session, which is what ``boto3.client`` returns too,
  without importing boto3: boto3 pulls in s3transfer and its session machinery (about 100 ms) for
  features Shepherd does not use (resources, managed transfers). botocore honours the same
  environment (credentials, ``AWS_REGION``, ``AWS_ENDPOINT_URL``) as boto3.
- ``models/`` (next to this file) comes first on botocore's data path: it holds SageMaker's service
  model cut to the operations Shepherd calls (tools/trim_service_models.py), which botocore parses
  in a few ms instead of about 80.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

MODELS = Path(__file__).with_name("models")


@functools.cache
def _session() -> Any:
    import botocore.session

    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(MODELS))
    return session


@functools.cache
def client(service: str) -> Any:
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
    return _session().create_client(service, config=config)


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def reset() -> None:
    """Forget the session and its clients (tests that change credentials or endpoints between cases)."""
    client.cache_clear()
    _session.cache_clear()
