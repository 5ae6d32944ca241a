"""README.md's walkthrough, run as written: from the data and the marker to a prediction from the endpoint.

Read from README.md itself (the ```bash blocks after a ``<!-- walkthrough -->`` comment), so it cannot drift; run
by bash in a copy of the checkout's layout, with the exports ``shepherd local up`` prints and ``.venv-awscli``'s
AWS CLI v1 (SHEPHERD_AWS_CLI names another ``aws``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
AWS_CLI = Path(os.environ.get("SHEPHERD_AWS_CLI") or ROOT / ".venv-awscli" / "bin" / "aws")
SHEPHERD = Path(sys.executable).with_name("shepherd")
WALKTHROUGH = re.compile(r"^<!-- walkthrough -->\n```bash\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The walkthrough trains, registers and deploys the churn example: about 90 s here; room for a loaded machine.
WALKTHROUGH_SECONDS = 240
PROBABILITY = r"\d+(\.\d+)?(e-\d+)?"  # one line of the CSV answer (inference.py writes %.6g)


def walkthrough_commands(readme: str) -> str:
    """The walkthrough's shell commands: its marked ```bash blocks, in order, as one script."""
    return "\n".join(match.group(1) for match in WALKTHROUGH.finditer(readme))


def test_the_walkthrough_is_bash_that_goes_from_the_marker_to_a_prediction():
    # Given the README's walkthrough
    script = walkthrough_commands(README.read_text())

    # Then there is one, bash can parse it, and it uploads the marker as an object before it asks the endpoint
    assert script, "README.md has no ```bash block after a <!-- walkthrough --> comment"
    parsed = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30, check=False)
    assert parsed.returncode == 0, parsed.stderr
    assert "/dev/null" not in script, "the AWS CLI skips character devices: the marker would not be uploaded"
    marker = script.index("aws s3api put-object")
    assert "_READY" in script[marker:].splitlines()[0], "the marker is the put-object of the dataset's _READY"
    assert marker < script.index("aws sagemaker-runtime invoke-endpoint")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A working directory like the checkout, where the walkthrough's relative paths lead to the real files."""
    work = tmp_path / "checkout"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".shepherd":  # the test's local cloud writes its own state here
            (work / entry.name).symlink_to(entry)
    return work


@pytest.fixture
def exports(checkout: Path) -> Iterator[list[str]]:
    """``shepherd local up`` run in the checkout (on a free port); yields the export lines it prints."""
    log = checkout.parent / "local-up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(SHEPHERD), "local", "up", "--port", "0", "--quiet", "--template", str(ROOT / "template.yaml")],
            cwd=checkout,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "export AWS_ENDPOINT_URL=" not in log.read_text():  # printed at once with the other exports
            assert process.poll() is None, f"shepherd local up exited {process.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"shepherd local up is not ready: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("export ")]
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(WALKTHROUGH_SECONDS + 180)
def test_the_walkthrough_run_as_written_ends_with_a_prediction(checkout, exports, tmp_path):
    assert AWS_CLI.is_file(), f"no AWS CLI at {AWS_CLI}: run `make .venv-awscli/.installed` or set SHEPHERD_AWS_CLI"
    # Given a shell with the exports `shepherd local up` printed, the AWS CLI, and nothing of the user's AWS config
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{AWS_CLI.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
    }
    timed_trace = "PS4='+ ${EPOCHREALTIME} '"  # the trace shown on a failure says when each command ran
    script = "\n".join([timed_trace, *exports, walkthrough_commands(README.read_text())])
    before = set(os.listdir(checkout))

    # When the README's commands run in order, stopping at the first that fails
    output, trace = tmp_path / "stdout.txt", tmp_path / "trace.txt"
    with output.open("w") as out, trace.open("w") as err:
        shell = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", script],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            returncode = shell.wait(timeout=WALKTHROUGH_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
            returncode = None
    printed = output.read_text()
    cloud_log = (tmp_path / "local-up.log").read_text()
    story = f"{printed[-3000:]}\n--- trace ---\n{trace.read_text()[-3000:]}\n--- local cloud ---\n{cloud_log[-2000:]}"
    assert returncode == 0, f"the walkthrough {'ran over' if returncode is None else 'failed'}:\n{story}"

    # Then the lifecycle and the first deployment succeeded, and the endpoint answered one probability per row,
    # the new month-to-month customer far likelier to churn than the loyal one
    assert "ModelLifecycle: SUCCEEDED" in printed, story
    assert "Rollout: SUCCEEDED" in printed, story
    *_, risky, loyal = [float(line) for line in printed.splitlines() if re.fullmatch(PROBABILITY, line)]
    assert 0.5 < risky <= 1.0, story
    assert 0.0 <= loyal < 0.2, story
    # and nothing was written into the checkout, nor refused by IAM to the stack's roles on the way
    assert set(os.listdir(checkout)) - before == set(), "the walkthrough wrote into the checkout"
    decisions = [json.loads(line) for line in (checkout / ".shepherd/local/authz.jsonl").read_text().splitlines()]
    refused = [d for d in decisions if d["decision"] != "allow"]
    assert refused == [], refused[:3]
