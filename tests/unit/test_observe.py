"""The judge's CloudWatch queries (in CloudWatch's own statistic grammar) and the bins it judges once only."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from shepherd.judge import Baseline, Metric, StageObservations
from shepherd.rollout.observe import Ledger, decode_ledger, encode_ledger, observations, queries, settle

# Statistics-definitions: bounds are numbers "with up to 10 decimal places", no exponent.
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Statistics-definitions.html
TRIMMED_COUNT = re.compile(r"^TC\(:\d+(\.\d{1,10})?\)$")


@pytest.mark.parametrize(
    ("threshold_ms", "bound"), [(200, "200000"), (1000, "1000000"), (2500.5, "2500500"), (0.25, "250")]
)
def test_latency_thresholds_are_plain_decimals_of_microseconds(threshold_ms: float, bound: str) -> None:
    built = queries("churn", {"champion": "v1", "candidate": "v2"}, threshold_ms)
    statistics = [q["MetricStat"]["Stat"] for q in built if q["Id"].endswith("_fast")]
    assert statistics == [f"TC(:{bound})"] * 2
    assert all(TRIMMED_COUNT.match(statistic) for statistic in statistics)


# ------------------------------------------------------------------ a judged bin keeps the values the judge saw

START = 1_764_064_830.0  # 2025-11-25 10:00:30 UTC: minute 0 of the stage is 10:01
FIRST = 1_764_064_860


def _results(points: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    return [{"Id": query, "Timestamps": sorted(p), "Values": [p[t] for t in sorted(p)]} for query, p in points.items()]


def _observe(points: dict[str, dict[int, float]], now: float) -> StageObservations:
    return observations(_results(points), started_epoch=START, now_epoch=now, latency=False)


def test_a_datapoint_that_arrives_after_a_look_never_changes_the_bin_that_look_judged() -> None:
    points: dict[str, dict[int, float]] = {"candidate_requests": {FIRST: 100, FIRST + 60: 90}, "candidate_errors": {}}
    ledger = Ledger()
    first = settle(_observe(points, FIRST + 240), ledger)  # minutes 0 and 1 complete
    assert [(b.minute, b.sample_count) for b in first.candidate] == [(0, 100), (1, 90)]
    # CloudWatch then receives more for minutes 1 and 2 (none before), and minute 3's
    points["candidate_requests"] |= {FIRST + 60: 120, FIRST + 120: 80, FIRST + 180: 70}
    points["candidate_errors"] |= {FIRST + 60: 5}
    second = settle(_observe(points, FIRST + 360), decode_ledger(encode_ledger(ledger)))
    # minutes 0 and 1 as the first look saw them; 2 and 3, judged for the first time, as CloudWatch has them now
    assert [(b.minute, b.sample_count, b.error_sum) for b in second.candidate] == [
        (0, 100, 0),
        (1, 90, 0),
        (2, 80, 0),
        (3, 70, 0),
    ]


def test_a_minute_judged_without_a_datapoint_stays_without_one() -> None:
    points: dict[str, dict[int, float]] = {"champion_requests": {FIRST: 50}}
    ledger = Ledger()
    settle(_observe(points, FIRST + 240), ledger)
    points["champion_requests"][FIRST + 60] = 40  # minute 1 arrives after it was judged empty
    later = settle(_observe(points, FIRST + 300), ledger)
    assert [b.minute for b in later.champion] == [0]


def test_full_and_the_watch_keep_the_baseline_of_their_first_look_that_had_one() -> None:
    ledger = Ledger()
    observed = _observe({}, FIRST + 240)
    empty = {Metric.ERROR_RATE: Baseline(0, 0)}
    assert settle(replace(observed, baseline=empty), ledger).baseline == empty  # read again at the next look
    first = settle(replace(observed, baseline={Metric.ERROR_RATE: Baseline(1000, 10)}), ledger)
    later = settle(replace(observed, baseline={Metric.ERROR_RATE: Baseline(1200, 30)}), ledger)
    assert first.baseline == later.baseline == {Metric.ERROR_RATE: Baseline(1000, 10)}


def test_the_ledger_survives_its_encoding_and_refuses_what_is_not_one() -> None:
    ledger = Ledger()
    settle(
        replace(
            _observe({"candidate_requests": {FIRST: 10}, "candidate_errors": {FIRST: 1}}, FIRST + 200),
            baseline={Metric.LATENCY: Baseline(5, 1)},
        ),
        ledger,
    )
    assert decode_ledger(json.loads(json.dumps(encode_ledger(ledger)))) == ledger
    import base64
    import zlib

    def packed(document: object) -> dict[str, object]:
        return {"format": 1, "ledger": base64.b64encode(zlib.compress(json.dumps(document).encode())).decode()}

    impossible = {"looked": 1, "bins": {"champion": {"0": [1, 2, -1]}, "candidate": {}}, "baseline": None}
    refused = [None, {"format": 99}, {"format": 1, "ledger": "not base64!"}, {"format": 1, "ledger": "AAAA"}]
    for item in [*refused, packed([]), packed(impossible)]:
        with pytest.raises(ValueError, match=r"ledger|is not a bin"):
            decode_ledger(item)
