"""Batch transform's input: the objects a job names (S3Prefix or ManifestFile), each read (inflated if Gzip) and cut
into requests: whole lines packed up to MaxPayloadInMB, or record by record when DataProcessing needs each record."""

from __future__ import annotations

import json
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from localcloud.sagemaker.model_artifacts import split_s3_uri
from localcloud.sagemaker.transform_records import (
    JobFailed,
    RecordCodec,
    apply_jsonpath,
    compile_jsonpath,
    line_records,
)
from localcloud.sagemaker.transform_s3 import MB, InProcessS3, InputObject

READ_CHUNK = 1 * MB
MIN_SHARED_PAYLOAD = 1 * MB  # an object this small is one request; requests of at least this, if it can
SHARES_PER_WORKER = 2  # requests per worker an object below MaxPayloadInMB x workers is cut into


@dataclass
class Batch:
    body: bytes | memoryview  # a view of the object's bytes when packed whole lines
    records: list[bytes] | None  # the raw input records, when DataProcessing needs them back


class InputSplitter:
    """A transform job's input side: the objects it names, each read and cut into requests (TransformRun's base)."""

    def __init__(self, request: Mapping[str, Any], direct: InProcessS3 | None) -> None:
        self.input = request["TransformInput"]
        self.concurrency = max(1, int(request.get("MaxConcurrentTransforms") or 1))
        self.payload_mb = request.get("MaxPayloadInMB", 6)
        mb = int(self.payload_mb)
        self.max_payload = mb * MB if mb > 0 else None  # 0: no limit (SageMaker: chunked, "streaming")
        self.strategy = request.get("BatchStrategy") or "MultiRecord"
        self.split = self.input.get("SplitType") or "None"
        self.compression = self.input.get("CompressionType") or "None"
        self.content_type = self.input.get("ContentType") or ""
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
        self.direct = direct
        self._object_size = 0

    def data_log(self, line: str) -> None:
        """A line of the job's data log; the run writes it."""
        raise NotImplementedError

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
        mb = self.payload_mb
        return JobFailed(
            f"ClientError: {source.name}: Too much data for max payload size (a request would exceed "
            f"MaxPayloadInMB={mb}); use SplitType Line or a larger MaxPayloadInMB"
        )

    def _batches(self, s3: Any, source: InputObject) -> Iterator[Batch]:
        chunks = self._chunks(s3, source)
        if self.split == "None":
            whole = b"".join(chunks)
            if self.max_payload is not None and len(whole) > self.max_payload:
                raise self._too_large(source)
            yield Batch(whole, None)
            return
        if self.strategy == "SingleRecord" or self.processing:
            yield from self._record_batches(chunks, source)
            return
        yield from self._packed_batches(chunks, source)

    def _packed_batches(self, chunks: Iterator[bytes], source: InputObject) -> Iterator[Batch]:
        """MultiRecord without DataProcessing: whole lines up to the size limit, cut with find / rfind.

        An object of known size is cut into a multiple of MaxConcurrentTransforms requests of equal size
        (SHARES_PER_WORKER per worker while requests stay above MIN_SHARED_PAYLOAD), each cut at the first line
        end past its share, so the workers finish together; requests are views of the joined chunks, not copies.
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
            yield Batch(rest, None)

    def _cut(self, data: bytes, share: int, hard: int, source: InputObject) -> Generator[Batch, None, bytes]:
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
                yield Batch(view[start:cut], None)
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

    def _record_batches(self, chunks: Iterator[bytes], source: InputObject) -> Iterator[Batch]:
        """Record by record: SingleRecord, or MultiRecord when filters and joins need each record."""
        limit = self.max_payload
        single = self.strategy == "SingleRecord"
        records: list[bytes] = []
        bodies: list[bytes] = []
        size = 0
        for record in line_records(chunks):
            body = self._filter_input(record, source) if self.processing else record
            if limit is not None and len(body) > limit:
                raise self._too_large(source)
            if records and (single or (limit is not None and size + len(body) + 1 > limit)):
                yield Batch(b"\n".join(bodies), records)
                records, bodies, size = [], [], 0
            records.append(record)
            bodies.append(body)
            size += len(body) + 1
        if records:
            yield Batch(b"\n".join(bodies), records)

    def _filter_input(self, record: bytes, source: InputObject) -> bytes:
        if not self.input_filter:
            return record
        try:
            value = apply_jsonpath(self.input_filter, self.codec.parse(record.decode("utf-8")))
        except ValueError as exc:
            raise JobFailed(f"ClientError: {source.name}: InputFilter cannot be applied to a record: {exc}") from exc
        return self.codec.dump(value).encode("utf-8")
