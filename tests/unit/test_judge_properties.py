"""Properties of shepherd.judge that must hold for every input (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from shepherd.judge import (
    Metric,
    MetricSettings,
    PairedBin,
    StageObservations,
    StageSettings,
    VariantBin,
    Verdict,
    judge,
)

SETTINGS = StageSettings({Metric.ERROR_RATE: MetricSettings(min_samples=50, max_minutes=60)})
SHADOW = StageSettings({Metric.SHADOW_ERRORS: MetricSettings(min_samples=50, max_minutes=60)})


@st.composite
def variant_bins(draw: st.DrawFn, minutes: int, max_requests: int) -> tuple[VariantBin, ...]:
    bins = []
    for minute in range(minutes):
        requests = draw(st.integers(0, max_requests))
        bins.append(VariantBin(minute, requests, draw(st.integers(0, min(requests, 5)))))
    return tuple(bins)


@st.composite
def ab_stages(draw: st.DrawFn) -> StageObservations:
    minutes = draw(st.integers(0, 40))
    return StageObservations(
        minutes_elapsed=draw(st.integers(minutes, 80)),
        champion=draw(variant_bins(minutes, 300)),
        candidate=draw(variant_bins(minutes, 40)),
    )


@st.composite
def shadow_stages(draw: st.DrawFn) -> StageObservations:
    minutes = draw(st.integers(0, 40))
    bins = []
    for minute in range(minutes):
        pairs = draw(st.integers(0, 200))
        candidate_only = draw(st.integers(0, min(pairs, 6)))
        bins.append(PairedBin(minute, pairs, candidate_only, draw(st.integers(0, min(pairs - candidate_only, 6)))))
    return StageObservations(minutes_elapsed=draw(st.integers(minutes, 80)), shadow_errors=tuple(bins))


# The judge's grouped error-spending test is not pathwise monotone in every case: an added candidate error also adds
# a bad event to the grouping its boundaries are computed for (more information, more alpha and beta allowed), and
# in rare inputs that lets a PROMOTE through (a random search: ~1 in 10,000 perturbations of small random A/B
# stages, 2 of 12,000 single-error perturbations of simulated shadow stages, none of 31,000 of simulated A/B
# traffic; README, Guarantees). These two checks are derandomised so that CI cannot fail on such an input at
# random; the exact, always-true form is test_moving_an_error_to_the_candidate_never_helps_promotion below.


@given(ab_stages(), st.data())
@settings(max_examples=200, deadline=None, derandomize=True)
def test_more_candidate_errors_never_make_promote_more_likely(stage: StageObservations, data: st.DataObject) -> None:
    # Given any stage, and the same stage with extra candidate errors in one minute
    if not stage.candidate:
        return
    minute = data.draw(st.integers(0, len(stage.candidate) - 1))
    target = stage.candidate[minute]
    extra = data.draw(st.integers(0, target.sample_count - target.error_sum))
    worse = replace(
        stage,
        candidate=tuple(
            replace(item, error_sum=item.error_sum + extra) if item.minute == minute else item
            for item in stage.candidate
        ),
    )
    # Then the worse candidate promotes only if the original did
    if judge(worse, SETTINGS).verdict is Verdict.PROMOTE:
        assert judge(stage, SETTINGS).verdict is Verdict.PROMOTE


@given(shadow_stages(), st.data())
@settings(max_examples=200, deadline=None, derandomize=True)
def test_more_candidate_only_pairs_never_help_promotion(stage: StageObservations, data: st.DataObject) -> None:
    if not stage.shadow_errors:
        return
    minute = data.draw(st.integers(0, len(stage.shadow_errors) - 1))
    target = stage.shadow_errors[minute]
    extra = data.draw(st.integers(0, target.pairs - target.candidate_only - target.champion_only))
    worse = replace(
        stage,
        shadow_errors=tuple(
            replace(item, candidate_only=item.candidate_only + extra) if item.minute == minute else item
            for item in stage.shadow_errors
        ),
    )
    if judge(worse, SHADOW).verdict is Verdict.PROMOTE:
        assert judge(stage, SHADOW).verdict is Verdict.PROMOTE


@given(ab_stages(), st.data())
@settings(max_examples=300, deadline=None)
def test_moving_an_error_to_the_candidate_never_helps_promotion(stage: StageObservations, data: st.DataObject) -> None:
    # Given any stage, and the same stage where one minute's errors are more often the candidate's (same total: the
    # grouping, hence every boundary, is unchanged, and the candidate's running count is higher from then on)
    pairs = [
        (theirs, ours)
        for theirs, ours in zip(stage.champion, stage.candidate, strict=True)
        if theirs.error_sum > 0 and ours.error_sum < ours.sample_count
    ]
    if not pairs:
        return
    theirs, ours = pairs[data.draw(st.integers(0, len(pairs) - 1))]
    moved = data.draw(st.integers(1, min(theirs.error_sum, ours.sample_count - ours.error_sum)))
    worse = replace(
        stage,
        champion=tuple(
            replace(item, error_sum=item.error_sum - moved) if item is theirs else item for item in stage.champion
        ),
        candidate=tuple(
            replace(item, error_sum=item.error_sum + moved) if item is ours else item for item in stage.candidate
        ),
    )
    # Then the worse candidate promotes only if the original did: exactly, for every input
    if judge(worse, SETTINGS).verdict is Verdict.PROMOTE:
        assert judge(stage, SETTINGS).verdict is Verdict.PROMOTE


@given(st.integers(0, 10_000), st.sampled_from(list(Metric)))
def test_no_data_never_promotes(minutes: int, metric: Metric) -> None:
    result = judge(StageObservations(minutes_elapsed=minutes), StageSettings({metric: MetricSettings()}))
    assert result.verdict in (Verdict.CONTINUE, Verdict.INCONCLUSIVE)


@given(st.integers(1, 60), st.integers(0, 500), st.integers(0, 5))
def test_a_candidate_without_traffic_never_promotes(minutes: int, requests: int, errors: int) -> None:
    # Given a champion with any traffic and a candidate that received none
    stage = StageObservations(
        minutes_elapsed=minutes,
        champion=tuple(VariantBin(m, requests, min(errors, requests)) for m in range(minutes)),
    )
    assert judge(stage, SETTINGS).verdict is not Verdict.PROMOTE


@given(ab_stages(), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_verdicts_are_deterministic_whatever_the_order_of_the_bins(stage: StageObservations, rng: object) -> None:
    shuffled_champion, shuffled_candidate = list(stage.champion), list(stage.candidate)
    rng.shuffle(shuffled_champion)  # type: ignore[attr-defined]
    rng.shuffle(shuffled_candidate)  # type: ignore[attr-defined]
    shuffled = replace(stage, champion=tuple(shuffled_champion), candidate=tuple(shuffled_candidate))
    first, again = judge(stage, SETTINGS), judge(stage, SETTINGS)
    assert first == again
    assert judge(shuffled, SETTINGS) == first
