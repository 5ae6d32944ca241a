"""Reading an endpoint's data capture incrementally, hour folder by hour folder, as the judge's quality reader does.

The checkpoint is committed by the caller together with what the run made of the records, so a run that
crashes mid-read leaves the old checkpoint: the next run reads the same objects once (never twice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shepherd.objects import json_objects
from shepherd.rollout.quality import LATE_SECONDS, hours

HOUR = 3600


@dataclass
class Checkpoint:
    """Every hour that began before ``closed`` was read for good; ``read`` names the objects read in the open
    hours, per ``<variant>/yyyy/mm/dd/hh``."""

    closed: float
    read: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def first(cls, now: float) -> Checkpoint:
        """A first run reads the current hour and the one before it."""
        return cls(closed=math.floor(now / HOUR) * HOUR - HOUR)

    def to_json(self) -> dict[str, Any]:
        return {"closed": self.closed, "read": {k: list(v) for k, v in sorted(self.read.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(closed=float(data["closed"]), read={str(k): [str(n) for n in v] for k, v in data["read"].items()})


@dataclass
class Read:
    """What one run read: the capture records, how many objects, and whether that was all of them."""

    captured: list[dict[str, Any]]
    objects: int
    complete: bool


def read_new(
    checkpoint: Checkpoint,
    sources: dict[str, str],
    now: float,
    *,
    list_keys: Callable[[str], Iterable[str]],
    read_lines: Callable[[str], list[str]],
    out_of_time: Callable[[], bool] = lambda: False,
) -> Read:
    """Read every capture object no earlier run read, of each variant's prefix (``sources``: variant ->
    ``<capture>/<variant>/``), marking it in ``checkpoint``; stop early once ``out_of_time()``, the rest left
    to the next run. Hours that ended LATE_SECONDS ago are closed (never listed again) once read to the end."""
    captured: list[dict[str, Any]] = []
    count = 0
    for variant, prefix in sorted(sources.items()):
        for _, hour in hours(checkpoint.closed, now):
            folder = f"{prefix}{hour}/"
            done = set(checkpoint.read.get(f"{variant}/{hour}", ()))
            for key in list_keys(folder):
                name = key.removeprefix(folder)
                if name in done:
                    continue
                if count and out_of_time():
                    return Read(captured, count, complete=False)
                captured.extend(json_objects(read_lines(key)))
                checkpoint.read.setdefault(f"{variant}/{hour}", []).append(name)
                count += 1
    _close(checkpoint, now)
    return Read(captured, count, complete=True)


def _close(checkpoint: Checkpoint, now: float) -> None:
    """Forget the hours no object can still arrive in, and never list them again."""
    closed = math.floor((now - LATE_SECONDS) / HOUR) * HOUR  # the hours before it ended LATE_SECONDS ago
    if closed <= checkpoint.closed:
        return
    checkpoint.closed = closed
    kept = {stamp for _, stamp in hours(closed, now)}
    checkpoint.read = {k: v for k, v in checkpoint.read.items() if k.split("/", 1)[1] in kept}
