"""The candidate against the champion on the same rows: a paired difference with its confidence bounds.

Classification: accuracy, McNemar's exact test and the exact conditional interval that goes with it (given the
rows where exactly one model is right, the candidate's share of them is binomial; Clopper-Pearson bounds on that
share give bounds on the accuracy difference that reject exactly when the test does). Regression: the mean
absolute or squared error (or RMSE, R²) from a paired bootstrap of the rows. docs/PIPELINES.md, "Evaluation
gates", gives the rule and the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

CONFIDENCE = 0.95  # one-sided: the gate's "beats the champion by the margin" must hold at this confidence
RESAMPLES = 2000
_CHUNK = 100  # resamples drawn at a time: memory of CHUNK x rows indices
_BISECTIONS = 60

Problem = Literal["classification", "regression"]
RegressionMetric = Literal["mae", "mse", "rmse", "r2"]


@dataclass(frozen=True)
class PairedComparison:
    """Both models scored on the same rows; ``improvement`` is positive where the candidate is better."""

    problem: Problem
    metric: str  # what was compared: accuracy, mae, mse, rmse or r2
    method: str
    rows: int
    candidate: float
    champion: float
    improvement: float
    lower: float  # one-sided lower confidence bound of the improvement at ``confidence``
    upper: float  # one-sided upper bound at ``confidence``: [lower, upper] is the 1 - 2(1 - confidence) interval
    confidence: float
    p_value: float  # of "the candidate is no better than the champion"
    disagreement: float  # share of rows where the two answers differ
    band: float | None = None  # regression: answers further apart than this disagree

    def beats_by(self, margin: float) -> bool:
        """The candidate is better by at least ``margin`` with the stated confidence: the lower bound clears it."""
        return self.lower >= margin - 1e-12


# ---------------------------------------------------------------- classification


def _log_binomial_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = k), k = 0..n, for X ~ Binomial(n, p), 0 < p < 1."""
    k = np.arange(n + 1)
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1)))))
    return log_factorial[n] - log_factorial[k] - log_factorial[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    tail = _log_binomial_pmf(n, p)[k:]
    top = float(tail.max())
    return min(1.0, math.exp(top) * float(np.exp(tail - top).sum()))


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided exact bounds on a binomial proportion, each at ``confidence``, from k successes in n."""
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lower = _crossing(lambda p: binomial_at_least(k, n, p), alpha) if k > 0 else 0.0
    upper = _crossing(lambda p: binomial_at_least(k + 1, n, p), 1.0 - alpha) if k < n else 1.0
    return lower, upper


def _crossing(tail: Callable[[float], float], level: float) -> float:
    """The p where ``tail``, which grows with p, reaches ``level``: bisection."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if tail(middle) < level:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def mcnemar(
    candidate_right: Sequence[bool],
    champion_right: Sequence[bool],
    disagreement: float,
    *,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """Accuracy of two classifiers on the same rows; ``disagreement``: the share of rows their labels differ."""
    rows = len(candidate_right)
    if rows == 0 or rows != len(champion_right):
        raise ValueError(f"paired rows: {rows} candidate answers, {len(champion_right)} champion answers")
    wins = sum(1 for a, b in zip(candidate_right, champion_right, strict=True) if a and not b)
    losses = sum(1 for a, b in zip(candidate_right, champion_right, strict=True) if b and not a)
    both = sum(1 for a, b in zip(candidate_right, champion_right, strict=True) if a and b)
    discordant = wins + losses
    share_low, share_high = clopper_pearson(wins, discordant, confidence)
    scale = discordant / rows
    return PairedComparison(
        problem="classification",
        metric="accuracy",
        method="McNemar exact test, exact conditional (Clopper-Pearson) bounds",
        rows=rows,
        candidate=(both + wins) / rows,
        champion=(both + losses) / rows,
        improvement=(wins - losses) / rows,
        lower=(2 * share_low - 1) * scale if discordant else 0.0,
        upper=(2 * share_high - 1) * scale if discordant else 0.0,
        confidence=confidence,
        p_value=binomial_at_least(wins, discordant, 0.5) if discordant else 1.0,
        disagreement=disagreement,
    )


# ---------------------------------------------------------------- regression


def regression_metric(gate_metric: str) -> RegressionMetric:
    """What a regression gate's metric measures, from its name: RMSE, MSE, R², else mean absolute error."""
    name = gate_metric.lower()
    if "rmse" in name:
        return "rmse"
    if "mse" in name or "squared" in name:
        return "mse"
    if "r2" in name or "r_squared" in name or "rsquared" in name:
        return "r2"
    return "mae"


def _score(metric: RegressionMetric, mean_loss: np.ndarray, spread: np.ndarray | float) -> np.ndarray:
    """The metric from the mean per-row loss (absolute error for mae, squared error otherwise)."""
    if metric in ("mae", "mse"):
        return mean_loss
    if metric == "rmse":
        return np.sqrt(mean_loss)
    return 1.0 - mean_loss / np.where(np.asarray(spread) > 0, spread, np.nan)


def bootstrap(
    labels: Sequence[float],
    candidate: Sequence[float],
    champion: Sequence[float],
    metric: RegressionMetric,
    *,
    seed: int,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
) -> PairedComparison:
    """A regression metric of two models on the same rows, with percentile bounds from resampling the rows
    (pairs kept together); ``seed`` makes a run's record reproducible."""
    truth = np.asarray(labels, dtype=float)
    ours, theirs = np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)
    rows = len(truth)
    if rows == 0 or not len(ours) == len(theirs) == rows:
        raise ValueError(f"paired rows: {rows} labels, {len(ours)} candidate and {len(theirs)} champion answers")
    sign = 1.0 if metric == "r2" else -1.0  # the improvement is positive where the candidate is better
    loss = np.abs if metric == "mae" else np.square
    ours_loss, theirs_loss = loss(ours - truth), loss(theirs - truth)
    squares = np.square(truth)
    cand_value = float(_score(metric, ours_loss.mean(), float(np.var(truth))))
    champ_value = float(_score(metric, theirs_loss.mean(), float(np.var(truth))))
    generator = np.random.default_rng(seed)
    gains = []
    for start in range(0, resamples, _CHUNK):
        # Rows drawn with replacement, a row's two answers together; only what the metric needs is gathered.
        picks = generator.integers(0, rows, size=(min(_CHUNK, resamples - start), rows), dtype=np.int32)
        spread = squares[picks].mean(axis=1) - np.square(truth[picks].mean(axis=1)) if metric == "r2" else 0.0
        ours_scores = _score(metric, ours_loss[picks].mean(axis=1), spread)
        theirs_scores = _score(metric, theirs_loss[picks].mean(axis=1), spread)
        gains.append(sign * (ours_scores - theirs_scores))
    gain = np.concatenate(gains)
    gain = gain[np.isfinite(gain)]
    alpha = 1.0 - confidence
    band = float(np.sqrt(np.mean(np.square(theirs - truth))))  # the champion's RMSE on these rows
    improvement = sign * (cand_value - champ_value)
    return PairedComparison(
        problem="regression",
        metric=metric,
        method=f"paired bootstrap, {resamples} resamples, percentile bounds",
        rows=rows,
        candidate=cand_value,
        champion=champ_value,
        improvement=improvement,
        lower=float(np.quantile(gain, alpha)) if len(gain) else improvement,
        upper=float(np.quantile(gain, 1 - alpha)) if len(gain) else improvement,
        confidence=confidence,
        p_value=float((np.count_nonzero(gain <= 0) + 1) / (len(gain) + 1)),
        disagreement=float(np.mean(np.abs(ours - theirs) > band)) if band > 0 else float(np.mean(ours != theirs)),
        band=band,
    )
