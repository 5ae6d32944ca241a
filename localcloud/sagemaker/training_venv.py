"""The interpreter a training script runs with: this one, or a cached venv with the code's requirements.txt."""

from __future__ import annotations

import collections
import hashlib
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from pathlib import Path

from localcloud.sagemaker.training_plan import JobFailure

_VENV_LOCKS: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
_VENV_LOCKS_GUARD = threading.Lock()


def script_python(code: Path, cache_root: Path, emit: Callable[[str], None]) -> str:
    """The local interpreter, or, when the code has a requirements.txt, the venv that has it installed."""
    requirements = code / "requirements.txt"
    if not requirements.is_file():
        return sys.executable
    return requirements_python(requirements, cache_root, emit)


def _parent_site_dirs() -> list[str]:
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(p for p in paths if Path(p).is_dir()))


def requirements_python(requirements: Path, cache_root: Path, emit: Callable[[str], None]) -> str:
    """The interpreter of a venv with requirements.txt installed, built once per distinct file and reused.

    The venv sees this interpreter's site-packages (a venv of a venv would not otherwise), so the local
    scikit-learn, pandas and numpy satisfy requirements that name them and nothing big is downloaded.
    """
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode() + sys.prefix.encode()).hexdigest()[:16]
    venv = cache_root / digest
    python = venv / "bin" / "python"
    ready = venv / ".shepherd-ready"
    with _VENV_LOCKS_GUARD:
        lock = _VENV_LOCKS[digest]
    with lock:
        if ready.exists():
            emit(f"Using the cached environment for requirements.txt ({venv})")
            return str(python)
        shutil.rmtree(venv, ignore_errors=True)
        site_dir = _create_venv(venv, python)
        lines = [f"import site; site.addsitedir({path!r})" for path in _parent_site_dirs()]
        (site_dir / "_shepherd_parent_site.pth").write_text("\n".join(lines) + "\n")
        _install(requirements, python, emit)
        ready.touch()
    return str(python)


def _create_venv(venv: Path, python: Path) -> Path:
    """A venv with --system-site-packages and no pip of its own; its site-packages directory."""
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
            check=True,
            capture_output=True,
        )
        return Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
        raise JobFailure(
            f"AlgorithmError: InstallRequirementsError: could not create the environment {venv}: {stderr}"
        ) from exc


def _install(requirements: Path, python: Path, emit: Callable[[str], None]) -> None:
    """pip from this interpreter against the venv (``pip --python``), its output in the job's log."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-r",
        str(requirements),
    ]
    emit(f"Installing requirements: {shlex.join(command)}")
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in (process.stdout + process.stderr).splitlines():
        emit(line)
    if process.returncode != 0:
        tail = "\n".join(process.stderr.strip().splitlines()[-10:])
        raise JobFailure(
            f'AlgorithmError: InstallRequirementsError:\nExitCode {process.returncode}\nErrorMessage "{tail}"\n'
            f'Command "{shlex.join(command)}"'
        )
