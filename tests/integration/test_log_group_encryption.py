"""A log group's KmsKeyId is checked as CloudWatch Logs checks it: the key must exist, be enabled, and its key policy
must let logs.<region>.amazonaws.com use it with the group's ARN as encryption context ("Encrypt log data in
CloudWatch Logs using AWS Key Management Service", AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud.deployer import Deployer
from localcloud.template import TemplateError, load_template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GROUP_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:{}"
# AWS's refusal (hashicorp/terraform-provider-aws#29282, ministryofjustice/modernisation-platform#7870).
REFUSED = "The specified KMS key does not exist or is not allowed to be used with Arn '{}'"


@pytest.fixture(scope="module")
def app_body() -> dict[str, Any]:
    """The application's template.yaml, expanded as CloudFormation sees it."""
    return load_template(ROOT / "template.yaml", {"StageName": "lg"}, "us-east-1", "lg").body


def _key_and_group(body: dict[str, Any], tmp_path: Path, statements: Any = None) -> Path:
    """The real template's DataKey and StartLifecycleLogGroup alone (its key statements replaced if given)."""
    resources = {name: copy.deepcopy(body["Resources"][name]) for name in ("DataKey", "StartLifecycleLogGroup")}
    if statements is not None:
        resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"] = statements(
            resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
        )
    path = tmp_path / "template.json"
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": body["Parameters"], "Resources": resources}
    path.write_text(json.dumps(template))
    return path


def _group(cloud: Any, name: str) -> dict[str, Any]:
    (group,) = cloud.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return group


def test_the_template_key_statement_lets_cloudwatch_logs_encrypt_its_groups(cloud, app_body, tmp_path):
    Deployer(cloud, "lgok").deploy(_key_and_group(app_body, tmp_path), {"StageName": "lgok"})

    group = _group(cloud, "/aws/lambda/shepherd-lgok-start-lifecycle")
    key = cloud.client("kms").describe_key(KeyId=group["kmsKeyId"])["KeyMetadata"]
    assert group["kmsKeyId"] == key["Arn"]
    assert key["Description"] == "Shepherd data at rest (S3 data bucket, logs)."


def test_a_key_policy_without_the_logs_statement_is_refused_naming_the_group(cloud, app_body, tmp_path, denials):
    denials.expect("kms:GenerateDataKey")

    def without_logs(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in statements if s.get("Sid") != "CloudWatchLogsShepherdGroups"]

    with pytest.raises(TemplateError) as refused:
        Deployer(cloud, "lgno").deploy(_key_and_group(app_body, tmp_path, without_logs), {"StageName": "lgno"})

    name = "/aws/lambda/shepherd-lgno-start-lifecycle"
    assert "StartLifecycleLogGroup" in str(refused.value)
    assert "AccessDeniedException" in str(refused.value)
    assert REFUSED.format(GROUP_ARN.format(name)) in str(refused.value)
    assert not cloud.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]


def test_a_key_statement_held_to_other_log_groups_is_refused(cloud, app_body, tmp_path, denials):
    denials.expect("kms:GenerateDataKey")

    def other_groups(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for statement in statements:
            if statement.get("Sid") == "CloudWatchLogsShepherdGroups":
                statement["Condition"] = {
                    "ArnLike": {"kms:EncryptionContext:aws:logs:arn": GROUP_ARN.format("/aws/lambda/other-*")}
                }
        return statements

    with pytest.raises(TemplateError) as refused:
        Deployer(cloud, "lgot").deploy(_key_and_group(app_body, tmp_path, other_groups), {"StageName": "lgot"})

    assert REFUSED.format(GROUP_ARN.format("/aws/lambda/shepherd-lgot-start-lifecycle")) in str(refused.value)


def _key(cloud: Any, allowed_group: str | None) -> str:
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}
    ]
    if allowed_group:  # the guide's statement, with its ArnEquals on one group
        statements.append(
            {
                "Effect": "Allow",
                "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": GROUP_ARN.format(allowed_group)}},
            }
        )
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return str(cloud.client("kms").create_key(Policy=policy)["KeyMetadata"]["Arn"])


def _error(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]


def test_create_log_group_through_the_api_checks_the_key(cloud, denials):
    denials.expect("kms:GenerateDataKey")
    logs = cloud.client("logs")
    key = _key(cloud, "api-allowed")

    logs.create_log_group(logGroupName="api-allowed", kmsKeyId=key)
    refused = _error(logs.create_log_group, logGroupName="api-other", kmsKeyId=key)

    assert _group(cloud, "api-allowed")["kmsKeyId"] == key
    assert refused == {"Code": "AccessDeniedException", "Message": REFUSED.format(GROUP_ARN.format("api-other"))}


def test_a_missing_or_disabled_key_is_an_invalid_parameter(cloud):
    """CreateLogGroup API reference: "the KMS key does not exist or the KMS key is disabled"."""
    logs = cloud.client("logs")
    disabled = _key(cloud, "api-allowed")
    cloud.client("kms").disable_key(KeyId=disabled.rsplit("/", 1)[1])  # moto 5.2.5 fails on the ARN here
    missing = disabled.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"

    assert _error(logs.create_log_group, logGroupName="api-allowed-x", kmsKeyId=missing)["Code"] == (
        "InvalidParameterException"
    )
    assert _error(logs.create_log_group, logGroupName="api-allowed-y", kmsKeyId=disabled)["Code"] == (
        "InvalidParameterException"
    )


def test_associate_kms_key_checks_the_key_and_sets_it(cloud, denials):
    denials.expect("kms:GenerateDataKey")
    logs = cloud.client("logs")
    logs.create_log_group(logGroupName="api-associated")
    allowing = _key(cloud, "api-associated")

    refused = _error(logs.associate_kms_key, logGroupName="api-associated", kmsKeyId=_key(cloud, None))
    unencrypted = _group(cloud, "api-associated")
    logs.associate_kms_key(logGroupName="api-associated", kmsKeyId=allowing)

    assert refused["Code"] == "AccessDeniedException"
    assert "kmsKeyId" not in unencrypted
    assert _group(cloud, "api-associated")["kmsKeyId"] == allowing
