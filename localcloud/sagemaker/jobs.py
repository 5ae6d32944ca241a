"""A SageMaker job's record and what a runner may do with it.

The backend owns the record (its Describe* shape); a runner (training.py, transform.py)
does the work in a thread and reports through ``Job.set_status`` / ``Job.update``, which
keep SecondaryStatusTransitions, LastModifiedTime and the state-change events right.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

TERMINAL = {"Completed", "Failed", "Stopped"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunnerContext(Protocol):
    """What the local cloud lends a runner.

    The cloud's own contexts (the backend, job_operations.RoleContext) lend more, which runners look up as optional
    so that a test can lend less: ``models``, ``worker_environment()``, and with a role ``credentials``,
    ``endpoint_url`` and ``allows_s3``.
    """

    def client(self, service: str) -> Any: ...

    def log(self, group: str, stream: str, line: str) -> None: ...

    @property
    def work_root(self) -> Path: ...


@dataclass
class Job:
    kind: str  # "TrainingJob" or "TransformJob"
    name: str
    arn: str
    request: dict[str, Any]
    description: dict[str, Any]
    on_change: Callable[[Job], None]
    stop_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Opt-in fault injection from tags "shepherd:fault:<name>" (e.g. {"spot-interruptions": "1"}).
    faults: dict[str, str] = field(default_factory=dict)

    @property
    def status_key(self) -> str:
        return f"{self.kind}Status"

    @property
    def status(self) -> str:
        with self.lock:
            return str(self.description[self.status_key])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.description)

    def update(self, **fields: Any) -> None:
        """Set Describe fields without a status change (e.g. ModelArtifacts, FinalMetricDataList)."""
        with self.lock:
            self.description.update(fields)
            self.description["LastModifiedTime"] = utcnow()

    def set_status(
        self, status: str | None = None, secondary: str | None = None, message: str | None = None, **fields: Any
    ) -> None:
        """Move the job on; a terminal status is final (a late runner update cannot revive a stopped job)."""
        with self.lock:
            current = self.description[self.status_key]
            if current in TERMINAL:
                return
            now = utcnow()
            changed = False
            if status is not None and status != current:
                self.description[self.status_key] = status
                changed = True
            if secondary is not None and self.kind == "TrainingJob":
                transitions = self.description.setdefault("SecondaryStatusTransitions", [])
                if not transitions or transitions[-1]["Status"] != secondary:
                    if transitions:
                        transitions[-1]["EndTime"] = now
                    transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message or ""})
                    self.description["SecondaryStatus"] = secondary
                    changed = True
                elif message:
                    transitions[-1]["StatusMessage"] = message
                if status in TERMINAL:
                    transitions[-1]["EndTime"] = now
            self.description.update(fields)
            self.description["LastModifiedTime"] = now
        if changed:
            self.on_change(self)
