"""CloudWatch metrics and alarms faithful enough for Shepherd's rollout judge.

moto stores metric data but answers queries loosely (a query by EndpointName alone sums every variant,
percentiles give no value, metric math returns []) and never evaluates alarms: a judge tuned against it would pass
locally and misjudge on AWS. LocalCloudWatch answers in place of moto's backend (localcloud.moto.cloudwatch patches
it in): store keeps data exact, queries and metric_math answer as AWS does, alarms evaluates on the virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.cloudwatch import alarms, store
from localcloud.cloudwatch import queries as metric_queries
from localcloud.cloudwatch.alarms import AlarmEvaluator
from localcloud.services import Clocked

__all__ = ["EMULATION", "AlarmEvaluator", "LocalCloudWatch", "install", "stop"]


class LocalCloudWatch:
    """The answers for moto's CloudWatch backend (localcloud.moto.cloudwatch.CloudWatchEmulation), on a cloud's clock,
    and that cloud's alarm evaluation."""

    def __init__(self) -> None:
        self.clock: VirtualClock | None = None
        self.evaluator: AlarmEvaluator | None = None

    def attach(self, clock: VirtualClock) -> AlarmEvaluator:
        """Evaluate alarms on ``clock``; for the clock already attached, keep its running evaluator."""
        evaluator = self.evaluator
        if evaluator is not None and evaluator.clock is clock and evaluator.running:
            return evaluator
        if evaluator is not None:
            evaluator.stop()
        self.clock = clock
        self.evaluator = AlarmEvaluator(clock).start()
        return self.evaluator

    def detach(self) -> None:
        if self.evaluator is not None:
            self.evaluator.stop()
        self.evaluator = None
        self.clock = None

    def now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def put_metric_data(self, backend: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        store.put(backend, namespace, metric_data, self.now())

    # Queries and history need no clock: moto's backend and the request hold all they read.
    get_metric_data = staticmethod(metric_queries.get_metric_data)
    get_metric_statistics = staticmethod(metric_queries.get_metric_statistics)
    describe_alarm_history = staticmethod(alarms.describe_alarm_history)

    def put_metric_alarm(self, backend: Any, arguments: dict[str, Any], create: Callable[[], Any]) -> Any:
        return alarms.put_metric_alarm(backend, arguments, create, self.now)

    def set_alarm_state(self, backend: Any, alarm_name: str, **change: Any) -> None:
        """alarms.set_alarm_state (reason, reason_data, state_value, apply) on this cloud's clock."""
        alarms.set_alarm_state(backend, alarm_name, clock=self.now, **change)


EMULATION = LocalCloudWatch()  # one per process, as moto's backends are


def install(cloud: Clocked) -> AlarmEvaluator:
    """Start alarm evaluation for ``cloud`` and answer on its clock (localcloud.moto.install applies the patches).

    Idempotent: calling it again for the same cloud returns the running evaluator; for another cloud it stops the
    old evaluator and starts one on the new cloud's clock.
    """
    return EMULATION.attach(cloud.clock)


def stop() -> None:
    """Stop alarm evaluation and detach the cloud; the patches stay (moto's backends are process-global)."""
    EMULATION.detach()
