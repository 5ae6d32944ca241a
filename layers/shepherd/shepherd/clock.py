"""Now, as the cloud the function runs in sees it.

On AWS that is the system clock. On Shepherd's local cloud, `--time-scale N` runs waits,
schedules and metric periods N times faster; the local cloud tells its functions how to read
its virtual clock (SHEPHERD_LOCAL_CLOCK = "<virtual epoch>,<wall epoch>,<scale>"), so a judge
that reads per-minute metrics asks for the right minutes.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def now() -> datetime:
    spec = os.environ.get("SHEPHERD_LOCAL_CLOCK")
    if not spec:
        return datetime.now(UTC)
    virtual, wall, scale = (float(part) for part in spec.split(","))
    return datetime.fromtimestamp(virtual + (time.time() - wall) * scale, UTC)
