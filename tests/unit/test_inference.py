"""The scikit-learn serving contract: container defaults, user hooks, model preparation, worker pool."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import numpy as np
import pytest
from shepherd.model_archive import SUBMIT_DIRECTORY, repack
from sklearn.linear_model import LinearRegression

from localcloud.sagemaker import inference
from localcloud.sagemaker.inference import (
    ModelError,
    ModelHandler,
    ModelLoadError,
    UnsupportedFormatError,
    UnsupportedImage,
    serving_framework,
)
from localcloud.sagemaker.model_artifacts import PreparedModel, prepare_model
from localcloud.sagemaker.model_worker_pool import ModelWorkerPool
from localcloud.sagemaker.runtime import model_error
from localcloud.sagemaker.transform import InputObject, TransformRun, apply_jsonpath, compile_jsonpath, split_response
from tests.tarballs import tar_gz

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture(scope="module")
def model() -> LinearRegression:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 3))
    return LinearRegression().fit(features, features @ np.array([1.5, -2.0, 0.5]) + 3.0)


def model_dir(tmp_path: Path, model: Any, script: str | None = "sklearn_default") -> Path:
    """A model directory as model.tar.gz unpacks: model.joblib, and code/inference.py if given."""
    directory = tmp_path / "model"
    directory.mkdir()
    joblib.dump(model, directory / "model.joblib")
    if script:
        shutil.copytree(FIXTURES / script, directory / "code")
    return directory


def loaded(tmp_path: Path, model: Any, script: str = "sklearn_default", env: dict[str, str] | None = None):
    handler = ModelHandler()
    handler.load(model_dir(tmp_path, model, script), env or {})
    return handler


def csv_lines(values: np.ndarray) -> list[str]:
    """What the container's csv.writer writes for a 1-D prediction."""
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(np.asarray(values).reshape(-1, 1))
    return stream.getvalue().splitlines()


ROWS = np.array([[0.5, 1.25, -3.0], [2.0, 0.0, 1.0], [-1.5, 4.0, 0.25]])
CSV_BODY = b"0.5,1.25,-3.0\n2.0,0.0,1.0\n-1.5,4.0,0.25\n"


# ---------------------------------------------------------------------------------------------- defaults


def test_default_handlers_decode_csv_to_float32_and_answer_csv_lines(tmp_path, model):
    # Given a script with only model_fn
    handler = loaded(tmp_path, model)
    # When a CSV request asks for CSV
    body, content_type = handler.invoke(CSV_BODY, "text/csv", "text/csv")
    # Then the prediction is model.predict on float32 input, one value per line
    assert content_type == "text/csv"
    assert body.decode().splitlines() == csv_lines(model.predict(ROWS.astype(np.float32)))


def test_default_handlers_json_in_json_out_and_default_accept_is_json(tmp_path, model):
    handler = loaded(tmp_path, model)
    body, content_type = handler.invoke(json.dumps(ROWS.tolist()).encode(), "application/json", None)
    assert content_type == "application/json"
    assert json.loads(body) == model.predict(ROWS.astype(np.float32)).tolist()


def test_default_handlers_npy_round_trip_keeps_the_dtype(tmp_path, model):
    handler = loaded(tmp_path, model)
    buffer = io.BytesIO()
    np.save(buffer, ROWS)
    body, content_type = handler.invoke(buffer.getvalue(), "application/x-npy", "application/x-npy")
    assert content_type == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), model.predict(ROWS))


def test_unsupported_content_type_is_the_containers_415_naming_it(tmp_path, model):
    handler = loaded(tmp_path, model)
    with pytest.raises(UnsupportedFormatError) as raised:
        handler.invoke(b"<rows/>", "application/xml", "text/csv")
    assert raised.value.status == 415
    assert "Content type application/xml is not supported by this framework" in raised.value.message


def test_unsupported_accept_is_a_406_naming_it(tmp_path, model):
    handler = loaded(tmp_path, model)
    with pytest.raises(UnsupportedFormatError) as raised:
        handler.invoke(CSV_BODY, "text/csv", "text/html")
    assert raised.value.status == 406
    assert "text/html" in raised.value.message


# What a client's bad payload gets from the default handlers. The container answers 500 to all of them: the
# sklearn container's Flask worker (sagemaker-containers _transformer.py) turns only its own
# UnsupportedFormatError into 415/406, and the inference toolkit (sagemaker_inference/transformer.py) any
# exception but a BaseInferenceToolkitError into GenericInferenceToolkitError(500); a malformed CSV to a
# scikit-learn endpoint on AWS is "Received server error (500)" (amazon-sagemaker-examples#589).


@pytest.mark.parametrize(
    ("payload", "error_type", "words"),
    [
        (b"1,2,3\n4,5\n", "ClientError", "Error while decoding csv: row 2 has 2 fields where row 1 has 3"),
        (b"1,2,3\n\n4,5,6\n", "ClientError", "row 2 (a blank line) has 0 fields where row 1 has 3"),
        (b"1,abc,3\n", "ValueError", "could not convert string to float"),
        (b"1,2\n3,4\n", "ValueError", "X has 2 features, but LinearRegression is expecting 3 features"),
    ],
)
def test_a_malformed_csv_payload_is_the_containers_500_saying_what_is_wrong(
    tmp_path, model, payload, error_type, words
):
    handler = loaded(tmp_path, model)
    with pytest.raises(ModelError) as raised:
        handler.invoke(payload, "text/csv", "text/csv")
    assert raised.value.status == 500
    assert raised.value.error_type == error_type
    assert words in raised.value.message


def test_a_body_that_is_not_npy_is_named_rather_than_called_pickled_data(tmp_path, model):
    handler = loaded(tmp_path, model)
    with pytest.raises(ModelError) as raised:
        handler.invoke(CSV_BODY, "application/x-npy", "text/csv")
    assert raised.value.status == 500
    assert "the request body is not an .npy file (it begins b'0.5,1.25,-3.0\\n2.'" in raised.value.message
    assert "pickled" not in raised.value.message


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/x-npy"])
def test_an_empty_body_fails_as_in_the_container_and_says_it_was_empty(tmp_path, model, content_type):
    handler = loaded(tmp_path, model)
    with pytest.raises(ModelError) as raised:
        handler.invoke(b"", content_type, "text/csv")
    assert raised.value.status == 500
    assert raised.value.message.endswith("(the request body was empty)")


def test_an_empty_body_a_predict_fn_accepts_is_answered(tmp_path, model):
    # Given a script whose predict_fn answers an empty input: nothing refuses an empty body before it
    directory = model_dir(tmp_path, model, "sklearn_default")
    with (directory / "code" / "inference.py").open("a") as script:
        script.write("\n\ndef predict_fn(data, model):\n    return data if data.size == 0 else model.predict(data)\n")
    handler = ModelHandler()
    handler.load(directory, {})
    assert handler.invoke(b"", "text/csv", "application/json") == (b"[]", "application/json")


def test_a_body_that_is_not_utf8_is_a_model_error_not_a_crash(tmp_path, model):
    handler = loaded(tmp_path, model)
    with pytest.raises(ModelError) as raised:
        handler.invoke(b"\xff\xfe1,2,3", "text/csv", "text/csv")
    assert raised.value.error_type == "UnicodeDecodeError"
    assert raised.value.status == 500


@pytest.mark.parametrize(("status", "kind"), [(400, "client"), (415, "client"), (500, "server"), (503, "server")])
def test_sagemaker_words_a_containers_4xx_as_a_client_error_and_a_5xx_as_a_server_error(status, kind):
    error = model_error("churn", "AllTraffic", status, "bad rows")
    assert (error.status, error.code) == ("424 Failed Dependency", "ModelError")
    assert error.message.startswith(
        f'Received {kind} error ({status}) from primary with message "bad rows". See the log stream '
    )
    assert (
        "(aws logs get-log-events --log-group-name /aws/sagemaker/Endpoints/churn --log-stream-name " in error.message
    )
    assert error.extra["OriginalStatusCode"] == status


def test_csv_fast_path_gives_the_containers_result():
    # Given payloads the fast path takes and ones it leaves to the container's csv.reader path
    cases = [CSV_BODY, b"1,2,3", b"1\n2\n3\n", b'"1","2"\n"3","4"\n', b"1e-5,2.5E3\n-0.0,7\n"]
    for payload in cases:
        reference = inference._csv_container(payload.decode())
        np.testing.assert_array_equal(inference.csv_to_numpy(payload), reference)
    # A single record squeezes to 1-D, as in the container (so model.predict needs a 2-D input_fn)
    assert inference.csv_to_numpy(b"1,2,3").shape == (3,)
    # An empty field is not a number: the container leaves strings, and the float32 cast fails
    with pytest.raises(ValueError):
        inference.default_input_fn("1,,3\n4,5,6", "text/csv")


@pytest.mark.parametrize(
    "prediction",
    [
        np.array([0.1, -2.5, 1e-7, 3e20, 12.0]),
        np.array([1, 0, 2], dtype=np.int64),
        np.array([[0.25, 0.75], [1.0, 0.0]]),
        np.array([0.1, 0.2], dtype=np.float32),
        np.array(["a", "b,c"]),
    ],
)
def test_csv_encoding_matches_the_containers_csv_writer(prediction):
    array = prediction.reshape(-1, 1) if prediction.ndim == 1 else prediction
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True).writerows(array)
    assert inference.array_to_csv(prediction) == stream.getvalue()


# ---------------------------------------------------------------------------------------------- user hooks


def test_user_hooks_override_every_default(tmp_path, model):
    handler = loaded(tmp_path, model, "sklearn_custom")
    request = json.dumps({"instances": ROWS.tolist()}).encode()
    body, content_type = handler.invoke(request, "application/json", "application/json")
    assert content_type == "application/json"
    assert json.loads(body)["predictions"] == pytest.approx(model.predict(ROWS).tolist())
    # one CSV record stays 2-D through the user's input_fn
    body, content_type = handler.invoke(b"0.5,1.25,-3.0", "text/csv", "text/csv")
    assert content_type == "text/csv"
    assert body.decode() == f"{model.predict(ROWS[:1])[0]:.6f}\n"


def test_predict_errors_come_back_with_the_scripts_message_and_traceback(tmp_path, model):
    handler = loaded(tmp_path, model, "sklearn_custom")
    with pytest.raises(ModelError) as raised:
        handler.invoke(b"1,2,999\n", "text/csv", "text/csv")
    assert raised.value.error_type == "ValueError"
    assert raised.value.message == "feature value 999 is out of range"
    assert "predict_fn" in raised.value.stack_trace


def test_a_script_without_model_fn_fails_to_load_clearly(tmp_path, model):
    handler = ModelHandler()
    with pytest.raises(ModelLoadError) as raised:
        handler.load(model_dir(tmp_path, model, "no_model_fn"), {})
    assert "Please provide a model_fn implementation" in raised.value.message
    assert "inference.py defines no model_fn" in raised.value.message


def test_no_script_at_all_fails_to_load_clearly(tmp_path, model):
    with pytest.raises(ModelLoadError) as raised:
        ModelHandler().load(model_dir(tmp_path, model, None), {})
    assert "no inference script was found" in raised.value.message


def test_sagemaker_program_and_an_opt_ml_model_submit_directory(tmp_path, model):
    # Given the SDK's repacked layout: the script under code/ and the container path in the environment
    directory = model_dir(tmp_path, model, None)
    shutil.copytree(FIXTURES / "sklearn_custom", directory / "code")
    (directory / "code" / "inference.py").rename(directory / "code" / "serve.py")
    env = {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    handler = ModelHandler()
    handler.load(directory, env)
    assert handler.script == directory / "code" / "serve.py"


def test_a_missing_sagemaker_program_is_named(tmp_path, model):
    with pytest.raises(ModelLoadError, match=r"SAGEMAKER_PROGRAM absent\.py was not found"):
        ModelHandler().load(model_dir(tmp_path, model, "sklearn_default"), {"SAGEMAKER_PROGRAM": "absent.py"})


# ---------------------------------------------------------------------------------------------- preparation


class FakeS3:
    """download_file and list_objects_v2 over a dict, enough for prepare_model."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        Path(filename).write_bytes(self.objects[f"{bucket}/{key}"])

    def get_paginator(self, _name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                keys = [k.split("/", 1)[1] for k in objects if k.startswith(f"{Bucket}/{Prefix}")]
                return [{"Contents": [{"Key": key} for key in keys]}]

        return Paginator()


def joblib_bytes(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def test_prepare_model_downloads_the_archive_and_an_s3_source_dir(tmp_path, model):
    script = (FIXTURES / "sklearn_custom" / "inference.py").read_bytes()
    s3 = FakeS3(
        {
            "b/model/model.tar.gz": tar_gz({"model.joblib": joblib_bytes(model)}),
            "b/code/sourcedir.tar.gz": tar_gz({"serve.py": script, "requirements.txt": b"numpy\n"}),
        }
    )
    container = {
        "Image": SKLEARN_IMAGE,
        "ModelDataUrl": "s3://b/model/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/code/sourcedir.tar.gz"},
    }
    lines: list[str] = []
    prepared = prepare_model(container, s3, tmp_path / "work", lines.append)
    assert (prepared.model_dir / "model.joblib").is_file()
    assert prepared.environment["SAGEMAKER_SUBMIT_DIRECTORY"] == f"file://{tmp_path / 'work' / 'code'}"
    assert any("requirements.txt" in line and "does not install" in line for line in lines)
    handler = ModelHandler()
    handler.load(prepared.model_dir, prepared.environment)
    assert handler.invoke(b"1,2,3", "text/csv", "text/csv")[0]


def test_prepare_model_serves_a_package_repacked_by_register_model(tmp_path, model):
    # Given the archive Shepherd registers: the trained model plus the run's source dir under code/, served
    # from /opt/ml/model/code as an isolated container must be (shepherd.model_archive, like the SDK's repack)
    script = (FIXTURES / "sklearn_custom" / "inference.py").read_bytes()
    repacked = io.BytesIO()
    repack(
        io.BytesIO(tar_gz({"model.joblib": joblib_bytes(model)})),
        io.BytesIO(tar_gz({"serve.py": script, "train.py": b"print('train')\n"})),
        repacked,
        program="serve.py",
    )
    container = {
        "Image": SKLEARN_IMAGE,
        "ModelDataUrl": "s3://b/artifacts/m/run/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": SUBMIT_DIRECTORY},
    }
    # When the local SageMaker prepares and loads it
    prepared = prepare_model(container, FakeS3({"b/artifacts/m/run/model.tar.gz": repacked.getvalue()}), tmp_path)
    handler = ModelHandler()
    handler.load(prepared.model_dir, prepared.environment)
    # Then the script comes from inside the model, and it answers
    assert handler.script == prepared.model_dir / "code" / "serve.py"
    assert handler.invoke(b"1,2,3", "text/csv", "text/csv")[0]


def test_prepare_model_from_an_s3_prefix_source_dir(tmp_path, model):
    s3 = FakeS3(
        {
            "b/model.tar.gz": tar_gz({"model.joblib": joblib_bytes(model)}),
            "b/src/inference.py": (FIXTURES / "sklearn_default" / "inference.py").read_bytes(),
        }
    )
    container = {
        "Image": SKLEARN_IMAGE,
        "ModelDataUrl": "s3://b/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/src"},
    }
    prepared = prepare_model(container, s3, tmp_path / "work")
    assert (tmp_path / "work" / "code" / "inference.py").is_file()
    assert prepared.code_dir == tmp_path / "work" / "code"


@pytest.mark.parametrize(
    ("members", "symlinks"),
    [({"../escaped.txt": b"owned"}, None), ({"/tmp/escaped.txt": b"owned"}, None), ({}, {"link": "/etc"})],
)
def test_a_hostile_model_archive_is_refused_and_nothing_escapes(tmp_path, members, symlinks):
    s3 = FakeS3({"b/model.tar.gz": tar_gz({"model.joblib": b"x", **members}, symlinks)})
    container = {"Image": SKLEARN_IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}
    with pytest.raises(ModelLoadError, match=r"could not extract s3://b/model\.tar\.gz: unsafe archive"):
        prepare_model(container, s3, tmp_path / "work")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "work" / "model" / "model.joblib").exists()


def test_only_scikit_learn_images_are_served_locally():
    assert serving_framework(SKLEARN_IMAGE) == "sklearn"
    assert serving_framework("246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-scikit-learn:1.4-2") == "sklearn"
    with pytest.raises(UnsupportedImage, match="XGBoost"):
        serving_framework("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    with pytest.raises(UnsupportedImage, match="sagemaker-scikit-learn framework images only"):
        serving_framework("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own:latest")


# ---------------------------------------------------------------------------------------------- worker pool


def prepared(tmp_path: Path, model: Any, script: str) -> PreparedModel:
    return PreparedModel(model_dir(tmp_path, model, script), {}, "sklearn", SKLEARN_IMAGE)


def test_worker_pool_serves_from_separate_processes_and_kills_them_on_close(tmp_path, model):
    lines: list[str] = []
    pool = ModelWorkerPool(prepared(tmp_path, model, "sklearn_custom"), 2, log_line=lines.append).start()
    try:
        pool.wait_ready(60)
        pids = pool.pids
        assert len(set(pids)) == 2
        body, _ = pool.invoke(CSV_BODY, "text/csv", "text/csv")
        assert [float(v) for v in body.decode().split()] == pytest.approx(model.predict(ROWS).tolist(), abs=1e-5)
        with pytest.raises(ModelError) as raised:
            pool.invoke(b"1,2,999", "text/csv", "text/csv")
        assert (raised.value.error_type, raised.value.message) == ("ValueError", "feature value 999 is out of range")
        assert "predict_fn" in raised.value.stack_trace
    finally:
        pool.close()
    assert not pool.pids
    assert any("loading the model from" in line for line in lines)  # the script's print reached the log


def test_worker_pool_reports_a_load_failure(tmp_path, model):
    with (
        ModelWorkerPool(prepared(tmp_path, model, "no_model_fn"), 1) as pool,
        pytest.raises(ModelLoadError, match="Please provide a model_fn implementation"),
    ):
        pool.wait_ready(60)


def test_worker_pool_replaces_a_worker_that_died(tmp_path, model):
    with ModelWorkerPool(prepared(tmp_path, model, "sklearn_default"), 1) as pool:
        pool.wait_ready(60)
        pid = pool.pids[0]
        os.kill(pid, 9)
        time.sleep(0.2)
        body, _ = pool.invoke(CSV_BODY, "text/csv", "text/csv")  # a fresh worker answers
        assert len(body.decode().splitlines()) == 3
        assert pool.pids
        assert pool.pids[0] != pid


def test_a_request_in_flight_ends_promptly_when_its_pool_closes_even_if_the_eof_is_missed(tmp_path, model):
    # A stopped transform job closes its pool while requests wait on their workers. If kill() closes a
    # worker's pipe before the waiting thread collected the EOF of the kill (a loaded machine), the pipe
    # has left the epoll set, and a single select slept out the whole invocation timeout (a stop took
    # minutes). Here the pipe is closed while the worker is still busy, the worst case of that race.
    pool = ModelWorkerPool(
        prepared(tmp_path, model, "sklearn_custom"),
        1,
        extra_env={"SHEPHERD_TEST_PREDICT_DELAY": "30"},
        invocation_timeout=60,
    ).start()
    pool.wait_ready(60)
    (worker,) = pool._all
    pid = worker.pid
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            pool.invoke(CSV_BODY, "text/csv")
        except ModelError as exc:
            outcome.append(exc)

    request = threading.Thread(target=send)
    try:
        request.start()
        time.sleep(0.5)  # the request is in the worker's predict_fn
        worker.alive = lambda: False  # kill() skips the signal and closes the pipes at once
        started = time.monotonic()
        pool.close()
        request.join(10)
        assert not request.is_alive(), "the request still waits on the closed worker"
        assert time.monotonic() - started < 5
        assert len(outcome) == 1, "the request should fail as its worker is gone"
        assert "exited while serving a request" in str(outcome[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)
        request.join(60)


# ---------------------------------------------------------------------------------------------- JSONPath subset


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("$", ["id7", "1.0", "2.0"], ["id7", "1.0", "2.0"]),
        ("$[1:]", ["id7", "1.0", "2.0"], ["1.0", "2.0"]),
        ("$[0,2]", ["id7", "1.0", "2.0"], ["id7", "2.0"]),
        ("$[0,-1]", ["id7", "1.0", "2.0", "0.9"], ["id7", "0.9"]),
        ("$[0,2:]", ["a", "b", "c", "d"], ["a", "c", "d"]),
        ("$[1]", ["a", "b"], "b"),
        ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),
        ("$.features[1:]", {"features": [1, 2, 3]}, [2, 3]),
        ("$['id','SageMakerOutput']", {"id": 1, "x": 2, "SageMakerOutput": 3}, {"id": 1, "SageMakerOutput": 3}),
    ],
)
def test_jsonpath_subset(expression, value, expected):
    assert apply_jsonpath(compile_jsonpath(expression), value) == expected


def test_jsonpath_refuses_what_it_does_not_support_and_out_of_range_indexes():
    with pytest.raises(ValueError, match="unsupported JSONPath"):
        compile_jsonpath("$..features")
    with pytest.raises(ValueError, match="outside"):
        apply_jsonpath(compile_jsonpath("$[5]"), ["a"])


def test_split_response_by_json_array_or_lines():
    assert split_response(b"[1.5, 2.5]", 2, "application/json") == ["1.5", "2.5"]
    assert split_response(b"1.5\n2.5\n", 2, "text/csv") == ["1.5", "2.5"]
    assert split_response(b"[1.5]", 1, "application/json") == ["[1.5]"]


# ---------------------------------------------------------------------------------------------- transform batches


def _packed(data: bytes, workers: int, payload_mb: int) -> list[bytes]:
    request = {
        "MaxConcurrentTransforms": workers,
        "MaxPayloadInMB": payload_mb,
        "TransformInput": {"SplitType": "Line", "ContentType": "text/csv"},
        "TransformOutput": {"S3OutputPath": "s3://bucket/out"},
    }
    run = TransformRun(SimpleNamespace(name="batches", request=request), SimpleNamespace())  # type: ignore[arg-type]
    run._object_size = len(data)
    return [bytes(b.body) for b in run._packed_batches(iter([data]), InputObject("bucket", "in.csv", "in.csv"))]


@pytest.mark.parametrize(("rows", "workers", "payload_mb"), [(1_000_000, 2, 6), (300_000, 3, 2), (50_000, 2, 6)])
def test_multirecord_requests_are_whole_lines_shared_evenly_by_the_workers(rows, workers, payload_mb):
    line = b"0.123456,-1.234567,2.345678,0.000001\n"
    data = line * rows
    batches = _packed(data, workers, payload_mb)
    assert b"\n".join(batches) + b"\n" == data  # every line once, in order, none cut
    assert all(len(b) <= payload_mb * 1024 * 1024 for b in batches)
    assert len(batches) % workers == 0  # each worker gets as many requests
    assert max(map(len, batches)) - min(map(len, batches)) <= len(batches) * len(line)  # of equal size
