"""The Rollout state machine's state: what Prepare plans and every later step reads."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from shepherd.rollout.plan import Stage, VariantSpec

if TYPE_CHECKING:
    from shepherd.config import ModelConfig


class RolloutState(BaseModel):
    """Validated at the handler's edge. Unknown keys are ignored so that an execution started before an
    upgrade still runs; ``stage_index``, ``verdict`` and ``continuation`` the state machine keeps beside it."""

    model_config = ConfigDict(extra="ignore")

    run: str
    model: str
    endpoint: str
    package_arn: str
    version: int
    config: dict[str, Any]
    candidate: VariantSpec
    judge: dict[str, Any]
    interval_seconds: int
    judge_calls_per_execution: int
    stage_index: int = 0
    started_at: float
    first: bool
    noop: bool
    champion: VariantSpec | None
    last_good: str | None
    stages: list[Stage]
    stage_count: int
    target_model: str | None = None  # what clients name in InvokeEndpoint's TargetModel (multi-model)
    verdict: dict[str, Any] | None = None  # the judge's verdict, or the error a Catch recorded
    continuation: int = 0
    error: Any = None

    # parsed_config's last answer and a copy of the config it was validated from
    _parsed: tuple[dict[str, Any], str, ModelConfig] | None = PrivateAttr(default=None)

    def parsed_config(self) -> ModelConfig:
        """The model's shepherd.yaml, as Prepare validated it: validated once per state (several steps ask per call),
        again only if ``config`` or ``model`` changed since, even in place. Callers read it and never change it."""
        from shepherd.config import ModelConfig

        if self._parsed is not None:
            source, model, parsed = self._parsed
            if model == self.model and source == self.config:
                return parsed
        parsed = ModelConfig.model_validate(self.config, context={"model": self.model})
        self._parsed = (copy.deepcopy(self.config), self.model, parsed)
        return parsed

    def dump(self) -> dict[str, Any]:
        """The JSON the state machine carries: only what was set, as Prepare wrote it."""
        return self.model_dump(mode="json", include=set(self.model_fields_set))

    def serving_champion(self) -> VariantSpec:
        if self.champion is None:
            raise ValueError(f"rollout {self.run} is a first deployment: it has no champion")
        return self.champion

    def last_good_config(self) -> str:
        if self.last_good is None:
            raise ValueError(f"rollout {self.run} is a first deployment: it has no last good config")
        return self.last_good
