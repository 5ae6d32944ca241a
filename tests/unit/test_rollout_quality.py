"""shepherd.rollout.quality: captured predictions joined with ground truth, as the judge's bins."""

from __future__ import annotations

import base64
import gzip
import json
import random
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Any

import pytest
from shepherd.judge import FeedbackBin, PairedBin
from shepherd.rollout.quality import (
    LATE_SECONDS,
    STATE_ROOT,
    Plan,
    Prediction,
    Rule,
    State,
    close,
    decode,
    encode,
    feedback_bins,
    feedback_of,
    ground_truth,
    hour_prefixes,
    join,
    paired_bins,
    pairs_of,
    plan,
    predictions,
    read_new,
    state_key,
    totals,
    wrong,
)

START = datetime(2026, 11, 25, 10, 0, 30, tzinfo=UTC).timestamp()  # the stage's first whole minute: 10:01


def capture_line(inference_id: str | None, at: str, data: str, encoding: str = "CSV") -> str:
    metadata = {"eventId": "e", "inferenceTime": at} | ({"inferenceId": inference_id} if inference_id else {})
    output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": data, "encoding": encoding}
    return json.dumps({"captureData": {"endpointOutput": output}, "eventMetadata": metadata, "eventVersion": "0"})


def truth_line(event_id: str, data: str) -> str:
    record = {"groundTruthData": {"data": data, "encoding": "CSV"}, "eventMetadata": {"eventId": event_id}}
    return json.dumps(record | {"eventVersion": "0"})


def test_capture_lines_give_identified_predictions_with_their_first_value() -> None:
    lines = [
        capture_line("a", "2026-11-25T10:01:05Z", "0.83\n"),
        capture_line("b", "2026-11-25T10:02:00Z", base64.b64encode(b"0.1").decode(), "BASE64"),
        capture_line("c", "2026-11-25T10:02:00Z", '{"predictions": [0.7, 0.2]}', "JSON"),
        capture_line(None, "2026-11-25T10:02:00Z", "0.5"),  # no InferenceId: cannot be joined
        capture_line("d", "not a time", "0.5"),
        "not json",
        json.dumps({"eventMetadata": {"inferenceId": "e", "inferenceTime": "2026-11-25T10:02:00Z"}}),  # no output
    ]
    found = list(predictions(lines))
    assert [(p.inference_id, p.output) for p in found] == [("a", "0.83"), ("b", "0.1"), ("c", "0.7")]
    assert found[0].epoch == datetime(2026, 11, 25, 10, 1, 5, tzinfo=UTC).timestamp()


def test_ground_truth_maps_event_ids_to_labels_the_last_upload_winning() -> None:
    lines = [truth_line("a", "1"), truth_line("b", "0"), "garbage", truth_line("a", "0")]
    assert ground_truth(lines) == {"a": "0", "b": "0"}


@pytest.mark.parametrize(
    ("output", "label", "rule", "expected"),
    [
        ("0.83", "1", Rule(), False),
        ("0.83", "0", Rule(), True),
        ("0.5", "1", Rule(), False),  # at the threshold: label 1
        ("0.3", "1", Rule(decision_threshold=0.2), False),
        ("2", "2", Rule(), False),  # class ids
        ("3", "2", Rule(), True),
        ("cat", "cat", Rule(), False),
        ("cat", "dog", Rule(), True),
        ("10.4", "10.0", Rule(tolerance=0.5), False),  # regression
        ("11.0", "10.0", Rule(tolerance=0.5), True),
    ],
)
def test_wrong_follows_the_rule(output: str, label: str, rule: Rule, expected: bool) -> None:
    assert wrong(output, label, rule) is expected


def _at(minute: int, second: int = 10) -> float:
    return START + 30 + 60 * minute + second  # minute m of the stage, `second` into it


def test_feedback_bins_count_labelled_predictions_per_stage_minute() -> None:
    captured = [
        Prediction("a", _at(0), "0.9"),
        Prediction("b", _at(0), "0.9"),
        Prediction("c", _at(2), "0.1"),
        Prediction("d", _at(2), "0.1"),  # never labelled: not judged
        Prediction("a", _at(3), "0.9"),  # a duplicate capture of "a" counts once
        Prediction("e", START - 5, "0.9"),  # before the stage
    ]
    labels = {"a": "1", "b": "0", "c": "1", "e": "0"}
    assert feedback_bins(captured, labels, started_epoch=START, rule=Rule()) == (
        FeedbackBin(minute=0, labelled=2, misclassified=1),
        FeedbackBin(minute=2, labelled=1, misclassified=1),
    )


def test_paired_bins_count_discordant_labelled_pairs_by_the_champions_minute() -> None:
    champion = [Prediction(i, _at(0), "0.9") for i in "abcd"] + [Prediction("x", _at(1), "0.9")]
    candidate = [
        Prediction("a", _at(0, 40), "0.9"),  # both right
        Prediction("b", _at(1, 1), "0.1"),  # candidate only wrong (its answer came a minute later)
        Prediction("c", _at(0), "0.1"),  # both wrong... label 0: the champion is wrong, the candidate right
        Prediction("d", _at(0), "0.9"),  # unlabelled
        Prediction("y", _at(1), "0.9"),  # the champion never answered it (not captured): no pair
    ]
    labels = {"a": "1", "b": "1", "c": "0", "y": "1", "x": "1"}
    assert paired_bins(champion, candidate, labels, started_epoch=START, rule=Rule()) == (
        PairedBin(minute=0, pairs=3, candidate_only=1, champion_only=1),
    )


def test_hour_prefixes_cover_every_hour_of_the_window() -> None:
    start = datetime(2026, 11, 25, 22, 59, tzinfo=UTC).timestamp()
    end = datetime(2026, 11, 26, 0, 1, tzinfo=UTC).timestamp()
    assert hour_prefixes("feedback/churn/", start, end) == [
        "feedback/churn/2026/11/25/22/",
        "feedback/churn/2026/11/25/23/",
        "feedback/churn/2026/11/26/00/",
    ]


# ------------------------------------------------------------------ incremental reading across judge calls

CAPTURE = "capture/churn/churn/"
FEEDBACK = "feedback/churn/"
HOUR = 3600
RULE = Rule()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hour(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y/%m/%d/%H")


class Bucket:
    """Objects by key, each listed and readable from the moment it was written; reads are counted."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[float, list[str]]] = {}
        self.reads: list[str] = []

    def capture(self, variant: str, answers: list[tuple[str, float, str]], *, written: float, hour: float) -> str:
        """Predictions (id, inference epoch, output) in one capture object under the hour of ``hour``."""
        key = f"{CAPTURE}{variant}/{_hour(hour)}/{len(self.objects):05d}.jsonl"
        self.objects[key] = (written, [capture_line(i, _iso(at), out) for i, at, out in answers])
        return key

    def labels(self, labels: dict[str, str], *, written: float) -> str:
        """Ground truth uploaded at ``written``, under that hour (as the docs ask)."""
        key = f"{FEEDBACK}{_hour(written)}/{len(self.objects):05d}.jsonl"
        self.objects[key] = (written, [truth_line(i, label) for i, label in labels.items()])
        return key

    def call(self, state: State, stage: Plan, now: float, rule: Rule = RULE) -> int:
        """One judge call's quality read at ``now``: read what is new, join, close; returns objects read."""
        read, complete = read_new(
            state,
            stage,
            now,
            list_keys=lambda prefix: sorted(
                k for k, (t, _) in self.objects.items() if k.startswith(prefix) and t <= now
            ),
            read_lines=self._read,
        )
        assert complete
        join(state, stage, rule)
        close(state, stage, now)
        return read

    def _read(self, key: str) -> list[str]:
        self.reads.append(key)
        return self.objects[key][1]


def _plan(kind: str = "ab", *, started: float = START, since: float | None = None, rule: Rule = RULE) -> Plan:
    return plan(
        kind,
        run="churn-v2-run",
        stage_index=1,
        stage_started=started,
        baseline_since=started - 2 * HOUR if since is None else since,
        capture=CAPTURE,
        feedback=FEEDBACK,
        champion="v1",
        candidate="v2",
        rule=rule,
    )


def _persisted(state: State) -> State:
    """The state as the next call finds it: through its encoding."""
    return decode(encode(state))


def test_each_call_reads_only_the_objects_no_earlier_call_read() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    for minute in range(3):
        bucket.capture("v2", [(f"a{minute}", _at(minute), "0.9")], written=_at(minute, 50), hour=_at(minute))
    assert bucket.call(state, stage, _at(3)) == 3
    state = _persisted(state)
    bucket.capture("v2", [("a3", _at(3), "0.9")], written=_at(3, 50), hour=_at(3))
    bucket.labels({f"a{m}": "1" for m in range(4)}, written=_at(4))
    bucket.reads.clear()
    # the second call reads the two new objects only, and joins the labels with all four predictions: a0's
    # and a1's at minute 1, the first the first call did not show the judge; a3's minute is not complete yet
    assert bucket.call(state, stage, _at(5)) == 2
    assert len(bucket.reads) == 2
    assert feedback_of(state, "candidate") == (FeedbackBin(1, 2, 0), FeedbackBin(2, 1, 0))
    assert (state.pending["candidate"], state.labels) == ({}, {})
    bucket.call(state, stage, _at(6))
    assert feedback_of(state, "candidate")[-1] == FeedbackBin(3, 1, 0)


def test_an_object_written_late_into_an_hour_already_listed_is_read() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    bucket.capture("v1", [("a", _at(10), "0.9")], written=_at(10, 50), hour=_at(10))
    bucket.call(state, stage, _at(20))  # the hour 10:00-11:00 is listed
    # SageMaker writes a capture file for 10:30 at 11:40, into the 10:00 hour, after that hour was listed
    late = bucket.capture("v1", [("b", _at(29), "0.1")], written=START + HOUR + 40 * 60, hour=_at(29))
    bucket.labels({"a": "1", "b": "1"}, written=START + HOUR + 45 * 60)
    state = _persisted(state)
    bucket.call(state, stage, START + HOUR + 50 * 60)
    assert late in bucket.reads
    # a's label came after the look that showed minutes 0-17: it is counted at 18, not at its minute 10
    assert feedback_of(state, "champion") == (FeedbackBin(18, 1, 0), FeedbackBin(29, 1, 1))


def test_an_hour_is_listed_until_an_hour_after_it_ended_then_forgotten() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    bucket.capture("v2", [("a", _at(10), "0.9")], written=_at(10, 50), hour=_at(10))
    ten_o_clock = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()
    bucket.call(state, stage, ten_o_clock + HOUR + LATE_SECONDS - 1)
    assert "2026/11/25/10" in state.read["candidate"]
    bucket.call(state, stage, ten_o_clock + HOUR + LATE_SECONDS)
    # closed: its names are forgotten and it is never listed again, even for an object written later still
    assert "2026/11/25/10" not in state.read["candidate"]
    assert state.closed["candidate"] == ten_o_clock + HOUR
    too_late = bucket.capture("v2", [("z", _at(20), "0.9")], written=ten_o_clock + 3 * HOUR, hour=_at(20))
    bucket.call(state, stage, ten_o_clock + 3 * HOUR + 60)
    assert too_late not in bucket.reads


def test_a_label_that_arrives_hours_after_its_prediction_counts_at_the_first_minute_no_look_has_seen() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    bucket.capture("v2", [("a", _at(2), "0.9"), ("b", _at(2), "0.2")], written=_at(3), hour=_at(2))
    bucket.call(state, stage, _at(5))
    assert set(_persisted(state).pending["candidate"]) == {"a", "b"}  # waiting, across calls
    for hours in range(1, 6):  # calls every hour, nothing new
        state = _persisted(state)
        bucket.call(state, stage, _at(5) + hours * HOUR)
    bucket.labels({"a": "0", "b": "0"}, written=_at(5) + 6 * HOUR)
    bucket.call(state, stage, _at(6) + 6 * HOUR)
    # the call five hours in showed minutes 0-302: minute 2, looked at long ago, never changes
    assert state.bins["candidate"] == {303: [2, 1]}
    assert feedback_of(state, "candidate") == (FeedbackBin(303, 2, 1),)
    assert state.pending["candidate"] == {}


def test_a_label_that_arrives_before_its_prediction_waits_for_it() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    bucket.labels({"a": "1"}, written=_at(3))
    bucket.call(state, stage, _at(4))
    assert set(state.labels) == {"a"}
    bucket.capture("v1", [("a", _at(2), "0.1")], written=_at(6), hour=_at(2))  # capture written late
    bucket.call(state, stage, _at(7))
    assert feedback_of(state, "champion") == (FeedbackBin(2, 1, 1),)
    assert state.labels == {}


def test_labels_that_join_nothing_leave_the_state_when_their_hour_closes() -> None:
    bucket, stage = Bucket(), _plan("shadow")
    state = State.fresh(stage)
    # a label for a request before the stage, and one whose shadow copy was never captured
    bucket.capture("v1", [("only-champion", _at(1), "0.9")], written=_at(2), hour=_at(1))
    bucket.labels({"before-the-stage": "1", "only-champion": "1"}, written=_at(3))
    bucket.call(state, stage, _at(4))
    assert set(state.labels) == {"before-the-stage", "only-champion"}
    bucket.call(state, stage, START + 2 * HOUR + LATE_SECONDS)
    assert state.labels == {}
    assert state.pending["champion"] == {}  # it can never pair: gone with its label
    assert pairs_of(state) == ()


def test_shadow_pairs_join_once_both_answers_and_the_label_are_in() -> None:
    bucket, stage = Bucket(), _plan("shadow")
    state = State.fresh(stage)
    bucket.capture("v1", [("a", _at(1), "0.9"), ("b", _at(1), "0.9")], written=_at(1, 50), hour=_at(1))
    bucket.labels({"a": "1", "b": "1"}, written=_at(2))
    bucket.call(state, stage, _at(3))
    assert pairs_of(state) == ()  # the shadow's answers are not in yet
    bucket.capture("v2", [("a", _at(1, 12), "0.1"), ("b", _at(1, 12), "0.8")], written=_at(4), hour=_at(1))
    bucket.call(state, stage, _at(5))
    assert pairs_of(state) == (PairedBin(minute=1, pairs=2, candidate_only=1, champion_only=0),)
    assert (state.pending, state.labels) == ({"champion": {}, "candidate": {}}, {})


def test_a_retried_call_on_the_same_state_counts_each_object_once() -> None:
    bucket, stage = Bucket(), _plan()
    bucket.capture("v2", [("a", _at(1), "0.9"), ("b", _at(1), "0.1")], written=_at(2), hour=_at(1))
    bucket.labels({"a": "1", "b": "1"}, written=_at(2))
    saved = encode(State.fresh(stage))
    # a call that crashed before it saved: its retry starts from the same state and reads the same objects
    crashed, retried = decode(saved), decode(saved)
    bucket.call(crashed, stage, _at(4))
    bucket.call(retried, stage, _at(4))
    assert encode(crashed) == encode(retried)
    # a call that crashed after it saved: its retry reads nothing new onto the saved state
    again = decode(encode(retried))
    assert bucket.call(again, stage, _at(4)) == 0
    assert feedback_of(again, "candidate") == feedback_of(retried, "candidate") == (FeedbackBin(1, 2, 1),)


def test_full_and_the_watch_take_the_champion_s_labelled_predictions_before_the_stage_as_the_baseline() -> None:
    bucket, stage = Bucket(), _plan("full", since=START - 2 * HOUR)
    state = State.fresh(stage)
    bucket.capture("v1", [("old", START - 3 * HOUR, "0.9")], written=START - 3 * HOUR, hour=START - 3 * HOUR)
    bucket.capture(
        "v1", [("c1", START - HOUR, "0.9"), ("c2", START - 60, "0.9")], written=START - 50, hour=START - HOUR
    )
    bucket.capture("v1", [("c3", START - 60, "0.9")], written=START - 50, hour=START - 60)
    bucket.capture("v2", [("n1", _at(1), "0.9"), ("ab", START - 30, "0.9")], written=_at(2), hour=_at(1))
    bucket.labels({"old": "1", "c1": "1", "c2": "0"}, written=START - 30 * 60)
    bucket.labels({"c3": "1", "n1": "0", "ab": "1"}, written=_at(3))  # labels for the baseline keep coming
    bucket.call(state, stage, _at(4))
    assert totals(state, "champion") == (3, 1)  # c1, c2 (wrong), c3; not the request from before `since`
    assert feedback_of(state, "candidate") == (FeedbackBin(1, 1, 1),)  # not its answer before the stage


@pytest.mark.parametrize("kind", ["ab", "shadow"])
@pytest.mark.parametrize("seed", range(4))
def test_calls_every_minute_count_what_one_read_of_everything_counts(kind: str, seed: int) -> None:
    # Three hours of traffic, capture written within minutes, labels for most requests within hours,
    # judged every minute: the incremental bins (by arrival) count what reading everything at the end counts.
    rng, bucket, stage = random.Random(seed), Bucket(), _plan(kind)
    champion: list[Prediction] = []
    candidate: list[Prediction] = []
    truth: dict[str, str] = {}
    for minute in range(180):
        answers = {"v1": [], "v2": []}
        for n in range(rng.randrange(6)):
            inference_id, at = f"r{minute}-{n}", _at(minute, rng.randrange(60))
            variants = ("v1", "v2") if kind == "shadow" else (rng.choice(("v1", "v2")),)
            for variant in variants:
                output = f"{rng.random():.3f}"
                answers[variant].append((inference_id, at, output))
                (champion if variant == "v1" else candidate).append(Prediction(inference_id, at, output))
            if rng.random() < 0.8:
                truth[inference_id] = str(rng.randrange(2))
                written = at + rng.choice((30, 600, 2 * HOUR, 4 * HOUR))
                bucket.labels({inference_id: truth[inference_id]}, written=written)
        for variant, found in answers.items():
            if found:
                bucket.capture(variant, found, written=_at(minute, 59) + rng.randrange(300), hour=found[0][1])
    state = State.fresh(stage)
    for minute in range(1, 180 + 5 * 60):
        state = _persisted(state) if minute % 7 == 0 else state
        bucket.call(state, stage, _at(minute))
    if kind == "shadow":
        once = paired_bins(champion, candidate, truth, started_epoch=START, rule=RULE)
        assert _sums(pairs_of(state)) == _sums(once)
    else:
        for role, captured in (("champion", champion), ("candidate", candidate)):
            once = feedback_bins(captured, truth, started_epoch=START, rule=RULE)
            assert _sums(feedback_of(state, role)) == _sums(once)
    assert len(bucket.reads) == len(bucket.objects)  # each object read once
    assert state.labels == {}
    unlabelled = {p.inference_id for p in champion + candidate} - set(truth)
    assert set(state.pending["champion"]) | set(state.pending["candidate"]) <= unlabelled


def _sums(bins: tuple[Any, ...]) -> list[int]:
    """Every count of the bins but the minute, summed over them."""
    return [sum(values) for values in zip(*(astuple(item)[1:] for item in bins), strict=True)]


def test_the_state_survives_its_encoding() -> None:
    bucket, stage = Bucket(), _plan("shadow")
    state = State.fresh(stage)
    bucket.capture("v1", [("a", _at(1), "0.9"), ("b", _at(1), "0.9")], written=_at(2), hour=_at(1))
    bucket.capture("v2", [("a", _at(1), "0.1")], written=_at(2), hour=_at(1))
    bucket.labels({"a": "1", "x": "0"}, written=_at(2))
    bucket.call(state, stage, _at(3))
    assert decode(encode(state)) == state


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not gzip", "not gzip'd JSON"),
        (gzip.compress(b"{not json", mtime=0), "not gzip'd JSON"),
        (gzip.compress(b'{"format": 99}', mtime=0), "not a format-1 judge state"),
        (gzip.compress(b"[]", mtime=0), "not a format-1 judge state"),
    ],
    # ids that do not change with the clock: pytest-xdist workers must collect the same test names
    ids=["not-gzip", "not-json", "format-99", "a-list"],
)
def test_a_state_that_is_not_one_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["bins"]["candidate"].update({"3": [2, 3]}), r"bins.candidate.3: \[2, 3\] is not a count"),
        (lambda d: d["bins"]["pairs"].update({"3": [2, 2, 1]}), "bins.pairs.3"),
        (lambda d: d["bins"]["champion"].update({"3": [-1, 0]}), "bins.champion.3"),
        (lambda d: d["bins"]["champion"].update({"three": [1, 0]}), "'three' is not a minute"),
        (lambda d: d["pending"]["candidate"].update({"a": ["soon", "0.9"]}), "pending.candidate"),
        (lambda d: d["labels"].update({"a": [1, 0.0]}), "labels.a"),
        (lambda d: d["pending"].pop("champion"), "wrong variants"),
        (lambda d: d.update(read=[]), "read is not an object"),
    ],
)
def test_a_state_with_impossible_contents_is_refused(change: Any, message: str) -> None:
    document = json.loads(gzip.decompress(encode(State.fresh(_plan()))))
    change(document)
    with pytest.raises(ValueError, match=message):
        decode(gzip.compress(json.dumps(document).encode()))


def test_the_state_lives_under_the_capture_prefix_that_expires_with_the_captured_data() -> None:
    key = state_key("churn", "churn-v2-run", 3)
    assert key == "capture/_judge-state/churn/churn-v2-run/3.json.gz"
    assert key.startswith(STATE_ROOT)
    assert STATE_ROOT.startswith("capture/")


def test_a_prediction_captured_twice_counts_once_before_and_after_its_label() -> None:
    bucket, stage = Bucket(), _plan()
    state = State.fresh(stage)
    bucket.capture("v2", [("a", _at(1), "0.9")], written=_at(2), hour=_at(1))
    bucket.capture("v2", [("a", _at(4), "0.1")], written=_at(5), hour=_at(4))  # the same id again: ignored
    bucket.call(state, stage, _at(6))
    bucket.labels({"a": "1"}, written=_at(7))
    bucket.call(state, stage, _at(8))
    bucket.capture("v2", [("a", _at(9), "0.1")], written=_at(10), hour=_at(9))  # and once more after the join
    bucket.call(state, stage, _at(11))
    assert feedback_of(state, "candidate") == (FeedbackBin(4, 1, 0),)  # labelled after minutes 0-3 were shown


def test_a_call_out_of_time_stops_between_objects_and_the_next_reads_on() -> None:
    bucket, stage = Bucket(), _plan()
    for minute in range(6):
        bucket.capture("v1", [(f"a{minute}", _at(minute), "0.9")], written=_at(minute, 50), hour=_at(minute))
    bucket.labels({f"a{m}": "1" for m in range(6)}, written=_at(6))
    state, calls = State.fresh(stage), []

    def one_call() -> tuple[int, bool]:
        # a call that is out of time after two objects (at least one object a call, so it always progresses)
        budget = iter([False, True])
        return read_new(
            state,
            stage,
            _at(7),
            list_keys=lambda prefix: sorted(k for k in bucket.objects if k.startswith(prefix)),
            read_lines=bucket._read,
            out_of_time=lambda: next(budget, True),
        )

    while not calls or not calls[-1][1]:
        calls.append(one_call())
        state = _persisted(state)
    assert calls == [(2, False), (2, False), (2, False), (1, True)]
    assert sorted(bucket.reads) == sorted(bucket.objects)  # each object read once
    join(state, stage, RULE)
    close(state, stage, _at(8))
    assert feedback_of(state, "champion") == tuple(FeedbackBin(m, 1, 0) for m in range(6))
