"""Local Lambda: warm worker processes per function, Timeout enforced, errors in Lambda's shape.

Tests can make a function's runtime process die during its next invocations (``LambdaRuntime.crash_next``),
to prove that a state machine retries a crash without side effects. The fault registry's lambda-crash rule
(localcloud/faults.py, docs/FAULTS.md) arms it; no variable or tag does, and AWS has no such thing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("shepherd.local.lambda")

MAX_WORKERS_PER_FUNCTION = 8
_LOG_TAIL_BYTES = 4096
_BOOTSTRAP_PATH = Path(__file__).with_name("lambda_bootstrap.py")
_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
_PASSED_THROUGH_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SYSTEMROOT",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)
# Where an injected crash kills the runtime: before the handler runs (no side effect yet), or after it
# returned (its side effects done, its answer lost). A crash anywhere in the handler lies in between.
CrashPoint = Literal["before-handler", "after-handler"]
CRASH_POINTS: tuple[CrashPoint, ...] = ("before-handler", "after-handler")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str
    handler: str
    runtime: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    log_group: str = ""
    role_arn: str = ""

    @property
    def log_group_name(self) -> str:
        return self.log_group or f"/aws/lambda/{self.name}"


@dataclass
class InvokeResult:
    status: int
    payload: bytes
    function_error: str | None = None
    log_tail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class FunctionNotFound(Exception):
    pass


def _python_path(spec: FunctionSpec) -> str:
    """Lambda's import order: the function's code (/var/task), then each layer's /opt/python."""
    entries = [str(spec.code_dir)]
    for layer in spec.layer_dirs:
        entries.append(str(layer / "python") if (layer / "python").is_dir() else str(layer))
    return os.pathsep.join(entries)


class Worker:
    """One warm process of a function; handles one invocation at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        base_env: dict[str, str],
        log_sink: Callable[[FunctionSpec, str, str], None],
        credentials: dict[str, str],
    ):
        self.spec = spec
        self.stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        request_read, self._request_write = os.pipe()
        self._response_read, response_write = os.pipe()
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        env.update(base_env)
        env.update(spec.environment)
        env.update(credentials)  # the execution role's session: reserved variables, after the function's own
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": self.stream,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "_HANDLER": spec.handler,
                "SHEPHERD_LOCAL_FUNCTION_ARN": spec.arn,
                "PYTHONPATH": _python_path(spec),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.process = subprocess.Popen(
            # By path, so the worker's import path is only the function's code and layers, as in Lambda.
            [sys.executable, "-c", _BOOTSTRAP, str(_BOOTSTRAP_PATH), str(request_read), str(response_write)],
            env=env,
            cwd=spec.code_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(request_read, response_write),
            start_new_session=True,
        )
        os.close(request_read)
        os.close(response_write)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log_sink = log_sink
        threading.Thread(target=self._pump_logs, name=f"lambda-log-{spec.name}", daemon=True).start()
        self._responses = os.fdopen(self._response_read, "r", encoding="utf-8")

    def _pump_logs(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._log_sink(self.spec, self.stream, line)
            self._lines.put(line)
        self._lines.put(None)

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, payload: bytes, client_context: Any, crash: CrashPoint | None = None) -> InvokeResult:
        request_id = str(uuid.uuid4())
        deadline = time.time() + self.spec.timeout_seconds
        request = {
            "request_id": request_id,
            "payload": payload.decode("utf-8") if payload else "",
            "deadline_ms": int(deadline * 1000),
            "client_context": client_context,
        }
        if crash is not None:
            request["crash"] = crash
        while not self._lines.empty():
            self._lines.get_nowait()
        os.write(self._request_write, (json.dumps(request) + "\n").encode())
        selector = selectors.DefaultSelector()
        selector.register(self._responses, selectors.EVENT_READ)
        ready = selector.select(timeout=max(0.0, deadline - time.time()))
        selector.close()
        line = self._responses.readline() if ready else ""
        if not line:
            if ready:
                # End of file: the process died. Its status first: a kill now could overwrite how it ended.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
                message = f"RequestId: {request_id} Error: Runtime exited with error: {self._exit_status()}"
                body = {"errorType": "Runtime.ExitError", "errorMessage": message}
            else:
                message = f"RequestId: {request_id} Error: Task timed out after {self.spec.timeout_seconds:.2f} seconds"
                body = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            self.kill()
            self._log_sink(self.spec, self.stream, message)
            return InvokeResult(200, json.dumps(body).encode(), "Unhandled", self._collect_tail(request_id, 0.2))
        response = json.loads(line)
        tail = self._collect_tail(request_id, 2.0)
        if response["ok"]:
            return InvokeResult(200, response["payload"].encode(), None, tail)
        return InvokeResult(200, json.dumps(response["error"]).encode(), "Unhandled", tail)

    def _exit_status(self) -> str:
        """How the process ended, worded as Lambda words it: 'exit status 1', 'signal: killed'."""
        code = self.process.returncode
        if code is None:
            return "exit status unknown"
        if code >= 0:
            return f"exit status {code}"
        name = signal.strsignal(-code) or f"signal {-code}"
        return f"signal: {name.lower()}"

    def _collect_tail(self, request_id: str, wait: float) -> str:
        """The invocation's log lines, up to its REPORT line (written before the response)."""
        lines: list[str] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            if line.startswith(f"REPORT RequestId: {request_id}"):
                break
        return "\n".join(lines)[-_LOG_TAIL_BYTES:]

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._request_write)
        with contextlib.suppress(OSError):
            self._responses.close()


class FunctionPool:
    """Warm workers of one function; a new one starts when all are busy (up to a bound)."""

    def __init__(
        self,
        spec: FunctionSpec,
        base_env: dict[str, str],
        log_sink: Callable[[FunctionSpec, str, str], None],
        credentials: dict[str, str] | None = None,
    ):
        self.spec = spec
        self._base_env = base_env
        self._credentials = credentials or {}
        self._log_sink = log_sink
        self._idle: list[Worker] = []
        self._all: list[Worker] = []
        self._cond = threading.Condition()
        self._closed = False
        self._crashes: deque[CrashPoint] = deque()

    def _acquire(self) -> Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("local cloud is shutting down")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._all.remove(worker)
                if len(self._all) < MAX_WORKERS_PER_FUNCTION:
                    worker = Worker(self.spec, self._base_env, self._log_sink, self._credentials)
                    self._all.append(worker)
                    return worker
                self._cond.wait()

    def _release(self, worker: Worker) -> None:
        with self._cond:
            if worker.alive() and not self._closed:
                self._idle.append(worker)
            elif worker in self._all:
                self._all.remove(worker)
                worker.kill()
            self._cond.notify()

    def crash_next(self, times: int, at: CrashPoint) -> None:
        if at not in CRASH_POINTS:
            raise ValueError(f"a crash happens at one of {CRASH_POINTS}, not {at!r}")
        with self._cond:
            self._crashes.extend([at] * times)

    def invoke(self, payload: bytes, client_context: Any) -> InvokeResult:
        with self._cond:
            crash = self._crashes.popleft() if self._crashes else None
        worker = self._acquire()
        try:
            return worker.invoke(payload, client_context, crash)
        finally:
            self._release(worker)

    @property
    def worker_pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in self._all if w.alive()]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._all, self._idle = list(self._all), [], []
            self._cond.notify_all()
        for worker in workers:
            worker.kill()


class LambdaRuntime:
    """Every deployed function of the local cloud, invokable by name, ARN or partial ARN."""

    def __init__(
        self,
        base_env: dict[str, str],
        log_sink: Callable[[FunctionSpec, str, str], None],
        sleep: Callable[[float], object] = time.sleep,
        credentials: Callable[[FunctionSpec], dict[str, str]] | None = None,
    ):
        self.base_env = base_env  # shared with every pool; filled in once the endpoint's port is known
        # The environment that makes a function act as its execution role; raises when Lambda cannot assume it.
        self._credentials = credentials
        self._log_sink = log_sink
        self._sleep = sleep
        self._pools: dict[str, FunctionPool] = {}
        self._async = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-async")

    def register(self, spec: FunctionSpec) -> None:
        credentials = self._credentials(spec) if self._credentials is not None else {}
        old = self._pools.get(spec.name)
        self._pools[spec.name] = FunctionPool(spec, self.base_env, self._log_sink, credentials)
        if old is not None:
            old.close()

    def resolve(self, name_or_arn: str) -> FunctionPool:
        name = name_or_arn
        if name.startswith("arn:"):
            name = name.split(":")[6]
        elif ":" in name:
            name = name.split(":")[0] if not name.split(":")[0].isdigit() else name.split(":")[2]
        pool = self._pools.get(name)
        if pool is None:
            raise FunctionNotFound(name_or_arn)
        return pool

    def invoke(
        self, name_or_arn: str, payload: bytes, invocation_type: str = "RequestResponse", client_context: Any = None
    ) -> InvokeResult:
        pool = self.resolve(name_or_arn)
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                body = {"Type": "User", "message": "Could not parse request body into json"}
                return InvokeResult(
                    400, json.dumps(body).encode(), headers={"x-amzn-ErrorType": "InvalidRequestContentException"}
                )
        if invocation_type == "DryRun":
            return InvokeResult(204, b"")
        if invocation_type == "Event":
            self._async.submit(self._invoke_async, pool, payload)
            return InvokeResult(202, b"")
        return pool.invoke(payload, client_context)

    def crash_next(self, name_or_arn: str, times: int = 1, at: CrashPoint = "before-handler") -> None:
        """Test-only fault plan: the runtime process of the function's next ``times`` invocations dies at
        ``at`` (SIGKILL, as a native crash or the kernel would), which Lambda reports as Runtime.ExitError."""
        self.resolve(name_or_arn).crash_next(times, at)

    def _invoke_async(self, pool: FunctionPool, payload: bytes) -> None:
        """Lambda retries a failed asynchronous invocation twice, about one and two minutes later."""
        for attempt in range(3):
            if attempt:
                self._sleep(60.0 * attempt)
            try:
                result = pool.invoke(payload, None)
            except RuntimeError:
                return
            if result.function_error is None:
                return
            log.warning(
                "async invoke of %s failed (attempt %d): %s", pool.spec.name, attempt + 1, result.payload.decode()[:500]
            )

    def worker_pids(self) -> list[int]:
        return [pid for pool in self._pools.values() for pid in pool.worker_pids]

    @property
    def functions(self) -> list[FunctionSpec]:
        return [pool.spec for pool in self._pools.values()]

    def close(self) -> None:
        self._async.shutdown(wait=False, cancel_futures=True)
        for pool in self._pools.values():
            pool.close()


def encode_log_tail(tail: str) -> str:
    return base64.b64encode(tail.encode()).decode()
