"""Sequential probability ratio tests on streams of bad events.

The judge's test is grouped_sprt (error spending over the grouping that occurred, at the end of this module),
one stage per call; the benchmark calls it per replication, so both run the same code. The vectorised kernels
above it (arrays whose last axis is time) serve the strict (Ville) mode, the calibration of the ungrouped SPRT
whose spending grouped_sprt follows, and the benchmark's comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
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

    probability must be monotone in the boundary on [lo, hi], with hi the safe end (by Ville's inequality); three
    rounds of a 33-point grid. Should rounding make even the safe end miss the target, the safe end is kept.
    """
    safe = hi
    lo = min(lo, hi)
    for _ in range(3):
        grid = np.linspace(lo, safe, 33)
        ok = np.flatnonzero(probability(grid) <= target)
        if ok.size == 0:
            break
        first = int(ok.min())
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

    # Both boundaries stay strictly off 0 (a boundary at or across the start decides before any data, and the exit
    # probabilities assume a walk that starts between them): with a large beta (0.3 and more), lower + down + 0.5
    # is positive and the search would otherwise reach lowers >= 0.
    tiny = 1e-9
    for _ in range(2):
        upper = _most_permissive(
            partial(false_rollback, lower=lower), max(upper - up - 0.5, tiny), -math.log(alpha), alpha
        )
        lower = -_most_permissive(partial(miss, upper=upper), max(-(lower + down + 0.5), tiny), -math.log(beta), beta)
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


# ---------------------------------------------------------------------------------------------------------------
# Error spending over the grouping that occurred (the judge's default test).
#
# Conditioned on the bad events of a bin (n of them, c and b requests to candidate and champion), the candidate's
# count K is hypergeometric under H0 (identical variants: which requests fail does not depend on where the router
# sent them, so the c candidate requests are a random subset of the c + b) and Fisher's noncentral hypergeometric
# with odds ratio r under H1 (each request fails with p_c = r p_b at most: the true odds ratio is >= r). In shadow,
# a discordant pair is candidate-only with probability 1/2 (H0) or r/(1+r) (H1): binomial. Given the realised
# sequence of per-bin counts, the running candidate count is a Markov chain whose law under both hypotheses is
# known exactly, so a dynamic programme gives, at each look, P0(ROLLBACK so far) and P1(PROMOTE so far) for any
# boundaries. Each look's boundaries are the most permissive ones that keep those probabilities within what the
# ungrouped calibrated SPRT (checked after every bad event, at the stage's candidate share so far) has spent by
# the same number of bad events: a function of the information only, fixed before the look's outcome is seen.
# ---------------------------------------------------------------------------------------------------------------

SPENDING_CAP = 1 << 16  # bad events: the spending curves are exact up to here; beyond it the rest is spent slowly
_CONVERGED = 1e-13  # live mass of the ungrouped SPRT below which its spending curve is taken as complete


def sprt_steps(ratio: float, share: float) -> tuple[float, float, float, float]:
    """(up, down, p0, p1) of the ungrouped SPRT at candidate share `share`: a candidate bad event moves the LLR
    by +up, a champion one by -down; a bad event is the candidate's with probability p0 (H0) or p1 (H1)."""
    p1 = share * ratio / (share * ratio + 1.0 - share)
    return math.log(ratio / (share * ratio + 1.0 - share)), math.log(share * ratio + 1.0 - share), share, p1


@lru_cache(maxsize=256)
def _spending_curve(
    alpha: float, beta: float, ratio: float, share: float, n_max: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(F, G): F[n] = P0(the ungrouped SPRT has rolled back by its n-th bad event), G[n] = P1(promoted by then),
    n = 0 .. len - 1 (shorter than n_max + 1 once the SPRT has all but surely decided: constant after that).

    A per-event dynamic programme over the candidate's count; pure Python because its band is a few states wide
    (numpy's per-call overhead would dominate)."""
    upper, lower = calibrated_boundaries(alpha, beta, ratio, share)
    up, down, p0, p1 = sprt_steps(ratio, share)
    q0, q1 = 1.0 - p0, 1.0 - p1
    live0, live1, low = [1.0], [1.0], 0  # masses of the candidate counts low, low + 1, ... still inside
    spent0, spent1 = [0.0], [0.0]
    rolled, promoted = 0.0, 0.0
    for n in range(1, n_max + 1):
        width = len(live0)
        next0, next1 = [0.0] * (width + 1), [0.0] * (width + 1)
        for i in range(width):
            x, y = live0[i], live1[i]
            next0[i] += q0 * x
            next0[i + 1] += p0 * x
            next1[i] += q1 * y
            next1[i + 1] += p1 * y
        top = width + 1
        while top > 0 and (low + top - 1) * up - (n - low - top + 1) * down >= upper:
            top -= 1
            rolled += next0[top]
        start = 0
        while start < top and (low + start) * up - (n - low - start) * down <= lower:
            promoted += next1[start]
            start += 1
        live0, live1, low = next0[start:top], next1[start:top], low + start
        spent0.append(rolled)
        spent1.append(promoted)
        if not live0 or (sum(live0) < _CONVERGED and sum(live1) < _CONVERGED):
            break
    return tuple(spent0), tuple(spent1)


def spending(alpha: float, beta: float, ratio: float, share: float, bad_events: int) -> tuple[float, float]:
    """(alpha, beta) the grouped test may have spent by `bad_events` bad events: what the ungrouped calibrated SPRT
    at `share` (rounded to 1/SHARE_GRID) spends by then. Depends on the information only, never on the outcomes.

    Once that SPRT is decided but for a mass below 1e-13, all of alpha and beta is allowed. Beyond SPENDING_CAP
    bad events (an SPRT that slow: a tiny delta), the remainder is spent as 1 - SPENDING_CAP / n."""
    grid = min(max(round(share * SHARE_GRID), 1), SHARE_GRID - 1) / SHARE_GRID
    n = max(int(bad_events), 0)
    size = 64
    while size < min(n, SPENDING_CAP):
        size *= 2
    f, g = _spending_curve(alpha, beta, ratio, grid, size)
    if n < len(f):
        # Wald's boundaries (small steps) may spend up to alpha / (1 - beta): the allowance never passes the target.
        return min(f[n], alpha), min(g[n], beta)
    if len(f) <= size:  # converged: the SPRT has all but surely decided; what its calibration left is free too
        return alpha, beta
    rest = 1.0 - SPENDING_CAP / n
    spent_a, spent_b = min(f[-1], alpha), min(g[-1], beta)
    return spent_a + (alpha - spent_a) * rest, spent_b + (beta - spent_b) * rest


def _log_weights(c: int, b: int, n: int) -> tuple[int, list[float]]:
    """(k_min, ln C(c, k) + ln C(b, n - k) for k = k_min .. k_max): the hypergeometric's unnormalised log-pmf."""
    k_min, k_max = max(0, n - b), min(n, c)
    first = math.lgamma(c + 1) - math.lgamma(k_min + 1) - math.lgamma(c - k_min + 1)
    first += math.lgamma(b + 1) - math.lgamma(n - k_min + 1) - math.lgamma(b - n + k_min + 1)
    weights = [first]
    for k in range(k_min, k_max):
        weights.append(weights[-1] + math.log((c - k) * (n - k) / ((k + 1) * (b - n + k + 1))))
    return k_min, weights


def _normalised(log_weights: list[float]) -> tuple[list[float], float]:
    top = max(log_weights)
    values = [math.exp(item - top) for item in log_weights]
    total = sum(values)
    return [item / total for item in values], top + math.log(total)


def bin_laws(n: int, c: int, b: int, ratio: float, *, paired: bool) -> tuple[int, list[float], list[float], float]:
    """The law of a bin's candidate count given its n bad events: (k_min, pmf under H0, pmf under H1, offset),
    pmfs over k = k_min, k_min + 1, ...; the bin's log-likelihood ratio is k ln(ratio) - offset.

    A/B (c, b: the bin's requests): hypergeometric (H0) and Fisher's noncentral hypergeometric with odds ratio
    `ratio` (H1). Shadow (paired): binomial with 1/2 (H0) and ratio / (1 + ratio) (H1)."""
    log_r = math.log(ratio)
    if paired:
        k_min = 0
        log_weights = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(n + 1)]
    else:
        k_min, log_weights = _log_weights(c, b, n)
    h0, norm0 = _normalised(log_weights)
    h1, norm1 = _normalised([item + (k_min + i) * log_r for i, item in enumerate(log_weights)])
    return k_min, h0, h1, norm1 - norm0


@dataclass(frozen=True)
class GroupedPath:
    """The grouped error-spending test over a stage's bins (index = bin position).

    statistic[t] is the log-likelihood ratio after bin t; the test rolls back at the first bin where
    statistic >= upper[t] and promotes where statistic <= lower[t] (below every reachable value while PROMOTE is
    not allowed). index / side: the deciding bin and +1 (ROLLBACK) or -1 (PROMOTE), the arrays then ending there;
    -1 / 0 while undecided. alpha_spent / beta_spent: P0(ROLLBACK) and P1(PROMOTE) up to the last bin covered,
    exact given the grouping."""

    statistic: FloatArray
    upper: FloatArray
    lower: FloatArray
    index: int
    side: int
    alpha_spent: float
    beta_spent: float


def _convolve(mass: list[float], pmf: list[float]) -> list[float]:
    if len(mass) * len(pmf) > 4096:
        return [float(item) for item in np.convolve(mass, pmf)]
    out = [0.0] * (len(mass) + len(pmf) - 1)
    for i, x in enumerate(mass):
        if x:
            for j, y in enumerate(pmf):
                out[i + j] += x * y
    return out


def _cut(
    mass0: list[float], mass1: list[float], room_a: float, room_b: float, may_promote: bool
) -> tuple[int, int, float, float]:
    """A look's boundaries over the live candidate counts (positions 0 .. len - 1): the lowest `top` whose H0 mass
    at or above it fits in room_a (ROLLBACK there), then the highest `start` below top whose H1 mass below it
    fits in room_b (PROMOTE below it; none unless may_promote). Returns (top, start, their H0 and H1 masses)."""
    top, tail = len(mass0), 0.0
    while top > 0 and tail + mass0[top - 1] <= room_a:
        top -= 1
        tail += mass0[top]
    start, head = 0, 0.0
    if may_promote:
        while start < top and head + mass1[start] <= room_b:
            head += mass1[start]
            start += 1
    return top, start, tail, head


def _looks(
    candidate_bad: ArrayLike,
    champion_bad: ArrayLike,
    candidate_n: ArrayLike,
    champion_n: ArrayLike,
    *,
    min_samples: int,
    paired: bool,
) -> tuple[NDArray[np.intp], tuple[list[int], ...], list[float], list[bool]]:
    """The bins grouped_sprt looks at, and at each: (bad events, the candidate's, requests per variant, bad events
    so far), the candidate's share of the requests so far (1/2 for pairs), whether PROMOTE is allowed."""
    kc = np.asarray(candidate_bad, dtype=np.int64)
    kb = np.asarray(champion_bad, dtype=np.int64)
    nc = np.asarray(candidate_n, dtype=np.int64)
    nb = np.asarray(champion_n, dtype=np.int64)
    informative = (nc > 0) & (nb > 0)
    bad = np.where(informative, kc + kb, 0)
    may_promote = (np.cumsum(nc) >= min_samples) & (np.cumsum(nb) >= min_samples)
    is_look = bad > 0
    if may_promote.any():
        is_look[int(may_promote.argmax())] = True
    looks = np.flatnonzero(is_look)
    if paired:
        shares = np.full(len(kc), 0.5)
    else:
        shared = np.cumsum(np.where(informative, nc + nb, 0))
        shares = np.where(shared > 0, np.cumsum(np.where(informative, nc, 0)) / np.maximum(shared, 1), 0.5)
    counts = (bad, np.where(informative, kc, 0), nc, nb, np.cumsum(bad))
    return (
        looks,
        tuple(item[looks].tolist() for item in counts),
        shares[looks].tolist(),
        may_promote[looks].tolist(),
    )


def grouped_sprt(
    candidate_bad: ArrayLike,
    champion_bad: ArrayLike,
    candidate_n: ArrayLike,
    champion_n: ArrayLike,
    *,
    alpha: float,
    beta: float,
    ratio: float,
    min_samples: int,
    paired: bool = False,
    observed: bool = True,
) -> GroupedPath:
    """Run the error-spending test over one stage's bins (1-D, in time order).

    A/B: *_n are requests (or labelled samples), *_bad bad events. Shadow (paired=True): candidate-only /
    champion-only discordant pairs, *_n the pairs. observed=False ignores the outcomes and runs to the last
    bin: alpha_spent / beta_spent are then its exact error rates for this grouping. Looks and cost: README.md."""
    looks, (n_list, k_list, c_list, b_list, total_list), share_list, promote_list = _looks(
        candidate_bad, champion_bad, candidate_n, champion_n, min_samples=min_samples, paired=paired
    )
    look_list, bins = looks.tolist(), len(np.asarray(candidate_bad))

    log_r = math.log(ratio)
    mass0, mass1, low = [1.0], [1.0], 0  # live law of the candidate count (low, low + 1, ...) under H0, H1
    spent_a = spent_b = 0.0
    count, offset = 0, 0.0  # candidate bad events and the LLR's offset so far
    rollback_at, promote_at = 1, -1  # candidate counts: ROLLBACK at >= rollback_at, PROMOTE at <= promote_at
    at_look = np.empty((len(look_list), 4))  # count, offset, rollback_at, promote_at after each look
    side, decided = 0, len(look_list)
    for i, n in enumerate(n_list):
        if n > 0 and mass0:
            k_min, pmf0, pmf1, bin_offset = bin_laws(n, c_list[i], b_list[i], ratio, paired=paired)
            mass0, mass1 = _convolve(mass0, pmf0), _convolve(mass1, pmf1)
            low += k_min
            offset += bin_offset
            count += k_list[i]
        if mass0:
            allow_a, allow_b = spending(alpha, beta, ratio, share_list[i], total_list[i])
            # Rounding slack: at most 1e-12 alpha (beta) per look.
            top, start, tail, head = _cut(
                mass0, mass1, allow_a - spent_a + 1e-12 * alpha, allow_b - spent_b + 1e-12 * beta, promote_list[i]
            )
            spent_a, spent_b = spent_a + tail, spent_b + head
            rollback_at, promote_at = low + top, low + start - 1  # start is 0 while PROMOTE is not allowed
            mass0, mass1, low = mass0[start:top], mass1[start:top], low + start
        at_look[i] = count, offset, rollback_at, promote_at
        if observed and (count >= rollback_at or count <= promote_at):
            side, decided = (1 if count >= rollback_at else -1), i + 1
            break
    end = look_list[decided - 1] + 1 if side else bins
    # Each bin carries the state of the last look at or before it (the start before the first look).
    which = np.searchsorted(looks[:decided], np.arange(end), side="right") - 1
    state = np.vstack([[0.0, 0.0, 1.0, -1.0], at_look[:decided]])[which + 1]
    statistic = state[:, 0] * log_r - state[:, 1]
    return GroupedPath(
        statistic=statistic,
        upper=state[:, 2] * log_r - state[:, 1],
        lower=state[:, 3] * log_r - state[:, 1],
        index=end - 1 if side else -1,
        side=side,
        alpha_spent=spent_a,
        beta_spent=spent_b,
    )
