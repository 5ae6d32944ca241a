"""ModelLifecycle's outcome states (statemachines/model_lifecycle.asl.json) on moto's Step Functions engine:
a skipped dataset succeeds saying which package it made; a failure ends with a one-line reason."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "model_lifecycle.asl.json"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/lifecycle"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


def machine(start: str, topic_arn: str) -> str:
    """The lifecycle's states reachable from ``start``, the SNS topic substituted."""
    states = json.loads(ASL.read_text().replace("${Partition}", "aws").replace("${NotificationTopicArn}", topic_arn))
    return json.dumps({"StartAt": start, "States": states["States"]})


class Engine:
    def __init__(self) -> None:
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        self.topic = sns.create_topic(Name="notifications")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="seen")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(
            TopicArn=self.topic,
            Protocol="sqs",
            Endpoint=queue_arn["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )

    def run(self, start: str, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(DescribeExecution, the notification sent) of one execution from ``start`` with ``given`` as input."""
        arn = self.sfn.create_state_machine(
            name=f"m{time.monotonic_ns()}", definition=machine(start, self.topic), roleArn=ROLE
        )
        execution = self.sfn.start_execution(stateMachineArn=arn["stateMachineArn"], input=json.dumps(given))
        described = self.sfn.describe_execution(executionArn=execution["executionArn"])
        while described["status"] == "RUNNING":
            time.sleep(0.02)
            described = self.sfn.describe_execution(executionArn=execution["executionArn"])
        (message,) = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)["Messages"]
        self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return described, json.loads(message["Body"])


@pytest.fixture
def engine() -> Iterator[Engine]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield Engine()


def test_a_dataset_already_trained_succeeds_saying_which_package_it_made(engine: Engine) -> None:
    # Given PrepareTraining's answer for a dataset already trained into version 3
    reason = f"already trained: {PACKAGE} (version 3, Approved) was made from the same data, code and config by r1"
    prepared = {
        "skipped": True,
        "model": "churn",
        "run": "r2",
        "reason": reason,
        "detail": 'To retrain anyway, start ModelLifecycle by hand with "force": true in its input.',
        "already_trained": {
            "model_package_arn": PACKAGE,
            "version": 3,
            "approval_status": "Approved",
            "execution": "r1",
        },
    }
    # When the lifecycle goes on from PrepareTraining's answer
    described, notification = engine.run("AlreadyTrained", prepared)
    # Then the execution succeeds with the skip as its output, and the notification leads with the same reason
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert (output["event"], output["reason"], output["package"]) == ("TrainingSkipped", reason, PACKAGE)
    assert list(notification)[:3] == ["reason", "detail", "event"]
    assert notification == output


def test_a_failure_that_cannot_be_described_still_ends_and_notifies_reason_first(engine: Engine) -> None:
    # Given DescribeFailure catches every error of its function into $.describe_error and goes on plainly
    # (checked on the definition: how moto's Lambda fails an invocation depends on what patched it before)
    describe = json.loads(ASL.read_text())["States"]["DescribeFailure"]
    assert describe["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.describe_error", "Next": "DescribeFailurePlainly"}
    ]
    given = {
        "model": "churn",
        "error": {"Error": "TrainingJobFailed", "Cause": "Training job j failed: x"},
        "describe_error": {"Error": "Lambda.ResourceNotFoundException", "Cause": "Function not found"},
    }
    # When the failure path runs on from there
    described, notification = engine.run("DescribeFailurePlainly", given)
    # Then the execution fails with Step Functions' own one-line reason as its cause, and the notification leads
    # with it
    reason = "TrainingJobFailed: a step failed, and so did describing it; the execution history has both"
    assert (described["status"], described["error"], described["cause"]) == ("FAILED", "ModelLifecycleFailed", reason)
    assert list(notification)[:3] == ["reason", "detail", "event"]
    assert (notification["reason"], notification["error"]) == (reason, "TrainingJobFailed")
