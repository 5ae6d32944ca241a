"""House policy for the application's state machines: every Task retries, catches and times out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STATE_MACHINES = sorted((Path(__file__).resolve().parents[2] / "statemachines").glob("*.asl.json"))


def _tasks(states: dict) -> list[tuple[str, dict]]:
    found = []
    for name, state in states.items():
        if state.get("Type") == "Task":
            found.append((name, state))
        for branch in state.get("Branches", []):
            found += _tasks(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += _tasks(processor["States"])
    return found


def test_there_are_state_machines_to_check():
    assert STATE_MACHINES


@pytest.mark.parametrize("path", STATE_MACHINES, ids=lambda p: p.name)
def test_every_task_has_retry_catch_and_timeout(path):
    definition = json.loads(path.read_text())
    problems = [
        f"{name}: missing {key}"
        for name, state in _tasks(definition["States"])
        for key in ("Retry", "Catch", "TimeoutSeconds")
        if key not in state and not (key == "TimeoutSeconds" and "TimeoutSecondsPath" in state)
    ]
    assert problems == [], f"{path.name}: {problems}"


@pytest.mark.parametrize("path", STATE_MACHINES, ids=lambda p: p.name)
def test_retries_back_off_with_jitter_and_never_retry_everything(path):
    definition = json.loads(path.read_text())
    for name, state in _tasks(definition["States"]):
        for retrier in state.get("Retry", []):
            assert "States.ALL" not in retrier["ErrorEquals"], f"{name} retries every error"
            assert retrier.get("BackoffRate", 2.0) > 1, f"{name} retries without backoff"
            assert retrier.get("JitterStrategy") == "FULL", f"{name} retries without jitter"


@pytest.mark.parametrize("path", STATE_MACHINES, ids=lambda p: p.name)
def test_notification_subjects_fit_sns_100_characters(path):
    """SNS refuses a Subject over 100 characters; names (models, endpoints) are at most 63."""
    definition = json.loads(path.read_text())
    for name, state in _tasks(definition["States"]):
        parameters = state.get("Parameters", {})
        subject = parameters.get("Subject") or parameters.get("Subject.$")
        if subject is None:
            continue
        if "Subject.$" in parameters:
            template = subject.split("'")[1]
            assert "$$.Execution" not in subject, f"{name}: an execution name may be 80 characters"
            longest = len(template.replace("{}", "")) + 63 * template.count("{}")
        else:
            longest = len(subject)
        assert longest <= 100, f"{name}: subject may reach {longest} characters"


# What AWS's Step Functions guide lists as the Lambda service's transient errors, to be retried on every invoke.
LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


@pytest.mark.parametrize("path", STATE_MACHINES, ids=lambda p: p.name)
def test_every_lambda_invoke_retries_lambda_s_transient_errors(path):
    definition = json.loads(path.read_text())
    for name, state in _tasks(definition["States"]):
        if ":::lambda:invoke" not in state["Resource"]:
            continue
        retried = {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
        assert retried >= LAMBDA_TRANSIENT, f"{name} does not retry {sorted(LAMBDA_TRANSIENT - retried)}"
