"""What Shepherd's resources cost: a price table kept as data with its date (prices.json), overridable per model.

An estimate from on-demand list prices, never a bill: a price the table does not hold is unknown, with the
reason, never 0. docs/ROLLOUTS.md, "What a rollout costs".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.json")


@cache
def _table() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return loaded


def region_of(arn: str) -> str:
    """An ARN's region (arn:partition:service:region:account:resource), '' when it names none."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 else ""


@dataclass(frozen=True)
class Estimate:
    """US dollars, or None with the reason they are unknown."""

    usd: float | None
    unknown: str = ""


@dataclass(frozen=True)
class Prices:
    """One region's prices, with the model's own instance prices over the table's."""

    region: str
    as_of: str
    instance_usd_per_hour: Mapping[str, float] = field(default_factory=dict)
    overridden: frozenset[str] = frozenset()
    transition_usd: float | None = None  # one Step Functions standard state transition
    lambda_request_usd: float | None = None
    lambda_gb_second_usd: float | None = None

    def instance_hours(self, instance_type: str | None, hours: float) -> Estimate:
        """``hours`` instance-hours of ``instance_type`` (a real-time endpoint's or a transform job's)."""
        if not instance_type:
            return Estimate(None, "no instance type recorded")
        price = self.instance_usd_per_hour.get(instance_type)
        if price is None:
            return Estimate(
                None,
                f"no price for {instance_type} in {self.region or 'this region'} "
                f"(table as of {self.as_of}): set rollout.cost.instance_prices",
            )
        return Estimate(hours * price)

    def orchestration(self, transitions: int, requests: int, gb_seconds: float) -> Estimate:
        """Step Functions standard transitions and Lambda requests and GB-seconds."""
        rates = (self.transition_usd, self.lambda_request_usd, self.lambda_gb_second_usd)
        if any(rate is None for rate in rates):
            return Estimate(None, f"no Step Functions or Lambda prices for {self.region or 'this region'}")
        transition, request, gb_second = (float(rate or 0.0) for rate in rates)
        return Estimate(transitions * transition + requests * request + gb_seconds * gb_second)


def prices(region: str, overrides: Mapping[str, float] | None = None) -> Prices:
    """The table's prices for ``region`` (none for a region it does not hold), ``overrides`` taking precedence."""
    table = _table()
    found = table["regions"].get(region, {})
    instances = dict(found.get("sagemaker", {}).get("instance_usd_per_hour", {}))
    instances.update(overrides or {})
    sfn, lam = found.get("step_functions", {}), found.get("lambda", {})
    per_1000 = sfn.get("standard_per_1000_transitions_usd")
    per_million = lam.get("per_1m_requests_usd")
    return Prices(
        region=region,
        as_of=str(table["as_of"]),
        instance_usd_per_hour=instances,
        overridden=frozenset(overrides or {}),
        transition_usd=None if per_1000 is None else per_1000 / 1000,
        lambda_request_usd=None if per_million is None else per_million / 1_000_000,
        lambda_gb_second_usd=lam.get("per_gb_second_usd"),
    )


def table() -> dict[str, Any]:
    """The price table as stored: its date, note, sources and figures (benchmarks print it)."""
    return json.loads(json.dumps(_table()))
