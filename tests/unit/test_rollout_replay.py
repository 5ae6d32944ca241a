"""The replay stage (issue 21) on in-memory ports: capture sampled, two transform jobs, judged, rejected or passed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shepherd.errors import InvalidInput
from shepherd.rollout import judging, plan, steps
from shepherd.rollout.ports import Deps, Settings
from shepherd.rollout.state import RolloutState

from .fakes import FakeEndpoints, FakeResumer, FakeRolloutStore, FakeTokens, ManualClock
from .fakes_judging import FakeBucket, FakeMemory, FakeMetrics
from .test_rollout_steps import BUCKET, KEY, ROLE, package

CONFIG = """\
framework: sklearn
entry_point: train.py
endpoint:
  name: churn
  realtime: {instance_type: ml.m5.large, instance_count: 2}
rollout:
  replay: {sample_size: 300}
  ab: {steps: [10, 50]}
"""
PREFIX = "capture/churn/churn/replay/churn-v2-run/"


@dataclass
class FakeTransformJobs:
    """Transform jobs that run when told: each input file answered line by line, or left without output."""

    bucket: FakeBucket
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)

    def create_transform(self, request: dict[str, Any]) -> bool:
        name = request["TransformJobName"]
        if name in self.requests:
            return False
        self.requests[name] = request
        self.status[name] = {"TransformJobName": name, "TransformJobStatus": "InProgress"}
        return True

    def describe_transform(self, name: str) -> dict[str, Any] | None:
        return self.status.get(name)

    def stop_transform(self, name: str) -> None:
        if self.status[name]["TransformJobStatus"] == "InProgress":
            self.status[name]["TransformJobStatus"] = "Stopping"

    def run(self, name: str, answer: Callable[[str], str | None], *, seconds: float = 60.0) -> None:
        """Answer every input line; a file with a line `answer` refuses (None) gets no output and fails the job."""
        request = self.requests[name]
        source = request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
        out = request["TransformOutput"]["S3OutputPath"].removeprefix(f"s3://{BUCKET}/")
        failed = None
        for key in self.bucket.keys(BUCKET, source):
            answers = [answer(line) for line in self.bucket.objects[(BUCKET, key)].decode().splitlines()]
            if any(a is None for a in answers):
                failed = failed or f"ClientError: See job logs. {key.rsplit('/', 1)[-1]}: Bad HTTP status: 500"
                continue
            self.bucket.objects[(BUCKET, out + key.removeprefix(source) + ".out")] = (
                "\n".join(str(a) for a in answers) + "\n"
            ).encode()
        start = datetime(2026, 12, 7, 12, 5, tzinfo=UTC)
        self.status[name] |= {
            "TransformJobStatus": "Failed" if failed else "Completed",
            "TransformStartTime": start,
            "TransformEndTime": start + timedelta(seconds=seconds),
        } | ({"FailureReason": failed} if failed else {})


@dataclass
class ReplayWorld:
    endpoints: FakeEndpoints = field(default_factory=FakeEndpoints)
    bucket: FakeBucket = field(default_factory=FakeBucket)
    store: FakeRolloutStore = field(default_factory=FakeRolloutStore)
    tokens: FakeTokens = field(default_factory=FakeTokens)
    resumer: FakeResumer = field(default_factory=FakeResumer)
    clock: ManualClock = field(default_factory=ManualClock)
    jobs: FakeTransformJobs = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = FakeTransformJobs(self.bucket)
        self.bucket.objects[(BUCKET, "models/churn/shepherd.yaml")] = CONFIG.encode()

    @property
    def deps(self) -> Deps:
        return Deps(
            endpoints=self.endpoints,
            packages=self.endpoints,
            objects=self.bucket,
            store=self.store,
            tokens=self.tokens,
            resumer=self.resumer,
            settings=Settings(bucket=BUCKET, sagemaker_role_arn=ROLE, kms_key_arn=KEY),
            now=self.clock.now,
            wall=self.clock.now,
            capture=self.bucket,
            jobs=self.jobs,
        )

    def judge_deps(self) -> judging.JudgeDeps:
        return judging.JudgeDeps(
            metrics=FakeMetrics(),
            store=self.store,
            memory=FakeMemory(),
            objects=self.bucket,
            now=self.clock.now,
            monotonic=lambda: 0.0,
            jobs=self.jobs,
        )

    def approve(self, version: int) -> str:
        described = package(version)
        self.endpoints.packages[described["ModelPackageArn"]] = described
        return str(described["ModelPackageArn"])

    def serving_v1(self) -> None:
        state = self.prepare(1)
        steps.deploy_first(self.deps, state, "token-first")
        steps.promoted(self.deps, state)

    def prepare(self, version: int) -> RolloutState:
        arn = self.approve(version)
        state = steps.prepare(self.deps, package_arn=arn, run=f"churn-v{version}-run", overrides=None, manual=False)
        return RolloutState.model_validate(state.dump())

    def capture(self, hours: int, per_hour: int, *, variant: str = "v1") -> None:
        """The champion's capture of the last `hours` hours, `per_hour` an hour: rows `i,h` (h: the hour's age)
        answered `i % 2`."""
        now = self.clock.now()
        for h in range(hours):
            at = now - timedelta(hours=h, minutes=30)
            lines = [
                json.dumps(
                    {
                        "captureData": {
                            "endpointInput": {
                                "observedContentType": "text/csv",
                                "data": f"{i},{h}",
                                "encoding": "CSV",
                            },
                            "endpointOutput": {
                                "observedContentType": "text/csv",
                                "data": str(i % 2),
                                "encoding": "CSV",
                            },
                        },
                        "eventMetadata": {"eventId": f"e{h}-{i}", "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                        "eventVersion": "0",
                    }
                )
                for i in range(per_hour)
            ]
            key = f"{plan.capture_prefix('churn')}{variant}/{at:%Y/%m/%d/%H}/{at:%M-%S}-x.jsonl"
            self.bucket.put(BUCKET, key, lines)


def _same(line: str) -> str:
    return str(int(line.split(",", maxsplit=1)[0]) % 2)


def _crashes_on_two(line: str) -> str | None:
    """A candidate that fails on a feature value of real traffic (h == 2: the requests of two hours ago)."""
    return None if line.split(",")[1] == "2" else _same(line)


def _entered(world: ReplayWorld) -> RolloutState:
    world.serving_v1()
    state = world.prepare(2)
    assert state.stages[0].kind == "replay"
    steps.enter_stage(world.deps, state, "token-replay")
    return state


def _judge(world: ReplayWorld, state: RolloutState, minutes: float = 10) -> dict[str, Any]:
    event = {
        "run": state.run,
        "endpoint": state.endpoint,
        "package_arn": state.package_arn,
        "champion_variant": "v1",
        "candidate_variant": "v2",
        "stage": state.stages[0].model_dump(mode="json"),
        "stage_index": 0,
        "stage_started": world.clock.now().timestamp() - minutes * 60,
        "judge": state.judge,
        "attempt": f"a{minutes}",
    }
    return judging.judge_stage(world.judge_deps(), judging.JudgeRequest.parse(event))


def test_entering_replay_writes_the_sample_under_the_capture_and_starts_both_jobs_without_touching_the_endpoint():
    world = ReplayWorld()
    world.capture(hours=6, per_hour=80)
    world.serving_v1()
    before = json.dumps(world.endpoints.live["churn"], default=str)
    state = world.prepare(2)
    steps.enter_stage(world.deps, state, "token-replay")
    # The endpoint is as it was, and the stage resumed at once with its jobs
    assert json.dumps(world.endpoints.live["churn"], default=str) == before
    (_, token, output) = world.resumer.sent[-1]
    assert token == "token-replay"
    assert set(output["replay"]["jobs"]) == {"candidate", "champion"}
    # 300 of the 480 captured requests, stratified across the hours, in 3 files under the run's replay prefix
    plan_json = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])
    assert plan_json["records"] == 300
    assert plan_json["shards"] == ["part-0000.csv", "part-0001.csv", "part-0002.csv"]
    assert (
        sum(len(world.bucket.objects[(BUCKET, f"{PREFIX}input/{name}")].splitlines()) for name in plan_json["shards"])
        == 300
    )
    candidate, champion = (world.jobs.requests[plan_json["jobs"][role]] for role in ("candidate", "champion"))
    assert (candidate["ModelName"], champion["ModelName"]) == ("churn-v2", "churn-v1")
    for role, request in (("candidate", candidate), ("champion", champion)):
        assert request["TransformInput"]["SplitType"] == "Line"
        assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{PREFIX}input/"
        assert request["TransformOutput"] == {
            "S3OutputPath": f"s3://{BUCKET}/{PREFIX}{role}/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
            "KmsKeyId": KEY,
        }
        assert request["TransformResources"] == {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 1,
            "VolumeKmsKeyId": KEY,
        }
    assert world.store.events("churn")[-1] == "stage-entered"


def test_a_retried_entry_starts_the_same_jobs_on_the_same_sample():
    world = ReplayWorld()
    world.capture(hours=2, per_hour=200)
    state = _entered(world)
    first = dict(world.bucket.objects)
    world.capture(hours=1, per_hour=50)  # more capture since: a retry must not sample again
    steps.enter_stage(world.deps, state, "token-replay")
    assert world.bucket.objects[(BUCKET, PREFIX + "records.jsonl")] == first[(BUCKET, PREFIX + "records.jsonl")]
    assert len(world.jobs.requests) == 2


def test_too_little_capture_skips_replay_with_its_reason_and_the_rollout_goes_on():
    world = ReplayWorld()
    world.capture(hours=1, per_hour=20)
    _entered(world)
    (_, _, output) = world.resumer.sent[-1]
    assert "20 captured requests in the last 24 hours" in output["skipped"]
    assert world.jobs.requests == {}
    skipped = [r for r in world.store.records("churn") if r["event"] == "stage-skipped"]
    assert skipped[0]["stage"] == "replay"
    assert skipped[0]["reason"] == output["skipped"]


def test_replay_continues_while_the_jobs_run_then_passes_a_candidate_that_answers_like_the_champion():
    world = ReplayWorld()
    world.capture(hours=3, per_hour=100)
    state = _entered(world)
    assert _judge(world, state)["verdict"] == "CONTINUE"
    names = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])["jobs"]
    world.jobs.run(names["candidate"], _same)
    world.jobs.run(names["champion"], _same)
    answer = _judge(world, state, minutes=20)
    assert answer["verdict"] == "PROMOTE"
    (stats,) = answer["statistics"]
    assert (stats["metric"], stats["records"], stats["failed"], stats["disagreed"]) == ("replay", 300, 0, 0)
    assert stats["alpha"] == pytest.approx(0.05 * 0.1)  # the stage's share of the rollout's alpha
    result = json.loads(world.bucket.objects[(BUCKET, PREFIX + "result.json")])
    assert result["verdict"] == "PASS"
    verdicts = [r for r in world.store.records("churn") if r["event"] == "verdict"]
    assert verdicts[-1]["stage"] == "replay"
    assert verdicts[-1]["verdict"] == "PROMOTE"


def test_a_candidate_that_crashes_on_some_real_inputs_is_rejected_and_the_endpoint_left_alone():
    world = ReplayWorld()
    world.capture(hours=3, per_hour=100)
    state = _entered(world)
    before = json.dumps(world.endpoints.live["churn"], default=str)
    names = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])["jobs"]
    world.jobs.run(names["candidate"], _crashes_on_two)
    world.jobs.run(names["champion"], _same)
    answer = _judge(world, state, minutes=20)
    assert answer["verdict"] == "REJECT"
    assert "input files produced no output" in answer["explanation"]
    examples = [json.loads(line) for line in world.bucket.objects[(BUCKET, PREFIX + "examples.jsonl")].splitlines()]
    assert examples
    assert all("error" in e for e in examples)
    # The Reject step: the package Rejected with why, the lock freed, the outcome recorded, the endpoint untouched
    rejected = state.model_copy(update={"verdict": answer})
    told = steps.reject(world.deps, rejected)
    arn = state.package_arn
    assert world.endpoints.packages[arn]["ModelApprovalStatus"] == "Rejected"
    assert world.endpoints.packages[arn]["ApprovalDescription"].startswith("Rejected in replay by Shepherd: ")
    assert world.store.lock_of("churn") is None
    assert world.store.events("churn")[-1] == "rejected"
    assert json.dumps(world.endpoints.live["churn"], default=str) == before
    assert told["outcome"] == "rejected"
    assert told["reason"].startswith("Rejected churn v2 in replay on churn")
    assert "input files produced no output" in told["detail"]
    assert '"error"' in told["detail"]
    assert f"s3://{BUCKET}/{PREFIX}examples.jsonl" in told["detail"]
    # A retry answers the same and records nothing twice
    assert steps.reject(world.deps, rejected) == told
    assert world.store.events("churn").count("rejected") == 1


def test_a_candidate_that_fails_to_load_is_rejected_with_the_job_s_reason():
    world = ReplayWorld()
    world.capture(hours=3, per_hour=100)
    state = _entered(world)
    names = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])["jobs"]
    world.jobs.run(names["champion"], _same)
    world.jobs.status[names["candidate"]] |= {
        "TransformJobStatus": "Failed",
        "FailureReason": "AlgorithmError: the model could not be loaded",
    }
    answer = _judge(world, state, minutes=20)
    assert answer["verdict"] == "REJECT"
    assert "the model could not be loaded" in answer["explanation"]


def test_jobs_unfinished_at_the_stage_s_maximum_skip_replay_rather_than_block_the_rollout():
    world = ReplayWorld()
    world.capture(hours=3, per_hour=100)
    state = _entered(world)
    answer = _judge(world, state, minutes=121)
    assert answer["verdict"] == "PROMOTE"
    assert "did not finish in 120 minutes" in answer["explanation"]
    # and its jobs are stopped: a transform job has no runtime limit of its own
    assert {job["TransformJobStatus"] for job in world.jobs.status.values()} == {"Stopping"}


def test_a_multi_model_endpoint_replays_single_model_models_made_from_both_packages():
    # Given a multi-model champion (a transform job sends no TargetModel: its models cannot serve one)
    world = ReplayWorld()
    world.bucket.objects[(BUCKET, "models/churn/shepherd.yaml")] = CONFIG.replace(
        "  name: churn\n", "  name: churn\n  kind: multi_model\n"
    ).encode()
    world.capture(hours=2, per_hour=100)
    state = _entered(world)
    assert state.target_model == "model.tar.gz"
    # Then both jobs run models made from the packages, network-isolated, named as batch runs name them
    jobs = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])["jobs"]
    models = {role: world.jobs.requests[jobs[role]]["ModelName"] for role in ("candidate", "champion")}
    assert models == {"candidate": "churn-v2-batch", "champion": "churn-v1-batch"}
    for name, version in (("churn-v2-batch", 2), ("churn-v1-batch", 1)):
        made = world.endpoints.models[name]
        assert made["PrimaryContainer"] == {"ModelPackageName": package(version)["ModelPackageArn"]}
        assert made["EnableNetworkIsolation"] is True


def test_jobs_sagemaker_refuses_skip_replay_rather_than_reject_the_candidate():
    # Given SageMaker refusing the replay's jobs (a quota, an instance type the account may not use)
    world = ReplayWorld()
    world.capture(hours=2, per_hour=100)

    def refuse(request: dict[str, Any]) -> bool:
        raise InvalidInput("ResourceLimitExceeded: the account-level service limit for ml.m5.large is 0")

    world.jobs.create_transform = refuse  # type: ignore[method-assign]
    _entered(world)
    # Then the stage is skipped with the reason, and the rollout goes on
    (_, _, output) = world.resumer.sent[-1]
    assert output["skipped"].startswith("the replay could not start: ResourceLimitExceeded")
    assert world.store.events("churn")[-1] == "stage-skipped"


def test_unreadable_evaluation_metadata_still_replays_for_crashes_and_formats():
    world = ReplayWorld()
    world.capture(hours=2, per_hour=100)
    world.serving_v1()
    arn = world.approve(2)
    world.endpoints.packages[arn]["CustomerMetadataProperties"] |= {
        "shepherd:problem": "classification",
        "shepherd:paired-disagreement": "lots",
    }
    state = RolloutState.model_validate(
        steps.prepare(world.deps, package_arn=arn, run="churn-v2-run", overrides=None, manual=False).dump()
    )
    steps.enter_stage(world.deps, state, "token-replay")
    expected = json.loads(world.bucket.objects[(BUCKET, PREFIX + "plan.json")])["expectation"]
    assert expected["disagreement"] == 1.0
    assert expected["source"].startswith("unreadable evaluation metadata (shepherd:paired-disagreement")
    assert len(world.jobs.requests) == 2
