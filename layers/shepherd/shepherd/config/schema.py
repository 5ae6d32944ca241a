"""The JSON Schema of shepherd.yaml for editors; schemas/shepherd.schema.json is this, committed."""

from __future__ import annotations

import json
from typing import Any

from shepherd.config.models import ModelConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """What a file may hold (cross-key rules, such as spot wait >= runtime, are the loader's alone)."""
    return {"$schema": DIALECT, **ModelConfig.model_json_schema(mode="validation")}


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
