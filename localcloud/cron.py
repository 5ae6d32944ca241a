"""EventBridge's schedule expressions, rate() and six-field cron(), and when they next fire, in UTC.

Shared by the schedule rules and Scheduler schedules (localcloud.scheduler) and SageMaker's monitoring schedules.
"""

from __future__ import annotations

import datetime
import hashlib
import re

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


def start_delay(key: str, window: datetime.timedelta) -> datetime.timedelta:
    """A delay in [0, window], whole seconds, fixed by ``key``: a service's documented start jitter, reproducible.

    sha256, not hash(): Python salts str hashes per process, and a run must start at the same time in every one."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return datetime.timedelta(seconds=digest % (int(window.total_seconds()) + 1))
