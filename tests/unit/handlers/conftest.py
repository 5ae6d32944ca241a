"""Shared fixtures for the handler tests: template.yaml's resources in moto (in-process), handlers loaded by path.

Only the standard library, pytest, boto3/botocore, moto, pydantic, Powertools, yaml and shepherd are imported
here and in the tests beside this file, so they also run on the functions' own runtime (Python 3.13 with the
layer's dependencies) without the local cloud, the SageMaker SDK or the data-science stack.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[3]
FUNCTIONS = ROOT / "functions"
EVENTS = ROOT / "events"
LAYER = ROOT / "layers" / "shepherd"
if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))  # the layer, as Lambda puts it on the path (also installed in the dev venv)

from shepherd.aws import clients  # noqa: E402 -- after the layer is on the path

REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGE = "test"
BUCKET = "shepherd-data-123456789012"  # the bucket the sample events under events/ name
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/shepherd-{STAGE}-sagemaker"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
TOKENS_TABLE = f"shepherd-{STAGE}-task-tokens"
IDEMPOTENCY_TABLE = f"shepherd-{STAGE}-idempotency"
ROLLOUTS_TABLE = f"shepherd-{STAGE}-rollouts"
TOPIC = f"shepherd-{STAGE}-notifications"
BATCH_STATE_MACHINE = f"shepherd-{STAGE}-batch-transform"
LIFECYCLE_STATE_MACHINE = f"shepherd-{STAGE}-model-lifecycle"
ROLLOUT_STATE_MACHINE = f"shepherd-{STAGE}-rollout"

# The value each environment variable of template.yaml takes in these tests. A variable the template gives
# a tested function without a value here fails its tests by name, so they cannot drift from the stack.
VALUES = {
    "POWERTOOLS_SERVICE_NAME": "shepherd",
    "POWERTOOLS_METRICS_NAMESPACE": "Shepherd",
    "STAGE_NAME": STAGE,
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
    "TASK_TOKENS_TABLE": TOKENS_TABLE,
    "ROLLOUTS_TABLE": ROLLOUTS_TABLE,
    "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "SAGEMAKER_ROLE_ARN": ROLE_ARN,
    "DATA_KEY_ARN": KEY_ARN,
    "DEFAULT_TRAINING_INSTANCE_TYPE": "ml.m5.large",
    "DEFAULT_BATCH_INSTANCE_TYPE": "ml.m5.large",
    "SUBNET_IDS": "",
    "SECURITY_GROUP_IDS": "",
    "DATA_BUCKET": BUCKET,
    "BATCH_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{BATCH_STATE_MACHINE}",
    "LIFECYCLE_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{LIFECYCLE_STATE_MACHINE}",
    "ROLLOUT_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{ROLLOUT_STATE_MACHINE}",
    "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC}",
    "MONITOR_STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:shepherd-{STAGE}-monitor",
    "MONITOR_SCHEDULE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/shepherd-{STAGE}-monitor-schedule",
}
TEST_ONLY = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Anything that would send boto3 elsewhere than moto (AWS_ENDPOINT_URL_<SERVICE> too), or change the clock.
UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "SHEPHERD_LOCAL_CLOCK")
# Step Functions' ASL engine in moto: it answers SendTaskSuccess for an unknown token as AWS does (InvalidToken).
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}}
DONE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form intrinsics (!Ref, !Sub, ...) as None: only literal values are used."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


@functools.cache
def template() -> dict[str, Any]:
    with (ROOT / "template.yaml").open() as text:
        return dict(yaml.load(text, Loader=_TemplateLoader))


def globals_environment() -> dict[str, str]:
    """The variables every function gets (template.yaml's Globals), with their test values."""
    return _with_test_values(template()["Globals"]["Function"]["Environment"]["Variables"], "Globals")


def function_environment(function: str) -> dict[str, str]:
    """The variables template.yaml gives functions/<function>/, with their test values."""
    for resource in template()["Resources"].values():
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function" and properties.get("CodeUri") == f"functions/{function}/":
            return _with_test_values((properties.get("Environment") or {}).get("Variables") or {}, function)
    pytest.fail(f"template.yaml has no function with CodeUri functions/{function}/")


def _with_test_values(names: dict[str, Any], owner: str) -> dict[str, str]:
    missing = sorted(set(names) - set(VALUES))
    if missing:
        pytest.fail(f"template.yaml gives {owner} {missing}: add test values to tests/unit/handlers/conftest.py")
    return {name: VALUES[name] for name in names}


def sample_event(name: str) -> dict[str, Any]:
    """A real-shaped sample event from events/."""
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


@dataclass
class LambdaContext:
    """What Powertools reads from Lambda's context object."""

    function_name: str = f"shepherd-{STAGE}-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:shepherd-{STAGE}-function"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    log_group_name: str = f"/aws/lambda/shepherd-{STAGE}-function"
    log_stream_name: str = "2024/03/08/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Cloud:
    """The mocked account: clients for assertions and the resources the template would create."""

    s3: Any
    dynamodb: Any
    sagemaker: Any
    stepfunctions: Any
    topic_arn: str
    context: LambdaContext = field(default_factory=LambdaContext)

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def put(self, key: str, body: bytes | str = b"x") -> str:
        """Upload an object; returns its version id."""
        data = body.encode() if isinstance(body, str) else body
        return str(self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)["VersionId"])

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def token_item(self, job_name: str) -> dict[str, Any] | None:
        found = self.dynamodb.get_item(TableName=TOKENS_TABLE, Key={"job_name": {"S": job_name}}).get("Item")
        return None if found is None else {name: next(iter(value.values())) for name, value in found.items()}


def _create_table(dynamodb: Any, name: str, resource: dict[str, Any]) -> None:
    properties = resource["Properties"]
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The functions' environment from template.yaml, fake credentials, and fresh layer clients."""
    for name in [*UNSET, *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_"))]:
        monkeypatch.delenv(name, raising=False)
    values = globals_environment() | TEST_ONLY
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    monkeypatch.setattr(clients, "_session", _layer_session)
    yield values
    clients.reset()


@functools.cache
def _layer_session() -> Any:
    """The layer's botocore session, made once per process under the environment above: the clients are
    still new each test, but a new session reads botocore's service models again (about 0.1 s a test)."""
    return clients.new_session()


@functools.cache
def _test_session() -> boto3.Session:
    """One boto3 session per process for the tests' clients: mock_aws drops boto3's default session, and
    a new session reads botocore's service models again (about 0.4 s of CPU a test)."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def aws(environment: dict[str, str]) -> Iterator[Cloud]:
    """moto in-process with the data bucket (versioned), the token, idempotency and rollout tables and the topic.

    A fresh mock_aws (empty backends) and fresh clients for each test."""
    resources = template()["Resources"]
    with mock_aws(config=MOTO_CONFIG):
        s3 = _test_session().client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = _test_session().client("dynamodb")
        _create_table(dynamodb, TOKENS_TABLE, resources["TaskTokensTable"])
        _create_table(dynamodb, IDEMPOTENCY_TABLE, resources["IdempotencyTable"])
        _create_table(dynamodb, ROLLOUTS_TABLE, resources["RolloutsTable"])
        topic_arn = _test_session().client("sns").create_topic(Name=TOPIC)["TopicArn"]
        yield Cloud(
            s3=s3,
            dynamodb=dynamodb,
            sagemaker=_test_session().client("sagemaker"),
            stepfunctions=_test_session().client("stepfunctions"),
            topic_arn=topic_arn,
        )


def _stand_in(aws: Cloud, name: str) -> str:
    """A state machine that succeeds at once, under the template's name (the Start* functions only start it)."""
    machine = aws.stepfunctions.create_state_machine(
        name=name, definition=DONE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/shepherd-{STAGE}-states"
    )
    return str(machine["stateMachineArn"])


@pytest.fixture
def batch_state_machine(aws: Cloud) -> str:
    return _stand_in(aws, BATCH_STATE_MACHINE)


@pytest.fixture
def lifecycle_state_machine(aws: Cloud) -> str:
    return _stand_in(aws, LIFECYCLE_STATE_MACHINE)


@pytest.fixture
def rollout_state_machine(aws: Cloud) -> str:
    return _stand_in(aws, ROLLOUT_STATE_MACHINE)


_LOADED: dict[str, types.ModuleType] = {}


@pytest.fixture
def load_handler(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[[str], types.ModuleType]:
    """functions/<name>/app.py as module shepherd_function_<name>, with the function's environment set."""

    def load(function: str) -> types.ModuleType:
        for variable, value in function_environment(function).items():
            monkeypatch.setenv(variable, value)
        if function not in _LOADED:
            name = f"shepherd_function_{function}"  # every function's file is app.py: one module name each
            spec = importlib.util.spec_from_file_location(name, FUNCTIONS / function / "app.py")
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # pydantic resolves the module's annotations through sys.modules
            spec.loader.exec_module(module)
            _LOADED[function] = module
        return _LOADED[function]

    return load


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


def aws_error(code: str, message: str, status: int = 400) -> tuple[_Http, dict[str, Any]]:
    """A before-call answer that makes botocore raise the ClientError AWS would."""
    return _Http(status), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


@dataclass
class SentTasks:
    """Step Functions' SendTaskSuccess / SendTaskFailure calls, accepted as for a task that is waiting."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]]:
        self.calls.append((model.name, json.loads(params["body"])))
        return _Http(200), {"ResponseMetadata": {"HTTPStatusCode": 200}}


@pytest.fixture
def waiting_tasks(aws: Cloud) -> SentTasks:
    """Step Functions with a waiting task behind every token (moto knows none of ours)."""
    sent = SentTasks()
    events = clients.client("stepfunctions").meta.events
    for operation in ("SendTaskSuccess", "SendTaskFailure"):
        events.register(f"before-call.sfn.{operation}", sent.answer)
    return sent
