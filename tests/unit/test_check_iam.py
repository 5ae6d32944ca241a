"""Tests for tools/check_iam.py, the static check that every IAM role allows what its code and services call."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "iam" / "template.yaml"
sys.path.append(str(ROOT / "tools"))  # tools/ holds scripts, not a package

import check_iam  # noqa: E402
from aws_calls import AwsCall, CodeIndex, Reach  # noqa: E402

LINE = re.compile(
    r"^(?P<principal>\w+): missing (?P<action>[\w-]+:\w+) on (?P<resource>.+) \(called by (?P<origin>.+)\)$"
)


@pytest.fixture(scope="module")
def fixture_lines() -> list[str]:
    return check_iam.check(FIXTURE).lines()


@pytest.fixture(scope="module")
def real_outcome() -> check_iam.Outcome:
    return check_iam.check(ROOT / "template.yaml")


def _of(lines: list[str], principal: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{principal}: ")]


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_role_without_an_action_its_layer_code_calls_is_reported_with_the_call(fixture_lines):
    # Given StoreFunction's handler writes through the layer's ItemStore, whose put_item its role does not allow
    store = FIXTURE.parent / "layer" / "fixturelib" / "store.py"
    # When the template is checked, then the finding names the function, the action, the table and the call
    origin = f"layer/fixturelib/store.py:{_line_of(store, 'put_item(')} put_item"
    assert f"StoreFunction: missing dynamodb:PutItem on ItemsTable (called by {origin})" in fixture_lines


def test_the_command_exits_1_with_one_line_per_missing_permission(capsys):
    assert check_iam.main([str(FIXTURE)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed == check_iam.check(FIXTURE).lines()
    assert all(LINE.match(line) for line in printed)


def test_a_wildcard_action_covers_the_calls_it_matches(fixture_lines):
    # dynamodb:Get* allows the get_item that ItemStore.read calls through getattr and a module-level dict
    assert not [line for line in _of(fixture_lines, "StoreFunction") if "GetItem" in line]


def test_code_that_is_never_reached_needs_nothing(fixture_lines):
    # ItemStore.forget is never called; ItemStore.get is named like the dict.get the handler calls on its event
    assert not [line for line in fixture_lines if "DeleteItem" in line or "dynamodb:Scan" in line]


def test_a_state_machine_that_logs_without_the_log_delivery_actions_is_flagged(fixture_lines):
    flagged = {
        m["action"] for m in map(LINE.match, _of(fixture_lines, "FlowStateMachine")) if m and m["resource"] == "*"
    }
    assert flagged == set(check_iam.LOG_DELIVERY_ACTIONS)


def test_a_task_s_integration_needs_its_action_on_the_resource_it_names(fixture_lines):
    asl = FIXTURE.parent / "statemachines" / "flow.asl.json"
    line = _line_of(asl, '"Alert": {')
    origin = f"statemachines/flow.asl.json:{line} Alert"
    assert f"FlowStateMachine: missing sns:Publish on ${{AlertTopicArn}} (called by {origin})" in fixture_lines
    # LambdaInvokePolicy (a SAM policy template) allows the lambda:invoke task, and SAM's own X-Ray policy the tracing
    assert not [line for line in fixture_lines if "lambda:InvokeFunction" in line or "xray:" in line]


def test_the_sagemaker_role_needs_the_kms_actions_on_the_key_passed_with_it(fixture_lines):
    missing = {
        m["action"] for m in map(LINE.match, _of(fixture_lines, "SageMakerRole")) if m and m["resource"] == "DataKey"
    }
    assert missing == {"kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant"}  # kms:Decrypt is allowed
    assert len(_of(fixture_lines, "SageMakerRole")) == 3  # S3, ECR, logs and metrics are allowed


@pytest.mark.parametrize(
    ("granted", "action", "allowed"),
    [
        (("sagemaker:Describe*", "arn:aws:sagemaker:us-east-1:1:endpoint/*"), "sagemaker:DescribeEndpoint", True),
        (("sagemaker:Describe*", "arn:aws:sagemaker:us-east-1:1:model/*"), "sagemaker:DescribeEndpoint", False),
        (("s3:*", "arn:aws:s3:::bucket"), "s3:ListBucket", True),
        (("s3:ListBucket", "arn:aws:s3:::bucket/*"), "s3:ListBucket", False),  # objects are not the bucket
        (("s3:GetObject", "arn:aws:s3:::bucket"), "s3:GetObject", False),
        (("cloudwatch:GetMetricData", "arn:aws:cloudwatch:us-east-1:1:*"), "cloudwatch:GetMetricData", False),
        (("cloudwatch:GetMetric*", "*"), "cloudwatch:GetMetricData", True),  # no resource-level permissions: "*"
    ],
)
def test_actions_match_with_iam_wildcards_and_resources_by_type(granted, action, allowed):
    statement = check_iam.Statement((granted[0],), (granted[1],))
    [need] = check_iam.needs("Function", action, "test")
    assert check_iam.allows([statement], need) is allowed


def test_an_environment_variable_naming_a_resource_of_the_action_s_type_narrows_it():
    table = check_iam.Candidate("arn:aws:dynamodb:us-east-1:1:table/items", "ItemsTable")
    topic = check_iam.Candidate("arn:aws:sns:us-east-1:1:alerts", "AlertTopic")
    [need] = check_iam.needs("Function", "dynamodb:PutItem", "test", [topic, table])
    other_table = check_iam.Statement(("dynamodb:PutItem",), ("arn:aws:dynamodb:us-east-1:1:table/other",))
    assert need.label == "ItemsTable"
    assert not check_iam.allows([other_table], need)


@pytest.mark.parametrize(
    ("service", "method", "details", "actions"),
    [
        ("s3", "head_object", (), ("s3:GetObject",)),
        ("s3", "list_objects_v2", (), ("s3:ListBucket",)),
        ("s3", "copy_object", (), ("s3:GetObject", "s3:PutObject")),
        (
            "dynamodb",
            "transact_write_items",
            ("TransactItems", "Put", "ConditionCheck"),
            ("dynamodb:PutItem", "dynamodb:ConditionCheckItem"),
        ),
        ("stepfunctions", "start_execution", (), ("states:StartExecution",)),
        ("cloudwatch", "get_metric_data", (), ("cloudwatch:GetMetricData",)),
        ("sagemaker", "create_model", (), ("sagemaker:CreateModel", "iam:PassRole")),
        ("sagemaker", "create_endpoint", ("Tags",), ("sagemaker:CreateEndpoint", "sagemaker:AddTags")),
        ("s3", "no_such_operation", (), None),
        # A version named: s3:GetObjectVersion (API_GetObject.html, Permissions), as the local IAM authorizes it
        ("s3", "get_object", ("Bucket", "Key", "VersionId"), ("s3:GetObject", "s3:GetObjectVersion")),
        ("s3", "head_object", ("VersionId",), ("s3:GetObject", "s3:GetObjectVersion")),
        ("s3", "delete_object", ("VersionId",), ("s3:DeleteObject", "s3:DeleteObjectVersion")),
        ("s3", "copy_object", ("CopySource.VersionId",), ("s3:GetObject", "s3:PutObject", "s3:GetObjectVersion")),
        ("s3", "download_file", ("ExtraArgs.VersionId",), ("s3:GetObject", "s3:GetObjectVersion")),
        ("s3", "put_object", ("VersionId",), ("s3:PutObject",)),
    ],
)
def test_operations_map_to_their_iam_actions(service, method, details, actions):
    call = AwsCall(Path("code.py"), 1, service, method, "code", frozenset(details))
    assert check_iam.actions_of(call) == actions


def test_the_report_on_the_real_template_is_exactly_its_findings(real_outcome):
    # Whatever the template's state (it is being fixed in parallel): the command prints the findings, nothing else
    run = subprocess.run(
        [sys.executable, "tools/check_iam.py", "template.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.stderr == ""
    findings = real_outcome.lines()
    assert all(LINE.match(line) for line in findings), "a problem other than a missing permission"
    if findings:
        assert (run.returncode, run.stdout.splitlines()) == (1, findings)
    else:
        assert run.returncode == 0
        assert run.stdout.startswith("template.yaml: every role allows what it is used for (")


def test_the_real_code_s_indirect_calls_are_seen():
    # StartLifecycle starts executions through a client passed as a parameter; StartJob creates jobs via getattr
    stand = check_iam.StandIns(check_iam.load_template(ROOT / "template.yaml", {}, "us-east-1", "shepherd"))
    index = check_iam.CodeIndex()
    lifecycle = check_iam.function_needs(stand, index, "StartLifecycleFunction")
    start_job = check_iam.function_needs(stand, index, "StartJobFunction")
    assert ("states:StartExecution", "ModelLifecycleStateMachine") in {(n.action, n.label) for n in lifecycle}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:CreateTransformJob", "iam:PassRole"} <= {
        n.action for n in start_job
    }


def test_the_code_reader_follows_clients_through_attributes_globals_helpers_and_dispatch_dicts():
    # Given the fixture handler: a client on an adapter instance, a global one through a helper, a dispatch dict
    code, layer = FIXTURE.parent / "code" / "store", FIXTURE.parent / "layer"
    # When its calls are read
    reach = Reach(CodeIndex(), [code, layer], "app.handler")
    # Then the reached ones are found, and the adapter's uncalled methods are not
    assert {(c.service, c.method) for c in reach.calls} == {
        ("dynamodb", "put_item"),
        ("dynamodb", "get_item"),
        ("s3", "get_object"),
    }


PORT_HANDLER = """
import store


class Deps:
    def __init__(self, objects):
        self.objects = objects


def handler(event, context):
    deps = Deps(objects=store)
    return deps.objects.read("b", "k"{version})
"""
PORT_STORE = """
import boto3


def read(bucket, key, version_id=None):
    extra = {"VersionId": version_id} if version_id else {}
    return boto3.client("s3").get_object(Bucket=bucket, Key=key, **extra)


def move(bucket, key, version_id, target):
    source = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    boto3.client("s3").copy_object(Bucket=bucket, Key=target, CopySource=source)
"""


@pytest.mark.parametrize(
    ("version", "needed"),
    [
        ("", {"s3:GetObject"}),
        (", event['version']", {"s3:GetObject", "s3:GetObjectVersion"}),
        (", version_id=None", {"s3:GetObject"}),
    ],
)
def test_a_version_passed_through_a_module_port_and_a_dict_needs_get_object_version(tmp_path, version, needed):
    # Given a handler that reads through a module passed as a port (Deps(objects=store)), whose read passes
    # VersionId in **extra only when it is given one
    (tmp_path / "app.py").write_text(PORT_HANDLER.format(version=version))
    (tmp_path / "store.py").write_text(PORT_STORE)
    # When its calls are read, then the port's function is reached (not its uncalled move), and it needs
    # s3:GetObjectVersion exactly when some caller gives it a version
    reach = Reach(CodeIndex(), [tmp_path], "app.handler")
    assert {(c.service, c.method) for c in reach.calls} == {("s3", "get_object")}
    assert {a for call in reach.calls for a in check_iam.actions_of(call) or ()} == needed


def test_a_copy_of_a_named_version_needs_get_object_version_on_its_source(tmp_path):
    handler = "import store\n\ndef handler(event, context):\n    store.move('b', 'k', 'v1', 't')\n"
    (tmp_path / "app.py").write_text(handler)
    (tmp_path / "store.py").write_text(PORT_STORE)
    (call,) = Reach(CodeIndex(), [tmp_path], "app.handler").calls
    assert "CopySource.VersionId" in call.details
    assert check_iam.actions_of(call) == ("s3:GetObject", "s3:PutObject", "s3:GetObjectVersion")


GIVEN_HANDLER = """
from edge import setting
from locks import Locks
from tokens import Tokens

locks, tokens = Locks(setting("LOCKS_TABLE")), Tokens(setting("TOKENS_TABLE"))


def handler(event, context):
    locks.take(event["name"])
    tokens.keep(event["token"])
"""
GIVEN_ADAPTER = """
import boto3


class {cls}:
    def __init__(self, table):
        self.table = table

    def {method}(self, key):
        boto3.client("dynamodb").put_item(TableName=self.table, Item={{"pk": {{"S": key}}}})
"""


def test_a_variable_passed_to_an_adapter_names_what_that_adapter_s_calls_act_on(tmp_path):
    # Given a handler that reads two tables' names once and passes each to its adapter's constructor
    (tmp_path / "app.py").write_text(GIVEN_HANDLER)
    (tmp_path / "edge.py").write_text("import os\n\ndef setting(name):\n    return os.environ[name]\n")
    (tmp_path / "locks.py").write_text(GIVEN_ADAPTER.format(cls="Locks", method="take"))
    (tmp_path / "tokens.py").write_text(GIVEN_ADAPTER.format(cls="Tokens", method="keep"))
    # When its calls are read, then each adapter's calls are named by its own variable, not by both
    reach = Reach(CodeIndex(), [tmp_path], "app.handler")
    assert {c.module for c in reach.calls} == {"locks", "tokens"}
    assert (reach.env_vars("locks"), reach.env_vars("tokens")) == ({"LOCKS_TABLE"}, {"TOKENS_TABLE"})


def test_the_rollout_function_s_lock_calls_need_the_rollouts_table_only():
    # RolloutFunction is given two tables' names; shepherd.aws.rollouts reads neither, its caller passes one
    stand = check_iam.StandIns(check_iam.load_template(ROOT / "template.yaml", {}, "us-east-1", "shepherd"))
    needs = check_iam.function_needs(stand, check_iam.CodeIndex(), "RolloutFunction")
    tables = {n.label for n in needs if n.action.startswith("dynamodb:") and "aws/rollouts.py" in n.origin}
    assert tables == {"RolloutsTable"}


DISPATCH_HANDLER = """
import steps

WITH_TOKEN = ("deploy", "finish")


def handler(event, context):
    action = event["action"]
    if action in WITH_TOKEN:
        return getattr(steps, action)(event["token"])
"""
DISPATCH_STEPS = """
import boto3


def deploy(token):
    boto3.client("sagemaker").update_endpoint(EndpointName="e", EndpointConfigName=token)


def finish(token):
    boto3.client("stepfunctions").send_task_success(taskToken=token, output="{}")


def unnamed(token):
    boto3.client("sns").publish(TopicArn=token, Message="never dispatched")
"""


def test_a_dispatch_through_getattr_on_a_module_reaches_the_steps_it_can_name(tmp_path):
    # Given a handler that runs steps.<action> for the actions its module-level tuple names
    (tmp_path / "app.py").write_text(DISPATCH_HANDLER)
    (tmp_path / "steps.py").write_text(DISPATCH_STEPS)
    # When its calls are read, then the named steps' calls are found, and the unnamed step's are not
    reach = Reach(CodeIndex(), [tmp_path], "app.handler")
    assert {(c.service, c.method) for c in reach.calls} == {
        ("sagemaker", "update_endpoint"),
        ("stepfunctions", "send_task_success"),
    }


def test_the_rollout_function_s_dispatched_steps_are_checked():
    # deploy_first, enter_stage, ... run through getattr(steps, action): their endpoint and token calls count
    stand = check_iam.StandIns(check_iam.load_template(ROOT / "template.yaml", {}, "us-east-1", "shepherd"))
    needs = {(n.action, n.label) for n in check_iam.function_needs(stand, check_iam.CodeIndex(), "RolloutFunction")}
    assert ("dynamodb:PutItem", "TaskTokensTable") in needs
    assert {"sagemaker:UpdateEndpointWeightsAndCapacities", "states:SendTaskSuccess"} <= {a for a, _ in needs}
