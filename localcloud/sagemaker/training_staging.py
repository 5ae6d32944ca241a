"""What a training job moves between S3 and its /opt/ml: channels, code, checkpoints in; checkpoints, artifacts out."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from shepherd.objects import split_s3_uri as split_object_uri

from localcloud.sagemaker.archive import UnsafeArchiveError, extract_tar_safely, make_tar_gz
from localcloud.sagemaker.training_layout import Layout
from localcloud.sagemaker.training_plan import JobFailure, TrainingPlan, channel_path


def split_s3_uri(uri: str) -> tuple[str, str]:
    """shepherd.objects.split_s3_uri, failing the job as SageMaker words it."""
    try:
        return split_object_uri(uri)
    except ValueError as exc:
        raise JobFailure(f"ClientError: {uri!r} is not an S3 URI") from exc


def _relative(path: str) -> PurePosixPath | None:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part in ("/", ".", ""):
            continue
        if part == "..":
            return None
        parts.append(part)
    return PurePosixPath(*parts) if parts else None


class S3Transfer:
    """Downloads and uploads for one job, with SageMaker's ClientError wording on failure."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
        return keys

    def download_prefix(self, uri: str, dest: Path) -> int:
        """All objects under the prefix, each at its path relative to the prefix (a lone object by its name)."""
        bucket, prefix = split_s3_uri(uri)
        try:
            keys = self.keys(bucket, prefix)
        except Exception as exc:
            raise JobFailure(self._download_failed(uri, bucket, exc)) from exc
        if not keys:
            raise JobFailure(self._download_failed(uri, bucket, None))
        for key in keys:
            relative = _relative(key[len(prefix) :]) if key != prefix else PurePosixPath(key.rsplit("/", 1)[-1])
            if relative is None:
                raise JobFailure(f"ClientError: Data download failed: the S3 key {key!r} would land outside {dest}")
            self.get(bucket, key, dest / relative)
        return len(keys)

    def download_manifest(self, uri: str, dest: Path) -> int:
        """A ManifestFile: [{"prefix": "s3://b/p/"}, "relative/key", ...]; each file at its relative key."""
        bucket, key = split_s3_uri(uri)
        try:
            manifest = json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
            prefix_uri = manifest[0]["prefix"]
            entries = [str(e) for e in manifest[1:]]
        except Exception as exc:
            raise JobFailure(f"ClientError: Data download failed: cannot read the manifest {uri}: {exc}") from exc
        prefix_bucket, prefix = split_s3_uri(prefix_uri)
        for entry in entries:
            relative = _relative(entry)
            if relative is None:
                raise JobFailure(f"ClientError: Data download failed: manifest entry {entry!r} leaves the channel")
            self.get(prefix_bucket, prefix + entry, dest / relative)
        return len(entries)

    def get(self, bucket: str, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(bucket, key, str(path))
        except Exception as exc:
            raise JobFailure(f"ClientError: Data download failed: s3://{bucket}/{key}: {exc}") from exc

    def put(self, path: Path, uri: str, kms_key: str | None = None) -> None:
        """Upload; with ``kms_key`` as SSE-KMS, which the job's role must be allowed to use (through S3)."""
        bucket, key = split_s3_uri(uri)
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
        try:
            self.client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        except Exception as exc:
            raise JobFailure(f"ClientError: could not upload {path.name} to {uri}: {exc}") from exc

    @staticmethod
    def _download_failed(uri: str, bucket: str, exc: Exception | None) -> str:
        detail = f" Error message from S3: {exc}" if exc else ""
        return (
            f'ClientError: Data download failed:No S3 objects found under S3 URL "{uri}" given in input data '
            f"source. Please ensure that the bucket exists in the selected region, that objects exist under that "
            f'S3 prefix, and that the role has "s3:ListBucket" permissions on bucket "{bucket}".{detail}'
        )


def download_inputs(
    plan: TrainingPlan, layout: Layout, s3: S3Transfer, staging: Path, note: Callable[[str], None]
) -> None:
    """Every channel, the source code, then the checkpoints a spot restart resumes from."""
    for channel in plan.channels:
        dest = layout.data / channel.name
        if channel.data_type == "ManifestFile":
            count = s3.download_manifest(channel.uri, dest)
        else:
            count = s3.download_prefix(channel.uri, dest)
        note(f"Channel {channel.name}: downloaded {count} object(s) from {channel.uri}")
    _download_code(plan, layout, s3, staging)
    if plan.checkpoint_uri:
        bucket, prefix = split_s3_uri(plan.checkpoint_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        keys = s3.keys(bucket, prefix)
        for key in keys:
            relative = _relative(key[len(prefix) :])
            if relative is not None:
                s3.get(bucket, key, layout.base / plan.checkpoint_path / relative)
        if keys:
            note(f"Restored {len(keys)} checkpoint file(s) from {plan.checkpoint_uri}")


def _download_code(plan: TrainingPlan, layout: Layout, s3: S3Transfer, staging: Path) -> None:
    uri = plan.submit_directory
    local = channel_path(uri, plan.channels)
    if local is not None:
        _install_local_code(layout.base / local, layout.code, uri)
    elif uri.endswith((".tar.gz", ".tgz", ".tar")):
        bucket, key = split_s3_uri(uri)
        archive = staging / "sourcedir.tar.gz"
        s3.get(bucket, key, archive)
        try:
            extract_tar_safely(archive, layout.code)
        except (UnsafeArchiveError, OSError, EOFError) as exc:
            raise JobFailure(f"ClientError: cannot extract sagemaker_submit_directory {uri}: {exc}") from exc
    else:
        s3.download_prefix(uri, layout.code)
    if not (layout.code / plan.program).exists():
        raise JobFailure(f"AlgorithmError: the entry point {plan.program} is not in sagemaker_submit_directory {uri}")


def _install_local_code(path: Path, code: Path, uri: str) -> None:
    """What files.download_and_extract does with a local path: copy a directory, extract a tar, copy a file."""
    if path.is_dir():
        shutil.copytree(path, code, dirs_exist_ok=True)
    elif path.is_file() and tarfile.is_tarfile(path):
        with path.open("rb") as archive:
            if archive.read(2) != b"\x1f\x8b":  # the toolkit opens it with mode "r:gz"
                raise JobFailure(f"AlgorithmError: sagemaker_submit_directory {uri} is a tar file but not gzip'd")
        try:
            extract_tar_safely(path, code)
        except (UnsafeArchiveError, OSError, EOFError, tarfile.TarError) as exc:
            raise JobFailure(f"AlgorithmError: cannot extract sagemaker_submit_directory {uri}: {exc}") from exc
    elif path.is_file():
        shutil.copy2(path, code)
    else:
        raise JobFailure(f"AlgorithmError: sagemaker_submit_directory {uri} does not exist in the container")


def upload_checkpoints(plan: TrainingPlan, layout: Layout, s3: S3Transfer, note: Callable[[str], None]) -> None:
    """What the checkpoint directory holds, to CheckpointConfig.S3Uri (spot training resumes from it)."""
    if not plan.checkpoint_uri:
        return
    local = layout.base / plan.checkpoint_path
    files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else []
    base = plan.checkpoint_uri.rstrip("/")
    for path in files:
        s3.put(path, f"{base}/{path.relative_to(local).as_posix()}")
    if files:
        note(f"Uploaded {len(files)} checkpoint file(s) to {plan.checkpoint_uri}")


def upload_artifacts(plan: TrainingPlan, layout: Layout, s3: S3Transfer, staging: Path, kms_key: str | None) -> str:
    """model.tar.gz (and output.tar.gz if the script wrote output data) under the job's output path; the model's URI.

    ``kms_key`` is OutputDataConfig.KmsKeyId: it encrypts the artifacts, and "the IAM role must have
    permission to call kms:Encrypt" on it (SageMaker API reference, OutputDataConfig).
    """
    try:
        model = make_tar_gz(layout.model, staging / "model.tar.gz")
        uri = _artifact_uri(plan, "model.tar.gz")
        s3.put(model, uri, kms_key)
        if layout.output_data.is_dir() and any(layout.output_data.iterdir()):
            output = make_tar_gz(layout.output_data, staging / "output.tar.gz")
            s3.put(output, _artifact_uri(plan, "output.tar.gz"), kms_key)
    except UnsafeArchiveError as exc:
        raise JobFailure(f"ClientError: cannot archive the model artifacts: {exc}") from exc
    return uri


def _artifact_uri(plan: TrainingPlan, name: str) -> str:
    return f"{plan.output_path.rstrip('/')}/{plan.job_name}/output/{name}"
