"""Where the local cloud closes moto's gaps, each at the narrowest seam we found.

Every name patched here is a moto internal (moto is pinned in pyproject.toml) and has a
contract test in tests/unit/test_moto_contract.py that fails loudly if an upgrade moves it.
"""

from __future__ import annotations

import copy
import datetime
import functools
import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import types
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localcloud.server import LocalCloud

log = logging.getLogger("shepherd.local.events")
_state: dict[str, Any] = {"cloud": None, "installed": False}


def _cloud() -> LocalCloud:
    cloud = _state["cloud"]
    if cloud is None:
        raise RuntimeError("no local cloud is running")
    return cloud


def _scaled(seconds: float | None) -> float | None:
    """A virtual duration in wall seconds, under the running cloud's time scale."""
    if seconds is None:
        return None
    cloud = _state["cloud"]
    return cloud.clock.wall_seconds(float(seconds)) if cloud is not None else float(seconds)


_real_time = threading.local()  # set while a request-response Task waits for its call (see _patch_time)


class _ScaledEvent(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(timeout if getattr(_real_time, "on", False) else _scaled(timeout))


class _ScaledThread(threading.Thread):
    def join(self, timeout: float | None = None) -> None:
        super().join(_scaled(timeout))


def install(cloud: LocalCloud) -> None:
    _state["cloud"] = cloud
    if _state["installed"]:
        return
    _state["installed"] = True
    _preload_batch_utils()
    _configure()
    _patch_start_execution()
    _patch_time()
    _patch_heartbeat()
    _patch_send_task_failure()
    _patch_callbacks()
    _patch_jsonata()
    _patch_service_integrations()
    _patch_events()
    _patch_s3_events()
    _patch_bucket_policy_check()


def uninstall() -> None:
    """Detach the stopped cloud; the patches stay (moto's backends are process-global anyway)."""
    _state["cloud"] = None


def _patch_bucket_policy_check() -> None:
    """moto refuses object requests a bucket policy's Deny names, ignoring its Principal and Condition: the template's
    Deny on aws:SecureTransport "false" would refuse every request. The local cloud's IAM middleware evaluates bucket
    policies for its own principals (localcloud/iam/authorizer.py); other callers keep full access."""
    from moto.core.models import botocore_stubber
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    original = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if botocore_stubber.enabled:  # in-process moto (mock_aws in a unit test): moto's own behaviour
            return original(self, action, resource)
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission


def _preload_batch_utils() -> None:
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


def _configure() -> None:
    from moto.core.config import default_user_config
    from moto.moto_server import werkzeug_app

    werkzeug_app.DISABLE_GLOBAL_CORS = True  # read when each service's app is first created
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    default_user_config["lambda"]["use_docker"] = False


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
        return _cloud().clock.until(moment) if _state["cloud"] else 0.0

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


# ---------------------------------------------------------------- EventBridge delivery


def _render_input_template(template: str, paths_map: dict[str, str], event: dict[str, Any]) -> Any:
    """InputTransformer: <name> inside a JSON string is raw text, elsewhere a JSON value."""
    from jsonpath_ng.ext import parse

    values: dict[str, Any] = {}
    for name, path in (paths_map or {}).items():
        found = parse(path).find(event)
        values[name] = found[0].value if found else None
    values.setdefault("aws.events.event.json", event)
    out: list[str] = []
    i, in_string = 0, False
    while i < len(template):
        ch = template[i]
        if ch == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        if ch == "<":
            end = template.find(">", i)
            name = template[i + 1 : end] if end > 0 else None
            if name in values:
                value = values[name]
                if in_string:
                    out.append(json.dumps(value if isinstance(value, str) else json.dumps(value))[1:-1])
                else:
                    out.append(json.dumps(value))
                i = end + 1
                continue
        out.append(ch)
        i += 1
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError:
        return text


def target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """What a rule target receives: Input, InputPath, InputTransformer, or the event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        found = parse(target["InputPath"]).find(event)
        return found[0].value if found else None
    transformer = target.get("InputTransformer")
    if transformer:
        return _render_input_template(transformer.get("InputTemplate", ""), transformer.get("InputPathsMap", {}), event)
    return event


def _delivery_allowed(cloud: LocalCloud, target_arn: str, target: dict[str, Any], source_arn: str) -> bool:
    """What EventBridge needs to deliver ("Using resource-based policies for Amazon EventBridge", "Using IAM roles
    for Amazon EventBridge targets"): a Lambda function's resource policy allowing events.amazonaws.com from the
    rule, or, for a state machine, a target RoleArn that EventBridge may assume and that may start it. A refused
    delivery is dropped, as AWS counts it in FailedInvocations, and logged as a refusal."""
    from localcloud.iam import Check
    from localcloud.iam.principals import RoleNotAssumable

    service, account = target_arn.split(":")[2], target_arn.split(":")[4]
    if service == "lambda":
        name = target_arn.split(":")[6]
        check = Check("lambda:InvokeFunction", f"arn:aws:lambda:{target_arn.split(':')[3]}:{account}:function:{name}")
        refusal = cloud.authorizer.authorize_service("events.amazonaws.com", check, source_arn, account)
    elif service == "states":
        role = target.get("RoleArn")
        if not role:
            log.warning("%s: target %s has no RoleArn; EventBridge cannot start it", source_arn, target_arn)
            return False
        try:
            credentials = cloud.role_credentials(str(role), "events.amazonaws.com", "events")
        except RoleNotAssumable as exc:
            log.warning("%s: %s", source_arn, exc)
            return False
        checks = [Check("states:StartExecution", target_arn)]
        refusal = cloud.authorizer.authorize(credentials.principal, checks, "us-east-1", service="events")
    else:
        return True
    if refusal is not None:
        log.warning("%s: delivery to %s refused: %s", source_arn, target_arn, refusal.message)
    return refusal is None


def deliver(target_arn: str, payload: Any, target: dict[str, Any] | None = None, source_arn: str | None = None) -> None:
    """Start a state machine, invoke a Lambda function asynchronously or send to a queue, as EventBridge does.

    With ``source_arn`` (the rule), EventBridge's own permissions are checked first (``_delivery_allowed``).
    """
    cloud = _cloud()
    if source_arn is not None and not _delivery_allowed(cloud, target_arn, target or {}, source_arn):
        return
    body = json.dumps(payload, default=str)
    service = target_arn.split(":")[2]
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        region, account, queue = target_arn.split(":")[3:6]
        group = ((target or {}).get("SqsParameters") or {}).get("MessageGroupId")
        text = payload if isinstance(payload, str) else body  # a non-JSON InputTemplate arrives as text
        sqs_backends[account][region].send_message(queue_name=queue, message_body=text, group_id=group)
    elif service == "states":
        from moto.stepfunctions.responses import get_backend

        region, account = target_arn.split(":")[3:5]
        get_backend(account, region).start_execution(target_arn, None, body)
    elif service == "lambda":
        cloud.lambdas.invoke(target_arn, body.encode(), "Event")
    else:
        raise NotImplementedError(f"target {target_arn}")


def _patch_events() -> None:
    from moto.events import models as events_models

    original = events_models.Rule.send_to_targets

    @functools.wraps(original)
    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if self.state != "ENABLED" or self.event_pattern.dump() is None:
            return  # disabled and schedule-only rules receive no events
        if not self.event_pattern.matches_event(original_event):
            return
        event = copy.deepcopy(original_event)
        if isinstance(event.get("time"), int | float):
            event["time"] = datetime.datetime.fromtimestamp(float(event["time"]), datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        event.pop("ingestion-time", None)
        for target in self.targets:
            service = target["Arn"].split(":")[2]
            if service in ("states", "lambda", "sqs"):
                try:
                    deliver(target["Arn"], target_input(target, event), target, self.arn)
                except Exception:  # one failing target must not stop delivery to the others
                    log.exception("delivery of %s to %s failed", event.get("detail-type"), target["Arn"])
                continue
            saved = self.targets
            self.targets = [target]
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    events_models.Rule.send_to_targets = send_to_targets


_S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def _patch_s3_events() -> None:
    """S3 → EventBridge in AWS's shape, to every rule on the default bus, one bad rule stopping none."""
    from moto.events.models import events_backends
    from moto.s3 import notifications

    def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        obj: dict[str, Any] = {
            "key": key.name,
            "size": key.size,
            "etag": key.etag.replace('"', ""),
            "sequencer": f"{uuid.uuid4().int >> 64:016X}",
        }
        if key.version_id and key.version_id != "null":
            obj["version-id"] = key.version_id
        detail: dict[str, Any] = {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
        }
        if event_name in _S3_REASONS:
            detail["reason"] = _S3_REASONS[event_name]
        if "ObjectRemoved" in event_name:
            detail["deletion-type"] = "Delete Marker Created" if "DeleteMarker" in event_name else "Permanently Deleted"
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": notifications._detail_type(event_name),
            "source": "aws.s3",
            "account": account_id,
            "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": detail,
        }
        bus = events_backends[account_id][bucket.region_name].event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            try:
                rule.send_to_targets(event, transform_input=True)
            except Exception:
                log.exception("rule %s failed on %s", rule.name, event["detail-type"])

    just_created = threading.local()
    original_send_event = notifications.send_event

    @functools.wraps(original_send_event)
    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        events = notifications.S3NotificationEvent
        if event_name in (events.OBJECT_CREATED_PUT_EVENT, events.OBJECT_CREATED_POST_EVENT):
            just_created.key = key
        elif event_name == events.OBJECT_TAGGING_PUT_EVENT and getattr(just_created, "key", None) is key:
            just_created.key = None  # PutObject's implicit tagging call: AWS sends no event for it
            return
        original_send_event(account_id, event_name, bucket, key)

    notifications._send_event_bridge_message = send_event_bridge_message
    notifications.send_event = send_event
