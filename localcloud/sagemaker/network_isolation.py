"""Network isolation for a local container's Python: the guard it starts with and the variable that asks for it."""

from __future__ import annotations

from pathlib import Path

ISOLATED = "SHEPHERD_NETWORK_ISOLATION"  # "1" in the environment of a container with EnableNetworkIsolation
NETWORK_GUARD = Path(__file__).with_name("isolation") / "sitecustomize.py"
