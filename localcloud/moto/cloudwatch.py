"""moto's CloudWatch: its backend's metric and alarm methods answered by the local cloud's emulation.

moto 5.2.5 stores metric data but answers queries loosely and never evaluates alarms; localcloud.cloudwatch
does both as AWS does. The patches here are protocol-agnostic: botocore speaks smithy-rpc-v2-cbor to moto, which
parses it before they run. tests/unit/test_cloudwatch_contract.py holds the internals used here to their shape.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

_T = TypeVar("_T")


class CloudWatchEmulation(Protocol):
    """What answers in place of moto's CloudWatch backend (localcloud.cloudwatch.LocalCloudWatch)."""

    def put_metric_data(self, backend: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None: ...

    def get_metric_data(
        self, backend: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime, scan_by: str
    ) -> list[dict[str, Any]]: ...

    def get_metric_statistics(
        self,
        backend: Any,
        *,
        namespace: str,
        metric_name: str,
        start_time: datetime,
        end_time: datetime,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None,
        extended_statistics: list[str] | None,
    ) -> list[dict[str, Any]]: ...

    def put_metric_alarm(self, backend: Any, arguments: dict[str, Any], create: Callable[[], Any]) -> Any:
        """PutMetricAlarm with moto's arguments by name; ``create`` runs moto's own on them, returning the alarm."""

    def set_alarm_state(
        self,
        backend: Any,
        alarm_name: str,
        *,
        reason: str,
        reason_data: str,
        state_value: str,
        apply: Callable[[], None],
    ) -> None:
        """SetAlarmState; ``apply`` runs moto's own."""

    def describe_alarm_history(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]: ...


_attached: dict[str, CloudWatchEmulation | None] = {"emulation": None}  # set by attach(), read by the patches


def attach(emulation: CloudWatchEmulation) -> None:
    _attached["emulation"] = emulation


def _emulation() -> CloudWatchEmulation:
    emulation = _attached["emulation"]
    if emulation is None:
        raise RuntimeError("no CloudWatch emulation is attached")
    return emulation


def patch() -> None:
    _patch_alarms()
    _patch_metrics()
    _patch_responses()


def _patch_alarms() -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    original_put_alarm = CloudWatchBackend.put_metric_alarm
    signature = inspect.signature(original_put_alarm)

    @functools.wraps(original_put_alarm)
    def put_metric_alarm(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        # bound.args reads bound.arguments, so what the emulation changes there reaches moto's call
        return _emulation().put_metric_alarm(
            self, bound.arguments, lambda: original_put_alarm(*bound.args, **bound.kwargs)
        )

    original_set_state = CloudWatchBackend.set_alarm_state
    CloudWatchBackend.put_metric_alarm = put_metric_alarm

    @functools.wraps(original_set_state)
    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        _emulation().set_alarm_state(
            self,
            alarm_name,
            reason=reason,
            reason_data=reason_data,
            state_value=state_value,
            apply=lambda: original_set_state(self, alarm_name, reason, reason_data, state_value),
        )

    CloudWatchBackend.set_alarm_state = set_alarm_state


def _patch_metrics() -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    @functools.wraps(CloudWatchBackend.put_metric_data)
    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        for i, metric in enumerate(metric_data):
            self._validate_parameters_put_metric_data(metric, i + 1)
            if len(metric.get("Values") or []) > 150:
                raise invalid_parameter_value(
                    f"The collection MetricData.member.{i + 1}.Values must not have more than 150 items."
                )
        _emulation().put_metric_data(self, namespace, metric_data)

    @functools.wraps(CloudWatchBackend.get_metric_data)
    def get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        return _emulation().get_metric_data(self, queries, start_time, end_time, scan_by)

    @functools.wraps(CloudWatchBackend.get_metric_statistics)
    def get_metric_statistics(  # noqa: PLR0917 - moto's positional signature
        self: Any,
        namespace: str,
        metric_name: str,
        start_time: datetime,
        end_time: datetime,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None = None,
        extended_statistics: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        return _emulation().get_metric_statistics(
            self,
            namespace=namespace,
            metric_name=metric_name,
            start_time=start_time,
            end_time=end_time,
            period=period,
            stats=stats,
            dimensions=dimensions,
            unit=unit,
            extended_statistics=extended_statistics,
        )

    CloudWatchBackend.put_metric_data = put_metric_data
    CloudWatchBackend.get_metric_data = get_metric_data
    CloudWatchBackend.get_metric_statistics = get_metric_statistics


def _patch_responses() -> None:
    """GetMetricStatistics' handler drops ExtendedStatistics; DescribeAlarmHistory has no handler."""
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core.responses import ActionResult

    original = CloudWatchResponse.get_metric_statistics

    @functools.wraps(original)
    def get_metric_statistics(self: Any) -> Any:
        datapoints = self.cloudwatch_backend.get_metric_statistics(
            self._get_param("Namespace"),
            self._get_param("MetricName"),
            self._get_param("StartTime"),
            self._get_param("EndTime"),
            self._get_param("Period"),
            self._get_param("Statistics", []),
            self._get_param("Dimensions", []),
            unit=self._get_param("Unit"),
            extended_statistics=self._get_param("ExtendedStatistics", []),
        )
        return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

    def describe_alarm_history_action(self: Any) -> Any:
        return ActionResult(_emulation().describe_alarm_history(self.cloudwatch_backend, self._get_params()))

    describe_alarm_history_action.__name__ = "describe_alarm_history"

    CloudWatchResponse.get_metric_statistics = get_metric_statistics
    CloudWatchResponse.describe_alarm_history = describe_alarm_history_action


# ---------------------------------------------------------------- what the emulation reads and raises


def backend_state(backend: Any, name: str, factory: Callable[[], _T]) -> _T:
    """Our state for one backend (an account's region), kept in its __dict__: moto's reset() drops it with its own."""
    state = backend.__dict__.get(name)
    if state is None:
        state = backend.__dict__.setdefault(name, factory())
    return state


def all_backends() -> list[Any]:
    """Every account's and region's backend built so far."""
    from moto.cloudwatch.models import cloudwatch_backends

    found = []
    for account in list(dict.values(cloudwatch_backends)):
        found.extend(list(dict.values(account)))
    return found


def list_metric(
    backend: Any, *, namespace: str, name: str, dimensions: list[dict[str, Any]], timestamp: datetime, unit: str
) -> None:
    """Give moto's ListMetrics a series to name: one representative datum (its value unused)."""
    from moto.cloudwatch.models import MetricDatum

    # moto keeps naive UTC
    backend.metric_data.append(MetricDatum(namespace, name, 0.0, dimensions, timestamp.replace(tzinfo=None), unit))


class ProvidedDatum(NamedTuple):
    namespace: str
    name: str
    dimensions: list[dict[str, Any]]
    timestamp: datetime
    unit: str | None
    value: float


def provided_metric_data(backend: Any) -> list[ProvidedDatum]:
    """Metrics moto's own services provide (S3 bucket sizes); none when a provider fails."""
    from moto.cloudwatch.models import MetricDatum

    try:
        provided = backend.aws_metric_data
    except Exception:  # a provider failing must not break queries of our own data
        return []
    return [
        ProvidedDatum(
            md.namespace,
            md.name,
            [{"Name": d.name, "Value": d.value} for d in md.dimensions],
            md.timestamp,
            md.unit,
            md.value,
        )
        for md in provided
        if isinstance(md, MetricDatum)
    ]


def invalid_parameter_value(message: str) -> Exception:
    """InvalidParameterValue, as moto's responses answer it (HTTP 400)."""
    from moto.cloudwatch.exceptions import InvalidParameterValue

    return InvalidParameterValue(message)


def invalid_parameter_combination(message: str) -> Exception:
    from moto.cloudwatch.exceptions import InvalidParameterCombination

    return InvalidParameterCombination(message)


def validation_error(message: str) -> Exception:
    from moto.cloudwatch.exceptions import ValidationError

    return ValidationError(message)
