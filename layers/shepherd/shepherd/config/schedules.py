"""EventBridge Scheduler's rate() and cron() expressions, refused as AWS refuses them.

The rules are those of "Schedule types in EventBridge Scheduler" and "Setting a schedule pattern for scheduled
rules" (docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html,
docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html).
"""

from __future__ import annotations

import re
from typing import NamedTuple


class CronField(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # for 1, 2, ...
    steps: bool = True  # whether / (increments) is allowed


RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# AWS's table of cron fields: values and wildcards.
CRON_FIELDS = (
    CronField("minutes", 0, 59),
    CronField("hours", 0, 23),
    CronField("day-of-month", 1, 31),
    CronField("month", 1, 12, MONTHS),
    CronField("day-of-week", 1, 7, DAYS, steps=False),
    CronField("year", 1970, 2199),
)
_RANGE = re.compile(r"^(\*|[A-Z0-9]+(?:-[A-Z0-9]+)?)(?:/(\d+))?$")
_DAY_OF_MONTH_SPECIAL = re.compile(r"^(L|LW|([1-9]|[12]\d|3[01])W)$")
_DAY_OF_WEEK_SPECIAL = re.compile(r"^(L|[1-7]L|[1-7]#[1-5]|(SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5]))$")


def schedule_problem(expression: str) -> str | None:
    """What is wrong with a rate() or cron() expression, or None when EventBridge Scheduler takes it."""
    rate = RATE.match(expression)
    if rate:
        count, unit = int(rate.group(1)), rate.group(2)
        if count < 1:
            return "a rate's value must be a positive whole number"
        if (count == 1) == unit.endswith("s"):
            return "a rate's unit is singular for 1 and plural otherwise: rate(1 hour), rate(6 hours)"
        return None
    if expression.startswith("rate("):
        return "must be rate(<value> <unit>) with unit minute(s), hour(s) or day(s), e.g. rate(1 hour)"
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return "must be a rate(...) or cron(...) expression, e.g. rate(1 hour) or cron(0 * * * ? *)"
    fields = expression[5:-1].split(" ")
    if len(fields) != 6 or not all(fields):
        return "cron needs six fields separated by single spaces: minutes hours day-of-month month day-of-week year"
    for spec, field in zip(fields, CRON_FIELDS, strict=True):
        problem = _field_problem(spec.upper(), field)
        if problem:
            return problem
    if (fields[2] == "?") == (fields[4] == "?"):
        return "exactly one of day-of-month and day-of-week must be ?, e.g. cron(0 * * * ? *)"
    return None


def _field_problem(spec: str, field: CronField) -> str | None:
    name, low, high = field.name, field.low, field.high
    if spec == "?":
        return None if name in ("day-of-month", "day-of-week") else "? is allowed only in day-of-month or day-of-week"
    for part in spec.split(","):
        if name == "day-of-month" and _DAY_OF_MONTH_SPECIAL.match(part):
            continue
        if name == "day-of-week" and _DAY_OF_WEEK_SPECIAL.match(part):
            continue
        matched = _RANGE.match(part)
        if not matched or (matched.group(2) is not None and (not field.steps or int(matched.group(2)) < 1)):
            return f"cron {name} field {spec!r} is not valid"
        if matched.group(1) != "*":
            for value in matched.group(1).split("-"):
                number = field.names.index(value) + 1 if value in field.names else _whole(value)
                if number is None or not low <= number <= high:
                    return f"cron {name} field {spec!r} is outside {low}-{high}"
    return None


def _whole(value: str) -> int | None:
    return int(value) if value.isdigit() else None
