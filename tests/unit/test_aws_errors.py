"""botocore's errors become the domain errors the state machines retry or catch by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from shepherd.aws.errors import mapped
from shepherd.errors import EndpointBusy, InvalidInput, TransientError

ROOT = Path(__file__).resolve().parents[2]


def _error(code: str, message: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "UpdateEndpoint"
    )


def test_an_update_of_an_endpoint_still_updating_is_busy_not_invalid_input() -> None:
    # SageMaker's answer while Application Auto Scaling (or another change) is updating the endpoint
    busy = _error(
        "ValidationException", 'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:1:endpoint/c".'
    )
    with pytest.raises(EndpointBusy, match="in-progress endpoint"), mapped("updating endpoint c"):
        raise busy


def test_other_validation_errors_stay_invalid_input_and_throttling_transient() -> None:
    with pytest.raises(InvalidInput), mapped("x"):
        raise _error("ValidationException", "Could not access model data at s3://b/k")
    with pytest.raises(TransientError), mapped("x"):
        raise _error("ThrottlingException", "Rate exceeded")


def test_every_rollout_step_retries_a_busy_endpoint_first() -> None:
    # Step Functions matches the error's name (the exception class); the first matching Retry wins.
    definition = json.loads((ROOT / "statemachines" / "rollout.asl.json").read_text())
    steps = {
        name: state
        for name, state in definition["States"].items()
        if state["Type"] == "Task" and "${RolloutFunctionArn}" in json.dumps(state.get("Parameters"))
    }
    assert {"EnterStage", "Finalize", "RollbackWeights", "RollbackConfig"} <= set(steps)
    for name, state in steps.items():
        first = state["Retry"][0]
        assert first["ErrorEquals"] == ["EndpointBusy"], name
        delays = [first["IntervalSeconds"] * first["BackoffRate"] ** i for i in range(first["MaxAttempts"])]
        spread = sum(min(delay, first["MaxDelaySeconds"]) for delay in delays)
        # Full jitter waits half of that on average: a scaling activity (minutes) is outlasted either way.
        assert spread / 2 >= 15 * 60, f"{name}: retries span {spread:.0f} s before jitter"
