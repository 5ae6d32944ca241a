"""The judge's CloudWatch queries are written in CloudWatch's own statistic grammar."""

from __future__ import annotations

import re

import pytest
from shepherd.rollout.observe import queries

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
