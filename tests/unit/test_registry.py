"""Tests for shepherd.registry: the CreateModelPackage request, its metadata limits, and reading metrics back."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import regex
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from shepherd.config import ModelConfig, load_config
from shepherd.registry import METRIC_PREFIX, lineage_document, metrics_from_package, package_request

from localcloud.sagemaker.validation import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn" / "shepherd.yaml"
SOURCE = "models/churn/shepherd.yaml"
MINIMAL: dict[str, Any] = {"framework": "sklearn", "entry_point": "train.py"}
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "shepherd-data-123456789012"
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/churn-train-0123456789ab"
LINEAGE = {
    "execution": "churn-2024-03-08-0123456789abcdef",
    "dataset": f"s3://{BUCKET}/training/churn/2024-03-08/",
    "data_digest": "ab" * 32,
    "training_job_arn": JOB_ARN,
}
# SageMaker's CustomerMetadataProperties patterns (botocore's service model), anchored; \p{..} needs `regex`.
METADATA_VALUE = regex.compile(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
METADATA_KEY = METADATA_VALUE


def config_of(**sections: Any) -> ModelConfig:
    return load_config(yaml.safe_dump({**copy.deepcopy(MINIMAL), **sections}, sort_keys=False), SOURCE)


def request_of(config: ModelConfig, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "group": "churn",
        "image": IMAGE,
        "model_data_url": f"s3://{BUCKET}/artifacts/churn/run-1/model.tar.gz",
        "region": "us-east-1",
        "metrics": {"validation:auc": 0.82, "validation:accuracy": 0.81},
        "lineage": LINEAGE,
        "lineage_uri": f"s3://{BUCKET}/artifacts/churn/run-1/lineage.json",
        "description": "churn trained by churn-train-0123456789ab. all gates passed",
    }
    return package_request(config, **(arguments | overrides))


def assert_valid_metadata(metadata: dict[str, str]) -> None:
    assert 1 <= len(metadata) <= 50
    for key, value in metadata.items():
        assert 1 <= len(key) <= 128, key
        assert METADATA_KEY.match(key), key
        assert 1 <= len(value) <= 256, (key, value)
        assert METADATA_VALUE.match(value), (key, value)


# ---------------------------------------------------------------- the request


def test_request_fits_sagemakers_create_model_package_shape() -> None:
    validate("CreateModelPackage", request_of(load_config(EXAMPLE.read_text(), SOURCE)))


def test_minimal_config_request_fits_too() -> None:
    validate("CreateModelPackage", request_of(config_of()))


def test_automatic_approval_registers_approved() -> None:
    assert request_of(config_of(registry={"approval": "automatic"}))["ModelApprovalStatus"] == "Approved"


def test_manual_approval_waits_for_a_human() -> None:
    assert request_of(config_of(registry={"approval": "manual"}))["ModelApprovalStatus"] == "PendingManualApproval"


def test_approval_is_manual_by_default() -> None:
    assert request_of(config_of())["ModelApprovalStatus"] == "PendingManualApproval"


def test_container_serves_the_inference_script_from_inside_the_repacked_model() -> None:
    # An isolated container has no network: its code is under code/ in model.tar.gz, as the SDK repacks it
    container = request_of(load_config(EXAMPLE.read_text(), SOURCE))["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/artifacts/churn/run-1/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"


def test_container_falls_back_to_the_entry_point() -> None:
    container = request_of(config_of())["InferenceSpecification"]["Containers"][0]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "train.py"


def test_metadata_holds_metrics_lineage_and_the_lineage_document() -> None:
    metadata = request_of(config_of())["CustomerMetadataProperties"]
    assert metadata["metric:validation:auc"] == "0.82"
    assert metadata["shepherd:execution"] == LINEAGE["execution"]
    assert metadata["shepherd:lineage"] == f"s3://{BUCKET}/artifacts/churn/run-1/lineage.json"
    assert request_of(config_of())["MetadataProperties"] == {"GeneratedBy": JOB_ARN}


# ---------------------------------------------------------------- metadata limits


# Any characters but the C0/C1 controls (the next test covers those too).
PRINTABLE_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=600)


def metadata_for(values: list[str]) -> dict[str, str]:
    lineage = {f"field{index}": value for index, value in enumerate(values)}
    return request_of(config_of(), lineage=lineage, lineage_uri=values[0])["CustomerMetadataProperties"]


@given(values=st.lists(PRINTABLE_TEXT, min_size=1, max_size=15))
def test_metadata_values_fit_sagemakers_pattern_for_any_printable_lineage(values: list[str]) -> None:
    # Given lineage values of free text (S3 keys and dataset names may hold any character)
    # When the request is built
    metadata = metadata_for(values)
    # Then every value is at most 256 characters of SageMaker's allowed alphabet
    for value in metadata.values():
        assert len(value) <= 256
        assert METADATA_VALUE.match(value), repr(value)


@example(values=["training/churn/week\t1/"])
@given(values=st.lists(st.text(min_size=1, max_size=600), min_size=1, max_size=15))
def test_metadata_values_fit_sagemakers_pattern_for_any_lineage_string(values: list[str]) -> None:
    for value in metadata_for(values).values():
        assert len(value) <= 256
        assert METADATA_VALUE.match(value), repr(value)


def test_empty_lineage_values_do_not_make_empty_metadata() -> None:
    metadata = request_of(config_of(), lineage=LINEAGE | {"marker_version": ""})["CustomerMetadataProperties"]
    assert_valid_metadata(metadata)


@pytest.mark.parametrize("metric", ["validation:f1 (macro)", "validation:" + "x" * 130])
def test_metric_names_make_valid_metadata_keys(metric: str) -> None:
    metadata = request_of(config_of(), metrics={metric: 0.5})["CustomerMetadataProperties"]
    assert_valid_metadata(metadata)


def test_metadata_stays_within_fifty_entries() -> None:
    metrics = {f"m{index:02d}": float(index) for index in range(60)}
    lineage = {f"l{index:02d}": "x" for index in range(30)}
    metadata = request_of(config_of(), metrics=metrics, lineage=lineage)["CustomerMetadataProperties"]
    assert len(metadata) <= 50


def test_the_champion_comparison_is_kept_and_the_metrics_make_room_for_it() -> None:
    # Given more metrics and lineage than fit, and a champion comparison
    metrics = {f"m{index:02d}": float(index) for index in range(60)}
    lineage = {f"l{index:02d}": "x" for index in range(30)}
    compared = {
        "shepherd:problem": "regression",
        "shepherd:paired-rows": "500",
        "shepherd:paired-disagreement": "0.12",
        "shepherd:paired-band": "1.5",
        "shepherd:evaluation": f"s3://{BUCKET}/artifacts/churn/run-1/evaluation.json",
    }
    # When the request is built, then every comparison entry is there, within the fifty
    metadata = request_of(config_of(), metrics=metrics, lineage=lineage, comparison=compared)[
        "CustomerMetadataProperties"
    ]
    assert {key: metadata[key] for key in compared} == compared
    assert_valid_metadata(metadata)


def test_description_fits_the_entity_description_limit() -> None:
    request = request_of(config_of(), description="long summary; " * 200)
    assert len(request["ModelPackageDescription"]) <= 1024
    validate("CreateModelPackage", request)


# ---------------------------------------------------------------- metrics_from_package


@given(
    metrics=st.dictionaries(
        st.from_regex(r"\A[a-z][a-z0-9:_-]{0,40}\Z"),
        st.floats(allow_nan=False),
        max_size=30,
    )
)
def test_metrics_round_trip_through_the_package(metrics: dict[str, float]) -> None:
    request = request_of(config_of(), metrics=metrics)
    assert metrics_from_package(request) == metrics


def test_metrics_from_package_ignores_other_and_unreadable_entries() -> None:
    description = {
        "CustomerMetadataProperties": {
            f"{METRIC_PREFIX}auc": "0.8",
            f"{METRIC_PREFIX}broken": "not a number",
            "shepherd:execution": "run-1",
        }
    }
    assert metrics_from_package(description) == {"auc": 0.8}


def test_a_package_without_metadata_has_no_metrics() -> None:
    assert metrics_from_package({}) == {}
    assert metrics_from_package({"CustomerMetadataProperties": None}) == {}


def test_lineage_document_is_sorted_json() -> None:
    assert lineage_document(b=1, a="x") == '{\n  "a": "x",\n  "b": 1\n}'
