"""Requests are checked against botocore's SageMaker model and refused in AWS's words."""

from __future__ import annotations

import pytest

from localcloud.sagemaker.validation import RequestInvalid, validate

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


def test_a_complete_request_passes():
    validate("CreateModelPackageGroup", {"ModelPackageGroupName": "churn"})


def test_missing_required_member_is_named_in_lower_camel_case():
    with pytest.raises(RequestInvalid) as caught:
        validate("CreateTrainingJob", {"RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": "s3://b/o"}})
    assert str(caught.value) == (
        "1 validation error detected: Value null at 'trainingJobName' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_several_problems_are_counted_and_joined():
    with pytest.raises(RequestInvalid) as caught:
        validate("CreateTrainingJob", {"TrainingJobName": "bad_name!", "OutputDataConfig": {"S3OutputPath": "s3://b"}})
    message = str(caught.value)
    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'roleArn' failed to satisfy constraint: Member must not be null" in message
    assert "Value 'bad_name!' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular" in message


def test_enum_and_range_constraints_on_nested_members():
    request = {
        "TrainingJobName": "ok",
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
        "ResourceConfig": {"InstanceType": "ml.banana", "InstanceCount": -1, "VolumeSizeInGB": 1},
    }
    with pytest.raises(RequestInvalid) as caught:
        validate("CreateTrainingJob", request)
    message = str(caught.value)
    assert (
        "at 'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum value set" in message
    )
    assert (
        "Value '-1' at 'resourceConfig.instanceCount' failed to satisfy constraint: Member must have value "
        "greater than or equal to 0" in message
    )


def test_ill_typed_and_unknown_members_are_refused():
    with pytest.raises(RequestInvalid) as caught:
        validate("DescribeTrainingJob", {"TrainingJobName": 42, "Colour": "blue"})
    message = str(caught.value)
    assert "at 'trainingJobName' failed to satisfy constraint: Member must be a string" in message
    assert "Unknown parameter 'colour'" in message


def test_list_members_are_checked_with_their_index():
    with pytest.raises(RequestInvalid) as caught:
        validate(
            "AddTags", {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "Tags": [{"Value": "v"}]}
        )
    assert "Value null at 'tags.1.member.key' failed to satisfy constraint: Member must not be null" in str(
        caught.value
    )


def test_unknown_operation_is_not_validated_here():
    validate("NoSuchOperation", {"anything": 1})
