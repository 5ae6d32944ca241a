"""The local Lambda's test-only fault plan: a function's runtime process dies during its next invocations."""

from __future__ import annotations

import base64
import json

import pytest

pytestmark = pytest.mark.integration

ECHO = "fixture-EchoFunction"


def _invoke(cloud) -> tuple[dict, dict, str]:
    response = cloud.client("lambda").invoke(FunctionName=ECHO, Payload=b"{}", LogType="Tail")
    return response, json.loads(response["Payload"].read()), base64.b64decode(response["LogResult"]).decode()


def test_a_crash_before_the_handler_is_reported_as_lambda_reports_a_dead_runtime(cloud):
    _invoke(cloud)
    pool = cloud.lambdas.resolve(ECHO)
    warm = set(pool.worker_pids)

    cloud.lambdas.crash_next(ECHO)
    response, body, tail = _invoke(cloud)

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert "echo invoked by" not in tail  # the handler never ran
    assert warm - set(pool.worker_pids), "the worker that crashed is gone"


def test_a_crash_after_the_handler_loses_its_answer_but_not_its_work(cloud):
    cloud.lambdas.crash_next(ECHO, at="after-handler")
    _, body, tail = _invoke(cloud)

    assert body["errorType"] == "Runtime.ExitError"
    assert "echo invoked by fixture-EchoFunction" in tail


def test_the_plan_crashes_exactly_the_next_n_invocations_then_none(cloud):
    cloud.lambdas.crash_next(f"arn:aws:lambda:us-east-1:123456789012:function:{ECHO}", times=2)

    outcomes = [_invoke(cloud)[1].get("errorType") for _ in range(3)]

    assert outcomes == ["Runtime.ExitError", "Runtime.ExitError", None]
    assert _invoke(cloud)[1]["greeting"] == "HELLO FROM THE TEMPLATE"


def test_a_crash_point_must_be_one_the_runtime_knows(cloud):
    with pytest.raises(ValueError, match="before-handler"):
        cloud.lambdas.crash_next(ECHO, at="during-lunch")  # type: ignore[arg-type]
