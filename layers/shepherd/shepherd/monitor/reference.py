"""The drift alert's reference: what each feature looks like without drift, compact, over a whole cycle.

Numeric features keep a location (Fourier terms over the cycle when captured history shows one), a scale and
57 quantiles of the standardised residual; categorical ones keep category counts. docs/MONITORING.md says why.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

Value = float | int | str | None
FORMAT = 1
Z_GRID = np.linspace(-3.5, 3.5, 57)  # quantile levels Phi(z): the residual's map to a standard normal
MAX_Z = 8.0
FEW_DISTINCT = 20  # a numeric column with at most this many distinct values is judged as categorical
SEASONAL_SIGMAS = 10.0  # Fourier terms are kept when they explain this many standard deviations of a chi-square


def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


LEVELS = _phi(Z_GRID)


def cycle_phase(at: datetime, cycle_hours: int) -> float:
    """Where a moment falls in the cycle, in hours from its start (cycles start at the Unix epoch, UTC)."""
    return (at.timestamp() / 3600.0) % cycle_hours


def _floats(values: Sequence[Value] | np.ndarray) -> tuple[np.ndarray, int]:
    """Values as floats, NaN where missing or not a number: (floats, count of those that were not numbers)."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        parsed: list[float] = []
        invalid = 0
        for value in values:
            try:
                parsed.append(math.nan if value is None or value == "" else float(value))
            except (TypeError, ValueError):
                parsed.append(math.nan)
                invalid += 1
        return np.asarray(parsed, dtype=float), invalid
    return np.where(np.isfinite(array), array, math.nan), 0


def parse_numbers(values: Sequence[Value] | np.ndarray) -> tuple[np.ndarray, int, int]:
    """Values as floats (missing dropped): (present values, missing count, count of values that are not numbers)."""
    array, invalid = _floats(values)
    present = ~np.isnan(array)
    return array[present], int((~present).sum()) - invalid, invalid


def category(value: Value) -> str | None:
    """A cell as a category name (None: missing); 3.0 and 3 are the same category."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fourier_basis(phases: np.ndarray, cycle_hours: int, harmonics: int) -> np.ndarray:
    angle = 2.0 * math.pi * np.asarray(phases, dtype=float)[:, None] / cycle_hours
    k = np.arange(1, harmonics + 1)[None, :]
    return np.hstack([np.ones((len(angle), 1)), np.cos(k * angle), np.sin(k * angle)])


@dataclass(frozen=True)
class NumericReference:
    """One numeric feature: location over the cycle, scale, residual quantiles at Phi(Z_GRID), and counts."""

    rows: int  # values behind the fit
    missing: int
    invalid: int
    location: tuple[float, ...]  # Fourier coefficients (a0, a1..aH, b1..bH); one entry: no seasonal term
    scale: float
    knots: tuple[float, ...]

    @property
    def parameters(self) -> int:
        """Coefficients of the location: the fitted location at one phase has about this over `rows` as variance."""
        return len(self.location)

    def standard_scores(self, values: np.ndarray, phase: float | None, cycle_hours: int | None) -> np.ndarray:
        """Values mapped to what is a standard normal sample when nothing has drifted."""
        loc = self.location[0]
        if len(self.location) > 1 and phase is not None and cycle_hours:
            basis = fourier_basis(np.array([phase]), cycle_hours, (len(self.location) - 1) // 2)[0]
            loc = float(basis @ np.asarray(self.location))
        residual = (values - loc) / self.scale
        knots = np.asarray(self.knots)
        scores = np.interp(residual, knots, Z_GRID)
        low, high = residual < knots[0], residual > knots[-1]
        slope_low = (Z_GRID[1] - Z_GRID[0]) / max(knots[1] - knots[0], 1e-12)
        slope_high = (Z_GRID[-1] - Z_GRID[-2]) / max(knots[-1] - knots[-2], 1e-12)
        scores[low] = Z_GRID[0] + (residual[low] - knots[0]) * slope_low
        scores[high] = Z_GRID[-1] + (residual[high] - knots[-1]) * slope_high
        return np.clip(scores, -MAX_Z, MAX_Z)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "rows": self.rows,
            "missing": self.missing,
            "invalid": self.invalid,
            "location": list(self.location),
            "scale": self.scale,
            "knots": list(self.knots),
        }


@dataclass(frozen=True)
class CategoricalReference:
    """One categorical feature: how often each category was seen, and missing values."""

    rows: int
    missing: int
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "categorical", "rows": self.rows, "missing": self.missing, "counts": dict(self.counts)}


FeatureReference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class Reference:
    """Every feature's reference; cycle_hours is the period of the captured history's cycle (None: static)."""

    features: dict[str, FeatureReference]
    cycle_hours: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cycle_hours": self.cycle_hours,
            "features": {name: ref.to_json() for name, ref in self.features.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        features: dict[str, FeatureReference] = {}
        for name, item in data["features"].items():
            if item["kind"] == "numeric":
                features[name] = NumericReference(
                    int(item["rows"]),
                    int(item["missing"]),
                    int(item["invalid"]),
                    tuple(float(v) for v in item["location"]),
                    float(item["scale"]),
                    tuple(float(v) for v in item["knots"]),
                )
            else:
                counts = {str(k): int(v) for k, v in item["counts"].items()}
                features[name] = CategoricalReference(int(item["rows"]), int(item["missing"]), counts)
        return cls(features, data.get("cycle_hours"))


def _numeric(values: np.ndarray, missing: int, basis: np.ndarray | None) -> NumericReference:
    location: tuple[float, ...] = (float(values.mean()),)
    residual = values - location[0]
    if basis is not None and len(values) > 10 * basis.shape[1]:
        coef = np.linalg.solve(basis.T @ basis, basis.T @ values)
        fitted = values - basis @ coef
        rss0, rss1 = float(residual @ residual), float(fitted @ fitted)
        explained = (rss0 - rss1) / max(rss1 / (len(values) - len(coef)), 1e-300)
        terms = basis.shape[1] - 1
        if explained > terms + SEASONAL_SIGMAS * math.sqrt(2 * terms):  # a chi-square with `terms` degrees
            location, residual = tuple(float(c) for c in coef), fitted
    scale = float(residual.std()) or 1.0
    knots = np.maximum.accumulate(np.quantile(residual / scale, LEVELS))
    knots = knots + np.arange(len(knots)) * 1e-9  # strictly increasing for interpolation
    return NumericReference(len(values), missing, 0, location, scale, tuple(float(k) for k in knots))


def _looks_categorical(values: Sequence[Value] | np.ndarray) -> bool:
    """Most of the first present values are not numbers (spares parsing a whole column of strings)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return False
    sample = [v for v in values[:200] if v is not None and v != ""]
    failed = 0
    for value in sample:
        try:
            float(value)
        except (TypeError, ValueError):
            failed += 1
    return failed * 2 > len(sample)


def build(
    columns: Mapping[str, Sequence[Value] | np.ndarray],
    *,
    at: Sequence[datetime] | None = None,
    cycle_hours: int = 24,
    harmonics: int = 3,
) -> Reference:
    """A reference from baseline rows; with `at` (each row's capture time) over whole cycles, seasonal terms too.

    A column whose every present value is a number (and has more than FEW_DISTINCT of them) is numeric."""
    basis = None
    if at is not None and harmonics > 0:
        hours = np.array([moment.timestamp() for moment in at]) / 3600.0
        basis = fourier_basis(hours % cycle_hours, cycle_hours, harmonics)
    features: dict[str, FeatureReference] = {}
    for name, values in columns.items():
        array, invalid = (np.array([]), 1) if _looks_categorical(values) else _floats(values)
        present = ~np.isnan(array)
        numbers = array[present]
        if invalid == 0 and len(numbers) > 1 and len(np.unique(numbers)) > FEW_DISTINCT:
            rows = basis[present] if basis is not None else None
            features[name] = _numeric(numbers, len(array) - len(numbers), rows)
        else:
            counts: Counter[str | None] = Counter()
            for value, count in Counter(values).items():
                counts[category(value)] += count
            missing = counts.pop(None, 0)
            features[name] = CategoricalReference(len(values), missing, {str(k): v for k, v in counts.items()})
    seasonal = any(isinstance(f, NumericReference) and f.parameters > 1 for f in features.values())
    return Reference(features, cycle_hours if seasonal else None)
