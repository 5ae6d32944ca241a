"""Endpoint data capture in SageMaker's layout and record shape.

Files: <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm-uuid>.jsonl, one
JSON line per sampled request with captureData.endpointInput / endpointOutput,
eventMetadata (eventId, inferenceId, inferenceTime) and eventVersion "0". The client's
InferenceId is recorded for production and shadow alike: it is the only key AWS documents
for pairing a shadow's prediction with production's.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("shepherd.local.sagemaker")
FLUSH_SECONDS = 1.0
FLUSH_RECORDS = 500


def _encoding(content_type: str, config: dict[str, Any]) -> str:
    header = config.get("CaptureContentTypeHeader") or {}
    base = content_type.split(";", 1)[0].strip().lower()
    if base in [t.lower() for t in header.get("CsvContentTypes", ["text/csv"])]:
        return "CSV"
    if base in [t.lower() for t in header.get("JsonContentTypes", ["application/json"])]:
        return "JSON"
    return "BASE64"


def _payload(data: bytes, content_type: str, mode: str, config: dict[str, Any]) -> dict[str, str]:
    encoding = _encoding(content_type, config)
    text = base64.b64encode(data).decode() if encoding == "BASE64" else data.decode("utf-8", errors="replace")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


class CapturedRequest(Protocol):
    """What capture records of a request (endpoints.InvocationRequest has it)."""

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...

    @property
    def inference_id(self) -> str | None: ...


class CaptureWriter:
    """Buffers capture records per variant and hour, and writes them to S3 in batches."""

    def __init__(
        self,
        endpoint: str,
        config: dict[str, Any],
        s3_factory: Callable[[], Any],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self._s3_factory = s3_factory
        self._now = now  # the local cloud's virtual clock, which its CloudWatch metrics are stamped with
        self._buffers: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{endpoint}", daemon=True)
        self._thread.start()
        modes = {
            o["CaptureMode"]
            for o in config.get("CaptureOptions", [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}])
        }
        self.capture_input = "Input" in modes or "InputAndOutput" in modes
        self.capture_output = "Output" in modes or "InputAndOutput" in modes

    @property
    def enabled(self) -> bool:
        return bool(self.config.get("EnableCapture", True))

    def sampled(self) -> bool:
        return random.random() * 100 < float(self.config.get("InitialSamplingPercentage", 100))  # noqa: S311

    def record(self, variant: str, request: CapturedRequest, response_body: bytes, response_type: str) -> None:
        now = self._now()
        capture: dict[str, Any] = {}
        if self.capture_input:
            capture["endpointInput"] = _payload(request.body, request.content_type, "INPUT", self.config)
        if self.capture_output:
            capture["endpointOutput"] = _payload(response_body, response_type, "OUTPUT", self.config)
        metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if request.inference_id:
            metadata["inferenceId"] = request.inference_id
        line = json.dumps({"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"})
        with self._lock:
            self._buffers.setdefault((variant, now.strftime("%Y/%m/%d/%H")), []).append(line)
            full = sum(len(b) for b in self._buffers.values()) >= FLUSH_RECORDS
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            buffers, self._buffers = self._buffers, {}
        if not buffers:
            return
        destination = self.config["DestinationS3Uri"].removeprefix("s3://").rstrip("/")
        bucket, _, prefix = destination.partition("/")
        s3 = self._s3_factory()
        for (variant, hour), lines in buffers.items():
            now = self._now()
            name = f"{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            key = "/".join(p for p in (prefix, self.endpoint, variant, hour, name) if p)
            extra = (
                {"SSEKMSKeyId": self.config["KmsKeyId"], "ServerSideEncryption": "aws:kms"}
                if self.config.get("KmsKeyId")
                else {}
            )
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode(), **extra)
            except Exception:
                log.exception(
                    "data capture for %s/%s could not be written to s3://%s/%s", self.endpoint, variant, bucket, key
                )

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
