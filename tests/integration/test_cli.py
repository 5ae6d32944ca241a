"""`shepherd local up` as a user runs it: a real process, real signals, clear errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from .conftest import FIXTURES, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHEPHERD = Path(sys.executable).with_name("shepherd")


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SHEPHERD), "local", "up", "--port", "0", "--quiet", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        match = re.search(r"ready at (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
        assert time.monotonic() < deadline, "local cloud did not become ready"
    raise AssertionError(f"exited before ready: {process.wait()} {process.stderr.read() if process.stderr else ''}")


def _run_failing(tmp_path: Path, template: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SHEPHERD), "local", "up", "--port", "0", "--quiet", "--template", str(template), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_upload_runs_our_handler_trigger_fires_rules_and_sigterm_leaves_no_worker(tmp_path):
    # Given the local cloud started by the CLI with the fixture app
    process = _start(tmp_path, "--template", str(FIXTURES / "app" / "template.yaml"), "--stack-name", "cli")
    try:
        endpoint = _wait_ready(process)
        outputs = json.loads((tmp_path / ".shepherd/local/outputs.json").read_text())
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=endpoint)
        sfn = session.client("stepfunctions", endpoint_url=endpoint)
        # When a file is uploaded
        s3.put_object(Bucket=outputs["BucketName"], Key="incoming/cli.csv", Body=b"x")
        executions = wait_for(lambda: sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"])
        execution = wait_for(
            lambda: (
                (d := sfn.describe_execution(executionArn=executions[0]["executionArn"]))
                and d["status"] != "RUNNING"
                and d
            )
        )
        # Then the execution succeeds with our handler's output
        assert execution["status"] == "SUCCEEDED"
        assert json.loads(execution["output"])["result"]["echo"]["key"] == "incoming/cli.csv"
        with urllib.request.urlopen(f"{endpoint}/_shepherd/health", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ready"
        workers = [
            int(p)
            for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        ]
        assert workers, "a warm Lambda worker should be running"
        # And `shepherd local trigger`, run elsewhere with the endpoint local up exports, lists and fires rules
        listed, fired, wrong = _triggers(tmp_path, endpoint)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    # And no worker outlives the server (by more than half a second)
    wait_for(lambda: not [pid for pid in workers if _alive(pid)], timeout=0.5, interval=0.02)
    # And every trigger answer came from that endpoint, not from port 4566
    assert listed.returncode == 0, listed.stderr
    assert "cli-TickFunctionEveryMinute" in listed.stdout.split()
    assert fired.returncode == 0, fired.stderr
    assert "fired cli-TickFunctionEveryMinute: 1 target(s)" in fired.stdout
    assert wrong.returncode == 1
    assert "no enabled schedule rule named 'cli-Tick'" in wrong.stderr
    assert "cli-TickFunctionEveryMinute" in wrong.stderr


def _triggers(tmp_path: Path, endpoint: str) -> list[subprocess.CompletedProcess[str]]:
    """The rules listed, one fired and one mistyped, from another directory with AWS_ENDPOINT_URL exported."""
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return [
        subprocess.run(
            [str(SHEPHERD), "local", "trigger", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for args in ((), ("cli-TickFunctionEveryMinute",), ("cli-Tick",))
    ]


def test_unsupported_resource_type_fails_the_deploy_naming_it(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "bad" / "unsupported.yaml")
    assert result.returncode == 1
    assert "Box (AWS::EC2::Instance)" in result.stderr
    assert "Traceback" not in result.stderr


def test_template_that_does_not_parse_fails_naming_the_file(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "bad" / "unparsable.yaml")
    assert result.returncode == 1
    assert "unparsable.yaml" in result.stderr
    assert "does not parse" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_code_uri_fails_naming_the_logical_id(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "bad" / "missing_code.yaml")
    assert result.returncode == 1
    assert "Orphan" in result.stderr
    assert "CodeUri" in result.stderr


def test_invalid_asl_fails_naming_the_file_and_the_logical_id(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "bad" / "invalid_asl.yaml")
    assert result.returncode == 1
    assert "Broken" in result.stderr
    assert "broken.asl.json" in result.stderr
    assert "Nowhere" in result.stderr


def test_unknown_parameter_fails_naming_it(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "app" / "template.yaml", "--param", "Colour=blue")
    assert result.returncode == 1
    assert "Colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_param_flag_is_refused(tmp_path):
    result = _run_failing(tmp_path, FIXTURES / "app" / "template.yaml", "--param", "novalue")
    assert result.returncode == 1
    assert "Key=Value" in result.stderr
