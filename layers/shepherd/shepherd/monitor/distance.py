"""Distribution distances between a baseline's and a current feature, as Model Monitor's baseline drift check uses.

"Schema for Constraints (constraints.json file)": the distance is the largest absolute difference between the two
cumulative distribution functions (``linf_simple``); ``Robust`` lowers it by the two-sample Kolmogorov-Smirnov
critical value, linf - c(alpha)·sqrt((n+m)/(n·m)), so small samples do not raise drift. As in Deequ (the engine
under Model Monitor, ``Distance.scala``): c(alpha) = 1.8 (alpha ≈ 0.003), numerical CDFs are read from the KLL
sketches at every retained item, and categorical LInfinity compares category frequencies. ChiSquared gives the
p-value of Pearson's test of homogeneity of the two samples, with Deequ's regrouping of small categories; a p-value
below the categorical threshold is drift, so that threshold is the check's false-alarm rate on unchanged data.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from shepherd.monitor.sketch import Sketch
from shepherd.monitor.statistics import NUMERICAL, STRING, categories, sketch_of

C_ALPHA = 1.8
ROBUST, SIMPLE = "Robust", "Simple"
LINFINITY, CHI_SQUARED = "LInfinity", "ChiSquared"


def _robust(linf: float, n: float, m: float) -> float:
    return max(0.0, linf - C_ALPHA * math.sqrt((n + m) / (n * m)))


def numerical(baseline: Sketch, current: Sketch, *, method: str = ROBUST) -> float:
    """L∞ distance between the two sketches' CDFs (lowered by the K-S critical value when Robust)."""
    n, m = baseline.count, current.count
    if not n or not m:
        return 0.0
    keys = np.union1d(baseline.weighted()[0], current.weighted()[0])
    linf = float(np.max(np.abs(baseline.rank(keys) / n - current.rank(keys) / m)))
    return _robust(linf, n, m) if method == ROBUST else linf


def categorical_linf(baseline: Counter[str], current: Counter[str], *, method: str = ROBUST) -> float:
    """L∞ distance between two category frequency distributions (lowered like numerical when Robust)."""
    n, m = sum(baseline.values()), sum(current.values())
    if not n or not m:
        return 0.0
    linf = max(abs(baseline[key] / n - current[key] / m) for key in baseline.keys() | current.keys())
    return _robust(linf, n, m) if method == ROBUST else linf


def chi_squared_p_value(baseline: Counter[str], current: Counter[str]) -> float:
    """p-value of Pearson's χ² test that both samples come from one category distribution (NaN if untestable).

    Both are samples, so this is the two-sample test of homogeneity; Deequ's one-sample test against the
    baseline's proportions would ignore the baseline's own sampling noise and call drift too often.
    """
    n, m = sum(baseline.values()), sum(current.values())
    if not n or not m:
        return math.nan
    pooled = {key: baseline[key] + current[key] for key in baseline.keys() | current.keys()}
    groups = _regrouped(pooled, min(n, m) / (n + m))
    if len(groups) < 2:
        return math.nan
    statistic = 0.0
    for keys in groups:
        total = sum(pooled[key] for key in keys)
        for counts, size in ((baseline, n), (current, m)):
            expected = size * total / (n + m)
            statistic += (sum(counts[key] for key in keys) - expected) ** 2 / expected
    return chi2_survival(statistic, len(groups) - 1)


def _regrouped(pooled: dict[str, int], smaller_share: float) -> list[list[str]]:
    """Categories grouped, smallest into next smallest, until the test's validity rule holds (as Deequ regroups).

    The smallest expected count of a group is its pooled count times the smaller sample's share. Two groups need
    every expected count ≥ 10 (Cochran); more need at most 20% of them below 5 (Yates, Moore & McCabe).
    """
    groups = {key: ([key], float(count)) for key, count in pooled.items()}
    while len(groups) >= 2:
        small, allowed = (10, 0) if len(groups) == 2 else (5, int(0.2 * len(groups)))
        if sum(total * smaller_share < small for _, total in groups.values()) <= allowed:
            break
        first, second = sorted(groups, key=lambda key: (groups[key][1], key))[:2]
        keys, total = groups.pop(first)
        groups[second] = (groups[second][0] + keys, groups[second][1] + total)
    return [keys for keys, _ in groups.values()]


def chi2_survival(statistic: float, dof: int) -> float:
    """P(X ≥ statistic) for X ~ χ²(dof): the regularized upper incomplete gamma Q(dof/2, statistic/2)."""
    a, x = dof / 2.0, statistic / 2.0
    if x <= 0:
        return 1.0
    if x < a + 1:  # series for P(a, x)
        term = total = 1.0 / a
        for n in range(1, 1000):
            term *= x / (a + n)
            total += term
            if term < total * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    # Lentz's continued fraction for Q(a, x)
    b, c, d = x + 1.0 - a, 1.0 / 1e-300, 1.0 / (x + 1.0 - a)
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)


def feature_distance(
    baseline: dict[str, Any], current: dict[str, Any], *, method: str, categorical_method: str
) -> tuple[str, float] | None:
    """("numerical" | "categorical", distance) of a feature in both statistics; None if their kinds differ.

    For ChiSquared the value is the test's p-value (small means drift), NaN where the test cannot run.
    """
    kinds = baseline.get("inferred_type"), current.get("inferred_type")
    if all(kind in NUMERICAL for kind in kinds):
        first, second = sketch_of(baseline), sketch_of(current)
        return ("numerical", numerical(first, second, method=method)) if first and second else None
    if all(kind == STRING for kind in kinds):
        first_counts, second_counts = categories(baseline), categories(current)
        if categorical_method == CHI_SQUARED:
            return "categorical", chi_squared_p_value(first_counts, second_counts)
        return "categorical", categorical_linf(first_counts, second_counts, method=method)
    return None
