"""Model worker processes seen from the local cloud: the zygote that forks them, each worker, and the pool."""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import json
import logging
import os
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcloud.sagemaker.inference import DEFAULT_ACCEPT, InferenceError, ModelError, ModelLoadError
from localcloud.sagemaker.model_artifacts import PreparedModel
from localcloud.sagemaker.worker_frames import read_frame, write_frame

log = logging.getLogger("shepherd.local.sagemaker")

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "OPENBLAS_CORETYPE", *THREAD_ENV)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# By code, not -m: the worker's sys.path starts with the user's code, not the local cloud's cwd.
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); from localcloud.sagemaker.model_worker import main; main(sys.argv[2:])"
)
_ZYGOTE_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); from localcloud.sagemaker.model_worker import zygote_main; "
    "zygote_main(int(sys.argv[2]))"
)
_STDERR_TAIL = 40


class _Zygote:
    """A warm interpreter with numpy, pandas and scikit-learn imported, forking model workers on request.

    Importing scikit-learn takes 1-2 s per process, more than a whole small transform job; a
    fork of a process that already did costs milliseconds. Requests go over a SEQPACKET Unix
    socket carrying the worker's environment and cwd, and its three pipe ends (SCM_RIGHTS).
    """

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        env.update(dict.fromkeys(THREAD_ENV, "1"))  # OpenMP reads these once; workers then set their own share
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_BOOTSTRAP, str(_PROJECT_ROOT), str(child.fileno())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(child.fileno(),),
            start_new_session=True,
        )
        child.close()
        self._socket = parent
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self, env: Mapping[str, str], cwd: Path, fds: list[int], nice: int = 0, own_session: bool = False) -> int:
        """Fork a worker with these pipe ends (request read, response write, stderr write); its pid."""
        spec = {"env": dict(env), "cwd": str(cwd), "nice": nice, "own_session": own_session}
        message = json.dumps(spec).encode()
        with self._lock:
            socket.send_fds(self._socket, [message], fds)
            reply = self._socket.recv(4096)
        if not reply:
            raise OSError("the model worker zygote exited")
        return int(json.loads(reply)["pid"])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._socket.close()


_zygotes: dict[str, _Zygote] = {}  # the one per local cloud process, under "current"
_zygote_lock = threading.Lock()


def model_worker_zygote() -> _Zygote | None:
    """The process-wide zygote, started on first use; None where fork is unavailable or it failed."""
    if not hasattr(os, "fork") or os.environ.get("SHEPHERD_MODEL_WORKER_SPAWN") == "1":
        return None
    with _zygote_lock:
        zygote = _zygotes.get("current")
        if zygote is None or not zygote.alive():
            try:
                zygote = _Zygote()
            except OSError:
                log.exception("could not start the model worker zygote; spawning workers instead")
                return None
            _zygotes["current"] = zygote
            atexit.register(zygote.close)
        return zygote


def prestart_model_workers() -> None:
    """Start the zygote now (e.g. with the local cloud), so the first job does not wait for imports."""
    model_worker_zygote()


_KILL_POLL_SECONDS = 0.5  # how soon a request waiting on a worker notices that the worker was killed


class _Worker:
    """One model worker process and its pipes; used by one request at a time."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        cwd: Path,
        log_line: Callable[[str], None],
        *,
        nice: int = 0,
        pipe_bytes: int = 0,
        own_session: bool = False,
    ) -> None:
        self.name = name
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        if pipe_bytes:  # MB payloads cross a 64 KB pipe in ~100 writer/reader switches; a larger pipe, fewer
            for fd in (request_write, response_write):
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, pipe_bytes)
        self.process: subprocess.Popen[bytes] | None = None
        self._pid = 0
        stderr_read, stderr_write = os.pipe()
        zygote = model_worker_zygote()
        try:
            if zygote is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._pid = zygote.spawn(env, cwd, [request_read, response_write, stderr_write], nice, own_session)
            if not self._pid:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _BOOTSTRAP,
                        str(_PROJECT_ROOT),
                        str(request_read),
                        str(response_write),
                        str(nice),
                    ],
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr_write,
                    pass_fds=(request_read, response_write),
                    start_new_session=own_session,
                    process_group=None if own_session else 0,  # its own group (see model_worker)
                )
                self._pid = self.process.pid
        finally:
            for fd in (request_read, response_write, stderr_write):
                os.close(fd)
        self._stderr = os.fdopen(stderr_read, "rb")
        self._requests = os.fdopen(request_write, "wb")
        self._responses = os.fdopen(response_read, "rb")
        # One epoll set for the worker's life: a new one per request cost more than the rest of the dispatch.
        self._selector = selectors.DefaultSelector()
        self._selector.register(response_read, selectors.EVENT_READ)
        self._exited = threading.Event()  # its stderr closed: the process is gone
        self._killed = False
        self._log_line = log_line
        self.tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self.ready = threading.Event()
        self.load_error: InferenceError | None = None
        threading.Thread(target=self._pump_logs, name=f"{name}-log", daemon=True).start()
        threading.Thread(target=self._handshake, name=f"{name}-start", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._pid

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:  # a zygote's child: the zygote reaps it, so a dead one is simply gone
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _pump_logs(self) -> None:
        for raw in self._stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.tail.append(line)
            with contextlib.suppress(Exception):
                self._log_line(line)
        self._exited.set()

    def known_dead(self) -> bool:
        """Whether the worker is known to have exited, without a system call (its stderr reached EOF)."""
        return self._exited.is_set()

    def _handshake(self) -> None:
        """The worker's first frame says whether the model loaded."""
        try:
            frame = read_frame(self._responses)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            self.load_error = ModelLoadError(self._exit_text("while loading the model"), "WorkerExited")
        elif not frame[0].get("ok"):
            self.load_error = InferenceError.from_dict(frame[0]["error"])
        self.ready.set()

    def _exit_text(self, when: str) -> str:
        code: int | None = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            code = self.process.poll()
        else:
            time.sleep(0.1)  # let the last stderr lines arrive
        status = f"exit status {code}" if code is not None else "killed or exited"
        tail = "\n".join(list(self.tail)[-10:])
        return f"the model worker {self.name} exited {when} ({status})" + (f":\n{tail}" if tail else "")

    def invoke(
        self, payload: bytes | memoryview, content_type: str, accept: str | None, timeout: float
    ) -> tuple[bytes, str]:
        try:
            write_frame(self._requests, {"content_type": content_type, "accept": accept}, payload)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ModelError(self._exit_text("before the request was sent"), "WorkerExited") from exc
        # In slices: kill() from another thread (a stopped job's pool closing) closes the pipe this waits on,
        # which removes it from the epoll set; if that happens before this thread collects the EOF the kill
        # caused, one long select would sleep out the whole invocation timeout.
        deadline = time.monotonic() + timeout
        ready: list[Any] = []
        while not ready:
            if self._killed:
                raise ModelError(self._exit_text("while serving a request"), "WorkerExited")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                ready = self._selector.select(timeout=min(remaining, _KILL_POLL_SECONDS))
            except (OSError, ValueError) as exc:  # closed by kill() meanwhile
                raise ModelError(self._exit_text("while serving a request"), "WorkerExited") from exc
        if not ready:
            self.kill()
            raise ModelError(
                f"the model did not respond within {timeout:.0f} seconds (InvocationsTimeoutInSeconds)",
                "InvocationTimeout",
                status=408,
            )
        try:
            frame = read_frame(self._responses)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            raise ModelError(self._exit_text("while serving a request"), "WorkerExited")
        meta, body = frame
        if not meta.get("ok"):
            raise InferenceError.from_dict(meta["error"])
        return body, str(meta.get("content_type") or accept or DEFAULT_ACCEPT)

    def kill(self) -> None:
        self._killed = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, 9)
            if self.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
            else:
                deadline = time.monotonic() + 5
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.001)
        for stream in (self._requests, self._responses):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError, ValueError):
            self._selector.close()


def worker_thread_limits(size: int) -> dict[str, str]:
    """Each worker gets an equal share of the cores: N single-threaded workers, not N x cores threads."""
    share = str(max(1, (os.cpu_count() or 1) // max(1, size)))
    return dict.fromkeys(THREAD_ENV, share)


class ModelWorkerPool:
    """N worker processes serving one prepared model; ``invoke`` uses whichever is free.

    ``start`` returns at once (workers load the model in parallel with whatever the caller does
    next, e.g. downloading input); ``wait_ready`` or the first ``invoke`` waits for them. A
    worker that dies is replaced on the next invoke. ``close`` kills every process group.
    """

    def __init__(
        self,
        model: PreparedModel,
        size: int = 1,
        *,
        log_line: Callable[[str], None] | None = None,
        base_env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 300.0,
        invocation_timeout: float = 600.0,
        name: str = "model",
        nice: int = 0,
        pipe_bytes: int = 0,
        own_session: bool = False,
    ) -> None:
        self.model = model
        self.pipe_bytes = pipe_bytes  # pipe buffer size for MB payloads (batch transform); 0: the system's
        # A session per worker (batch transform, as before); endpoint workers share one, so that a
        # shadow's nice value weighs against production's (see model_worker._lower_priority).
        self.own_session = own_session
        # Process priority: workers add this to their nice value (os.nice) before loading the model,
        # e.g. a shadow variant's, so their CPU time never competes with production's.
        self.nice = max(0, nice)
        self.size = max(1, size)
        self.startup_timeout = startup_timeout
        self.invocation_timeout = invocation_timeout
        self.name = name
        self._log_line = log_line or (lambda _line: None)
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        for key, value in worker_thread_limits(self.size).items():
            env.setdefault(key, value)
        env.update(base_env or {})
        env.update(model.environment)
        env.update(extra_env or {})
        env.update(
            {
                "SM_MODEL_DIR": str(model.model_dir),
                "SHEPHERD_MODEL_DIR": str(model.model_dir),
                "SHEPHERD_SERVING_FRAMEWORK": model.framework,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        self._env = env
        self._cwd = model.code_dir if model.code_dir and model.code_dir.is_dir() else model.model_dir
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._spawned = 0

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            self._spawned += 1
            worker = _Worker(
                f"{self.name}-{self._spawned}",
                self._env,
                self._cwd,
                self._log_line,
                nice=self.nice,
                pipe_bytes=self.pipe_bytes,
                own_session=self.own_session,
            )
            self._all.append(worker)
        return worker

    def start(self) -> ModelWorkerPool:
        for _ in range(self.size):
            self._idle.put(self._spawn())
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every worker loaded the model; ModelLoadError if one could not."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            self._await(worker, deadline)

    def _await(self, worker: _Worker, deadline: float) -> None:
        # In slices: a pool closed meanwhile (a stopped transform job) must not leave a request waiting out the
        # whole startup timeout for a worker that was killed while it loaded the model.
        while not worker.ready.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            if time.monotonic() >= deadline:
                worker.kill()
                raise ModelLoadError(
                    f"the model did not load within {self.startup_timeout:.0f} seconds", "ModelLoadTimeout"
                )
        if worker.load_error is not None:
            raise worker.load_error

    def invoke(self, payload: bytes | memoryview, content_type: str, accept: str | None = None) -> tuple[bytes, str]:
        if self._closed:
            raise InferenceError("the model worker pool is closed", "PoolClosed")
        worker = self._idle.get()
        answered = False
        try:
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            if worker.known_dead() and worker.ready.is_set() and worker.load_error is None:
                worker = self._replace(worker)
            self._await(worker, time.monotonic() + self.startup_timeout)
            response = worker.invoke(payload, content_type, accept, self.invocation_timeout)
            answered = True
            return response
        finally:
            # A worker that answered is alive; one that did not may have died with the request.
            if not answered and not worker.alive() and worker.load_error is None and not self._closed:
                with contextlib.suppress(InferenceError):
                    worker = self._replace(worker)
            self._idle.put(worker)

    def _replace(self, dead: _Worker) -> _Worker:
        dead.kill()
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
        self._log_line(f"model worker {dead.name} exited; starting a new one")
        return self._spawn()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all if w.alive()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), []
        for worker in workers:
            worker.kill()

    def __enter__(self) -> ModelWorkerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
