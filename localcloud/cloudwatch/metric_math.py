"""GetMetricData's metric math: arithmetic, comparisons, SUM/AVG/MIN/MAX/STDDEV, METRICS(), FILL, IF, ABS ...

SEARCH and Metrics Insights fail loudly, where moto silently returned [].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.cloudwatch.statistics import compute_statistic, parse_statistic
from localcloud.cloudwatch.store import align, bucket_samples, check_period, series_key
from localcloud.moto import cloudwatch as moto_cloudwatch


@dataclass
class Series:
    """A time series of one query: values by period start, on the grid its period defines."""

    points: dict[float, float]
    grid: tuple[float, ...]
    period: int
    label: str


Value = float | Series | list[Series]


class MathError(ValueError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<string>\"[^\"]*\"|'[^']*')|(?P<op>&&|\|\||<=|>=|==|!=|[-+*/^(),<>\[\]]))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise MathError(f"unexpected character {text[position:].strip()[:1]!r} at position {position}")
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over metric math: or > and > comparison > +,- > *,/ > ^ > unary > primary."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def parse(self) -> Any:
        node = self.or_expression()
        if self.position != len(self.tokens):
            raise MathError(f"unexpected {self.tokens[self.position][1]!r}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise MathError("unexpected end of expression")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise MathError(f"expected {expected!r}, found {token[1]!r}")
        self.position += 1
        return token

    def binary(self, operators: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        node = operand()
        while (self.peek() or "").upper() in operators:
            operator = self.take()[1].upper()
            node = ("op", {"AND": "&&", "OR": "||"}.get(operator, operator), node, operand())
        return node

    def or_expression(self) -> Any:
        return self.binary(("||", "OR"), self.and_expression)

    def and_expression(self) -> Any:
        return self.binary(("&&", "AND"), self.comparison)

    def comparison(self) -> Any:
        return self.binary(("<", ">", "<=", ">=", "==", "!="), self.additive)

    def additive(self) -> Any:
        return self.binary(("+", "-"), self.multiplicative)

    def multiplicative(self) -> Any:
        return self.binary(("*", "/"), self.power)

    def power(self) -> Any:
        return self.binary(("^",), self.unary)

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return ("neg", self.unary())
        if self.peek() == "+":
            self.take()
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return ("num", float(text))
        if kind == "string":
            return ("str", text[1:-1])
        if text == "(":
            node = self.or_expression()
            self.take(")")
            return node
        if text == "[":
            items = [self.or_expression()]
            while self.peek() == ",":
                self.take()
                items.append(self.or_expression())
            self.take("]")
            return ("array", items)
        if kind == "name":
            if self.peek() == "(":
                self.take()
                args = []
                if self.peek() != ")":
                    args.append(self.or_expression())
                    while self.peek() == ",":
                        self.take()
                        args.append(self.or_expression())
                self.take(")")
                return ("call", text.upper(), args)
            return ("ref", text)
        raise MathError(f"unexpected {text!r}")


def _arith(operator: str) -> Callable[[float, float], float | None]:
    def divide(a: float, b: float) -> float | None:
        return a / b if b else None

    def power(a: float, b: float) -> float | None:
        try:
            result = a**b
        except (OverflowError, ZeroDivisionError):
            return None
        return result if isinstance(result, float | int) else None

    table: dict[str, Callable[[float, float], float | None]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": divide,
        "^": power,
        "<": lambda a, b: float(a < b),
        ">": lambda a, b: float(a > b),
        "<=": lambda a, b: float(a <= b),
        ">=": lambda a, b: float(a >= b),
        "==": lambda a, b: float(a == b),
        "!=": lambda a, b: float(a != b),
        "&&": lambda a, b: float(bool(a) and bool(b)),
        "||": lambda a, b: float(bool(a) or bool(b)),
    }
    return table[operator]


def _combine(a: Value, b: Value, fn: Callable[[float, float], float | None]) -> Value:
    """Apply fn pointwise; between two series only at timestamps both have (AWS aligns on time)."""
    if isinstance(a, list):
        if isinstance(b, list):
            raise MathError("an operation between two arrays of time series is not supported")
        return [_series_of(_combine(s, b, fn)) for s in a]
    if isinstance(b, list):
        return [_series_of(_combine(a, s, fn)) for s in b]
    if isinstance(a, Series) and isinstance(b, Series):
        points = {t: fn(v, b.points[t]) for t, v in a.points.items() if t in b.points}
        return Series({t: v for t, v in points.items() if v is not None}, a.grid, a.period, a.label)
    if isinstance(a, Series):
        assert not isinstance(b, Series)
        points = {t: fn(v, b) for t, v in a.points.items()}
        return Series({t: v for t, v in points.items() if v is not None}, a.grid, a.period, a.label)
    if isinstance(b, Series):
        points = {t: fn(a, v) for t, v in b.points.items()}
        return Series({t: v for t, v in points.items() if v is not None}, b.grid, b.period, b.label)
    result = fn(a, b)
    if result is None:
        raise MathError("division by zero between scalars")
    return result


def _series_of(value: Value) -> Series:
    if not isinstance(value, Series):
        raise MathError("expected a time series")
    return value


def _aggregate(name: str, values: list[float]) -> float:
    if name == "SUM":
        return sum(values)
    if name == "AVG":
        return sum(values) / len(values)
    if name == "MIN":
        return min(values)
    if name == "MAX":
        return max(values)
    if name == "STDDEV":
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    raise MathError(f"unknown aggregate {name}")


_UNARY: dict[str, Callable[[float], float]] = {
    "ABS": abs,
    "CEIL": lambda v: float(math.ceil(v)),
    "FLOOR": lambda v: float(math.floor(v)),
}


class QueryEvaluator:
    """Evaluates the queries of one GetMetricData call, each id at most once, in dependency order."""

    def __init__(self, backend: Any, queries: list[dict[str, Any]], start: float, end: float) -> None:
        self.backend = backend
        self.queries = {q["Id"]: q for q in queries}
        self.order = [q["Id"] for q in queries]
        self.start, self.end = start, end
        self.results: dict[str, Value] = {}
        self.active: set[str] = set()

    def default_period(self) -> int:
        periods = [int(q["MetricStat"]["Period"]) for q in self.queries.values() if "MetricStat" in q]
        return min(periods) if periods else 60

    def value(self, query_id: str) -> Value:
        if query_id in self.results:
            return self.results[query_id]
        if query_id not in self.queries:
            raise MathError(f"unknown metric id {query_id!r}")
        if query_id in self.active:
            raise MathError(f"circular reference through {query_id!r}")
        self.active.add(query_id)
        query = self.queries[query_id]
        try:
            if "MetricStat" in query:
                result: Value = self.metric_stat(query)
            else:
                result = self.expression(query)
        finally:
            self.active.discard(query_id)
        self.results[query_id] = result
        return result

    def metric_stat(self, query: dict[str, Any]) -> Series:
        metric_stat = query["MetricStat"]
        metric = metric_stat["Metric"]
        period = check_period(metric_stat.get("Period"), f"MetricStat.Period of {query['Id']}")
        try:
            stat = parse_statistic(metric_stat["Stat"])
        except ValueError as exc:
            raise moto_cloudwatch.invalid_parameter_value(f"Query {query['Id']}: {exc}") from None
        anchor = align(self.start, period)
        key = series_key(metric["Namespace"], metric["MetricName"], metric.get("Dimensions"))
        buckets, _ = bucket_samples(
            self.backend, key, unit=metric_stat.get("Unit"), anchor=anchor, end=self.end, period=period
        )
        points = {}
        for bucket_start, samples in buckets.items():
            value = compute_statistic(stat, samples)
            if value is not None:
                points[bucket_start] = value
        grid = tuple(anchor + k * period for k in range(max(0, math.ceil((self.end - anchor) / period))))
        return Series(points, grid, period, query.get("Label") or metric["MetricName"])

    def expression(self, query: dict[str, Any]) -> Value:
        text = query["Expression"].strip()
        head = text.split("(", 1)[0].strip().upper()
        if head == "SEARCH" or text.upper().startswith("SELECT"):
            raise MathError(
                f"{'SEARCH' if head == 'SEARCH' else 'Metrics Insights (SELECT)'} expressions are not supported "
                "by the local cloud; query the metrics by their exact dimensions instead"
            )
        value = self.node(_Parser(text).parse())
        if isinstance(value, Series):
            return Series(value.points, value.grid, value.period, query.get("Label") or query["Id"])
        return value

    def node(self, node: Any) -> Value:
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "str":
            raise MathError("a string is only valid as an argument of METRICS()")
        if kind == "ref":
            return self.value(node[1])
        if kind == "neg":
            return _combine(self.node(node[1]), -1.0, lambda a, b: a * b)
        if kind == "op":
            return _combine(self.node(node[2]), self.node(node[3]), _arith(node[1]))
        if kind == "array":
            items: list[Series] = []
            for item in node[1]:
                value = self.node(item)
                items.extend(value if isinstance(value, list) else [_series_of(value)])
            return items
        if kind == "call":
            return self.call(node[1], node[2])
        raise MathError(f"cannot evaluate {kind}")

    def call(self, name: str, args: list[Any]) -> Value:
        if name == "METRICS":
            text = args[0][1] if args and args[0][0] == "str" else ""
            return [
                _series_of(self.value(i))
                for i in self.order
                if "MetricStat" in self.queries[i] and text in i and i not in self.active
            ]
        if name in ("SEARCH", "ANOMALY_DETECTION_BAND", "INSIGHT_RULE_METRIC", "SERVICE_QUOTA", "LAMBDA"):
            raise MathError(f"{name}() is not supported by the local cloud")
        if name in ("SUM", "AVG", "MIN", "MAX", "STDDEV"):
            if len(args) != 1:
                raise MathError(f"{name}() takes one argument")
            value = self.node(args[0])
            if isinstance(value, Series):
                return _aggregate(name, list(value.points.values())) if value.points else math.nan
            if isinstance(value, list):
                if not value:
                    raise MathError(f"{name}() of an empty array")
                stamps = sorted({t for s in value for t in s.points})
                points = {t: _aggregate(name, [s.points[t] for s in value if t in s.points]) for t in stamps}
                return Series(points, value[0].grid, value[0].period, name)
            return value
        if name == "FILL":
            return self.fill(args)
        if name == "IF":
            return self.if_(args)
        if name in ("ABS", "CEIL", "FLOOR"):
            fn = _UNARY[name]
            return _combine(self.node(args[0]), 0.0, lambda a, _b: fn(a))
        if name == "PERIOD":
            return float(_series_of(self.node(args[0])).period)
        raise MathError(f"unknown or unsupported function {name}()")

    def fill(self, args: list[Any]) -> Value:
        if len(args) != 2:
            raise MathError("FILL() takes two arguments")
        target = self.node(args[0])
        how = args[1][1].upper() if args[1][0] == "ref" and args[1][1].upper() in ("REPEAT", "LINEAR") else None
        filler = None if how else self.node(args[1])

        def one(series: Series) -> Series:
            points = dict(series.points)
            known = sorted(points)
            for t in series.grid:
                if t in points:
                    continue
                if how is None:
                    fill_value = filler.points.get(t) if isinstance(filler, Series) else filler
                    if isinstance(fill_value, float | int):
                        points[t] = float(fill_value)
                    continue
                before = [k for k in known if k < t]
                after = [k for k in known if k > t]
                if how == "REPEAT" and before:
                    points[t] = series.points[before[-1]]
                elif how == "LINEAR" and before and after:
                    t0, t1 = before[-1], after[0]
                    v0, v1 = series.points[t0], series.points[t1]
                    points[t] = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            return Series(points, series.grid, series.period, series.label)

        if isinstance(target, list):
            return [one(s) for s in target]
        return one(_series_of(target))

    def if_(self, args: list[Any]) -> Value:
        if len(args) not in (2, 3):
            raise MathError("IF() takes two or three arguments")
        condition = _series_of(self.node(args[0]))
        then = self.node(args[1])
        otherwise = self.node(args[2]) if len(args) == 3 else None

        def pick(value: Value | None, t: float) -> float | None:
            if isinstance(value, Series):
                return value.points.get(t)
            if isinstance(value, float | int):
                return float(value)
            return None

        points = {}
        for t, c in condition.points.items():
            chosen = pick(then if c else otherwise, t)
            if chosen is not None:
                points[t] = chosen
        return Series(points, condition.grid, condition.period, condition.label)
