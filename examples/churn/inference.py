"""Serving functions for the scikit-learn container: model_fn, input_fn, predict_fn, output_fn.

The container has no default model_fn, so the script must load the model itself. Requests are
rows of the training features, without ``target``: text/csv (one row per line, an optional
header naming the columns) or application/json (a list of rows, a single row, a list of
objects keyed by feature name, or {"instances": [...]}). The answer is the churn probability
of each row (predict_proba's positive class; predict for a model without probabilities):
text/csv one value per line, application/json {"predictions": [...]}.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import joblib
import numpy as np
import pandas as pd

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"


def _base_type(content_type: str | None) -> str:
    return (content_type or CSV).split(";")[0].strip().lower()


def model_fn(model_dir: str) -> Any:
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _is_header(line: str) -> bool:
    """A CSV first line is a header when some cell is not a number."""
    for cell in line.strip().split(","):
        try:
            float(cell)
        except ValueError:
            return True
    return False


def input_fn(request_body: str | bytes, request_content_type: str | None) -> pd.DataFrame | np.ndarray:
    content_type = _base_type(request_content_type)
    if content_type == NPY:  # what the SDK's SKLearnPredictor sends by default
        raw = request_body if isinstance(request_body, bytes) else request_body.encode("latin-1")
        array = np.load(io.BytesIO(raw), allow_pickle=False)
        return array.reshape(1, -1) if array.ndim == 1 else array
    text = request_body.decode("utf-8") if isinstance(request_body, bytes) else request_body
    if content_type == CSV:
        has_header = _is_header(text.lstrip().split("\n", 1)[0])
        frame = pd.read_csv(io.StringIO(text), header=0 if has_header else None)
        return frame if has_header else frame.to_numpy(dtype=float)
    if content_type == JSON:
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("instances", data.get("features", [data]))
        if data and isinstance(data[0], dict):
            return pd.DataFrame(data)
        array = np.asarray(data, dtype=float)
        return array.reshape(1, -1) if array.ndim == 1 else array
    raise ValueError(f"unsupported content type {request_content_type!r}: send {CSV}, {JSON} or {NPY}")


def predict_fn(input_data: pd.DataFrame | np.ndarray, model: Any) -> np.ndarray:
    names = _feature_names(model)
    if names is not None:
        if isinstance(input_data, pd.DataFrame):
            input_data = input_data.drop(columns=["target"], errors="ignore")[names]
        else:
            input_data = pd.DataFrame(input_data, columns=names)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(input_data))[:, 1]
    return np.asarray(model.predict(input_data))


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str | bytes, str]:
    content_type = _base_type(accept) if accept and accept != "*/*" else JSON
    values = [float(v) for v in np.ravel(prediction)]
    if content_type == NPY:  # what the SDK's SKLearnPredictor expects back by default
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(values))
        return buffer.getvalue(), NPY
    if content_type == CSV:
        return "\n".join(f"{v:.6g}" for v in values) + "\n", CSV
    if content_type == JSON:
        return json.dumps({"predictions": values}), JSON
    raise ValueError(f"unsupported accept type {accept!r}: ask for {CSV}, {JSON} or {NPY}")
