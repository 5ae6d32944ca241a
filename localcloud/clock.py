"""One virtual clock for everything time-driven in the local cloud.

With ``--time-scale N`` virtual time runs N times faster than wall time, so a Wait of
600 s, a schedule of rate(10 minutes) and a task timeout of 300 s keep their proportions
while a rollout that takes hours on AWS takes minutes on a laptop.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class VirtualClock:
    """Virtual time = start + (wall elapsed) * scale."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time scale must be > 0, got {time_scale}")
        self.time_scale = float(time_scale)
        self._wall_start = time.monotonic()
        self._virtual_start = datetime.now(UTC)

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._wall_start) * self.time_scale
        return self._virtual_start + timedelta(seconds=elapsed)

    def export(self) -> str:
        """``<virtual epoch>,<wall epoch>,<scale>`` at one instant: how another process computes virtual now."""
        wall = time.time()
        return f"{self.now().timestamp():.6f},{wall:.6f},{self.time_scale}"

    def wall_seconds(self, virtual_seconds: float) -> float:
        """How long, in real seconds, a virtual duration lasts."""
        return max(0.0, virtual_seconds / self.time_scale)

    def sleep(self, virtual_seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep a virtual duration; returns True if ``stop`` was set meanwhile."""
        wall = self.wall_seconds(virtual_seconds)
        if stop is None:
            time.sleep(wall)
            return False
        return stop.wait(wall)

    def until(self, moment: datetime) -> float:
        """Virtual seconds from now until ``moment`` (0 if it has passed)."""
        return max(0.0, (moment - self.now()).total_seconds())
