"""Batch Transform as Shepherd runs it: which uploads it scores, where every file goes, what it checks.

Nothing the workflow writes lands under ``batch/<model>/input/``: the trigger rule's pattern
``batch/*/input/*`` would start it again. The key layout: docs/PIPELINES.md, "BatchTransform".
Pure functions and pydantic models: the handlers do the I/O.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shepherd.errors import InvalidInput
from shepherd.instances import has_instance_storage
from shepherd.names import SAGEMAKER_UNSAFE, bounded, digest

if TYPE_CHECKING:  # the config package loads PyYAML and every config model: start_batch needs none of it
    from shepherd.config import Batch

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
RUN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
JOB_NAME_MAX = 63
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
MAX_FILE_NAME_BYTES = 255  # keeps <output prefix>/<file name>.out within S3's key limit
MAX_INPUT_BYTES = 100 * 2**20
SEPARATOR = "__"  # stands for "/" in processed/ and failed/ file names
REASON_SUFFIX = ".reason.txt"
SUMMARY_NAME = "_summary.json"  # never ends in .out, so it cannot clash with SageMaker's output
INVOCATIONS_TIMEOUT_SECONDS = 600
INVOCATIONS_MAX_RETRIES = 1

_TAG_LENGTH = 12
_SHORTENED = "..."
# ASCII only: Arabic-Indic and other Unicode digits are not numbers to the models' parsers.
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", re.ASCII)
_JSON_LINES = ("application/jsonlines", "application/x-jsonlines", "application/json-lines")


class InvalidBatchKey(InvalidInput, ValueError):
    """An uploaded key that is not a batch input file: batch/<model>/input/<relative path>."""


class InvalidBatchFile(InvalidInput, ValueError):
    """A batch input whose content cannot be scored; the message names the line and the problem."""


# ---------------------------------------------------------------- the uploaded file


class BatchFile(BaseModel):
    """One uploaded object under batch/<model>/input/, the unit a BatchTransform run scores."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(pattern=NAME_PATTERN.pattern)
    relative: str = Field(min_length=1, description="The path under batch/<model>/input/.")
    key: str

    @model_validator(mode="after")
    def _key_is_the_layout(self) -> BatchFile:
        if self.key != f"batch/{self.model}/input/{self.relative}":
            raise ValueError(f"key {self.key!r} is not batch/{self.model}/input/{self.relative}")
        return self

    @property
    def name(self) -> str:
        """The file's name, the last segment of its relative path."""
        return self.relative.rpartition("/")[2]


def batch_file(key: str) -> BatchFile:
    """Parse an uploaded key, or raise InvalidBatchKey saying why it is not a batch input file."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBatchKey(f"key {key!r} is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidBatchKey(f"key {key[:60]!r}... is {size} bytes long; S3 keys are at most {MAX_KEY_BYTES}")
    parts = key.split("/", 3)
    if len(parts) < 4 or parts[0] != "batch" or parts[2] != "input" or not parts[3]:
        raise InvalidBatchKey(f"key {key!r} is not a batch input file batch/<model>/input/<path>")
    model, relative = parts[1], parts[3]
    if not NAME_PATTERN.match(model):
        raise InvalidBatchKey(
            f"key {key!r}: model name {model!r} must be 1 to 63 letters, digits and hyphens, "
            f"starting and ending with a letter or digit"
        )
    if relative.endswith("/"):
        raise InvalidBatchKey(f"key {key!r} is a directory marker, not a file")
    segments = relative.split("/")
    if "" in segments:
        raise InvalidBatchKey(f"key {key!r} has an empty path segment (//)")
    if "." in segments or ".." in segments:
        raise InvalidBatchKey(f"key {key!r} has a '.' or '..' path segment")
    name = segments[-1]
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise InvalidBatchKey(f"key {key!r}: file names longer than {MAX_FILE_NAME_BYTES} bytes are not supported")
    return BatchFile(model=model, relative=relative, key=key)


# ---------------------------------------------------------------- key layout


def check_run(run: str) -> str:
    """A run id is an execution name; ``input`` is refused because output/input/ would match the trigger."""
    if not RUN_PATTERN.match(run):
        raise ValueError(f"run id {run!r} must be 1 to 80 letters, digits, hyphens and underscores")
    if run == "input":
        raise ValueError("run id 'input' would put outputs under .../input/, which triggers the batch workflow")
    return run


def run_tag(run: str) -> str:
    """A short, stable tag of a run that keeps its processed/ and failed/ files apart from other runs'."""
    return digest(check_run(run), length=_TAG_LENGTH)


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def output_prefix(f: BatchFile, run: str) -> str:
    return f"batch/{f.model}/output/{check_run(run)}/"


def output_key(f: BatchFile, run: str) -> str:
    """Where SageMaker writes the scores: the manifest's entry is the file name, plus .out."""
    return f"{output_prefix(f, run)}{f.name}.out"


def summary_key(f: BatchFile, run: str) -> str:
    return f"{output_prefix(f, run)}{SUMMARY_NAME}"


def processed_key(f: BatchFile, run: str) -> str:
    return _moved_key(f, run, "processed")


def failed_key(f: BatchFile, run: str) -> str:
    return _moved_key(f, run, "failed")


def reason_key(f: BatchFile, run: str) -> str:
    return f"{failed_key(f, run)}{REASON_SUFFIX}"


def manifest_key(f: BatchFile, run: str) -> str:
    return f"artifacts/{f.model}/batch/{check_run(run)}/manifest.json"


def _moved_key(f: BatchFile, run: str, area: Literal["processed", "failed"]) -> str:
    prefix = f"batch/{f.model}/{area}/{run_tag(run)}-"
    # The same budget for both areas, with room for the reason file next to the failed one.
    budget = MAX_KEY_BYTES - len(f"batch/{f.model}/processed/{run_tag(run)}-{REASON_SUFFIX}".encode())
    return prefix + _fit(f.relative.replace("/", SEPARATOR), budget)


def _fit(name: str, budget: int) -> str:
    """The name, or its end (where the file name is) behind "..." when it is longer than budget bytes."""
    if len(name.encode()) <= budget:
        return name
    kept: list[str] = []
    room = budget - len(_SHORTENED)
    for char in reversed(name):
        room -= len(char.encode())
        if room < 0:
            break
        kept.append(char)
    return _SHORTENED + "".join(reversed(kept))


def manifest(bucket: str, key: str) -> list[dict[str, str] | str]:
    """A SageMaker ManifestFile naming exactly one object, so a.csv never pulls in a.csv.bak."""
    directory, _, name = key.rpartition("/")
    if not name:
        raise ValueError(f"key {key!r} names no object")
    prefix = f"s3://{bucket}/{directory}/" if directory else f"s3://{bucket}/"
    return [{"prefix": prefix}, name]


# ---------------------------------------------------------------- the content


class CsvCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    records: int = Field(ge=1)
    columns: int = Field(ge=1)
    header: bool = Field(description="The first row names the columns; it is not a record.")


class InputCheck(BaseModel):
    """What checking an input found; None where the content type says nothing about it."""

    model_config = ConfigDict(frozen=True)

    content_type: str
    records: int | None = None
    columns: int | None = None
    header: bool = False


def check_size(size: int, *, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Refuse an empty or too large input from its size alone, before anything downloads it."""
    if size == 0:
        raise InvalidBatchFile("the file is empty")
    if size > max_bytes:
        raise InvalidBatchFile(f"the file is {_size(size, up=True)}, more than the {_size(max_bytes)} limit")


def check_input(
    data: bytes, content_type: str, *, max_bytes: int = MAX_INPUT_BYTES, split_type: str = "Line"
) -> InputCheck:
    """Check an input for its content type (CSV, JSON, JSON Lines); other types pass unchecked."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        found = check_csv(data, max_bytes=max_bytes)
        return InputCheck(content_type=content_type, records=found.records, columns=found.columns, header=found.header)
    if media in _JSON_LINES or (media == "application/json" and split_type == "Line"):
        return InputCheck(content_type=content_type, records=_check_json_lines(data, max_bytes))
    if media == "application/json":
        _check_json_document(data, max_bytes)
    return InputCheck(content_type=content_type)


def check_csv(data: bytes, *, max_bytes: int = MAX_INPUT_BYTES) -> CsvCheck:
    """Check that a CSV input is numeric and rectangular, with an optional header row.

    Raise InvalidBatchFile naming the first line that is wrong.
    """
    text = _text(data, max_bytes)
    reader = csv.reader(io.StringIO(text, newline=""))
    first: tuple[int, int] | None = None  # the line and field count of the first row
    header = False
    records = 0
    blank: int | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise InvalidBatchFile(f"line {start} cannot be read as CSV: {exc}") from None
        if row is None:
            break
        if len(row) <= 1 and not "".join(row).strip():
            blank = blank or start
            continue
        if blank is not None:
            raise InvalidBatchFile(f"line {blank} is blank, but line {start} after it is not: remove the blank lines")
        if first is None:
            first = (start, len(row))
            if not any(_NUMBER.match(field) for field in row):
                header = True
                continue
        elif len(row) != first[1]:
            raise InvalidBatchFile(
                f"line {start} has {_count(len(row), 'field')}, but line {first[0]} has {_count(first[1], 'field')}"
            )
        _check_numbers(row, start, first_row=start == first[0])
        records += 1
    if first is None:
        raise InvalidBatchFile("the file has no records, only blank lines")
    if records == 0:
        raise InvalidBatchFile(f"line {first[0]} looks like a header, but no records follow it")
    return CsvCheck(records=records, columns=first[1], header=header)


def _check_numbers(row: list[str], line: int, *, first_row: bool) -> None:
    for index, field in enumerate(row, start=1):
        if _NUMBER.match(field):
            continue
        found = "empty" if not field.strip() else f"{_excerpt(field)}, not a number"
        hint = " (a header row is recognised only when none of its fields is a number)" if first_row else ""
        raise InvalidBatchFile(
            f"line {line}, field {index} is {found}: the models are trained on numeric features, "
            f"so every value must be a number{hint}"
        )


def _check_json_lines(data: bytes, max_bytes: int) -> int:
    text = _text(data, max_bytes)
    records = 0
    blank: int | None = None
    # SageMaker's SplitType Line splits on "\n" only, so str.splitlines (which also splits on U+2028) is wrong here.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise InvalidBatchFile(f"line {blank} is blank, but line {number} after it is not: remove the blank lines")
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidBatchFile(f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})") from None
        records += 1
    if records == 0:
        raise InvalidBatchFile("the file has no records, only blank lines")
    return records


def _check_json_document(data: bytes, max_bytes: int) -> None:
    try:
        json.loads(_text(data, max_bytes))
    except json.JSONDecodeError as exc:
        raise InvalidBatchFile(f"line {exc.lineno} is not valid JSON: {exc.msg} (column {exc.colno})") from None


def _text(data: bytes, max_bytes: int) -> str:
    """The input as text: not empty, within the limit, UTF-8 (a byte order mark is dropped), no NUL."""
    check_size(len(data), max_bytes=max_bytes)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InvalidBatchFile(f"line {_line_of(data, nul)} holds a NUL byte: this looks like a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise InvalidBatchFile(
            f"line {_line_of(data, exc.start)} is not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}): "
            f"save the file as UTF-8"
        ) from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _excerpt(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _size(size: int, *, up: bool = False) -> str:
    if size < 2**20:
        return _count(size, "byte")
    # Rounded up for a file over the limit, so that 100 MB and a byte never reads "100 MB".
    tenths = math.ceil(size * 10 / 2**20) if up else size * 10 // 2**20
    return f"{tenths / 10:.1f}".removesuffix(".0") + " MB"


# ---------------------------------------------------------------- the transform job


def transform_job_name(model: str, run: str) -> str:
    """``<model>-<run>`` when it is a valid job name, else a readable prefix and a hash of both.

    Deterministic, so a retried task finds the job it started; distinct per run of a model.
    """
    if not NAME_PATTERN.match(model):
        raise ValueError(f"model name {model!r} does not fit SageMaker's name pattern")
    check_run(run)
    plain = f"{model}-{run}"
    if len(plain) <= JOB_NAME_MAX and NAME_PATTERN.match(plain):
        return plain
    return bounded(plain, digest(model, run, length=_TAG_LENGTH), limit=JOB_NAME_MAX, unsafe=SAGEMAKER_UNSAFE)


def build_transform_request(
    batch: Batch,
    *,
    job_name: str,
    model_name: str,
    bucket: str,
    manifest_key: str,
    output_prefix: str,
    kms_key_arn: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    """The CreateTransformJob request scoring the one object the manifest names (botocore's shape)."""
    output: dict[str, Any] = {
        "S3OutputPath": s3_uri(bucket, output_prefix),
        "Accept": batch.accept,
        "AssembleWith": batch.assemble_with,
    }
    resources: dict[str, Any] = {"InstanceType": batch.instance_type, "InstanceCount": batch.instance_count}
    if kms_key_arn:
        output["KmsKeyId"] = kms_key_arn
        if not has_instance_storage(batch.instance_type):
            resources["VolumeKmsKeyId"] = kms_key_arn
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": batch.max_concurrent_transforms,
        "MaxPayloadInMB": batch.max_payload_mb,
        "BatchStrategy": batch.strategy,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": INVOCATIONS_TIMEOUT_SECONDS,
            "InvocationsMaxRetries": INVOCATIONS_MAX_RETRIES,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": s3_uri(bucket, manifest_key)}},
            "ContentType": batch.content_type,
            "SplitType": batch.split_type,
        },
        "TransformOutput": output,
        "TransformResources": resources,
        "Tags": [{"Key": key, "Value": value} for key, value in sorted(tags.items())],
    }


# ---------------------------------------------------------------- the outcome


class BatchSummary(BaseModel):
    """batch/<model>/output/<run>/_summary.json: what one run scored, with what, and how it ended."""

    input_uri: str
    input_version_id: str | None = None
    job_name: str
    model_name: str
    model_package_arn: str | None = None
    records: int | None = Field(default=None, ge=0)
    output_uris: list[str] = Field(default_factory=list)
    moved_to_uri: str | None = Field(default=None, description="Where the input went: processed/ or failed/.")
    status: Literal["Completed", "Failed"]
    reason: str | None = None
    started: AwareDatetime
    finished: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> BatchSummary:
        if self.status == "Failed" and not self.reason:
            raise ValueError("a Failed summary needs a reason")
        if self.finished < self.started:
            raise ValueError(f"finished {self.finished.isoformat()} is before started {self.started.isoformat()}")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
