"""The process a local Lambda function runs in: a warm worker that handles one invocation at a time.

Protocol with the parent (localcloud.lambdas): one JSON object per line on a private pipe
(the last two arguments: the request fd, then the response fd). The handler's stdout and
stderr both go to the worker's stderr, which the parent turns into CloudWatch Logs, so
nothing the user prints can corrupt the protocol. A request may carry ``crash`` (a test's fault plan,
set only by localcloud.lambdas): the process then kills itself before or after running the handler.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes and method of Lambda's Python context object."""

    def __init__(self, request_id: str, deadline_ms: int, client_context: Any) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["SHEPHERD_LOCAL_FUNCTION_ARN"]
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.client_context = client_context
        self.identity = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error_body(exc: BaseException) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": [line.rstrip("\n") for line in traceback.format_list(frames)],
    }


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{spec}': expected module.function")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name, None)
    if handler is None:
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def _crash_if_planned(request: dict[str, Any], point: str) -> None:
    """Die as a native crash or the kernel's kill does: no cleanup, no flush, no answer."""
    if request.get("crash") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _exit_with_parent(parent: int) -> None:
    """Workers run in their own session; one whose local cloud died must not linger."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main() -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    requests = os.fdopen(int(sys.argv[-2]), "r", encoding="utf-8")
    responses = os.fdopen(int(sys.argv[-1]), "w", encoding="utf-8")
    os.dup2(2, 1)  # user prints go to the log stream, never into the protocol pipe
    sys.stdout = sys.stderr
    handler: Any = None
    init_error: dict[str, Any] | None = None
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except Exception as exc:  # Lambda reports init errors on every invoke
        init_error = _error_body(exc)
        init_error["errorType"] = f"Runtime.ImportModuleError: {init_error['errorType']}"
        traceback.print_exc()
    for line in requests:
        request = json.loads(line)
        request_id = request["request_id"]
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.monotonic()
        _crash_if_planned(request, "before-handler")
        if init_error is not None:
            response: dict[str, Any] = {"ok": False, "error": init_error}
        else:
            context = LambdaContext(request_id, request["deadline_ms"], request.get("client_context"))
            try:
                result = handler(json.loads(request["payload"]) if request["payload"] else {}, context)
            except Exception as exc:
                body = _error_body(exc)
                body["requestId"] = request_id
                print(f"[ERROR] {body['errorType']}: {body['errorMessage']}", flush=True)
                traceback.print_exc()
                response = {"ok": False, "error": body}
            else:
                try:
                    response = {"ok": True, "payload": json.dumps(result)}
                except (TypeError, ValueError) as exc:
                    message = f"Unable to marshal response: {exc}"
                    response = {"ok": False, "error": {"errorMessage": message, "errorType": "Runtime.MarshalError"}}
        _crash_if_planned(request, "after-handler")
        duration = (time.monotonic() - started) * 1000
        print(f"END RequestId: {request_id}", flush=True)
        print(f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms", flush=True)
        sys.stderr.flush()
        responses.write(json.dumps(response) + "\n")
        responses.flush()


if __name__ == "__main__":
    main()
