"""The sagemaker-training toolkit's conventions: hyperparameter decoding, ``--key value`` arguments, SM_* values."""

from __future__ import annotations

import json
from typing import Any

HOST = "algo-1"  # the one training host's name, as the toolkit names the first

# sagemaker_training.params.SAGEMAKER_HYPERPARAMETERS: framework settings, never user arguments.
SAGEMAKER_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """JSON-decode each value, keeping the string when it is not JSON (environment.read_hyperparameters)."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def split_hyperparameters(decoded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(sagemaker settings, additional framework parameters, user hyperparameters), as the toolkit splits them."""
    sagemaker = {k: v for k, v in decoded.items() if k in SAGEMAKER_HYPERPARAMETERS or k.startswith("sagemaker_")}
    framework = {k: v for k, v in sagemaker.items() if k not in SAGEMAKER_HYPERPARAMETERS}
    user = {k: v for k, v in decoded.items() if k not in sagemaker}
    return sagemaker, framework, user


def _arg_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``--key value`` pairs, keys sorted, one-letter keys as ``-k``, dicts as ``k=v,k2=v2`` (mapping.to_cmd_args)."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        name = _arg_text(key)
        args.append(("--" if len(name) > 1 else "-") + name if name else "")
        value = hyperparameters[key]
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_arg_text(value))
    return args


def _env_value(value: Any) -> str:
    """Strings as they are, None as empty, anything else as compact sorted JSON (mapping.to_env_vars)."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def to_env_vars(mapping: dict[str, Any]) -> dict[str, str]:
    return {f"SM_{str(key).upper()}": _env_value(value) for key, value in mapping.items() if key}


def module_name(program: str) -> str:
    return program[:-3] if program.endswith(".py") else program
