"""Exact binomial tails and the Clopper-Pearson upper bound, in the standard library (scipy is not in the layer).

Each tail is summed from its far end's side of the mean, where the terms fall geometrically, so a sum stops after
a few dozen terms and a small p-value keeps its relative precision (it is never 1 minus a number near 1).
"""

from __future__ import annotations

import math
from functools import lru_cache

_NEGLIGIBLE = 1e-17  # a term this small against the sum so far changes no double


def _log_pmf(j: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * math.log(p) + (n - j) * math.log1p(-p)


def _sum(n: int, p: float, indices: range) -> float:
    """The pmf summed over ``indices``, which run away from the mode (step +1 or -1), each term from the one before
    by the pmf's ratio; stopped once the terms are negligible."""
    j = indices.start
    term = math.exp(_log_pmf(j, n, p))
    odds = p / (1 - p)
    total = 0.0
    for j in indices:
        total += term
        if term <= _NEGLIGIBLE * total:
            break
        # pmf(j + 1) / pmf(j) = (n - j) / (j + 1) x odds; pmf(j - 1) / pmf(j) = j / (n - j + 1) / odds
        term *= (n - j) / (j + 1) * odds if indices.step > 0 else j / (n - j + 1) / odds
    return total


def upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided exact test's p-value for k successes against rate p."""
    if not 0 <= p <= 1 or n < 0:
        raise ValueError(f"no binomial with n={n}, p={p}")
    if k <= 0:
        return 1.0
    if k > n or p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    if k > n * p:
        return min(1.0, _sum(n, p, range(k, n + 1)))
    return max(0.0, 1.0 - _sum(n, p, range(k - 1, -1, -1)))


def lower_tail(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return 1.0 - upper_tail(k + 1, n, p) if k + 1 > n * p else _lower(k, n, p)


def _lower(k: int, n: int, p: float) -> float:
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    return min(1.0, _sum(n, p, range(k, -1, -1)))


@lru_cache(maxsize=4096)  # a rollout's bound is asked once, a simulation's for the same few (k, n) many times
def upper_bound(k: int, n: int, alpha: float) -> float:
    """The Clopper-Pearson upper confidence bound on a rate from k successes in n trials: P(bound < rate) <= alpha
    whatever the rate (the largest p with P(X <= k) >= alpha, by bisection)."""
    if not 0 <= k <= n or n < 1 or not 0 < alpha < 1:
        raise ValueError(f"no bound for k={k}, n={n}, alpha={alpha}")
    if k == n:
        return 1.0
    low, high = k / n, 1.0
    while high - low > 1e-12:
        middle = (low + high) / 2
        if lower_tail(k, n, middle) >= alpha:
            low = middle
        else:
            high = middle
    return high


def conditional_upper_tail(x: int, m: int, k: int, n: int, odds_ratio: float) -> float:
    """P(X >= x | X + K = x + k) for independent X ~ Binomial(m, p1), K ~ Binomial(n, p2) whose odds ratio
    odds(p1) / odds(p2) is ``odds_ratio``: Fisher's noncentral hypergeometric tail, the exact conditional test of
    H0 odds ratio <= odds_ratio (it does not depend on the rates themselves, only on their odds ratio)."""
    if not (0 <= x <= m and 0 <= k <= n) or odds_ratio <= 0:
        raise ValueError(f"no conditional tail for x={x}/{m}, k={k}/{n}, odds ratio {odds_ratio}")
    total = x + k
    low, high = max(0, total - n), min(m, total)
    log_odds = math.log(odds_ratio)
    # log weight of y: log C(m, y) + log C(n, total - y) + y log(odds ratio), each from the one before by its ratio
    logs = [0.0]
    for y in range(low, high):
        step = (m - y) / (y + 1) * (total - y) / (n - total + y + 1)
        logs.append(logs[-1] + math.log(step) + log_odds)
    top = max(logs)
    weights = [math.exp(value - top) for value in logs]
    return min(1.0, sum(weights[x - low :]) / sum(weights))
