"""shepherd.rollout.quality: captured predictions joined with ground truth, as the judge's bins."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from shepherd.judge import FeedbackBin, PairedBin
from shepherd.rollout.quality import (
    Prediction,
    Rule,
    feedback_bins,
    ground_truth,
    hour_prefixes,
    paired_bins,
    predictions,
    wrong,
)

START = datetime(2026, 11, 25, 10, 0, 30, tzinfo=UTC).timestamp()  # the stage's first whole minute: 10:01


def capture_line(inference_id: str | None, at: str, data: str, encoding: str = "CSV") -> str:
    metadata = {"eventId": "e", "inferenceTime": at} | ({"inferenceId": inference_id} if inference_id else {})
    output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": data, "encoding": encoding}
    return json.dumps({"captureData": {"endpointOutput": output}, "eventMetadata": metadata, "eventVersion": "0"})


def truth_line(event_id: str, data: str) -> str:
    record = {"groundTruthData": {"data": data, "encoding": "CSV"}, "eventMetadata": {"eventId": event_id}}
    return json.dumps(record | {"eventVersion": "0"})


def test_capture_lines_give_identified_predictions_with_their_first_value() -> None:
    lines = [
        capture_line("a", "2026-11-25T10:01:05Z", "0.83\n"),
        capture_line("b", "2026-11-25T10:02:00Z", base64.b64encode(b"0.1").decode(), "BASE64"),
        capture_line("c", "2026-11-25T10:02:00Z", '{"predictions": [0.7, 0.2]}', "JSON"),
        capture_line(None, "2026-11-25T10:02:00Z", "0.5"),  # no InferenceId: cannot be joined
        capture_line("d", "not a time", "0.5"),
        "not json",
        json.dumps({"eventMetadata": {"inferenceId": "e", "inferenceTime": "2026-11-25T10:02:00Z"}}),  # no output
    ]
    found = list(predictions(lines))
    assert [(p.inference_id, p.output) for p in found] == [("a", "0.83"), ("b", "0.1"), ("c", "0.7")]
    assert found[0].epoch == datetime(2026, 11, 25, 10, 1, 5, tzinfo=UTC).timestamp()


def test_ground_truth_maps_event_ids_to_labels_the_last_upload_winning() -> None:
    lines = [truth_line("a", "1"), truth_line("b", "0"), "garbage", truth_line("a", "0")]
    assert ground_truth(lines) == {"a": "0", "b": "0"}


@pytest.mark.parametrize(
    ("output", "label", "rule", "expected"),
    [
        ("0.83", "1", Rule(), False),
        ("0.83", "0", Rule(), True),
        ("0.5", "1", Rule(), False),  # at the threshold: label 1
        ("0.3", "1", Rule(decision_threshold=0.2), False),
        ("2", "2", Rule(), False),  # class ids
        ("3", "2", Rule(), True),
        ("cat", "cat", Rule(), False),
        ("cat", "dog", Rule(), True),
        ("10.4", "10.0", Rule(tolerance=0.5), False),  # regression
        ("11.0", "10.0", Rule(tolerance=0.5), True),
    ],
)
def test_wrong_follows_the_rule(output: str, label: str, rule: Rule, expected: bool) -> None:
    assert wrong(output, label, rule) is expected


def _at(minute: int, second: int = 10) -> float:
    return START + 30 + 60 * minute + second  # minute m of the stage, `second` into it


def test_feedback_bins_count_labelled_predictions_per_stage_minute() -> None:
    captured = [
        Prediction("a", _at(0), "0.9"),
        Prediction("b", _at(0), "0.9"),
        Prediction("c", _at(2), "0.1"),
        Prediction("d", _at(2), "0.1"),  # never labelled: not judged
        Prediction("a", _at(3), "0.9"),  # a duplicate capture of "a" counts once
        Prediction("e", START - 5, "0.9"),  # before the stage
    ]
    labels = {"a": "1", "b": "0", "c": "1", "e": "0"}
    assert feedback_bins(captured, labels, started_epoch=START, rule=Rule()) == (
        FeedbackBin(minute=0, labelled=2, misclassified=1),
        FeedbackBin(minute=2, labelled=1, misclassified=1),
    )


def test_paired_bins_count_discordant_labelled_pairs_by_the_champions_minute() -> None:
    champion = [Prediction(i, _at(0), "0.9") for i in "abcd"] + [Prediction("x", _at(1), "0.9")]
    candidate = [
        Prediction("a", _at(0, 40), "0.9"),  # both right
        Prediction("b", _at(1, 1), "0.1"),  # candidate only wrong (its answer came a minute later)
        Prediction("c", _at(0), "0.1"),  # both wrong... label 0: the champion is wrong, the candidate right
        Prediction("d", _at(0), "0.9"),  # unlabelled
        Prediction("y", _at(1), "0.9"),  # the champion never answered it (not captured): no pair
    ]
    labels = {"a": "1", "b": "1", "c": "0", "y": "1", "x": "1"}
    assert paired_bins(champion, candidate, labels, started_epoch=START, rule=Rule()) == (
        PairedBin(minute=0, pairs=3, candidate_only=1, champion_only=1),
    )


def test_hour_prefixes_cover_every_hour_of_the_window() -> None:
    start = datetime(2026, 11, 25, 22, 59, tzinfo=UTC).timestamp()
    end = datetime(2026, 11, 26, 0, 1, tzinfo=UTC).timestamp()
    assert hour_prefixes("feedback/churn/", start, end) == [
        "feedback/churn/2026/11/25/22/",
        "feedback/churn/2026/11/25/23/",
        "feedback/churn/2026/11/26/00/",
    ]
