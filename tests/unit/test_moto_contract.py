"""Contract tests: every moto internal that localcloud/moto_patches.py and server.py rely on.

Patches that wrap a moto function keep it as ``__wrapped__``; signatures follow it, and
source checks unwrap first, so these tests hold whether or not a local cloud ran before.

moto is pinned; when an upgrade moves or reshapes one of these, a test here fails by name
before anything subtler breaks. Fix the patch, then this contract.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import version

import pytest

SFN = "moto.stepfunctions.parser"


def _params(obj: object) -> list[str]:
    return list(inspect.signature(obj).parameters)  # type: ignore[arg-type]


def test_moto_is_the_pinned_version():
    assert version("moto") == "5.2.5"


def test_server_app_seams():
    werkzeug_app = importlib.import_module("moto.moto_server.werkzeug_app")
    assert isinstance(werkzeug_app.DISABLE_GLOBAL_CORS, bool)
    assert "CORS(backend_app)" in inspect.getsource(werkzeug_app.create_backend_app)
    assert "DISABLE_GLOBAL_CORS" in inspect.getsource(werkzeug_app.create_backend_app)
    assert callable(werkzeug_app.DomainDispatcherApplication)
    assert werkzeug_app.MotoRequestHandler


def test_user_config_switches():
    from moto.core.config import default_user_config

    assert "execute_state_machine" in default_user_config["stepfunctions"]
    assert "use_docker" in default_user_config["lambda"]


def test_start_execution_signature():
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    assert _params(StepFunctionsParserBackend.start_execution) == [
        "self",
        "state_machine_arn",
        "name",
        "execution_input",
        "trace_header",
    ]


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


def test_events_seams():
    from moto.events import models

    assert _params(models.Rule.send_to_targets) == ["self", "original_event", "transform_input"]
    init = inspect.getsource(models.Rule.__init__)
    for attribute in ("event_pattern", "scheduled_expression", "state", "targets", "account_id", "region_name"):
        assert f"self.{attribute} =" in init, attribute
    assert hasattr(models.EventPattern, "dump")
    assert hasattr(models, "events_backends")


def test_s3_notification_seams():
    from moto.s3 import notifications

    assert _params(notifications._send_event_bridge_message) == ["account_id", "bucket", "event_name", "key"]
    assert _params(notifications.send_event) == ["account_id", "event_name", "bucket", "key"]
    events = notifications.S3NotificationEvent
    for name in ("OBJECT_CREATED_PUT_EVENT", "OBJECT_CREATED_POST_EVENT", "OBJECT_TAGGING_PUT_EVENT"):
        assert hasattr(events, name)
    assert notifications._detail_type("s3:ObjectCreated:Put") == "Object Created"


def test_scheduler_and_stepfunctions_backend_seams():
    from moto.scheduler.models import EventBridgeSchedulerBackend, ScheduleGroup, scheduler_backends
    from moto.stepfunctions import responses

    assert scheduler_backends is not None
    assert "self.schedule_groups" in inspect.getsource(EventBridgeSchedulerBackend.__init__)
    assert "self.schedules" in inspect.getsource(ScheduleGroup.__init__)
    assert callable(responses.get_backend)


@pytest.mark.parametrize("module", ["moto.logs", "moto.kms", "moto.scheduler", "moto.ssm", "moto.sqs", "moto.sns"])
def test_services_the_deployer_uses_are_installed(module):
    importlib.import_module(module)


def test_sqs_send_message_seam():
    from moto.sqs.models import SQSBackend, sqs_backends

    assert sqs_backends is not None
    assert {"queue_name", "message_body", "group_id"} <= set(_params(SQSBackend.send_message))


def test_heartbeat_seam():
    callback = importlib.import_module(f"{SFN}.asl.eval.callback.callback")
    assert _params(callback.CallbackEndpoint.notify_heartbeat) == ["self"]
    original = inspect.unwrap(callback.CallbackEndpoint.notify_heartbeat)  # integration tests may have patched it
    assert "if not self._heartbeat_endpoint:" in inspect.getsource(original)


def test_engine_needs_only_batch_utils_and_utils_stays_a_leaf():
    service = importlib.import_module(f"{SFN}.asl.component.state.exec.state_task.service.state_task_service_batch")
    assert "from moto.batch.utils import JobStatus" in inspect.getsource(service)
    batch_utils = inspect.getsource(importlib.import_module("moto.batch.utils"))
    assert "import models" not in batch_utils
    assert "moto.ec2" not in batch_utils
    # and the real package still loads its backends afterwards
    assert importlib.import_module("moto.batch").batch_backends is not None


def test_send_task_failure_seam():
    """moto's handler passes error but not cause; the parser backend (the engine we run) takes both."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend
    from moto.stepfunctions.responses import StepFunctionResponse

    original = inspect.unwrap(StepFunctionResponse.send_task_failure)
    assert 'self._get_param("cause")' not in inspect.getsource(original), "moto passes cause now: drop the patch"
    assert _params(StepFunctionsParserBackend.send_task_failure) == ["self", "task_token", "error", "cause"]
