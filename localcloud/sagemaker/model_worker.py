"""The process a model runs in: loads it once, then answers invocations one at a time.

Forked from the zygote (``zygote_main``), or spawned where forking is unavailable. It speaks worker_frames with
model_worker_pool.ModelWorkerPool on the pipe pair whose fds are its arguments: first whether the model loaded, then
one response per request. The script's prints and logging go to stderr (CloudWatch Logs), never into the protocol.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localcloud.sagemaker.inference import InferenceError, ModelHandler, ModelLoadError
from localcloud.sagemaker.network_isolation import ISOLATED, NETWORK_GUARD
from localcloud.sagemaker.worker_frames import read_frame, write_frame

# The variable that fills a worker's disk (the container-disk-full fault), and the key of a model's description
# that asks for it: localcloud/faults.py adds it to the model a faulty fleet is made of.
DISK_FULL = "SHEPHERD_FAULT_DISK_FULL"
DISK_FULL_KEY = "ShepherdFaultDiskFull"
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def isolation_environment(model: Mapping[str, Any]) -> dict[str, str]:
    """The variables a model's workers start with: refuse every connection (no network, as on AWS), and
    find the disk full when a fault says so."""
    isolated = {ISOLATED: "1"} if model.get("EnableNetworkIsolation") else {}
    return isolated | ({DISK_FULL: "1"} if model.get(DISK_FULL_KEY) else {})


def _fill_disk() -> None:
    """From now on, opening a file to write fails as on a full disk: OSError ENOSPC, "No space left on device"
    (open(2)). Every open, the builtin's and os.open, raises the audit event "open" with its flags; the pipes and
    stderr the worker already holds are not files it opens (their path is a descriptor) and keep working."""

    def refuse(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and not isinstance(args[0], int) and isinstance(args[2], int) and args[2] & _WRITING:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), args[0])

    sys.addaudithook(refuse)


def _exit_with_parent(parent: int) -> None:
    """Workers run in their own process group; one whose local cloud died must not linger."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


# What a scikit-learn model's worker imports anyway; the CSV fast path needs pandas.
PRELOAD = (
    "numpy",
    "pandas",
    "joblib",
    "scipy.sparse",
    "sklearn",
    "sklearn.base",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.ensemble",
)


def _preload(names: tuple[str, ...]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _warm_up() -> None:
    """First calls into pandas' parser and scikit-learn's validation set up state forks then share."""
    with contextlib.suppress(Exception):
        import io

        import pandas as pd
        from sklearn.utils import check_array

        frame = pd.read_csv(io.BytesIO(b"1.5,2\n3,4\n"), header=None, dtype="float64", na_filter=False)
        check_array(frame.to_numpy().astype("float32"))


def _limit_threads() -> None:
    """A forked worker cannot re-read OMP_NUM_THREADS (OpenMP read it in the zygote): set it live."""
    share = os.environ.get("OMP_NUM_THREADS", "")
    if share.isdigit() and int(share) > 0:
        with contextlib.suppress(Exception):
            from threadpoolctl import threadpool_limits

            threadpool_limits(int(share))


def zygote_main(sock_fd: int) -> None:
    """Import the heavy modules once, then fork a worker per request on the socket, until EOF."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; the pool watches pids
    _preload(PRELOAD)
    _warm_up()
    sock = socket.socket(fileno=sock_fd)
    while True:
        message, fds, _flags, _address = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            return
        spec = json.loads(message)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sock.close()
                # Its own process group (killpg ends it and its children). An endpoint's worker keeps
                # the zygote's session: with autogroup scheduling a session is a CPU group, and nice
                # values weigh only within one, so production and shadow workers must share it.
                if spec.get("own_session"):
                    os.setsid()
                else:
                    os.setpgid(0, 0)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.dup2(fds[2], 2)
                os.close(fds[2])
                os.chdir(spec["cwd"])
                os.environ.clear()
                os.environ.update(spec["env"])
                if spec["env"].get(ISOLATED) == "1":
                    runpy.run_path(str(NETWORK_GUARD))  # no connection leaves an isolated model's process
                for entry in reversed(spec["env"].get("PYTHONPATH", "").split(os.pathsep)):
                    if entry:
                        sys.path.insert(0, entry)
                _limit_threads()
                main([str(fds[0]), str(fds[1]), str(spec.get("nice", 0))])
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def _lower_priority(increment: int) -> None:
    """Run at a lower CPU priority (a higher nice value), e.g. a shadow variant's worker; before any thread starts.

    Every worker stays in the zygote's session, so the nice value weighs against production's workers under Linux's
    autogroup scheduling (docs/LOCAL_SAGEMAKER.md, "Shadow variants yield the CPU").
    """
    if increment > 0:
        with contextlib.suppress(OSError):
            os.nice(increment)


def main(argv: list[str]) -> None:
    """argv: request-read fd, response-write fd, and optionally a nice increment."""
    _lower_priority(int(argv[2]) if len(argv) > 2 else 0)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _preload(("pandas",))
    requests = os.fdopen(int(argv[0]), "rb")
    responses = os.fdopen(int(argv[1]), "wb")
    os.dup2(2, 1)  # user prints go to the log stream, never into the protocol pipe
    sys.stdout = sys.stderr
    if os.environ.pop(DISK_FULL, "") == "1":
        _fill_disk()
    handler = ModelHandler()
    try:
        handler.load(Path(os.environ["SHEPHERD_MODEL_DIR"]), dict(os.environ))
    except InferenceError as exc:
        print(f"Model load failed: {exc}", file=sys.stderr, flush=True)
        if exc.stack_trace:
            print(exc.stack_trace, file=sys.stderr, flush=True)
        write_frame(responses, {"ok": False, "error": exc.to_dict()})
        return
    except Exception as exc:  # a bug of ours, reported like a load error rather than a silent exit
        error = ModelLoadError(f"{type(exc).__name__}: {exc}", type(exc).__name__, traceback.format_exc())
        write_frame(responses, {"ok": False, "error": error.to_dict()})
        return
    script = handler.script.name if handler.script else "no script"
    print(f"Model loaded ({script}); worker pid {os.getpid()} ready", file=sys.stderr, flush=True)
    write_frame(responses, {"ok": True, "pid": os.getpid()})
    while True:
        frame = read_frame(requests)
        if frame is None:
            return
        meta, body = frame
        started = time.perf_counter()
        request_type = str(meta.get("content_type") or "")
        try:
            out, content_type = handler.invoke(body, request_type, meta.get("accept"))
        except InferenceError as exc:
            status = f"{exc.status}, request of {len(body)} bytes, Content-Type {request_type or '(none)'}"
            print(f"Invocation failed ({status}): {exc}", file=sys.stderr, flush=True)
            if exc.stack_trace:
                print(exc.stack_trace.rstrip("\n"), file=sys.stderr, flush=True)
            write_frame(responses, {"ok": False, "error": exc.to_dict()})
            continue
        took = round((time.perf_counter() - started) * 1000, 3)
        write_frame(responses, {"ok": True, "content_type": content_type, "duration_ms": took}, out)


if __name__ == "__main__":
    main(sys.argv[1:])
