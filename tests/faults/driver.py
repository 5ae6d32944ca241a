"""A rollout driven along statemachines/rollout.asl.json with the in-memory fakes, one fault injected, clients counted.

Each Task runs its step; an exception becomes the task's Error (its class name, as Lambda reports it) and meets
the state's own Retry and Catch, read from the ASL. A waitForTaskToken task waits for the SageMaker event that
JobCallback turns into SendTaskSuccess/Failure (shepherd.callbacks.settle), for ReconcileJobs every 10 minutes,
or for its TimeoutSeconds. Clients send a request stream each virtual minute by the live weights; the judge
reads the metrics those requests make (tests/unit/fakes_judging.FakeMetrics), never timing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
from shepherd import callbacks
from shepherd.rollout import judging, reconcile, steps
from shepherd.rollout.ports import ABORT
from shepherd.rollout.state import RolloutState

from tests.unit.fakes import FakeEndpoints, FakeResumer
from tests.unit.fakes_judging import FakeBucket, FakeMemory, FakeMetrics, SteppingTimer
from tests.unit.test_rollout_steps import CONFIG, World

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachines/rollout.asl.json").read_text())["States"]
SCHEMA = json.loads((ROOT / "schemas/notification.schema.json").read_text())
RECONCILE_SECONDS = 600  # template.yaml ReconcileSchedule's default, rate(10 minutes): both reconcilers
REQUESTS_PER_MINUTE = 200
LATENCY_MS = {"champion": 40.0}
THRESHOLD_MS = 100.0
FAULT_CONFIG = CONFIG.replace("rollout:\n", "rollout:\n  judge:\n    latency: {threshold_ms: 100}\n")


Hook = Callable[["Harness"], None]


class LambdaCrash(Exception):
    """The function's runtime died mid-invocation: Lambda reports Runtime.ExitError, which every step after
    Prepare retries; Prepare's Catch frees its lock (ReleaseUnstarted)."""

    error = "Runtime.ExitError"


class Throttled(Exception):
    """An AWS API call throttled past the SDK's own retries, as shepherd.aws.errors raises it: TransientError."""

    error = "TransientError"


class Stopped(Exception):
    """StopExecution: the execution ends where it is, no Catch runs."""


@dataclass
class Candidate:
    """How the candidate's model answers."""

    error_share: float = 0.0  # a share of its answers are 5XX
    slowdown: float = 1.0  # its latency is the champion's times this
    crash_after: int | None = None  # every answer after this many is 5XX (the container died)
    served: int = 0

    def answer(self) -> tuple[bool, float]:
        """(failed, latency ms) of its next answer; deterministic: errors are spread evenly."""
        self.served += 1
        crashed = self.crash_after is not None and self.served > self.crash_after
        erring = int(self.served * self.error_share) > int((self.served - 1) * self.error_share)
        return crashed or erring, LATENCY_MS["champion"] * self.slowdown


@dataclass
class FaultyEndpoints(FakeEndpoints):
    """FakeEndpoints whose calls can be refused (``refuse[method]``: errors raised by the next calls) and whose
    updates can fail as SageMaker's do: the endpoint goes back to InService on its old config with a FailureReason
    ("UpdateEndpoint": https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html), or a
    new endpoint ends Failed ("CreateEndpoint": https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html)."""

    refuse: dict[str, list[Exception]] = field(default_factory=dict)
    failing_updates: int = 0  # the next updates to a config with the candidate fail
    failing_create: bool = False
    settles_at: float | None = None  # an update in flight: the endpoint is Updating until then
    candidate_model: str = ""

    def _refused(self, method: str) -> None:
        if self.refuse.get(method):
            raise self.refuse[method].pop(0)

    def create_endpoint(self, name: str, config: str, tags: dict[str, str]) -> None:
        self._refused("create_endpoint")
        super().create_endpoint(name, config, tags)
        if self.failing_create:
            self.live[name] |= {"EndpointStatus": "Failed", "FailureReason": "the primary container failed to start"}
            for variant in self.live[name]["ProductionVariants"]:
                variant["CurrentInstanceCount"] = 0

    def update_endpoint(self, name: str, config: str, *, exclude_weights: bool) -> None:
        self._refused("update_endpoint")
        models = {v["ModelName"] for v in self.configs[config]["ProductionVariants"]}
        models |= {v["ModelName"] for v in self.configs[config].get("ShadowProductionVariants", [])}
        if self.failing_updates and self.candidate_model in models:
            self._in_service(name)
            self.failing_updates -= 1
            self.calls.append(("update_endpoint", name, config))
            self.live[name]["FailureReason"] = f"the variant of model {self.candidate_model} failed its health check"
            return
        super().update_endpoint(name, config, exclude_weights=exclude_weights)
        self.live[name].pop("FailureReason", None)

    def update_weights(self, name: str, desired: list[dict[str, Any]]) -> None:
        self._refused("update_weights")
        super().update_weights(name, desired)

    def deregister_scaling(self, endpoint: str, variant: str) -> bool:
        self._refused("deregister_scaling")
        return super().deregister_scaling(endpoint, variant)


@dataclass
class StepFunctionsResumer(FakeResumer):
    """SendTaskSuccess/Failure: only a task token still waiting is accepted (a closed one is refused: False)."""

    open: set[str] = field(default_factory=set)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        if token not in self.open:
            return False
        self.open.discard(token)
        return super().succeed(token, output)

    def fail(self, token: str, error: str, cause: str) -> bool:
        if token not in self.open:
            return False
        self.open.discard(token)
        return super().fail(token, error, cause)


@dataclass
class VariantMetrics(FakeMetrics):
    """FakeMetrics kept per VariantName, as CloudWatch keeps AWS/SageMaker metrics: a query's role
    (champion_, candidate_) reads its variant's series, whichever role that variant had when it served."""

    def metric_data(self, queries: list[dict[str, Any]], start: Any, end: Any) -> list[dict[str, Any]]:
        renamed = []
        for query in queries:
            dimensions = {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}
            kind = query["Id"].split("_", 1)[1]
            renamed.append(query | {"Id": f"{dimensions['VariantName']}_{kind}"})
        results = super().metric_data(renamed, start, end)
        return [r | {"Id": q["Id"]} for r, q in zip(results, queries, strict=True)]


@dataclass
class Jobs:
    """callbacks.Jobs over the fake endpoints (DescribeEndpoint)."""

    endpoints: FakeEndpoints

    def describe(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.endpoints.describe_endpoint(name)


@dataclass
class Executions:
    statuses: dict[str, str] = field(default_factory=dict)

    def status(self, name: str) -> str:
        return self.statuses.get(name, reconcile.MISSING)


@dataclass
class Topic:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        self.published.append(message)


@dataclass
class Clients:
    """Every virtual minute, REQUESTS_PER_MINUTE requests spread over the production variants by weight."""

    failed: int = 0  # failed by the system: refused, dropped, or sent where nothing serves
    bad: int = 0  # answered by a faulty candidate with a 5XX or past the latency threshold
    answered: int = 0
    last_minute: dict[str, int] = field(default_factory=dict)  # model -> answers in the last minute


@dataclass
class Harness:
    """One endpoint, its champion v1 serving, and the rollout of v2 with a fault."""

    candidate: Candidate = field(default_factory=Candidate)
    world: World = field(default_factory=lambda: World(endpoints=FaultyEndpoints(), objects=FakeBucket()))
    resumer: StepFunctionsResumer = field(default_factory=StepFunctionsResumer)
    metrics: FakeMetrics = field(default_factory=VariantMetrics)
    memory: FakeMemory = field(default_factory=FakeMemory)
    executions: Executions = field(default_factory=Executions)
    topic: Topic = field(default_factory=Topic)
    clients: Clients = field(default_factory=Clients)
    hooks: dict[str, Hook] = field(default_factory=dict)  # "<State>" or "<State>:after"
    events: str = "once"  # once | lost | twice | stale-first | delayed
    event_delay: float = 0.0
    pending: list[float] = field(default_factory=list)  # when delayed events arrive
    previous_config: str = ""
    served_once: bool = False
    champion: bool = True
    faulty_model: str = "churn-v2"  # the model that answers as ``candidate`` says; every other answers well
    path: list[str] = field(default_factory=list)
    ended: str = ""
    tokens_issued: int = 0
    sweep_at: float = 0.0

    def __post_init__(self) -> None:
        self.world.resumer = self.resumer
        self.world.config(FAULT_CONFIG)
        self.endpoints.candidate_model = "churn-v2"
        if self.champion:
            self.serving_v1()

    @property
    def endpoints(self) -> FaultyEndpoints:
        assert isinstance(self.world.endpoints, FaultyEndpoints)
        return self.world.endpoints

    # ------------------------------------------------------------ time and clients

    def advance(self, seconds: float) -> None:
        """Virtual time passes minute by minute, clients calling, SageMaker settling, the reconcilers sweeping."""
        clock = self.world.clock
        end = clock.now().timestamp() + seconds
        while clock.now().timestamp() < end:
            step = min(60.0, end - clock.now().timestamp())
            clock.advance(step)
            now = clock.now().timestamp()
            if self.endpoints.settles_at is not None and now >= self.endpoints.settles_at:
                self.endpoints.settles_at = None
                self.endpoints.live["churn"]["EndpointStatus"] = "InService"
                self.state_changed()
            for due in [t for t in self.pending if t <= now]:
                self.pending.remove(due)
                self.deliver()
            if step == 60.0:
                self.minute(now - 60)
            if now >= self.sweep_at + RECONCILE_SECONDS:
                self.sweep_at = now
                self.reconcile_jobs()

    def minute(self, start: float) -> None:
        """One minute of client requests against the live endpoint; the metrics CloudWatch would publish."""
        live = self.world.endpoints.live.get("churn")
        minute = float(int(start // 60) * 60)
        self.clients.last_minute = {}
        if live is None or live["EndpointStatus"] not in ("InService", "Updating", "SystemUpdating"):
            self.clients.failed += REQUESTS_PER_MINUTE if self.served_once else 0  # no clients before it served
            return
        self.served_once = True
        variants = [v for v in live["ProductionVariants"] if v.get("CurrentWeight", 0) > 0]
        total = sum(v["CurrentWeight"] for v in variants)
        shares = _split(REQUESTS_PER_MINUTE, [v["CurrentWeight"] / total for v in variants]) if total else []
        counts: dict[str, list[float]] = {}
        for variant, share in zip(variants, shares, strict=True):
            if variant.get("CurrentInstanceCount", 1) < 1:
                self.clients.failed += share
                continue
            model = self._model_of(live, variant["VariantName"])
            self._serve(variant["VariantName"], model, share, counts, client=True)
        for shadow in live.get("ShadowProductionVariants", []):
            # a shadow mirrors its weight's share of the production weight (UpdateEndpoint's ShadowProductionVariants)
            copies = round(REQUESTS_PER_MINUTE * min(1.0, shadow.get("CurrentWeight", 1.0) / (total or 1.0)))
            model = self._model_of(live, shadow["VariantName"], shadow=True)
            self._serve(shadow["VariantName"], model, copies, counts, client=False)
        for variant_name, (requests, errors, slow) in counts.items():
            if requests:
                self.metrics.put(f"{variant_name}_requests", minute, [requests])
                self.metrics.put(f"{variant_name}_errors", minute, [errors])
                self.metrics.put(f"{variant_name}_timed", minute, [requests])
                self.metrics.put(f"{variant_name}_fast", minute, [requests - slow])

    def _model_of(self, live: dict[str, Any], variant: str, *, shadow: bool = False) -> str:
        config = self.endpoints.configs[live["EndpointConfigName"]]
        listed = config.get("ShadowProductionVariants", []) if shadow else config["ProductionVariants"]
        return str(next(v["ModelName"] for v in listed if v["VariantName"] == variant))

    def _serve(self, variant: str, model: str, requests: int, counts: dict[str, list[float]], *, client: bool) -> None:
        tally = counts.setdefault(variant, [0.0, 0.0, 0.0])
        if model != self.faulty_model:  # a good model: every answer fast and right
            tally[0] += requests
            if client:
                self.clients.answered += requests
                self.clients.last_minute[model] = self.clients.last_minute.get(model, 0) + requests
            return
        for _ in range(requests):
            failed, latency = self.candidate.answer()
            slow = latency > THRESHOLD_MS
            tally[0] += 1
            tally[1] += failed
            tally[2] += slow
            if client:
                self.clients.answered += 1
                self.clients.bad += failed or slow
                self.clients.last_minute[model] = self.clients.last_minute.get(model, 0) + 1

    # ------------------------------------------------------------ SageMaker events and the reconcilers

    def deliver(self) -> str:
        """JobCallback on a "SageMaker Endpoint State Change": it describes the endpoint and settles the waiter."""
        return callbacks.settle(
            "endpoint",
            "churn",
            store=self.world.tokens,
            jobs=Jobs(self.endpoints),
            resumer=self.resumer,
            now_epoch=self.world.clock.now().timestamp(),
        )

    def reconcile_jobs(self) -> None:
        callbacks.reconcile(
            store=self.world.tokens, jobs=Jobs(self.endpoints), resumer=self.resumer, now=self.world.clock.now()
        )

    def reconcile_rollouts(self) -> dict[str, int]:
        deps = reconcile.Deps(
            store=self.world.store,
            endpoints=self.endpoints,
            executions=self.executions,
            notifications=self.topic,
            now=self.world.clock.now,
        )
        return reconcile.reconcile(deps)

    # ------------------------------------------------------------ the state machine

    def serving_v1(self) -> None:
        """v1 deployed and promoted (as tests/unit/test_rollout_steps.serving_v1), then an hour of traffic."""
        state = self.world.prepare(1)
        steps.deploy_first(self.world.deps, state, "token-first")
        steps.promoted(self.world.deps, state)
        self.resumer.sent.clear()
        self.advance(3900)

    def hook(self, name: str) -> None:
        if name in self.hooks:
            self.hooks[name](self)

    def task(self, name: str, call: Callable[[str], Any], *, waits: bool = False) -> tuple[str, Any]:
        """("ok", result) or ("caught", (next state, error)): the Task state with its Retry and Catch."""
        spec = ASL[name]
        attempts = [0] * len(spec.get("Retry", []))
        while True:
            self.tokens_issued += 1
            token = f"{name}#{self.tokens_issued}"
            self.path.append(name)
            try:
                self.hook(name)
                if waits:
                    self.resumer.open.add(token)
                    self.previous_config = (self.endpoints.describe_endpoint("churn") or {}).get(
                        "EndpointConfigName", ""
                    )
                result = call(token)
                self.hook(f"{name}:after")
                if waits:
                    result = self.wait_token(token, spec["TimeoutSeconds"])
                return "ok", result
            except Stopped:
                raise
            except Exception as exc:
                self.resumer.open.discard(token)
                error = getattr(exc, "error", None) or type(exc).__name__
                if isinstance(exc, TaskFailed):
                    error = exc.error
                cause = str(exc)
            retried = False
            for index, retrier in enumerate(spec.get("Retry", [])):
                if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
                    if attempts[index] < retrier["MaxAttempts"]:
                        # JitterStrategy FULL waits a random part of this: the longest, deterministically
                        delay = retrier["IntervalSeconds"] * retrier.get("BackoffRate", 2.0) ** attempts[index]
                        attempts[index] += 1
                        self.advance(min(delay, retrier.get("MaxDelaySeconds", delay)))
                        retried = True
                    break  # the first retrier that names the error decides
            if retried:
                continue
            for catcher in spec.get("Catch", []):
                if error in catcher["ErrorEquals"] or "States.ALL" in catcher["ErrorEquals"]:
                    return "caught", (catcher["Next"], {"Error": error, "Cause": cause})
            raise TaskFailed(error, cause)

    def wait_token(self, token: str, timeout: float) -> Any:
        """Until SendTaskSuccess/Failure for the token, or States.Timeout."""
        if not any(t == token for _, t, _ in self.resumer.sent) and self.endpoints.settles_at is None:
            self.state_changed()
        waited = 0.0
        while not any(t == token for _, t, _ in self.resumer.sent):
            if waited >= timeout:
                self.resumer.open.discard(token)
                raise TaskFailed("States.Timeout", "")
            self.advance(60)
            waited += 60
        kind, _, output = next(m for m in self.resumer.sent if m[1] == token)
        if kind == "failure":
            raise TaskFailed(output["error"], output["cause"])
        return output

    def state_changed(self) -> None:
        """SageMaker's "Endpoint State Change" event(s) for a change that has just settled, as ``events`` says."""
        now = self.world.clock.now().timestamp()
        if self.events == "once":
            self.deliver()
        elif self.events == "twice":
            self.deliver()
            self.deliver()
        elif self.events == "stale-first":  # an older event (the previous config InService) arrives first
            live = self.endpoints.describe_endpoint("churn") or {}
            stale = live | {"EndpointConfigName": self.previous_config or "", "EndpointStatus": "InService"}
            callbacks.settle(
                "endpoint",
                "churn",
                store=self.world.tokens,
                jobs=Jobs(self.endpoints),
                resumer=self.resumer,
                description=stale,
                now_epoch=now,
            )
            self.deliver()
        elif self.events == "delayed":
            self.pending.append(now + self.event_delay)

    def notify(self, message: dict[str, Any]) -> None:
        self.topic.published.append(message)

    def run(self, version: int = 2) -> str:
        """Start the Rollout execution for package v<version>; its terminal state (Done, RolledBack, ...)."""
        arn = self.world.approve(version)
        run = f"churn-v{version}-run"
        self.executions.statuses[run] = reconcile.RUNNING
        try:
            self.ended = self._execute(arn, run)
        except Stopped:
            self.executions.statuses[run] = "ABORTED"
            self.ended = "Stopped"
        else:
            failed = ("RolledBack", "Inconclusive", "RollbackFailed", "NotStarted", "LockLost", "FirstDeploymentFailed")
            self.executions.statuses[run] = "FAILED" if self.ended in failed else "SUCCEEDED"
        return self.ended

    def _execute(self, arn: str, run: str) -> str:
        deps = self.world.deps
        outcome, prepared = self.task(
            "Prepare", lambda _: steps.prepare(deps, package_arn=arn, run=run, overrides=None, manual=False).dump()
        )
        if outcome == "caught":
            self.task(
                "ReleaseUnstarted", lambda _: steps.release_unstarted(deps, package_arn=arn, run=run, overrides=None)
            )
            facts = {"execution": run, "package": arn}
            self.notify(steps.describe_failure("RolloutFailed", prepared[1], facts))
            return "NotStarted"
        state = RolloutState.model_validate(prepared)
        if state.noop:
            self.task("ReleaseNoop", lambda _: steps.release(deps, state))
            return "Noop"
        i, verdict = 0, {"loops": 0}
        if state.first:
            outcome, done = self.task("DeployFirst", lambda t: steps.deploy_first(deps, state, t), waits=True)
            if outcome == "caught":
                return self._failed(state, *done)
            return self._promoted(state)
        while i < state.stage_count:
            staged = state.model_copy(update={"stage_index": i})
            outcome, entered = self.task("EnterStage", partial(steps.enter_stage, deps, staged), waits=True)
            if outcome == "caught":
                return self._failed(state, *entered)
            verdict = {"loops": 0}
            attempt = 0
            while True:
                self.advance(state.interval_seconds)
                attempt += 1
                judged = partial(self.judge, state, i, entered, verdict, attempt)
                outcome, verdict = self.task("Judge", judged)
                if outcome == "caught":
                    return self._failed(state, *verdict)
                if verdict["verdict"] != "CONTINUE":
                    break
            if verdict["verdict"] == "PROMOTE":
                i += 1
                continue
            if verdict["verdict"] == "INCONCLUSIVE":
                verdict = verdict | {"stage_index": i}
            return self._roll_back(state, verdict)
        outcome, done = self.task("Finalize", lambda t: steps.finalize(deps, state, t), waits=True)
        if outcome == "caught":
            return self._failed(state, *done)
        return self._promoted(state)

    def _promoted(self, state: RolloutState) -> str:
        deps = self.world.deps
        outcome, result = self.task("Promoted", lambda _: steps.promoted(deps, state))
        if outcome == "caught":
            return self._failed(state, *result)
        keys = ("reason", "detail", "cost", "live_requests")  # the ResultSelector's and DescribePromotion's fields
        self.notify({k: result[k] for k in keys} | {"event": "RolloutPromoted", "endpoint": state.endpoint})
        return "Done"

    def judge(
        self, state: RolloutState, i: int, entered: dict[str, Any], verdict: dict[str, Any], n: int, _token: str
    ) -> Any:
        event = {
            "run": state.run,
            "endpoint": state.endpoint,
            "package_arn": state.package_arn,
            "champion_variant": state.serving_champion().variant,
            "candidate_variant": state.candidate.variant,
            "stage": state.stages[i].model_dump(mode="json", exclude_none=True),
            "stage_index": i,
            "stage_started": entered["at"],
            "judge": state.judge,
            "attempt": f"{i}-{n}",  # $$.State.EnteredTime: one per judge call, the same for its retries
            "rollout_started": state.started_at,
            "loops": verdict.get("loops", 0),
        }
        deps = judging.JudgeDeps(
            metrics=self.metrics,
            store=self.world.store,
            memory=self.memory,
            objects=self.world.objects,
            now=self.world.clock.now,
            monotonic=SteppingTimer(),
        )
        return judging.judge_stage(deps, judging.JudgeRequest.parse(event))

    def _failed(self, state: RolloutState, next_state: str, error: dict[str, Any]) -> str:
        if next_state == "DescribeLockLost":
            facts = {"execution": state.run, "model": state.model, "endpoint": state.endpoint}
            self.notify(steps.describe_failure("LockLost", error, facts | {"package": state.package_arn}))
            return "LockLost"
        if next_state == "ReleaseAfterFirstFailure":
            self.task(next_state, lambda _: steps.release(self.world.deps, state))
            facts = {"execution": state.run, "model": state.model, "endpoint": state.endpoint}
            self.notify(steps.describe_failure("RolloutFailed", error, facts | {"package": state.package_arn}))
            return "FirstDeploymentFailed"
        assert next_state == "RollbackWeights", next_state
        return self._roll_back(state, error)

    def _roll_back(self, state: RolloutState, verdict: dict[str, Any]) -> str:
        deps = self.world.deps
        facts = {"execution": state.run, "model": state.model, "endpoint": state.endpoint, "package": state.package_arn}
        for name, step in (("RollbackWeights", steps.rollback_weights), ("RollbackConfig", steps.rollback_config)):
            outcome, result = self.task(name, partial(step, deps, state), waits=True)
            if outcome == "caught":
                return self._rollback_failed(state, result, verdict, facts)
        judged = state.model_copy(update={"verdict": verdict})
        outcome, result = self.task("VerifyRollback", lambda _: steps.verify_rollback(deps, judged))
        if outcome == "caught":
            return self._rollback_failed(state, result, verdict, facts)
        event = "RolloutInconclusive" if result["outcome"] == "inconclusive" else "RolloutRolledBack"
        metered = {"cost": result["cost"], "live_requests": result["live_requests"]}
        self.notify({"reason": result["reason"], "detail": result["detail"], "event": event} | facts | metered)
        return "Inconclusive" if event == "RolloutInconclusive" else "RolledBack"

    def _rollback_failed(self, state: RolloutState, caught: Any, verdict: dict[str, Any], facts: dict[str, Any]) -> str:
        next_state, error = caught
        if next_state == "DescribeLockLost":
            self.notify(steps.describe_failure("LockLost", error, facts))
            return "LockLost"
        self.notify(steps.describe_failure("RollbackFailed", error, facts, verdict))
        return "RollbackFailed"

    # ------------------------------------------------------------ after the execution

    def settle_down(self, minutes: int = 40) -> None:
        """What follows the execution: clients keep calling, the reconcilers keep sweeping (every 10 minutes)."""
        for _ in range(minutes // 10):
            self.advance(RECONCILE_SECONDS)
            self.reconcile_rollouts()
        self.advance(60)

    def check(self) -> dict[str, Any]:
        """The four things every fault test asserts, measured: the row's figures."""
        live = self.endpoints.describe_endpoint("churn") or {}
        champion = self.world.store.champion("churn") or {}
        return {
            "config": live.get("EndpointConfigName"),
            "champion_config": champion.get("config"),
            "variants": [v["VariantName"] for v in live.get("ProductionVariants", [])],
            "shadow": bool(live.get("ShadowProductionVariants")),
            "status": live.get("EndpointStatus"),
            "answered_by": sorted(self.clients.last_minute),
            "failed": self.clients.failed,
            "bad": self.clients.bad,
            "notifications": [n["event"] for n in self.topic.published],
            "lock": self.world.store.lock_of("churn"),
        }


class TaskFailed(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error = error


def _split(total: int, shares: list[float]) -> list[int]:
    """``total`` split by ``shares``, largest remainders first (deterministic)."""
    exact = [total * s for s in shares]
    counts = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda k: exact[k] - counts[k], reverse=True)
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def assert_one_clear_notification(harness: Harness, event: str) -> dict[str, Any]:
    """Exactly one notification, of that event, valid against schemas/notification.schema.json, reason first."""
    assert [n["event"] for n in harness.topic.published] == [event]
    message = harness.topic.published[0]
    jsonschema.validate(message, SCHEMA)
    assert next(iter(message)) == "reason"
    assert "Traceback" not in json.dumps(message)
    if event in ENDINGS:  # what the rollout cost, as fields, not only a line of the detail
        assert isinstance(message["cost"], dict)
        assert isinstance(message["cost"]["instance_hours"], int | float)
        assert isinstance(message["live_requests"], int)
    return message


ENDINGS = {"RolloutPromoted", "RolloutRolledBack", "RolloutInconclusive", "RolloutRejected"}


def abort(by: str = "alice", reason: str = "incident") -> Callable[[Harness], None]:
    def set_flag(harness: Harness) -> None:
        harness.world.store.set_flag("churn", ABORT, by=by, reason=reason)

    return set_flag
