"""An idle local cloud costs (near) no CPU: nothing polls on a fixed tick while nothing happens (issue 17)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.cloudwatch import alarms
from localcloud.sagemaker.autoscaling import EndpointAutoscaler
from localcloud.sagemaker.metrics import PERIOD_SECONDS, EndpointMetrics

PREDEFINED = {
    "TargetValue": 10.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
}


class CountingEvaluator(alarms.AlarmEvaluator):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock)
        self.calls = 0
        self.called = threading.Event()

    def evaluate_due(self) -> float:
        self.calls += 1
        self.called.set()
        return super().evaluate_due()


def test_the_alarm_evaluator_sleeps_while_there_is_no_alarm_and_wakes_when_one_is_put() -> None:
    evaluator = CountingEvaluator(VirtualClock(time_scale=1.0)).start()  # with no alarm it sleeps 60 s
    try:
        assert evaluator.called.wait(5)
        time.sleep(0.3)
        assert evaluator.calls == 1  # the old tick judged every 0.25 s, whether or not there was an alarm
        evaluator.called.clear()
        alarms._ALARMS_CHANGED.set()  # what put_metric_alarm does
        assert evaluator.called.wait(5)
    finally:
        evaluator.stop()
    assert not evaluator.running


class Clients:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def client(self, service: str) -> Any:
        assert service == "cloudwatch"
        requests = self.requests

        class CloudWatch:
            def get_metric_statistics(self, **request: Any) -> dict[str, Any]:
                requests.append(request)
                return {"Datapoints": []}

        return CloudWatch()


def test_an_idle_variant_costs_the_autoscaler_no_metric_read() -> None:
    clock = VirtualClock(time_scale=1.0)
    metrics = EndpointMetrics(clock, lambda: None)  # never started
    clients = Clients()
    autoscaler = EndpointAutoscaler(clock, clients, None, metrics)  # type: ignore[arg-type]
    assert autoscaler._metric(PREDEFINED, "e", "v") is None
    assert clients.requests == []
    metrics.record("e", "v", instances=1, status=200, model_us=10, overhead_us=5)
    assert autoscaler._metric(PREDEFINED, "e", "v") is None  # no datapoint yet, but CloudWatch was asked
    assert [r["MetricName"] for r in clients.requests] == ["InvocationsPerInstance"]
    assert autoscaler._metric(PREDEFINED, "e", "other") is None
    assert len(clients.requests) == 1


class StoppedClock(VirtualClock):
    def now(self) -> datetime:
        return datetime(2026, 1, 1, 12, 30, 42, tzinfo=UTC)


def test_invoked_since_covers_the_periods_a_query_from_that_moment_returns() -> None:
    metrics = EndpointMetrics(StoppedClock(), lambda: None)
    metrics.record("e", "v", instances=1, status=200, model_us=10, overhead_us=5)
    period = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)  # the request's period; its datapoint is stamped so
    end = period + timedelta(seconds=PERIOD_SECONDS)
    assert metrics.invoked_since("e", "v", end - timedelta(milliseconds=1))
    assert not metrics.invoked_since("e", "v", end)
    assert not metrics.invoked_since("e", "w", period)
