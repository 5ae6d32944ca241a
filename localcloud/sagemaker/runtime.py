"""The SageMaker Runtime data plane: InvokeEndpoint on the local cloud endpoint.

Routing follows SageMaker: TargetVariant if given, else a weighted draw over production
variants by CurrentWeight; shadow variants receive a mirrored copy of a share of requests
(their weight relative to production's) asynchronously, whether production answered or
failed, after production's answer; their answers are discarded and their own metrics published.
A model's own error reaches the client as ModelError (HTTP 424), never as a bare 5XX
that would make the SDK retry and run the model twice.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from localcloud.sagemaker.capture import CaptureWriter
from localcloud.sagemaker.endpoints import (
    Endpoint,
    InvocationFailed,
    InvocationRequest,
    LiveEndpoints,
    TargetModelNotFound,
    Throttled,
    Variant,
)
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.sagemaker.serving import INSTANCE_ID, LOG_GROUP
from localcloud.wsgi import RECEIVED_AT, json_response

log = logging.getLogger("shepherd.local.sagemaker")
# InvokeEndpoint's Body: "Length Constraints: Maximum length of 6291456", and a request that breaks a constraint is
# its ValidationError, HTTP 400 (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html,
# Request Body and Errors; botocore's sagemaker-runtime model: "max": 6291456). The exact limit is accepted.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_SHADOW_BACKLOG = 256  # mirrored requests waiting for a shadow, beyond which copies are dropped
_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
_SERVING = {"InService", "Updating", "SystemUpdating", "RollingBack"}


class ThenRun:
    """A one-chunk WSGI response whose ``close`` (called once the server has sent it) runs ``then``."""

    def __init__(self, body: bytes, then: Callable[[], None]) -> None:
        self.body = body
        self.then = then

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        self.then()


class InvokeError(Exception):
    def __init__(self, status: str, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def model_error(endpoint: str, variant: str, status: int, message: str) -> InvokeError:
    """SageMaker's answer to a container's error: ModelError (HTTP 424) with botocore's ModelError fields.

    A 4xx is a "client error", anything else a "server error", in AWS's words (amazon-sagemaker-examples#1809,
    sagemaker-xgboost-container#390). Where AWS names its console, the message names the log stream and the AWS
    CLI command (v1 and v2) that shows it here.
    """
    kind = "client" if 400 <= status < 500 else "server"
    group, stream = f"{LOG_GROUP}/{endpoint}", f"{variant}/{INSTANCE_ID}"
    return InvokeError(
        "424 Failed Dependency",
        "ModelError",
        f'Received {kind} error ({status}) from primary with message "{message}". See the log stream {stream} '
        f"of {group} (aws logs get-log-events --log-group-name {group} --log-stream-name {stream} "
        "--query 'events[].message') in account 123456789012 for more information.",
        {
            "OriginalStatusCode": status,
            "OriginalMessage": message,
            # As on AWS, the stream is the variant's instance: <variant>/<instance id>.
            "LogStreamArn": f"arn:aws:logs:us-east-1:123456789012:log-group:{group}:log-stream:{stream}",
        },
    )


def choose_variant(endpoint: Endpoint, target: str | None, draw: Callable[[], float] = random.random) -> Variant:
    production = endpoint.production
    if endpoint.green and draw() < endpoint.green_share:
        production = [v for v in endpoint.green.values() if not v.shadow]
    if target:
        for variant in production:
            if variant.name == target:
                return variant
        raise InvokeError(
            "400 Bad Request", "ValidationError", f"Variant {target} not found for endpoint {endpoint.name}."
        )
    total = sum(v.current_weight for v in production)
    if total <= 0:
        raise InvokeError(
            "400 Bad Request",
            "ValidationError",
            f"Endpoint {endpoint.name} has no production variant with a weight above 0.",
        )
    point = draw() * total
    for variant in production:
        point -= variant.current_weight
        if point < 0:
            return variant
    return production[-1]


class RuntimeApi:
    def __init__(self, app: Callable[..., Iterable[bytes]], backend: LiveEndpoints, metrics: EndpointMetrics) -> None:
        self.app = app
        self.backend = backend
        self.metrics = metrics
        # Shadow copies run here, off the request thread, so production answers never wait for them.
        self._shadow_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shadow")
        self._shadow_backlog = threading.BoundedSemaphore(MAX_SHADOW_BACKLOG)
        self.shadow_dropped = 0
        self.shadow_mirrored = 0
        self._mirrors_pending = 0
        self._mirrors_done = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _PATH.match(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") != "POST" or not match:
            return self.app(environ, start_response)
        try:
            return self._invoke(unquote(match.group(1)), environ, start_response)
        except InvokeError as exc:
            body = {"message": exc.message, "Message": exc.message, **exc.extra}
            return json_response(start_response, exc.status, body, headers=[("x-amzn-ErrorType", exc.code)])
        except Exception as exc:
            log.exception("InvokeEndpoint failed inside the local cloud")
            body = {"message": f"{type(exc).__name__}: {exc}"}
            return json_response(
                start_response, "500 Internal Server Error", body, headers=[("x-amzn-ErrorType", "InternalFailure")]
            )

    def _invoke(self, name: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        endpoint = self.backend.endpoints.get(name)
        if endpoint is None or endpoint.status not in _SERVING:
            raise InvokeError(
                "400 Bad Request", "ValidationError", f"Endpoint {name} of account 123456789012 not found."
            )
        # From when the front door parsed the request line, so OverheadLatency includes the HTTP work too.
        received = environ.get(RECEIVED_AT) or time.perf_counter()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_PAYLOAD_BYTES:
            raise InvokeError(
                "400 Bad Request",
                "ValidationError",
                f"Request payload of {length} bytes exceeds the 6 MB limit (6291456 bytes).",
            )
        body = environ["wsgi.input"].read(length) if length else b""
        request = InvocationRequest(
            body=body,
            content_type=environ.get("CONTENT_TYPE") or "application/octet-stream",
            accept=environ.get("HTTP_ACCEPT") or "*/*",
            custom_attributes=environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"),
            target_model=environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL"),
            inference_id=environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"),
        )
        with endpoint.lock:
            variant = choose_variant(endpoint, environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT"))
            shadows = list(endpoint.shadows)
            production_weight = sum(v.current_weight for v in endpoint.production) or 1.0
            capture = endpoint.capture
        mirrored = [s for s in shadows if random.random() < min(1.0, s.current_weight / production_weight)]  # noqa: S311 - sampling
        started = time.perf_counter()
        try:
            answer, content_type = variant.fleet.invoke(request)
        except Throttled as exc:
            raise InvokeError("400 Bad Request", "ThrottlingException", str(exc)) from exc
        except TargetModelNotFound as exc:
            raise InvokeError("400 Bad Request", "ValidationError", str(exc)) from exc
        except InvocationFailed as exc:
            self._measure(name, variant, status=exc.status, started=started, received=received, model_seconds=None)
            for shadow in mirrored:  # SageMaker replicates the request, whatever production answered
                self._submit_mirror(name, shadow, request, capture)
            raise model_error(name, variant.name, exc.status, exc.message) from exc
        model_seconds = time.perf_counter() - started

        def after_response() -> None:
            """Once the answer is on its way: metrics (so OverheadLatency covers sending it), capture, mirrors."""
            self._measure(name, variant, status=200, started=started, received=received, model_seconds=model_seconds)
            if capture is not None and capture.sampled():
                capture.record(variant.name, request, answer, content_type)
            for shadow in mirrored:  # after production has answered, so the copy never competes with it
                self._submit_mirror(name, shadow, request, capture)

        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(answer))),
            ("x-Amzn-Invoked-Production-Variant", variant.name),
        ]
        if request.custom_attributes is not None:
            headers.append(("X-Amzn-SageMaker-Custom-Attributes", request.custom_attributes))
        start_response("200 OK", headers)
        return ThenRun(answer, after_response)

    def _measure(
        self,
        endpoint: str,
        variant: Variant,
        *,
        status: int,
        started: float,
        received: float,
        model_seconds: float | None,
    ) -> None:
        """ModelLatency is the container's time; OverheadLatency the rest of the request's time here."""
        total = time.perf_counter() - received
        model = model_seconds if model_seconds is not None else time.perf_counter() - started
        self.metrics.record(
            endpoint,
            variant.name,
            instances=variant.current_count,
            status=status,
            model_us=int(model * 1e6) if model_seconds is not None else None,
            overhead_us=max(0, int((total - model) * 1e6)),
        )

    def _submit_mirror(
        self, name: str, shadow: Variant, request: InvocationRequest, capture: CaptureWriter | None
    ) -> None:
        """A slower shadow must not pile up work without bound: beyond the backlog, copies are dropped."""
        if not self._shadow_backlog.acquire(blocking=False):
            self.shadow_dropped += 1
            return
        with self._mirrors_done:
            self._mirrors_pending += 1
            self.shadow_mirrored += 1
        self._shadow_pool.submit(self._mirror, name, shadow, request, capture)

    def wait_for_mirrors(self, timeout: float) -> bool:
        """Until every shadow copy submitted so far has been answered (or failed); False on timeout."""
        with self._mirrors_done:
            return self._mirrors_done.wait_for(lambda: self._mirrors_pending == 0, timeout)

    def _mirror(self, name: str, shadow: Variant, request: InvocationRequest, capture: CaptureWriter | None) -> None:
        try:
            self._mirror_once(name, shadow, request, capture)
        finally:
            with self._mirrors_done:
                self._mirrors_pending -= 1
                if not self._mirrors_pending:
                    self._mirrors_done.notify_all()

    def _mirror_once(
        self, name: str, shadow: Variant, request: InvocationRequest, capture: CaptureWriter | None
    ) -> None:
        # SageMaker publishes a shadow variant's metrics under its own VariantName, as for production.
        started = time.perf_counter()
        try:
            answer, content_type = shadow.fleet.invoke(request)
        except Exception as exc:  # a shadow's failure is observed (its 5XX metric), never returned to the client
            status = exc.status if isinstance(exc, InvocationFailed) else 500
            self._measure(name, shadow, status=status, started=started, received=started, model_seconds=None)
            log.debug("shadow %s failed: %s", shadow.name, exc)
            return
        finally:
            self._shadow_backlog.release()
        self._measure(
            name, shadow, status=200, started=started, received=started, model_seconds=time.perf_counter() - started
        )
        if capture is not None and capture.sampled():
            capture.record(shadow.name, request, answer, content_type)

    def close(self) -> None:
        self._shadow_pool.shutdown(wait=False, cancel_futures=True)
