"""A model's artifacts and inference code fetched from S3 onto local disk, ready for any worker process to load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from shepherd.objects import split_s3_uri

from localcloud.sagemaker.inference import ModelLoadError, find_script, resolve_code_dir, serving_framework


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
