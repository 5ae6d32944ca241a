"""What a rollout cost (shepherd.rollout.cost, shepherd.cost): per stage on its ending record, and the shadow's
time-for-money option (rollout.shadow.sampling_percentage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shepherd import cost as prices
from shepherd.config import ConfigError, load_config
from shepherd.events.notifications import cost_line
from shepherd.rollout import cost, steps
from shepherd.rollout.plan import VariantSpec

from .test_rollout_steps import CONFIG, World, enter, roll_back, serving_v1

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
M5 = prices.prices("us-east-1").instance_usd_per_hour["ml.m5.large"]


@pytest.fixture
def world() -> World:
    made = World()
    made.config()
    return made


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def entered(minutes: float, index: int, kind: str, weight: float, instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "run": "r",
        "event": "stage-entered",
        "stage": kind,
        "stage_index": index,
        "weight": weight,
        "instances": instances,
        "at": at(minutes),
    }


def verdict(minutes: float, index: int, candidate_samples: int) -> dict[str, Any]:
    statistics = [
        {"metric": "latency", "candidate_samples": 1},
        {"metric": "error_rate", "candidate_samples": candidate_samples},
    ]
    return {"run": "r", "event": "verdict", "stage_index": index, "statistics": statistics, "at": at(minutes)}


def fleet(role: str, count: int, instance_type: str = "ml.m5.large") -> list[dict[str, Any]]:
    return [{"role": role, "instance_type": instance_type, "instance_count": count}]


def test_each_stage_costs_the_capacity_it_adds_for_as_long_as_it_lasts() -> None:
    # Given shadow 60 min on 2 instances, A/B 10 % 30 min on 1, full 30 min keeping the champion's 2, a watch
    records = [
        {"run": "r", "event": "started", "at": at(0)},
        entered(0, 0, "shadow", 100, fleet("candidate", 2)),
        verdict(30, 0, 500),
        verdict(55, 0, 1000),
        entered(60, 1, "ab", 10, fleet("candidate", 1)),
        verdict(85, 1, 120),
        entered(90, 2, "full", 100, fleet("champion", 2)),
        verdict(115, 2, 3000),
        entered(120, 3, "watch", 100, []),
        verdict(150, 3, 4000),
        {"run": "other", "event": "stage-entered", "stage": "ab", "instances": fleet("candidate", 50), "at": at(1)},
    ]

    # When the rollout ends at minute 180
    summary = cost.summary(records, run="r", ended_at=START + timedelta(minutes=180), prices=prices.prices("us-east-1"))

    # Then each stage has its instance-hours and dollars, the watch none, another run's records ignored
    stages = {s["stage"]: s for s in summary["cost"]["stages"]}
    assert list(stages) == ["shadow", "ab 10%", "full", "watch"]
    assert [stages[s]["instance_hours"] for s in stages] == [2.0, 0.5, 1.0, 0.0]
    assert stages["shadow"]["judge_calls"] == 2
    orchestration = 2 * 3 + 3  # transitions
    expected_shadow = 2.0 * M5 + orchestration * 0.025 / 1000 + 3 * 0.2 / 1e6 + 3 * 0.5 * 0.0000166667
    assert stages["shadow"]["usd"] == pytest.approx(expected_shadow, abs=1e-4)
    assert summary["cost"]["instance_hours"] == 3.5
    assert summary["cost"]["usd"] == pytest.approx(sum(s["usd"] for s in stages.values()), abs=1e-3)
    assert summary["cost"]["prices_as_of"] == "2026-12-08"
    # and the candidate's live requests per stage from the error-rate test's last look, summed
    assert [stages[s]["live_requests"] for s in stages] == [1000, 120, 3000, 4000]
    assert summary["live_requests"] == 8120


def test_an_instance_type_without_a_price_is_unknown_with_the_reason_never_zero() -> None:
    records = [entered(0, 0, "shadow", 100, fleet("candidate", 1, "ml.r7i.large"))]
    summary = cost.summary(records, run="r", ended_at=START + timedelta(hours=2), prices=prices.prices("us-east-1"))

    assert summary["cost"]["instance_hours"] == 2.0
    assert summary["cost"]["usd"] is None
    assert summary["cost"]["stages"][0]["usd"] is None
    (reason,) = summary["cost"]["unknown"]
    assert "ml.r7i.large" in reason
    assert "rollout.cost.instance_prices" in reason
    assert "USD unknown (no price for ml.r7i.large" in cost_line(summary["cost"])


def test_the_model_s_own_prices_override_the_table() -> None:
    records = [entered(0, 0, "shadow", 100, fleet("candidate", 1, "ml.r7i.large"))]
    mine = prices.prices("us-east-1", {"ml.r7i.large": 1.0})
    summary = cost.summary(records, run="r", ended_at=START + timedelta(hours=2), prices=mine)

    assert summary["cost"]["usd"] == pytest.approx(2.0, abs=1e-3)


def test_a_region_without_a_table_has_instance_hours_but_unknown_dollars() -> None:
    records = [entered(0, 0, "shadow", 100, fleet("candidate", 1))]
    summary = cost.summary(records, run="r", ended_at=START + timedelta(hours=1), prices=prices.prices("eu-west-3"))

    assert summary["cost"]["instance_hours"] == 1.0
    assert summary["cost"]["usd"] is None
    assert any("eu-west-3" in reason for reason in summary["cost"]["unknown"])


def test_a_replay_stage_costs_its_transform_jobs_and_no_live_request() -> None:
    jobs = [
        {"role": "candidate", "instance_type": "ml.m5.large", "instance_count": 1, "seconds": 1800},
        {"role": "champion", "instance_type": "ml.m5.large", "instance_count": 2, "seconds": 900},
    ]
    records = [
        {"run": "r", "event": "replay", "jobs": jobs, "at": at(0)},
        {"run": "r", "event": "rejected", "at": at(40)},
    ]
    summary = cost.summary(records, run="r", ended_at=START + timedelta(minutes=40), prices=prices.prices("us-east-1"))

    (replay,) = summary["cost"]["stages"]
    assert replay["stage"] == "replay"
    assert replay["instance_hours"] == 1.0
    assert replay["usd"] == pytest.approx(M5, abs=1e-4)
    assert summary["live_requests"] == 0


def test_arns_name_their_region() -> None:
    assert prices.region_of("arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn/2") == "eu-west-1"
    assert prices.region_of("churn") == ""


def test_the_price_table_says_its_date_and_sources() -> None:
    table = prices.table()
    assert table["as_of"] == "2026-12-08"
    region = table["regions"]["us-east-1"]
    assert region["step_functions"]["source"].startswith("https://aws.amazon.com/step-functions/pricing")
    assert region["sagemaker"]["checked"] is False  # said, not hidden: see the table's note


# ---------------------------------------------------------------- on the rollout's record


def test_a_promoted_rollout_records_its_cost_and_says_it_in_the_notification(world: World) -> None:
    serving_v1(world)
    state = world.prepare(2)
    for index in range(6):  # shadow, A/B 10/25/50, full, the watch: 10 minutes each
        enter(world, state, index)
    steps.finalize(world.deps, state, "token-final")

    answer = steps.promoted(world.deps, state)

    record = world.store.records("churn")[-1]
    assert record["event"] == "promoted"
    stages = record["cost"]["stages"]
    assert [s["stage"] for s in stages] == ["shadow", "ab 10%", "ab 25%", "ab 50%", "full", "watch"]
    # shadow 2 instances, A/B 1 then 2 then 2 (raised ahead of the 50 % step), full the champion's 2, watch none
    assert [s["instance_hours"] for s in stages] == pytest.approx([2 / 6, 1 / 6, 2 / 6, 2 / 6, 2 / 6, 0.0], abs=1e-3)
    assert record["cost"]["usd"] > 0
    assert answer["cost"] == record["cost"]
    assert "Cost: 1.50 added instance-hours (shadow 0.33 h" in answer["detail"]


def test_a_rolled_back_rollout_records_its_cost(world: World) -> None:
    serving_v1(world)
    state = enter(world, world.prepare(2), 0)
    answer = roll_back(world, state, {"verdict": "ROLLBACK", "explanation": "worse", "stage_index": 0})

    record = world.store.records("churn")[-1]
    assert record["event"] == "rolled-back"
    assert record["cost"]["stages"][0]["instance_hours"] == pytest.approx(2 / 6, abs=1e-3)
    assert answer["live_requests"] == record["live_requests"] == 0
    assert "Cost: 0.33 added instance-hours" in answer["detail"]


# ---------------------------------------------------------------- time for money: a sampled shadow


def test_a_sampled_shadow_gets_that_share_of_copies_on_a_fleet_sized_for_it(world: World) -> None:
    world.config(CONFIG.replace("rollout:\n", "rollout:\n  shadow: {sampling_percentage: 25}\n"))
    serving_v1(world)
    world.live()["ProductionVariants"][0]["CurrentInstanceCount"] = 4  # the champion autoscaled to 4
    state = world.prepare(2)

    enter(world, state, 0)

    (shadow,) = world.endpoints.configs[world.live()["EndpointConfigName"]]["ShadowProductionVariants"]
    (production,) = world.endpoints.configs[world.live()["EndpointConfigName"]]["ProductionVariants"]
    assert shadow["InitialVariantWeight"] / production["InitialVariantWeight"] == pytest.approx(0.25)
    assert shadow["InitialInstanceCount"] == 1  # 4 x 25 %
    record = next(r for r in world.store.records("churn") if r["event"] == "stage-entered")
    assert record["instances"] == [{"role": "candidate", "instance_type": "ml.m5.large", "instance_count": 1}]


def test_shadow_fleet_sizes() -> None:
    spec = VariantSpec(variant="v2", model_name="m", instance_type="ml.m5.large", instance_count=2)
    # all copies: as many as the champion serves them with, never fewer than configured
    assert cost.shadow_fleet(spec, champion_count=4, sampling_percentage=100, count=None).instance_count == 4
    assert cost.shadow_fleet(spec, champion_count=1, sampling_percentage=100, count=None).instance_count == 2
    # a sampled share: in proportion, at least one; an explicit count wins
    assert cost.shadow_fleet(spec, champion_count=10, sampling_percentage=30, count=None).instance_count == 3
    assert cost.shadow_fleet(spec, champion_count=2, sampling_percentage=10, count=None).instance_count == 1
    assert cost.shadow_fleet(spec, champion_count=10, sampling_percentage=30, count=5).instance_count == 5


@pytest.mark.parametrize(
    ("rollout", "wrong"),
    [
        ("shadow: {sampling_percentage: 0}", "sampling_percentage"),
        ("shadow: {sampling_percentage: 101}", "sampling_percentage"),
        ("shadow: {instance_count: 0}", "instance_count"),
        ("cost: {instance_prices: {m5.large: 0.1}}", "instance_prices"),
        ("cost: {instance_prices: {ml.m5.large: -1}}", "instance_prices"),
    ],
)
def test_bad_cost_and_sampling_options_are_refused_by_name(rollout: str, wrong: str) -> None:
    text = CONFIG.replace("rollout:\n", f"rollout:\n  {rollout}\n")
    with pytest.raises(ConfigError, match=wrong):
        load_config(text, "shepherd.yaml", model="churn")


def test_a_sampled_shadow_s_maximum_is_derived_from_the_sampled_rate() -> None:
    from shepherd.judge import StageObservations, StageSettings, VariantBin, Verdict
    from shepherd.judge.duration import derived_max

    settings = StageSettings.from_config({"error_rate": {"alpha": 0.025, "beta": 0.3, "max_minutes": 1440}})

    def shadow(copied_share: float) -> StageObservations:
        # 20 minutes at 100 requests a minute, 1 % errors on both; the shadow sees its copied share of them
        champion = tuple(VariantBin(m, 100, 1) for m in range(20))
        every = round(1 / copied_share)  # minutes per candidate error: 1 % of its copies
        candidate = tuple(VariantBin(m, round(100 * copied_share), int(m % every == 0)) for m in range(20))
        return StageObservations(minutes_elapsed=20, champion=champion, candidate=candidate)

    whole = derived_max(shadow(1.0), settings, cap=1440, at_max=Verdict.INCONCLUSIVE)
    sampled = derived_max(shadow(0.25), settings, cap=1440, at_max=Verdict.INCONCLUSIVE)

    assert whole > 30  # above the floor (MIN_MINUTES): derived from the traffic
    assert sampled > 2 * whole


def test_a_retried_stage_entry_is_one_stage_from_its_first_record() -> None:
    records = [
        entered(0, 0, "shadow", 100, fleet("candidate", 2)),
        entered(3, 0, "shadow", 100, fleet("candidate", 2)),  # EnterStage retried
        entered(60, 1, "ab", 10, fleet("candidate", 1)),
    ]
    summary = cost.summary(records, run="r", ended_at=START + timedelta(minutes=90), prices=prices.prices("us-east-1"))

    assert [(s["stage"], s["minutes"]) for s in summary["cost"]["stages"]] == [("shadow", 60.0), ("ab 10%", 30.0)]


def test_a_first_deployment_s_notification_has_no_cost_line(world: World) -> None:
    state = world.prepare(1)
    steps.deploy_first(world.deps, state, "token-first")

    answer = steps.promoted(world.deps, state)

    assert answer["cost"]["stages"] == []
    assert "Cost:" not in answer["detail"]
