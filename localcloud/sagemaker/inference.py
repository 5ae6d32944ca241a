"""SageMaker's inference contract, shared by batch transform and (later) real-time endpoints.

Three layers, each usable on its own:

- the handler contract of the scikit-learn serving container: ``model_fn``/``input_fn``/
  ``predict_fn``/``output_fn`` (or ``transform_fn``) from the user's script, else the
  container's defaults (``ModelHandler``). The defaults follow sagemaker-scikit-learn-container
  (serving.py) over sagemaker-containers' encoders: CSV and JSON requests decode to float32
  numpy arrays, ``application/x-npy`` to the saved array; the prediction is encoded to the
  Accept type; anything else is the container's 415/406 ``UnsupportedFormatError``. The CSV
  paths have vectorised fast paths (pandas' C parser, ``repr`` joins) that give the
  container's result whenever they apply and fall back to the container's own algorithm
  otherwise, so batch transform can push hundreds of MB through without per-record Python.
- model preparation in the local cloud's process (``prepare_model``): model.tar.gz from S3,
  extracted with ``archive.extract_tar_safely``; the script from SAGEMAKER_SUBMIT_DIRECTORY
  (S3 tar.gz, S3 prefix, file://, /opt/ml/model/...) or ``code/inference.py`` in the archive.
- process isolation (``ModelWorkerPool``): N worker processes (model_worker.py), each loading
  the model once, spoken to over a private pipe pair with length-prefixed binary frames, so a
  crashing or leaking user script cannot take the local cloud down and N requests really run
  in parallel. Errors come back with type, message and traceback (``ModelError``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import csv
import fcntl
import importlib.util
import io
import json
import logging
import os
import queue
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import IO, Any

import numpy as np
from shepherd.objects import split_s3_uri

log = logging.getLogger("shepherd.local.sagemaker")

# ---------------------------------------------------------------------------------------------- content types

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"
UTF8_TYPES = (JSON, CSV)  # the container hands these to input_fn as str, others as bytes
DEFAULT_ACCEPT = JSON  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT's default in the container

MODEL_DIR_IN_CONTAINER = "/opt/ml/model"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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


def npy_to_numpy(data: str | bytes) -> np.ndarray:
    raw = data.encode("latin-1") if isinstance(data, str) else data
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
        request: str | bytes = payload
        if media_type(content_type) in UTF8_TYPES:
            request = payload.decode("utf-8")
        try:
            if self._transform_fn is not None:
                result = self._transform_fn(self.model, request, content_type, accept)
            else:
                data = self._input_fn(request, content_type)
                prediction = self._predict_fn(data, self.model)
                result = self._output_fn(prediction, accept)
        except UnsupportedFormatError:
            raise
        except InferenceError:
            raise
        except Exception as exc:
            raise ModelError(str(exc), type(exc).__name__, traceback.format_exc()) from exc
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


# ---------------------------------------------------------------------------------------------- preparation


@dataclass
class PreparedModel:
    """A model's artifacts and code on local disk, ready for ModelHandler.load in any process."""

    model_dir: Path
    environment: dict[str, str]
    framework: str
    image: str
    notes: list[str] = field(default_factory=list)

    @property
    def code_dir(self) -> Path | None:
        script = find_script(self.model_dir, self.environment)
        return script.parent if script else resolve_code_dir(self.model_dir, self.environment)


def _extract(archive: Path, dest: Path, what: str) -> None:
    from localcloud.sagemaker.archive import extract_tar_safely

    try:
        extract_tar_safely(archive, dest)
    except Exception as exc:  # UnsafeArchiveError, tarfile.ReadError, ...
        raise ModelLoadError(f"could not extract {what}: {exc}", type(exc).__name__) from exc


def _download(s3: Any, uri: str, target: Path) -> None:
    bucket, key = split_s3_uri(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(target))
    except Exception as exc:
        raise ModelLoadError(f"could not download {uri}: {exc}", type(exc).__name__) from exc


def _download_prefix(s3: Any, uri: str, dest: Path) -> None:
    """Every object under an S3 prefix, by relative key; keys climbing out of dest are refused."""
    bucket, prefix = split_s3_uri(uri)
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    found = False
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            relative = PurePosixPath(item["Key"][len(base) :])
            if item["Key"].endswith("/") or not relative.parts:
                continue
            if relative.is_absolute() or ".." in relative.parts:
                raise ModelLoadError(f"refusing S3 key {item['Key']!r}: it would land outside {dest}")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            found = True
    if not found:
        raise ModelLoadError(f"SAGEMAKER_SUBMIT_DIRECTORY {uri} has no objects")


def prepare_model(
    container: Mapping[str, Any], s3: Any, work_dir: Path, log_line: Callable[[str], None] | None = None
) -> PreparedModel:
    """Download and unpack a container definition's model and code into work_dir.

    Runs in the local cloud's process (it has the S3 client); the worker processes then
    load from local paths only. SAGEMAKER_SUBMIT_DIRECTORY is rewritten to a file:// URL.
    """
    say = log_line or (lambda _line: None)
    framework = serving_framework(str(container.get("Image", "")))
    environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    model_dir = work_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    url = container.get("ModelDataUrl")
    if url:
        archive = work_dir / "downloads" / "model.tar.gz"
        _download(s3, str(url), archive)
        _extract(archive, model_dir, str(url))
        archive.unlink(missing_ok=True)
        say(f"Model artifacts from {url} extracted")
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("s3://"):
        code_dir = work_dir / "code"
        if submit.endswith((".tar.gz", ".tgz")):
            archive = work_dir / "downloads" / "sourcedir.tar.gz"
            _download(s3, submit, archive)
            _extract(archive, code_dir, submit)
            archive.unlink(missing_ok=True)
        else:
            _download_prefix(s3, submit, code_dir)
        environment["SAGEMAKER_SUBMIT_DIRECTORY"] = f"file://{code_dir}"
        say(f"Inference code from {submit} downloaded")
    prepared = PreparedModel(model_dir, environment, framework, str(container.get("Image", "")))
    code_dir_found = prepared.code_dir
    if code_dir_found is not None and (code_dir_found / "requirements.txt").is_file():
        note = (
            f"requirements.txt found in the inference code ({code_dir_found.name}/requirements.txt): the local "
            "cloud does not install it; its packages must already be in the local environment"
        )
        prepared.notes.append(note)
        say(note)
    return prepared


# ---------------------------------------------------------------------------------------------- wire protocol

_HEADER = struct.Struct("!II")  # meta length, body length


def write_frame(stream: IO[bytes], meta: Mapping[str, Any], body: bytes | memoryview = b"") -> None:
    """One message on the private pipe: header, JSON meta, raw body (no base64 for MB payloads)."""
    encoded = json.dumps(meta).encode()
    stream.write(_HEADER.pack(len(encoded), len(body)) + encoded)
    if body:
        stream.write(body)
    stream.flush()


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if data is None or len(data) < size:
        return None
    return data


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None at end of stream (the other side exited)."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    meta_len, body_len = _HEADER.unpack(header)
    meta = _read_exact(stream, meta_len)
    body = _read_exact(stream, body_len) if body_len else b""
    if meta is None or body is None:
        return None
    return json.loads(meta), body


# ---------------------------------------------------------------------------------------------- worker pool

_PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "OPENBLAS_CORETYPE", *THREAD_ENV)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# By code, not -m: the worker's sys.path starts with the user's code, not the local cloud's cwd.
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); from localcloud.sagemaker.model_worker import main; main(sys.argv[2:])"
)
_ZYGOTE_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); from localcloud.sagemaker.model_worker import zygote_main; "
    "zygote_main(int(sys.argv[2]))"
)
_STDERR_TAIL = 40


class _Zygote:
    """A warm interpreter with numpy, pandas and scikit-learn imported, forking model workers on request.

    Importing scikit-learn takes 1-2 s per process, more than a whole small transform job; a
    fork of a process that already did costs milliseconds. Requests go over a SEQPACKET Unix
    socket carrying the worker's environment and cwd, and its three pipe ends (SCM_RIGHTS).
    """

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        env.update(dict.fromkeys(THREAD_ENV, "1"))  # OpenMP reads these once; workers then set their own share
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_BOOTSTRAP, str(_PROJECT_ROOT), str(child.fileno())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(child.fileno(),),
            start_new_session=True,
        )
        child.close()
        self._socket = parent
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self, env: Mapping[str, str], cwd: Path, fds: list[int], nice: int = 0, own_session: bool = False) -> int:
        """Fork a worker with these pipe ends (request read, response write, stderr write); its pid."""
        spec = {"env": dict(env), "cwd": str(cwd), "nice": nice, "own_session": own_session}
        message = json.dumps(spec).encode()
        with self._lock:
            socket.send_fds(self._socket, [message], fds)
            reply = self._socket.recv(4096)
        if not reply:
            raise OSError("the model worker zygote exited")
        return int(json.loads(reply)["pid"])

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._socket.close()


_zygotes: dict[str, _Zygote] = {}  # the one per local cloud process, under "current"
_zygote_lock = threading.Lock()


def model_worker_zygote() -> _Zygote | None:
    """The process-wide zygote, started on first use; None where fork is unavailable or it failed."""
    if not hasattr(os, "fork") or os.environ.get("SHEPHERD_MODEL_WORKER_SPAWN") == "1":
        return None
    with _zygote_lock:
        zygote = _zygotes.get("current")
        if zygote is None or not zygote.alive():
            try:
                zygote = _Zygote()
            except OSError:
                log.exception("could not start the model worker zygote; spawning workers instead")
                return None
            _zygotes["current"] = zygote
            atexit.register(zygote.close)
        return zygote


def prestart_model_workers() -> None:
    """Start the zygote now (e.g. with the local cloud), so the first job does not wait for imports."""
    model_worker_zygote()


_KILL_POLL_SECONDS = 0.5  # how soon a request waiting on a worker notices that the worker was killed


class _Worker:
    """One model worker process and its pipes; used by one request at a time."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        cwd: Path,
        log_line: Callable[[str], None],
        *,
        nice: int = 0,
        pipe_bytes: int = 0,
        own_session: bool = False,
    ) -> None:
        self.name = name
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        if pipe_bytes:  # MB payloads cross a 64 KB pipe in ~100 writer/reader switches; a larger pipe, fewer
            for fd in (request_write, response_write):
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, pipe_bytes)
        self.process: subprocess.Popen[bytes] | None = None
        self._pid = 0
        stderr_read, stderr_write = os.pipe()
        zygote = model_worker_zygote()
        try:
            if zygote is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._pid = zygote.spawn(env, cwd, [request_read, response_write, stderr_write], nice, own_session)
            if not self._pid:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _BOOTSTRAP,
                        str(_PROJECT_ROOT),
                        str(request_read),
                        str(response_write),
                        str(nice),
                    ],
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr_write,
                    pass_fds=(request_read, response_write),
                    start_new_session=own_session,
                    process_group=None if own_session else 0,  # its own group (see model_worker)
                )
                self._pid = self.process.pid
        finally:
            for fd in (request_read, response_write, stderr_write):
                os.close(fd)
        self._stderr = os.fdopen(stderr_read, "rb")
        self._requests = os.fdopen(request_write, "wb")
        self._responses = os.fdopen(response_read, "rb")
        # One epoll set for the worker's life: a new one per request cost more than the rest of the dispatch.
        self._selector = selectors.DefaultSelector()
        self._selector.register(response_read, selectors.EVENT_READ)
        self._exited = threading.Event()  # its stderr closed: the process is gone
        self._killed = False
        self._log_line = log_line
        self.tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self.ready = threading.Event()
        self.load_error: InferenceError | None = None
        threading.Thread(target=self._pump_logs, name=f"{name}-log", daemon=True).start()
        threading.Thread(target=self._handshake, name=f"{name}-start", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._pid

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:  # a zygote's child: the zygote reaps it, so a dead one is simply gone
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _pump_logs(self) -> None:
        for raw in self._stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.tail.append(line)
            with contextlib.suppress(Exception):
                self._log_line(line)
        self._exited.set()

    def known_dead(self) -> bool:
        """Whether the worker is known to have exited, without a system call (its stderr reached EOF)."""
        return self._exited.is_set()

    def _handshake(self) -> None:
        """The worker's first frame says whether the model loaded."""
        try:
            frame = read_frame(self._responses)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            self.load_error = ModelLoadError(self._exit_text("while loading the model"), "WorkerExited")
        elif not frame[0].get("ok"):
            self.load_error = InferenceError.from_dict(frame[0]["error"])
        self.ready.set()

    def _exit_text(self, when: str) -> str:
        code: int | None = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            code = self.process.poll()
        else:
            time.sleep(0.1)  # let the last stderr lines arrive
        status = f"exit status {code}" if code is not None else "killed or exited"
        tail = "\n".join(list(self.tail)[-10:])
        return f"the model worker {self.name} exited {when} ({status})" + (f":\n{tail}" if tail else "")

    def invoke(
        self, payload: bytes | memoryview, content_type: str, accept: str | None, timeout: float
    ) -> tuple[bytes, str]:
        try:
            write_frame(self._requests, {"content_type": content_type, "accept": accept}, payload)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ModelError(self._exit_text("before the request was sent"), "WorkerExited") from exc
        # In slices: kill() from another thread (a stopped job's pool closing) closes the pipe this waits on,
        # which removes it from the epoll set; if that happens before this thread collects the EOF the kill
        # caused, one long select would sleep out the whole invocation timeout.
        deadline = time.monotonic() + timeout
        ready: list[Any] = []
        while not ready:
            if self._killed:
                raise ModelError(self._exit_text("while serving a request"), "WorkerExited")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                ready = self._selector.select(timeout=min(remaining, _KILL_POLL_SECONDS))
            except (OSError, ValueError) as exc:  # closed by kill() meanwhile
                raise ModelError(self._exit_text("while serving a request"), "WorkerExited") from exc
        if not ready:
            self.kill()
            raise ModelError(
                f"the model did not respond within {timeout:.0f} seconds (InvocationsTimeoutInSeconds)",
                "InvocationTimeout",
                status=408,
            )
        try:
            frame = read_frame(self._responses)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            raise ModelError(self._exit_text("while serving a request"), "WorkerExited")
        meta, body = frame
        if not meta.get("ok"):
            raise InferenceError.from_dict(meta["error"])
        return body, str(meta.get("content_type") or accept or DEFAULT_ACCEPT)

    def kill(self) -> None:
        self._killed = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, 9)
            if self.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
            else:
                deadline = time.monotonic() + 5
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.001)
        for stream in (self._requests, self._responses):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError, ValueError):
            self._selector.close()


def worker_thread_limits(size: int) -> dict[str, str]:
    """Each worker gets an equal share of the cores: N single-threaded workers, not N x cores threads."""
    share = str(max(1, (os.cpu_count() or 1) // max(1, size)))
    return dict.fromkeys(THREAD_ENV, share)


class ModelWorkerPool:
    """N worker processes serving one prepared model; ``invoke`` uses whichever is free.

    ``start`` returns at once (workers load the model in parallel with whatever the caller does
    next, e.g. downloading input); ``wait_ready`` or the first ``invoke`` waits for them. A
    worker that dies is replaced on the next invoke. ``close`` kills every process group.
    """

    def __init__(
        self,
        model: PreparedModel,
        size: int = 1,
        *,
        log_line: Callable[[str], None] | None = None,
        base_env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 300.0,
        invocation_timeout: float = 600.0,
        name: str = "model",
        nice: int = 0,
        pipe_bytes: int = 0,
        own_session: bool = False,
    ) -> None:
        self.model = model
        self.pipe_bytes = pipe_bytes  # pipe buffer size for MB payloads (batch transform); 0: the system's
        # A session per worker (batch transform, as before); endpoint workers share one, so that a
        # shadow's nice value weighs against production's (see model_worker._lower_priority).
        self.own_session = own_session
        # Process priority: workers add this to their nice value (os.nice) before loading the model,
        # e.g. a shadow variant's, so their CPU time never competes with production's.
        self.nice = max(0, nice)
        self.size = max(1, size)
        self.startup_timeout = startup_timeout
        self.invocation_timeout = invocation_timeout
        self.name = name
        self._log_line = log_line or (lambda _line: None)
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        for key, value in worker_thread_limits(self.size).items():
            env.setdefault(key, value)
        env.update(base_env or {})
        env.update(model.environment)
        env.update(extra_env or {})
        env.update(
            {
                "SM_MODEL_DIR": str(model.model_dir),
                "SHEPHERD_MODEL_DIR": str(model.model_dir),
                "SHEPHERD_SERVING_FRAMEWORK": model.framework,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        self._env = env
        self._cwd = model.code_dir if model.code_dir and model.code_dir.is_dir() else model.model_dir
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._spawned = 0

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            self._spawned += 1
            worker = _Worker(
                f"{self.name}-{self._spawned}",
                self._env,
                self._cwd,
                self._log_line,
                nice=self.nice,
                pipe_bytes=self.pipe_bytes,
                own_session=self.own_session,
            )
            self._all.append(worker)
        return worker

    def start(self) -> ModelWorkerPool:
        for _ in range(self.size):
            self._idle.put(self._spawn())
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every worker loaded the model; ModelLoadError if one could not."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            self._await(worker, deadline)

    def _await(self, worker: _Worker, deadline: float) -> None:
        # In slices: a pool closed meanwhile (a stopped transform job) must not leave a request waiting out the
        # whole startup timeout for a worker that was killed while it loaded the model.
        while not worker.ready.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            if time.monotonic() >= deadline:
                worker.kill()
                raise ModelLoadError(
                    f"the model did not load within {self.startup_timeout:.0f} seconds", "ModelLoadTimeout"
                )
        if worker.load_error is not None:
            raise worker.load_error

    def invoke(self, payload: bytes | memoryview, content_type: str, accept: str | None = None) -> tuple[bytes, str]:
        if self._closed:
            raise InferenceError("the model worker pool is closed", "PoolClosed")
        worker = self._idle.get()
        answered = False
        try:
            if self._closed:
                raise InferenceError("the model worker pool is closed", "PoolClosed")
            if worker.known_dead() and worker.ready.is_set() and worker.load_error is None:
                worker = self._replace(worker)
            self._await(worker, time.monotonic() + self.startup_timeout)
            response = worker.invoke(payload, content_type, accept, self.invocation_timeout)
            answered = True
            return response
        finally:
            # A worker that answered is alive; one that did not may have died with the request.
            if not answered and not worker.alive() and worker.load_error is None and not self._closed:
                with contextlib.suppress(InferenceError):
                    worker = self._replace(worker)
            self._idle.put(worker)

    def _replace(self, dead: _Worker) -> _Worker:
        dead.kill()
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
        self._log_line(f"model worker {dead.name} exited; starting a new one")
        return self._spawn()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all if w.alive()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), []
        for worker in workers:
            worker.kill()

    def __enter__(self) -> ModelWorkerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
