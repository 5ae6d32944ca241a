"""Metric alarms as CloudWatch runs them: evaluated on the virtual clock, with history and SNS actions.

Alarms start INSUFFICIENT_DATA (moto's start OK and are never evaluated); an AlarmEvaluator thread judges each
once per min(Period, 60) virtual seconds, records DescribeAlarmHistory entries and publishes to SNS.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.cloudwatch.queries import get_metric_data
from localcloud.cloudwatch.statistics import SIMPLE_STATISTICS, Statistic, compute_statistic, parse_statistic
from localcloud.cloudwatch.store import bucket_samples, epoch, moment_of, series_key, store_of
from localcloud.moto import cloudwatch as moto_cloudwatch
from localcloud.moto import sns

log = logging.getLogger("shepherd.local.cloudwatch")

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_COMPARISON_WORDS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}
# Set when an alarm is created or updated: the evaluator, asleep until the next alarm is due, judges it at once.
_ALARMS_CHANGED = threading.Event()
_IDLE_CHECK_SECONDS = 60  # virtual: the longest the evaluator sleeps (an alarm created some other way waits this long)
_REGION_NAMES = {"us-east-1": "US East (N. Virginia)", "us-east-2": "US East (Ohio)", "us-west-2": "US West (Oregon)"}
_alarm_lock = threading.RLock()  # a state change and its history entry, as one


# ---------------------------------------------------------------- alarm decisions


def decide_alarm_state(
    values: list[float | None],
    comparison: str,
    threshold: float,
    datapoints_to_alarm: int,
    treat_missing: str,
) -> tuple[str | None, int]:
    """The state the last N period values call for, and how many of them breach.

    Returns (None, n) when the alarm keeps its current state (TreatMissingData=ignore with
    nothing to judge). With 'missing' or 'ignore' only the present datapoints are judged:
    M breaching ones alarm; fewer than M present, all breaching, alarm too under 'missing'
    (AWS's "- - X" row) while 'ignore' keeps the state; anything else is OK.
    """
    breaches = _COMPARISONS[comparison]
    if treat_missing in ("breaching", "notBreaching"):
        filled = [(treat_missing == "breaching") if v is None else breaches(v, threshold) for v in values]
        breaching = sum(filled)
        return ("ALARM" if breaching >= datapoints_to_alarm else "OK"), breaching
    present = [v for v in values if v is not None]
    breaching = sum(1 for v in present if breaches(v, threshold))
    if not present:
        return (None if treat_missing == "ignore" else "INSUFFICIENT_DATA"), 0
    if breaching >= datapoints_to_alarm:
        return "ALARM", breaching
    if len(present) < datapoints_to_alarm and breaching == len(present):
        return (None if treat_missing == "ignore" else "ALARM"), breaching
    return "OK", breaching


# ---------------------------------------------------------------- state changes and actions


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _record(backend: Any, alarm: Any, item_type: str, summary: str, data: dict[str, Any], *, when: datetime) -> None:
    store = store_of(backend)
    with store.lock:
        store.history.append(
            {
                "AlarmName": alarm.name,
                "AlarmType": "CompositeAlarm" if getattr(alarm, "rule", None) else "MetricAlarm",
                "Timestamp": when,
                "HistoryItemType": item_type,
                "HistorySummary": summary,
                "HistoryData": json.dumps(data),
            }
        )


def _transition(
    backend: Any,
    alarm: Any,
    *,
    new_state: str,
    reason: str,
    reason_data: str | None,
    when: datetime,
    already_applied: tuple[str, str] | None = None,
) -> None:
    """Move an alarm to a state (or record a state moto already applied), with history and actions."""
    with _alarm_lock:
        if already_applied is None:
            old_state, old_reason = alarm.state_value, alarm.state_reason
            alarm.update_state(reason, reason_data or "{}", new_state)
        else:
            old_state, old_reason = already_applied
        alarm.state_updated_timestamp = when
        if old_state != new_state:
            alarm.state_transitioned_timestamp = when
        new_state_data: dict[str, Any] = {"stateValue": new_state, "stateReason": reason}
        if reason_data:
            try:
                new_state_data["stateReasonData"] = json.loads(reason_data)
            except ValueError:
                new_state_data["stateReasonData"] = reason_data
        _record(
            backend,
            alarm,
            "StateUpdate",
            f"Alarm updated from {old_state} to {new_state}",
            {
                "version": "1.0",
                "oldState": {"stateValue": old_state, "stateReason": old_reason},
                "newState": new_state_data,
            },
            when=when,
        )
    if old_state != new_state and alarm.actions_enabled:
        actions = {
            "ALARM": alarm.alarm_actions,
            "OK": alarm.ok_actions,
            "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
        }[new_state]
        for action in actions or []:
            _run_action(backend, alarm, action, old_state, when)


def _run_action(backend: Any, alarm: Any, action: str, old_state: str, when: datetime) -> None:
    """Publish the alarm's state change to an SNS topic as CloudWatch does; other actions are skipped."""
    if not action.startswith("arn:") or action.split(":")[2] != "sns":
        return
    account = action.split(":")[4]
    region_name = _REGION_NAMES.get(alarm.region_name, alarm.region_name)
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _iso(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _iso(when),
        "Region": region_name,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
        "OKActions": alarm.ok_actions,
        "AlarmActions": alarm.alarm_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.extended_statistic else "Statistic",
            "Statistic": (alarm.statistic or "").upper() if not alarm.extended_statistic else None,
            "ExtendedStatistic": alarm.extended_statistic,
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
            "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile or "",
        },
    }
    subject = f'{alarm.state_value}: "{alarm.name}" in {region_name}'
    if len(subject) > 100:
        subject = subject[:97] + "..."
    try:
        sns.publish(action, json.dumps(message), subject)
    except Exception as exc:  # a missing topic must not stop the evaluation of other alarms
        _record(backend, alarm, "Action", f"Failed to execute action {action}", {"error": str(exc)}, when=when)
        return
    _record(backend, alarm, "Action", f"Successfully executed action {action}", {"actionState": "Succeeded"}, when=when)


def _alarm_queries(alarm: Any) -> list[dict[str, Any]]:
    """The alarm's Metrics back in GetMetricData's request shape (moto keeps them as objects)."""
    queries = []
    for q in alarm.metric_data_queries:
        query: dict[str, Any] = {"Id": q.id, "ReturnData": q.return_data not in (False, "false", "False")}
        if q.label:
            query["Label"] = q.label
        if q.expression:
            query["Expression"] = q.expression
        elif q.metric_stat is not None:
            ms = q.metric_stat
            query["MetricStat"] = {
                "Metric": {
                    "Namespace": ms.metric.namespace,
                    "MetricName": ms.metric.metric_name,
                    "Dimensions": [{"Name": d.name, "Value": d.value} for d in ms.metric.dimensions],
                },
                "Period": ms.period,
                "Stat": ms.stat,
            }
            if ms.unit:
                query["MetricStat"]["Unit"] = ms.unit
        queries.append(query)
    return queries


def alarm_period(alarm: Any) -> int:
    if alarm.period:
        return int(alarm.period)
    periods = [int(q.metric_stat.period) for q in alarm.metric_data_queries if q.metric_stat and q.metric_stat.period]
    return max(periods) if periods else 60


def _settle(period: int) -> float:
    """How long a period must have been closed before an alarm judges it.

    Publishers send a period's data just after it closes (the endpoint metrics flush every
    quarter period); judging the period a moment later keeps that lag from reading as
    missing data and flapping the alarm.
    """
    return min(period, 60) / 2


def alarm_values(backend: Any, alarm: Any, now: datetime) -> list[tuple[float, float | None]]:
    """The alarm's last EvaluationPeriods values (oldest first), None where a period has no value."""
    period = alarm_period(alarm)
    count = int(alarm.evaluation_periods or 1)
    window_end = math.floor((epoch(now) - _settle(period)) / period) * period
    window_start = window_end - count * period
    stamps = [window_start + k * period for k in range(count)]
    if alarm.metric_data_queries:
        queries = _alarm_queries(alarm)
        returned = [q for q in queries if q["ReturnData"]] or queries[-1:]
        for q in queries:
            q["ReturnData"] = q is returned[-1]
        results = get_metric_data(
            backend, queries, moment_of(window_start), moment_of(window_end), "TimestampAscending"
        )
        points = {epoch(t): v for r in results[:1] for t, v in zip(r["Timestamps"], r["Values"], strict=True)}
    else:
        stat = parse_statistic(alarm.extended_statistic or alarm.statistic)
        key = series_key(
            alarm.namespace, alarm.metric_name, [{"Name": d.name, "Value": d.value} for d in alarm.dimensions]
        )
        buckets, _ = bucket_samples(backend, key, unit=alarm.unit, anchor=window_start, end=window_end, period=period)
        points = {t: v for t, s in buckets.items() if (v := compute_statistic(stat, s)) is not None}
    return [(t, points.get(t)) for t in stamps]


def _format_stamp(seconds: float) -> str:
    return moment_of(seconds).strftime("%d/%m/%y %H:%M:%S")


def evaluate_alarm(backend: Any, alarm: Any, now: datetime) -> str:
    """Evaluate one metric alarm at virtual time ``now``; returns its (possibly new) state."""
    if alarm.comparison_operator not in _COMPARISONS:
        return alarm.state_value  # anomaly-detection bands are not evaluated locally
    values = alarm_values(backend, alarm, now)
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods or 1)
    treat = alarm.treat_missing_data or "missing"
    threshold = float(alarm.threshold)
    state, breaching = decide_alarm_state([v for _, v in values], alarm.comparison_operator, threshold, needed, treat)
    if state is None or state == alarm.state_value:
        return alarm.state_value
    present = [(t, v) for t, v in values if v is not None]
    shown = ", ".join(f"{v} ({_format_stamp(t)})" for t, v in reversed(present))
    words = _COMPARISON_WORDS[alarm.comparison_operator]
    if state == "INSUFFICIENT_DATA":
        reason = f"Insufficient Data: {len(values)} datapoint{'s were' if len(values) != 1 else ' was'} unknown."
    elif state == "ALARM":
        reason = (
            f"Threshold Crossed: {breaching} out of the last {len(values)} datapoints [{shown}] "
            f"{'was' if breaching == 1 else 'were'} {words} the threshold ({threshold}) "
            f"(minimum {needed} datapoint{'s' if needed != 1 else ''} for {alarm.state_value} -> ALARM transition)."
        )
    else:
        reason = (
            f"Threshold Crossed: {len(values) - breaching} out of the last {len(values)} datapoints [{shown}] "
            f"{'was' if len(values) - breaching == 1 else 'were'} not {words} the threshold ({threshold}) "
            f"(minimum 1 datapoint for {alarm.state_value} -> OK transition)."
        )
    period = alarm_period(alarm)
    reason_data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _iso(now),
        "startDate": _iso(moment_of(values[0][0])),
        "period": period,
        "recentDatapoints": [v for _, v in present],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(moment_of(t)), **({"value": v} if v is not None else {})} for t, v in reversed(values)
        ],
    }
    if not alarm.metric_data_queries:
        reason_data["statistic"] = alarm.extended_statistic or alarm.statistic
        reason_data["unit"] = alarm.unit
    _transition(backend, alarm, new_state=state, reason=reason, reason_data=json.dumps(reason_data), when=now)
    return state


class AlarmEvaluator:
    """Evaluates every metric alarm once per min(Period, 60) virtual seconds, like CloudWatch's minute ticks."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._due: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-alarms", daemon=True)

    def start(self) -> AlarmEvaluator:
        self._thread.start()
        return self

    def evaluate_due(self) -> float:
        """Evaluate the alarms that are due; returns when the next one is (virtual epoch seconds, inf with none)."""
        now = self.clock.now()
        now_seconds = epoch(now)
        live: set[int] = set()
        for backend in moto_cloudwatch.all_backends():
            # getattr: moto's in-process mocks (handler tests in the same pytest session) reset the backends
            # this thread reads, leaving one half-built for a moment
            for alarm in list(getattr(backend, "alarms", {}).values()):
                if getattr(alarm, "rule", None):
                    continue  # composite alarms are not evaluated locally
                live.add(id(alarm))
                if self._due.get(id(alarm), -math.inf) > now_seconds:
                    continue
                self._due[id(alarm)] = now_seconds + min(alarm_period(alarm), 60)
                try:
                    evaluate_alarm(backend, alarm, now)
                except Exception:  # one broken alarm must not stop the others
                    log.exception("evaluating alarm %s failed", alarm.name)
        for key in set(self._due) - live:
            del self._due[key]
        return min(self._due.values(), default=math.inf)

    def _run(self) -> None:
        # Asleep until the next alarm is due (or one is put), not on a fixed tick: an idle cloud costs no CPU here.
        while not self._stop.is_set():
            _ALARMS_CHANGED.clear()
            due = self.evaluate_due()
            virtual = min(due - epoch(self.clock.now()), _IDLE_CHECK_SECONDS)
            _ALARMS_CHANGED.wait(max(0.02, self.clock.wall_seconds(virtual)))

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        _ALARMS_CHANGED.set()  # wakes the thread
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


# ---------------------------------------------------------------- DescribeAlarmHistory


def describe_alarm_history(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    store = store_of(backend)
    with store.lock:
        items = list(store.history)
    name = params.get("AlarmName")
    types = params.get("AlarmTypes") or []
    item_type = params.get("HistoryItemType")
    start = params.get("StartDate")
    end = params.get("EndDate")
    items = [
        i
        for i in items
        if (not name or i["AlarmName"] == name)
        and (not types or i["AlarmType"] in types)
        and (not item_type or i["HistoryItemType"] == item_type)
        and (start is None or epoch(i["Timestamp"]) >= epoch(start))
        and (end is None or epoch(i["Timestamp"]) <= epoch(end))
    ]
    if (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending":
        items.reverse()
    offset = int(params.get("NextToken") or 0)
    limit = int(params.get("MaxRecords") or 100)
    page = items[offset : offset + limit]
    result: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + limit < len(items):
        result["NextToken"] = str(offset + limit)
    return result


# ---------------------------------------------------------------- PutMetricAlarm and SetAlarmState


def _valid_for_alarms(stat: Statistic) -> bool:
    """PutMetricAlarm's documented set, so an alarm that AWS would refuse fails locally too.

    pNN, tmNN/tcNN/tsNN/wmNN, IQM, PR(n:m) on values, and TM/TC/TS/WM(X%:X%) with 10 <= X <= 90.
    """
    if stat.kind in {"p", "PR"} or stat.text == "IQM":
        return True
    if stat.kind not in ("TM", "TC", "TS", "WM"):
        return False
    if stat.text[:2].islower():
        return True
    bounds = (stat.lower, stat.upper)
    return all(b is not None and b.percent and 10 <= b.value <= 90 for b in bounds)


def _check_alarm_statistics(arguments: dict[str, Any]) -> str | None:
    """Validate an alarm's Statistic / ExtendedStatistic as AWS does; returns the extended one."""
    extended = arguments.get("extended_statistic")
    if extended:
        try:
            valid = _valid_for_alarms(parse_statistic(extended))
        except ValueError:
            valid = False
        if not valid:
            raise moto_cloudwatch.invalid_parameter_value(
                f"The value {extended} for parameter ExtendedStatistic is not supported."
            )
    statistic = arguments.get("statistic")
    if statistic and statistic not in SIMPLE_STATISTICS:
        raise moto_cloudwatch.invalid_parameter_value(
            f"The value {statistic} for parameter Statistic is not supported."
        )
    if not arguments.get("rule") and not arguments.get("metric_data_queries") and not (statistic or extended):
        raise moto_cloudwatch.invalid_parameter_value(
            "Exactly one of Statistic or ExtendedStatistic must be specified."
        )
    return extended


def put_metric_alarm(
    backend: Any, arguments: dict[str, Any], create: Callable[[], Any], clock: Callable[[], datetime]
) -> Any:
    """Create or update an alarm with moto's ``create``: a new one starts INSUFFICIENT_DATA, an updated one keeps its
    state, either takes every extended statistic, and the change goes into the alarm's history."""
    extended = _check_alarm_statistics(arguments)
    arguments["extended_statistic"] = None  # moto accepts only pNN; we keep the full set below
    previous: Any = backend.alarms.get(arguments["name"])
    now = clock()
    alarm: Any = create()
    alarm.extended_statistic = extended
    alarm.configuration_updated_timestamp = now
    if previous is not None:  # AWS keeps an updated alarm's state
        alarm.state_value = previous.state_value
        alarm.state_reason = previous.state_reason
        alarm.state_reason_data = previous.state_reason_data
        alarm.state_updated_timestamp = previous.state_updated_timestamp
        alarm.state_transitioned_timestamp = getattr(previous, "state_transitioned_timestamp", now)
        alarm.history = previous.history
    else:
        alarm.state_value = "INSUFFICIENT_DATA"
        alarm.state_reason = "Unchecked: Initial alarm creation"
        alarm.state_updated_timestamp = now
        alarm.state_transitioned_timestamp = now
    verb = "updated" if previous is not None else "created"
    _ALARMS_CHANGED.set()
    _record(
        backend,
        alarm,
        "ConfigurationUpdate",
        f'Alarm "{alarm.name}" {verb}',
        {"version": "1.0", "type": "Update" if previous is not None else "Create"},
        when=now,
    )
    return alarm


def set_alarm_state(
    backend: Any,
    alarm_name: str,
    *,
    reason: str,
    reason_data: str,
    state_value: str,
    apply: Callable[[], None],
    clock: Callable[[], datetime],
) -> None:
    """SetAlarmState through moto's ``apply``, recorded and acted on as an evaluated change is."""
    alarm = backend.alarms.get(alarm_name)
    before = (alarm.state_value, alarm.state_reason) if alarm is not None else ("", "")
    with _alarm_lock:
        apply()
        _transition(
            backend,
            backend.alarms[alarm_name],
            new_state=state_value,
            reason=reason,
            reason_data=reason_data,
            when=clock(),
            already_applied=before,
        )
