"""Looks that cannot be revised: a judge look recomputed later, after more labels and datapoints, is the same.

Quality bins are by arrival (shepherd.rollout.quality.filed_minute), CloudWatch bins keep the values first judged
(shepherd.rollout.observe.settle); docs/ROLLOUTS.md, "Quality judging".
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from shepherd.judge import FeedbackBin, Metric, MetricSettings, StageObservations, StageSettings, judge
from shepherd.rollout import quality
from shepherd.rollout.observe import Ledger, decode_ledger, encode_ledger, observations, settle

from .test_rollout_quality import capture_line, truth_line

START = datetime(2026, 11, 25, 10, 0, 30, tzinfo=UTC).timestamp()
FIRST = math.ceil(START / 60) * 60
CAPTURE, FEEDBACK = "capture/churn/churn/", "feedback/churn/"
RULE = quality.Rule()
CALL_EVERY = 300  # seconds between judge calls, as the Rollout's Wait
SETTINGS = StageSettings(
    {
        Metric.ERROR_RATE: MetricSettings(min_samples=10**6, max_minutes=10**4),
        Metric.QUALITY: MetricSettings(min_samples=10**6, max_minutes=10**4),
    }
)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hour(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y/%m/%d/%H")


@dataclass
class World:
    """A seeded A/B stage: captures written within a minute, labels after random delays, and CloudWatch
    datapoints of which some arrive after the judge's LAG_SECONDS (their values grow once more)."""

    seed: int
    minutes: int = 90
    objects: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    datapoints: list[tuple[float, str, int, float]] = field(default_factory=list)  # (known at, query, minute, value)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        for minute in range(self.minutes):
            for variant, role in (("v1", "champion"), ("v2", "candidate")):
                answers = []
                for n in range(rng.randrange(2, 8)):
                    inference_id, at = f"{variant}-{minute}-{n}", FIRST + 60 * minute + rng.randrange(60)
                    output = "0.9" if rng.random() < 0.8 else "0.1"
                    answers.append(capture_line(inference_id, _iso(at), output))
                    if rng.random() < 0.9:  # labelled, after 1 minute to 2 hours
                        written = at + rng.choice((60, 600, 1800, 3600, 7200)) + rng.randrange(60)
                        self._put(
                            f"{FEEDBACK}{_hour(written)}/{len(self.objects):06d}.jsonl",
                            written,
                            [truth_line(inference_id, "1")],
                        )
                written = FIRST + 60 * minute + 60 + rng.randrange(30)
                self._put(f"{CAPTURE}{variant}/{_hour(written)}/{len(self.objects):06d}.jsonl", written, answers)
                # CloudWatch: the minute's count known 60-90 s after it ended, a late part 1-10 minutes later
                stamp, requests, errors = FIRST + 60 * minute, rng.randrange(50, 150), rng.randrange(3)
                on_time = stamp + 60 + rng.randrange(30)
                self.datapoints += [
                    (on_time, f"{role}_requests", stamp, requests),
                    (on_time, f"{role}_errors", stamp, errors),
                ]
                if rng.random() < 0.3:
                    late = on_time + rng.randrange(60, 600)
                    self.datapoints += [(late, f"{role}_requests", stamp, 7), (late, f"{role}_errors", stamp, 1)]

    def _put(self, key: str, written: float, lines: list[str]) -> None:
        self.objects[key] = (written, lines)

    def listing(self, now: float, with_times: bool) -> object:
        def list_keys(prefix: str) -> list[object]:
            found = sorted((k, t) for k, (t, _) in self.objects.items() if k.startswith(prefix) and t <= now)
            return [(k, t) if with_times else k for k, t in found]

        return list_keys

    def metric_results(self, now: float) -> list[dict[str, object]]:
        """GetMetricData as a call at ``now`` gets it: every datapoint CloudWatch has received by then, summed."""
        series: dict[str, dict[float, float]] = {}
        for known, query, stamp, value in self.datapoints:
            if known <= now:
                points = series.setdefault(query, {})
                points[stamp] = points.get(stamp, 0.0) + value
        return [
            {"Id": query, "Timestamps": sorted(points), "Values": [points[t] for t in sorted(points)]}
            for query, points in series.items()
        ]


def _stage() -> quality.Plan:
    return quality.plan(
        "ab",
        run="churn-v2-run",
        stage_index=1,
        stage_started=START,
        baseline_since=START - 3600,
        capture=CAPTURE,
        feedback=FEEDBACK,
        champion="v1",
        candidate="v2",
        rule=RULE,
    )


def _read(world: World, state: quality.State, stage: quality.Plan, now: float, *, with_times: bool) -> None:
    """One judge call's quality read, as JudgeStage does it (read, join, close)."""
    _read_count, complete = quality.read_new(
        state, stage, now, list_keys=world.listing(now, with_times), read_lines=lambda key: world.objects[key][1]
    )
    assert complete
    quality.join(state, stage, RULE)
    quality.close(state, stage, now)


def _look(observed: StageObservations, until: int) -> StageObservations:
    """What a look that saw every bin before ``until`` saw, out of a later call's observations."""
    return replace(
        observed,
        minutes_elapsed=until,
        champion=tuple(b for b in observed.champion if b.minute < until),
        candidate=tuple(b for b in observed.candidate if b.minute < until),
        champion_feedback=tuple(b for b in observed.champion_feedback if b.minute < until),
        candidate_feedback=tuple(b for b in observed.candidate_feedback if b.minute < until),
    )


def _statistics(observed: StageObservations) -> list[tuple[str, float, float, float]]:
    found = judge(observed, SETTINGS).metrics
    return [(str(m.metric), m.statistic, m.rollback_boundary, m.promote_boundary) for m in found]


def _calls(world: World, *, with_times: bool) -> list[tuple[int, StageObservations, quality.State, Ledger]]:
    """Judge calls every CALL_EVERY seconds, state and ledger saved between them: each look's observations."""
    stage, looks = _stage(), []
    state, ledger = quality.State.fresh(stage), Ledger()
    for now in range(int(START) + CALL_EVERY, int(START) + 60 * (world.minutes + 130), CALL_EVERY):
        state = quality.decode(quality.encode(state))
        ledger = decode_ledger(encode_ledger(ledger))
        _read(world, state, stage, now, with_times=with_times)
        metrics = observations(world.metric_results(now), started_epoch=START, now_epoch=now, latency=False)
        observed = replace(
            settle(metrics, ledger),
            champion_feedback=quality.feedback_of(state, "champion"),
            candidate_feedback=quality.feedback_of(state, "candidate"),
        )
        assert state.looked == observed.minutes_elapsed  # quality's and CloudWatch's looks see the same minutes
        looks.append((observed.minutes_elapsed, observed, state, ledger))
    return looks


@pytest.mark.parametrize("with_times", [False, True], ids=["keys", "keys-and-last-modified"])
@pytest.mark.parametrize("seed", range(3))
def test_every_past_look_recomputed_after_more_labels_and_datapoints_reproduces_its_statistic(
    seed: int, with_times: bool
) -> None:
    world = World(seed)
    looks = _calls(world, with_times=with_times)
    *_, (_last, final, _state, _ledger) = looks
    for until, observed, _, _ in looks:
        assert _look(final, until) == observed  # the very bins, so the same statistic:
        assert _statistics(_look(final, until)) == _statistics(observed)
    assert sum(b.labelled for b in final.candidate_feedback) > 300  # the stage judged something
    # and the test has teeth: by the prediction's minute (read everything at the end), past looks change
    stage, scratch = _stage(), None
    scratch = quality.State.fresh(stage)
    _read(world, scratch, stage, START + 60 * (world.minutes + 200), with_times=False)
    by_prediction = replace(final, candidate_feedback=quality.feedback_of(scratch, "candidate"))
    assert any(_look(by_prediction, until).candidate_feedback != o.candidate_feedback for until, o, _, _ in looks)
    raw = observations(world.metric_results(START + 86400), started_epoch=START, now_epoch=START + 86400, latency=False)
    assert any(_look(raw, until).candidate != o.candidate for until, o, _, _ in looks[:-1])


@pytest.mark.parametrize("seed", range(3))
def test_with_last_modified_a_read_from_scratch_gives_the_bins_the_calls_gave(seed: int) -> None:
    # Objects readable within the lag of their LastModified: bins by arrival minute, whoever reads them when
    world = World(seed)
    *_, (_until, _final, state, _ledger) = _calls(world, with_times=True)
    stage = _stage()
    scratch = quality.State.fresh(stage)
    _read(world, scratch, stage, START + 60 * (world.minutes + 130 - 5), with_times=True)
    scratch.looked = state.looked
    for role in quality.ROLES:
        assert quality.feedback_of(scratch, role) == quality.feedback_of(state, role)


def test_a_label_counts_at_its_arrival_minute_never_before_its_prediction_nor_in_a_seen_bin() -> None:
    stage = _stage()
    state = quality.State.fresh(stage)
    state.pending["candidate"]["a"] = [FIRST + 90, "0.9", FIRST + 125]  # minute 1, captured in minute 2
    state.labels["a"] = ["1", FIRST, FIRST + 60 * 7 + 5]  # labelled in minute 7
    state.pending["candidate"]["b"] = [FIRST + 90, "0.9"]  # no LastModified known: its prediction's minute
    state.labels["b"] = ["0", FIRST]
    quality.join(state, stage, RULE)
    assert state.bins["candidate"] == {7: [1, 0], 1: [1, 1]}
    quality.close(state, stage, FIRST + 60 * 9 + 130)  # shows minutes 0-8
    assert quality.feedback_of(state, "candidate") == (FeedbackBin(1, 1, 1), FeedbackBin(7, 1, 0))
    state.pending["candidate"]["c"] = [FIRST + 30, "0.9", FIRST + 70]
    state.labels["c"] = ["1", FIRST, FIRST + 60 * 3]  # became readable at minute 3 but read only now
    quality.join(state, stage, RULE)
    assert state.bins["candidate"][9] == [1, 0]  # the first minute no look saw; minutes 1 and 7 unchanged


def test_a_state_from_before_bins_by_arrival_still_decodes() -> None:
    stage = _stage()
    document = quality.encode(quality.State.fresh(stage))
    import gzip
    import json

    old = json.loads(gzip.decompress(document))
    del old["looked"]
    assert quality.decode(gzip.compress(json.dumps(old).encode())).looked is None


def test_judge_stage_judges_a_minute_with_the_values_its_first_look_saw() -> None:
    from .test_judging import FIRST as STAGE_FIRST
    from .test_judging import RUN, World, stage

    world = World()
    world.metrics.serve("champion", STAGE_FIRST, 20, requests=100, errors=1)
    world.metrics.serve("candidate", STAGE_FIRST, 20, requests=100, errors=1)
    undecided = {"judge": {"error_rate": {"min_samples": 10**6}}}
    first = world.judge(**stage("ab"), **undecided, attempt="call-1")
    # CloudWatch then receives late datapoints for minutes the first call judged: candidate errors
    world.metrics.put("candidate_errors", STAGE_FIRST, [30.0] * 20)
    second = world.judge(**stage("ab"), **undecided, attempt="call-2")
    assert second["statistics"] == first["statistics"]
    assert world.memory.expires_after[f"bins#{RUN}#1"] == 600 * 60 + 86400


@pytest.mark.parametrize("lost", ["deleted", "corrupt"])
@pytest.mark.parametrize("seed", range(2))
def test_judge_stage_reading_again_after_a_lost_state_revises_no_past_look(seed: int, lost: str) -> None:
    # Given JudgeStage's quality read (judging.read_quality) on a bucket whose listing gives LastModified, called every
    # 5 minutes while captures and late labels arrive, and its state lost half-way (deleted, or unreadable)
    world = World(seed)
    looks = _judge_stage_reads(world, lose_at=12, lost=lost)
    # Then every look, recomputed from the last call's bins (read afresh since the loss), sees the bins it saw
    *_, (_until, final) = looks
    for until, seen in looks:
        for role in quality.ROLES:
            assert tuple(b for b in final[role] if b.minute < until) == seen[role]
    assert sum(b.labelled for b in final["candidate"]) > 300
    # and the test has teeth: with keys alone (every LastModified unknown) the read from scratch files the labels
    # that arrived before the loss at their predictions' minutes, which past looks had seen without them
    keys_only = _judge_stage_reads(world, lose_at=12, lost=lost, last_modified=False)
    *_, (_until, final) = keys_only
    assert any(
        tuple(b for b in final[role] if b.minute < until) != seen[role]
        for until, seen in keys_only
        for role in quality.ROLES
    )


def _judge_stage_reads(
    world: World, *, lose_at: int, lost: str, last_modified: bool = True
) -> list[tuple[int, dict[str, tuple[FeedbackBin, ...]]]]:
    """JudgeStage's quality read every CALL_EVERY seconds on a FakeBucket that shows each object once written: each
    look's minutes and bins; before call ``lose_at`` the state is deleted or overwritten with garbage."""
    from shepherd.rollout import judging

    from .fakes_judging import FakeBucket

    bucket, stage, looks = FakeBucket(), _stage(), []
    key = quality.state_key("churn", "churn-v2-run", 1)
    deps = judging.JudgeDeps(
        metrics=None,  # type: ignore[arg-type]  # quality alone: no metric, store or memory is read
        store=None,  # type: ignore[arg-type]
        memory=None,  # type: ignore[arg-type]
        objects=bucket,
        now=lambda: datetime.now(UTC),
        monotonic=lambda: 0.0,
    )
    for call, now in enumerate(range(int(START) + CALL_EVERY, int(START) + 60 * (world.minutes + 130), CALL_EVERY)):
        for name, (written, lines) in world.objects.items():
            if written <= now and ("data", name) not in bucket.objects:
                bucket.put("data", name, lines, modified=written if last_modified else 0.0)
        if call == lose_at:
            if lost == "deleted":
                del bucket.objects[("data", key)]
            else:
                bucket.objects[("data", key)] = b"not gzip"
        state, complete = judging.read_quality(deps, "data", key, stage, RULE, now=now)
        assert complete
        looks.append((state.looked or 0, {role: quality.feedback_of(state, role) for role in quality.ROLES}))
    return looks


def test_a_label_with_its_last_modified_that_never_joined_leaves_when_its_hour_closes() -> None:
    stage = _stage()
    state = quality.State.fresh(stage)
    state.labels["orphan"] = ["1", FIRST - 3600, FIRST - 3000]  # [label, upload hour, LastModified]: no prediction
    state.labels["young"] = ["1", FIRST + 3 * 3600, FIRST + 3 * 3600 + 100]
    quality.close(state, stage, FIRST + 2 * 3600 + quality.LATE_SECONDS)
    assert set(state.labels) == {"young"}
