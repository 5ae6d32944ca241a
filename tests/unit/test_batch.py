"""Tests for shepherd.batch: batch input keys, where a run writes, input checks and the transform request."""

from __future__ import annotations

import codecs
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shepherd.batch import (
    MAX_KEY_BYTES,
    BatchFile,
    BatchSummary,
    InvalidBatchFile,
    InvalidBatchKey,
    batch_file,
    build_transform_request,
    check_csv,
    check_input,
    check_run,
    check_size,
    failed_key,
    manifest,
    manifest_key,
    output_key,
    output_prefix,
    processed_key,
    reason_key,
    run_tag,
    s3_uri,
    summary_key,
    transform_job_name,
)
from shepherd.config import Batch
from shepherd.errors import InvalidInput

from localcloud.sagemaker.validation import validate

TRIGGER = "batch/*/input/*"
RUN = "batch-churn-0123456789abcdef"
BUCKET = "shepherd-data-123456789012"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def matches_wildcard(pattern: str, key: str) -> bool:
    """EventBridge's wildcard matching: ``*`` stands for any characters, ``/`` included."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


def written_keys(f: BatchFile, run: str) -> list[str]:
    """Every key a run writes to the data bucket."""
    return [
        output_prefix(f, run),
        output_key(f, run),
        summary_key(f, run),
        processed_key(f, run),
        failed_key(f, run),
        reason_key(f, run),
        manifest_key(f, run),
    ]


@pytest.fixture
def churn() -> BatchFile:
    return batch_file("batch/churn/input/2024/03/scores.csv")


# ---------------------------------------------------------------- the trigger wildcard itself


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("batch/churn/input/a.csv", True),
        ("batch/churn/input/2024/a.csv", True),
        ("batch/churn/processed/x/input/a.csv", True),
        ("batch/churn/input/", True),
        ("batch/input/output/a.csv", False),
        ("batch/churn/processed/tag-input__a.csv", False),
        ("training/churn/input/a.csv", False),
    ],
)
def test_wildcard_matcher_behaves_like_eventbridge(key: str, expected: bool) -> None:
    assert matches_wildcard(TRIGGER, key) is expected


# ---------------------------------------------------------------- batch_file


def test_key_parses_into_model_and_relative_path() -> None:
    # Given an upload in a subfolder of the model's input prefix
    # When it is parsed
    f = batch_file("batch/churn/input/2024/03/scores.csv")
    # Then the model, the path under input/ and the file name come through
    assert (f.model, f.relative, f.key, f.name) == (
        "churn",
        "2024/03/scores.csv",
        "batch/churn/input/2024/03/scores.csv",
        "scores.csv",
    )


def test_batch_file_is_frozen(churn: BatchFile) -> None:
    with pytest.raises(ValidationError):
        churn.model = "other"


def test_batch_file_refuses_a_key_that_disagrees_with_its_parts() -> None:
    with pytest.raises(ValidationError):
        BatchFile(model="churn", relative="a.csv", key="batch/churn/input/b.csv")


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("training/churn/input/a.csv", "is not a batch input file"),
        ("batch/churn/output/a.csv", "is not a batch input file"),
        ("batch/churn/input/", "is not a batch input file"),
        ("batch/churn/input", "is not a batch input file"),
        ("batch/churn", "is not a batch input file"),
        ("batch//input/a.csv", "model name ''"),
        ("batch/-churn/input/a.csv", "model name '-churn'"),
        ("batch/churn_v2/input/a.csv", "model name 'churn_v2'"),
        (f"batch/{'m' * 64}/input/a.csv", "model name"),
        ("batch/churn/input/2024/", "directory marker"),
        ("batch/churn/input/2024//a.csv", "empty path segment"),
        ("batch/churn/input//a.csv", "empty path segment"),
        ("batch/churn/input/../other/input/a.csv", "'..'"),
        ("batch/churn/input/a/./b.csv", "'.'"),
        (f"batch/churn/input/{'n' * 256}.csv", "file names longer than 255 bytes"),
        ("batch/churn/input/" + "d/" * 503 + "a.csv", "S3 keys are at most 1024"),
        ("batch/churn/input/\udcff.csv", "not valid UTF-8"),
    ],
)
def test_keys_that_are_not_batch_input_files_are_refused(key: str, says: str) -> None:
    with pytest.raises(InvalidBatchKey, match=re.escape(says)):
        batch_file(key)


def test_invalid_batch_key_is_a_value_error_and_invalid_input() -> None:
    # The state machines never retry InvalidInput; callers that only know ValueError still catch it.
    assert issubclass(InvalidBatchKey, ValueError)
    assert issubclass(InvalidBatchKey, InvalidInput)
    assert issubclass(InvalidBatchFile, ValueError)
    assert issubclass(InvalidBatchFile, InvalidInput)


def test_model_named_input_is_a_valid_model() -> None:
    assert batch_file("batch/input/input/a.csv").model == "input"


# ---------------------------------------------------------------- key layout


def test_output_prefix(churn: BatchFile) -> None:
    assert output_prefix(churn, RUN) == f"batch/churn/output/{RUN}/"


def test_output_key_is_what_sagemaker_writes_for_the_manifest_entry(churn: BatchFile) -> None:
    assert output_key(churn, RUN) == f"batch/churn/output/{RUN}/scores.csv.out"


def test_summary_sits_under_the_output_prefix(churn: BatchFile) -> None:
    assert summary_key(churn, RUN) == f"batch/churn/output/{RUN}/_summary.json"


def test_processed_key_flattens_the_relative_path_behind_the_run_tag(churn: BatchFile) -> None:
    assert processed_key(churn, RUN) == f"batch/churn/processed/{run_tag(RUN)}-2024__03__scores.csv"


def test_failed_key_and_its_reason_sit_side_by_side(churn: BatchFile) -> None:
    assert failed_key(churn, RUN) == f"batch/churn/failed/{run_tag(RUN)}-2024__03__scores.csv"
    assert reason_key(churn, RUN) == f"{failed_key(churn, RUN)}.reason.txt"


def test_manifest_sits_under_artifacts(churn: BatchFile) -> None:
    assert manifest_key(churn, RUN) == f"artifacts/churn/batch/{RUN}/manifest.json"


def test_run_tag_is_short_stable_and_distinct_per_run() -> None:
    assert len(run_tag(RUN)) == 12
    assert run_tag(RUN) == run_tag(RUN)
    assert run_tag(RUN) != run_tag(RUN + "x")


def test_same_file_in_two_runs_lands_on_two_keys(churn: BatchFile) -> None:
    assert processed_key(churn, "run-1") != processed_key(churn, "run-2")


@pytest.mark.parametrize("run", ["", "a" * 81, "has space", "slash/run", "dot.run", "input"])
def test_invalid_run_ids_are_refused(churn: BatchFile, run: str) -> None:
    with pytest.raises(ValueError, match="run id"):
        output_prefix(churn, run)


def test_run_named_input_is_refused_because_it_would_trigger() -> None:
    with pytest.raises(ValueError, match="triggers the batch workflow"):
        check_run("input")


def test_a_long_relative_path_is_shortened_from_the_front_within_s3s_limit() -> None:
    # Given an input key at S3's length limit
    relative = "d" * (MAX_KEY_BYTES - len("batch/churn/input/") - len("/a.csv")) + "/a.csv"
    f = batch_file(f"batch/churn/input/{relative}")
    # When it is moved to failed/ with a reason file next to it
    reason = reason_key(f, RUN)
    # Then the keys fit and keep the file name
    assert len(reason.encode()) <= MAX_KEY_BYTES
    assert failed_key(f, RUN).endswith("d__a.csv")
    assert f"{run_tag(RUN)}-..." in failed_key(f, RUN)


def test_shortening_never_splits_a_multibyte_character() -> None:
    relative = "é" * ((MAX_KEY_BYTES - len("batch/churn/input/")) // 2 - 10) + "/a.csv"
    f = batch_file(f"batch/churn/input/{relative}")
    key = processed_key(f, RUN)
    assert len(key.encode("utf-8")) <= MAX_KEY_BYTES
    assert key.endswith("é__a.csv")


# ---------------------------------------------------------------- properties: no written key triggers a run

SEGMENT = st.one_of(
    st.sampled_from(["input", "output", "processed", "failed", "batch", "*", "a.csv", "...", ".hidden", " "]),
    st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12).filter(
        lambda s: s not in (".", "..")
    ),
)
RELATIVE = st.lists(SEGMENT, min_size=1, max_size=8).map("/".join)
MODEL = st.one_of(st.sampled_from(["input", "batch", "output", "a"]), st.from_regex(NAME, fullmatch=True))
RUNS = st.one_of(
    st.sampled_from(["output", "processed", "batch", "_", "-"]), st.from_regex(r"[A-Za-z0-9_-]{1,80}", fullmatch=True)
).filter(lambda r: r != "input")


@given(model=MODEL, relative=RELATIVE, run=RUNS)
def test_no_written_key_matches_the_trigger(model: str, relative: str, run: str) -> None:
    # Given any valid upload and any run
    f = batch_file(f"batch/{model}/input/{relative}")
    # Then nothing the run writes can start another run, or even sit under input/
    for key in written_keys(f, run):
        assert not matches_wildcard(TRIGGER, key), key
        assert not key.startswith(f"batch/{model}/input/"), key


@given(model=MODEL, relative=RELATIVE, run=RUNS)
def test_moved_keys_never_hold_input_and_fit_s3(model: str, relative: str, run: str) -> None:
    f = batch_file(f"batch/{model}/input/{relative}")
    for key in written_keys(f, run):
        assert len(key.encode("utf-8")) <= MAX_KEY_BYTES, key
    for key in (processed_key(f, run), failed_key(f, run), reason_key(f, run)):
        # batch/<model>/<area>/<file>: only a model named "input" puts /input/ in them, where the trigger cannot see it.
        assert "/input/" not in key.removeprefix(f"batch/{model}")
        assert key.count("/") == 3


@given(model=MODEL, relative=RELATIVE)
def test_the_uploaded_key_itself_matches_the_trigger(model: str, relative: str) -> None:
    # The other side of the property: the wildcard does select what batch_file accepts.
    assert matches_wildcard(TRIGGER, batch_file(f"batch/{model}/input/{relative}").key)


# ---------------------------------------------------------------- manifest


def test_manifest_names_exactly_one_object(churn: BatchFile) -> None:
    assert manifest(BUCKET, churn.key) == [{"prefix": f"s3://{BUCKET}/batch/churn/input/2024/03/"}, "scores.csv"]


def test_manifest_for_a_key_at_the_bucket_root() -> None:
    assert manifest(BUCKET, "a.csv") == [{"prefix": f"s3://{BUCKET}/"}, "a.csv"]


def test_manifest_refuses_a_directory_key() -> None:
    with pytest.raises(ValueError, match="names no object"):
        manifest(BUCKET, "batch/churn/input/")


def test_manifest_is_json_serialisable(churn: BatchFile) -> None:
    assert json.loads(json.dumps(manifest(BUCKET, churn.key)))[1] == "scores.csv"


@given(model=MODEL, relative=RELATIVE)
def test_manifest_prefix_and_entry_rebuild_the_key(model: str, relative: str) -> None:
    f = batch_file(f"batch/{model}/input/{relative}")
    prefix, entry = manifest(BUCKET, f.key)
    assert isinstance(prefix, dict)
    assert isinstance(entry, str)
    assert prefix["prefix"] + entry == s3_uri(BUCKET, f.key)
    assert "/" not in entry


# ---------------------------------------------------------------- check_csv


def test_numeric_csv_without_header_passes() -> None:
    assert check_csv(b"1,2,3\n4,5,6\n") == check_csv(b"1,2,3\n4,5,6")
    found = check_csv(b"1,2,3\n4,5,6\n")
    assert (found.records, found.columns, found.header) == (2, 3, False)


def test_header_row_is_recognised_and_not_counted() -> None:
    found = check_csv(b"age,income,tenure\n31,52000.5,3\n45,61000,-1e3\n")
    assert (found.records, found.columns, found.header) == (2, 3, True)


def test_bom_is_stripped() -> None:
    found = check_csv(codecs.BOM_UTF8 + b"a,b\n1,2\n")
    assert found.header
    assert found.records == 1


@pytest.mark.parametrize("number", ["1", "-1", "+1.5", ".5", "5.", "1e-3", "2.5E+10", " 7 ", "0"])
def test_numbers_in_their_usual_spellings_pass(number: str) -> None:
    assert check_csv(f"{number},1\n".encode()).records == 1


def test_crlf_line_endings_and_trailing_blank_lines_pass() -> None:
    assert check_csv(b"1,2\r\n3,4\r\n\r\n\n  \n").records == 2


def test_quoted_numbers_pass() -> None:
    assert check_csv(b'"1","2"\n').records == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file has no records, only blank lines"),
        (b"a,b\n", "line 1 looks like a header, but no records follow it"),
        (b"1,2,3,4,5\n1,2,3,4,5\n1,2,3\n", "line 3 has 3 fields, but line 1 has 5 fields"),
        (b"a,b\n1,2\n1\n", "line 3 has 1 field, but line 1 has 2 fields"),
        (b"1,2\n\n3,4\n", "line 2 is blank, but line 3 after it is not: remove the blank lines"),
        (b"\n1,2\n", "line 1 is blank, but line 2 after it is not"),
        (b"1,2\n3,abc\n", "line 2, field 2 is 'abc', not a number: the models are trained on numeric features"),
        (b"1,2\n3,\n", "line 2, field 2 is empty: the models are trained on numeric features"),
        (b"1,2\nnan,1\n", "line 2, field 1 is 'nan', not a number"),
        ("1,2\n\u0663,1\n".encode(), "line 2, field 1 is '\u0663', not a number"),
        (b"a,b\nc,d\n", "line 2, field 1 is 'c', not a number"),
        (
            b"1,b\n",
            "line 1, field 2 is 'b', not a number: the models are trained on numeric features, so every "
            "value must be a number (a header row is recognised only when none of its fields is a number)",
        ),
        (b"1,2\n3,\xff\n", "line 2 is not UTF-8 text (byte 0xff at column 3): save the file as UTF-8"),
        (b"1,2\n\x00\n", "line 2 holds a NUL byte"),
        (b'1,2\n"3\n4",5\n', "line 2, field 1 is '3\\n4', not a number"),
    ],
)
def test_bad_csv_is_refused_naming_the_line(data: bytes, message: str) -> None:
    with pytest.raises(InvalidBatchFile) as caught:
        check_csv(data)
    assert message in str(caught.value)


def test_long_values_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidBatchFile) as caught:
        check_csv(b"1\n" + b"x" * 500 + b"\n")
    assert len(str(caught.value)) < 200


def test_too_large_a_file_is_refused() -> None:
    with pytest.raises(InvalidBatchFile, match=r"the file is 10 bytes, more than the 9 bytes limit"):
        check_csv(b"1,2,3\n4,5\n", max_bytes=9)


def test_file_one_byte_over_100_mb_does_not_read_as_100_mb() -> None:
    with pytest.raises(InvalidBatchFile, match=r"the file is 100\.1 MB, more than the 100 MB limit"):
        check_size(100 * 2**20 + 1)


def test_check_size_passes_a_file_at_the_limit() -> None:
    check_size(100 * 2**20)


def test_file_at_the_limit_passes() -> None:
    assert check_csv(b"1,2\n", max_bytes=4).records == 1


@given(
    st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(), min_size=3, max_size=3),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_any_numeric_table_passes_with_its_shape(rows: list[list[float | int]], header: bool) -> None:
    lines = [",".join(repr(value) for value in row) for row in rows]
    if header:
        lines.insert(0, "a,b,c")
    found = check_csv("\n".join(lines).encode())
    assert (found.records, found.columns, found.header) == (len(rows), 3, header)


# ---------------------------------------------------------------- check_input


def test_check_input_applies_the_csv_check() -> None:
    found = check_input(b"a,b\n1,2\n", "text/csv")
    assert (found.records, found.columns, found.header) == (1, 2, True)


def test_check_input_reads_content_type_parameters_and_case() -> None:
    assert check_input(b"1,2\n", "Text/CSV; charset=utf-8").records == 1


def test_check_input_refuses_bad_csv() -> None:
    with pytest.raises(InvalidBatchFile, match="line 2"):
        check_input(b"1,2\n1\n", "text/csv")


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines", "application/x-jsonlines"])
def test_json_lines_are_counted(content_type: str) -> None:
    found = check_input(b'{"a": 1}\n[1, 2]\n\n', content_type)
    assert found.records == 2
    assert found.columns is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON: Expecting value (column 7)"),
        (b'{"a": 1}\n\n{"a": 2}\n', "line 2 is blank, but line 3 after it is not"),
        (b"\n\n", "the file has no records"),
        (b"", "the file is empty"),
        (b'{"a": "\xff"}\n', "line 1 is not UTF-8 text"),
    ],
)
def test_bad_json_lines_are_refused_naming_the_line(data: bytes, message: str) -> None:
    with pytest.raises(InvalidBatchFile) as caught:
        check_input(data, "application/jsonlines")
    assert message in str(caught.value)


def test_json_lines_split_on_newlines_only() -> None:
    # U+2028 may sit raw inside a JSON string; SageMaker's Line split does not break there.
    assert check_input('{"a": "x\u2028y"}\n'.encode(), "application/jsonlines").records == 1


def test_a_whole_json_document_is_checked_when_not_split_by_line() -> None:
    found = check_input(b'{\n  "instances": [1, 2]\n}\n', "application/json", split_type="None")
    assert found.records is None
    with pytest.raises(InvalidBatchFile, match="line 2 is not valid JSON"):
        check_input(b"{\n  oops\n}\n", "application/json", split_type="None")


def test_other_content_types_pass_unchecked() -> None:
    found = check_input(b"\x00\x01 binary", "application/x-recordio-protobuf")
    assert (found.records, found.columns, found.header) == (None, None, False)
    assert found.content_type == "application/x-recordio-protobuf"


# ---------------------------------------------------------------- transform_job_name


def test_job_name_is_model_and_run_when_it_fits() -> None:
    assert transform_job_name("churn", "run-1") == "churn-run-1"


def test_job_name_is_deterministic() -> None:
    assert transform_job_name("churn", RUN) == transform_job_name("churn", RUN)


def test_job_name_hashes_a_run_that_does_not_fit_the_pattern() -> None:
    name = transform_job_name("churn", "run_1")
    assert NAME.match(name)
    assert name.startswith("churn-run-1-")
    assert name != transform_job_name("churn", "run-1")


def test_job_name_of_a_long_model_and_run_is_shortened() -> None:
    name = transform_job_name("m" * 63, "r" * 80)
    assert len(name) <= 63
    assert NAME.match(name)


def test_job_name_refuses_a_bad_model_name() -> None:
    with pytest.raises(ValueError, match="model name"):
        transform_job_name("bad_model", RUN)


@given(model=MODEL, run=RUNS)
def test_job_name_always_fits_sagemaker(model: str, run: str) -> None:
    name = transform_job_name(model, run)
    assert len(name) <= 63
    assert NAME.match(name)


@given(model=MODEL, runs=st.lists(RUNS, min_size=2, max_size=2, unique=True))
def test_job_names_differ_per_run(model: str, runs: list[str]) -> None:
    assert transform_job_name(model, runs[0]) != transform_job_name(model, runs[1])


# ---------------------------------------------------------------- build_transform_request


def transform_request(batch: Batch | None = None, *, kms: str | None = KMS) -> dict[str, Any]:
    f = batch_file("batch/churn/input/2024/03/scores.csv")
    return build_transform_request(
        batch or Batch(),
        job_name=transform_job_name(f.model, RUN),
        model_name="churn-model-0123456789ab",
        bucket=BUCKET,
        manifest_key=manifest_key(f, RUN),
        output_prefix=output_prefix(f, RUN),
        kms_key_arn=kms,
        tags={"shepherd:model": "churn", "shepherd:run": RUN},
    )


def create_transform_job_shape() -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateTransformJob").input_shape


def test_request_fits_botocores_model() -> None:
    validate_parameters(transform_request(), create_transform_job_shape())


def test_request_without_kms_fits_botocores_model() -> None:
    validate_parameters(transform_request(kms=None), create_transform_job_shape())


@pytest.mark.parametrize("kms", [KMS, None])
def test_request_satisfies_patterns_and_enums(kms: str | None) -> None:
    # botocore's validator skips patterns and enums; the local cloud's checks them as AWS does.
    validate("CreateTransformJob", transform_request(kms=kms))


def test_request_reads_a_manifest_naming_the_one_file() -> None:
    request = transform_request()
    assert request["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "ManifestFile",
                "S3Uri": f"s3://{BUCKET}/artifacts/churn/batch/{RUN}/manifest.json",
            }
        },
        "ContentType": "text/csv",
        "SplitType": "Line",
    }


def test_request_writes_under_the_runs_output_prefix_encrypted() -> None:
    assert transform_request()["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/batch/churn/output/{RUN}/",
        "Accept": "text/csv",
        "AssembleWith": "Line",
        "KmsKeyId": KMS,
    }


def test_request_carries_the_batch_config() -> None:
    batch = Batch(
        instance_type="ml.c5.xlarge",
        instance_count=3,
        max_concurrent_transforms=4,
        max_payload_mb=20,
        strategy="SingleRecord",
        split_type="None",
        content_type="application/json",
        accept="application/json",
        assemble_with="None",
    )
    request = transform_request(batch)
    assert request["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 3, "VolumeKmsKeyId": KMS}
    assert (request["MaxConcurrentTransforms"], request["MaxPayloadInMB"], request["BatchStrategy"]) == (
        4,
        20,
        "SingleRecord",
    )
    assert request["TransformInput"]["ContentType"] == "application/json"
    assert request["TransformInput"]["SplitType"] == "None"
    assert request["TransformOutput"]["Accept"] == "application/json"
    assert request["TransformOutput"]["AssembleWith"] == "None"


def test_request_bounds_each_invocation() -> None:
    assert transform_request()["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1}


def test_request_tags_are_sorted_key_value_pairs() -> None:
    assert transform_request()["Tags"] == [
        {"Key": "shepherd:model", "Value": "churn"},
        {"Key": "shepherd:run", "Value": RUN},
    ]


def test_request_omits_kms_keys_without_a_key() -> None:
    request = transform_request(kms=None)
    assert "KmsKeyId" not in request["TransformOutput"]
    assert "VolumeKmsKeyId" not in request["TransformResources"]


def test_request_omits_data_processing_it_does_not_need() -> None:
    assert "DataProcessing" not in transform_request()


@pytest.mark.parametrize("instance_type", ["ml.g4dn.xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge", "ml.trn1.2xlarge"])
def test_request_leaves_volume_key_off_instances_with_local_storage(instance_type: str) -> None:
    # SageMaker encrypts instance storage itself and refuses a VolumeKmsKeyId for those instances.
    request = transform_request(Batch(instance_type=instance_type))
    assert request["TransformResources"] == {"InstanceType": instance_type, "InstanceCount": 1}
    assert request["TransformOutput"]["KmsKeyId"] == KMS


@pytest.mark.parametrize(
    "instance_type", ["ml.m5.large", "ml.c5.xlarge", "ml.m6i.large", "ml.p3.2xlarge", "ml.inf2.xlarge"]
)
def test_request_encrypts_the_volume_of_ebs_only_instances(instance_type: str) -> None:
    assert transform_request(Batch(instance_type=instance_type))["TransformResources"]["VolumeKmsKeyId"] == KMS


# ---------------------------------------------------------------- BatchSummary

STARTED = datetime(2024, 3, 8, 9, 30, tzinfo=UTC)


def completed_summary() -> BatchSummary:
    return BatchSummary(
        input_uri=f"s3://{BUCKET}/batch/churn/input/scores.csv",
        input_version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        job_name="churn-run-1",
        model_name="churn-model-0123456789ab",
        model_package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
        records=1000,
        output_uris=[f"s3://{BUCKET}/batch/churn/output/run-1/scores.csv.out"],
        moved_to_uri=f"s3://{BUCKET}/batch/churn/processed/abc-scores.csv",
        status="Completed",
        started=STARTED,
        finished=STARTED + timedelta(minutes=7),
    )


def test_summary_serialises_to_json_with_iso_timestamps() -> None:
    document = json.loads(completed_summary().to_json())
    assert document["status"] == "Completed"
    assert document["records"] == 1000
    assert document["started"] == "2024-03-08T09:30:00Z"
    assert document["finished"] == "2024-03-08T09:37:00Z"
    assert document["reason"] is None


def test_summary_round_trips() -> None:
    summary = completed_summary()
    assert BatchSummary.model_validate_json(summary.to_json()) == summary


def test_summary_reads_step_functions_timestamps() -> None:
    summary = completed_summary().model_copy(update={}).model_dump()
    summary |= {"started": "2024-03-08T09:30:00.123Z", "finished": "2024-03-08T09:31:00Z"}
    assert BatchSummary.model_validate(summary).started.microsecond == 123000


def test_failed_summary_needs_a_reason() -> None:
    fields = completed_summary().model_dump() | {"status": "Failed", "reason": None}
    with pytest.raises(ValidationError, match="needs a reason"):
        BatchSummary.model_validate(fields)


def test_failed_summary_with_a_reason_and_no_outputs() -> None:
    fields = completed_summary().model_dump() | {
        "status": "Failed",
        "reason": "line 7 has 3 fields",
        "output_uris": [],
        "records": None,
    }
    assert json.loads(BatchSummary.model_validate(fields).to_json())["reason"] == "line 7 has 3 fields"


def test_summary_refuses_naive_timestamps() -> None:
    fields = completed_summary().model_dump() | {"started": datetime(2024, 3, 8, 9, 30)}
    with pytest.raises(ValidationError):
        BatchSummary.model_validate(fields)


def test_summary_refuses_finishing_before_starting() -> None:
    fields = completed_summary().model_dump() | {"finished": STARTED - timedelta(seconds=1)}
    with pytest.raises(ValidationError, match="before started"):
        BatchSummary.model_validate(fields)
