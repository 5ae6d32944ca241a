"""Sequential probability ratio tests on streams of bad events, vectorised over numpy arrays.

Every function accepts arrays of any shape whose last axis is time (60-s bins), so the judge
(one stage, one row) and the benchmark (thousands of replications) run the same code.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def wald_boundaries(alpha: float, beta: float, *, strict: bool = False) -> tuple[float, float]:
    """(upper, lower) log-likelihood-ratio boundaries: Wald's ln((1-beta)/alpha), ln(beta/(1-alpha)),
    or with strict ln(1/alpha), ln(beta), for which Ville's inequality gives the error rates exactly."""
    if not (0.0 < alpha < 1.0 and 0.0 < beta < 1.0 and alpha + beta < 1.0):
        raise ValueError(f"need 0 < alpha, beta and alpha + beta < 1, got alpha={alpha}, beta={beta}")
    if strict:
        return -math.log(alpha), math.log(beta)
    return math.log((1.0 - beta) / alpha), math.log(beta / (1.0 - alpha))


def split_llr_increments(
    candidate_bad: ArrayLike,
    champion_bad: ArrayLike,
    candidate_requests: ArrayLike,
    champion_requests: ArrayLike,
    ratio: float,
) -> FloatArray:
    """Per-bin log-likelihood ratio of "candidate rate = ratio x champion rate" against "equal rates".

    Given the bad events of a bin, each came from the candidate with probability c/(c+b) under H0
    and c*r/(c*r+b) under H1 (c, b: the bin's requests per variant), whatever the champion's rate:
    the increment is k*ln(r) + n*(ln(c+b) - ln(c*r+b)) with k candidate and n total bad events.
    """
    k = np.asarray(candidate_bad, dtype=np.float64)
    n = k + np.asarray(champion_bad, dtype=np.float64)
    c = np.asarray(candidate_requests, dtype=np.float64)
    b = np.asarray(champion_requests, dtype=np.float64)
    total = c + b
    safe_total = np.where(total > 0, total, 1.0)
    # A bin with no request to one variant says nothing about the comparison: both terms cancel to 0.
    increment = k * math.log(ratio) + n * (np.log(safe_total) - np.log(np.where(total > 0, c * ratio + b, 1.0)))
    return np.where((c > 0) & (b > 0), increment, 0.0)


def paired_llr_increments(candidate_only: ArrayLike, champion_only: ArrayLike, ratio: float) -> FloatArray:
    """Per-bin McNemar-style log-likelihood ratio on discordant pairs.

    A discordant pair is candidate-only with probability 1/2 under H0 (equal marginal rates) and
    r/(1+r) under H1 (discordant odds r, implied by a marginal rate ratio >= r).
    """
    b = np.asarray(candidate_only, dtype=np.float64)
    c = np.asarray(champion_only, dtype=np.float64)
    return b * math.log(2.0 * ratio / (1.0 + ratio)) + c * math.log(2.0 / (1.0 + ratio))


def first_crossing(
    path: FloatArray, upper: float, lower: float, may_promote: NDArray[np.bool_]
) -> tuple[NDArray[np.intp], NDArray[np.int8]]:
    """Index of the first bin whose cumulative LLR reaches upper, or reaches lower where may_promote.

    Along the last axis. Returns (index, side) with side +1 (upper: ROLLBACK), -1 (lower: PROMOTE) or
    0 (still inside, index then -1).
    """
    rollback = path >= upper
    hit = rollback | (may_promote & (path <= lower))
    crossed = hit.any(axis=-1)
    index = np.where(crossed, hit.argmax(axis=-1), -1)
    at_index = np.take_along_axis(rollback, np.maximum(index, 0)[..., np.newaxis], axis=-1)[..., 0]
    side = np.where(crossed, np.where(at_index, 1, -1), 0).astype(np.int8)
    return index, side


def bernoulli_kl(p: float, q: float) -> float:
    """Kullback-Leibler divergence KL(Bern(p) || Bern(q)) in nats."""
    terms = 0.0
    if p > 0.0:
        terms += p * math.log(p / q)
    if p < 1.0:
        terms += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return terms


def wald_hoeffding_bound(p_true: float, p0: float, p1: float, alpha: float, beta: float, *, bad: bool) -> float:
    """Lower bound on the expected number of stream observations of any test with errors (alpha, beta).

    A test that rolls back with probability >= 1-beta at p_true (p_true at or beyond p1) while rolling
    back with probability <= alpha at p0 needs E[N] >= d(1-beta, alpha) / KL(p_true || p0); the mirror
    holds for a good candidate (p_true at or below p0) against p1.
    """
    if bad:
        return bernoulli_kl(1.0 - beta, alpha) / bernoulli_kl(p_true, p0)
    return bernoulli_kl(1.0 - alpha, beta) / bernoulli_kl(p_true, p1)
