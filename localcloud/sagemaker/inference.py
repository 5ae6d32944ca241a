"""SageMaker's scikit-learn inference contract: content types, errors, codecs and the model_fn/input_fn handler.

It follows sagemaker-scikit-learn-container over sagemaker-containers' encoders, so a script behaves as in
the container; batch transform and endpoints both run it, inside model worker processes.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------- content types

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"
UTF8_TYPES = (JSON, CSV)  # the container hands these to input_fn as str, others as bytes
DEFAULT_ACCEPT = JSON  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT's default in the container

MODEL_DIR_IN_CONTAINER = "/opt/ml/model"


def media_type(content_type: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv': parameters never select a decoder."""
    return (content_type or "").split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------------------------------------- errors


class InferenceError(Exception):
    """An invocation (or model load) that failed; carries what a 4xx/5xx body would carry."""

    status = 500

    def __init__(
        self, message: str, error_type: str | None = None, stack_trace: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.stack_trace = stack_trace
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "error_type": self.error_type,
            "message": self.message,
            "stack_trace": self.stack_trace,
            "status": self.status,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> InferenceError:
        kind = _ERROR_KINDS.get(str(data.get("kind")), ModelError)
        return kind(
            str(data.get("message", "")),
            data.get("error_type"),
            str(data.get("stack_trace", "")),
            int(data["status"]) if "status" in data else None,
        )

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}" if self.error_type != type(self).__name__ else self.message


class ModelError(InferenceError):
    """The model's code raised while serving a request (InvokeEndpoint's ModelError, a 5xx in batch)."""


class ModelLoadError(InferenceError):
    """The model could not be prepared or loaded (no model_fn, model_fn raised, bad archive...)."""


class UnsupportedFormatError(InferenceError):
    """The container's 415 (request Content-Type) / 406 (Accept) error, in its words."""

    status = 415

    def __init__(
        self, content_type: str, error_type: str | None = None, stack_trace: str = "", status: int | None = None
    ) -> None:
        message = content_type
        if not content_type.startswith("Content type "):
            message = (
                f"Content type {content_type} is not supported by this framework.\n\n"
                "Please implement input_fn to to deserialize the request data or an output_fn to\n"
                "serialize the response. For more information, see the SageMaker Python SDK README."
            )
        super().__init__(message, error_type or "UnsupportedFormatError", stack_trace, status)


class UnsupportedImage(Exception):
    """An image the local cloud cannot stand in for."""


_ERROR_KINDS: dict[str, type[InferenceError]] = {
    cls.__name__: cls for cls in (InferenceError, ModelError, ModelLoadError, UnsupportedFormatError)
}

# The sagemaker-containers wording for a missing model_fn (the sklearn container has no default).
NO_MODEL_FN = "Please provide a model_fn implementation.\nSee documentation for model_fn at https://github.com/aws/sagemaker-python-sdk"

# ---------------------------------------------------------------------------------------------- images

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]+)?$"
)


def serving_framework(image: str) -> str:
    """The local stand-in for a serving image ("sklearn"), or UnsupportedImage saying why not.

    The local cloud runs users' scripts with its own interpreter, so it can only stand in for
    framework images whose serving stack it reproduces: the scikit-learn one.
    """
    match = _ECR_IMAGE.match(image or "")
    repo = match["repo"] if match else ""
    if repo == "sagemaker-scikit-learn":
        return "sklearn"
    if repo == "sagemaker-xgboost":
        raise UnsupportedImage(
            f"The image {image} needs the SageMaker XGBoost serving stack (and the xgboost package), "
            "which Shepherd's local SageMaker does not provide; use a sagemaker-scikit-learn image "
            "(e.g. 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3) locally."
        )
    raise UnsupportedImage(
        f"The image {image} is not supported by Shepherd's local SageMaker, which runs models with the "
        "sagemaker-scikit-learn framework images only (<account>.dkr.ecr.<region>.amazonaws.com/"
        "sagemaker-scikit-learn:<version>); custom and other framework images need real SageMaker."
    )


# ---------------------------------------------------------------------------------------------- decoders


def _csv_fast(raw: bytes) -> np.ndarray | None:
    """pandas' C parser on a numeric CSV payload, or None when it might differ from the container.

    Quotes, blank lines, carriage returns, empty fields and ragged rows all go to the
    container's own algorithm, so the fast path only ever answers what that would answer.
    """
    if not raw.strip() or b'"' in raw or b"\n\n" in raw or b"\r" in raw:
        return None
    try:
        import pandas as pd

        frame = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float64, na_filter=False, engine="c")
    except Exception:
        return None
    array = frame.to_numpy(dtype=np.float64)
    if np.isnan(array).any():  # ragged rows (na_filter=False: NaN cannot come from the text otherwise)
        return None
    return array.squeeze()


def _csv_container(data: str) -> np.ndarray:
    """sagemaker-containers' csv_to_numpy: csv.reader rows -> array -> squeeze -> float (else the strings)."""
    try:
        rows = list(csv.reader(io.StringIO(data), delimiter=",", quotechar='"', doublequote=True, strict=True))
    except csv.Error as exc:
        raise ModelError(f"Error while decoding csv: {exc}", "ClientError") from exc
    ragged = next((i for i, row in enumerate(rows) if len(row) != len(rows[0])), None)
    if ragged is not None:  # the container fails here too, on an inhomogeneous np.array: a 500 either way
        blank = " (a blank line)" if not rows[ragged] else ""
        raise ModelError(
            f"Error while decoding csv: row {ragged + 1}{blank} has {len(rows[ragged])} fields where row 1 has "
            f"{len(rows[0])}",
            "ClientError",
        )
    array = np.array(rows).squeeze()
    try:
        return array.astype(None)
    except ValueError:
        return array  # as the container does: the float32 cast in input_fn then fails with numpy's message


def csv_to_numpy(data: str | bytes) -> np.ndarray:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fast = _csv_fast(raw)
    if fast is not None:
        return fast
    return _csv_container(data.decode("utf-8") if isinstance(data, bytes) else data)


def json_to_numpy(data: str | bytes) -> np.ndarray:
    return np.array(json.loads(data))


NPY_MAGIC = b"\x93NUMPY"


def npy_to_numpy(data: str | bytes) -> np.ndarray:
    """numpy.load of an .npy body; anything else (a pickle included: no unpickling here) is refused, naming it."""
    raw = data.encode("latin-1") if isinstance(data, str) else data
    if not raw.startswith(NPY_MAGIC):  # else numpy answers "This file contains pickled (object) data..."
        raise ModelError(
            f"Error while decoding npy: the request body is not an .npy file (it begins {bytes(raw[:16])!r}); "
            "send what numpy.save writes, or a ContentType naming what the body is (text/csv, application/json)",
            "ClientError",
        )
    return np.load(io.BytesIO(raw), allow_pickle=False)


_DECODERS: dict[str, Callable[[str | bytes], np.ndarray]] = {CSV: csv_to_numpy, JSON: json_to_numpy, NPY: npy_to_numpy}


def decode(data: str | bytes, content_type: str) -> np.ndarray:
    decoder = _DECODERS.get(media_type(content_type))
    if decoder is None:
        raise UnsupportedFormatError(content_type, status=415)
    return decoder(data)


# ---------------------------------------------------------------------------------------------- encoders


def _csv_lines_fast(array: np.ndarray) -> str | None:
    """Rows of int or float64 as csv.writer writes them (str of each scalar), via one repr join.

    Python's float repr is numpy's float64 str (shortest round-trip), so the text is the same.
    """
    if array.ndim != 2 or not (array.dtype.kind in "iu" or array.dtype == np.float64):
        return None
    if array.shape[0] == 0:
        return ""
    if array.shape[1] == 1:
        return "\n".join(map(repr, array[:, 0].tolist())) + "\n"
    return "\n".join(",".join(map(repr, row)) for row in array.tolist()) + "\n"


def array_to_csv(array_like: Any) -> str:
    """sagemaker-containers' array_to_csv: 1-D -> one value per line; csv.writer with '\\n' lines."""
    array = np.array(array_like)
    if array.ndim == 1:
        array = array.reshape(array.shape[0], 1)
    fast = _csv_lines_fast(array)
    if fast is not None:
        return fast
    stream = io.StringIO()
    try:
        csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True).writerows(
            array
        )
    except csv.Error as exc:
        raise ModelError(f"Error while encoding csv: {exc}", "ClientError") from exc
    return stream.getvalue()


def array_to_json(array_like: Any) -> str:
    def default(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        return json.JSONEncoder().default(value)

    return json.dumps(array_like, default=default)


def array_to_npy(array_like: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_like)
    return buffer.getvalue()


_ENCODERS: dict[str, Callable[[Any], str | bytes]] = {CSV: array_to_csv, JSON: array_to_json, NPY: array_to_npy}


def encode(array_like: Any, accept: str) -> bytes:
    encoder = _ENCODERS.get(media_type(accept))
    if encoder is None:
        raise UnsupportedFormatError(accept, status=406)
    out = encoder(array_like)
    return out.encode("utf-8") if isinstance(out, str) else out


# ---------------------------------------------------------------------------------------------- defaults


def default_input_fn(input_data: str | bytes, content_type: str) -> np.ndarray:
    """The sklearn container's: decode, then float32 for CSV and JSON."""
    array = decode(input_data, content_type)
    return array.astype(np.float32) if media_type(content_type) in UTF8_TYPES else array


def default_predict_fn(input_data: Any, model: Any) -> Any:
    return model.predict(input_data)


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    return encode(prediction, accept), accept


# ---------------------------------------------------------------------------------------------- the handler


def resolve_code_dir(model_dir: Path, environment: Mapping[str, str]) -> Path | None:
    """Where SAGEMAKER_SUBMIT_DIRECTORY points on this machine (after prepare_model localised it)."""
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if not submit:
        return None
    if submit.startswith("file://"):
        return Path(submit[len("file://") :])
    if submit == MODEL_DIR_IN_CONTAINER or submit.startswith(MODEL_DIR_IN_CONTAINER + "/"):
        return model_dir / submit[len(MODEL_DIR_IN_CONTAINER) :].lstrip("/")
    if submit.startswith("s3://"):
        raise ModelLoadError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit} was not downloaded (prepare_model does that)")
    return Path(submit)


def find_script(model_dir: Path, environment: Mapping[str, str]) -> Path | None:
    """The user's inference script: SAGEMAKER_PROGRAM in the submit directory, else code/inference.py."""
    program = environment.get("SAGEMAKER_PROGRAM", "")
    code_dir = resolve_code_dir(model_dir, environment)
    if program:
        candidates = [d / program for d in (code_dir, model_dir / "code", model_dir) if d is not None]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise ModelLoadError(
            f"SAGEMAKER_PROGRAM {program} was not found (looked in {', '.join(str(c.parent) for c in candidates)})",
            "ImportModuleError",
        )
    default = model_dir / "code" / "inference.py"
    return default if default.is_file() else None


def _import_script(script: Path) -> ModuleType:
    """Import the script as the container does: by module name, with its directory first on sys.path."""
    directory = str(script.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = script.stem
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {script}", "ImportModuleError")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(
            f"importing {script.name} failed: {type(exc).__name__}: {exc}", "ImportModuleError", traceback.format_exc()
        ) from exc
    return module


def _note_an_empty_body(error: InferenceError, payload: bytes) -> InferenceError:
    """An empty request fails wherever its decoding fails ("EmptyDataError", "Expected 2D array"): say it was empty."""
    if not payload.strip():
        error.message = f"{error.message} (the request body was empty)"
    return error


class ModelHandler:
    """One model, loaded once, answering invocations: the /invocations side of a serving container.

    ``load`` runs the script's ``model_fn``; ``invoke`` runs input_fn -> predict_fn -> output_fn
    (or transform_fn). Errors in user code come back as ModelError with the script's message;
    unsupported Content-Type / Accept as UnsupportedFormatError (415 / 406).
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.script: Path | None = None
        self.default_accept = DEFAULT_ACCEPT
        self._input_fn: Callable[[Any, str], Any] = default_input_fn
        self._predict_fn: Callable[[Any, Any], Any] = default_predict_fn
        self._output_fn: Callable[[Any, str], Any] = default_output_fn
        self._transform_fn: Callable[[Any, Any, str, str], Any] | None = None
        self._user: set[str] = set()

    def load(self, model_dir: Path, environment: Mapping[str, str]) -> None:
        self.default_accept = environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT
        self.script = find_script(model_dir, environment)
        module = _import_script(self.script) if self.script is not None else None
        functions = {
            name: getattr(module, name)
            for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
            if module is not None and callable(getattr(module, name, None))
        }
        self._user = set(functions)
        if "transform_fn" in functions and functions.keys() & {"input_fn", "predict_fn", "output_fn"}:
            raise ModelLoadError(
                "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn", "UserError"
            )
        if "model_fn" not in functions:
            where = f"{self.script.name} defines no model_fn" if self.script else "no inference script was found"
            raise ModelLoadError(
                f"{NO_MODEL_FN}\n({where}: the scikit-learn container has no default model_fn; set "
                "SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY, or put code/inference.py in model.tar.gz)",
                "NotImplementedError",
            )
        self._input_fn = functions.get("input_fn", default_input_fn)
        self._predict_fn = functions.get("predict_fn", default_predict_fn)
        self._output_fn = functions.get("output_fn", default_output_fn)
        self._transform_fn = functions.get("transform_fn")
        try:
            self.model = functions["model_fn"](str(model_dir))
        except Exception as exc:
            raise ModelLoadError(
                f"model_fn failed: {type(exc).__name__}: {exc}", type(exc).__name__, traceback.format_exc()
            ) from exc

    def invoke(self, payload: bytes, content_type: str, accept: str | None = None) -> tuple[bytes, str]:
        """One /invocations request; returns (body, content type)."""
        accept = accept if accept and media_type(accept) != "*/*" else self.default_accept
        try:
            request: str | bytes = payload
            if media_type(content_type) in UTF8_TYPES:
                request = payload.decode("utf-8")
            if self._transform_fn is not None:
                result = self._transform_fn(self.model, request, content_type, accept)
            else:
                data = self._input_fn(request, content_type)
                prediction = self._predict_fn(data, self.model)
                result = self._output_fn(prediction, accept)
        except UnsupportedFormatError:
            raise
        except InferenceError as exc:
            _note_an_empty_body(exc, payload)
            raise
        except Exception as exc:
            error = ModelError(str(exc), type(exc).__name__, traceback.format_exc())
            raise _note_an_empty_body(error, payload) from exc
        return self._response(result, accept)

    @staticmethod
    def _response(result: Any, accept: str) -> tuple[bytes, str]:
        """output_fn may return (body, content type), a body, or a Flask-like response object."""
        content_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        elif hasattr(result, "get_data") and hasattr(result, "mimetype"):
            content_type = result.mimetype or accept
            result = result.get_data()
        if isinstance(result, str):
            return result.encode("utf-8"), str(content_type)
        if isinstance(result, bytes | bytearray | memoryview):
            return bytes(result), str(content_type)
        raise ModelError(
            f"output_fn returned {type(result).__name__}; it must return the serialized response "
            "(bytes or str), or a (response, content_type) tuple",
            "TypeError",
        )
