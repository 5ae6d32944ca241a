"""The Rollout function's failure-path actions: describe_failure (the notification) and release_unstarted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.test_rollout_steps import CONFIG

from .conftest import Cloud

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
ROOT = Path(__file__).resolve().parents[3]
ACTION = "describe_failure"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


@pytest.fixture
def rollout(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("rollout")


def test_a_prepare_failure_is_described_from_step_functions_error_and_cause(aws: Cloud, rollout: ModuleType) -> None:
    # Given DescribePrepareFailure's payload: Prepare's error as its Catch recorded it, no rollout state
    cause = {
        "errorMessage": "s3://shepherd-data/models/churn/shepherd.yaml does not exist: no config for churn",
        "errorType": "InvalidInput",
        "requestId": "0f4c7d2e-6f1a-4c55-9a57-2b8e7d1c9e10",
        "stackTrace": ['  File "/var/task/app.py", line 54, in handler\n    return steps.prepare(\n'],
    }
    event = {
        "action": ACTION,
        "event": "RolloutFailed",
        "error": {"Error": "InvalidInput", "Cause": json.dumps(cause)},
        "facts": {
            "execution": "arn:aws:states:us-east-1:123456789012:execution:shepherd-test-rollout:x",
            "package": PACKAGE,
        },
    }
    # When the Rollout function describes it
    told = rollout.handler(event, aws.context)
    # Then every key the state machine's describing states read is there (a missing one fails the execution),
    # the reason first and on one line
    states = json.loads((ROOT / "statemachines" / "rollout.asl.json").read_text())["States"]
    describing = [s for s in states.values() if s.get("Parameters", {}).get("Payload", {}).get("action") == ACTION]
    assert len(describing) == 4
    for state in describing:
        assert [v.removeprefix("$.Payload.") for v in state["ResultSelector"].values()] == list(told)
    assert told["reason"] == (
        "The rollout of churn v3 did not start: InvalidInput: s3://shepherd-data/models/churn/shepherd.yaml does "
        "not exist: no config for churn"
    )
    assert "stackTrace" not in json.dumps(told)


def test_release_unstarted_frees_the_lock_a_crashed_prepare_took(aws: Cloud, rollout: ModuleType) -> None:
    # Given an Approved package of churn, its config, and the lock its Prepare took before it died
    aws.sagemaker.create_model_package_group(ModelPackageGroupName="churn")
    container = {"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"}
    arn = aws.sagemaker.create_model_package(
        ModelPackageGroupName="churn",
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    aws.put("models/churn/shepherd.yaml", CONFIG)
    rollout.deps.store.acquire("churn", "churn-run", arn, 1.0e9)
    event = {"action": "release_unstarted", "ModelPackageArn": arn, "Overrides": None, "run": "churn-run"}
    # When ReleaseUnstarted runs, twice (Step Functions may retry it)
    first, again = rollout.handler(event, aws.context), rollout.handler(event, aws.context)
    # Then the lock is free and the second run changes nothing
    assert first == {"released": True, "endpoint": "churn"}
    assert again == {"released": False}
    assert rollout.deps.store.lock_of("churn") is None
