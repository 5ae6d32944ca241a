"""The SageMaker JSON protocol (X-Amz-Target: SageMaker.<Operation>) on the local cloud endpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from botocore import xform_name

from localcloud.sagemaker.backend import SUPPORTED_OPERATIONS, SageMakerBackend
from localcloud.sagemaker.control_plane import SageMakerError
from localcloud.sagemaker.validation import RequestInvalid, validate
from localcloud.wsgi import json_response

log = logging.getLogger("shepherd.local.sagemaker")
_TARGET_PREFIX = "SageMaker."


def _wire(value: Any) -> Any:
    """JSON-protocol timestamps are epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _answer(
    start_response: Callable[..., Any], status: str, body: dict[str, Any], error: str | None = None
) -> list[bytes]:
    headers = [("x-amzn-ErrorType", error)] if error else []
    return json_response(start_response, status, _wire(body), "application/x-amz-json-1.1", headers)


class SageMakerApi:
    """Answers the operations the local SageMaker implements; others go on to moto's stub."""

    def __init__(self, app: Callable[..., Iterable[bytes]], backend: SageMakerBackend) -> None:
        self.app = app
        self.backend = backend

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(_TARGET_PREFIX):
            return self.app(environ, start_response)
        operation = target[len(_TARGET_PREFIX) :]
        method = xform_name(operation)
        if method not in SUPPORTED_OPERATIONS:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return _answer(
                start_response,
                "400 Bad Request",
                {"__type": "SerializationException", "message": "Request body is not JSON"},
                "SerializationException",
            )
        try:
            validate(operation, params)
            body = getattr(self.backend, method)(params)
        except RequestInvalid as exc:
            return _answer(
                start_response,
                "400 Bad Request",
                {"__type": "ValidationException", "message": str(exc)},
                "ValidationException",
            )
        except SageMakerError as exc:
            return _answer(
                start_response, f"{exc.status} Bad Request", {"__type": exc.code, "message": exc.message}, exc.code
            )
        except Exception as exc:
            log.exception("SageMaker.%s failed", operation)
            return _answer(
                start_response,
                "500 Internal Server Error",
                {"__type": "InternalFailure", "message": f"{type(exc).__name__}: {exc}"},
                "InternalFailure",
            )
        return _answer(start_response, "200 OK", body)
