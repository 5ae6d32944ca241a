"""moto's Step Functions engine: its waits on the virtual clock, its gaps closed, its tasks acting as their role.

Every function here that patches the engine is applied once per process (localcloud.moto.install); what depends on
the running cloud (its clock, the clients of its roles, which roles it may assume) is attached, and swapped by the
next cloud.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import importlib.util
import json
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from localcloud.moto.core import in_process_mock


class Clock(Protocol):
    """The running cloud's virtual clock (localcloud.clock.VirtualClock)."""

    def wall_seconds(self, virtual_seconds: float) -> float: ...

    def until(self, moment: datetime.datetime) -> float: ...


TaskClient = Callable[[Any, str, str, str], Any]
"""The client a task's service call goes through, from the engine's, its region, its service and its role's ARN."""

Refusal = Callable[[str], str | None]
"""Why CreateStateMachine refuses the role with this ARN (AccessDeniedException's message), or None."""


@dataclass
class _Attached:
    """What the patches read of the running cloud; the clock is None while no cloud runs (waits are unscaled)."""

    clock: Clock | None = None
    task_client: TaskClient | None = None
    refusal: Refusal | None = None


_attached = _Attached()
_real_time = threading.local()  # set while a request-response Task waits for its call (see _patch_time)


def attach(clock: Clock, task_client: TaskClient, refusal: Refusal) -> None:
    _attached.clock = clock
    _attached.task_client = task_client
    _attached.refusal = refusal


def detach_clock() -> None:
    """A stopped cloud's clock no longer scales the engine's waits; its roles' hooks stay until the next cloud's."""
    _attached.clock = None


def _scaled(seconds: float | None) -> float | None:
    """A virtual duration in wall seconds, under the running cloud's time scale."""
    if seconds is None:
        return None
    clock = _attached.clock
    return clock.wall_seconds(float(seconds)) if clock is not None else float(seconds)


class _ScaledEvent(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(timeout if getattr(_real_time, "on", False) else _scaled(timeout))


class _ScaledThread(threading.Thread):
    def join(self, timeout: float | None = None) -> None:
        super().join(_scaled(timeout))


def patch() -> None:
    """Apply every engine patch; the engine's modules load here (localcloud.moto.install calls this once)."""
    _patch_start_execution()
    _patch_time()
    _patch_heartbeat()
    _patch_send_task_failure()
    _patch_callbacks()
    _patch_jsonata()
    _patch_service_integrations()
    _patch_task_clients()
    _patch_state_machine_creation()


def preload_batch_utils() -> None:
    """The engine imports moto.batch.utils for one enum, but moto.batch's __init__ loads moto.ec2 (~0.7 s).

    Import the leaf module under a bare package shell, then drop the shell: a later real
    `import moto.batch` runs its __init__ as usual and finds utils already loaded.
    """
    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or not spec.submodule_search_locations:
        return
    shell = types.ModuleType("moto.batch")
    shell.__path__ = list(spec.submodule_search_locations)
    sys.modules["moto.batch"] = shell
    try:
        importlib.import_module("moto.batch.utils")
    finally:
        del sys.modules["moto.batch"]


def start_execution(state_machine_arn: str, execution_input: str) -> None:
    """StartExecution of an unnamed execution, on the engine's backend."""
    from moto.stepfunctions.responses import get_backend

    region, account = state_machine_arn.split(":")[3:5]
    get_backend(account, region).start_execution(state_machine_arn, None, execution_input)


class InvalidDefinition(Exception):
    """moto's static analyser refused a definition; the message lists its errors."""


def analyse_definition(text: str) -> None:
    """moto's static analyser over a definition, as CreateStateMachine runs it; raises InvalidDefinition."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException
    from moto.stepfunctions.parser.asl.static_analyser.static_analyser import StaticAnalyser

    try:
        StaticAnalyser().analyse(text)
    except ASLParserException as exc:
        raise InvalidDefinition("; ".join(exc.errors) or str(exc)) from exc


def _patch_start_execution() -> None:
    """moto names an unnamed execution 'None', so the second unnamed start collides."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    @functools.wraps(original)
    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: str | None = None,
        trace_header: str | None = None,
    ) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

    StepFunctionsParserBackend.start_execution = start_execution


def _patch_time() -> None:
    """Every place the engine waits: Wait states, task/heartbeat/token timeouts, retries, machine timeout."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.program import program
    from moto.stepfunctions.parser.asl.component.state.exec import execute_state
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp, wait_function
    from moto.stepfunctions.parser.asl.eval.callback import callback

    def wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        # moto's loop never ends on a fractional remainder; wait on a monotonic deadline instead.
        deadline = time.monotonic() + (_scaled(wait_seconds) or 0.0)
        while env.is_running():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            env.program_state_event.wait(remaining)

    def timestamp_wait_seconds(self: Any, env: Any) -> float:
        # Virtual seconds to the timestamp, in UTC (moto compares against naive local time).
        self.string.eval(env=env)
        text = env.stack.pop()
        moment = self._from_timestamp_string(timestamp=text)
        if moment is None:
            raise timestamp.FailureEventException(self._create_failure_event(env, text))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        clock = _attached.clock
        return clock.until(moment) if clock is not None else 0.0

    wait_function.WaitFunction._wait_interval = wait_interval
    timestamp.Timestamp._get_wait_seconds = timestamp_wait_seconds
    execute_state.threading = types.SimpleNamespace(Event=_ScaledEvent)
    original_evaluate = execute_state.ExecutionState._evaluate_with_timeout

    @functools.wraps(original_evaluate)
    def evaluate_with_timeout(self: Any, env: Any) -> None:
        # A request-response Task (a Lambda invoke) times out on real compute, which the virtual clock does not
        # compress: its TimeoutSeconds stay wall seconds. Scaled, a 120-s timeout was 2 s at time scale 60, and a
        # Lambda slowed by a loaded machine timed out (a rollout's Prepare failed so in CI). Tasks that wait for a
        # token or a job wait on virtual time and stay scaled.
        resource = getattr(self, "resource", None)
        request_response = (
            resource is not None
            and getattr(resource, "condition", None) is None
            and "activity" not in type(resource).__name__.lower()
        )
        _real_time.on = request_response
        try:
            original_evaluate(self, env)
        finally:
            _real_time.on = False

    execute_state.ExecutionState._evaluate_with_timeout = evaluate_with_timeout
    callback.Event = _ScaledEvent
    retrier_decl.time = types.SimpleNamespace(sleep=lambda s: time.sleep(_scaled(s) or 0.0))
    program.threading = types.SimpleNamespace(Thread=_ScaledThread)


def _patch_heartbeat() -> None:
    """AWS accepts SendTaskHeartbeat for any live token; moto calls it invalid without HeartbeatSeconds."""
    from moto.stepfunctions.parser.asl.eval.callback import callback

    original = callback.CallbackEndpoint.notify_heartbeat

    @functools.wraps(original)
    def notify_heartbeat(self: Any) -> bool:
        original(self)
        return True

    callback.CallbackEndpoint.notify_heartbeat = notify_heartbeat


def _patch_send_task_failure() -> None:
    """moto's SendTaskFailure response handler drops ``cause``; AWS hands it to the waiting state's Catch."""
    from moto.stepfunctions.responses import StepFunctionResponse

    original = StepFunctionResponse.send_task_failure

    @functools.wraps(original)
    def send_task_failure(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


def _patch_callbacks() -> None:
    """moto's SendTask* look a token up in every RUNNING execution's callbacks and fail with a 500 when one's worker
    has no environment (an execution whose engine thread ended abnormally); such an execution holds no callbacks."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    looking_up = threading.local()
    original = StepFunctionsParserBackend._get_executions

    def _get_executions(self: Any, execution_status: Any = None) -> list[Any]:
        found = original(self, execution_status)
        if not getattr(looking_up, "active", False):
            return found
        return [e for e in found if getattr(getattr(e, "exec_worker", None), "env", None) is not None]

    StepFunctionsParserBackend._get_executions = _get_executions
    for name in ("send_task_success", "send_task_failure", "send_task_heartbeat"):
        method = getattr(StepFunctionsParserBackend, name)

        def callback(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            looking_up.active = True
            try:
                return _method(self, *args, **kwargs)
            finally:
                looking_up.active = False

        setattr(StepFunctionsParserBackend, name, functools.wraps(method)(callback))


def _patch_jsonata() -> None:
    """moto ships the JSONata hook empty; jsonata-python fills it. String variables were unescaped."""
    import jsonata as jsonata_python
    from moto.stepfunctions.parser.asl.eval import states, variable_store
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
    from moto.stepfunctions.parser.asl.parse import preprocessor

    def eval_jsonata(expression: str) -> Any:
        try:
            result = jsonata_python.Jsonata(expression).evaluate(None)
        except Exception as exc:
            raise moto_jsonata.JSONataException("States.QueryEvaluationError", str(exc)) from exc
        return None if result is None else json.loads(json.dumps(result))

    def encode_declarations(bindings: dict[str, Any]) -> str:
        return "".join(
            f"{ref}:={json.dumps(val, separators=(',', ':'), default=str)};" for ref, val in bindings.items()
        )

    def inner_string_of(parser_rule_context: Any) -> Any:
        context = parser_rule_context
        if preprocessor.is_terminal(context, preprocessor.ASLLexer.NULL):
            return None
        text = context.getText()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                return json.loads(text)
            except ValueError:
                return text[1:-1]
        return text

    moto_jsonata._eval_jsonata = eval_jsonata
    for module in (moto_jsonata, states, variable_store):
        module.encode_jsonata_variable_declarations = encode_declarations
    preprocessor.Preprocessor._inner_string_of = staticmethod(inner_string_of)


def _patch_service_integrations() -> None:
    """moto leaves parameter/response casing of aws-sdk-style integrations as stubs (KeyError 'StateMachineArn')."""
    import botocore.session
    from botocore import xform_name
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service

    session = botocore.session.get_session()
    cache: dict[tuple[str, str], Any] = {}

    def operation(service: str, action: str) -> Any:
        if (service, action) not in cache:
            model = session.get_service_model(service)
            cache[(service, action)] = next(
                (model.operation_model(n) for n in model.operation_names if xform_name(n) == action), None
            )
        return cache[(service, action)]

    def recase(value: Any, shape: Any, to_boto: bool) -> Any:
        if shape is None or getattr(shape, "is_document_type", False):
            return value
        kind = shape.type_name
        if kind == "structure" and isinstance(value, dict):
            members = {k.lower(): k for k in shape.members}
            out = {}
            for key, item in value.items():
                member = members.get(key.lower()) if isinstance(key, str) else None
                if member is None:
                    out[key] = item
                else:
                    name = member if to_boto else member[:1].upper() + member[1:]
                    out[name] = recase(item, shape.members[member], to_boto)
            return out
        if kind == "list" and isinstance(value, list):
            return [recase(v, shape.member, to_boto) for v in value]
        if kind == "map" and isinstance(value, dict):
            return {k: recase(v, shape.value, to_boto) for k, v in value.items()}
        if kind == "timestamp" and not to_boto and isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1000)
        return value

    def normalise(
        self: Any, data: Any, boto_service_name: str | None, service_action_name: str | None, to_boto: bool
    ) -> None:
        try:
            op = operation(
                self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
            )
        except Exception:  # unknown service/action: leave the data as moto has it
            op = None
        shape = None if op is None else (op.input_shape if to_boto else op.output_shape)
        if shape is not None and isinstance(data, dict):
            new = recase(data, shape, to_boto)
            data.clear()
            data.update(new)

    def normalise_parameters(
        self: Any, parameters: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        normalise(self, parameters, boto_service_name, service_action_name, to_boto=True)

    def normalise_response(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        normalise(self, response, boto_service_name, service_action_name, to_boto=False)

    state_task_service.StateTaskService._normalise_parameters = normalise_parameters
    state_task_service.StateTaskService._normalise_response = normalise_response


def _import_users(defining: str) -> None:
    """Import every engine module that names boto_client_for, so that none keeps the original later."""
    from moto.stepfunctions import parser

    root = Path(parser.__file__).parent
    for path in root.rglob("*.py"):
        dotted = "moto.stepfunctions.parser." + ".".join(path.relative_to(root).with_suffix("").parts)
        if dotted != defining and dotted not in sys.modules and "boto_client_for" in path.read_text():
            importlib.import_module(dotted)


def _patch_task_clients() -> None:
    """A task's client comes from ``boto_client_for(region, service, state_credentials)`` with fixed keys, where
    ``state_credentials.role_arn`` is the execution's role (or a state's Credentials.RoleArn): the attached
    TaskClient makes it act as that role. Every engine module that imported the function gets the patched one."""
    import moto.stepfunctions.parser.asl.utils.boto_client as module

    original = module.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region, service, state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        task_client = _attached.task_client
        if not role_arn or task_client is None or in_process_mock():
            return client
        return task_client(client, region, service, str(role_arn))

    _import_users(module.__name__)
    for name, loaded in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(loaded, "boto_client_for", None) is not None:
            loaded.boto_client_for = boto_client_for


def _patch_state_machine_creation() -> None:
    """CreateStateMachine refuses a role the attached Refusal names, with AWS's AccessDeniedException."""
    from moto.stepfunctions.exceptions import AWSError
    from moto.stepfunctions.models import StepFunctionBackend

    class AccessDenied(AWSError):
        TYPE = "AccessDeniedException"
        STATUS = 400

    original = StepFunctionBackend.create_state_machine

    @functools.wraps(original)
    def create_state_machine(self: Any, name: str, definition: str, roleArn: str, *args: Any, **kwargs: Any) -> Any:
        refusal = _attached.refusal
        if refusal is not None and not in_process_mock():
            message = refusal(roleArn)
            if message is not None:
                raise AccessDenied(message)
        return original(self, name, definition, roleArn, *args, **kwargs)

    StepFunctionBackend.create_state_machine = create_state_machine


def __getattr__(name: str) -> Any:
    """stepfunctions_parser_backends (the engine's, which execute state machines), imported on first use."""
    if name == "stepfunctions_parser_backends":
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        return stepfunctions_parser_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
