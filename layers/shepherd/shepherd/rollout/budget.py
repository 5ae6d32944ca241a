"""One error budget per rollout, spent across its stages (pure functions, no pydantic).

The config's alpha and beta are the rollout's: the stages see disjoint data, so their false rollbacks add
(alpha_i = alpha x alpha_share_i) and their misses multiply (beta_i = beta ** beta_power_i). How the budget is
split, and why: shepherd/judge/README.md, "One budget per rollout".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GUARD_POWER = 0.1  # beta ** 0.1 per guard stage before full
FIRST_ALPHA_SHARE = 0.5  # the deciding stage's share of alpha when there are other stages
AFTER_FULL_BETA = 0.5  # full's test against the baseline: its PROMOTE is not part of the rollout's miss
DRIFT_MARGIN = 0.25  # full and the watch: a shared drift up to +25 % since the baseline is not the candidate's fault
PRE_FULL_KINDS = frozenset({"shadow", "ab"})
# The pre-flight replay's share of alpha, off the top: it can only reject (a false rejection is a false rollback),
# and it holds no part of beta (the later stages still bound the miss). docs/ROLLOUTS.md, "Replay".
REPLAY_ALPHA_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class StageBudget:
    """A stage's part of the rollout's budget: alpha_i = alpha x alpha_share, beta_i = beta ** beta_power (or
    AFTER_FULL_BETA when beta_power is 0: after the decision to promote to full)."""

    alpha_share: float
    beta_power: float

    def alpha(self, rollout_alpha: float) -> float:
        return rollout_alpha * self.alpha_share

    def beta(self, rollout_beta: float) -> float:
        return rollout_beta**self.beta_power if self.beta_power > 0 else AFTER_FULL_BETA


def split(kinds: Sequence[str]) -> list[StageBudget]:
    """Each stage's budget, for the stage kinds in rollout order (replay, shadow, ab..., full, watch)."""
    if not kinds:
        return []
    if kinds[0] == "replay":
        if len(kinds) == 1:
            return [StageBudget(alpha_share=1.0, beta_power=0.0)]
        scaled = [
            StageBudget(alpha_share=round(part.alpha_share * (1.0 - REPLAY_ALPHA_SHARE), 9), beta_power=part.beta_power)
            for part in split(kinds[1:])
        ]
        return [StageBudget(alpha_share=REPLAY_ALPHA_SHARE, beta_power=0.0), *scaled]
    before_full = [i for i, kind in enumerate(kinds) if kind in PRE_FULL_KINDS]
    first = before_full[0] if before_full else None
    guards = len(before_full) - 1 if before_full else 0
    first_power = 1.0 - GUARD_POWER * guards
    if guards and first_power < GUARD_POWER:  # many A/B steps: share beta's power equally
        first_power = 1.0 / len(before_full)
    guard_power = (1.0 - first_power) / guards if guards else 0.0
    others = len(kinds) - (1 if first is not None else 0)
    first_share = 1.0 if not others else FIRST_ALPHA_SHARE
    other_share = (1.0 - first_share) / others if others else 0.0
    if first is None:
        other_share = 1.0 / len(kinds)
    # Rounded: the shares travel through Step Functions as JSON, and the judge's precomputed boundaries
    # (judge/boundaries.json) are looked up by the rates they give.
    first_share, other_share = round(first_share, 9), round(other_share, 9)
    first_power, guard_power = round(first_power, 9), round(guard_power, 9)
    out = []
    for i, kind in enumerate(kinds):
        if i == first:
            out.append(StageBudget(alpha_share=first_share, beta_power=first_power))
        elif kind in PRE_FULL_KINDS:
            out.append(StageBudget(alpha_share=other_share, beta_power=guard_power))
        else:
            out.append(StageBudget(alpha_share=other_share, beta_power=0.0))
    return out


def rollout_rates(budgets: Sequence[StageBudget], alpha: float, beta: float) -> tuple[float, float]:
    """The bounds the split gives the rollout: (sum of alpha_i, product of beta_i over the stages before full)."""
    total_alpha = sum(item.alpha(alpha) for item in budgets)
    miss = 1.0
    for item in budgets:
        if item.beta_power > 0:
            miss *= item.beta(beta)
    return total_alpha, miss if any(item.beta_power > 0 for item in budgets) else 1.0
