"""bench/cost.py: a sampled shadow is sized like the product sizes it and judged as the product judges it."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cost", ROOT / "bench" / "cost.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cost"] = module
    spec.loader.exec_module(module)
    return module


def test_the_shadow_fleet_shrinks_with_the_sampled_share(bench: ModuleType) -> None:
    busy = bench.Traffic(5_000, 12)
    assert [bench.shadow_instances(busy, p) for p in (100, 50, 25, 10)] == [12, 6, 3, 1]
    assert bench.shadow_instances(bench.Traffic(200, 2), 100) == 2


def test_a_sampled_shadow_decides_later_with_the_same_false_rollback_rate(bench: ModuleType) -> None:
    # Given the product's shadow stage (its share of the rollout's budget) and a candidate as good as the champion
    (_, _, _, (stage, config)) = next(s for s in bench._rollout_stages("shepherd") if s[0] == "shadow")
    traffic, replications = bench.Traffic(1_000, 4), 300
    alpha = 0.05 / 2  # the default alpha, half of it the shadow's (shepherd/rollout/budget.py)

    def runs(sampling: int) -> list[tuple[str, int]]:
        rng = np.random.default_rng(7)
        return [
            bench.shadow_stage(traffic, sampling, 1.0, rng, stage=stage, config=config) for _ in range(replications)
        ]

    # When the shadow sees every request, then 5 % of them
    whole, sampled = runs(100), runs(5)

    # Then the sampled one takes longer to decide, and rolls back a good candidate no more often than allowed
    assert np.mean([at for _, at in sampled]) > 1.5 * np.mean([at for _, at in whole])
    margin = 3 * math.sqrt(alpha * (1 - alpha) / replications)
    for verdicts in (whole, sampled):
        assert np.mean([v == "ROLLBACK" for v, _ in verdicts]) <= alpha + margin
