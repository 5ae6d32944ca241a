"""StartRollout and StartLifecycle on AWS's events (events/): one execution per approved package, per dataset marker."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

import pytest
from shepherd.events.s3 import MalformedEvent

from .conftest import BUCKET, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def start_rollout(load_handler: Callable[[str], ModuleType], rollout_state_machine: str) -> ModuleType:
    return load_handler("start_rollout")


@pytest.fixture
def start_lifecycle(load_handler: Callable[[str], ModuleType], lifecycle_state_machine: str) -> ModuleType:
    return load_handler("start_lifecycle")


def executions(aws: Cloud, state_machine: str) -> list[dict[str, str]]:
    listed = aws.stepfunctions.list_executions(stateMachineArn=state_machine)["executions"]
    return [aws.stepfunctions.describe_execution(executionArn=e["executionArn"]) for e in listed]


# ---------------------------------------------------------------- StartRollout


def test_an_approved_package_starts_its_rollout(
    aws: Cloud, start_rollout: ModuleType, rollout_state_machine: str
) -> None:
    # Given SageMaker's event for package churn/2 approved
    event = sample_event("start_rollout")
    # When StartRollout receives it
    result = start_rollout.handler(event, aws.context)
    # Then one execution, named for the group and version, rolls the package out
    package = event["detail"]["ModelPackageArn"]
    assert result["started"] is True
    assert result["execution_name"].startswith("churn-v2-")
    [execution] = executions(aws, rollout_state_machine)
    assert execution["name"] == result["execution_name"]
    assert json.loads(execution["input"]) == {"ModelPackageArn": package}


def test_an_approval_sent_again_starts_nothing_new(
    aws: Cloud, start_rollout: ModuleType, rollout_state_machine: str
) -> None:
    first = start_rollout.handler(sample_event("start_rollout"), aws.context)
    again = start_rollout.handler(sample_event("start_rollout"), LambdaContext(aws_request_id="duplicate"))
    assert again["execution_name"] == first["execution_name"]
    assert [e["name"] for e in executions(aws, rollout_state_machine)] == [first["execution_name"]]


def test_a_package_that_is_not_approved_starts_nothing(
    aws: Cloud, start_rollout: ModuleType, rollout_state_machine: str
) -> None:
    # SageMaker sends the event on every change of a package: here churn/2 was Rejected
    event = sample_event("sagemaker_model_package_state_change")
    result = start_rollout.handler(event, aws.context)
    assert result == {"started": False, "ignored": f"{event['detail']['ModelPackageArn']}: Rejected"}
    assert executions(aws, rollout_state_machine) == []


# ---------------------------------------------------------------- StartLifecycle


def test_a_dataset_marker_starts_the_model_s_lifecycle(
    aws: Cloud, start_lifecycle: ModuleType, lifecycle_state_machine: str
) -> None:
    # Given S3's Object Created event for training/churn/coldstart/_READY
    event = sample_event("start_lifecycle")
    # When StartLifecycle receives it
    result = start_lifecycle.handler(event, aws.context)
    # Then one execution trains on that dataset, identified by the marker's version
    assert result["started"] is True
    [execution] = executions(aws, lifecycle_state_machine)
    assert execution["name"] == result["execution_name"]
    assert json.loads(execution["input"]) == {
        "model": "churn",
        "dataset": "coldstart",
        "bucket": BUCKET,
        "prefix": "training/churn/coldstart/",
        "marker": "training/churn/coldstart/_READY",
        "marker_version": event["detail"]["object"]["version-id"],
    }


def test_a_data_file_is_not_a_marker(aws: Cloud, start_lifecycle: ModuleType, lifecycle_state_machine: str) -> None:
    # The rule lets only markers through; a data file delivered by hand is refused, saying what a marker is
    with pytest.raises(MalformedEvent, match="_READY"):
        start_lifecycle.handler(sample_event("s3_object_created"), aws.context)
    assert executions(aws, lifecycle_state_machine) == []
