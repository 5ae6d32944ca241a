"""The /opt/ml lock spans processes: two local clouds (or test workers) never train over one /opt/ml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localcloud.sagemaker import training_opt_ml
from localcloud.sagemaker.training_plan import JobStopped

ROOT = Path(__file__).resolve().parents[2]

# One process, one job's hold on /opt/ml: it prints "waiting" if the lock is taken and "held" once it
# has it, keeps it until its stdin closes (or it is killed), then records when it held it.
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from localcloud.sagemaker.training_opt_ml import hold_opt_ml

    lock_file, report = Path(sys.argv[1]), Path(sys.argv[2])
    with hold_opt_ml(lock_file, lambda: print("waiting", flush=True), lambda: None):
        start = time.time()
        print("held", flush=True)
        sys.stdin.read()
        end = time.time()
    report.write_text(json.dumps({"start": start, "end": end}))
    """
)


def holder(lock_file: Path, report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_file), str(report)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def said(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == line


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_a_second_process_waits_until_the_first_releases(tmp_path: Path) -> None:
    # Given a process that holds the lock
    lock_file = tmp_path / ".ml.lock"
    first = holder(lock_file, tmp_path / "first.json")
    said(first, "held")

    # When a second process asks for it, it waits
    second = holder(lock_file, tmp_path / "second.json")
    said(second, "waiting")

    # Then it holds it only after the first has let go
    release(first)
    said(second, "held")
    release(second)
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second"))
    assert b["start"] >= a["end"]


def test_a_crashed_holder_releases_the_lock(tmp_path: Path) -> None:
    # Given a process that holds the lock, and another waiting for it
    lock_file = tmp_path / ".ml.lock"
    crashed = holder(lock_file, tmp_path / "crashed.json")
    said(crashed, "held")
    waiting = holder(lock_file, tmp_path / "waiting.json")
    said(waiting, "waiting")

    # When the holder dies without letting go
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()

    # Then the waiting process gets it
    said(waiting, "held")
    release(waiting)
    assert not (tmp_path / "crashed.json").exists()


def test_a_job_that_gives_up_while_waiting_releases_this_process_lock(tmp_path: Path) -> None:
    # Given another process holding the lock
    lock_file = tmp_path / ".ml.lock"
    other = holder(lock_file, tmp_path / "other.json")
    said(other, "held")
    try:
        # When a job here waits, then is stopped while waiting
        waits: list[str] = []

        def stop() -> None:
            raise JobStopped("Stopped", "Training job stopped")

        with pytest.raises(JobStopped), training_opt_ml.hold_opt_ml(lock_file, lambda: waits.append("w"), stop):
            pytest.fail("a stopped job must not get /opt/ml")

        # Then it said it was waiting once, and the next job of this process is not blocked by it
        assert waits == ["w"]
        assert training_opt_ml._OPT_ML_LOCK.acquire(blocking=False)
        training_opt_ml._OPT_ML_LOCK.release()
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_the_lock_file_sits_beside_opt_ml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_opt_ml, "OPT_ML", Path("/opt/ml"))  # a parallel test worker's cloud may use its own
    assert training_opt_ml.opt_ml_lock_file() == Path("/opt/.ml.lock")
