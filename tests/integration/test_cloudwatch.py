"""CloudWatch through boto3 against the session's local cloud: what Shepherd's judge and alarms rely on.

Each test writes to its own namespace, so tests (and other modules' endpoint metrics) never
see each other's data. The cloud runs at time scale 60: a 60-second alarm period is one
wall second.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import cloudwatch as local_cloudwatch
from localcloud.server import LocalCloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _cloudwatch(cloud: LocalCloud) -> None:
    """LocalCloud.start() installs it already: a second install() keeps the cloud's running evaluator."""
    local_cloudwatch.install(cloud)


@pytest.fixture
def cw(cloud: LocalCloud) -> Any:
    return cloud.client("cloudwatch")


@pytest.fixture
def namespace() -> str:
    return f"Shepherd/Test-{uuid.uuid4().hex[:8]}"


def _dims(endpoint: str = "ep", variant: str | None = "A") -> list[dict[str, str]]:
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    if variant is not None:
        dims.append({"Name": "VariantName", "Value": variant})
    return dims


def _minute(cloud: LocalCloud, minutes_ago: int) -> datetime:
    now = cloud.clock.now().replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


def _stats(cw: Any, namespace: str, name: str, dims: list[dict[str, str]], start: datetime, **kwargs: Any) -> list:
    points = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=dims,
        StartTime=start,
        EndTime=start + timedelta(minutes=10),
        Period=kwargs.pop("Period", 60),
        **kwargs,
    )["Datapoints"]
    return sorted(points, key=lambda p: p["Timestamp"])


def test_dimensions_match_exactly(cloud, cw, namespace):
    t0 = _minute(cloud, 30)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": _dims("ep", "A"), "Timestamp": t0, "Value": 7},
            {"MetricName": "Invocations", "Dimensions": _dims("ep", "B"), "Timestamp": t0, "Value": 3},
        ],
    )
    # AWS: a query by EndpointName alone matches no datum that also has a VariantName.
    assert _stats(cw, namespace, "Invocations", _dims("ep", None), t0, Statistics=["Sum"]) == []
    only_a = _stats(cw, namespace, "Invocations", _dims("ep", "A"), t0, Statistics=["Sum"])
    assert [p["Sum"] for p in only_a] == [7]
    reversed_order = list(reversed(_dims("ep", "B")))
    assert [p["Sum"] for p in _stats(cw, namespace, "Invocations", reversed_order, t0, Statistics=["Sum"])] == [3]
    assert _stats(cw, namespace, "Invocations", _dims("other", "A"), t0, Statistics=["Sum"]) == []


def test_sums_and_sample_counts_per_aligned_period(cloud, cw, namespace):
    t0 = _minute(cloud, 40)
    dims = _dims()
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Latency", "Dimensions": dims, "Timestamp": t0 + timedelta(seconds=5), "Value": 10},
            {
                "MetricName": "Latency",
                "Dimensions": dims,
                "Timestamp": t0 + timedelta(seconds=50),
                "Values": [20, 30],
                "Counts": [2, 3],
            },
            {
                "MetricName": "Latency",
                "Dimensions": dims,
                "Timestamp": t0 + timedelta(minutes=1, seconds=1),
                "StatisticValues": {"SampleCount": 4, "Sum": 100, "Minimum": 5, "Maximum": 50},
            },
            {"MetricName": "Latency", "Dimensions": dims, "Timestamp": t0 + timedelta(minutes=3), "Value": 1},
        ],
    )
    # A StartTime inside a minute is rounded down to it, as AWS does: periods start at t0.
    points = _stats(
        cw,
        namespace,
        "Latency",
        dims,
        t0 + timedelta(seconds=20),
        Statistics=["Sum", "SampleCount", "Average", "Minimum", "Maximum"],
    )
    assert [p["Timestamp"].timestamp() for p in points] == [(t0 + timedelta(minutes=m)).timestamp() for m in (0, 1, 3)]
    assert [p["Sum"] for p in points] == [10 + 40 + 90, 100, 1]
    assert [p["SampleCount"] for p in points] == [6, 4, 1]
    assert points[0]["Average"] == pytest.approx(140 / 6)
    assert (points[1]["Minimum"], points[1]["Maximum"]) == (5, 50)
    five_minutes = _stats(cw, namespace, "Latency", dims, t0, Statistics=["Sum", "SampleCount"], Period=300)
    assert [(p["Sum"], p["SampleCount"]) for p in five_minutes] == [(241, 11)]


def _latencies(cw: Any, namespace: str, t0: datetime) -> None:
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "ModelLatency",
                "Dimensions": _dims(),
                "Timestamp": t0 + timedelta(seconds=10),
                "Values": [float(v) for v in range(1, 101)],
                "Counts": [1.0] * 100,
                "Unit": "Microseconds",
            }
        ],
    )


def test_percentiles_and_threshold_counts(cloud, cw, namespace):
    t0 = _minute(cloud, 50)
    _latencies(cw, namespace, t0)
    [point] = _stats(
        cw, namespace, "ModelLatency", _dims(), t0, ExtendedStatistics=["p50", "p90", "p99", "TC(:25)", "PR(:25)"]
    )
    assert point["ExtendedStatistics"] == {"p50": 50, "p90": 90, "p99": 99, "TC(:25)": 25, "PR(:25)": 25}
    assert point["Unit"] == "Microseconds"

    def stat(text: str) -> list[float]:
        result = cw.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "q",
                    "MetricStat": {
                        "Metric": {"Namespace": namespace, "MetricName": "ModelLatency", "Dimensions": _dims()},
                        "Period": 60,
                        "Stat": text,
                    },
                }
            ],
            StartTime=t0,
            EndTime=t0 + timedelta(minutes=5),
        )["MetricDataResults"][0]
        assert result["StatusCode"] == "Complete"
        return result["Values"]

    assert stat("p99") == [99]
    assert stat("p99.5") == [100]
    assert stat("TC(:25)") == [25]  # at or below the threshold
    assert stat("TC(25:)") == [75]  # above it
    assert stat("TM(10%:90%)") == [pytest.approx(50.5)]


def test_statistic_sets_give_sums_but_no_percentiles(cloud, cw, namespace):
    t0 = _minute(cloud, 60)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "Latency",
                "Dimensions": _dims(),
                "Timestamp": t0,
                "StatisticValues": {"SampleCount": 10, "Sum": 55, "Minimum": 1, "Maximum": 10},
            }
        ],
    )
    [point] = _stats(cw, namespace, "Latency", _dims(), t0, Statistics=["Sum", "SampleCount"])
    assert (point["Sum"], point["SampleCount"]) == (55, 10)
    [percentile] = _stats(cw, namespace, "Latency", _dims(), t0, ExtendedStatistics=["p99"])
    assert "ExtendedStatistics" not in percentile


def test_metric_math(cloud, cw, namespace):
    t0 = _minute(cloud, 70)
    data = []
    for minute, (invocations, errors) in enumerate([(10, 1), (20, 0), (40, 4)]):
        at = t0 + timedelta(minutes=minute)
        data.append({"MetricName": "Invocations", "Dimensions": _dims(), "Timestamp": at, "Value": invocations})
        if minute != 1:  # no error datum in the second minute: math must align on timestamps
            data.append({"MetricName": "Errors", "Dimensions": _dims(), "Timestamp": at, "Value": errors})
    cw.put_metric_data(Namespace=namespace, MetricData=data)

    def metric(query_id: str, name: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": _dims()},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    results = cw.get_metric_data(
        MetricDataQueries=[
            metric("inv", "Invocations"),
            metric("err", "Errors"),
            {"Id": "rate", "Expression": "100 * err / inv", "Label": "Error rate"},
            {"Id": "filled", "Expression": "100 * FILL(err, 0) / inv"},
            {"Id": "total", "Expression": "SUM(METRICS())"},
            {"Id": "peak", "Expression": "MAX(inv) + 0 * 1"},
        ],
        StartTime=t0,
        EndTime=t0 + timedelta(minutes=3),
        ScanBy="TimestampAscending",
    )["MetricDataResults"]
    by_id = {r["Id"]: r for r in results}
    assert set(by_id) == {"rate", "filled", "total", "peak"}  # ReturnData=False hides the inputs
    assert by_id["rate"]["Label"] == "Error rate"
    assert by_id["rate"]["Values"] == [10, 10]
    assert [t.timestamp() for t in by_id["rate"]["Timestamps"]] == [
        t0.timestamp(),
        (t0 + timedelta(minutes=2)).timestamp(),
    ]
    assert by_id["filled"]["Values"] == [10, 0, 10]
    assert by_id["total"]["Values"] == [11, 20, 44]
    assert by_id["peak"]["Values"] == [40, 40, 40]  # a scalar spreads over the period grid

    newest_first = cw.get_metric_data(
        MetricDataQueries=[{**metric("inv", "Invocations"), "ReturnData": True}],
        StartTime=t0,
        EndTime=t0 + timedelta(minutes=3),
    )["MetricDataResults"][0]
    assert newest_first["Values"] == [40, 20, 10]
    assert newest_first["Label"] == "Invocations"


def test_search_and_bad_expressions_fail_loudly(cloud, cw, namespace):
    start = _minute(cloud, 10)
    with pytest.raises(ClientError, match="SEARCH expressions are not supported"):
        cw.get_metric_data(
            MetricDataQueries=[{"Id": "s", "Expression": f"SEARCH('{{{namespace}}} Invocations', 'Sum', 60)"}],
            StartTime=start,
            EndTime=start + timedelta(minutes=5),
        )
    with pytest.raises(ClientError, match="unknown metric id 'nope'"):
        cw.get_metric_data(
            MetricDataQueries=[{"Id": "e", "Expression": "nope * 2", "Period": 60}],
            StartTime=start,
            EndTime=start + timedelta(minutes=5),
        )


def _state(cw: Any, name: str) -> dict[str, Any]:
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def _drive(cloud: LocalCloud, cw: Any, namespace: str, name: str, value: float, state: str) -> dict[str, Any]:
    """Keep publishing ``value`` at the virtual now until the alarm reaches ``state``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {"MetricName": "Latency", "Dimensions": _dims(), "Timestamp": cloud.clock.now(), "Value": value}
            ],
        )
        alarm = _state(cw, name)
        if alarm["StateValue"] == state:
            return alarm
        time.sleep(0.1)
    raise AssertionError(f"alarm {name} never reached {state}: {_state(cw, name)['StateReason']}")


def test_alarm_goes_ok_alarm_ok_on_the_virtual_clock(cloud, cw, namespace):
    sns, sqs = cloud.client("sns"), cloud.client("sqs")
    topic = sns.create_topic(Name=f"alarms-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alarms-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    name = f"latency-{namespace.rsplit('-', 1)[1]}"
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName="Latency",
        Dimensions=_dims(),
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=100,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[topic],
    )
    assert _state(cw, name)["StateValue"] == "INSUFFICIENT_DATA"

    _drive(cloud, cw, namespace, name, 5, "OK")
    alarming = _drive(cloud, cw, namespace, name, 500, "ALARM")
    assert alarming["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [500.0")
    assert json.loads(alarming["StateReasonData"])["recentDatapoints"] == [500.0]
    ok = _drive(cloud, cw, namespace, name, 5, "OK")
    assert "was not greater than the threshold (100.0)" in ok["StateReason"]

    history = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate", ScanBy="TimestampAscending")
    assert [h["HistorySummary"] for h in history["AlarmHistoryItems"]] == [
        "Alarm updated from INSUFFICIENT_DATA to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK",
    ]
    transition = json.loads(history["AlarmHistoryItems"][1]["HistoryData"])
    assert transition["oldState"]["stateValue"] == "OK"
    assert transition["newState"]["stateValue"] == "ALARM"

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    notifications = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    assert [(n["OldStateValue"], n["NewStateValue"]) for n in notifications] == [("OK", "ALARM")]
    assert notifications[0]["AlarmName"] == name


def test_math_alarm_with_missing_data_breaching(cloud, cw, namespace):
    name = f"math-{namespace.rsplit('-', 1)[1]}"
    cw.put_metric_alarm(
        AlarmName=name,
        Metrics=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": "Errors", "Dimensions": _dims()},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
            {"Id": "doubled", "Expression": "errors * 2", "ReturnData": True},
        ],
        EvaluationPeriods=2,
        DatapointsToAlarm=2,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching",
    )
    deadline = time.monotonic() + 5
    while _state(cw, name)["StateValue"] != "ALARM" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(cw, name)["StateValue"] == "ALARM"


def test_set_alarm_state_and_extended_statistic_alarms(cloud, cw, namespace):
    name = f"p99-{namespace.rsplit('-', 1)[1]}"
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName="ModelLatency",
        Dimensions=_dims(),
        ExtendedStatistic="PR(250000:)",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="ignore",
    )
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="testing the pager")
    alarm = _state(cw, name)
    assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", "testing the pager")
    assert alarm["ExtendedStatistic"] == "PR(250000:)"
    [item] = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert item["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    for invalid in ("TC(oops)", "TC(:250000)", "TM(5%:95%)"):  # alarms take TC/TM only as X% with 10 <= X <= 90
        with pytest.raises(ClientError, match="ExtendedStatistic"):
            cw.put_metric_alarm(
                AlarmName=f"{name}-bad",
                Namespace=namespace,
                MetricName="ModelLatency",
                ExtendedStatistic=invalid,
                Period=60,
                EvaluationPeriods=1,
                Threshold=5,
                ComparisonOperator="GreaterThanThreshold",
            )
