"""AWS's IAM policy evaluation logic, as localcloud.iam.policy implements it for the local cloud's principals."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from localcloud.iam import Check, Decision, Principal
from localcloud.iam import policy as iam_policy
from localcloud.iam.policy import PolicyError, Statement, evaluate, message, parse_policy
from localcloud.template import _read_yaml

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/shepherd-dev-StartJobRole"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/shepherd-dev-StartJobRole/shepherd-dev-StartJob"
ROLE = Principal(arn=SESSION_ARN, role_arn=ROLE_ARN, account=ACCOUNT, service="lambda.amazonaws.com")
BUCKET = "arn:aws:s3:::bucket"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
GET = Check("s3:GetObject", f"{BUCKET}/models/a")
DECRYPT = Check("kms:Decrypt", KEY_ARN)


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version:
        document["Version"] = version
    return document


def allow(action: Any, resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any, resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def allowed(check: Check, *statements: dict[str, Any], **context: Any) -> bool:
    return evaluate(ROLE, check, [doc(*statements)], context=context).allowed


# ---------------------------------------------------------------------------------------------- evaluation logic


def test_an_identity_based_policy_allows():
    decision = evaluate(ROLE, GET, [doc(allow("s3:GetObject", f"{BUCKET}/models/*"))])
    assert decision == Decision(True, "allow", "")


def test_nothing_allows_so_the_request_is_implicitly_denied():
    decision = evaluate(ROLE, GET, [doc(allow("s3:PutObject", f"{BUCKET}/*"))])
    assert decision == Decision(
        False, "implicit-deny", "because no identity-based policy allows the s3:GetObject action"
    )
    assert evaluate(ROLE, GET, []).kind == "implicit-deny"


def test_an_explicit_deny_in_an_identity_based_policy_beats_an_allow_in_another():
    decision = evaluate(ROLE, GET, [doc(allow("s3:*", f"{BUCKET}/*")), doc(deny("s3:GetObject", f"{BUCKET}/models/*"))])
    assert decision == Decision(False, "explicit-deny", "with an explicit deny in an identity-based policy")


def test_a_bucket_policy_deny_beats_an_identity_allow():
    bucket_policy = doc(deny("s3:*", [BUCKET, f"{BUCKET}/*"], Principal="*"))
    decision = evaluate(ROLE, GET, [doc(allow("s3:GetObject", f"{BUCKET}/*"))], bucket_policy)
    assert decision == Decision(False, "explicit-deny", "with an explicit deny in a resource-based policy")


def test_a_resource_based_policy_naming_the_role_session_allows_on_its_own():
    bucket_policy = doc(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": SESSION_ARN}))
    assert evaluate(ROLE, GET, [], bucket_policy).allowed


def test_a_resource_based_policy_naming_the_role_allows_on_its_own():
    # policy-eval-denyallow: a grant to the role ARN is limited by a permissions boundary or session policy (none
    # here), not by an implicit deny in the role's identity-based policies.
    bucket_policy = doc(
        allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": [f"arn:aws:iam::{OTHER_ACCOUNT}:root", ROLE_ARN]})
    )
    assert evaluate(ROLE, GET, [], bucket_policy).allowed


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ["*"]}])
def test_a_resource_based_policy_for_everyone_allows_on_its_own(principal):
    assert evaluate(ROLE, GET, [], doc(allow("s3:GetObject", f"{BUCKET}/*", Principal=principal))).allowed


@pytest.mark.parametrize("account", [ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"])
def test_a_resource_based_policy_naming_the_account_delegates_to_the_identity_based_policy(account):
    bucket_policy = doc(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": account}))
    denied = evaluate(ROLE, GET, [], bucket_policy)
    assert denied == Decision(False, "implicit-deny", "because no identity-based policy allows the s3:GetObject action")
    assert evaluate(ROLE, GET, [doc(allow("s3:GetObject", f"{BUCKET}/models/*"))], bucket_policy).allowed


def test_a_deny_naming_the_account_denies_the_role_session():
    bucket_policy = doc(deny("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": ACCOUNT}))
    assert evaluate(ROLE, GET, [doc(allow("s3:*", "*"))], bucket_policy).kind == "explicit-deny"


@pytest.mark.parametrize(
    "principal",
    [
        {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        {"AWS": OTHER_ACCOUNT},
        {"AWS": f"arn:aws:iam::{ACCOUNT}:role/another-role"},
        {"Service": "lambda.amazonaws.com"},
        {"Service": ["sagemaker.amazonaws.com", "states.amazonaws.com"]},
        {"Federated": "cognito-identity.amazonaws.com"},
    ],
)
def test_a_resource_based_policy_naming_someone_else_neither_allows_nor_denies(principal):
    assert not evaluate(ROLE, GET, [], doc(allow("s3:GetObject", "*", Principal=principal))).allowed
    assert evaluate(ROLE, GET, [doc(allow("s3:*"))], doc(deny("s3:*", "*", Principal=principal))).allowed


def test_a_resource_policy_statement_without_a_principal_names_nobody():
    assert not evaluate(ROLE, GET, [], doc(allow("s3:GetObject"))).allowed


def test_a_deny_with_not_principal_spares_the_session_only_when_session_role_and_account_are_listed():
    everyone = [doc(allow("s3:*"))]
    spared = {"AWS": [SESSION_ARN, ROLE_ARN, f"arn:aws:iam::{ACCOUNT}:root"]}
    assert evaluate(ROLE, GET, everyone, doc(deny("s3:*", "*", NotPrincipal=spared))).allowed
    only_role = {"AWS": [ROLE_ARN, f"arn:aws:iam::{ACCOUNT}:root"]}
    assert evaluate(ROLE, GET, everyone, doc(deny("s3:*", "*", NotPrincipal=only_role))).kind == "explicit-deny"


def test_an_allow_with_not_principal_grants_everyone_not_listed():
    other = {"AWS": f"arn:aws:iam::{ACCOUNT}:role/another-role"}
    assert evaluate(ROLE, GET, [], doc(allow("s3:GetObject", "*", NotPrincipal=other))).allowed
    assert not evaluate(ROLE, GET, [], doc(allow("s3:GetObject", "*", NotPrincipal={"AWS": ROLE_ARN}))).allowed


def test_principal_in_an_identity_based_policy_is_not_consulted():
    assert evaluate(ROLE, GET, [doc(allow("s3:GetObject", Principal={"AWS": OTHER_ACCOUNT}))]).allowed


# ---------------------------------------------------------------------------------------------- KMS key policies

ROOT_STATEMENT = allow("kms:*", "*", Sid="EnableIAM", Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
USES_THE_KEY = doc(allow(["kms:Decrypt", "kms:GenerateDataKey"], KEY_ARN))


def kms(identity: list[Any], key_policy: Any) -> Decision:
    return evaluate(ROLE, DECRYPT, identity, key_policy, resource_policy_required=True)


def test_a_key_policy_without_the_account_statement_denies_even_with_an_identity_allow():
    key_policy = doc(allow("kms:*", "*", Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:role/KeyAdmin"}))
    assert kms([USES_THE_KEY], key_policy) == Decision(
        False, "implicit-deny", "because no resource-based policy allows the kms:Decrypt action"
    )
    assert kms([USES_THE_KEY], None).reason == "because no resource-based policy allows the kms:Decrypt action"


def test_a_key_policy_with_the_account_statement_allows_only_with_an_identity_allow():
    key_policy = doc(ROOT_STATEMENT)
    assert kms([USES_THE_KEY], key_policy).allowed
    assert kms([doc(allow("kms:Encrypt", KEY_ARN))], key_policy) == Decision(
        False, "implicit-deny", "because no identity-based policy allows the kms:Decrypt action"
    )


def test_the_account_statement_enables_iam_only_for_the_actions_it_covers():
    key_policy = doc(allow("kms:Describe*", "*", Principal={"AWS": ACCOUNT}))
    assert kms([USES_THE_KEY], key_policy).reason == "because no resource-based policy allows the kms:Decrypt action"


def test_a_key_policy_naming_the_role_allows_on_its_own():
    assert kms([], doc(allow("kms:Decrypt", "*", Principal={"AWS": ROLE_ARN}))).allowed
    assert kms([], doc(allow("kms:Decrypt", "*", Principal={"AWS": SESSION_ARN}))).allowed


def test_denies_in_either_policy_still_win_for_kms():
    key_policy = doc(ROOT_STATEMENT, deny("kms:Decrypt", "*", Principal="*"))
    assert kms([USES_THE_KEY], key_policy).reason == "with an explicit deny in a resource-based policy"
    iam_deny = doc(deny("kms:*", "*"))
    assert (
        kms([USES_THE_KEY, iam_deny], doc(ROOT_STATEMENT)).reason == "with an explicit deny in an identity-based policy"
    )


# ---------------------------------------------------------------------------------------------- actions, resources


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (f"{BUCKET}/models/a", True),
        (f"{BUCKET}/models/a/b", True),
        (f"{BUCKET}/models/", True),
        (f"{BUCKET}/models", False),
        (f"{BUCKET}/training/x", False),
        ("arn:aws:s3:::bucket2/models/x", False),
        ("arn:aws:s3:::Bucket/models/x", False),  # resources are case-sensitive
        (BUCKET, False),
        ("*", False),
    ],
)
def test_a_resource_scoped_allow_matches_its_arns_and_nothing_else(resource, expected):
    assert allowed(Check("s3:GetObject", resource), allow("s3:GetObject", f"{BUCKET}/models/*")) is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        (f"{BUCKET}/batch/*/output/*", f"{BUCKET}/batch/job-1/output/part-0.out", True),
        (f"{BUCKET}/batch/*/output/*", f"{BUCKET}/batch/a/b/output/c", True),  # * spans "/"
        (f"{BUCKET}/batch/*/output/*", f"{BUCKET}/batch/job-1/input/x", False),
        (f"{BUCKET}/models/?", f"{BUCKET}/models/a", True),
        (f"{BUCKET}/models/?", f"{BUCKET}/models/ab", False),
        (
            "arn:aws:ecr:us-east-1:*:repository/sagemaker-xgboost",
            "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-xgboost",
            True,
        ),
        (
            "arn:aws:ecr:us-east-1:*:repository/sagemaker-xgboost",
            "arn:aws:ecr:us-east-1:683313688378:repository/other",
            False,
        ),
        # a * that ends its segment expands beyond the colons; one inside a segment does not
        ("arn:aws:sqs:us-east-1:*", f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue", True),
        ("arn:aws:sqs:us-east-1:*queue", f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue", False),
        (
            f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/*",
            f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:job/algo-1",
            True,
        ),
        ("*", f"{BUCKET}/anything", True),
    ],
)
def test_resource_wildcards_work_within_arn_segments(pattern, resource, expected):
    assert allowed(Check("s3:GetObject", resource), allow("s3:GetObject", pattern)) is expected


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("s3:GetObject", True),
        ("s3:getobject", True),
        ("S3:GETOBJECT", True),
        ("s3:GetObjectVersion", False),
        ("s3:PutObject", False),
    ],
)
def test_actions_match_case_insensitively(action, expected):
    assert allowed(Check(action, f"{BUCKET}/x"), allow("s3:GetObject")) is expected


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", "kms:Decrypt", True),
        ("s3:*", "s3:ListBucket", True),
        ("s3:*", "s3express:CreateSession", False),
        ("s3:Get*", "s3:GetObjectVersion", True),
        ("s3:Get*", "s3:PutObject", False),
        ("s3:Get?bject", "s3:GetObject", True),
        ("sagemaker:*Endpoint*", "sagemaker:UpdateEndpointWeightsAndCapacities", True),
    ],
)
def test_action_wildcards(pattern, action, expected):
    assert allowed(Check(action, "*"), allow(pattern, "*")) is expected


def test_not_action_applies_to_every_other_action():
    statements = [allow("*"), {"Effect": "Deny", "NotAction": ["s3:Get*", "kms:Decrypt"], "Resource": "*"}]
    assert allowed(Check("s3:GetObject", f"{BUCKET}/x"), *statements)
    assert allowed(DECRYPT, *statements)
    assert not allowed(Check("s3:PutObject", f"{BUCKET}/x"), *statements)


def test_an_action_without_a_resource_type_needs_resource_star():
    token = Check("ecr:GetAuthorizationToken", "*")
    assert allowed(token, allow("ecr:GetAuthorizationToken", "*"))
    assert allowed(token, allow("ecr:GetAuthorizationToken", ["arn:aws:ecr:*:*:repository/x", "**"]))
    assert not allowed(token, allow("ecr:GetAuthorizationToken", "arn:aws:ecr:*"))
    assert not allowed(token, allow("ecr:GetAuthorizationToken", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"))


def test_not_resource_excludes_its_arns_but_not_star_unless_it_lists_star():
    statement = {"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/secret/*"}
    assert allowed(Check("s3:GetObject", f"{BUCKET}/models/a"), statement)
    assert not allowed(Check("s3:GetObject", f"{BUCKET}/secret/a"), statement)
    assert allowed(Check("s3:ListAllMyBuckets", "*"), statement)
    assert not allowed(Check("s3:ListAllMyBuckets", "*"), {**statement, "NotResource": "*"})


# ---------------------------------------------------------------------------------------------- conditions


def with_condition(condition: dict[str, Any], action: str = "s3:GetObject") -> dict[str, Any]:
    return allow(action, "*", Condition=condition)


def holds(condition: dict[str, Any], **context: Any) -> bool:
    return allowed(Check("s3:GetObject", f"{BUCKET}/x"), with_condition(condition), **context)


@pytest.mark.parametrize(
    ("operator", "policy", "value", "expected"),
    [
        ("StringEquals", "us-east-1", "us-east-1", True),
        ("StringEquals", "us-east-1", "US-EAST-1", False),
        ("StringEquals", ["eu-west-1", "us-east-1"], "us-east-1", True),  # values are ORed
        ("StringEquals", "us-*", "us-east-1", False),  # no wildcards in StringEquals
        ("StringNotEquals", "us-east-1", "eu-west-1", True),
        ("StringNotEquals", ["eu-west-1", "us-east-1"], "us-east-1", False),  # NOR
        ("StringEqualsIgnoreCase", "US-East-1", "us-east-1", True),
        ("StringNotEqualsIgnoreCase", "US-East-1", "us-east-1", False),
        ("StringLike", "us-*", "us-east-1", True),
        ("StringLike", "us-east-?", "us-east-12", False),
        ("StringLike", "us-east-?", "us-east-2", True),
        ("StringLike", "Us-*", "us-east-1", False),  # case-sensitive
        ("StringNotLike", ["eu-*", "ap-*"], "us-east-1", True),
        ("StringNotLike", ["eu-*", "us-*"], "us-east-1", False),
    ],
)
def test_string_operators(operator, policy, value, expected):
    assert holds({operator: {"aws:RequestedRegion": policy}}, **{"aws:RequestedRegion": value}) is expected


@pytest.mark.parametrize(
    ("operator", "policy", "value", "expected"),
    [
        ("NumericEquals", "10", "10", True),
        ("NumericEquals", 10, "10.0", True),
        ("NumericNotEquals", "10", "10", False),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericGreaterThan", "10", "10.5", True),
        ("NumericGreaterThanEquals", "10", "9.99", False),
        ("NumericLessThan", "10", "not a number", False),
    ],
)
def test_numeric_operators(operator, policy, value, expected):
    assert holds({operator: {"s3:max-keys": policy}}, **{"s3:max-keys": value}) is expected


@pytest.mark.parametrize(
    ("operator", "policy", "value", "expected"),
    [
        ("DateEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", True),
        ("DateEquals", "2026-01-01T00:00:00Z", "1767225600", True),  # epoch seconds
        ("DateNotEquals", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", True),
        ("DateLessThan", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", True),
        ("DateLessThanEquals", "1767225600", "2026-01-01T00:00:00Z", True),
        ("DateGreaterThan", "2026-01-01", "2026-01-01T00:00:01Z", True),
        ("DateGreaterThanEquals", "2026-01-01T00:00:00Z", "2025-06-01T00:00:00Z", False),
    ],
)
def test_date_operators(operator, policy, value, expected):
    assert holds({operator: {"aws:CurrentTime": policy}}, **{"aws:CurrentTime": value}) is expected


@pytest.mark.parametrize(
    ("policy", "value", "expected"),
    [
        ("true", "true", True),
        ("true", "TRUE", True),
        (True, "true", True),
        ("false", "true", False),
        ("False", "false", True),
    ],
)
def test_bool_compares_true_and_false_case_insensitively(policy, value, expected):
    assert holds({"Bool": {"aws:SecureTransport": policy}}, **{"aws:SecureTransport": value}) is expected


def test_binary_equals_compares_the_base64_bytes():
    assert holds({"BinaryEquals": {"custom:blob": "QmluYXJ5"}}, **{"custom:blob": "QmluYXJ5"})
    assert not holds({"BinaryEquals": {"custom:blob": "QmluYXJ5"}}, **{"custom:blob": "T3RoZXI="})


@pytest.mark.parametrize(
    ("operator", "policy", "value", "expected"),
    [
        ("IpAddress", "203.0.113.0/24", "203.0.113.7", True),
        ("IpAddress", "203.0.113.0/24", "198.51.100.7", False),
        ("IpAddress", "127.0.0.1", "127.0.0.1", True),  # no prefix: /32
        ("IpAddress", ["10.0.0.0/8", "2001:DB8:1234:5678::/64"], "2001:db8:1234:5678::1", True),
        ("NotIpAddress", "203.0.113.0/24", "198.51.100.7", True),
        ("NotIpAddress", "203.0.113.0/24", "203.0.113.7", False),
    ],
)
def test_ip_address_operators(operator, policy, value, expected):
    assert holds({operator: {"aws:SourceIp": policy}}, **{"aws:SourceIp": value}) is expected


@pytest.mark.parametrize(
    ("operator", "policy", "value", "expected"),
    [
        ("ArnEquals", f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", True),
        ("ArnLike", f"arn:aws:sns:*:{ACCOUNT}:top?c", f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", True),
        (
            "ArnEquals",
            "arn:aws:states:*:*:stateMachine:shepherd-*",
            f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:shepherd-x",
            True,
        ),
        ("ArnLike", f"arn:aws:sns:*:{ACCOUNT}:topic", f"arn:aws:sns:us-east-1:{OTHER_ACCOUNT}:topic", False),
        ("ArnNotLike", f"arn:aws:sns:*:{ACCOUNT}:*", f"arn:aws:sns:us-east-1:{OTHER_ACCOUNT}:topic", True),
        ("ArnNotEquals", f"arn:aws:sns:*:{ACCOUNT}:*", f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", False),
        ("ArnLike", "*", "arn:aws:sns:us-east-1:1:t", True),
    ],
)
def test_arn_operators(operator, policy, value, expected):
    assert holds({operator: {"aws:SourceArn": policy}}, **{"aws:SourceArn": value}) is expected


def test_arn_like_checks_each_component_where_string_like_does_not():
    # The example in "Condition operators", "Amazon Resource Name (ARN) condition operators".
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    assert holds({"StringLike": {"aws:SourceArn": pattern}}, **{"aws:SourceArn": value})
    assert not holds({"ArnLike": {"aws:SourceArn": pattern}}, **{"aws:SourceArn": value})


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("StringEquals", False),
        ("StringLike", False),
        ("NumericEquals", False),
        ("Bool", False),
        ("IpAddress", False),
        ("ArnLike", False),
        ("DateEquals", False),
        ("StringNotEquals", True),
        ("StringNotLike", True),
        ("StringNotEqualsIgnoreCase", True),
        ("NumericNotEquals", True),
        ("NotIpAddress", True),
        ("ArnNotLike", True),
        ("DateNotEquals", True),
        ("StringEqualsIfExists", True),
        ("StringNotEqualsIfExists", True),
        ("ForAllValues:StringEquals", True),
        ("ForAnyValue:StringEquals", False),
        ("ForAnyValue:StringNotEquals", False),
    ],
)
def test_a_missing_key_fails_a_positive_operator_and_satisfies_a_negated_one(operator, expected):
    assert holds({operator: {"custom:absent": "1"}}) is expected


def test_if_exists_evaluates_the_operator_when_the_key_is_present():
    condition = {"StringLikeIfExists": {"ec2:InstanceType": ["t3.*", "m5.*"]}}
    assert holds(condition)
    assert holds(condition, **{"ec2:InstanceType": "t3.micro"})
    assert not holds(condition, **{"ec2:InstanceType": "p4d.24xlarge"})


def test_a_deny_with_a_negated_if_exists_operator_still_fires_when_the_key_is_missing():
    statements = [
        allow("s3:*"),
        deny("s3:*", "*", Condition={"StringNotEqualsIfExists": {"aws:ResourceTag/team": "ml"}}),
    ]
    assert not allowed(GET, *statements)
    assert allowed(GET, *statements, **{"aws:ResourceTag/team": "ml"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("present", False), ((), True), (("a",), False)],
)
def test_null_true_means_the_key_is_absent(value, expected):
    context = {} if value is None else {"aws:TokenIssueTime": value}
    assert holds({"Null": {"aws:TokenIssueTime": "true"}}, **context) is expected
    assert holds({"Null": {"aws:TokenIssueTime": "false"}}, **context) is not expected


def test_for_all_values_needs_every_request_value_in_the_policy():
    condition = {"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "stage"]}}
    assert holds(condition, **{"aws:TagKeys": ("team",)})
    assert holds(condition, **{"aws:TagKeys": ("team", "stage")})
    assert not holds(condition, **{"aws:TagKeys": ("team", "owner")})
    assert holds(condition)  # "ForAllValues ... also returns true if there are no context keys in the request"
    assert holds(condition, **{"aws:TagKeys": ()})


def test_for_any_value_needs_one_request_value_in_the_policy():
    condition = {"ForAnyValue:StringLike": {"aws:TagKeys": ["team*"]}}
    assert holds(condition, **{"aws:TagKeys": ("owner", "team-name")})
    assert not holds(condition, **{"aws:TagKeys": ("owner", "stage")})
    assert not holds(condition, **{"aws:TagKeys": ()})
    assert not holds(condition)


@pytest.mark.parametrize(
    ("tag_keys", "denied"),
    [
        (("key1:legal",), False),
        (("key1:hr", "key1:personnel"), False),
        (("key2:audit",), True),
        (None, True),
        (("key1:legal", "key2:audit"), False),  # each value is tested against the negated operator
    ],
)
def test_for_all_values_with_a_negated_operator_as_the_iam_guide_tabulates_it(tag_keys, denied):
    # "Multivalued context key examples": Deny with "ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}.
    statements = [
        allow("iam:*"),
        deny(["iam:Tag*", "iam:UnTag*"], "*", Condition={"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}),
    ]
    context = {} if tag_keys is None else {"aws:TagKeys": tag_keys}
    assert allowed(Check("iam:TagRole", ROLE_ARN), *statements, **context) is not denied


def test_for_any_value_with_a_negated_operator_needs_one_request_value_outside_the_policy():
    condition = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["team"]}}
    assert holds(condition, **{"aws:TagKeys": ("team", "owner")})
    assert not holds(condition, **{"aws:TagKeys": ("team",)})


def test_a_multivalued_key_without_a_set_operator_matches_when_any_value_does():
    assert holds(
        {"StringEquals": {"aws:CalledVia": "athena.amazonaws.com"}}, **{"aws:CalledVia": ("x", "athena.amazonaws.com")}
    )
    assert not holds(
        {"StringNotEquals": {"aws:CalledVia": "athena.amazonaws.com"}},
        **{"aws:CalledVia": ("x", "athena.amazonaws.com")},
    )


def test_keys_and_operators_are_anded():
    condition = {
        "StringEquals": {"aws:RequestedRegion": "us-east-1", "aws:PrincipalAccount": ACCOUNT},
        "Bool": {"aws:SecureTransport": "true"},
    }
    assert holds(condition, **{"aws:RequestedRegion": "us-east-1", "aws:SecureTransport": "true"})
    assert not holds(condition, **{"aws:RequestedRegion": "us-east-1", "aws:SecureTransport": "false"})
    assert not holds(condition, **{"aws:RequestedRegion": "eu-west-1", "aws:SecureTransport": "true"})


def test_condition_key_names_are_case_insensitive_and_operator_prefixes_too():
    assert holds({"StringEquals": {"AWS:REQUESTEDREGION": "us-east-1"}}, **{"aws:requestedregion": "us-east-1"})
    assert holds({"forallvalues:stringequals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": ("a",)})


def test_the_check_context_wins_over_the_callers_context_and_principal_keys_are_filled_in():
    condition = {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    check = Check("s3:GetObject", f"{BUCKET}/x", {"aws:RequestedRegion": "us-east-1"})
    assert evaluate(ROLE, check, [doc(with_condition(condition))], context={"aws:RequestedRegion": "eu-west-1"}).allowed
    own = {
        "StringEquals": {
            "aws:PrincipalArn": ROLE_ARN,
            "aws:PrincipalAccount": ACCOUNT,
            "aws:PrincipalType": "AssumedRole",
        }
    }
    assert holds(own)


@pytest.mark.parametrize(
    "condition",
    [
        {"StringSortOf": {"k": "v"}},
        {"ForSomeValues:StringEquals": {"k": "v"}},
        {"NullIfExists": {"k": "true"}},
        {"StringEquals": ["k", "v"]},
    ],
)
def test_a_malformed_condition_is_refused(condition):
    with pytest.raises(PolicyError):
        parse_policy(doc(with_condition(condition)))


# ---------------------------------------------------------------------------------------------- policy variables


def test_policy_variables_are_substituted_in_resources_and_condition_values():
    home = allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*")
    assert allowed(Check("s3:GetObject", f"{BUCKET}/home/ana/x"), home, **{"aws:username": "ana"})
    assert not allowed(Check("s3:GetObject", f"{BUCKET}/home/bob/x"), home, **{"aws:username": "ana"})
    assert not allowed(Check("s3:GetObject", f"{BUCKET}/home/ana/x"), home)  # no value: matches nothing
    listing = with_condition({"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, "s3:ListBucket")
    assert allowed(Check("s3:ListBucket", BUCKET), listing, **{"aws:username": "ana", "s3:prefix": "home/ana/a"})
    assert not allowed(Check("s3:ListBucket", BUCKET), listing, **{"aws:username": "ana", "s3:prefix": "home/bob/a"})


def test_policy_variables_take_defaults_and_escapes_and_substitute_literally():
    team = allow("s3:GetObject", f"{BUCKET}/${{aws:PrincipalTag/team, 'shared'}}/*")
    assert allowed(Check("s3:GetObject", f"{BUCKET}/shared/x"), team)
    assert allowed(Check("s3:GetObject", f"{BUCKET}/ml/x"), team, **{"aws:PrincipalTag/team": "ml"})
    star = allow("s3:GetObject", f"{BUCKET}/literal-${{*}}")
    assert allowed(Check("s3:GetObject", f"{BUCKET}/literal-*"), star)
    assert not allowed(Check("s3:GetObject", f"{BUCKET}/literal-x"), star)
    # a substituted value is text, not a pattern
    assert not allowed(
        Check("s3:GetObject", f"{BUCKET}/home/ana/x"),
        allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/x"),
        **{"aws:username": "*"},
    )


def test_policy_variables_are_literal_text_in_a_document_without_version_2012_10_17():
    statement = allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*")
    check = Check("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/x")
    assert evaluate(ROLE, check, [doc(statement, version=None)], context={"aws:username": "ana"}).allowed
    assert not evaluate(ROLE, check, [doc(statement)], context={"aws:username": "ana"}).allowed


# ---------------------------------------------------------------------------------------------- parsing


def test_parse_policy_normalises_text_single_statements_and_string_fields():
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {"Sid": "One", "Effect": "Allow", "Action": "s3:GetObject", "Resource": BUCKET},
        }
    )
    [statement] = parse_policy(text)
    assert statement == Statement(effect="Allow", actions=("s3:GetObject",), resources=(BUCKET,), sid="One")
    assert parse_policy(urllib.parse.quote(text)) == [statement]  # IAM's Get*Policy APIs URL-encode documents
    [trust] = parse_policy(doc({"Effect": "Allow", "Principal": {"Service": ["a", "b"]}, "Action": "sts:AssumeRole"}))
    assert trust.principals == (("Service", "a"), ("Service", "b"))
    assert trust.resources == ("*",)


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        {"Version": "2012-10-17"},
        doc({"Effect": "Permit", "Action": "s3:*", "Resource": "*"}),
        doc({"Effect": "Allow", "Resource": "*"}),
        doc({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}),
        doc({"Effect": "Allow", "Action": ["s3:*", 3], "Resource": "*"}),
        doc({"Effect": "Allow", "Action": "s3:*", "Principal": "everyone"}),
    ],
)
def test_a_malformed_document_is_refused(document):
    with pytest.raises(PolicyError):
        parse_policy(document)


def test_parsed_documents_are_cached_by_their_text():
    document = doc(allow("s3:GetObject", f"{BUCKET}/cached/*"))
    evaluate(ROLE, GET, [document])
    before = iam_policy._parse_text.cache_info().hits
    for _ in range(3):
        evaluate(ROLE, GET, [document, json.dumps(document)])
    assert iam_policy._parse_text.cache_info().hits >= before + 3


# ---------------------------------------------------------------------------------------------- messages


def test_the_message_for_an_implicit_deny_is_awss():
    decision = evaluate(ROLE, GET, [])
    assert message(ROLE, GET, decision) == (
        f'User: {SESSION_ARN} is not authorized to perform: s3:GetObject on resource: "{BUCKET}/models/a" '
        "because no identity-based policy allows the s3:GetObject action"
    )


def test_the_message_for_an_explicit_deny_is_awss():
    decision = evaluate(ROLE, GET, [doc(allow("s3:*"))], doc(deny("s3:*", "*", Principal="*")))
    assert message(ROLE, GET, decision) == (
        f'User: {SESSION_ARN} is not authorized to perform: s3:GetObject on resource: "{BUCKET}/models/a" '
        "with an explicit deny in a resource-based policy"
    )


def test_other_services_do_not_quote_the_resource_and_some_omit_a_star_resource():
    assert message(ROLE, DECRYPT, kms([], None)) == (
        f"User: {SESSION_ARN} is not authorized to perform: kms:Decrypt on resource: {KEY_ARN} "
        "because no resource-based policy allows the kms:Decrypt action"
    )
    token = Check("ecr:GetAuthorizationToken", "*")
    assert message(ROLE, token, evaluate(ROLE, token, [])) == (
        f"User: {SESSION_ARN} is not authorized to perform: ecr:GetAuthorizationToken on resource: * "
        "because no identity-based policy allows the ecr:GetAuthorizationToken action"
    )
    metrics = Check("cloudwatch:PutMetricData", "*")
    assert message(ROLE, metrics, evaluate(ROLE, metrics, [])) == (
        f"User: {SESSION_ARN} is not authorized to perform: cloudwatch:PutMetricData "
        "because no identity-based policy allows the cloudwatch:PutMetricData action"
    )
    with pytest.raises(ValueError, match="allowed"):
        message(ROLE, GET, Decision(True, "allow"))


# ---------------------------------------------------------------------------------------------- Shepherd's template

TEMPLATE = _read_yaml(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
DATA_BUCKET = "arn:aws:s3:::shepherd-dev-data"
SAGEMAKER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/shepherd-dev-SageMakerExecutionRole"
NAMES = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": ACCOUNT,
    "StageName": "dev",
    "DataBucket": "shepherd-dev-data",
    "DataBucket.Arn": DATA_BUCKET,
    "DataKey.Arn": KEY_ARN,
    "SageMakerExecutionRole.Arn": SAGEMAKER_ROLE,
}


def resolve(node: Any) -> Any:
    """The few intrinsic functions the template's policies use, with the names above."""
    if isinstance(node, dict) and len(node) == 1:
        [(name, value)] = node.items()
        if name == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: NAMES[m.group(1)], value)
        if name == "Fn::GetAtt":
            return NAMES[".".join(value) if isinstance(value, list) else value]
        if name == "Ref":
            return NAMES[value]
    if isinstance(node, dict):
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value) for value in node]
    return node


def template_statements(resource: str) -> list[dict[str, Any]]:
    properties = RESOURCES[resource]["Properties"]
    if "Policies" in properties and RESOURCES[resource]["Type"] == "AWS::IAM::Role":
        return [s for p in properties["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return [s for p in properties.get("Policies", []) if isinstance(p, dict) for s in p.get("Statement", [])]


def template_policy(resource: str, action: str) -> dict[str, Any]:
    """The template's statements for ``action``, resolved, as one identity-based policy document."""
    wanted = [
        s
        for s in template_statements(resource)
        if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert wanted, f"{resource} has no statement for {action}"
    return doc(*resolve(wanted))


def sagemaker_role() -> Principal:
    return Principal(
        f"arn:aws:sts::{ACCOUNT}:assumed-role/shepherd-dev-SageMakerExecutionRole/job",
        SAGEMAKER_ROLE,
        ACCOUNT,
        "sagemaker.amazonaws.com",
    )


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("training/churn/", True), ("checkpoints/j/", True), ("models/churn/", False), (None, False)],
)
def test_the_sagemaker_role_lists_only_shepherds_prefixes(prefix, expected):
    policy = template_policy("SageMakerExecutionRole", "s3:ListBucket")
    check = Check("s3:ListBucket", DATA_BUCKET, {} if prefix is None else {"s3:prefix": prefix})
    assert evaluate(sagemaker_role(), check, [policy]).allowed is expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [("training/churn/train.csv", True), ("batch/j/output/x.out", True), ("models/churn/model.tar.gz", False)],
)
def test_the_sagemaker_role_reads_only_its_inputs(key, expected):
    policy = template_policy("SageMakerExecutionRole", "s3:GetObject")
    assert evaluate(sagemaker_role(), Check("s3:GetObject", f"{DATA_BUCKET}/{key}"), [policy]).allowed is expected


@pytest.mark.parametrize(("region", "expected"), [("us-east-1", True), ("eu-west-1", False)])
def test_the_ecr_login_is_allowed_only_in_the_stacks_region(region, expected):
    policy = template_policy("SageMakerExecutionRole", "ecr:GetAuthorizationToken")
    check = Check("ecr:GetAuthorizationToken", "*")
    assert evaluate(sagemaker_role(), check, [policy], context={"aws:RequestedRegion": region}).allowed is expected


@pytest.mark.parametrize(
    ("role", "passed_to", "expected"),
    [
        (SAGEMAKER_ROLE, "sagemaker.amazonaws.com", True),
        (SAGEMAKER_ROLE, "lambda.amazonaws.com", False),
        (SAGEMAKER_ROLE, None, False),
        (f"arn:aws:iam::{ACCOUNT}:role/admin", "sagemaker.amazonaws.com", False),
    ],
)
def test_start_job_passes_only_the_sagemaker_role_only_to_sagemaker(role, passed_to, expected):
    policy = template_policy("StartJobFunction", "iam:PassRole")
    check = Check("iam:PassRole", role, {} if passed_to is None else {"iam:PassedToService": passed_to})
    assert evaluate(ROLE, check, [policy]).allowed is expected


@pytest.mark.parametrize(
    ("service", "expected"),
    [("sagemaker.application-autoscaling.amazonaws.com", True), ("ecs.application-autoscaling.amazonaws.com", False)],
)
def test_rollout_creates_only_the_autoscaling_service_linked_role(service, expected):
    policy = template_policy("RolloutFunction", "iam:CreateServiceLinkedRole")
    [statement] = policy["Statement"]
    check = Check("iam:CreateServiceLinkedRole", statement["Resource"], {"iam:AWSServiceName": service})
    assert evaluate(ROLE, check, [policy]).allowed is expected


@pytest.mark.parametrize(("secure", "expected"), [("true", True), ("false", False)])
def test_the_data_bucket_policy_denies_insecure_transport_only(secure, expected):
    # The local cloud serves on loopback, which counts as secure transport: the caller sets aws:SecureTransport true.
    bucket_policy = resolve(RESOURCES["DataBucketPolicy"]["Properties"]["PolicyDocument"])
    identity = template_policy("SageMakerExecutionRole", "s3:GetObject")
    check = Check("s3:GetObject", f"{DATA_BUCKET}/training/churn/train.csv")
    decision = evaluate(sagemaker_role(), check, [identity], bucket_policy, context={"aws:SecureTransport": secure})
    assert decision.allowed is expected
    if not expected:
        assert decision.reason == "with an explicit deny in a resource-based policy"


def test_the_data_key_policy_hands_the_decision_to_iam():
    key_policy = resolve(RESOURCES["DataKey"]["Properties"]["KeyPolicy"])
    identity = template_policy("SageMakerExecutionRole", "kms:Decrypt")
    role = sagemaker_role()
    assert evaluate(role, DECRYPT, [identity], key_policy, resource_policy_required=True).allowed
    denied = evaluate(
        role, Check("kms:ScheduleKeyDeletion", KEY_ARN), [identity], key_policy, resource_policy_required=True
    )
    assert denied.reason == "because no identity-based policy allows the kms:ScheduleKeyDeletion action"


def test_a_service_principal_is_allowed_only_by_a_resource_policy_naming_it_from_its_source():
    # A Lambda permission as SAM writes it for a schedule rule: events.amazonaws.com, conditioned on the rule's ARN
    events = Principal(arn="events.amazonaws.com", role_arn="", account="", service="events.amazonaws.com")
    function = "arn:aws:lambda:us-east-1:123456789012:function:tick"
    permission = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Resource": function,
                "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/tick"}},
            }
        ],
    }
    check = Check("lambda:InvokeFunction", function)
    rule = {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/tick"}
    other = {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/other"}
    assert evaluate(events, check, [], permission, context=rule).allowed
    refused = evaluate(events, check, [], permission, context=other)
    assert not refused.allowed
    assert refused.reason == "because no resource-based policy allows the lambda:InvokeFunction action"
    sns = Principal(arn="sns.amazonaws.com", role_arn="", account="", service="sns.amazonaws.com")
    assert not evaluate(sns, check, [], permission, context=rule).allowed
