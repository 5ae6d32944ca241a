"""The statistics math of localcloud/cloudwatch/, against AWS's definitions.

AWS ("CloudWatch statistics definitions"): p99 is the maximum of the data once the highest
1% are ignored (nearest rank); TM/TC/TS/WM/PR with values count v in (lower, upper]; with
percentages the bounds are the data's own percentiles; percentile-family statistics need
raw values (a statistic set counts only when it describes identical values) and are not
computed over negative data.
"""

from __future__ import annotations

import pytest

from localcloud.cloudwatch.alarms import _valid_for_alarms, decide_alarm_state
from localcloud.cloudwatch.metric_math import MathError, _Parser
from localcloud.cloudwatch.statistics import Samples, compute_statistic, nearest_rank, parse_statistic


def samples(*values: float, counts: list[float] | None = None) -> Samples:
    s = Samples()
    for value, count in zip(values, counts or [1.0] * len(values), strict=True):
        s.add_value(value, count)
    return s


def stat(text: str, data: Samples) -> float | None:
    return compute_statistic(parse_statistic(text), data)


ONE_TO_HUNDRED = samples(*range(1, 101))


def test_simple_statistics_include_statistic_sets():
    data = samples(1, 2, 3)
    data.add_set(sample_count=4, total=40, low=5, high=15)
    assert stat("SampleCount", data) == 7
    assert stat("Sum", data) == 46
    assert stat("Average", data) == pytest.approx(46 / 7)
    assert stat("Minimum", data) == 1
    assert stat("Maximum", data) == 15


@pytest.mark.parametrize(("text", "expected"), [("p50", 50), ("p90", 90), ("p99", 99), ("p100", 100), ("p0", 1)])
def test_percentiles_are_nearest_rank(text, expected):
    assert stat(text, ONE_TO_HUNDRED) == expected


def test_percentiles_of_small_sets_are_observed_values():
    data = samples(10, 20, 30, 40)
    assert stat("p50", data) == 20  # rank ceil(0.5 * 4) = 2
    assert stat("p75", data) == 30
    assert stat("p76", data) == 40
    assert stat("p99.9", data) == 40
    assert stat("p25.5", samples(*range(1, 11))) == 3  # rank ceil(2.55) = 3


def test_percentiles_weight_counts():
    data = samples(100.0, 900.0, counts=[99, 1])
    assert stat("p99", data) == 100.0
    assert stat("p99.5", data) == 900.0
    assert nearest_rank([(1.0, 2.0), (5.0, 2.0)], 50) == 1.0


def test_percentile_rank_is_exclusive_below_inclusive_above():
    assert stat("PR(:25)", ONE_TO_HUNDRED) == 25.0
    assert stat("PR(25:)", ONE_TO_HUNDRED) == 75.0
    assert stat("PR(10:20)", ONE_TO_HUNDRED) == 10.0  # 11..20
    assert stat("PR(:0.5)", ONE_TO_HUNDRED) == 0.0


def test_trimmed_count_counts_exactly():
    latencies = samples(100_000, 200_000, 250_000, 250_001, 900_000, counts=[10, 5, 3, 1, 1])
    assert stat("TC(:250000)", latencies) == 18  # at or below the threshold
    assert stat("TC(250000:)", latencies) == 2  # strictly above it
    assert stat("TC(80:500)", samples(80, 81, 500, 501)) == 2  # AWS's own example: 80 exclusive, 500 inclusive
    assert stat("TC(:1)", latencies) == 0  # data, but none in range: a count of zero


def test_trimmed_statistics_with_percentages():
    assert stat("tm90", samples(*range(1, 11))) == pytest.approx(5.0)  # drops the top 10%: mean of 1..9
    assert stat("TM(10%:90%)", samples(*range(1, 11))) == pytest.approx(5.5)  # 2..9
    assert stat("tc90", samples(*range(1, 11))) == 9
    assert stat("TS(80%:)", samples(*range(1, 11))) == 19  # AWS: without the lowest 80% -> 9 + 10
    assert stat("ts90", samples(*range(1, 11))) == 45
    assert stat("IQM", ONE_TO_HUNDRED) == pytest.approx(sum(range(26, 76)) / 50)
    assert stat("tm99", ONE_TO_HUNDRED) == pytest.approx(50.0)


def test_trimmed_statistics_with_values():
    data = samples(100, 150, 151, 1000, 1001)
    assert stat("TM(150:1000)", data) == pytest.approx((151 + 1000) / 2)  # AWS: drops <= 150 and > 1000
    assert stat("TS(150:1000)", data) == 1151
    assert stat("TM(2000:3000)", data) is None  # nothing in range: no mean


def test_winsorized_mean_clamps_to_the_boundaries():
    data = samples(*range(1, 11))
    # WM(10%:90%): the top 10% count as p90 (9); values at or below p10 (1) stay at 1.
    assert stat("WM(10%:90%)", data) == pytest.approx((sum(range(1, 10)) + 9) / 10)
    assert stat("wm90", data) == pytest.approx((sum(range(1, 10)) + 9) / 10)
    assert stat("WM(2:5)", data) == pytest.approx((2 + 2 + 3 + 4 + 5 * 6) / 10)  # 1 -> 2, 6..10 -> 5


def test_statistic_sets_hide_percentiles_unless_they_are_raw_values():
    data = Samples()
    data.add_set(sample_count=10, total=55, low=1, high=10)
    assert stat("Sum", data) == 55
    assert stat("SampleCount", data) == 10
    assert stat("p99", data) is None
    assert stat("TC(:5)", data) is None
    identical = Samples()
    identical.add_set(sample_count=3, total=15, low=5, high=5)  # AWS reads this as three 5s
    assert stat("p50", identical) == 5
    assert stat("TC(:5)", identical) == 3


def test_negative_values_have_no_percentiles():
    data = samples(-1, 2, 3)
    assert stat("p50", data) is None
    assert stat("Sum", data) == 4


def test_empty_periods_have_no_value():
    assert stat("Sum", Samples()) is None
    assert stat("p99", Samples()) is None


@pytest.mark.parametrize(
    "text",
    [
        *("Avg", "p101", "P99", "TM(:)", "TM(10%:500)", "PR(10%:90%)", "TM(90%:10%)", "TC(a:b)", "tm", "p-1"),
        # Statistics-definitions: bounds are numbers with at most 10 decimal places, never an exponent.
        *("TC(:1e+06)", "TC(:1E6)", "PR(:0.12345678901)"),
    ],
)
def test_invalid_statistics_are_refused(text):
    with pytest.raises(ValueError):
        parse_statistic(text)


def test_statistic_parsing():
    assert not parse_statistic("Sum").extended
    assert parse_statistic("p99.99").percentile == pytest.approx(99.99)
    tc = parse_statistic("TC(:250000)")
    assert tc.kind == "TC"
    assert tc.lower is None
    assert tc.upper is not None
    assert tc.upper.value == 250000
    assert not tc.upper.percent


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("p99", True),
        ("tm90", True),
        ("tc99", True),
        ("IQM", True),
        ("PR(:250000)", True),
        ("TC(10%:90%)", True),
        ("TM(5%:95%)", False),
        ("TC(:250000)", False),
        ("TS(:90%)", False),
    ],
)
def test_alarms_take_the_documented_extended_statistics(text, valid):
    assert _valid_for_alarms(parse_statistic(text)) is valid


# ---------------------------------------------------------------- alarm decisions

GT = "GreaterThanThreshold"


@pytest.mark.parametrize(
    ("values", "treat", "expected"),
    [
        ([1, 1, 1], "missing", "OK"),
        ([5, 5, 5], "missing", "ALARM"),
        ([5, 1, 5], "missing", "OK"),
        ([None, None, None], "missing", "INSUFFICIENT_DATA"),
        ([None, None, None], "ignore", None),
        ([None, None, None], "breaching", "ALARM"),
        ([None, None, None], "notBreaching", "OK"),
        ([1, None, None], "missing", "OK"),
        ([1, None, None], "breaching", "OK"),  # 2 of 3 breaching, 3 needed
        ([None, None, 5], "missing", "ALARM"),  # AWS's "- - X" row
        ([None, None, 5], "ignore", None),
        ([None, None, 5], "notBreaching", "OK"),
        ([5, None, 5], "breaching", "ALARM"),
    ],
)
def test_alarm_decisions_follow_treat_missing_data(values, treat, expected):
    state, _ = decide_alarm_state(values, GT, 2.0, 3, treat)
    assert state == expected


def test_m_out_of_n():
    assert decide_alarm_state([5, 1, 5, 1, 1], GT, 2.0, 2, "missing") == ("ALARM", 2)
    assert decide_alarm_state([5, 1, 1, 1, 1], GT, 2.0, 2, "missing") == ("OK", 1)
    assert decide_alarm_state([2, 2], "GreaterThanOrEqualToThreshold", 2.0, 2, "missing")[0] == "ALARM"
    assert decide_alarm_state([2, 2], "LessThanThreshold", 2.0, 1, "missing")[0] == "OK"
    assert decide_alarm_state([2, 3], "LessThanOrEqualToThreshold", 2.0, 1, "missing")[0] == "ALARM"


def test_metric_math_parses_precedence():
    tree = _Parser("100 * errors / (invocations + 1) - 2 ^ 3").parse()
    assert tree[0] == "op"
    assert tree[1] == "-"
    with pytest.raises(MathError):
        _Parser("m1 +").parse()
    with pytest.raises(MathError):
        _Parser("m1 $ m2").parse()
