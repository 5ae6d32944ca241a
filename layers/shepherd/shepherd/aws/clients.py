"""AWS clients, created on first use and kept for the warm process (one per service).

Two cold-start savings, both measured by bench/coldstart.py:

- They are botocore clients from one botocore session, which is what ``boto3.client`` returns too,
  without importing boto3: boto3 pulls in s3transfer and its session machinery (about 100 ms) for
  features Shepherd does not use (resources, managed transfers). botocore honours the same
  environment (credentials, ``AWS_REGION``, ``AWS_ENDPOINT_URL``) as boto3.
- The session reads botocore's data through :mod:`shepherd.aws.data_loader`: the layer's trimmed
  copies first (SageMaker's service model parses in a few ms instead of about 80; endpoints.json,
  1.2 MB, cut to Shepherd's services), and no scan of every service folder.
"""

from __future__ import annotations

import functools
import os
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
