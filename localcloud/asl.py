"""Structural checks of an Amazon States Language definition, before anything is deployed."""

from __future__ import annotations

import json

from localcloud.moto import stepfunctions


class AslError(Exception):
    pass


def check_definition(text: str) -> None:
    """JSON, then the transitions, then moto's static analyser (what CreateStateMachine checks)."""
    try:
        definition = json.loads(text)
    except ValueError as exc:
        raise AslError(f"not JSON: {exc}") from exc
    if not isinstance(definition, dict) or "StartAt" not in definition or "States" not in definition:
        raise AslError("a definition needs StartAt and States")
    missing = sorted(
        {
            target
            for state in definition["States"].values()
            if isinstance(state, dict)
            for target in [
                state.get("Next"),
                state.get("Default"),
                *(c.get("Next") for c in state.get("Choices") or [] if isinstance(c, dict)),
                *(c.get("Next") for c in state.get("Catch") or [] if isinstance(c, dict)),
            ]
            if isinstance(target, str) and target not in definition["States"]
        }
    )
    if definition["StartAt"] not in definition["States"]:
        missing.insert(0, definition["StartAt"])
    if missing:
        raise AslError(f"transition to undefined state(s): {', '.join(missing)}")
    try:
        stepfunctions.analyse_definition(text)
    except stepfunctions.InvalidDefinition as exc:
        raise AslError(str(exc)) from exc
    except Exception as exc:  # the preprocessor raises plain errors for bad field values
        raise AslError(f"{type(exc).__name__}: {exc}") from exc
