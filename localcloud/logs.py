"""Ships Lambda output to CloudWatch Logs (/aws/lambda/<name> or its LoggingConfig group) and the console."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localcloud.lambdas import FunctionSpec

_BATCH = 200


class LogShipper:
    def __init__(self, logs_client_factory: Any, echo: bool) -> None:
        self._client_factory = logs_client_factory
        self._echo = echo
        self._held: dict[tuple[str, str], list[str]] = {}  # per stream: an invocation's lines while only START/END
        self._echo_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str, str, int] | None] = queue.Queue()
        self._streams: set[tuple[str, str]] = set()
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def __call__(self, function: FunctionSpec, stream: str, line: str) -> None:
        self.put(function.log_group_name, stream, line, function.name)

    def put(self, group: str, stream: str, line: str, label: str | None = None) -> None:
        if self._echo:
            self._echo_line((group, stream), label or stream, line)
        self._queue.put((group, stream, line, int(time.time() * 1000)))

    def _echo_line(self, key: tuple[str, str], label: str, line: str) -> None:
        """The console skips an invocation that printed nothing but START, END and REPORT (a quiet schedule
        sweep every 10 virtual minutes); CloudWatch Logs still gets every line, as on AWS."""
        with self._echo_lock:
            held = self._held.pop(key, None)
            if line.startswith("START RequestId: "):
                shown = held or []
                self._held[key] = [line]
            elif held is not None and line.startswith("END RequestId: ") and len(held) == 1:
                self._held[key] = [*held, line]
                shown = []
            elif held is not None and line.startswith("REPORT RequestId: ") and len(held) == 2:
                shown = []  # START, END, REPORT and nothing else: a quiet invocation
            else:
                shown = [*(held or []), line]
            for text in shown:
                print(f"[{label}] {text}", file=sys.stderr, flush=True)

    def _run(self) -> None:
        client = None
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            client = client or self._client_factory()
            self._ship(client, batch)

    def _ship(self, client: Any, batch: list[tuple[str, str, str, int]]) -> None:
        by_stream: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for group, stream, line, ts in batch:
            if line:  # PutLogEvents refuses an empty message, and with it the whole batch
                by_stream.setdefault((group, stream), []).append({"timestamp": ts, "message": line})
        for (group, stream), events in by_stream.items():
            # Logging must never take the cloud down (nor complain while it stops).
            with contextlib.suppress(Exception):
                if (group, stream) not in self._streams:
                    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                        client.create_log_group(logGroupName=group)
                    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                        client.create_log_stream(logGroupName=group, logStreamName=stream)
                    self._streams.add((group, stream))
                client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def close(self, timeout: float = 2.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
