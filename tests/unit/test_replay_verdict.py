"""Replay's verdict: each reason to reject, a pass, the expectation read from package metadata."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from shepherd.replay.records import Captured, Shard, shards
from shepherd.replay.verdict import (
    MAX_EXAMPLES,
    Expectation,
    ShardOutcome,
    answer_shape,
    disagree,
    disagreement_test,
    expectation,
    judge,
)

CLASSIFIER = Expectation("classification", 0.05, 0.0, "validation rows (n=2000)", 2000)
STATED = Expectation("classification", 0.05, 0.0, "config default")
REGRESSOR = Expectation("regression", 0.1, 0.5, "validation rows (n=2000)", 2000)
ALPHA, TOLERANCE = 0.005, 0.25


def replayed(n: int, answer: str = "1") -> list[Captured]:
    return [Captured(f"e{i}", 1_765_000_000.0 + i, "text/csv", f"{i},0.5", answer) for i in range(n)]


def outcomes(parts: list[Shard], answer: str = "1") -> list[ShardOutcome]:
    """Every shard answered, each line ``answer``."""
    return [ShardOutcome(p.name, tuple(answer for _ in p.event_ids)) for p in parts]


def with_answers(parts: list[Shard], answers: dict[str, str], default: str = "1") -> list[ShardOutcome]:
    return [ShardOutcome(p.name, tuple(answers.get(e, default) for e in p.event_ids)) for p in parts]


def test_a_candidate_that_answers_like_the_champion_passes() -> None:
    records = replayed(1000)
    parts = shards(records)
    # a few disagreements, fewer than expected
    result = judge(records, parts, with_answers(parts, {f"e{i}": "0" for i in range(30)}), CLASSIFIER,
                   alpha=ALPHA, tolerance=TOLERANCE)  # fmt: skip
    assert result.verdict == "PASS"
    assert (result.records, result.failed, result.malformed, result.disagreed) == (1000, 0, 0, 30)
    assert result.reasons == []
    assert result.statistics["observed_disagreement"] == pytest.approx(0.03)
    assert result.statistics["p_value"] > ALPHA


def test_a_crash_on_load_rejects_without_spending_alpha() -> None:
    records = replayed(300)
    result = judge(records, shards(records), [], CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE,
                   job_failure="ClientError: the model failed to load")  # fmt: skip
    assert result.verdict == "REJECT"
    assert result.failed == 300
    assert result.reasons == ["the transform job failed: ClientError: the model failed to load"]
    assert result.statistics["alpha_spent"] == 0.0


def test_a_failed_shard_rejects_and_shows_a_request_of_it() -> None:
    # Given the candidate crashed on one request: its shard produced no output
    records = replayed(250)
    parts = shards(records)
    answered = outcomes(parts)
    answered[1] = ShardOutcome(parts[1].name, None)
    # When judged
    result = judge(records, parts, answered, CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    # Then it is rejected, the shard's records counted as failed, one of them shown with the error
    assert result.verdict == "REJECT"
    assert result.failed == 100
    assert result.reasons[0].startswith("1 of 3 input files produced no output")
    assert result.examples[0]["event_id"] == "e100"
    assert result.examples[0]["request"] == "100,0.5"
    assert "part-0001.csv" in result.examples[0]["error"]


def test_malformed_answers_reject_and_are_shown() -> None:
    # Given two answers in JSON where the champion answered CSV, and one a label where a number was
    records = replayed(500)
    parts = shards(records)
    answers = {"e3": '{"label": 1}', "e4": '{"label": 1}', "e5": "yes"}
    # When judged
    result = judge(records, parts, with_answers(parts, answers), CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    # Then the three are malformed, shown with the champion's answer beside theirs
    assert result.verdict == "REJECT"
    assert result.malformed == 3
    assert result.reasons == ["3 of 500 answers are not shaped like the champion's"]
    assert [(e["event_id"], e["champion"], e["candidate"]) for e in result.examples] == [
        ("e3", "1", '{"label": 1}'),
        ("e4", "1", '{"label": 1}'),
        ("e5", "1", "yes"),
    ]


def test_a_shard_with_the_wrong_number_of_answers_is_malformed() -> None:
    records = replayed(10)
    parts = shards(records)
    result = judge(records, parts, [ShardOutcome(parts[0].name, ("1",) * 11)], CLASSIFIER,
                   alpha=ALPHA, tolerance=TOLERANCE)  # fmt: skip
    assert result.verdict == "REJECT"
    assert result.malformed == 10
    assert "11 answer lines for 10 requests" in result.examples[0]["error"]


def test_three_times_the_expected_disagreement_rejects() -> None:
    records = replayed(2000)
    parts = shards(records)
    rng = random.Random(7)
    flipped = {f"e{i}": "0" for i in range(2000) if rng.random() < 0.15}
    result = judge(records, parts, with_answers(parts, flipped), CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    assert result.verdict == "REJECT"
    assert result.disagreed == len(flipped)
    assert "significantly above" in result.reasons[0]
    assert result.statistics["p_value"] < ALPHA
    assert len(result.examples) == MAX_EXAMPLES
    assert all(e["candidate"] == "0" and e["champion"] == "1" for e in result.examples)


def test_examples_list_crashes_then_malformed_then_disagreements_at_most_twenty() -> None:
    records = replayed(400)
    parts = shards(records)
    answers = {f"e{i}": "0" for i in range(100, 130)} | {f"e{i}": "x,y" for i in range(130, 140)}
    answered = with_answers(parts, answers)
    answered[0] = ShardOutcome(parts[0].name, None)
    result = judge(records, parts, answered, CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    kinds = ["error" if "error" in e else "bad" if e["candidate"] == "x,y" else "differs" for e in result.examples]
    assert kinds == ["error"] + ["bad"] * 10 + ["differs"] * 9


def test_a_slower_candidate_rejects_when_timings_are_given() -> None:
    records = replayed(100)
    parts = shards(records)
    slow = judge(records, parts, outcomes(parts), CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE,
                 seconds=310.0, champion_seconds=100.0, max_slowdown=2.0)  # fmt: skip
    fine = judge(records, parts, outcomes(parts), CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE,
                 seconds=150.0, champion_seconds=100.0, max_slowdown=2.0)  # fmt: skip
    assert slow.verdict == "REJECT"
    assert slow.reasons == ["the candidate took 3.1x the champion's time (at most 2x)"]
    assert fine.verdict == "PASS"
    assert fine.statistics["slowdown"] == pytest.approx(1.5)


def test_left_out_records_are_counted() -> None:
    records = [*replayed(5), Captured("multi", 1.0, "text/csv", "1,2\n3,4", "1\n0")]
    parts = shards(records)
    result = judge(records, parts, outcomes(parts), CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    assert result.records == 5
    assert result.statistics["left_out"] == 1


def test_an_outcome_missing_for_a_shard_is_a_caller_error() -> None:
    records = replayed(5)
    with pytest.raises(ValueError, match="no outcome"):
        judge(records, shards(records), [], CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    ("champion", "candidate", "same"),
    [
        ("1", "0", True),
        ("0.83\n", "0.2", True),
        ("1", '{"label": 1}', False),
        ("0.5,0.5", "0.5", False),
        ("1", "nan", False),
        ('{"predictions": [{"score": 0.2}]}', '{"predictions": [{"score": 0.9}, {"score": 0.1}]}', True),
        ('{"predictions": [{"score": 0.2}]}', '{"predictions": [{"label": "a"}]}', False),
        ("cat", "dog", True),
    ],
)
def test_answer_shapes(champion: str, candidate: str, same: bool) -> None:
    assert (answer_shape(champion) == answer_shape(candidate)) is same


def test_unreadable_answers_have_no_shape() -> None:
    assert answer_shape("") is None
    assert answer_shape("{not json") is None


@pytest.mark.parametrize(
    ("champion", "candidate", "differs"),
    [
        ("1", "1", False),
        ("1", "0", True),
        ("0.83", "0.6", False),  # both scores on the same side of 0.5
        ("0.83", "0.4", True),
        ("2", "2.0", False),
        ("cat", "dog", True),
    ],
)
def test_classification_disagreement_is_by_label(champion: str, candidate: str, differs: bool) -> None:
    assert disagree(champion, candidate, CLASSIFIER) is differs


def test_regression_disagreement_is_beyond_the_band() -> None:
    assert not disagree("10.0", "10.4", REGRESSOR)
    assert disagree("10.0", "10.6", REGRESSOR)


# ------------------------------------------------------------------ the expectation


def test_the_expectation_comes_from_the_evaluations_paired_rows() -> None:
    metadata = {
        "shepherd:paired-rows": "2000",
        "shepherd:paired-disagreement": "0.04",
        "shepherd:problem": "classification",
    }
    assert expectation(metadata, problem=None, default_disagreement=0.1) == Expectation(
        "classification", 0.04, 0.0, "validation rows (n=2000)", 2000
    )


def test_a_regressions_expectation_carries_its_band() -> None:
    metadata = {
        "shepherd:paired-rows": "500",
        "shepherd:paired-disagreement": "0.1",
        "shepherd:paired-band": "2.5",
        "shepherd:problem": "regression",
    }
    found = expectation(metadata, problem="regression", default_disagreement=0.1)
    assert (found.problem, found.disagreement, found.band, found.rows) == ("regression", 0.1, 2.5, 500)


def test_the_metadatas_problem_type_wins_over_the_configs() -> None:
    metadata = {"shepherd:paired-disagreement": "0.2", "shepherd:paired-band": "1.0", "shepherd:problem": "regression"}
    assert expectation(metadata, problem="classification", default_disagreement=0.1).problem == "regression"


def test_without_metadata_the_config_default_is_used_and_said() -> None:
    found = expectation({}, problem="classification", default_disagreement=0.08)
    assert (found.disagreement, found.source, found.rows) == (0.08, "config default", None)


def test_without_a_band_or_a_problem_disagreement_is_not_judged() -> None:
    assert expectation({}, problem="regression", default_disagreement=0.08).disagreement == 1.0
    assert expectation({}, problem=None, default_disagreement=0.08).disagreement == 1.0


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"shepherd:paired-disagreement": "1.5", "shepherd:problem": "classification"}, "not a rate"),
        ({"shepherd:paired-disagreement": "x", "shepherd:problem": "classification"}, "not a rate"),
        (
            {"shepherd:paired-disagreement": "0.1", "shepherd:paired-rows": "-3", "shepherd:problem": "classification"},
            "not a number of rows",
        ),
        ({"shepherd:paired-disagreement": "0.1", "shepherd:problem": "regression"}, "without shepherd:paired-band"),
        ({"shepherd:problem": "ranking"}, "neither classification nor regression"),
    ],
)
def test_unreadable_metadata_is_refused_by_name(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expectation(metadata, problem=None, default_disagreement=0.05)


# ------------------------------------------------------------------ the test's error rates


def test_an_estimated_expectation_is_tested_conditionally_with_a_tenth_of_alpha_on_its_bound() -> None:
    test = disagreement_test(100, 2000, CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    assert test.alpha_bound == pytest.approx(ALPHA / 10)
    assert test.alpha_test == pytest.approx(ALPHA * 0.9)
    assert test.allowed == pytest.approx(0.05 * (1 + TOLERANCE))
    assert test.upper > CLASSIFIER.disagreement
    # the rate ratio 1 + tolerance at the bound, as odds: a little above it
    ratio = 1 + TOLERANCE
    assert test.odds_ratio == pytest.approx(ratio * (1 - test.upper) / (1 - ratio * test.upper))
    assert test.odds_ratio > ratio


def test_a_stated_expectation_gets_the_one_sample_binomial_test_with_all_of_alpha() -> None:
    stated = disagreement_test(100, 2000, STATED, alpha=ALPHA, tolerance=TOLERANCE)
    assert (stated.alpha_bound, stated.alpha_test, stated.odds_ratio) == (0.0, ALPHA, 0.0)
    assert stated.allowed == pytest.approx(0.05 * (1 + TOLERANCE))
    assert stated.p_value == pytest.approx(stats.binom.sf(99, 2000, 0.05 * (1 + TOLERANCE)))


def test_when_the_bound_allows_every_rate_nothing_is_rejected() -> None:
    wide = Expectation("classification", 0.6, 0.0, "validation rows (n=50)", 50)
    test = disagreement_test(50, 50, wide, alpha=ALPHA, tolerance=TOLERANCE)
    assert test.p_value == 1.0
    assert not test.rejects


# ------------------------------------------------------------------ properties

ANSWERS = st.sampled_from(["1", "0", "0.7", "x,y", '{"label": 1}', ""])


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(1, 250),
    failed=st.sets(st.integers(0, 2)),
    answers=st.lists(ANSWERS, min_size=250, max_size=250),
)
def test_the_counts_add_up_and_a_verdict_is_rejected_exactly_when_it_has_reasons(
    size: int, failed: set[int], answers: list[str]
) -> None:
    records = replayed(size)
    parts = shards(records)
    answered = [
        ShardOutcome(p.name, None)
        if i in failed
        else ShardOutcome(p.name, tuple(answers[int(e[1:])] for e in p.event_ids))
        for i, p in enumerate(parts)
    ]
    result = judge(records, parts, answered, CLASSIFIER, alpha=ALPHA, tolerance=TOLERANCE)
    assert result.records == size
    assert result.failed == sum(len(p.event_ids) for i, p in enumerate(parts) if i in failed)
    assert result.failed + result.malformed + result.statistics["compared"] <= size
    assert result.disagreed <= result.statistics["compared"]
    assert len(result.examples) <= MAX_EXAMPLES
    assert (result.verdict == "REJECT") == bool(result.reasons)
    assert (result.failed > 0 or result.malformed > 0) <= (result.verdict == "REJECT")
