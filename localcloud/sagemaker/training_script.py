"""The training script's process: its command and environment, its output, and how it is ended."""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from localcloud.iam import container_environment
from localcloud.sagemaker.jobs import RunnerContext
from localcloud.sagemaker.network_isolation import ISOLATED, NETWORK_GUARD
from localcloud.sagemaker.training_layout import Layout, toolkit_environment
from localcloud.sagemaker.training_plan import FAILURE_REASON_MAX, JobStopped, TrainingPlan
from localcloud.sagemaker.training_toolkit import to_cmd_args

STOP_GRACE_SECONDS = 3.0  # SageMaker's is 120 s; locally a stop should be quick
POLL_SECONDS = 0.02
DEFAULT_INTERRUPTION_AFTER_SECONDS = 1.0
CHECKPOINT_SETTLE_SECONDS = 0.25
STDERR_TAIL_LINES = 200


@dataclass
class ScriptResult:
    returncode: int | None  # None when the runner ended it
    ended_by: str | None  # None, "stop", "max-runtime", "max-wait", "interruption"
    stderr_tail: list[str]
    command: list[str]


def aws_environment(request: dict[str, Any], ctx: RunnerContext) -> dict[str, str]:
    """What the container has of AWS: the job role's session and the endpoint, or, isolated, nothing.

    On AWS a training container reaches AWS as its RoleArn; with EnableNetworkIsolation it has no credentials and
    no network ("Run Training and Inference Containers in Internet-Free Mode"), which the network guard enforces.
    """
    if request.get("EnableNetworkIsolation"):
        return {"PYTHONPATH": str(NETWORK_GUARD.parent), ISOLATED: "1"}
    credentials = getattr(ctx, "credentials", None)
    endpoint_url = getattr(ctx, "endpoint_url", None)
    if credentials is None or endpoint_url is None:
        return {}
    return {**credentials.environment(), "AWS_ENDPOINT_URL": endpoint_url}


def script_environment(plan: TrainingPlan, layout: Layout, aws: dict[str, str]) -> dict[str, str]:
    """The container's environment, the job's, the toolkit's SM_* variables and AWS's; the code first on the path."""
    # The local cloud's own keys (full access) and the developer's AWS configuration never reach a user's script.
    inherited = container_environment(os.environ)
    env = {**inherited, **plan.environment, **toolkit_environment(plan, layout), **aws}
    paths = (aws.get("PYTHONPATH"), str(layout.code), os.environ.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def script_command(plan: TrainingPlan, code: Path, python: str) -> list[str]:
    """The entry point with the hyperparameters as arguments: a Python script, or an executable run by the shell."""
    args = to_cmd_args(plan.hyperparameters)
    if plan.program.endswith(".py"):
        return [python, plan.program, *args]
    (code / plan.program).chmod(0o755)
    return ["/bin/sh", "-c", f"./{plan.program} {shlex.join(args)}"]


class SpotInterruption:
    """When a simulated spot interruption ends an attempt: once a checkpoint has settled, or after a delay."""

    def __init__(self, after: str | None, checkpoints: Path | None) -> None:
        self.after = after  # shepherd:fault:spot-interruption-after-seconds
        self.checkpoints = checkpoints  # the job's checkpoint directory, if it has CheckpointConfig
        self.started = time.monotonic()
        self.checkpoint_seen: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if self.after is not None or self.checkpoints is None:
            return now - self.started >= float(self.after or DEFAULT_INTERRUPTION_AFTER_SECONDS)
        if self.checkpoint_seen is None and any(p.is_file() for p in self.checkpoints.rglob("*")):
            self.checkpoint_seen = now
        return self.checkpoint_seen is not None and now - self.checkpoint_seen >= CHECKPOINT_SETTLE_SECONDS


def run_script(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    name: str,
    on_line: Callable[[str], None],
    check_limits: Callable[[], None],
    interruption: SpotInterruption | None,
    note: Callable[[str], None],
) -> ScriptResult:
    """Run the script to its end, every output line to on_line; check_limits may raise JobStopped to end it."""
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

    def err_line(line: str) -> None:
        tail.append(line)
        on_line(line)

    process = subprocess.Popen(
        command,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so stop and shutdown leave no orphans
    )
    assert process.stdout is not None
    assert process.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, on_line), daemon=True, name=f"{name}-out"),
        threading.Thread(target=_pump, args=(process.stderr, err_line), daemon=True, name=f"{name}-err"),
    ]
    for pump in pumps:
        pump.start()
    try:
        ended_by = _watch(process, check_limits, interruption, note)
    finally:
        for pump in pumps:
            pump.join(timeout=5)
    return ScriptResult(None if ended_by else process.returncode, ended_by, list(tail), command)


def _watch(
    process: subprocess.Popen[bytes],
    check_limits: Callable[[], None],
    interruption: SpotInterruption | None,
    note: Callable[[str], None],
) -> str | None:
    """Wait for the script; end its process group on a stop, a limit or a simulated spot interruption."""
    if interruption is not None:
        interruption.start()
    try:
        while True:
            try:
                process.wait(timeout=POLL_SECONDS)
                return None
            except subprocess.TimeoutExpired:
                pass
            try:
                check_limits()
            except JobStopped:
                _kill_group(process, STOP_GRACE_SECONDS)
                raise
            if interruption is not None and interruption.due():
                note("Simulated spot interruption: sending SIGTERM to the training script")
                _kill_group(process, STOP_GRACE_SECONDS)
                return "interruption"
    finally:
        # Whatever the script left running in its group (a stray child) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def failure_reason(result: ScriptResult, failure_file: Path) -> str:
    """SageMaker's AlgorithmError: what the script wrote to /opt/ml/output/failure, else its traceback."""
    written = failure_file.read_text(errors="replace").strip() if failure_file.is_file() else ""
    if written:
        return f"AlgorithmError: {written}"
    lines = [line for line in result.stderr_tail if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    message = "\n".join(lines[starts[-1] :] if starts else lines[-10:])
    code = result.returncode
    head = f'AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\nErrorMessage "'
    tail = f'"\nCommand "{shlex.join(result.command)}", exit code: {code}'
    budget = FAILURE_REASON_MAX - len(head) - len(tail)
    if len(message) > budget:
        message = message[-max(budget, 0) :]
    return (head + message + tail)[:FAILURE_REASON_MAX]


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the script's process group, SIGKILL it after the grace period: nothing is left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: IO[bytes], on_line: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b""):
        on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    stream.close()
