"""bench/judge.py's whole rollouts (issue 18): the group-sequential competitor, the scenarios, the contract's keys."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_judge", ROOT / "bench" / "judge.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_judge"] = module
    spec.loader.exec_module(module)
    return module


def _scenario(bench: ModuleType, name: str) -> object:
    return next(item for item in bench.ROLLOUT_SCENARIOS if item.name == name)


@pytest.mark.parametrize(("alpha", "beta", "weight"), [(0.025, 0.2**0.7, 100.0), (0.005, 0.2**0.1, 10.0)])
def test_the_group_sequential_design_spends_its_error_rates_on_the_looks_it_planned(
    bench: ModuleType, alpha: float, beta: float, weight: float
) -> None:
    # Given the design for a stage at 200 rpm and 1 % errors
    n_max = bench.group_sequential_n_max(alpha, beta, 2.0, rpm=200, rate=0.01, weight=weight, max_minutes=120)
    planned = bench.planned_looks(200, 0.01, weight, 2400)
    # When its exact error rates are computed over the planned looks
    path = bench.group_sequential_path(planned, alpha=alpha, beta=beta, ratio=2.0, n_max=n_max, observed=False)
    # Then both are within the stage's budget, and beta is nearly all spent (the least maximum information)
    assert path.alpha_spent <= alpha
    assert 0.8 * beta < path.beta_spent <= beta
    shorter = bench.group_sequential_path(planned, alpha=alpha, beta=beta, ratio=2.0, n_max=n_max - 1, observed=False)
    assert shorter.beta_spent > beta


def test_the_group_sequential_false_rollback_holds_on_looks_it_did_not_plan(bench: ModuleType) -> None:
    # Given four times the planned traffic per look (alpha spending depends on the information, not the schedule)
    alpha, beta = 0.025, 0.2**0.7
    n_max = bench.group_sequential_n_max(alpha, beta, 2.0, rpm=200, rate=0.01, weight=100.0, max_minutes=120)
    looks = bench.planned_looks(800, 0.01, 100.0, 600)
    path = bench.group_sequential_path(looks, alpha=alpha, beta=beta, ratio=2.0, n_max=n_max, observed=False)
    # Then P0(ROLLBACK) is still within alpha
    assert path.alpha_spent <= alpha


def test_the_group_sequential_design_rolls_back_a_failing_candidate_and_promotes_a_clean_one(
    bench: ModuleType,
) -> None:
    # Shadow looks of 20 bad events each among 2,000 requests per variant
    def looks(candidate_share: float) -> list[tuple[list[tuple[int, int, int, int]], bool]]:
        return [([(20, round(20 * candidate_share), 1000, 1000)], True) for _ in range(20)]

    settings = {"alpha": 0.025, "beta": 0.32, "ratio": 2.0, "n_max": 60.0}
    failing = bench.group_sequential_path(looks(0.9), **settings)
    clean = bench.group_sequential_path(looks(0.3), **settings)
    assert (failing.side, failing.look) == (1, 0)
    assert clean.side == -1


def test_loads_per_instance_follow_the_products_instance_counts(bench: ModuleType) -> None:
    scenario = _scenario(bench, "bad_200rpm_load")
    stages = bench._rollout_stages("shepherd")
    loads = dict(
        zip([f"{kind}{weight:g}" for kind, weight, *_ in stages], bench.load_factors(scenario, stages), strict=True)
    )
    # The shadow gets the champion's instance count; in A/B the challenger gets plan.challenger_count's: 2 of the
    # champion's 6 for 10 % (1 now, 2 for the next step's 25 %), then 6 for 25 % (the next step's 50 %)
    assert loads["shadow100"] == (1.0, 1.0)
    assert loads["ab10"] == pytest.approx((0.9, 0.1 * 6 / 2))
    assert loads["ab25"] == pytest.approx((0.75, 0.25 * 6 / 6))
    assert loads["ab50"] == pytest.approx((0.5, 0.5))
    assert loads["full100"] == (1.0, 1.0)
    # and a scenario without a load model has none
    assert set(bench.load_factors(_scenario(bench, "bad_200rpm"), stages)) == {(1.0, 1.0)}


def test_labels_are_filed_by_their_arrival_minute(bench: ModuleType) -> None:
    rng = np.random.default_rng(3)
    predictions = np.full(60, 100)
    prompt = _scenario(bench, "good_labels_30min").__class__(
        "prompt", "good", "", 100, 0.01, 1.0, label_delay=1e-9, labelled=1.0, wrong=0.0
    )
    late = _scenario(bench, "good_labels_30min").__class__(
        "late", "good", "", 100, 0.01, 1.0, label_delay=1e6, labelled=1.0, wrong=0.0
    )
    labelled, wrong = bench._labels(predictions, 0.0, prompt, rng)
    assert labelled.tolist() == predictions.tolist()  # no delay: each in its own minute
    assert wrong.sum() == 0
    assert bench._labels(predictions, 0.0, late, rng)[0].sum() == 0  # none arrives before the stage ends


def test_a_scenario_says_whether_its_traffic_allows_a_decision(bench: ModuleType) -> None:
    assert bench.decidable(_scenario(bench, "good_200rpm"))
    assert not bench.decidable(_scenario(bench, "good_20rpm"))


def test_the_shepherd_stages_derive_their_maxima_and_the_stagewise_baseline_keeps_the_old_ones(
    bench: ModuleType,
) -> None:
    ours, today = bench._rollout_stages("shepherd"), bench._rollout_stages("shepherd_stagewise")
    # The product's defaults: shadow, A/B and full end where their traffic says (capped); the watch is fixed
    assert [stage["max_from_traffic"] for *_, (stage, _) in ours] == [True] * 5 + [False]
    # today's judge: 120/120/30-minute maxima, alpha and beta whole per stage
    assert [maximum for _, _, maximum, _ in today] == [120, 120, 120, 120, 30, 120]
    assert not any(stage["max_from_traffic"] or stage["alpha_share"] for *_, (stage, _) in today)
    # and the derived maxima are shepherd.judge.duration's for the scenario's traffic: longer at lower traffic
    fast, slow = _scenario(bench, "good_200rpm"), _scenario(bench, "good_50rpm")
    shadow = ours[0][3]
    assert bench.stage_maximum(fast, *shadow) < bench.stage_maximum(slow, *shadow) < shadow[0]["max_minutes"]
    assert bench.stage_maximum(fast, *today[0][3]) == 120


@pytest.mark.parametrize(
    ("decided", "limits", "expected"),
    [
        (None, {}, (False, 40)),  # no crossing: the stage ends at the first call at or past its maximum
        (11, {}, (True, 15)),  # bin 11 is complete at minute 14: the call at 15 sees it
        (37, {}, (False, 40)),  # the crossing is past the maximum: the engine drops that bin
        (20, {25: 20}, (False, 25)),  # a call's maximum falls to its minute: the stage ends, undecided
        (None, {10: 2000}, (False, 40)),  # each call has its own maximum: a long one at 10 ends nothing
    ],
)
def test_a_derived_maximum_ends_the_stage_at_the_call_the_product_would(
    bench: ModuleType, decided: int | None, limits: dict[int, int], expected: tuple[bool, int]
) -> None:
    cap = 1440

    def limit(call: int) -> int:
        return min(cap, limits.get(call, 37))

    assert bench.derived_end(decided, limit, cap) == expected


def test_the_rollouts_carry_the_contracts_keys(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("good_200rpm", "bad_labels_30min")
    monkeypatch.setattr(bench, "ROLLOUT_SCENARIOS", tuple(_scenario(bench, name) for name in names))
    rollouts = bench.run_rollouts(3, seed=1)
    assert set(rollouts) == set(names)
    for item in rollouts.values():
        assert {"candidate_is", "what", "replications", "decidable", "strategies"} <= set(item)
        assert item["replications"] == 3
        assert {"shepherd", "shepherd_stagewise"} <= set(item["strategies"])
        for row in item["strategies"].values():
            assert {"false_rollback", "miss", "undecided", "mean_requests", "p90_requests", "mean_minutes"} <= set(row)
    assert set(bench.COMPETITORS) <= set(rollouts["good_200rpm"]["strategies"])
    assert not set(bench.COMPETITORS) & set(rollouts["bad_labels_30min"]["strategies"])  # error rates only
