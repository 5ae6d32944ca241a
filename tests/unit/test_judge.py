"""shepherd.judge: verdicts on CloudWatch-shaped bins, shadow pairs and feedback, one behaviour per test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from shepherd.judge import (
    Baseline,
    FeedbackBin,
    Metric,
    MetricSettings,
    PairedBin,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
    judge,
)
from shepherd.judge.sprt import (
    boundaries_for_shares,
    calibrated_boundaries,
    exit_probabilities,
    first_crossing,
    grouped_sprt,
    split_llr_increments,
    wald_boundaries,
    wald_hoeffding_bound,
)
from shepherd.rollout.observe import settings

ERRORS_ONLY = StageSettings({Metric.ERROR_RATE: MetricSettings()})
ERRORS_AND_LATENCY = StageSettings({Metric.ERROR_RATE: MetricSettings(), Metric.LATENCY: MetricSettings()})


def ab_stage(
    minutes: int,
    *,
    champion: tuple[int, int, int] = (180, 2, 2),
    candidate: tuple[int, int, int] = (20, 0, 0),
    elapsed: int | None = None,
) -> StageObservations:
    """`minutes` identical bins per variant: (SampleCount, error Sum, latency exceedances)."""
    return StageObservations(
        minutes_elapsed=minutes if elapsed is None else elapsed,
        champion=tuple(VariantBin(m, *champion) for m in range(minutes)),
        candidate=tuple(VariantBin(m, *candidate) for m in range(minutes)),
    )


def test_no_data_waits() -> None:
    # Given a stage that has just started and has seen no request
    # When the judge is asked
    result = judge(StageObservations(minutes_elapsed=3), ERRORS_ONLY)
    # Then it waits
    assert result.verdict is Verdict.CONTINUE
    assert result.metrics[0].candidate_samples == 0


def test_no_data_at_the_maximum_duration_is_inconclusive() -> None:
    result = judge(StageObservations(minutes_elapsed=1440), ERRORS_ONLY)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "champion keeps the traffic" in result.explanation


def test_at_max_may_be_rollback() -> None:
    settings = StageSettings({Metric.ERROR_RATE: MetricSettings(max_minutes=60, at_max=Verdict.ROLLBACK)})
    assert judge(StageObservations(minutes_elapsed=60), settings).verdict is Verdict.ROLLBACK


def test_hard_failure_rolls_back_in_the_first_minute() -> None:
    # Given a candidate failing half its requests in its first minute, the champion 1 %
    result = judge(ab_stage(1, champion=(180, 2, 2), candidate=(20, 10, 0)), ERRORS_ONLY)
    # Then it rolls back at once: the rollback boundary needs no minimum sample
    assert result.verdict is Verdict.ROLLBACK
    assert result.metrics[0].decided_minute == 0
    assert result.metrics[0].statistic >= result.metrics[0].rollback_boundary


def test_a_candidate_without_errors_promotes_once_it_has_enough_samples() -> None:
    result = judge(ab_stage(300, champion=(180, 2, 2), candidate=(20, 0, 0)), ERRORS_ONLY)
    assert result.verdict is Verdict.PROMOTE
    assert result.metrics[0].candidate_samples >= 100
    assert result.metrics[0].statistic <= result.metrics[0].promote_boundary


def test_promotion_waits_for_the_minimum_samples() -> None:
    # Given the promote boundary already crossed but the candidate below its 1,000-sample floor
    settings = StageSettings({Metric.ERROR_RATE: MetricSettings(min_samples=1_000)})
    early = judge(ab_stage(30, champion=(180, 5, 0), candidate=(20, 0, 0)), settings)
    later = judge(ab_stage(60, champion=(180, 5, 0), candidate=(20, 0, 0)), settings)
    assert early.verdict is Verdict.CONTINUE
    assert later.verdict is Verdict.PROMOTE
    assert later.metrics[0].candidate_samples == 1_000


def test_the_first_crossing_is_the_decision() -> None:
    # Given a candidate that promoted at some minute and failed badly afterwards
    stage = ab_stage(300, champion=(180, 2, 0), candidate=(20, 0, 0))
    decided = judge(stage, ERRORS_ONLY).metrics[0].decided_minute
    assert decided is not None
    late_failure = StageObservations(
        minutes_elapsed=301,
        champion=(*stage.champion, VariantBin(300, 180, 2)),
        candidate=(*stage.candidate, VariantBin(300, 20, 20)),
    )
    # Then later bins do not reopen the decision
    result = judge(late_failure, ERRORS_ONLY)
    assert result.verdict is Verdict.PROMOTE
    assert result.metrics[0].decided_minute == decided


def test_bins_after_the_maximum_duration_are_ignored() -> None:
    settings = StageSettings({Metric.ERROR_RATE: MetricSettings(max_minutes=5)})
    stage = StageObservations(
        minutes_elapsed=10,
        champion=tuple(VariantBin(m, 180, 2) for m in range(10)),
        candidate=tuple(VariantBin(m, 20, 0 if m < 5 else 20) for m in range(10)),
    )
    assert judge(stage, settings).verdict is Verdict.INCONCLUSIVE


def test_latency_is_judged_on_exceedance_counts() -> None:
    # Given equal errors but the candidate slower than t on a quarter of its requests
    settings = StageSettings({Metric.LATENCY: MetricSettings()})
    result = judge(ab_stage(10, champion=(180, 2, 2), candidate=(20, 0, 5)), settings)
    assert result.verdict is Verdict.ROLLBACK
    assert "latency threshold" in result.explanation


def test_bins_without_latency_counts_are_skipped_for_latency() -> None:
    settings = StageSettings({Metric.LATENCY: MetricSettings()})
    stage = StageObservations(
        minutes_elapsed=2,
        champion=(VariantBin(0, 180, 2), VariantBin(1, 180, 2, 2)),
        candidate=(VariantBin(0, 20, 0), VariantBin(1, 20, 0, 0)),
    )
    assert judge(stage, settings).metrics[0].candidate_samples == 20


def test_any_metric_rolling_back_rolls_the_stage_back() -> None:
    # Given clean errors but a latency regression
    result = judge(ab_stage(300, champion=(180, 2, 2), candidate=(20, 0, 6)), ERRORS_AND_LATENCY)
    verdicts = {item.metric: item.verdict for item in result.metrics}
    assert verdicts[Metric.LATENCY] is Verdict.ROLLBACK
    assert result.verdict is Verdict.ROLLBACK


def test_promotion_needs_every_metric() -> None:
    # Given errors clean but latency counts not reported yet
    stage = StageObservations(
        minutes_elapsed=300,
        champion=tuple(VariantBin(m, 180, 2) for m in range(300)),
        candidate=tuple(VariantBin(m, 20, 0) for m in range(300)),
    )
    result = judge(stage, ERRORS_AND_LATENCY)
    assert result.metrics[0].verdict is Verdict.PROMOTE
    assert result.verdict is Verdict.CONTINUE


def test_alpha_is_split_between_metrics() -> None:
    result = judge(ab_stage(1), ERRORS_AND_LATENCY)
    assert [item.alpha_spent for item in result.metrics] == [0.025, 0.025]
    # ab_stage's bin (2 champion errors, 0 candidate ones, 20 of 200 requests) tested at alpha 0.025
    alone = grouped_sprt([0], [2], [20], [180], alpha=0.025, beta=0.2, ratio=2.0, min_samples=100)
    assert result.metrics[0].rollback_boundary == pytest.approx(alone.upper[0])


def test_every_metric_promoting_promotes() -> None:
    result = judge(ab_stage(300, champion=(180, 2, 2), candidate=(20, 0, 0)), ERRORS_AND_LATENCY)
    assert result.verdict is Verdict.PROMOTE
    assert "Every metric passed" in result.explanation


def test_shadow_pairs_roll_back_on_candidate_only_errors() -> None:
    settings = StageSettings({Metric.SHADOW_ERRORS: MetricSettings()})
    stage = StageObservations(minutes_elapsed=10, shadow_errors=tuple(PairedBin(m, 200, 4, 1) for m in range(10)))
    assert judge(stage, settings).verdict is Verdict.ROLLBACK


def test_shadow_pairs_promote_when_discordance_is_balanced() -> None:
    settings = StageSettings({Metric.SHADOW_ERRORS: MetricSettings()})
    stage = StageObservations(minutes_elapsed=60, shadow_errors=tuple(PairedBin(m, 200, 2, 2) for m in range(60)))
    assert judge(stage, settings).verdict is Verdict.PROMOTE


def test_feedback_quality_rolls_back_a_worse_classifier() -> None:
    settings = StageSettings({Metric.QUALITY: MetricSettings()})
    stage = StageObservations(
        minutes_elapsed=30,
        champion_feedback=tuple(FeedbackBin(m, 90, 9) for m in range(30)),
        candidate_feedback=tuple(FeedbackBin(m, 10, 4) for m in range(30)),
    )
    result = judge(stage, settings)
    assert result.verdict is Verdict.ROLLBACK
    assert "misclassification" in result.explanation


# Full and the post-promotion watch: the candidate's labelled predictions against the champion's earlier ones.
QUALITY_ONLY = StageSettings({Metric.QUALITY: MetricSettings(min_samples=100, max_minutes=120)})


def _quality_after_promotion(
    wrong_rate: float, *, minutes: int = 60, per_minute: int = 20, baseline: Baseline | None = None, seed: int = 3
) -> StageObservations:
    """A full or watch stage's quality observations: the candidate's labelled predictions per minute,
    the champion's from before the stage (15 % wrong by default) as the baseline."""
    rng = np.random.default_rng(seed)
    feedback = tuple(FeedbackBin(m, per_minute, int(rng.binomial(per_minute, wrong_rate))) for m in range(minutes))
    return StageObservations(
        minutes_elapsed=minutes,
        candidate_feedback=feedback,
        baseline={Metric.QUALITY: Baseline(samples=2000, bad=300) if baseline is None else baseline},
    )


def test_after_promotion_a_candidate_that_predicts_worse_is_rolled_back_on_quality() -> None:
    result = judge(_quality_after_promotion(0.45), QUALITY_ONLY)
    assert result.verdict is Verdict.ROLLBACK
    (quality,) = result.metrics
    assert (quality.metric, quality.champion_samples, quality.champion_bad) == (Metric.QUALITY, 2000, 300)
    assert "The new champion's misclassification rate is higher than the old champion's" in result.explanation
    assert "labelled predictions" in result.explanation


def test_after_promotion_a_candidate_that_predicts_as_well_is_promoted_on_quality() -> None:
    result = judge(_quality_after_promotion(0.15), QUALITY_ONLY)
    assert result.verdict is Verdict.PROMOTE
    assert result.metrics[0].candidate_samples >= 100


def test_after_promotion_no_labels_is_never_a_promotion_on_quality() -> None:
    empty = StageObservations(minutes_elapsed=30, baseline={Metric.QUALITY: Baseline(2000, 300)})
    assert judge(empty, QUALITY_ONLY).verdict is Verdict.CONTINUE
    late = StageObservations(minutes_elapsed=120, baseline={Metric.QUALITY: Baseline(2000, 300)})
    assert judge(late, QUALITY_ONLY).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize("baseline", [Baseline(0, 0), Baseline(40, 6)])
def test_after_promotion_a_champion_without_enough_labelled_predictions_is_no_yardstick_to_promote_on(
    baseline: Baseline,
) -> None:
    # however good the candidate's labelled predictions, the champion had too few before the stage
    result = judge(_quality_after_promotion(0.15, minutes=119, baseline=baseline), QUALITY_ONLY)
    assert result.verdict is Verdict.CONTINUE
    assert "a promotion needs 100 from the champion" in result.explanation


def test_after_promotion_a_small_baseline_still_rolls_back_a_candidate_that_is_mostly_wrong() -> None:
    assert judge(_quality_after_promotion(0.8, baseline=Baseline(40, 6)), QUALITY_ONLY).verdict is Verdict.ROLLBACK


@pytest.mark.parametrize("kind", ["full", "watch"])
def test_quality_is_judged_in_full_and_the_watch_as_in_the_other_stages(kind: str) -> None:
    config = {"error_rate": {"alpha": 0.05}, "quality": {"min_samples": 30, "delta": 2.0}}
    metrics = settings(config, max_minutes=30, at_max="INCONCLUSIVE", kind=kind).metrics
    assert set(metrics) == {Metric.ERROR_RATE, Metric.QUALITY}
    assert (metrics[Metric.QUALITY].min_samples, metrics[Metric.QUALITY].delta) == (30, 2.0)
    assert set(settings(config, max_minutes=30, at_max="INCONCLUSIVE", kind="shadow").metrics) == {
        Metric.ERROR_RATE,
        Metric.SHADOW_QUALITY,
    }


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: VariantBin(0, 10, 11), "more bad requests"),
        (lambda: VariantBin(0, 10, 0, 11), "more bad requests"),
        (lambda: VariantBin(0, -1), "sample_count"),
        (lambda: FeedbackBin(0, 5, 6), "more misclassified"),
        (lambda: PairedBin(0, 3, 2, 2), "more discordant"),
        (lambda: MetricSettings(alpha=0.0), "alpha"),
        (lambda: MetricSettings(alpha=0.6, beta=0.5), "alpha"),
        (lambda: MetricSettings(delta=0.0), "delta"),
        (lambda: MetricSettings(at_max=Verdict.PROMOTE), "at_max"),
        (lambda: StageSettings({}), "at least one metric"),
    ],
)
def test_invalid_inputs_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_settings_come_from_the_models_config() -> None:
    settings = StageSettings.from_config({"error_rate": {"delta": 0.5}, "latency": {"at_max": "ROLLBACK"}})
    assert settings.metrics[Metric.ERROR_RATE] == MetricSettings(delta=0.5)
    assert settings.metrics[Metric.LATENCY].at_max is Verdict.ROLLBACK


@pytest.mark.parametrize(
    ("config", "message"),
    [({"errors": {}}, "unknown metric"), ({"error_rate": {"alfa": 0.1}}, "unknown settings")],
)
def test_a_config_with_unknown_names_is_refused(config: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StageSettings.from_config(config)


def test_two_bins_for_one_minute_are_refused() -> None:
    stage = StageObservations(minutes_elapsed=1, champion=(VariantBin(0, 1), VariantBin(0, 1)))
    with pytest.raises(ValueError, match="two bins for minute 0"):
        judge(stage, ERRORS_ONLY)


def test_wald_boundaries() -> None:
    upper, lower = wald_boundaries(0.05, 0.2)
    assert upper == pytest.approx(math.log(16))
    assert lower == pytest.approx(math.log(0.2 / 0.95))


def test_strict_boundaries_are_villes() -> None:
    result = judge(ab_stage(1), StageSettings({Metric.ERROR_RATE: MetricSettings(strict=True)}))
    assert result.metrics[0].rollback_boundary == pytest.approx(math.log(20))
    assert result.metrics[0].promote_boundary == pytest.approx(math.log(0.2))


@pytest.mark.parametrize(
    ("share", "h0_requests", "h1_requests"),
    [(0.1, 5_161, 5_642), (0.25, 2_691, 2_818), (0.5, 2_278, 2_244)],
)
def test_wald_hoeffding_bound_matches_the_notes(share: float, h0_requests: int, h1_requests: int) -> None:
    # NOTES.md: 1 % -> 2 %, alpha 0.05, beta 0.2, in total requests
    p0, p1 = share, 2 * share / (1 + share)
    h0 = wald_hoeffding_bound(p0, p0, p1, 0.05, 0.2, bad=False) / 0.01
    h1 = wald_hoeffding_bound(p1, p0, p1, 0.05, 0.2, bad=True) / (0.01 * (1 + share))
    assert h0 == pytest.approx(h0_requests, rel=0.01)
    assert h1 == pytest.approx(h1_requests, rel=0.01)


def test_the_increment_ignores_bins_where_one_variant_had_no_request() -> None:
    increments = split_llr_increments([0, 3, 0], [2, 0, 0], [0, 5, 0], [100, 0, 0], 2.0)
    assert increments.tolist() == [0.0, 0.0, 0.0]


def test_the_engine_and_the_benchmarks_kernel_agree() -> None:
    # Given random traffic, the judge's verdict is grouped_sprt's first crossing (the benchmark's path)
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = rng.poisson(200, 120)
        c = rng.binomial(n, 0.1)
        kc, kb = rng.binomial(c, 0.015), rng.binomial(n - c, 0.01)
        stage = StageObservations(
            minutes_elapsed=120,
            champion=tuple(VariantBin(m, int(n[m] - c[m]), int(kb[m])) for m in range(120)),
            candidate=tuple(VariantBin(m, int(c[m]), int(kc[m])) for m in range(120)),
        )
        result = judge(stage, ERRORS_ONLY).metrics[0]
        path = grouped_sprt(kc, kb, c, n - c, alpha=0.05, beta=0.2, ratio=2.0, min_samples=100)
        expected = {1: Verdict.ROLLBACK, -1: Verdict.PROMOTE, 0: Verdict.CONTINUE}[path.side]
        assert result.verdict is expected
        assert result.decided_minute == (path.index if path.side else None)
        last = path.index if path.side else -1
        assert result.statistic == path.statistic[last]
        assert (result.rollback_boundary, result.promote_boundary) == (path.upper[last], path.lower[last])


def test_exit_probabilities_match_a_simulation_of_the_error_stream() -> None:
    # Given Wald's boundaries for 1 % -> 2 % at a 10 % share, checked after every single error
    p0, p1 = 0.1, 0.2 / 1.1
    up, down = math.log(p1 / p0), -math.log((1 - p1) / (1 - p0))
    upper, lower = wald_boundaries(0.05, 0.2)
    exact = exit_probabilities(p0, up, down, upper, lower)[0][0]
    rng = np.random.default_rng(11)
    path = np.cumsum(np.where(rng.random((20_000, 1_500)) < p0, up, -down), axis=1)
    _, side = first_crossing(path, upper, lower, np.ones(path.shape, dtype=bool))
    # Then the dynamic programme agrees with the simulation (Wald's boundaries leave alpha unspent)
    assert exact == pytest.approx(np.mean(side == 1), abs=3 * math.sqrt(0.05 * 0.95 / 20_000))
    assert exact < 0.045


@pytest.mark.parametrize(("share", "ratio"), [(0.1, 2.0), (0.5, 2.0), (0.02, 2.0), (0.9, 2.0), (0.1, 1.5)])
def test_calibrated_boundaries_spend_alpha_and_beta_exactly(share: float, ratio: float) -> None:
    upper, lower = calibrated_boundaries(0.05, 0.2, ratio, share)
    wald_upper, wald_lower = wald_boundaries(0.05, 0.2)
    assert upper <= wald_upper
    assert lower >= wald_lower
    up = math.log(ratio / (share * ratio + 1 - share))
    down = math.log(share * ratio + 1 - share)
    p1 = share * ratio / (share * ratio + 1 - share)
    alpha = exit_probabilities(share, up, down, upper, lower)[0][0]
    beta = exit_probabilities(p1, up, down, upper, lower)[1][0]
    assert 0.049 <= alpha <= 0.05
    assert 0.195 <= beta <= 0.2


def test_strict_and_small_steps_keep_their_boundaries() -> None:
    upper, lower = boundaries_for_shares(0.05, 0.2, 2.0, [0.1, 0.1], strict=True)
    assert upper.tolist() == [math.log(20)] * 2
    assert lower.tolist() == [math.log(0.2)] * 2
    assert calibrated_boundaries(0.05, 0.2, 1.1, 0.5) == pytest.approx(wald_boundaries(0.05, 0.2))


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.99])
@pytest.mark.parametrize("metrics", [1, 3])
def test_precomputed_boundaries_equal_a_fresh_calibration(share: float, metrics: int) -> None:
    """boundaries.json spares a cold Lambda ~0.2 s per share; it must be what calibration computes now."""
    from shepherd.judge import sprt

    alpha = 0.05 / metrics
    rows = sprt._precomputed()[sprt.table_key(alpha, 0.2, 2.0)]
    assert rows[round(share * sprt.SHARE_GRID) - 1] == pytest.approx(sprt._calibrate(alpha, 0.2, 2.0, share), abs=1e-9)


def test_anytime_boundaries_still_promote_after_an_unlucky_start_that_spent_the_default_tests_beta() -> None:
    # Given an A/B stage whose candidate was wrong more often than the champion in its first minutes, by chance,
    # though its model is better (a path bench/demo_odds.py found: the demo's v2 against v1)
    recorded = json.loads((Path(__file__).parents[1] / "fixtures" / "judge_stuck_quality.json").read_text())
    stage = StageObservations(
        minutes_elapsed=240,
        candidate_feedback=tuple(FeedbackBin(*item) for item in recorded["candidate"]),
        champion_feedback=tuple(FeedbackBin(*item) for item in recorded["champion"]),
    )
    config = {"quality": {"alpha": 0.0001, "delta": 2.0, "min_samples": 50}}
    # When judged by the default error-spending test, it cannot promote any more (its beta is spent), far below
    # the boundary it once had
    spending = judge(stage, settings(config, max_minutes=240, at_max="INCONCLUSIVE", kind="ab"))
    assert spending.verdict is Verdict.INCONCLUSIVE
    assert spending.metrics[0].statistic < -5
    # and with anytime boundaries (Ville's), the same evidence promotes
    anytime = settings({"quality": config["quality"] | {"anytime": True}}, max_minutes=240, at_max="INCONCLUSIVE")
    assert anytime.metrics[Metric.QUALITY].strict
    decided = judge(stage, anytime)
    assert decided.verdict is Verdict.PROMOTE
    assert decided.metrics[0].promote_boundary == pytest.approx(math.log(0.2))
