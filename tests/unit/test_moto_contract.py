"""Contract tests: every moto internal that localcloud/moto/ patches, replaces, calls or reads.

moto is pinned; when an upgrade moves or reshapes one of these, a test here fails by name before anything
subtler breaks: fix the module in localcloud/moto/, then this contract. Patches keep the function they wrap as
``__wrapped__``, and the checks unwrap first, so they hold whether or not a local cloud ran earlier in the session.
CloudWatch's internals are in test_cloudwatch_contract.py, the S3 backend's direct I/O in test_moto_contract_s3.py.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
from importlib.metadata import version
from pathlib import Path

import pytest

SFN = "moto.stepfunctions.parser"
LOCAL_MOTO = Path(__file__).resolve().parents[2] / "localcloud" / "moto"


def _params(obj: object) -> list[str]:
    return list(inspect.signature(inspect.unwrap(obj)).parameters)  # type: ignore[arg-type]


def _moto_imports() -> list[tuple[str, str, str | None]]:
    """(file, moto module, imported name or None) for every moto import in localcloud/moto/."""
    found = []
    for path in sorted(LOCAL_MOTO.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "moto":
                found.extend((path.name, node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.extend((path.name, a.name, None) for a in node.names if a.name.split(".")[0] == "moto")
    return found


def test_moto_is_the_pinned_version():
    assert version("moto") == "5.2.5"


@pytest.mark.parametrize(("path", "module", "name"), _moto_imports(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_moto_import_of_localcloud_moto_resolves(path, module, name):
    imported = importlib.import_module(module)
    if name is not None and not hasattr(imported, name):
        # `from package import submodule`
        assert importlib.util.find_spec(f"{module}.{name}") is not None, f"{path}: {module} has no {name}"


def test_the_contract_sees_the_patch_modules():
    files = {path for path, _, _ in _moto_imports()}
    assert {"cloudwatch.py", "core.py", "events.py", "s3.py", "server.py", "stepfunctions.py"} <= files


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("core", "DEFAULT_ACCOUNT_ID"),
        ("awslambda", "lambda_simple_backends"),
        ("events", "events_backends"),
        ("iam", "iam_backends"),
        ("kms", "kms_backends"),
        ("s3", "s3_backends"),
        ("scheduler", "scheduler_backends"),
        ("sns", "sns_backends"),
        ("stepfunctions", "stepfunctions_parser_backends"),
        ("sts", "sts_backends"),
    ],
)
def test_the_names_localcloud_imports_from_localcloud_moto_resolve(module, name):
    from moto.core.base_backend import BackendDict

    value = getattr(importlib.import_module(f"localcloud.moto.{module}"), name)
    if name.endswith("_backends"):
        assert isinstance(value, BackendDict)
    else:
        assert value == "123456789012"


# ---------------------------------------------------------------- server and switches: server.py, core.py


def test_server_app_seams():
    from werkzeug.serving import WSGIRequestHandler

    werkzeug_app = importlib.import_module("moto.moto_server.werkzeug_app")
    assert isinstance(werkzeug_app.DISABLE_GLOBAL_CORS, bool)
    assert "CORS(backend_app)" in inspect.getsource(werkzeug_app.create_backend_app)
    assert "DISABLE_GLOBAL_CORS" in inspect.getsource(werkzeug_app.create_backend_app)
    assert _params(werkzeug_app.DomainDispatcherApplication.__init__)[:2] == ["self", "create_app"]
    assert issubclass(werkzeug_app.MotoRequestHandler, WSGIRequestHandler)  # localcloud.keepalive extends it


def test_user_config_switches():
    from moto.core.config import default_user_config

    assert "execute_state_machine" in default_user_config["stepfunctions"]
    assert "use_docker" in default_user_config["lambda"]


def test_in_process_mock_is_botocore_stubbers_switch():
    from moto import mock_aws
    from moto.core.models import botocore_stubber

    from localcloud.moto.core import in_process_mock

    assert isinstance(botocore_stubber.enabled, bool)
    with mock_aws():
        assert in_process_mock()


# ---------------------------------------------------------------- Step Functions engine: stepfunctions.py


def test_start_execution_signature():
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import get_backend

    assert _params(StepFunctionsParserBackend.start_execution) == [
        "self",
        "state_machine_arn",
        "name",
        "execution_input",
        "trace_header",
    ]
    assert _params(get_backend) == ["account", "region"]


def test_engine_timing_seams():
    wait_function = importlib.import_module(f"{SFN}.asl.component.state.wait.wait_function.wait_function")
    timestamp = importlib.import_module(f"{SFN}.asl.component.state.wait.wait_function.timestamp")
    execute_state = importlib.import_module(f"{SFN}.asl.component.state.exec.execute_state")
    callback = importlib.import_module(f"{SFN}.asl.eval.callback.callback")
    retrier_decl = importlib.import_module(f"{SFN}.asl.component.common.retry.retrier_decl")
    program = importlib.import_module(f"{SFN}.asl.component.program.program")

    assert _params(wait_function.WaitFunction._wait_interval) == ["self", "env", "wait_seconds"]
    assert _params(timestamp.Timestamp._get_wait_seconds) == ["self", "env"]
    assert hasattr(timestamp.Timestamp, "_from_timestamp_string")
    assert hasattr(timestamp.Timestamp, "_create_failure_event")
    assert hasattr(timestamp, "FailureEventException")
    assert _params(execute_state.ExecutionState._evaluate_with_timeout) == ["self", "env"]
    # We swap each module's `threading`/`time` for a namespace holding only what it uses.
    execute_source = inspect.getsource(execute_state)
    assert "threading.Event(" in execute_source
    assert "threading." not in execute_source.replace("threading.Event(", "")
    program_source = inspect.getsource(program)
    assert "threading.Thread(" in program_source
    assert "threading." not in program_source.replace("threading.Thread(", "")
    retrier_source = inspect.getsource(retrier_decl)
    assert "time.sleep(" in retrier_source
    assert "time." not in retrier_source.replace("time.sleep(", "")
    assert callback.Event is not None
    assert "Event(" in inspect.getsource(callback)


def test_jsonata_seams():
    moto_jsonata = importlib.import_module(f"{SFN}.asl.jsonata.jsonata")
    states = importlib.import_module(f"{SFN}.asl.eval.states")
    variable_store = importlib.import_module(f"{SFN}.asl.eval.variable_store")
    preprocessor = importlib.import_module(f"{SFN}.asl.parse.preprocessor")

    assert hasattr(moto_jsonata, "_eval_jsonata")
    assert _params(moto_jsonata.JSONataException) == ["error", "details"]
    for module in (moto_jsonata, states, variable_store):
        assert hasattr(module, "encode_jsonata_variable_declarations"), module.__name__
    assert _params(preprocessor.Preprocessor._inner_string_of) == ["parser_rule_context"]
    assert callable(preprocessor.is_terminal)
    assert hasattr(preprocessor.ASLLexer, "NULL")


def test_service_integration_normalisers():
    module = importlib.import_module(f"{SFN}.asl.component.state.exec.state_task.service.state_task_service")
    service = module.StateTaskService
    assert _params(service._normalise_parameters) == ["self", "parameters", "boto_service_name", "service_action_name"]
    assert _params(service._normalise_response) == ["self", "response", "boto_service_name", "service_action_name"]
    assert hasattr(service, "_get_boto_service_name")
    assert hasattr(service, "_get_boto_service_action")


def test_heartbeat_seam():
    callback = importlib.import_module(f"{SFN}.asl.eval.callback.callback")
    assert _params(callback.CallbackEndpoint.notify_heartbeat) == ["self"]
    assert "if not self._heartbeat_endpoint:" in inspect.getsource(
        inspect.unwrap(callback.CallbackEndpoint.notify_heartbeat)
    )


def test_send_task_failure_seam():
    """moto's handler passes error but not cause; the parser backend (the engine we run) takes both."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    original = inspect.unwrap(StepFunctionResponse.send_task_failure)
    assert 'self._get_param("cause")' not in inspect.getsource(original), "moto passes cause now: drop the patch"
    assert _params(StepFunctionsParserBackend.send_task_failure) == ["self", "task_token", "error", "cause"]
    assert "stepfunction_backend" in dir(StepFunctionResponse)


def test_callback_lookup_seams():
    """SendTask* find a token through _get_executions; we drop executions whose worker has no environment."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    assert _params(StepFunctionsParserBackend._get_executions) == ["self", "execution_status"]
    for name in ("send_task_success", "send_task_failure", "send_task_heartbeat"):
        assert "self._get_executions(" in inspect.getsource(inspect.unwrap(getattr(StepFunctionsParserBackend, name)))
    execution = importlib.import_module(f"{SFN}.backend.execution")
    assert "self.exec_worker" in inspect.getsource(execution.Execution)


def test_task_client_seam():
    """Every engine module that names boto_client_for is patched; the role comes from state_credentials.role_arn."""
    boto_client = importlib.import_module(f"{SFN}.asl.utils.boto_client")
    credentials = importlib.import_module(f"{SFN}.asl.component.state.exec.state_task.credentials")

    assert _params(boto_client.boto_client_for) == ["region", "service", "state_credentials"]
    assert "role_arn" in {f.name for f in dataclasses.fields(credentials.StateCredentials)}


def test_state_machine_creation_seam():
    from moto.stepfunctions.exceptions import AWSError
    from moto.stepfunctions.models import StepFunctionBackend

    assert _params(StepFunctionBackend.create_state_machine)[:4] == ["self", "name", "definition", "roleArn"]
    # A subclass names its error by TYPE and its HTTP status by STATUS; the message is the one argument.
    assert _params(AWSError.__init__)[:2] == ["self", "message"]
    assert "self.TYPE" in inspect.getsource(AWSError.__init__)
    assert "self.STATUS" in inspect.getsource(AWSError.__init__)


def test_static_analyser_seam():
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException
    from moto.stepfunctions.parser.asl.static_analyser.static_analyser import StaticAnalyser

    from localcloud.moto.stepfunctions import InvalidDefinition, analyse_definition

    assert _params(StaticAnalyser.analyse) == ["self", "definition"]
    assert "errors" in _params(ASLParserException.__init__)
    analyse_definition('{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}')
    with pytest.raises(InvalidDefinition):
        analyse_definition('{"StartAt": "A", "States": {"A": {"Type": "Nope", "End": true}}}')


def test_engine_needs_only_batch_utils_and_utils_stays_a_leaf():
    service = importlib.import_module(f"{SFN}.asl.component.state.exec.state_task.service.state_task_service_batch")
    assert "from moto.batch.utils import JobStatus" in inspect.getsource(service)
    batch_utils = inspect.getsource(importlib.import_module("moto.batch.utils"))
    assert "import models" not in batch_utils
    assert "moto.ec2" not in batch_utils
    # and the real package still loads its backends afterwards
    assert importlib.import_module("moto.batch").batch_backends is not None


# ---------------------------------------------------------------- EventBridge, S3, SQS: events.py, s3.py, sqs.py


def test_events_seams():
    from moto.events import models

    assert _params(models.Rule.send_to_targets) == ["self", "original_event", "transform_input"]
    init = inspect.getsource(models.Rule.__init__)
    for attribute in ("event_pattern", "scheduled_expression", "state", "targets", "account_id", "region_name"):
        assert f"self.{attribute} =" in init, attribute
    assert isinstance(inspect.getattr_static(models.Rule, "arn"), property)
    assert hasattr(models.EventPattern, "dump")
    assert hasattr(models.EventPattern, "matches_event")
    assert "self.rules" in inspect.getsource(models.EventBus.__init__)
    assert "self.event_buses" in inspect.getsource(models.EventsBackend.__init__)


def test_s3_notification_seams():
    from moto.s3 import notifications

    assert _params(notifications._send_event_bridge_message) == ["account_id", "bucket", "event_name", "key"]
    assert _params(notifications.send_event) == ["account_id", "event_name", "bucket", "key"]
    events = notifications.S3NotificationEvent
    for name in ("OBJECT_CREATED_PUT_EVENT", "OBJECT_CREATED_POST_EVENT", "OBJECT_TAGGING_PUT_EVENT"):
        assert hasattr(events, name)
    assert notifications._detail_type("s3:ObjectCreated:Put") == "Object Created"


def test_bucket_policy_check_seam():
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    assert _params(FakeBucket.get_permission) == ["self", "action", "resource"]
    assert PermissionResult.NEUTRAL is not None


def test_sqs_send_message_seam():
    from moto.sqs.models import SQSBackend

    assert {"queue_name", "message_body", "group_id"} <= set(_params(SQSBackend.send_message))


def test_scheduler_backend_seams():
    from moto.scheduler.models import EventBridgeSchedulerBackend, ScheduleGroup

    assert "self.schedule_groups" in inspect.getsource(EventBridgeSchedulerBackend.__init__)
    assert "self.schedules" in inspect.getsource(ScheduleGroup.__init__)


@pytest.mark.parametrize("module", ["moto.logs", "moto.kms", "moto.scheduler", "moto.ssm", "moto.sqs", "moto.sns"])
def test_services_the_deployer_uses_are_installed(module):
    importlib.import_module(module)


# ---------------------------------------------------------------- backends read by IAM and autoscaling


def test_iam_and_sts_seams():
    """localcloud.iam.principals: AWS's managed policies loaded late, roles by ARN, sessions from STS."""
    from moto.iam.models import IAMBackend
    from moto.sts.models import STSBackend

    init = inspect.getsource(IAMBackend.__init__) + inspect.getsource(IAMBackend.reset)
    assert "self.aws_managed_policies" in init
    assert "self.managed_policies" in init
    assert _params(IAMBackend._init_aws_policies) == ["self"]
    assert _params(IAMBackend.get_role_by_arn) == ["self", "arn"]
    assert _params(STSBackend.assume_role) == [
        "self",
        "region_name",
        "role_session_name",
        "role_arn",
        "policy",
        "duration",
        "external_id",
    ]


def test_resource_policy_seams():
    """localcloud.iam.authorizer and lookups read resource policies and keys off the backends."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.kms.models import KmsBackend
    from moto.s3.models import S3Backend
    from moto.sns.models import SNSBackend

    assert _params(LambdaSimpleBackend.get_policy)[:2] == ["self", "function_name"]
    assert "self.keys" in inspect.getsource(KmsBackend.__init__)
    assert "self.buckets" in inspect.getsource(S3Backend.__init__)
    assert "self.topics" in inspect.getsource(SNSBackend.__init__)


def test_application_autoscaling_seams():
    from moto.applicationautoscaling.models import ApplicationAutoscalingBackend

    from localcloud.moto.applicationautoscaling import backend

    assert _params(ApplicationAutoscalingBackend.describe_scalable_targets) == [
        "self",
        "namespace",
        "r_ids",
        "dimension",
    ]
    assert "self.policies" in inspect.getsource(ApplicationAutoscalingBackend.__init__)
    assert isinstance(backend(), ApplicationAutoscalingBackend)


def test_logs_kms_key_seams():
    """localcloud.moto.logs checks CreateLogGroup's kmsKeyId, adds AssociateKmsKey, and reads keys' states."""
    import moto.logs.responses
    from moto.core.exceptions import JsonRESTError
    from moto.kms.models import Key
    from moto.logs.exceptions import LogsClientError
    from moto.logs.models import LogGroup, LogsBackend
    from moto.logs.responses import LogsResponse

    assert "logs.py" in {path for path, _, _ in _moto_imports()}
    assert _params(LogsBackend.create_log_group)[:3] == ["self", "log_group_name", "tags"]
    assert "kmsKeyId=kms_key_id" in inspect.getsource(inspect.unwrap(LogsResponse.create_log_group))
    assert 'self.kms_key_id = kwargs.get("kmsKeyId")' in inspect.getsource(LogGroup.__init__)
    assert '"kmsKeyId"' in inspect.getsource(LogGroup.to_describe_dict)
    assert "self.groups" in inspect.getsource(LogsBackend.__init__)
    assert issubclass(LogsClientError, JsonRESTError)
    assert _params(LogsClientError.__init__)[:3] == ["self", "error_type", "message"]
    # moto has no AssociateKmsKey of its own: when it gains one, drop ours.
    assert "def associate_kms_key" not in inspect.getsource(moto.logs.responses)
    assert 'self.key_state = "Enabled"' in inspect.getsource(Key.__init__)
