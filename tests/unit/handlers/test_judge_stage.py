"""JudgeStage: a malformed Judge input is one specific InvalidInput, before any AWS call."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from shepherd.errors import InvalidInput

from .conftest import LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def judge_stage(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("judge_stage")


def test_the_sample_event_parses_into_the_request(judge_stage: ModuleType) -> None:
    request = judge_stage.Request.parse(sample_event("judge_stage"))
    assert request.stage == judge_stage.Stage(kind="shadow", weight=100.0, max_minutes=60, at_max="INCONCLUSIVE")
    assert (request.stage_index, request.stage_started) == (0, 1795000000.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("endpoint"), "the event has no 'endpoint'"),
        (lambda e: e["stage"].update(kind="canary"), "stage.kind must be one of shadow, ab, got 'canary'"),
        (lambda e: e["stage"].pop("max_minutes"), "stage has no 'max_minutes'"),
        (lambda e: e.update(stage_index=-1), "stage_index must be >= 0, got -1"),
        (lambda e: e.update(stage_started="yesterday"), "stage_started must be a number, got 'yesterday'"),
        (lambda e: e.update(judge=[]), "judge must be an object, got []"),
    ],
)
def test_a_malformed_input_names_the_field(
    environment: dict[str, str], judge_stage: ModuleType, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    event = sample_event("judge_stage")
    change(event)
    with pytest.raises(InvalidInput) as raised:
        judge_stage.handler(event, LambdaContext())
    assert str(raised.value) == message
