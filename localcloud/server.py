"""The local cloud: one loopback HTTP endpoint speaking AWS's wire protocols.

moto (in-process, server mode) serves the AWS services; Shepherd's middleware answers
Lambda Invoke with real worker processes, and our patches close moto's gaps (EventBridge
targets, schedules, the virtual clock). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from werkzeug.serving import BaseWSGIServer

from localcloud import cloudwatch
from localcloud import moto as local_moto
from localcloud.clock import VirtualClock
from localcloud.eventbridge import EventDelivery
from localcloud.faults import (
    CONTROL_PATH,
    FaultMiddleware,
    FaultRegistry,
    FaultRule,
    FaultRuleInvalid,
    FaultyFleets,
)
from localcloud.faults import control as fault_control
from localcloud.guard import Guard
from localcloud.iam import engine as states_engine
from localcloud.iam.authorizer import Authorizer
from localcloud.iam.logs_checks import log_group_key_refusal
from localcloud.iam.middleware import IamMiddleware
from localcloud.iam.principals import Credentials, Principals, RoleNotAssumable, load_aws_managed_policies
from localcloud.iam.requests import access_key_of
from localcloud.lambdas import FunctionNotFound, FunctionSpec, LambdaRuntime, encode_log_tail
from localcloud.logs import LogShipper
from localcloud.sagemaker.api import SageMakerApi
from localcloud.sagemaker.autoscaling import AutoscalingApi, EndpointAutoscaler, registered_variants
from localcloud.sagemaker.backend import SageMakerBackend
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.sagemaker.runtime import RuntimeApi
from localcloud.scheduler import Scheduler
from localcloud.wsgi import json_response

log = logging.getLogger("shepherd.local")

REGION = "us-east-1"
# Fixed dummy keys that the local cloud hands its own processes: public by design, they open nothing on AWS.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "shepherd-local", "AWS_SECRET_ACCESS_KEY": "shepherd-local"}  # nosec B105
_INVOKE_PREFIX = "/2015-03-31/functions/"
# Created by start(), for users of the SageMaker SDK: get_execution_role() has no local equivalent.
DEFAULT_SAGEMAKER_ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


class LambdaInvokeMiddleware:
    """Answers the Lambda Invoke API for functions the local cloud deployed."""

    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: LambdaRuntime) -> None:
        self.app = app
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and path.startswith(_INVOKE_PREFIX)
            and path.endswith("/invocations")
        ):
            name = unquote(path[len(_INVOKE_PREFIX) : -len("/invocations")])
            query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
            if "Qualifier" in query:
                name = f"{name}:{unquote(query['Qualifier'])}"
            # Every invocation is ours: moto's own Lambda would echo the payload of any name.
            return self._invoke(name, environ, start_response)
        return self.app(environ, start_response)

    def _invoke(self, name: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = environ["wsgi.input"].read(length) if length else b""
        invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        client_context = environ.get("HTTP_X_AMZ_CLIENT_CONTEXT")
        try:
            result = self.runtime.invoke(name, payload, invocation_type, client_context)
        except FunctionNotFound:
            arn = name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:123456789012:function:{name}"
            body = json.dumps({"Type": "User", "message": f"Function not found: {arn}"}).encode()
            start_response(
                "404 Not Found",
                [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ResourceNotFoundException")],
            )
            return [body]
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(result.payload))),
            ("X-Amz-Executed-Version", "$LATEST"),
            *result.headers.items(),
        ]
        if result.function_error:
            headers.append(("X-Amz-Function-Error", result.function_error))
        if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail" and invocation_type == "RequestResponse":
            headers.append(("X-Amz-Log-Result", encode_log_tail(result.log_tail)))
        reason = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request"}.get(result.status, "OK")
        start_response(f"{result.status} {reason}", headers)
        return [result.payload]


class ShepherdApi:
    """Shepherd's own routes under /_shepherd/: health, and firing a schedule by hand."""

    def __init__(self, app: Callable[..., Iterable[bytes]], cloud: LocalCloud) -> None:
        self.app = app
        self.cloud = cloud

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_shepherd/"):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD")
        if path == "/_shepherd/health" and method == "GET":
            return json_response(
                start_response,
                "200 OK",
                {
                    "status": "ready",
                    "outputs": self.cloud.outputs,
                    "time_scale": self.cloud.clock.time_scale,
                    "clock": self.cloud.clock.export(),  # the CLI shows every time on this clock
                },
            )
        if path.startswith("/_shepherd/trigger/") and method == "POST" and self.cloud.scheduler is not None:
            name = unquote(path[len("/_shepherd/trigger/") :])
            try:
                targets = self.cloud.scheduler.trigger(name)
            except KeyError:
                return json_response(
                    start_response, "404 Not Found", {"message": f"no enabled schedule rule named {name!r}"}
                )
            return json_response(start_response, "200 OK", {"rule": name, "targets": targets})
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            key = access_key_of(_signed_headers(environ), environ.get("QUERY_STRING", ""))
            from_principal = key is not None and self.cloud.principals.principal_of(key) is not None
            return fault_control(self.cloud.faults, environ, start_response, from_principal)
        return json_response(start_response, "404 Not Found", {"message": f"no route {method} {path}"})


def _signed_headers(environ: dict[str, Any]) -> dict[str, str]:
    return {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}


class LocalCloud:
    """Start with ``start()``, deploy with ``deploy()``, stop with ``stop()`` (or use as a context manager).

    It lends its subsystems what they use of it (localcloud.services) and hands each the others it works with.
    """

    def __init__(
        self,
        port: int = 4566,
        time_scale: float = 1.0,
        admin_api: bool = False,
        echo_logs: bool = False,
        state_dir: Path | None = None,
        *,
        iam: bool = True,
    ) -> None:
        self.port = port
        self.clock = VirtualClock(time_scale)
        self.admin_api = admin_api
        self.state_dir = (state_dir or Path(".shepherd/local")).resolve()
        self.outputs: dict[str, str] = {}
        self.lambda_layers: dict[str, Path] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.log_shipper = LogShipper(lambda: self.client("logs"), echo=echo_logs)
        self.principals = Principals()
        self.authorizer = Authorizer(self.principals, self.state_dir / "authz.jsonl", enabled=iam)
        self.lambdas = LambdaRuntime(
            self.worker_environment(), self.log_shipper, sleep=self.clock.sleep, credentials=self._function_credentials
        )
        self.event_delivery = EventDelivery(self.authorizer, self, self.lambdas)
        self.endpoint_metrics = EndpointMetrics(self.clock, lambda: self.client("cloudwatch"))
        self.sagemaker = SageMakerBackend(self, metrics=self.endpoint_metrics, scalable_variants=registered_variants)
        self.sagemaker_runtime: RuntimeApi | None = None
        self.autoscaler = EndpointAutoscaler(self.clock, self, self.sagemaker, self.endpoint_metrics)
        self.scheduler: Scheduler | None = None
        self.faults = FaultRegistry()  # docs/FAULTS.md
        self.sagemaker.faults = self.faults
        self.sagemaker.fleet_factory = FaultyFleets(self.sagemaker.fleet_factory, self.faults)
        self.faults.hand_off("lambda-crash", self._arm_lambda_crash)
        self.faults.hand_off("endpoint-update-fails", self._arm_endpoint_update_failure)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sdk_config_path(self) -> Path:
        return self.state_dir / "sagemaker-sdk-config.yaml"

    def exports(self) -> dict[str, str]:
        """The environment under which the AWS CLI, boto3 and the SDKs use this local cloud."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **CREDENTIALS,
            # The SageMaker Python SDK v2 names its default bucket through STS at a fixed regional
            # endpoint that ignores AWS_ENDPOINT_URL; its config file names the bucket instead.
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(self.sdk_config_path),
        }

    def _write_sdk_config(self) -> None:
        """A default bucket for the SageMaker SDK, as the SDK itself would name it, and telemetry off."""
        bucket = f"sagemaker-{REGION}-123456789012"
        self.client("s3").create_bucket(Bucket=bucket)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sdk_config_path.write_text(
            "SchemaVersion: '1.0'\n"
            "SageMaker:\n"
            "  PythonSDK:\n"
            "    Modules:\n"
            "      TelemetryOptOut: true\n"
            "      Session:\n"
            f"        DefaultS3Bucket: {bucket}\n"
        )

    def worker_environment(self) -> dict[str, str]:
        # Functions that reason about time (the rollout judge reads metrics stamped on the virtual clock)
        # compute virtual now from this; shepherd.aws.clock reads it, and AWS has no such variable.
        return {
            **self.exports(),
            "AWS_SAM_LOCAL": "true",
            "SHEPHERD_LOCAL": "1",
            "SHEPHERD_LOCAL_CLOCK": self.clock.export(),
        }

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=900),
        )

    def _function_credentials(self, spec: FunctionSpec) -> dict[str, str]:
        """Lambda runs each function with a session of its execution role, named after the function."""
        return self.principals.issue(spec.role_arn, "lambda.amazonaws.com", spec.name).environment()

    def _arm_lambda_crash(self, rule: FaultRule) -> None:
        try:
            self.lambdas.crash_next(rule.resource, rule.count or 1, rule.at)  # type: ignore[arg-type] # checked there
        except FunctionNotFound as exc:
            raise FaultRuleInvalid(f"no function {rule.resource!r} here") from exc

    def _arm_endpoint_update_failure(self, rule: FaultRule) -> None:
        """The endpoint's own fault tag (shepherd:fault:fail-next-update), so one mechanism fails updates."""
        from localcloud.sagemaker.control_plane import FAULT_TAG_PREFIX, arn

        if rule.resource not in self.sagemaker.endpoints:
            raise FaultRuleInvalid(f"no endpoint {rule.resource!r} here")
        tag = {"Key": f"{FAULT_TAG_PREFIX}fail-next-update", "Value": "true"}
        self.sagemaker.add_tags({"ResourceArn": arn(f"endpoint/{rule.resource.lower()}"), "Tags": [tag]})

    def _role_of(self, access_key_id: str) -> str | None:
        principal = self.principals.principal_of(access_key_id)
        return principal.role_arn if principal else None

    def _states_can_assume(self, role_arn: str) -> bool:
        try:
            self.principals.issue(role_arn, "states.amazonaws.com", "shepherd-states")
        except RoleNotAssumable:
            return False
        return True

    def role_credentials(self, role_arn: str, service: str, session_name: str) -> Credentials:
        """A session of ``role_arn`` as ``service`` assumes it (raises RoleNotAssumable as AWS refuses)."""
        return self.principals.issue(role_arn, service, session_name)

    def role_client(self, service: str, credentials: Credentials) -> Any:
        """A client that acts as a role session: what the cloud's principals use, authorized by IAM."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=900),
        )

    def _create_default_roles(self) -> None:
        """The SageMaker execution role users of the SDK can pass (docs/LOCAL_IAM.md), as the SageMaker console
        creates one: AmazonSageMakerFullAccess, and S3 access to any bucket."""
        iam = self.client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        name = DEFAULT_SAGEMAKER_ROLE.rsplit("/", 1)[-1]
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        except iam.exceptions.EntityAlreadyExistsException:
            return
        iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonSageMakerFullAccess")
        any_bucket = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::*"],
                }
            ],
        }
        iam.put_role_policy(RoleName=name, PolicyName="AnyS3Bucket", PolicyDocument=json.dumps(any_bucket))

    def start(self) -> LocalCloud:
        from localcloud.keepalive import KeepAliveWSGIServer
        from localcloud.moto.server import wsgi_app

        load_aws_managed_policies()
        moto_app = wsgi_app()
        self.endpoint_metrics.start()
        self.sagemaker_runtime = RuntimeApi(
            LambdaInvokeMiddleware(moto_app, self.lambdas), self.sagemaker, self.endpoint_metrics
        )
        services = AutoscalingApi(SageMakerApi(self.sagemaker_runtime, self.sagemaker), self.autoscaler)
        iam = IamMiddleware(ShepherdApi(services, self), self.authorizer)
        guard = Guard(FaultMiddleware(iam, self.faults, self._role_of, self.clock.sleep), self.port, self.admin_api)
        server = KeepAliveWSGIServer("127.0.0.1", self.port, guard)
        # The Step Functions engine reaches services at localhost:$MOTO_PORT, so bind before patching.
        self.port = server.server_port
        guard.allow_port(self.port)
        self.lambdas.base_env.update(self.worker_environment())
        os.environ["MOTO_PORT"] = str(self.port)
        for key, value in self.exports().items():
            os.environ.setdefault(key, value)
        local_moto.install(
            local_moto.Hooks(
                clock=self.clock,
                deliver=self.event_delivery.deliver_to_target,
                cloudwatch=cloudwatch.EMULATION,
                task_client=states_engine.task_client(self.principals.issue),
                refuse_state_machine=states_engine.creation_refusal(self._states_can_assume),
                refuse_log_group_key=log_group_key_refusal(self.authorizer),
            )
        )
        cloudwatch.install(self)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # The engine logs every failed state as an error; executions record them in their history.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-cloud", daemon=True
        )
        self._thread.start()
        self.scheduler = Scheduler(self.clock, self.event_delivery)
        self.scheduler.start()
        self.autoscaler.start()
        self._write_sdk_config()
        self._create_default_roles()
        return self

    def deploy(
        self, template: Path, parameters: dict[str, str] | None = None, stack_name: str = "shepherd"
    ) -> dict[str, str]:
        from localcloud.deployer import Deployer

        deployer = Deployer(self, stack_name)
        self.outputs = deployer.deploy(template, parameters or {})
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "outputs.json").write_text(json.dumps(self.outputs, indent=2) + "\n")
        return self.outputs

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.autoscaler.stop()
        self.sagemaker.stop()
        if self.sagemaker_runtime is not None:
            self.sagemaker_runtime.close()
        self.endpoint_metrics.close()
        self.lambdas.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.log_shipper.close()
        self.authorizer.close()
        cloudwatch.stop()
        local_moto.uninstall()
        self.event_delivery.close()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
