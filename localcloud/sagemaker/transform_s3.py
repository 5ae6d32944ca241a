"""Batch transform's S3: input objects, and reads and writes through moto's S3 backend when this process serves it.

Reading and writing through the backend (localcloud.moto.s3.DirectClient) skips HTTP, signing and chunking; anything
it does not reproduce exactly falls back to the S3 API.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.moto.s3 import DirectClient
from localcloud.sagemaker.jobs import RunnerContext

MB = 1024 * 1024
PART_SIZE = 8 * MB  # S3 multipart parts (>= 5 MB but the last)


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


def serves_s3_in_process(ctx: RunnerContext) -> bool:
    """Whether this process is the local cloud serving S3 (its moto backends are this process's).

    SHEPHERD_TRANSFORM_S3=api keeps every S3 call on the boto3 client.
    """
    if os.environ.get("SHEPHERD_TRANSFORM_S3", "") == "api":
        return False
    return hasattr(ctx, "worker_environment")  # what the cloud's own contexts lend, and tests' fakes do not
