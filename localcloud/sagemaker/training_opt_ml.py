"""The machine's one /opt/ml: a link to the running job's tree, held by one job at a time across processes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("shepherd.local.sagemaker")

OPT_ML = Path("/opt/ml")  # the host path pointed at the running job's tree
OPT_ML_LOCK_POLL_SECONDS = 0.05  # how often a Pending job retries another process's flock

_OPT_ML_LOCK = threading.Lock()


def opt_ml_lock_file() -> Path:
    """The file whose flock says which process's job holds /opt/ml: /opt/.ml.lock, beside the link."""
    return OPT_ML.parent / f".{OPT_ML.name}.lock"


def _open_lock_file(path: Path) -> int:
    """A descriptor to flock (not inherited by the script); raises OSError if there can be none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)  # another user's lock file still locks


@contextlib.contextmanager
def hold_opt_ml(
    lock_file: Path,
    on_wait: Callable[[], None],
    check: Callable[[], None],
    note: Callable[[str], None] = log.info,
) -> Iterator[None]:
    """Hold /opt/ml for one job: this process's lock, then an exclusive flock on lock_file.

    on_wait runs once if either is taken; check runs while waiting and may raise to give up.
    A lock file that cannot be opened leaves the thread lock alone to guard (and says so);
    /opt/ml cannot be linked then either.
    """
    waited = False

    def wait_once() -> None:
        nonlocal waited
        if not waited:
            waited = True
            on_wait()

    if not _OPT_ML_LOCK.acquire(blocking=False):
        wait_once()
        while not _OPT_ML_LOCK.acquire(timeout=0.1):
            check()
    try:
        try:
            fd: int | None = _open_lock_file(lock_file)
        except OSError as exc:
            note(f"cannot open {lock_file} ({exc}): /opt/ml is guarded in this process only")
            fd = None
        try:
            if fd is not None:
                _flock(fd, wait_once, check)
            yield
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child may share the descriptor
                os.close(fd)
    finally:
        _OPT_ML_LOCK.release()


def _flock(fd: int, on_wait: Callable[[], None], check: Callable[[], None]) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            on_wait()
            check()
            time.sleep(OPT_ML_LOCK_POLL_SECONDS)


def opt_ml_usable() -> bool:
    """Whether /opt/ml can be pointed at a job: absent or a link, and its parent writable."""
    if OPT_ML.exists() and not OPT_ML.is_symlink():
        return False
    parent = OPT_ML.parent
    while not parent.exists():
        parent = parent.parent
    return os.access(parent, os.W_OK)


@contextlib.contextmanager
def opt_ml_pointed_at(
    base: Path, on_wait: Callable[[], None], check: Callable[[], None], note: Callable[[str], None]
) -> Iterator[None]:
    """Point /opt/ml at a job's tree while it runs, holding it against other jobs; or run without it, saying why."""
    if OPT_ML.exists() and not OPT_ML.is_symlink():
        note(f"{OPT_ML} is a real directory here: running without it; use the SM_* paths")
        yield
        return
    with hold_opt_ml(opt_ml_lock_file(), on_wait, check, note):
        linked = _link_opt_ml(base, note)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if linked and OPT_ML.is_symlink() and Path(os.readlink(OPT_ML)) == base:
                    OPT_ML.unlink()


def _link_opt_ml(base: Path, note: Callable[[str], None]) -> bool:
    """Atomically (re)point the /opt/ml link at this job's tree; False, said in the log, if it cannot be."""
    try:
        OPT_ML.parent.mkdir(parents=True, exist_ok=True)
        staged = OPT_ML.parent / f".ml-{uuid.uuid4().hex}"
        staged.symlink_to(base, target_is_directory=True)
        os.replace(staged, OPT_ML)
    except OSError as exc:
        note(f"cannot point {OPT_ML} at this job ({exc}): running without it; use the SM_* paths")
        return False
    return True
