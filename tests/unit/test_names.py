"""Deterministic execution names and dataset markers."""

from __future__ import annotations

import re

import pytest
from shepherd.events.names import MAX_EXECUTION_NAME, execution_name
from shepherd.events.s3 import MalformedEvent, dataset_marker
from shepherd.names import EXECUTION_UNSAFE, SAGEMAKER_UNSAFE, bounded, digest


def test_the_same_identity_gives_the_same_name_and_a_new_version_a_new_one():
    first = execution_name("churn-2026-11-25", "bucket", "training/churn/2026-11-25/_READY", "v1")
    assert first == execution_name("churn-2026-11-25", "bucket", "training/churn/2026-11-25/_READY", "v1")
    assert first != execution_name("churn-2026-11-25", "bucket", "training/churn/2026-11-25/_READY", "v2")
    assert first.startswith("churn-2026-11-25-")


def test_names_fit_step_functions_length_and_alphabet():
    name = execution_name("a very/long dataset name with spaces & symbols " * 5, "x")
    assert len(name) <= MAX_EXECUTION_NAME
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name)


def test_a_marker_names_its_model_and_dataset():
    marker = dataset_marker("training/churn/2026/11/25/_READY")
    assert (marker.model, marker.dataset, marker.prefix) == ("churn", "2026/11/25", "training/churn/2026/11/25/")


@pytest.mark.parametrize("key", ["training/churn/_READY", "training/churn/ds/part.csv", "batch/churn/ds/_READY"])
def test_keys_that_are_not_markers_are_refused(key):
    with pytest.raises(MalformedEvent, match="is not a dataset marker"):
        dataset_marker(key)


def test_a_bounded_name_keeps_its_tag_and_cuts_the_readable_part():
    tag = digest("run-1", length=8)
    name = bounded("churn model/" + "x" * 100, tag, limit=63, unsafe=SAGEMAKER_UNSAFE)
    assert len(name) == 63
    assert name.startswith("churn-model-x")
    assert name.endswith(f"-{tag}")
    assert bounded("///", tag, limit=63, unsafe=SAGEMAKER_UNSAFE) == tag  # nothing readable: the tag alone


def test_only_execution_names_keep_a_dash_left_at_the_cut():
    readable = "a" * 8 + "-" + "b" * 10
    assert bounded(readable, "tag", limit=13, unsafe=EXECUTION_UNSAFE) == "aaaaaaaa-tag"
    assert bounded(readable, "tag", limit=13, unsafe=EXECUTION_UNSAFE, trim=False) == "aaaaaaaa--tag"
