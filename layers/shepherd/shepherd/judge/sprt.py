"""Sequential probability ratio tests on streams of bad events, vectorised over numpy arrays.

Every function accepts arrays of any shape whose last axis is time (60-s bins), so the judge
(one stage, one row) and the benchmark (thousands of replications) run the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial

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
    path: FloatArray, upper: float | FloatArray, lower: float | FloatArray, may_promote: NDArray[np.bool_]
) -> tuple[NDArray[np.intp], NDArray[np.int8]]:
    """Index of the first bin whose cumulative LLR reaches upper, or reaches lower where may_promote.

    Along the last axis; upper and lower may be per-bin arrays (broadcast against path). Returns
    (index, side) with side +1 (upper: ROLLBACK), -1 (lower: PROMOTE) or 0 (still inside, index then -1).
    """
    rollback = path >= upper
    hit = rollback | (may_promote & (path <= lower))
    crossed = hit.any(axis=-1)
    index = np.where(crossed, hit.argmax(axis=-1), -1)
    at_index = np.take_along_axis(rollback, np.maximum(index, 0)[..., np.newaxis], axis=-1)[..., 0]
    side = np.where(crossed, np.where(at_index, 1, -1), 0).astype(np.int8)
    return index, side


MIN_CALIBRATED_STEP = 0.25  # below this largest LLR step (small delta), Wald's boundaries are used
SHARE_GRID = 100  # calibrations are made for the candidate's share rounded to 1/SHARE_GRID


def _geometric_filter(values: FloatArray, q: float) -> FloatArray:
    """out[..., t] = sum over s <= t of values[..., s] * q**(t - s), along the last axis.

    Computed as q**t * cumsum(values * q**-s) in blocks short enough that q**-s stays far from overflow.
    """
    width = values.shape[-1]
    out = np.empty_like(values)
    block = width if q**width > 1e-150 else max(1, int(150 / -math.log10(q)))
    carry = np.zeros(values.shape[:-1])
    for start in range(0, width, block):
        chunk = values[..., start : start + block]
        steps = np.arange(chunk.shape[-1], dtype=np.float64)
        out[..., start : start + block] = q**steps * (np.cumsum(chunk * q**-steps, axis=-1) + carry[..., np.newaxis])
        carry = out[..., start + chunk.shape[-1] - 1] * q
    return out


def exit_probabilities(
    p_up: float, up: float, down: float, uppers: ArrayLike, lowers: ArrayLike, *, max_ups: int = 100_000
) -> tuple[FloatArray, FloatArray]:
    """Exact (P(reach >= upper first), P(reach <= lower first)) of the walk on a stream of bad events.

    Each bad event moves the log-likelihood ratio by +up (from the candidate, probability p_up) or by
    -down (from the champion), starting at 0; one result per (upper, lower) pair. It is a dynamic
    programme over (k candidate, j champion events): between two candidate events the number of
    champion events is geometric, so each layer k is one geometric filter. The mass still inside
    after max_ups candidate events (or below 1e-13) is left out of both.
    """
    upper_arr, lower_arr = np.broadcast_arrays(
        np.atleast_1d(np.asarray(uppers, dtype=np.float64)), np.atleast_1d(np.asarray(lowers, dtype=np.float64))
    )
    q = 1.0 - p_up
    live = np.ones((upper_arr.size, 1))
    first_j = 0
    hit_upper, hit_lower = np.zeros(upper_arr.size), np.zeros(upper_arr.size)
    for k in range(max_ups):
        # Champion events before the next candidate event: absorbed below at the first j with k*up - j*down <= lower.
        absorbed_at = np.ceil((k * up - lower_arr) / down - 1e-12).astype(np.int64)
        width = int(absorbed_at.max()) - first_j
        if width <= 0:
            hit_lower += live.sum(axis=1)
            break
        padded = np.zeros((upper_arr.size, width))
        padded[:, : min(width, live.shape[1])] = live[:, :width]
        js = first_j + np.arange(width)
        gap = absorbed_at[:, np.newaxis] - js[np.newaxis, :]
        hit_lower += np.where(gap > 0, padded * q ** np.maximum(gap, 0).astype(np.float64), 0.0).sum(axis=1)
        before_up = p_up * _geometric_filter(padded, q)
        before_up[gap <= 0] = 0.0
        # The candidate event: absorbed above when (k+1)*up - j*down >= upper.
        above = ((k + 1) * up - js[np.newaxis, :] * down) >= upper_arr[:, np.newaxis]
        hit_upper += np.where(above, before_up, 0.0).sum(axis=1)
        before_up[above] = 0.0
        occupied = np.flatnonzero(before_up.any(axis=0))
        if occupied.size == 0 or before_up.sum(axis=1).max() < 1e-13:
            break
        live = before_up[:, occupied[0] :]
        first_j += int(occupied[0])
    return hit_upper, hit_lower


def _most_permissive(probability: Callable[[FloatArray], FloatArray], lo: float, hi: float, target: float) -> float:
    """The boundary in [lo, hi] closest to 0 whose error probability is <= target (hi satisfies it).

    probability must be monotone in the boundary, with hi the safe end; three rounds of a 33-point grid.
    """
    safe = hi
    for _ in range(3):
        grid = np.linspace(lo, safe, 33)
        ok = np.flatnonzero(probability(grid) <= target)
        first = int(ok.min())  # ok is never empty: the safe end is in the grid
        safe, lo = float(grid[first]), float(grid[max(first - 1, 0)])
    return safe


def table_key(alpha: float, beta: float, ratio: float) -> str:
    return f"{alpha:.10g}/{beta:.10g}/{ratio:.10g}"


@lru_cache(maxsize=1)
def _precomputed() -> dict[str, list[list[float]]]:
    """boundaries.json (tools/export_judge_boundaries.py): the default settings, computed once, not per cold start."""
    import json
    from pathlib import Path

    path = Path(__file__).with_name("boundaries.json")
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return dict(data["boundaries"]) if data.get("share_grid") == SHARE_GRID else {}


@lru_cache(maxsize=512)
def _calibrated(alpha: float, beta: float, ratio: float, share: float) -> tuple[float, float]:
    rows = _precomputed().get(table_key(alpha, beta, ratio))
    step = round(share * SHARE_GRID)
    if rows is not None and 1 <= step < SHARE_GRID and abs(step / SHARE_GRID - share) < 1e-12:
        upper, lower = rows[step - 1]
        return float(upper), float(lower)
    return _calibrate(alpha, beta, ratio, share)


def _calibrate(alpha: float, beta: float, ratio: float, share: float) -> tuple[float, float]:
    up = math.log(ratio / (share * ratio + 1.0 - share))
    down = math.log(share * ratio + 1.0 - share)
    p0, p1 = share, share * ratio / (share * ratio + 1.0 - share)
    upper, lower = wald_boundaries(alpha, beta)
    if max(up, down) < MIN_CALIBRATED_STEP:
        return upper, lower  # steps this small overshoot little: Wald's boundaries are close to exact

    def exits(p_up: float, uppers: ArrayLike, lowers: ArrayLike) -> tuple[FloatArray, FloatArray]:
        if up >= down:
            return exit_probabilities(p_up, up, down, uppers, lowers)
        # The programme is fastest when the larger step is the rarer layer: reflect the walk.
        reflected_upper, reflected_lower = exit_probabilities(
            1.0 - p_up, down, up, -np.asarray(lowers, dtype=np.float64), -np.asarray(uppers, dtype=np.float64)
        )
        return reflected_lower, reflected_upper

    # Alternately the lowest upper with P0(ROLLBACK) <= alpha and the highest lower with P1(PROMOTE) <= beta.
    # Raising lower only lowers P0(ROLLBACK) and lowering upper only lowers P1(PROMOTE), so after each
    # lower step both hold; two rounds reach the fixed point to within the grid.
    def false_rollback(uppers: FloatArray, lower: float) -> FloatArray:
        return exits(p0, uppers, lower)[0]

    def miss(negated_lowers: FloatArray, upper: float) -> FloatArray:
        return exits(p1, upper, -negated_lowers)[1]

    for _ in range(2):
        upper = _most_permissive(partial(false_rollback, lower=lower), upper - up - 0.5, -math.log(alpha), alpha)
        lower = -_most_permissive(partial(miss, upper=upper), -(lower + down + 0.5), -math.log(beta), beta)
    return upper, lower


def calibrated_boundaries(alpha: float, beta: float, ratio: float, share: float) -> tuple[float, float]:
    """(upper, lower) with P(ROLLBACK | equal rates) <= alpha and P(PROMOTE | rate ratio `ratio`) <= beta
    exactly, for the test checked after every single bad event, when the candidate has `share` of the
    requests (1/2 for shadow pairs). Wald's boundaries ignore the overshoot of the discrete steps and
    leave both error rates below their targets; these spend them (computed by exit_probabilities,
    cached, for the share rounded to 1/SHARE_GRID)."""
    wald_boundaries(alpha, beta)  # validates
    grid = min(max(round(share * SHARE_GRID), 1), SHARE_GRID - 1) / SHARE_GRID
    return _calibrated(alpha, beta, ratio, grid)


def boundaries_for_shares(
    alpha: float, beta: float, ratio: float, shares: ArrayLike, *, strict: bool = False
) -> tuple[FloatArray, FloatArray]:
    """Per-bin (upper, lower): calibrated for each bin's share of the stage so far, or Ville's when strict."""
    share_arr = np.asarray(shares, dtype=np.float64)
    if strict:
        upper, lower = wald_boundaries(alpha, beta, strict=True)
        return np.full(share_arr.shape, upper), np.full(share_arr.shape, lower)
    grid = np.clip(np.rint(np.nan_to_num(share_arr, nan=0.5) * SHARE_GRID), 1, SHARE_GRID - 1).astype(np.int64)
    uppers, lowers = np.empty(share_arr.shape), np.empty(share_arr.shape)
    for value in np.unique(grid):
        upper, lower = _calibrated(alpha, beta, ratio, int(value) / SHARE_GRID)
        uppers[grid == value], lowers[grid == value] = upper, lower
    return uppers, lowers


def stage_shares(candidate_requests: ArrayLike, champion_requests: ArrayLike) -> FloatArray:
    """The candidate's share of the requests from the stage's start to each bin (last axis), counting
    only bins where both variants had requests (the others add nothing to the statistic)."""
    c = np.asarray(candidate_requests, dtype=np.float64)
    b = np.asarray(champion_requests, dtype=np.float64)
    both = (c > 0) & (b > 0)
    c_sum, total = np.cumsum(np.where(both, c, 0.0), axis=-1), np.cumsum(np.where(both, c + b, 0.0), axis=-1)
    return np.where(total > 0, c_sum / np.maximum(total, 1.0), 0.5)


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
