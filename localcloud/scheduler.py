"""Schedules on the virtual clock: EventBridge schedule rules and EventBridge Scheduler schedules.

moto stores them but never fires them; the Scheduler fires each when its rate() or cron() comes due on the
local cloud's virtual clock, and delivers to its targets as EventBridge does (localcloud.eventbridge.EventDelivery).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import threading
import uuid
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.eventbridge import EventDelivery, target_input

log = logging.getLogger("shepherd.local.events")


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# Field ranges of EventBridge's cron: minutes, hours, day-of-month, month, day-of-week, year.
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199))
_CRON_PART = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def _check_cron_field(spec: str, low: int, high: int, expression: str) -> None:
    if spec in ("*", "?"):
        return
    for part in spec.split(","):
        if not _CRON_PART.match(part):
            raise ValueError(f"schedule {expression!r}: cron field {spec!r} is not valid")
        base, _, step = part.partition("/")
        numbers = [int(n) for n in base.split("-")] if base != "*" else []
        if any(not low <= n <= high for n in numbers) or (step and int(step) == 0):
            raise ValueError(f"schedule {expression!r}: cron field {spec!r} is outside {low}-{high}")


def _cron_field_matches(spec: str, value: int, low: int) -> bool:
    if spec in ("*", "?"):
        return True
    for part in spec.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, end = low, 10_000
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = int(base)
            end = start if not step else 10_000
        if start <= value <= end and (value - start) % int(step or 1) == 0:
            return True
    return False


_DAYS = {"SUN": "1", "MON": "2", "TUE": "3", "WED": "4", "THU": "5", "FRI": "6", "SAT": "7"}
_MONTHS = {
    m: str(i)
    for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)
}


class ScheduleExpression:
    """rate(N unit) and EventBridge's six-field cron(min hour day-of-month month day-of-week year), in UTC."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        rate = _RATE.match(self.expression)
        self.period: float | None = None
        self.cron: list[str] | None = None
        if rate:
            count, unit = int(rate.group(1)), rate.group(2)
            if count <= 0:
                raise ValueError(f"schedule {expression!r}: rate must be positive")
            if (count == 1) == unit.endswith("s"):  # AWS: rate(1 minute), rate(5 minutes)
                raise ValueError(f"schedule {expression!r}: use the singular unit for 1 and the plural otherwise")
            self.period = count * _UNIT_SECONDS[unit.rstrip("s")]
        elif self.expression.startswith("cron(") and self.expression.endswith(")"):
            fields = self.expression[5:-1].split()
            if len(fields) != 6:
                raise ValueError(f"schedule {expression!r}: cron needs 6 fields")
            for table in (_MONTHS, _DAYS):
                for name, number in table.items():
                    fields = [f.replace(name, number) for f in fields]
            if any(ch in "".join(fields) for ch in "LW#"):
                raise ValueError(f"schedule {expression!r}: L, W and # are not supported locally")
            for spec, (low, high) in zip(fields, _CRON_RANGES, strict=True):
                _check_cron_field(spec, low, high, expression)
            if fields[2] != "?" and fields[4] != "?":
                raise ValueError(f"schedule {expression!r}: one of day-of-month and day-of-week must be '?'")
            self.cron = fields
        else:
            raise ValueError(f"schedule {expression!r}: expected rate(...) or cron(...)")

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        if self.period is not None:
            return moment + datetime.timedelta(seconds=self.period)
        assert self.cron is not None
        minute, hour, dom, month, dow, year = self.cron
        candidate = moment.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        for _ in range(60 * 24 * 366 * 2):
            weekday = (candidate.isoweekday() % 7) + 1  # SUN=1 … SAT=7
            if (
                _cron_field_matches(minute, candidate.minute, 0)
                and _cron_field_matches(hour, candidate.hour, 0)
                and _cron_field_matches(dom, candidate.day, 1)
                and _cron_field_matches(month, candidate.month, 1)
                and _cron_field_matches(dow, weekday, 1)
                and _cron_field_matches(year, candidate.year, 1970)
            ):
                return candidate
            candidate += datetime.timedelta(minutes=1)
        raise ValueError(f"schedule {self.expression!r} never fires")


class Scheduler:
    """Fires schedule rules (and EventBridge Scheduler schedules) on the virtual clock."""

    def __init__(self, clock: VirtualClock, delivery: EventDelivery) -> None:
        self.clock = clock
        self.delivery = delivery
        self._next: dict[str, tuple[str, datetime.datetime]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.fired: list[tuple[str, datetime.datetime]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _rules(self) -> list[Any]:
        from localcloud.moto.core import DEFAULT_ACCOUNT_ID
        from localcloud.moto.events import events_backends

        bus = events_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].event_buses.get("default")
        return [r for r in (bus.rules.values() if bus else []) if r.scheduled_expression and r.state == "ENABLED"]

    def _schedules(self) -> list[Any]:
        from localcloud.moto.core import DEFAULT_ACCOUNT_ID
        from localcloud.moto.scheduler import scheduler_backends

        backend = scheduler_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        return [
            s for group in backend.schedule_groups.values() for s in group.schedules.values() if s.state == "ENABLED"
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.clock.now()
            due: list[tuple[str, Any]] = []
            for kind, items in (("rule", self._rules()), ("schedule", self._schedules())):
                for item in items:
                    expression = item.scheduled_expression if kind == "rule" else item.schedule_expression
                    key = f"{kind}:{item.arn}"
                    known = self._next.get(key)
                    try:
                        if known is None or known[0] != expression:
                            self._next[key] = (expression, ScheduleExpression(expression).next_after(now))
                        elif known[1] <= now:
                            self._next[key] = (expression, ScheduleExpression(expression).next_after(known[1]))
                            due.append((kind, item))
                    except ValueError as exc:  # one bad schedule must not stop the others
                        if known is None or known[0] != expression:
                            log.error("%s: %s", item.name, exc)
                        self._next[key] = (expression, datetime.datetime.max.replace(tzinfo=datetime.UTC))
            for kind, item in due:
                self._fire(kind, item)
            self._stop.wait(min(0.5, max(0.02, self.clock.wall_seconds(1.0))))

    def _fire(self, kind: str, item: Any) -> int:
        self.fired.append((item.name, self.clock.now()))
        if kind == "schedule":
            target = item.target
            with contextlib.suppress(Exception):
                self.delivery.deliver(target["Arn"], json.loads(target.get("Input") or "{}"))
            return 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": item.account_id,
            "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": item.region_name,
            "resources": [item.arn],
            "detail": {},
        }
        for target in item.targets:
            try:
                self.delivery.deliver(target["Arn"], target_input(target, event), target, item.arn)
            except Exception:
                log.exception("schedule %s: delivery to %s failed", item.name, target["Arn"])
        return len(item.targets)

    def trigger(self, name: str) -> int:
        """Fire a schedule rule (or schedule) by name now; KeyError if there is none."""
        for rule in self._rules():
            if rule.name == name:
                return self._fire("rule", rule)
        for schedule in self._schedules():
            if schedule.name == name:
                return self._fire("schedule", schedule)
        raise KeyError(name)
