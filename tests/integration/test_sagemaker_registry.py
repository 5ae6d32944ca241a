"""The local SageMaker's models and Model Registry through boto3, with AWS's errors and events."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.event_contract import assert_documented

from .conftest import wait_for

pytestmark = pytest.mark.integration
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


@pytest.fixture
def group(cloud):
    name = f"churn-{uuid.uuid4().hex[:8]}"
    cloud.client("sagemaker").create_model_package_group(ModelPackageGroupName=name)
    return name


def _package(cloud, group, **extra):
    spec = {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    return cloud.client("sagemaker").create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=spec, **extra
    )["ModelPackageArn"]


def test_packages_are_versioned_within_their_group(cloud, group):
    first, second = _package(cloud, group), _package(cloud, group)
    assert first.endswith(f"model-package/{group}/1")
    assert second.endswith(f"model-package/{group}/2")
    listed = cloud.client("sagemaker").list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in listed] == [1, 2]
    assert {p["ModelApprovalStatus"] for p in listed} == {"PendingManualApproval"}


def test_a_repeated_client_token_returns_the_package_it_created(cloud, group):
    # ClientToken makes CreateModelPackage idempotent (RegisterModel relies on it for a crashed retry)
    first = _package(cloud, group, ClientToken="run-1")
    again = _package(cloud, group, ClientToken="run-1")
    other = _package(cloud, group, ClientToken="run-2")
    assert again == first != other
    listed = cloud.client("sagemaker").list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert len(listed) == 2


def test_approval_updates_the_package_and_emits_a_state_change_event(cloud, group):
    sqs, events = cloud.client("sqs"), cloud.client("events")
    queue_url = sqs.create_queue(QueueName=f"q-{group}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name=f"r-{group}",
        EventPattern=json.dumps(
            {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]},
            }
        ),
    )
    events.put_targets(Rule=f"r-{group}", Targets=[{"Id": "q", "Arn": queue_arn}])
    arn = _package(cloud, group, ModelApprovalStatus="PendingManualApproval")
    cloud.client("sagemaker").update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="metrics gate passed"
    )
    described = cloud.client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "metrics gate passed"
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages"))[0]
    event = json.loads(message["Body"])
    assert event["source"] == "aws.sagemaker"
    assert event["resources"] == [arn]
    assert event["detail"]["ModelPackageArn"] == arn
    assert isinstance(event["detail"]["CreationTime"], int)
    assert event["detail"]["UpdatedModelPackageFields"] == ["ModelApprovalStatus", "ApprovalDescription"]
    assert_documented(event)


def test_unknown_group_and_package_errors(cloud):
    sagemaker = cloud.client("sagemaker")
    with pytest.raises(sagemaker.exceptions.ClientError, match="ModelPackageGroup nope does not exist"):
        _package(cloud, "nope")
    with pytest.raises(sagemaker.exceptions.ClientError, match="ModelPackage nope-package does not exist"):
        sagemaker.describe_model_package(ModelPackageName="nope-package")


def test_models_create_describe_list_delete(cloud):
    sagemaker = cloud.client("sagemaker")
    name = f"model-{uuid.uuid4().hex[:8]}"
    container = {
        "Image": IMAGE,
        "ModelDataUrl": "s3://bucket/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
    }
    arn = sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)["ModelArn"]
    assert sagemaker.describe_model(ModelName=name)["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py"
    }
    assert arn in [m["ModelArn"] for m in sagemaker.list_models(NameContains=name)["Models"]]
    with pytest.raises(sagemaker.exceptions.ClientError, match="Cannot create already existing model"):
        sagemaker.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    sagemaker.delete_model(ModelName=name)
    with pytest.raises(sagemaker.exceptions.ClientError, match="Could not find model"):
        sagemaker.describe_model(ModelName=name)


def test_tags_round_trip(cloud, group):
    sagemaker = cloud.client("sagemaker")
    arn = _package(cloud, group, Tags=[{"Key": "team", "Value": "risk"}])
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "dev"}])
    assert {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]} == {
        "team": "risk",
        "stage": "dev",
    }
