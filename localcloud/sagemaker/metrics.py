"""AWS/SageMaker endpoint metrics, published per period as SageMaker publishes them.

Per EndpointName + VariantName and period (60 virtual seconds, so faster under
--time-scale): Invocations, InvocationsPerInstance, Invocation4XXErrors,
Invocation5XXErrors (a model's own error counts by its original status), and
ModelLatency / OverheadLatency in microseconds. Latencies go out as Values/Counts so
that CloudWatch can answer percentiles and exceedance counts exactly.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from localcloud.clock import VirtualClock

log = logging.getLogger("shepherd.local.sagemaker")
NAMESPACE = "AWS/SageMaker"
PERIOD_SECONDS = 60
_MAX_DISTINCT_VALUES = 150  # PutMetricData's limit on Values per datum


@dataclass
class _VariantPeriod:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    instances: int = 1
    model_latency: Counter[int] = field(default_factory=Counter)
    overhead_latency: Counter[int] = field(default_factory=Counter)
    observed: dict[str, Counter[int]] = field(default_factory=dict)


class EndpointMetrics:
    def __init__(self, clock: VirtualClock, cloudwatch_factory: Callable[[], Any]) -> None:
        self.clock = clock
        self._factory = cloudwatch_factory
        self._periods: dict[tuple[str, str, datetime], _VariantPeriod] = {}
        self._last_invoked: dict[tuple[str, str], datetime] = {}  # the period of each variant's last invocation
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endpoint-metrics", daemon=True)

    def start(self) -> None:
        """Publish each period once it closes; until then (a cloud not yet started) the data waits."""
        self._thread.start()

    def _period_start(self) -> datetime:
        now = self.clock.now()
        epoch = int(now.timestamp()) // PERIOD_SECONDS * PERIOD_SECONDS
        return datetime.fromtimestamp(epoch, now.tzinfo)

    def record(
        self, endpoint: str, variant: str, *, instances: int, status: int, model_us: int | None, overhead_us: int
    ) -> None:
        key = (endpoint, variant, self._period_start())
        with self._lock:
            period = self._periods.setdefault(key, _VariantPeriod())
            period.invocations += 1
            self._last_invoked[(endpoint, variant)] = key[2]
            period.instances = max(1, instances)
            if 400 <= status < 500:
                period.errors_4xx += 1
            elif status >= 500:
                period.errors_5xx += 1
            if model_us is not None:
                period.model_latency[model_us] += 1
            period.overhead_latency[overhead_us] += 1

    def invoked_since(self, endpoint: str, variant: str, moment: datetime) -> bool:
        """Whether the variant served a request in a period that ends after ``moment`` (one with an Invocations
        datapoint); nothing else can publish AWS/SageMaker metrics (AWS reserves AWS/ namespaces)."""
        with self._lock:
            last = self._last_invoked.get((endpoint, variant))
        return last is not None and last + timedelta(seconds=PERIOD_SECONDS) > moment

    def observe(self, endpoint: str, variant: str, metric: str, value: int) -> None:
        """A metric beyond invocations: ModelSetupTime, ModelLoadingWaitTime (us), ModelCacheHit (0/1)."""
        key = (endpoint, variant, self._period_start())
        with self._lock:
            period = self._periods.setdefault(key, _VariantPeriod())
            period.observed.setdefault(metric, Counter())[value] += 1

    def flush(self, everything: bool = False) -> None:
        """Publish the periods that have closed (all of them when ``everything``)."""
        current = self._period_start()
        with self._lock:
            ready = {k: v for k, v in self._periods.items() if everything or k[2] < current}
            for key in ready:
                del self._periods[key]
        if not ready:
            return
        data: list[dict[str, Any]] = []
        for (endpoint, variant, start), period in ready.items():
            dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]

            def datum(
                name: str,
                value: float,
                unit: str = "None",
                start: datetime = start,
                dimensions: list[dict[str, str]] = dimensions,
            ) -> dict[str, Any]:
                return {"MetricName": name, "Dimensions": dimensions, "Timestamp": start, "Value": value, "Unit": unit}

            if period.invocations:
                data += [
                    datum("Invocations", period.invocations),
                    datum("InvocationsPerInstance", period.invocations / period.instances),
                    datum("Invocation4XXErrors", period.errors_4xx),
                    datum("Invocation5XXErrors", period.errors_5xx),
                ]
            distributions = [
                ("ModelLatency", period.model_latency),
                ("OverheadLatency", period.overhead_latency),
                *period.observed.items(),
            ]
            for name, values in distributions:
                items = sorted(values.items())
                for offset in range(0, len(items), _MAX_DISTINCT_VALUES):
                    chunk = items[offset : offset + _MAX_DISTINCT_VALUES]
                    data.append(
                        {
                            "MetricName": name,
                            "Dimensions": dimensions,
                            "Timestamp": start,
                            "Values": [float(v) for v, _ in chunk],
                            "Counts": [float(c) for _, c in chunk],
                            "Unit": "None" if name == "ModelCacheHit" else "Microseconds",
                        }
                    )
        client = self._factory()
        for offset in range(0, len(data), 500):
            try:
                client.put_metric_data(Namespace=NAMESPACE, MetricData=data[offset : offset + 500])
            except Exception:
                log.exception("could not publish endpoint metrics")

    def _run(self) -> None:
        while not self._stop.wait(max(0.05, self.clock.wall_seconds(PERIOD_SECONDS) / 4)):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush(everything=True)
