"""The local cloud holds its own principals to their IAM policies, and refuses as AWS refuses (docs/LOCAL_IAM.md)."""

from __future__ import annotations

import json
import os
import textwrap
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from localcloud.deployer import Deployer
from localcloud.iam import Check, container_environment
from localcloud.iam.authorizer import Authorizer
from localcloud.iam.principals import Principals
from localcloud.template import TemplateError

from .conftest import role

pytestmark = pytest.mark.integration
ACCOUNT = "123456789012"


def _session(cloud, name: str, statements: list[dict], service: str = "lambda.amazonaws.com"):
    """Credentials of a fresh role with these statements, as ``service`` assumes it."""
    iam = cloud.client("iam")
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    if statements:  # IAM refuses a policy without statements
        document = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return cloud.role_credentials(f"arn:aws:iam::{ACCOUNT}:role/{name}", service, name)


def _error(call) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def _function_template(folder, logical_id: str, properties: str):
    """A SAM template of one python3.13 function; ``properties`` adds to its Properties (YAML at their indent)."""
    template = folder / "template.yaml"
    head = f"""
            Transform: AWS::Serverless-2016-10-31
            Resources:
              {logical_id}:
                Type: AWS::Serverless::Function
                Properties:
                  Runtime: python3.13
                  Handler: app.handler"""
    template.write_text(textwrap.dedent(head + properties) + "\n")
    return template


@pytest.fixture
def bucket(cloud) -> str:
    name = f"iam-{uuid.uuid4().hex[:10]}"
    s3 = cloud.client("s3")
    s3.create_bucket(Bucket=name)
    for key in ("models/a/model.tar.gz", "training/data.csv"):
        s3.put_object(Bucket=name, Key=key, Body=b"x")
    return name


def test_a_function_acts_as_its_execution_role(cloud, bucket, tmp_path, denials):
    code = tmp_path / "whoami"
    code.mkdir()
    (code / "app.py").write_text(
        textwrap.dedent(
            """
            import os
            import boto3
            from botocore.exceptions import ClientError

            def handler(event, context):
                identity = boto3.client("sts").get_caller_identity()["Arn"]
                body = boto3.client("s3").get_object(Bucket=os.environ["BUCKET"], Key="models/a/model.tar.gz")
                try:
                    boto3.client("dynamodb").list_tables()
                    refused = None
                except ClientError as exc:
                    refused = exc.response["Error"]["Code"]
                return {"identity": identity, "read": body["Body"].read().decode(), "refused": refused}
            """
        )
    )
    properties = f"""
                  FunctionName: iam-whoami
                  CodeUri: {code}
                  Environment:
                    Variables:
                      BUCKET: {bucket}
                  Policies:
                    - S3ReadPolicy:
                        BucketName: {bucket}"""
    template = _function_template(tmp_path, "WhoAmI", properties)
    Deployer(cloud, "iamfn").deploy(template, {})
    denials.expect("dynamodb:ListTables")
    result = json.loads(cloud.client("lambda").invoke(FunctionName="iam-whoami")["Payload"].read())
    assert result["identity"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")
    assert result["identity"].endswith("/iam-whoami")  # Lambda names the session after the function
    assert result["read"] == "x"
    assert result["refused"] == "AccessDeniedException"
    [refusal] = denials.seen()
    assert refusal["principal"] == result["identity"]
    assert refusal["resource"] == "*"


@pytest.mark.parametrize(
    ("service", "operation", "kwargs", "action", "status", "code"),
    [
        ("s3", "list_buckets", {}, "s3:ListAllMyBuckets", 403, "AccessDenied"),  # rest-xml
        ("dynamodb", "list_tables", {}, "dynamodb:ListTables", 400, "AccessDeniedException"),  # json 1.0
        ("sagemaker", "list_models", {}, "sagemaker:ListModels", 400, "AccessDeniedException"),  # json 1.1
        ("sns", "list_topics", {}, "sns:ListTopics", 403, "AuthorizationError"),  # query: SNS's own code
        (
            "lambda",
            "invoke",
            {"FunctionName": "fixture-EchoFunction"},
            "lambda:InvokeFunction",
            403,
            "AccessDeniedException",
        ),  # rest-json
        ("cloudwatch", "list_metrics", {}, "cloudwatch:ListMetrics", 400, "AccessDenied"),  # json, query-compatible
    ],
)
def test_each_protocol_answers_a_deny_in_its_own_shape(
    cloud, denials, service, operation, kwargs, action, status, code
):
    credentials = _session(cloud, f"shape-{service}-{uuid.uuid4().hex[:6]}", [])
    denials.expect(action)
    client = cloud.role_client(service, credentials)
    got_status, got_code, message = _error(lambda: getattr(client, operation)(**kwargs))
    assert (got_status, got_code) == (status, code)
    assert message.startswith(f"User: {credentials.principal.arn} is not authorized to perform: {action}")
    assert message.endswith(f"because no identity-based policy allows the {action} action")
    assert [r["action"] for r in denials.seen()] == [action]


def test_a_resource_scoped_allow_matches_its_arn_and_nothing_else(cloud, bucket, denials):
    credentials = _session(
        cloud,
        f"scoped-{uuid.uuid4().hex[:6]}",
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/models/*"}],
    )
    s3 = cloud.role_client("s3", credentials)
    assert s3.get_object(Bucket=bucket, Key="models/a/model.tar.gz")["Body"].read() == b"x"
    denials.expect("s3:GetObject", f"{bucket}/training/")
    status, code, message = _error(lambda: s3.get_object(Bucket=bucket, Key="training/data.csv"))
    assert (status, code) == (403, "AccessDenied")
    assert f'on resource: "arn:aws:s3:::{bucket}/training/data.csv"' in message


def test_a_condition_and_an_explicit_deny_take_effect(cloud, bucket, denials):
    credentials = _session(
        cloud,
        f"conditions-{uuid.uuid4().hex[:6]}",
        [
            {"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/training/*"},
            {
                "Effect": "Allow",
                "Action": "dynamodb:ListTables",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}},
            },
        ],
    )
    s3 = cloud.role_client("s3", credentials)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]
    assert [o["Key"] for o in listed] == ["models/a/model.tar.gz"]
    denials.expect("s3:GetObject", f"{bucket}/training/")
    denials.expect("dynamodb:ListTables")
    _, _, message = _error(lambda: s3.get_object(Bucket=bucket, Key="training/data.csv"))
    assert message.endswith("with an explicit deny in an identity-based policy")
    _, code, _ = _error(lambda: cloud.role_client("dynamodb", credentials).list_tables())  # asked in us-east-1
    assert code == "AccessDeniedException"


def test_a_bucket_policy_deny_wins_and_loopback_is_secure_transport(cloud, bucket, denials):
    credentials = _session(
        cloud,
        f"bucketpolicy-{uuid.uuid4().hex[:6]}",
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": credentials.principal.role_arn},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/training/*",
            },
            {  # the template's own statement: refuses plain HTTP, and the local cloud's loopback counts as secure
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
    cloud.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3 = cloud.role_client("s3", credentials)
    assert s3.get_object(Bucket=bucket, Key="models/a/model.tar.gz")["Body"].read() == b"x"
    denials.expect("s3:GetObject", f"{bucket}/training/")
    _, code, message = _error(lambda: s3.get_object(Bucket=bucket, Key="training/data.csv"))
    assert code == "AccessDenied"
    assert message.endswith("with an explicit deny in a resource-based policy")


def test_a_kms_key_policy_must_allow_what_an_identity_policy_grants(cloud, denials):
    kms = cloud.client("kms")
    credentials = _session(
        cloud, f"kms-{uuid.uuid4().hex[:6]}", [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}]
    )
    delegating = {  # the default key policy: the account's root lets IAM policies grant the key
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    closed = {  # names someone else only: no IAM policy can grant this key
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/key-admin"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    open_key = kms.create_key(Policy=json.dumps(delegating))["KeyMetadata"]["Arn"]
    closed_key = kms.create_key(Policy=json.dumps(closed))["KeyMetadata"]["Arn"]
    client = cloud.role_client("kms", credentials)
    assert client.encrypt(KeyId=open_key, Plaintext=b"secret")["KeyId"] == open_key
    denials.expect("kms:Encrypt", closed_key)
    status, code, message = _error(lambda: client.encrypt(KeyId=closed_key, Plaintext=b"secret"))
    assert (status, code) == (400, "AccessDeniedException")
    assert message.endswith("because no resource-based policy allows the kms:Encrypt action")


def test_roles_a_service_cannot_assume_are_refused(cloud, tmp_path):
    missing = f"arn:aws:iam::{ACCOUNT}:role/does-not-exist"
    sagemaker = cloud.client("sagemaker")
    _, code, message = _error(
        lambda: sagemaker.create_model(
            ModelName=f"m-{uuid.uuid4().hex[:6]}",
            ExecutionRoleArn=missing,
            PrimaryContainer={
                "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
            },
        )
    )
    assert code == "ValidationException"
    assert message.startswith(f"Could not assume role {missing}.")
    lambda_only = role(cloud, "trusts-lambda-only", "lambda.amazonaws.com", ["states:StartExecution"])
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    _, code, message = _error(
        lambda: cloud.client("stepfunctions").create_state_machine(
            name=f"sm-{uuid.uuid4().hex[:6]}", definition=definition, roleArn=lambda_only
        )
    )
    assert code == "AccessDeniedException"
    assert "Neither the global service principal states.amazonaws.com" in message
    properties = f"""
                  CodeUri: {tmp_path}
                  Role: {missing}"""
    template = _function_template(tmp_path, "Orphan", properties)
    with pytest.raises(TemplateError, match="cannot be assumed by Lambda"):
        Deployer(cloud, "orphan").deploy(template, {})


def test_passing_a_role_needs_iam_pass_role(cloud, denials):
    credentials = _session(
        cloud,
        f"passer-{uuid.uuid4().hex[:6]}",
        [{"Effect": "Allow", "Action": "sagemaker:CreateModel", "Resource": "*"}],
    )
    denials.expect("iam:PassRole")
    _, code, message = _error(
        lambda: cloud.role_client("sagemaker", credentials).create_model(
            ModelName=f"m-{uuid.uuid4().hex[:6]}",
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole",
            PrimaryContainer={
                "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
            },
        )
    )
    assert code == "AccessDeniedException"
    assert f"iam:PassRole on resource: arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole" in message


def test_iam_off_logs_every_decision_and_refuses_none(tmp_path, cloud):
    credentials = _session(cloud, f"off-{uuid.uuid4().hex[:6]}", [])
    log = tmp_path / "authz.jsonl"
    authorizer = Authorizer(Principals(), log, enabled=False)
    assert authorizer.authorize(credentials.principal, [Check("s3:GetObject", "arn:aws:s3:::b/k")], "us-east-1") is None
    authorizer.close()
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["decision"] == "implicit-deny"
    assert entry["enforced"] is False
    assert entry["principal"] == credentials.principal.arn
    assert authorizer.refusals == []


def test_a_presigned_post_upload_is_authorized_as_its_signer(cloud, bucket, denials):
    # "Authenticating Requests in Browser-Based Uploads Using POST": the signature is in the form, not a header
    credentials = _session(
        cloud,
        f"poster-{uuid.uuid4().hex[:6]}",
        [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/uploads/*"}],
    )
    s3 = cloud.role_client("s3", credentials)
    denials.expect("s3:PutObject", f"{bucket}/models/")
    answers = {}
    for key in ("uploads/ok.csv", "models/forged.tar.gz"):
        form = s3.generate_presigned_post(bucket, key)
        answers[key] = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"data")}, timeout=30)
    assert answers["uploads/ok.csv"].status_code == 204
    assert answers["models/forged.tar.gz"].status_code == 403
    assert "<Code>AccessDenied</Code>" in answers["models/forged.tar.gz"].text
    listed = cloud.client("s3").list_objects_v2(Bucket=bucket, Prefix="models/forged")
    assert "Contents" not in listed


def test_a_policy_iam_would_refuse_grants_nothing_and_breaks_no_request(cloud, bucket, denials):
    credentials = _session(
        cloud,
        f"badpolicy-{uuid.uuid4().hex[:6]}",
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    )
    malformed = {  # moto stores it; IAM's evaluation has no such operator
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEqualz": {"aws:SourceIp": "127.0.0.1"}},
            }
        ],
    }
    cloud.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(malformed))
    denials.expect("s3:GetObject", bucket)
    status, code, message = _error(
        lambda: cloud.role_client("s3", credentials).get_object(Bucket=bucket, Key="models/a/model.tar.gz")
    )
    assert (status, code) == (403, "AccessDenied")
    assert "cannot be evaluated" in message


def test_a_container_inherits_neither_the_cloud_s_keys_nor_the_developer_s_aws_files():
    environment = container_environment(
        {
            "PATH": "/usr/bin",
            "AWS_ACCESS_KEY_ID": "shepherd-local",
            "AWS_SECRET_ACCESS_KEY": "shepherd-local",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:4566",
            "AWS_PROFILE": "prod",
            "AWS_REGION": "us-east-1",
        }
    )
    assert environment == {
        "PATH": "/usr/bin",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
