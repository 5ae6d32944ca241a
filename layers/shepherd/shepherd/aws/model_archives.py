"""Repacking a trained model with its inference code, S3 to S3: the I/O around shepherd.model_archive."""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.errors import TransientError
from shepherd.model_archive import RepackedModel, repack
from shepherd.objects import split_s3_uri


def repack_in_s3(model_uri: str, source_uri: str, target_uri: str, *, program: str) -> RepackedModel:
    """Stream both archives from S3 into a temporary file, then write it to target_uri.

    Written like every other object of the data bucket: encrypted by the bucket's default KMS key
    (naming ``aws:kms`` here without the key would pick the AWS-managed key instead).
    """
    from botocore.exceptions import ConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    s3 = client("s3")

    def body(uri: str) -> Any:
        bucket, key = split_s3_uri(uri)
        with mapped(f"reading {uri}"):
            return s3.get_object(Bucket=bucket, Key=key)["Body"]

    with tempfile.TemporaryFile() as out:
        with contextlib.closing(body(model_uri)) as model, contextlib.closing(body(source_uri)) as source:
            try:
                repacked = repack(model, source, out, program=program, model_uri=model_uri, source_uri=source_uri)
            except (ConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError) as exc:
                raise TransientError(f"reading {model_uri} and {source_uri}: {exc}") from exc
        out.seek(0)
        bucket, key = split_s3_uri(target_uri)
        with mapped(f"writing {target_uri}"):
            s3.put_object(Bucket=bucket, Key=key, Body=out, ContentType="application/gzip")
    return repacked
