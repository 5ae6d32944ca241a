"""Batch transform, run the way SageMaker's batch agent runs it, against model worker processes.

For each input object (S3Prefix listing or ManifestFile), the agent streams the object from
S3, splits it (SplitType Line) into records, packs them into requests (MultiRecord: as many
whole lines as fit in MaxPayloadInMB; SingleRecord: one each), sends up to
MaxConcurrentTransforms requests at a time to as many model worker processes, and writes the
responses in input order to ``<S3OutputPath>/<key relative to the prefix>.out`` (AssembleWith
Line: a newline after each response that lacks one). DataProcessing's InputFilter / JoinSource
/ OutputFilter (a JSONPath subset) work record by record on CSV and JSON input.

Why it is fast: MultiRecord payloads are cut at the last newline before the size limit with
``bytes.rfind`` (no per-record Python), decoded in the workers by pandas' C parser, encoded by
one ``repr`` join; the download, N workers and the multipart upload of the output overlap (a
producer thread reads and submits, a consumer thread writes in order, bounded in flight).

A request the model fails fails the job, naming the object, as SageMaker's data log does
("<bucket>/<key>: Bad HTTP status received from algorithm: 500", then the message).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import queue
import re
import secrets
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localcloud.iam import container_environment
from localcloud.moto.s3 import DirectClient
from localcloud.sagemaker.inference import (
    CSV,
    JSON,
    InferenceError,
    ModelLoadError,
    UnsupportedImage,
    media_type,
    serving_framework,
)
from localcloud.sagemaker.jobs import Job, RunnerContext, utcnow
from localcloud.sagemaker.model_artifacts import prepare_model, split_s3_uri
from localcloud.sagemaker.model_worker import isolation_environment
from localcloud.sagemaker.model_worker_pool import ModelWorkerPool

log = logging.getLogger("shepherd.local.sagemaker")

LOG_GROUP = "/aws/sagemaker/TransformJobs"
MB = 1024 * 1024
READ_CHUNK = 1 * MB
MIN_SHARED_PAYLOAD = 1 * MB  # an object this small is one request; requests of at least this, if it can
SHARES_PER_WORKER = 2  # requests per worker an object below MaxPayloadInMB x workers is cut into
PIPE_BYTES = 1 * MB  # the workers' request and response pipes (Linux's default limit for a user)
PART_SIZE = 8 * MB  # S3 multipart parts (>= 5 MB but the last)
DEFAULT_INVOCATION_TIMEOUT = 600.0
JSON_TYPES = {JSON, "application/jsonlines", "application/json-lines", "application/x-jsonlines"}
FAILURE_REASON_MAX = 1024


class JobFailed(Exception):
    """Ends the job as Failed with this FailureReason (already worded as SageMaker words it)."""


# ---------------------------------------------------------------------------------------------- JSONPath subset


_STEP = re.compile(r"\.(?P<name>[A-Za-z_][\w-]*|\*)|\[(?P<bracket>[^\]]*)\]")


def compile_jsonpath(expression: str) -> list[tuple[str, Any]]:
    """The operators SageMaker documents for DataProcessing: $, .name, ['a','b'], [*], [i,j], [a:b].

    Raises ValueError on anything else, so a filter never silently selects the wrong thing.
    """
    expr = expression.strip()
    if not expr.startswith("$"):
        raise ValueError(f"JSONPath {expression!r} must start with $")
    steps: list[tuple[str, Any]] = []
    position = 1
    while position < len(expr):
        match = _STEP.match(expr, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {expression!r} at {expr[position:]!r}")
        position = match.end()
        if match["name"] is not None:
            steps.append(("all", None) if match["name"] == "*" else ("name", match["name"]))
            continue
        inside = match["bracket"].strip()
        if inside == "*":
            steps.append(("all", None))
        elif inside[:1] in "'\"":
            names = [part.strip()[1:-1] for part in inside.split(",")]
            steps.append(("names", names))
        else:
            items: list[int | slice] = []
            for raw in inside.split(","):
                part = raw.strip()
                if ":" in part:
                    start, _, end = part.partition(":")
                    items.append(slice(int(start) if start.strip() else None, int(end) if end.strip() else None))
                else:
                    items.append(int(part))
            if not items:
                raise ValueError(f"empty brackets in JSONPath {expression!r}")
            steps.append(("select", items))
    return steps


def apply_jsonpath(steps: list[tuple[str, Any]], value: Any) -> Any:
    for kind, arg in steps:
        if kind == "name":
            if not isinstance(value, dict) or arg not in value:
                raise ValueError(f"the record has no attribute {arg!r}")
            value = value[arg]
        elif kind == "names":
            if not isinstance(value, dict):
                raise ValueError(f"the record is not a JSON object, cannot select {arg}")
            missing = [n for n in arg if n not in value]
            if missing:
                raise ValueError(f"the record has no attribute {missing[0]!r}")
            value = value[arg[0]] if len(arg) == 1 else {n: value[n] for n in arg}
        elif kind == "all":
            value = list(value.values()) if isinstance(value, dict) else value
        else:
            if not isinstance(value, list):
                raise ValueError("the record is not an array, cannot select indexes")
            if len(arg) == 1 and isinstance(arg[0], int):
                index = arg[0]
                if not -len(value) <= index < len(value):
                    raise ValueError(f"index {index} is outside the record's {len(value)} values")
                value = value[index]
                continue
            selected: list[Any] = []
            for item in arg:
                if isinstance(item, slice):
                    selected.extend(value[item])
                else:
                    if not -len(value) <= item < len(value):
                        raise ValueError(f"index {item} is outside the record's {len(value)} values")
                    selected.append(value[item])
            value = selected
    return value


# ---------------------------------------------------------------------------------------------- records


class RecordCodec:
    """CSV or JSON records: parse a line into a JSON value for JSONPath, and write it back."""

    def __init__(self, content_type: str | None) -> None:
        kind = media_type(content_type)
        self.csv = kind == CSV
        self.supported = self.csv or kind in JSON_TYPES

    def parse(self, line: str) -> Any:
        if self.csv:
            return next(csv.reader([line]), [])
        return json.loads(line)

    def dump(self, value: Any) -> str:
        if self.csv:
            fields = value if isinstance(value, list) else [value]
            stream = io.StringIO()
            csv.writer(stream, lineterminator="").writerow(
                [json.dumps(f, separators=(",", ":")) if isinstance(f, dict | list) else f for f in fields]
            )
            return stream.getvalue()
        return json.dumps(value, separators=(",", ":"))


def split_response(body: bytes, count: int, accept: str) -> list[str]:
    """One output per request record: a JSON array of `count` items, else `count` lines."""
    text = body.decode("utf-8")
    if count == 1:
        return [text.rstrip("\n")]
    if media_type(accept) in JSON_TYPES:
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            if isinstance(parsed, list) and len(parsed) == count:
                return [json.dumps(item, separators=(",", ":")) for item in parsed]
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    if len(lines) != count:
        raise JobFailed(
            f"ClientError: the model returned {len(lines)} records for a request of {count} records, so the "
            "output cannot be joined with the input (JoinSource/OutputFilter need one output per record)"
        )
    return lines


# ---------------------------------------------------------------------------------------------- S3 I/O


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # the output is <S3OutputPath>/<relative>.out

    @property
    def name(self) -> str:
        return f"{self.bucket}/{self.key}"


class InProcessS3:
    """moto's S3 backend itself, for a local cloud that serves S3 from this very process.

    Reading and writing objects through it skips HTTP, signing and chunking (and a core's worth
    of work on the two sides of the local socket), through localcloud.moto.s3.DirectClient. Anything
    it does not reproduce exactly (archived objects, Object Lock buckets, a bucket it cannot see)
    answers None, and the caller uses its boto3 client instead.
    """

    def __init__(self, allow: Callable[[str, str, str], bool] | None = None) -> None:
        # With IAM on, whether the job's role may (action, bucket, key); a refusal goes to the API, which answers it.
        self.allow = allow

    def read(self, bucket: str, key: str) -> bytes | None:
        backend = DirectClient.holding(bucket)
        if backend is None or (self.allow is not None and not self.allow("s3:GetObject", bucket, key)):
            return None
        # None for a missing or archived object: the API's error (NoSuchKey, InvalidObjectState) is the one to report
        return backend.get_object(bucket, key)

    def writable(self, bucket: str, key: str) -> DirectClient | None:
        """The backend to write to, if writing through it gives what PutObject would."""
        backend = DirectClient.holding(bucket)
        if backend is None or (self.allow is not None and not self.allow("s3:PutObject", bucket, key)):
            return None
        return backend if backend.object_lock_enabled(bucket) is False else None


class S3Writer:
    """An output object written as it is produced: multipart once it outgrows one part.

    With ``backend`` (InProcessS3.writable), the same calls go to moto's backend directly.
    """

    def __init__(self, s3: Any, bucket: str, key: str, backend: DirectClient | None = None) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.backend = backend
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            self._flush_part()

    def _flush_part(self) -> None:
        number = len(self._parts) + 1
        if self.backend is not None:
            if self._upload_id is None:
                self._upload_id = self.backend.create_multipart_upload(self.bucket, self.key)
            etag = self.backend.upload_part(self.bucket, self._upload_id, number, bytes(self._buffer))
        else:
            if self._upload_id is None:
                self._upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
            etag = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer)
            )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self._buffer.clear()

    def close(self) -> None:
        if self._upload_id is None:
            if self.backend is not None:
                self.backend.put_object(self.bucket, self.key, bytes(self._buffer))
                return
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._flush_part()
        if self.backend is not None:
            parts = ((part["PartNumber"], part["ETag"]) for part in self._parts)
            self.backend.complete_multipart_upload(self.bucket, self._upload_id, parts)
            return
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                if self.backend is not None:
                    self.backend.abort_multipart_upload(self.bucket, self._upload_id)
                else:
                    self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)


class ModelS3:
    """The S3 client prepare_model uses: downloads through InProcessS3 when it can, else boto3."""

    def __init__(self, client: Callable[[], Any], direct: InProcessS3 | None) -> None:
        self.client, self.direct = client, direct

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        data = self.direct.read(bucket, key) if self.direct is not None else None
        if data is None:
            self.client().download_file(bucket, key, filename)
            return
        with open(filename, "wb") as out:
            out.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class _Batch:
    body: bytes | memoryview  # a view of the object's bytes when packed whole lines
    records: list[bytes] | None  # the raw input records, when DataProcessing needs them back


@dataclass
class _Begin:
    source: InputObject


@dataclass
class _Done:
    source: InputObject


@dataclass
class _Sent:
    source: InputObject
    batch: _Batch
    future: Future[tuple[bytes, str]]


_Item = _Begin | _Done | _Sent


def run_transform_job(job: Job, ctx: RunnerContext) -> None:
    TransformRun(job, ctx).run()


class TransformRun:
    """One transform job, from InProgress to Completed / Failed / Stopped."""

    def __init__(self, job: Job, ctx: RunnerContext) -> None:
        self.job = job
        self.ctx = ctx
        request = job.request
        self.input = request["TransformInput"]
        self.output = request["TransformOutput"]
        self.concurrency = max(1, int(request.get("MaxConcurrentTransforms") or 1))
        mb = int(request.get("MaxPayloadInMB", 6))
        self.max_payload = mb * MB if mb > 0 else None  # 0: no limit (SageMaker: chunked, "streaming")
        self.strategy = request.get("BatchStrategy") or "MultiRecord"
        self.split = self.input.get("SplitType") or "None"
        self.compression = self.input.get("CompressionType") or "None"
        self.content_type = self.input.get("ContentType") or ""
        self.accept: str | None = self.output.get("Accept")
        self.assemble = self.output.get("AssembleWith") or "None"
        processing = request.get("DataProcessing") or {}
        self.config_error: str | None = None
        self.input_filter: list[tuple[str, Any]] = []
        self.output_filter: list[tuple[str, Any]] = []
        try:
            self.input_filter = compile_jsonpath(processing.get("InputFilter") or "$")
            self.output_filter = compile_jsonpath(processing.get("OutputFilter") or "$")
        except ValueError as exc:
            self.config_error = f"ClientError: {exc}"
        self.join = (processing.get("JoinSource") or "None") == "Input"
        self.processing = bool(self.input_filter or self.output_filter or self.join)
        self.codec = RecordCodec(self.content_type)
        instance = "i-0" + secrets.token_hex(8)
        self.stream = f"{job.name}/{instance}-{int(time.time())}"
        self.data_stream = f"{self.stream}/data-log"
        self.failure: str | None = None
        self._failure_lock = threading.Lock()
        self.pool: ModelWorkerPool | None = None
        self._object_size = 0
        self.direct = InProcessS3(getattr(ctx, "allows_s3", None)) if _serves_s3_in_process(ctx) else None

    # ------------------------------------------------------------------ logs and outcome

    def log(self, line: str) -> None:
        self.ctx.log(LOG_GROUP, self.stream, line)

    def data_log(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        for part in line.split("\n"):
            text = f"{stamp}:[sagemaker logs]: {part}"
            self.ctx.log(LOG_GROUP, self.data_stream, text)
            self.ctx.log(LOG_GROUP, self.stream, text)

    def fail(self, reason: str) -> None:
        """The first failure wins; later ones (e.g. requests cut short by it) are noise."""
        with self._failure_lock:
            if self.failure is None:
                self.failure = reason[:FAILURE_REASON_MAX]

    @property
    def stopping(self) -> bool:
        return self.job.stop_requested.is_set()

    def run(self) -> None:
        self.job.update(TransformStartTime=utcnow())
        work_dir = self.ctx.work_root / "transform" / self.job.name
        try:
            self._run(work_dir)
        except JobFailed as exc:
            self.fail(str(exc))
        except ModelLoadError as exc:
            self.log(f"Model load failed: {exc}")
            self.fail(f"AlgorithmError: the model could not be loaded: {exc}")
        except Exception as exc:
            log.exception("transform job %s failed", self.job.name)
            self.fail(f"InternalServerError: {type(exc).__name__}: {exc}")
        finally:
            if self.pool is not None:
                self.pool.close()
            shutil.rmtree(work_dir, ignore_errors=True)
        now = utcnow()
        if self.stopping:  # requests cut short by the stop are no failure of the job
            self.log("Transform job stopped")
            self.job.set_status("Stopped", TransformEndTime=now)
        elif self.failure is not None:
            self.log(f"Transform job failed: {self.failure}")
            self.job.set_status("Failed", FailureReason=self.failure, TransformEndTime=now)
        else:
            self.job.set_status("Completed", TransformEndTime=now)

    def _container(self) -> dict[str, Any]:
        models: dict[str, dict[str, Any]] = getattr(self.ctx, "models", {})
        name = self.job.request["ModelName"]
        model = models.get(name)
        if model is None:
            raise JobFailed(f'ClientError: Could not find model "{name}".')
        containers = model.get("Containers") or ([model["PrimaryContainer"]] if "PrimaryContainer" in model else [])
        if len(containers) != 1:
            raise JobFailed(
                f"ClientError: model {name} has {len(containers)} containers; Shepherd's local SageMaker runs "
                "single-container models only (no inference pipelines)"
            )
        return dict(containers[0])

    def _check_request(self) -> None:
        if self.config_error:
            raise JobFailed(self.config_error)
        if self.split not in ("None", "Line"):
            raise JobFailed(
                f"ClientError: SplitType {self.split} is not supported by Shepherd's local SageMaker (Line or None)"
            )
        if self.compression not in ("None", "Gzip"):
            raise JobFailed(f"ClientError: CompressionType {self.compression} is not supported")
        if self.strategy not in ("MultiRecord", "SingleRecord"):
            raise JobFailed(f"ClientError: BatchStrategy {self.strategy} is not supported")
        if self.processing:
            if self.split != "Line":
                raise JobFailed("ClientError: DataProcessing needs SplitType Line, so that records can be joined")
            if not self.codec.supported:
                raise JobFailed(
                    "ClientError: DataProcessing (InputFilter, JoinSource, OutputFilter) works on CSV (text/csv) and "
                    "JSON (application/json, application/jsonlines) records; "
                    f"ContentType is {self.content_type or 'unset'}"
                )

    def _run(self, work_dir: Any) -> None:
        container = self._container()
        try:
            serving_framework(str(container.get("Image", "")))
        except UnsupportedImage as exc:
            raise JobFailed(f"ClientError: {exc}") from exc
        self._check_request()
        # The input listing (and the S3 client it needs) runs while the model is prepared and its
        # workers start; an input error still comes first, as when the two ran one after the other.
        lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.job.name}-list")
        listing = lister.submit(self._client_and_inputs)
        lister.shutdown(wait=False)
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            prepared = prepare_model(container, ModelS3(lambda: listing.result()[0], self.direct), work_dir, self.log)
        except BaseException:
            listing.result()
            raise
        worker_environment = getattr(self.ctx, "worker_environment", None)
        # The model's container gets the cloud's clock, never its keys (docs/LOCAL_IAM.md).
        base_env = container_environment(worker_environment()) if worker_environment is not None else {}
        extra_env = {str(k): str(v) for k, v in (self.job.request.get("Environment") or {}).items()}
        extra_env.update(
            {
                "SAGEMAKER_BATCH": "true",
                "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(self.job.request.get("MaxPayloadInMB", 6)),
                "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD" if self.strategy == "SingleRecord" else "MULTI_RECORD",
                "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(self.concurrency),
                **isolation_environment(getattr(self.ctx, "models", {}).get(self.job.request["ModelName"], {})),
            }
        )
        timeout = (self.job.request.get("ModelClientConfig") or {}).get(
            "InvocationsTimeoutInSeconds", DEFAULT_INVOCATION_TIMEOUT
        )
        self.pool = ModelWorkerPool(
            prepared,
            self.concurrency,
            log_line=self.log,
            base_env=base_env,
            extra_env=extra_env,
            invocation_timeout=float(timeout),
            name=self.job.name,
            pipe_bytes=PIPE_BYTES,
            own_session=True,
        ).start()
        s3, inputs = listing.result()
        mb = self.job.request.get("MaxPayloadInMB", 6)
        strategy = "SINGLE_RECORD" if self.strategy == "SingleRecord" else "MULTI_RECORD"
        self.data_log(f"MaxConcurrentTransforms={self.concurrency}, MaxPayloadInMB={mb}, BatchStrategy={strategy}")
        self._transform(s3, inputs, self.pool)

    # ------------------------------------------------------------------ inputs

    def _client_and_inputs(self) -> tuple[Any, list[InputObject]]:
        s3 = self.ctx.client("s3")
        return s3, self._inputs(s3)

    def _inputs(self, s3: Any) -> list[InputObject]:
        source = self.input["DataSource"].get("S3DataSource")
        if not source:
            raise JobFailed("ClientError: only S3DataSource inputs are supported by Shepherd's local SageMaker")
        uri = source["S3Uri"]
        kind = source.get("S3DataType", "S3Prefix")
        try:
            bucket, prefix = split_s3_uri(uri)
        except ValueError as exc:
            raise JobFailed(f"ClientError: {exc}") from exc
        if kind == "ManifestFile":
            return self._manifest(s3, uri, bucket, prefix)
        if kind != "S3Prefix":
            raise JobFailed(
                f"ClientError: S3DataType {kind} is not supported for transform jobs (S3Prefix, ManifestFile)"
            )
        # Outputs are named relative to the prefix's "directory": s3://b/in/ and s3://b/in/x.csv both give x.csv.
        base = prefix if prefix.endswith("/") else prefix[: prefix.rfind("/") + 1]
        found: list[InputObject] = []
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        found.append(InputObject(bucket, item["Key"], item["Key"][len(base) :]))
        except Exception as exc:
            raise JobFailed(f"ClientError: cannot list {uri}: {exc}") from exc
        if not found:
            raise JobFailed(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure '
                "that the bucket exists in the selected region, that objects exist under that S3 prefix."
            )
        return found

    def _manifest(self, s3: Any, uri: str, bucket: str, key: str) -> list[InputObject]:
        """[{"prefix": "s3://bucket/prefix/"}, "relative/key1", ...]: outputs keep the relative names."""
        try:
            entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            head = entries[0]["prefix"]
            prefix_bucket, prefix = split_s3_uri(head)
        except Exception as exc:
            raise JobFailed(f"ClientError: cannot read the manifest file {uri}: {exc}") from exc
        found = [InputObject(prefix_bucket, prefix + str(entry), str(entry)) for entry in entries[1:]]
        if not found:
            raise JobFailed(f"ClientError: the manifest file {uri} lists no objects")
        return found

    def _chunks(self, s3: Any, source: InputObject) -> Iterator[bytes]:
        whole = self.direct.read(source.bucket, source.key) if self.direct is not None else None
        if whole is not None:
            yield from self._inflated(whole, source)
            return
        try:
            response = s3.get_object(Bucket=source.bucket, Key=source.key)
            body = response["Body"]
            self._object_size = int(response.get("ContentLength") or 0)
        except Exception as exc:
            raise JobFailed(f"ClientError: cannot read s3://{source.name}: {exc}") from exc
        inflate = zlib.decompressobj(32 + zlib.MAX_WBITS) if self.compression == "Gzip" else None
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                if inflate is None:
                    yield chunk
                else:
                    yield inflate.decompress(chunk)
            if inflate is not None:
                yield inflate.flush()
        except zlib.error as exc:
            raise JobFailed(f"ClientError: {source.name}: cannot decompress (CompressionType Gzip): {exc}") from exc
        finally:
            body.close()

    def _inflated(self, whole: bytes, source: InputObject) -> Iterator[bytes]:
        """An object read whole: itself, or (Gzip) its inflated content in bounded pieces."""
        self._object_size = len(whole)
        if self.compression != "Gzip":
            yield whole
            return
        inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)
        view = memoryview(whole)
        try:
            for start in range(0, len(view), 8 * READ_CHUNK):
                yield inflate.decompress(view[start : start + 8 * READ_CHUNK])
            yield inflate.flush()
        except zlib.error as exc:
            raise JobFailed(f"ClientError: {source.name}: cannot decompress (CompressionType Gzip): {exc}") from exc

    def _too_large(self, source: InputObject) -> JobFailed:
        self.data_log(f"{source.name}: Too much data for max payload size")
        mb = self.job.request.get("MaxPayloadInMB", 6)
        return JobFailed(
            f"ClientError: {source.name}: Too much data for max payload size (a request would exceed "
            f"MaxPayloadInMB={mb}); use SplitType Line or a larger MaxPayloadInMB"
        )

    def _batches(self, s3: Any, source: InputObject) -> Iterator[_Batch]:
        chunks = self._chunks(s3, source)
        if self.split == "None":
            whole = b"".join(chunks)
            if self.max_payload is not None and len(whole) > self.max_payload:
                raise self._too_large(source)
            yield _Batch(whole, None)
            return
        if self.strategy == "SingleRecord" or self.processing:
            yield from self._record_batches(chunks, source)
            return
        yield from self._packed_batches(chunks, source)

    def _packed_batches(self, chunks: Iterator[bytes], source: InputObject) -> Iterator[_Batch]:
        """MultiRecord without DataProcessing: whole lines up to the size limit, cut with find / rfind.

        When the object's size is known, it is cut into a multiple of MaxConcurrentTransforms
        requests of equal size (SHARES_PER_WORKER per worker where requests stay above
        MIN_SHARED_PAYLOAD, more if MaxPayloadInMB needs), so that the workers get as many
        requests each and finish together:
        76 MB at 6 MB a request was 12 full requests and a short one, one worker busy while the
        other idled; it is now 14 of 5.4 MB. Each cut is at the first line end past the share
        (never past the limit). Chunks gather until they exceed the share, are joined once and
        cut; the requests are views of the joined bytes, not copies.
        """
        hard = self.max_payload or 64 * MB
        share = hard
        parts: list[bytes] = []
        size = 0
        first = True
        for chunk in chunks:
            if first:  # the size is known once the GET answered
                first = False
                if self._object_size and self.compression == "None":
                    share = self._share(self._object_size, hard)
            if not chunk:
                continue
            parts.append(chunk)
            size += len(chunk)
            if size <= min(hard, share + READ_CHUNK):  # a little past the share, to find the line end there
                continue
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            rest = yield from self._cut(data, share, hard, source)
            parts, size = ([rest], len(rest)) if rest else ([], 0)
        tail = b"".join(parts)
        rest = yield from self._cut(tail, share, hard, source)
        rest = rest.rstrip(b"\r\n")
        if rest:
            yield _Batch(rest, None)

    def _cut(self, data: bytes, share: int, hard: int, source: InputObject) -> Generator[_Batch, None, bytes]:
        """Requests of about ``share`` bytes of whole lines, as views of ``data``; returns the rest."""
        view = memoryview(data)
        start = 0
        while len(data) - start > share:
            cut = data.find(b"\n", start + share, start + hard + 1) if share < hard else -1
            if cut < 0:
                cut = data.rfind(b"\n", start, start + min(share, hard) + 1)
            if cut < 0:
                raise self._too_large(source)
            if cut > start:
                yield _Batch(view[start:cut], None)
            start = cut + 1
        return data[start:]

    def _share(self, object_size: int, hard: int) -> int:
        """Bytes per request: the object in a multiple of the concurrency of equal requests within the limit."""
        if object_size <= MIN_SHARED_PAYLOAD:
            return hard  # one request: splitting it would cost more than it saves
        pieces = max(
            -(-object_size // hard),
            min(SHARES_PER_WORKER * self.concurrency, object_size // MIN_SHARED_PAYLOAD),
        )
        pieces = -(-pieces // self.concurrency) * self.concurrency
        return min(hard, -(-object_size // pieces))

    def _record_batches(self, chunks: Iterator[bytes], source: InputObject) -> Iterator[_Batch]:
        """Record by record: SingleRecord, or MultiRecord when filters and joins need each record."""
        limit = self.max_payload
        single = self.strategy == "SingleRecord"
        records: list[bytes] = []
        bodies: list[bytes] = []
        size = 0
        for record in _lines(chunks):
            body = self._filter_input(record, source) if self.processing else record
            if limit is not None and len(body) > limit:
                raise self._too_large(source)
            if records and (single or (limit is not None and size + len(body) + 1 > limit)):
                yield _Batch(b"\n".join(bodies), records)
                records, bodies, size = [], [], 0
            records.append(record)
            bodies.append(body)
            size += len(body) + 1
        if records:
            yield _Batch(b"\n".join(bodies), records)

    def _filter_input(self, record: bytes, source: InputObject) -> bytes:
        if not self.input_filter:
            return record
        try:
            value = apply_jsonpath(self.input_filter, self.codec.parse(record.decode("utf-8")))
        except ValueError as exc:
            raise JobFailed(f"ClientError: {source.name}: InputFilter cannot be applied to a record: {exc}") from exc
        return self.codec.dump(value).encode("utf-8")

    # ------------------------------------------------------------------ the pipeline

    def _transform(self, s3: Any, inputs: list[InputObject], pool: ModelWorkerPool) -> None:
        items: queue.Queue[_Item | None] = queue.Queue()
        in_flight = threading.Semaphore(self.concurrency * 2)
        consumer = threading.Thread(target=self._consume, args=(s3, items), name=f"{self.job.name}-out", daemon=True)
        consumer.start()
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{self.job.name}-invoke")
        try:
            for source in inputs:
                if self.failure or self.stopping:
                    break
                items.put(_Begin(source))
                for batch in self._batches(s3, source):
                    if not self._acquire(in_flight):
                        break
                    future = executor.submit(pool.invoke, batch.body, self.content_type, self.accept)
                    future.add_done_callback(lambda _f: in_flight.release())
                    items.put(_Sent(source, batch, future))
                else:
                    items.put(_Done(source))
        except JobFailed as exc:
            self.fail(str(exc))
        finally:
            items.put(None)
            while consumer.is_alive():
                consumer.join(0.1)
                if self.stopping or self.failure:
                    pool.close()  # cut in-flight requests short; the consumer then drains quickly
            executor.shutdown(wait=True, cancel_futures=True)

    def _acquire(self, in_flight: threading.Semaphore) -> bool:
        while not in_flight.acquire(timeout=0.1):
            if self.failure or self.stopping:
                return False
        return not (self.failure or self.stopping)

    def _consume(self, s3: Any, items: queue.Queue[_Item | None]) -> None:
        """Write responses in input order; the first failed request fails the job."""
        writer: S3Writer | None = None
        destination = self.output["S3OutputPath"]
        out_bucket, out_prefix = split_s3_uri(destination)
        out_prefix = out_prefix.rstrip("/")
        while True:
            item = items.get()
            if item is None:
                break
            if self.failure or self.stopping:
                if isinstance(item, _Sent):  # wait for it, so no request outlives the job's workers
                    with contextlib.suppress(Exception):
                        item.future.result()
                continue
            try:
                if isinstance(item, _Begin):
                    key = f"{out_prefix}/{item.source.relative}.out" if out_prefix else f"{item.source.relative}.out"
                    backend = self.direct.writable(out_bucket, key) if self.direct is not None else None
                    writer = S3Writer(s3, out_bucket, key, backend)
                elif isinstance(item, _Done):
                    assert writer is not None
                    writer.close()
                    writer = None
                else:
                    assert writer is not None
                    data = self._response(item)
                    if data is not None:
                        writer.write(data)
            except Exception as exc:
                log.exception("transform job %s: writing the output failed", self.job.name)
                self.fail(f"ClientError: cannot write the output to {destination}: {type(exc).__name__}: {exc}")
        if writer is not None:
            writer.abort()  # an object left open: the job failed or stopped while it was in progress

    def _response(self, item: _Sent) -> bytes | None:
        try:
            body, content_type = item.future.result()
        except ModelLoadError as exc:
            self.fail(f"AlgorithmError: the model could not be loaded: {exc}")
            return None
        except InferenceError as exc:
            if not self.stopping:
                self._request_failed(item.source, exc)
            return None
        if item.batch.records is not None and self.processing:
            try:
                return self._join(item.batch.records, body, content_type)
            except JobFailed as exc:
                self.fail(f"{exc} ({item.source.name})")
                return None
        if self.assemble == "Line" and body and not body.endswith(b"\n"):
            body += b"\n"
        return body

    def _request_failed(self, source: InputObject, exc: InferenceError) -> None:
        """SageMaker's data log lines for a failed request, and the job's FailureReason."""
        status = exc.status
        client_side = 400 <= status < 500
        headline = f"ClientError: {status}" if client_side else f"Bad HTTP status received from algorithm: {status}"
        message = f"{exc.error_type}: {exc.message}" if exc.error_type else exc.message
        self.data_log(f"{source.name}: {headline}\n{source.name}: \n{source.name}: Message:")
        for line in message.split("\n"):
            self.data_log(f"{source.name}: {line}")
        kind = "ClientError" if client_side else "AlgorithmError"
        self.fail(f"{kind}: See job logs for more information. {source.name}: {headline}. Message: {message.strip()}")

    def _join(self, records: list[bytes], body: bytes, content_type: str) -> bytes:
        outputs = split_response(body, len(records), content_type or self.accept or "")
        out_csv = media_type(content_type or self.accept) == CSV
        lines: list[str] = []
        for record, output in zip(records, outputs, strict=True):
            output_value: Any
            if self.codec.csv:
                output_value = next(csv.reader([output]), []) if out_csv else [output]
            else:
                try:
                    output_value = json.loads(output)
                except ValueError:
                    output_value = output
            if self.join:
                source_value = self.codec.parse(record.decode("utf-8"))
                joined = _joined(source_value, output_value, self.codec.csv)
            else:
                joined = output_value
            try:
                selected = apply_jsonpath(self.output_filter, joined) if self.output_filter else joined
            except ValueError as exc:
                raise JobFailed(f"ClientError: OutputFilter cannot be applied to a joined record: {exc}") from exc
            lines.append(self.codec.dump(selected))
        separator = "\n" if self.assemble == "Line" else ""
        return (separator.join(lines) + separator).encode("utf-8")


def _serves_s3_in_process(ctx: RunnerContext) -> bool:
    """Whether this process is the local cloud serving S3 (its moto backends are this process's).

    SHEPHERD_TRANSFORM_S3=api keeps every S3 call on the boto3 client.
    """
    if os.environ.get("SHEPHERD_TRANSFORM_S3", "") == "api":
        return False
    return hasattr(ctx, "worker_environment")  # what the cloud's own contexts lend, and tests' fakes do not


def _joined(source: Any, output: Any, is_csv: bool) -> Any:
    """JoinSource Input: CSV appends the output's values; JSON adds SageMakerOutput (or wraps both)."""
    if is_csv:
        return [*source, *(output if isinstance(output, list) else [output])]
    if isinstance(source, dict):
        return {**source, "SageMakerOutput": output}
    return {"SageMakerInput": source, "SageMakerOutput": output}


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Records of SplitType Line (\\n or \\r\\n); blank lines are no records."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            record = line.rstrip(b"\r")
            if record:
                yield record
    rest = rest.rstrip(b"\r")
    if rest:
        yield rest
