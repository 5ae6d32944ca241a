"""Batch transform, run the way SageMaker's batch agent runs it, against model worker processes.

Each input object is cut into requests (transform_input), sent up to MaxConcurrentTransforms at a time to as many
workers, and the responses written in input order to ``<S3OutputPath>/<key relative to the prefix>.out``
(transform_s3), joined and filtered record by record where DataProcessing asks (transform_records). The download, the
workers and the multipart upload overlap: a producer thread reads and submits, a consumer writes in order, bounded in
flight. A request the model fails fails the job, naming the object, as SageMaker's data log does; as on SageMaker, that
object gets no output and the job goes on with the other objects, whose outputs are written ("If an input file
contains a bad record, the transform job doesn't create an output file for that input file ... When your dataset has
multiple input files, a transform job continues to process input files even if it fails to process one. The processed
files still generate useable results": https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import queue
import secrets
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localcloud.iam import container_environment
from localcloud.sagemaker.inference import (
    CSV,
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
from localcloud.sagemaker.transform_input import Batch, InputSplitter
from localcloud.sagemaker.transform_records import (
    JobFailed,
    apply_jsonpath,
    compile_jsonpath,
    joined_record,
    split_response,
)
from localcloud.sagemaker.transform_s3 import MB, InProcessS3, InputObject, ModelS3, S3Writer, serves_s3_in_process

log = logging.getLogger("shepherd.local.sagemaker")

LOG_GROUP = "/aws/sagemaker/TransformJobs"
PIPE_BYTES = 1 * MB  # the workers' request and response pipes (Linux's default limit for a user)
DEFAULT_INVOCATION_TIMEOUT = 600.0
FAILURE_REASON_MAX = 1024


@dataclass
class _Begin:
    source: InputObject


@dataclass
class _Done:
    source: InputObject


@dataclass
class _Sent:
    source: InputObject
    batch: Batch
    future: Future[tuple[bytes, str]]


_Item = _Begin | _Done | _Sent


def run_transform_job(job: Job, ctx: RunnerContext) -> None:
    TransformRun(job, ctx).run()


class TransformRun(InputSplitter):
    """One transform job, from InProgress to Completed / Failed / Stopped."""

    def __init__(self, job: Job, ctx: RunnerContext) -> None:
        super().__init__(
            job.request, InProcessS3(getattr(ctx, "allows_s3", None)) if serves_s3_in_process(ctx) else None
        )
        self.job = job
        self.ctx = ctx
        self.output = job.request["TransformOutput"]
        self.accept: str | None = self.output.get("Accept")
        self.assemble = self.output.get("AssembleWith") or "None"
        instance = "i-0" + secrets.token_hex(8)
        self.stream = f"{job.name}/{instance}-{int(time.time())}"
        self.data_stream = f"{self.stream}/data-log"
        self.failure: str | None = None
        self._failure_lock = threading.Lock()
        # Objects a request failed in: no output for them, and the job fails once the others are done.
        self.failed_objects: set[str] = set()
        self.object_failure: str | None = None
        self.pool: ModelWorkerPool | None = None

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

    def object_failed(self, source: InputObject, reason: str) -> None:
        """An object's record failed: the object gets no output; the first such reason is the job's FailureReason."""
        with self._failure_lock:
            self.failed_objects.add(source.name)
            if self.object_failure is None:
                self.object_failure = reason[:FAILURE_REASON_MAX]

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
                    if source.name in self.failed_objects:
                        break  # a record of it failed: the rest of the object is not sent
                    if not self._acquire(in_flight):
                        break
                    future = executor.submit(pool.invoke, batch.body, self.content_type, self.accept)
                    future.add_done_callback(lambda _f: in_flight.release())
                    items.put(_Sent(source, batch, future))
                if self.failure or self.stopping:
                    break
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
        if self.object_failure is not None:
            self.fail(self.object_failure)  # the job ends Failed, after every other object's output

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
                    if item.source.name in self.failed_objects:
                        writer.abort()  # no output for an object a record failed in
                    else:
                        writer.close()
                    writer = None
                elif item.source.name in self.failed_objects:
                    with contextlib.suppress(Exception):
                        item.future.result()  # its later requests: waited for, not written
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
        reason = f"{kind}: See job logs for more information. {source.name}: {headline}. Message: {message.strip()}"
        self.object_failed(source, reason)

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
                joined = joined_record(source_value, output_value, self.codec.csv)
            else:
                joined = output_value
            try:
                selected = apply_jsonpath(self.output_filter, joined) if self.output_filter else joined
            except ValueError as exc:
                raise JobFailed(f"ClientError: OutputFilter cannot be applied to a joined record: {exc}") from exc
            lines.append(self.codec.dump(selected))
        separator = "\n" if self.assemble == "Line" else ""
        return (separator.join(lines) + separator).encode("utf-8")


__all__ = [
    "InputObject",
    "JobFailed",
    "TransformRun",
    "apply_jsonpath",
    "compile_jsonpath",
    "run_transform_job",
    "split_response",
]
