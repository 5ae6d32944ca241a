"""shepherd.aws.clients makes the process's first client with the collector paused, then freezes what exists.

Each case runs in a fresh interpreter: freezing is once per process, and this one's state is pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "shepherd"

PROBE = """
import gc, json
{before}
from shepherd.aws import clients
clients.client("s3")
first = gc.get_freeze_count()
clients.client("sagemaker")
print(json.dumps({{"enabled": gc.isenabled(), "first": first, "second": gc.get_freeze_count()}}))
"""


def _probe(before: str = "") -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=str(LAYER),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull,
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_the_first_client_freezes_what_exists_and_the_collector_runs_again() -> None:
    result = _probe()
    assert result["enabled"] is True
    assert isinstance(result["first"], int)
    assert result["first"] > 10_000  # botocore's modules, the session, the client
    assert result["second"] == result["first"]  # once per process: a later client freezes nothing


def test_a_collector_the_caller_turned_off_stays_off_and_nothing_is_frozen() -> None:
    result = _probe("gc.disable()")
    assert result == {"enabled": False, "first": 0, "second": 0}
