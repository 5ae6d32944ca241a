"""The Rollout state machine's steps: prepare, deploy, enter a stage, promote, roll back and verify.

Each step is idempotent under retries: configs are named per run and stage, a waiter is stored before
the endpoint change it waits for, and the lock is re-entrant for its owner. docs/ARCHITECTURE.md
("Rollouts") describes the path; plan.py holds the SageMaker requests.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shepherd import cost as prices
from shepherd.callbacks import Waiter, waiter_key
from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.config.models import FIRST_EXECUTION_JUDGE_CALLS
from shepherd.errors import EndpointBusy, InvalidInput, NotFound, ShepherdError, TransientError
from shepherd.events import notifications
from shepherd.rollout import cost, plan, replay_stage
from shepherd.rollout.plan import Stage, VariantSpec
from shepherd.rollout.ports import (
    ABORT,
    PAUSED,
    CaptureBucket,
    Deps,
    LockHeld,
    LockLost,
    RollbackFailed,
    TransformJobs,
)
from shepherd.rollout.state import RolloutState

logger = logging.getLogger(__name__)
WAIT_SECONDS = 3600
STAGE_SECTIONS = {"shadow": "shadow", "ab": "ab", "full": "full"}  # stage kind -> its section under rollout


# ---------------------------------------------------------------- shared moves


def _record(deps: Deps, state: RolloutState, event: str, **fields: Any) -> None:
    entry = {"run": state.run, "package": state.package_arn, "event": event} | fields
    deps.store.record(state.endpoint, entry, deps.now().isoformat())


def _wait_for(deps: Deps, state: RolloutState, token: str, expect: str) -> None:
    """Store the waiter before the endpoint change: its InService event may come before the step returns.

    Every endpoint change waits, so this is also where a rollout checks that it still holds the lock
    (renewing its lease): LockLost, and it changes nothing."""
    deps.store.renew(state.endpoint, state.run, deps.now().timestamp())
    waiter = Waiter(waiter_key("endpoint", state.endpoint), "endpoint", token, state.run, deps.wall(), expect)
    deps.tokens.put(waiter, expires_after_seconds=WAIT_SECONDS + 86400)


def _done_now(deps: Deps, token: str, output: dict[str, Any]) -> dict[str, Any]:
    """Nothing to wait for: resume the waiting state at once."""
    deps.resumer.succeed(token, output | {"at": deps.now().timestamp()})
    return output


def _tags(state: RolloutState) -> dict[str, str]:
    return {"shepherd:model": state.model, "shepherd:rollout": state.run[:256]}


def _endpoint_config(
    deps: Deps,
    state: RolloutState,
    stage: str,
    production: list[tuple[VariantSpec, float]],
    *,
    shadow: VariantSpec | None = None,
    shadow_weight: float = 1.0,
) -> str:
    name = plan.config_name(state.endpoint, stage, state.version, state.run)
    request = plan.endpoint_config(
        state.parsed_config(),
        name=name,
        production=production,
        shadow=shadow,
        shadow_weight=shadow_weight,
        bucket=deps.settings.bucket,
        endpoint=state.endpoint,
        kms_key_arn=deps.settings.kms_key_arn,
        tags=_tags(state),
    )
    deps.endpoints.create_endpoint_config(request)
    return name


def scaling(config: ModelConfig) -> dict[str, Any] | None:
    """endpoint.autoscaling as Endpoints.register_scaling takes it (kept on the champion record too, so
    ReconcileRollouts can give a restored champion its scaling target back)."""
    wanted = config.endpoint.autoscaling
    if wanted is None or not wanted.enabled:
        return None
    return {
        "minimum": wanted.min_capacity,
        "maximum": wanted.max_capacity,
        "target": wanted.target_invocations_per_instance,
        "scale_in": wanted.scale_in_cooldown_seconds,
        "scale_out": wanted.scale_out_cooldown_seconds,
    }


def _register_scaling(deps: Deps, state: RolloutState, variant: str) -> None:
    wanted = scaling(state.parsed_config())
    if wanted is not None:
        deps.endpoints.register_scaling(state.endpoint, variant, **wanted)


def _live_variant(live: dict[str, Any], variant: str) -> dict[str, Any]:
    """A production variant of a DescribeEndpoint answer, {} when it has none of that name."""
    return next((v for v in live.get("ProductionVariants", []) if v["VariantName"] == variant), {})


# ---------------------------------------------------------------- prepare


def prepare(deps: Deps, *, package_arn: str, run: str, overrides: dict[str, Any] | None, manual: bool) -> RolloutState:
    """Take the endpoint's lock and plan the rollout of an Approved package."""
    package = deps.packages.describe_package(package_arn)
    if package.get("ModelApprovalStatus") != "Approved":
        raise InvalidInput(f"{package_arn} is {package.get('ModelApprovalStatus')}, not Approved: nothing to roll out")
    model, config, endpoint = _target(deps, package, overrides)
    paused = deps.store.flag(endpoint, PAUSED)
    if paused is not None and not manual:
        raise InvalidInput(
            f"rollouts to {endpoint} are paused by {paused['by']} ({paused['reason']}): the champion stays; "
            f"`shepherd rollout resume {endpoint}` lifts it, `shepherd rollout start {package_arn}` rolls out by hand"
        )
    try:
        deps.store.acquire(endpoint, run, package_arn, deps.now().timestamp())
    except LockHeld:
        if config.rollout.on_new_approval == "supersede":
            _supersede(deps, endpoint, package_arn)
        raise  # the state machine retries: this rollout starts once the running one has ended
    try:
        return _planned(deps, package, config, run=run, model=model, endpoint=endpoint)
    except Exception:
        # Nothing has touched the endpoint yet: free it for the next approval rather than leave the lock to
        # the reconciler (the state machine's failure path has no state to release it with).
        deps.store.release(endpoint, run)
        raise


def _target(deps: Deps, package: dict[str, Any], overrides: dict[str, Any] | None) -> tuple[str, ModelConfig, str]:
    """The package's model, its config and the endpoint it rolls out to."""
    model = (package.get("CustomerMetadataProperties") or {}).get("shepherd:model") or package["ModelPackageGroupName"]
    config = _load_config(deps, model, overrides)
    return model, config, config.endpoint.name or model


def release_unstarted(deps: Deps, *, package_arn: str, run: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Prepare's failure path: free the lock of a Prepare that died after taking it (a crash or a timeout
    runs no ``except``). Nothing but a model was made yet, so the next rollout may start at once."""
    try:
        _, _, endpoint = _target(deps, deps.packages.describe_package(package_arn), overrides)
    except ShepherdError:
        return {"released": False}  # no package or no config: Prepare failed before it took a lock
    if not deps.store.release(endpoint, run):
        return {"released": False}
    entry = {"run": run, "package": package_arn, "event": "ended", "error": "Prepare failed after taking the lock"}
    deps.store.record(endpoint, entry, deps.now().isoformat())
    return {"released": True, "endpoint": endpoint}


def _load_config(deps: Deps, model: str, overrides: dict[str, Any] | None) -> ModelConfig:
    bucket, key = deps.settings.bucket, f"models/{model}/shepherd.yaml"
    try:
        text = deps.objects.read_bytes(bucket, key).decode("utf-8", errors="replace")
        return load_config(text, f"s3://{bucket}/{key}", model=model, overrides=overrides or None)
    except NotFound:
        raise InvalidInput(f"s3://{bucket}/{key} does not exist: no config for {model}") from None
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None


def _supersede(deps: Deps, endpoint: str, package_arn: str) -> None:
    """Ask the rollout holding the endpoint to end at its next judge call (on_new_approval: supersede).

    It ends INCONCLUSIVE: the champion gets all traffic back and the superseded package stays Approved.
    A duplicate of the running package's own approval supersedes nothing."""
    holder = deps.store.lock_of(endpoint)
    if holder is None or holder.get("package") == package_arn:
        return
    deps.store.set_flag(
        endpoint,
        ABORT,
        by=f"superseded by {package_arn}",
        reason=f"package {package_arn} was approved while {holder.get('package')} was rolling out",
        verdict="INCONCLUSIVE",
    )


def _create_model(
    deps: Deps, config: ModelConfig, package: dict[str, Any], candidate: VariantSpec, model: str
) -> str | None:
    """The candidate's SageMaker model; for a multi-model endpoint, also the TargetModel clients name."""
    arn = package["ModelPackageArn"]
    container: dict[str, Any] = {"ModelPackageName": arn}
    target_model = None
    if config.endpoint.kind == "multi_model":
        try:
            container, target_model = plan.multi_model_container(
                (package.get("InferenceSpecification") or {}).get("Containers", [{}])[0], arn
            )
        except (ValueError, KeyError, IndexError) as exc:
            raise InvalidInput(str(exc)) from None
    deps.packages.create_model(
        {
            "ModelName": candidate.model_name,
            "PrimaryContainer": container,
            "ExecutionRoleArn": deps.settings.sagemaker_role_arn,
            "EnableNetworkIsolation": config.endpoint.kind != "serverless",
            "Tags": [{"Key": "shepherd:model", "Value": model}, {"Key": "shepherd:package", "Value": arn}],
        }
    )
    return target_model


def _judge_settings(config: ModelConfig, *, bucket: str, model: str, endpoint: str, run: str) -> dict[str, Any]:
    """rollout.judge, plus where quality judging finds captured predictions and ground truth, and where the replay
    stage's jobs write."""
    judge = config.rollout.judge.model_dump(mode="json", exclude_none=True)
    replay = config.rollout.replay
    if replay.enabled:
        judge["replay"] = {
            "bucket": bucket,
            "prefix": plan.replay_prefix(endpoint, run),
            "tolerance": replay.tolerance,
            "max_slowdown": replay.max_slowdown,
        }
    if "quality" in judge:
        judge["quality"]["sources"] = {
            "bucket": bucket,
            "capture": plan.capture_prefix(endpoint),  # + <variant>/yyyy/mm/dd/hh/
            "feedback": f"feedback/{model}/",
        }
    return judge


def _planned(
    deps: Deps, package: dict[str, Any], config: ModelConfig, *, run: str, model: str, endpoint: str
) -> RolloutState:
    """The rollout's state and plan, for a rollout that holds the endpoint's lock."""
    arn = package["ModelPackageArn"]
    version = plan.version_of(arn)
    deps.store.clear_flag(endpoint, ABORT)  # an abort meant for an earlier rollout must not end this one
    live = deps.endpoints.describe_endpoint(endpoint)
    if live is not None and live["EndpointStatus"] in ("Failed", "Deleting") and _never_served(deps, endpoint):
        if live["EndpointStatus"] == "Failed":
            _delete_failed_first(deps, endpoint, run, arn, live)
        raise EndpointBusy(f"endpoint {endpoint} is being deleted (a failed first deployment): retried until gone")
    candidate = plan.candidate_spec(config, endpoint=endpoint, version=version)
    target_model = _create_model(deps, config, package, candidate, model)
    common: dict[str, Any] = {
        "run": run,
        "model": model,
        "endpoint": endpoint,
        "package_arn": arn,
        "version": version,
        "config": config.model_dump(mode="json"),
        "candidate": candidate,
        "judge": _judge_settings(config, bucket=deps.settings.bucket, model=model, endpoint=endpoint, run=run),
        "interval_seconds": config.rollout.judge_interval_minutes * 60,
        # Continuations inherit it: a few more executions, never a history past its cap.
        "judge_calls_per_execution": min(config.rollout.judge_calls_per_execution, FIRST_EXECUTION_JUDGE_CALLS),
        "stage_index": 0,
        # full and the watch judge the candidate against the champion's counts since this moment
        "started_at": deps.now().timestamp(),
    }
    if target_model is not None:
        common["target_model"] = target_model
    target = {"target_model": target_model} if target_model else {}
    if live is None:
        state = RolloutState(**common, first=True, noop=False, champion=None, last_good=None, stages=[], stage_count=0)
        _record(deps, state, "started", strategy=f"first-deployment ({config.endpoint.kind})", **target)
        return state
    if live["EndpointStatus"] != "InService":
        raise InvalidInput(f"endpoint {endpoint} is {live['EndpointStatus']}: a rollout starts only from InService")
    champion = _champion_of(deps, live)
    kind = config.endpoint.kind
    _same_kind(deps, endpoint, kind, champion)
    recorded = deps.store.champion(endpoint)
    last_good = recorded["config"] if recorded else live["EndpointConfigName"]
    stages = plan.stages(config, kind)
    state = RolloutState(
        **common,
        first=False,
        noop=champion.model_name == candidate.model_name,
        champion=champion,
        last_good=last_good,
        stages=stages,
        stage_count=len(stages),
    )
    strategy = describe_strategy(config, stages)
    _record(deps, state, "started", strategy=strategy, champion=champion.model_name, last_good=last_good, **target)
    return state


def _never_served(deps: Deps, endpoint: str) -> bool:
    """No champion recorded and no promotion ever recorded: the endpoint is a first deployment's."""
    if deps.store.champion(endpoint) is not None:
        return False
    return not any(r.get("event") == "promoted" for r in deps.store.records(endpoint))


def _delete_failed_first(deps: Deps, endpoint: str, run: str, package: str, live: dict[str, Any]) -> None:
    """SageMaker allows only DeleteEndpoint on a Failed endpoint
    (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html, EndpointStatus):
    one that never served is deleted, so the next first deployment can create it again."""
    deps.endpoints.delete_endpoint(endpoint)
    reason = live.get("FailureReason") or "no reason given"
    entry = {"run": run, "package": package, "event": "deleted-failed-endpoint", "reason": reason}
    deps.store.record(endpoint, entry, deps.now().isoformat())


def _champion_of(deps: Deps, live: dict[str, Any]) -> VariantSpec:
    """The variant serving most of the endpoint's traffic now, with its live instance count."""
    serving = plan.serving_variant(live, deps.endpoints.describe_endpoint_config(live["EndpointConfigName"]))
    counts = {v["VariantName"]: v.get("CurrentInstanceCount") for v in live.get("ProductionVariants", [])}
    return VariantSpec(
        variant=serving["VariantName"],
        model_name=serving["ModelName"],
        instance_type=serving.get("InstanceType"),
        instance_count=counts.get(serving["VariantName"]) or serving.get("InitialInstanceCount"),
        serverless=serving.get("ServerlessConfig"),
    )


def describe_strategy(config: ModelConfig, stages: list[Stage]) -> str:
    """The rollout's path in words, as the record and notifications show it."""
    kind = config.endpoint.kind
    path = " -> ".join(f"{s.kind} {s.weight:g}%" if s.kind == "ab" else s.kind for s in stages)
    if kind == "serverless":
        # One production variant, no data capture: no shadow, A/B or full. The closest safe strategy.
        if not stages:
            return "serverless: direct switch (post_promotion_watch disabled)"
        return (
            "serverless: switch, then a post-promotion watch against the champion's counts before it "
            "(serverless endpoints allow one production variant and no data capture)"
        )
    if not stages:
        return "direct switch (shadow and A/B disabled)"
    if kind == "multi_model" and config.rollout.shadow.enabled:
        return f"multi-model: {path} (no shadow: SageMaker allows no shadow variant on a multi-model endpoint)"
    return path


def _same_kind(deps: Deps, endpoint: str, kind: str, champion: VariantSpec) -> None:
    """A rollout keeps an endpoint's kind: a variant of another kind beside the champion would fail the
    clients (a multi-model endpoint needs TargetModel, a single-model one refuses it)."""
    multi = deps.packages.serves_multi_model(champion.model_name)
    if multi != (kind == "multi_model"):
        serving = "multi-model" if multi else "single-model"
        raise InvalidInput(
            f"endpoint {endpoint} is a {serving} endpoint but the config asks for endpoint.kind {kind}: a rollout "
            "does not change an endpoint's kind. Give the model a new endpoint.name, or remove this one with "
            "`shepherd teardown` first"
        )


# ---------------------------------------------------------------- deploy and stages


def deploy_first(deps: Deps, state: RolloutState, token: str) -> dict[str, Any]:
    name = _endpoint_config(deps, state, "first", [(state.candidate, 1.0)])
    _wait_for(deps, state, token, name)
    if deps.endpoints.describe_endpoint(state.endpoint) is None:
        deps.endpoints.create_endpoint(state.endpoint, name, _tags(state))
    _record(deps, state, "deploying", stage="first", config=name)
    return {"config": name}


def _final_config(deps: Deps, state: RolloutState, token: str) -> str:
    """Switch to the challenger alone. SageMaker refuses to remove a variant that still has a scaling
    target: the champion's goes first; the challenger's is registered before the switch, while the
    endpoint is InService, so it is never left without one."""
    deps.endpoints.deregister_scaling(state.endpoint, state.serving_champion().variant)
    _register_scaling(deps, state, state.candidate.variant)
    name = _endpoint_config(deps, state, "final", [(state.candidate, 1.0)])
    _wait_for(deps, state, token, name)
    deps.endpoints.update_endpoint(state.endpoint, name, exclude_weights=True)
    return name


def enter_stage(deps: Deps, state: RolloutState, token: str) -> dict[str, Any]:
    index = state.stage_index
    stage = state.stages[index]
    previous = state.stages[index - 1] if index else None
    champion, candidate = state.serving_champion(), state.candidate
    live = deps.endpoints.describe_endpoint(state.endpoint) or {}
    if stage.kind == "replay":
        return _enter_replay(deps, state, token, live)
    if stage.kind == "watch":
        name = _final_config(deps, state, token)
    elif stage.kind == "shadow":
        # RetainAllVariantProperties keeps the champion's current weight (and capacity): a shadow of the same
        # weight receives a copy of every request, so it gets as many instances as the champion serves them
        # with (kept by name when it becomes the A/B challenger).
        # rollout.shadow.sampling_percentage below 100: a copy of that share, on a fleet sized for it.
        serving = _live_variant(live, champion.variant)
        weight = serving.get("CurrentWeight") or 1.0
        wanted = state.parsed_config().rollout.shadow
        candidate = cost.shadow_fleet(
            candidate,
            champion_count=serving.get("CurrentInstanceCount"),
            sampling_percentage=wanted.sampling_percentage,
            count=wanted.instance_count,
        )
        shadow_weight = float(weight) * wanted.sampling_percentage / 100
        name = _endpoint_config(deps, state, "shadow", [(champion, 1.0)], shadow=candidate, shadow_weight=shadow_weight)
        _wait_for(deps, state, token, name)
        deps.endpoints.update_endpoint(state.endpoint, name, exclude_weights=False)
    elif previous is not None and previous.kind in ("ab", "full"):  # both serve already: weights move
        name = live["EndpointConfigName"]
        count = _raised_count(state, live)
        serving_count = count or _live_variant(live, candidate.variant).get("CurrentInstanceCount")
        candidate = candidate.model_copy(update={"instance_count": serving_count or candidate.instance_count})
        _wait_for(deps, state, token, name)
        deps.endpoints.update_weights(
            state.endpoint, plan.weights(champion.variant, candidate.variant, stage.weight, count)
        )
    else:
        # A new config: the challenger's instances in proportion to its share, which SageMaker brings InService
        # before it moves the traffic
        count = _proportional_count(state, live)
        if count is not None:
            candidate = candidate.model_copy(update={"instance_count": count})
        production = [(champion, 100 - stage.weight), (candidate, stage.weight)]
        name = _endpoint_config(deps, state, f"{stage.kind}{stage.weight:g}", production)
        _wait_for(deps, state, token, name)
        deps.endpoints.update_endpoint(state.endpoint, name, exclude_weights=True)
    added = cost.added_capacity(stage.kind, candidate, _with_live_count(champion, live))
    entered = {"stage": stage.kind, "stage_index": index, "weight": stage.weight, "config": name}
    _record(deps, state, "stage-entered", **entered, instances=added)
    return {"config": name}


def _with_live_count(variant: VariantSpec, live: dict[str, Any]) -> VariantSpec:
    """The variant with its instance count now, as DescribeEndpoint answers (the planned one if none)."""
    count = _live_variant(live, variant.variant).get("CurrentInstanceCount")
    return variant.model_copy(update={"instance_count": count}) if count else variant


def _cost(deps: Deps, state: RolloutState) -> dict[str, Any]:
    """The rollout's cost per stage and its live requests, for its ending record (shepherd.rollout.cost)."""
    table = prices.prices(prices.region_of(state.package_arn), state.parsed_config().rollout.cost.instance_prices)
    return cost.summary(deps.store.records(state.endpoint), run=state.run, ended_at=deps.now(), prices=table)


def _enter_replay(deps: Deps, state: RolloutState, token: str, live: dict[str, Any]) -> dict[str, Any]:
    """Start the replay's two transform jobs on a sample of the champion's capture; the endpoint is not touched.

    Skipped (recorded with the reason, and the rollout goes on to the next stage) when there is too little capture
    to replay, no single-model SageMaker model to replay the champion with, or SageMaker refuses the jobs."""
    if deps.capture is None or deps.jobs is None:
        raise ValueError("the replay stage needs the data bucket and SageMaker's transform jobs (Deps.capture, jobs)")
    deps.store.renew(state.endpoint, state.run, deps.now().timestamp())  # LockLost: it starts nothing
    config = state.parsed_config()
    current = {"config": live.get("EndpointConfigName", "")}
    models = _replay_models(deps, state, config)
    if isinstance(models, str):
        return _replay_skipped(deps, state, token, current, models)
    package = deps.packages.describe_package(state.package_arn)
    try:
        started = _start_replay(deps, state, config, models, package, capture=deps.capture, jobs=deps.jobs)
    except (TransientError, LockLost):
        raise  # retried by the state machine; the rollout's end
    except ShepherdError as exc:
        # A replay that cannot run says nothing against the candidate: skipped, as without capture, not a rollback
        return _replay_skipped(deps, state, token, current, f"the replay could not start: {exc}")
    if "skipped" in started:
        return _replay_skipped(deps, state, token, current, started["skipped"])
    _record(deps, state, "stage-entered", stage="replay", stage_index=state.stage_index, weight=0, **current, **started)
    return _done_now(deps, token, current | {"replay": started})


def _start_replay(
    deps: Deps,
    state: RolloutState,
    config: ModelConfig,
    models: tuple[str, str],
    package: dict[str, Any],
    *,
    capture: CaptureBucket,
    jobs: TransformJobs,
) -> dict[str, Any]:
    wanted = config.rollout.replay
    champion = state.serving_champion()
    return replay_stage.start(
        capture,
        jobs,
        replay_stage.Start(
            replay=replay_stage.Replay(deps.settings.bucket, plan.replay_prefix(state.endpoint, state.run)),
            run=state.run,
            endpoint=state.endpoint,
            version=state.version,
            capture_folder=f"{plan.capture_prefix(state.endpoint)}{champion.variant}/",
            candidate_model=models[0],
            champion_model=models[1],
            metadata=dict(package.get("CustomerMetadataProperties") or {}),
            problem=None,
            sample_size=wanted.sample_size,
            window_hours=wanted.window_hours,
            default_disagreement=wanted.default_disagreement,
            instance=replay_stage.instance_type(
                wanted.instance_type, champion.instance_type, config.batch.instance_type
            ),
            kms_key_arn=deps.settings.kms_key_arn,
            tags=_tags(state),
        ),
        deps.now().timestamp(),
    )


def _replay_skipped(
    deps: Deps, state: RolloutState, token: str, current: dict[str, Any], reason: str
) -> dict[str, Any]:
    _record(deps, state, "stage-skipped", stage="replay", stage_index=state.stage_index, reason=reason)
    return _done_now(deps, token, current | {"skipped": reason})


def _replay_models(deps: Deps, state: RolloutState, config: ModelConfig) -> tuple[str, str] | str:
    """The SageMaker models the replay's jobs run: (candidate, champion), or why there are none.

    A transform job sends no TargetModel, so a multi-model endpoint's versions replay as single-model models made
    from their packages, named as batch runs name them (one per package version, re-used)."""
    champion = state.serving_champion()
    if config.endpoint.kind != "multi_model":
        return state.candidate.model_name, champion.model_name
    recorded = deps.store.champion(state.endpoint) or {}
    if not recorded.get("package"):
        return "the champion's package is not recorded: a multi-model champion replays from its package"
    return _package_model(deps, state, state.package_arn), _package_model(deps, state, recorded["package"])


def _package_model(deps: Deps, state: RolloutState, arn: str) -> str:
    group = arn.rsplit("/", 2)[-2]
    name = f"{group[:40]}-v{plan.version_of(arn)}-batch"
    deps.packages.create_model(
        {
            "ModelName": name,
            "PrimaryContainer": {"ModelPackageName": arn},
            "ExecutionRoleArn": deps.settings.sagemaker_role_arn,
            "EnableNetworkIsolation": True,
            "Tags": [{"Key": "shepherd:model", "Value": state.model}, {"Key": "shepherd:package", "Value": arn[:256]}],
        }
    )
    return name


def _proportional_count(state: RolloutState, live: dict[str, Any]) -> int | None:
    """The challenger's instance count for this stage and the next in proportion to its share of the traffic
    (plan.challenger_count), None for a serverless or shadow stage."""
    champion, candidate = state.serving_champion(), state.candidate
    if candidate.serverless or candidate.instance_count is None:
        return None
    champion_count = _live_variant(live, champion.variant).get("CurrentInstanceCount") or champion.instance_count or 0
    return plan.challenger_count(state.stages, state.stage_index, int(champion_count))


def _raised_count(state: RolloutState, live: dict[str, Any]) -> int | None:
    """The challenger's raised instance count when its weights move (_proportional_count), None when it has as
    many already: capacity is raised ahead of the traffic, never lowered during a rollout."""
    wanted = _proportional_count(state, live)
    if wanted is None or (_live_variant(live, state.candidate.variant).get("CurrentInstanceCount") or 0) >= wanted:
        return None
    return wanted


def finalize(deps: Deps, state: RolloutState, token: str) -> dict[str, Any]:
    """The challenger alone: done already when the post-promotion watch ran on that config."""
    final = plan.config_name(state.endpoint, "final", state.version, state.run)
    live = deps.endpoints.describe_endpoint(state.endpoint) or {}
    if live.get("EndpointConfigName") == final and live.get("EndpointStatus") == "InService":
        return _done_now(deps, token, {"config": final})
    name = _final_config(deps, state, token)
    _record(deps, state, "finalizing", config=name)
    return {"config": name}


def promoted(deps: Deps, state: RolloutState) -> dict[str, Any]:
    """Record the champion, retire old versions, free the lock. A retry after it finished (the lock freed,
    the promotion recorded) changes nothing and answers the same: the lock may already be another rollout's."""
    done = _ended(deps, state, "promoted")
    if done is not None:
        return _promotion(state, done["champion"], done)
    candidate = state.candidate
    live = deps.endpoints.describe_endpoint(state.endpoint) or {}
    _register_scaling(deps, state, candidate.variant)  # an upsert: registered already when the watch ran
    champion = {
        "package": state.package_arn,
        "model": candidate.model_name,
        "variant": candidate.variant,
        "config": live.get("EndpointConfigName", ""),
    }
    wanted = scaling(state.parsed_config())
    if wanted is not None:
        champion["scaling"] = json.dumps(wanted)
    deps.store.set_champion(state.endpoint, champion)
    metered = _cost(deps, state)
    _record(deps, state, "promoted", outcome="PROMOTED", champion=champion, **metered)
    _retire_old_versions(deps, state, keep={champion["config"], champion["model"], state.last_good or ""})
    deps.store.clear_flag(state.endpoint, ABORT)  # too late to abort: it is promoted
    deps.store.release(state.endpoint, state.run)
    return _promotion(state, champion, metered)


def _promotion(state: RolloutState, champion: dict[str, str], record: dict[str, Any]) -> dict[str, Any]:
    reason = f"Promoted {notifications.package_label(state.package_arn)} on {state.endpoint}: it serves all traffic"
    detail = f"Champion model {champion['model']} (variant {champion['variant']}) on config {champion['config']}."
    return {
        "outcome": "promoted",
        "endpoint": state.endpoint,
        "champion": champion,
        "reason": reason,
        "detail": _with_cost(detail, record),
    } | _metered(record)


def _metered(record: dict[str, Any]) -> dict[str, Any]:
    """The cost and live requests an ending record keeps, both always present (None for a record written before
    the cost meter): the state machine's ResultSelector fails on a JSONPath that does not exist."""
    return {key: record.get(key) for key in ("cost", "live_requests")}


def _with_cost(detail: str, record: dict[str, Any]) -> str:
    line = notifications.cost_line(record.get("cost"), record.get("live_requests"))
    return f"{detail}\n{line}" if line else detail


def _ended(deps: Deps, state: RolloutState, event: str) -> dict[str, Any] | None:
    """This run's ``event`` record when the run has ended with it (freeing the lock is its last act), else None."""
    lock = deps.store.lock_of(state.endpoint)
    if lock is not None and lock.get("owner") == state.run:
        return None  # still held: the step has not finished
    found = [r for r in deps.store.records(state.endpoint) if r.get("run") == state.run and r.get("event") == event]
    return found[-1] if found else None


def _holds(deps: Deps, state: RolloutState) -> None:
    """LockLost before any side effect: a rollback must not touch an endpoint it no longer holds."""
    deps.store.renew(state.endpoint, state.run, deps.now().timestamp())


def _retire_old_versions(deps: Deps, state: RolloutState, keep: set[str]) -> None:
    """Keep the last few versions' configs and models (rollback targets, `rollout start` to an earlier
    package); delete older ones, which SageMaker keeps forever otherwise. A failure never fails a promotion."""
    prefix = f"{state.endpoint}-"
    try:
        for name in plan.retired(deps.endpoints.endpoint_configs_named(prefix), prefix=prefix, keep=keep):
            deps.endpoints.delete_endpoint_config(name)
        for name in plan.retired(deps.endpoints.models_named(prefix), prefix=prefix, keep=keep):
            deps.endpoints.delete_model(name)
    except ShepherdError as exc:
        logger.warning("could not retire old versions: %s", exc)


# ---------------------------------------------------------------- rollback


def rollback_weights(deps: Deps, state: RolloutState, token: str) -> dict[str, Any]:
    """During A/B, weights move back first: seconds, no redeploy."""
    _holds(deps, state)
    champion, candidate = state.serving_champion(), state.candidate
    live = deps.endpoints.describe_endpoint(state.endpoint) or {}
    weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in live.get("ProductionVariants", [])}
    if (
        live.get("EndpointStatus") == "InService"
        and weights.get(candidate.variant, 0.0) > 0
        and champion.variant in weights
    ):
        _wait_for(deps, state, token, live["EndpointConfigName"])
        deps.endpoints.update_weights(state.endpoint, plan.weights(champion.variant, candidate.variant, 0))
        _record(deps, state, "rolling-back", step="weights")
        return {"moved": True}
    return _done_now(deps, token, {"moved": False})


def rollback_config(deps: Deps, state: RolloutState, token: str) -> dict[str, Any]:
    _holds(deps, state)
    last_good = state.last_good_config()
    live = deps.endpoints.describe_endpoint(state.endpoint) or {}
    if live.get("EndpointConfigName") == last_good and live.get("EndpointStatus") == "InService":
        return _done_now(deps, token, {"restored": False})
    # The challenger's variant goes: its scaling target first (registered when the watch began).
    deps.endpoints.deregister_scaling(state.endpoint, state.candidate.variant)
    _wait_for(deps, state, token, last_good)
    deps.endpoints.update_endpoint(state.endpoint, last_good, exclude_weights=True)
    _record(deps, state, "rolling-back", step="config", config=last_good)
    return {"restored": True}


def rollback_problems(live: dict[str, Any], last_good: str, champion: str) -> list[str]:
    """Why a DescribeEndpoint answer is not the last good config serving alone ([] when it is)."""
    variants = live.get("ProductionVariants") or []
    problems = []
    if live.get("EndpointStatus") != "InService":
        problems.append(f"status {live.get('EndpointStatus')}")
    if live.get("EndpointConfigName") != last_good:
        problems.append(f"config {live.get('EndpointConfigName')}, not {last_good}")
    if [v["VariantName"] for v in variants] != [champion]:
        problems.append(f"variants {[v['VariantName'] for v in variants]}, not [{champion}]")
    if live.get("ShadowProductionVariants"):
        problems.append("a shadow variant remains")
    if any(v.get("CurrentInstanceCount", 0) < 1 and not v.get("CurrentServerlessConfig") for v in variants):
        problems.append("no instances")  # (a serverless variant has none: its capacity is its config)
    return problems


def verify_rollback(deps: Deps, state: RolloutState) -> dict[str, Any]:
    """Report a rollback only once DescribeEndpoint shows the last good config serving, alone.

    An INCONCLUSIVE verdict restores the champion the same way but is its own outcome: the package stays
    Approved and the notification tells a person how to decide (docs/ROLLOUTS.md, "Outcomes")."""
    champion, last_good = state.serving_champion(), state.last_good_config()
    verdict = state.verdict or {}
    why = _why(verdict)
    label = notifications.package_label(state.package_arn)
    if verdict.get("verdict") == "INCONCLUSIVE":
        # Undecided is not bad: the champion keeps the traffic and a human decides about the package.
        reason, detail = _inconclusive(state, verdict, why)
        outcome = "inconclusive"
    else:
        reason = f"Rolled back {label} on {state.endpoint}: {why}"
        detail = (
            f"The champion serves all traffic on its last good config {last_good}; "
            f"package {state.package_arn} is Rejected."
        )
        outcome = "rolled-back"
    ended = _ended(deps, state, outcome)
    metered = _metered(ended or {})
    if ended is None:  # else a retry after it finished: verified, told nothing yet
        live = deps.endpoints.describe_endpoint(state.endpoint) or {}
        problems = rollback_problems(live, last_good, champion.variant)
        if problems:
            _record(deps, state, "rollback-failed", outcome="ROLLBACK_FAILED", problems=problems)
            raise RollbackFailed(f"endpoint {state.endpoint} is not restored: {'; '.join(problems)}")
        # The champion's scaling target: kept through shadow and A/B, deregistered when the watch began.
        _register_scaling(deps, state, champion.variant)
        metered = _cost(deps, state)
        if outcome == "inconclusive":
            _record(deps, state, "inconclusive", outcome="INCONCLUSIVE", reason=why, config=last_good, **metered)
        else:
            deps.packages.reject_package(state.package_arn, f"Rolled back by Shepherd: {why}"[:1024])
            _record(deps, state, "rolled-back", outcome="ROLLED_BACK", reason=why, config=last_good, **metered)
        deps.store.release(state.endpoint, state.run)
    return {
        "outcome": outcome,
        "endpoint": state.endpoint,
        "config": last_good,
        "reason": notifications.one_line(reason),
        "detail": _with_cost(detail, metered),
    } | metered


def reject(deps: Deps, state: RolloutState) -> dict[str, Any]:
    """Replay rejected the candidate: the package Rejected with the reasons, the lock freed, the endpoint untouched
    (the candidate never served). A retry after it finished records and rejects nothing twice."""
    why = _why(state.verdict or {})
    replay = replay_stage.Replay(deps.settings.bucket, plan.replay_prefix(state.endpoint, state.run))
    ended = _ended(deps, state, "rejected")
    metered = _metered(ended or {})
    if ended is None:
        _holds(deps, state)
        deps.packages.reject_package(state.package_arn, f"Rejected in replay by Shepherd: {why}"[:1024])
        metered = _cost(deps, state)
        _record(
            deps,
            state,
            "rejected",
            outcome="REJECTED",
            stage="replay",
            reason=why,
            result=replay.uri("result.json"),
            **metered,
        )
        deps.store.release(state.endpoint, state.run)
    try:
        result = replay_stage.read_result(deps.objects, replay) or {}
    except ShepherdError as exc:  # the notification goes out without its examples
        logger.warning("could not read the replay's result: %s", exc)
        result = {}
    reasons, examples = replay_stage.rejection(result)
    lines = [
        f"The endpoint is untouched: the candidate never served a live request; package {state.package_arn} is "
        "Rejected.",
        *(f"- {reason}" for reason in reasons),
    ]
    if result.get("candidate_failure"):
        lines.append(f"The candidate's transform job: {notifications.one_line(str(result['candidate_failure']))}")
    if examples:
        lines.append("Examples (request, the champion's answer, the candidate's):")
        lines.extend(f"- {json.dumps(example)[:400]}" for example in examples)
    lines.append(f"All examples: {replay.uri('examples.jsonl')}; the comparison: {replay.uri('result.json')}")
    label = notifications.package_label(state.package_arn)
    return {
        "outcome": "rejected",
        "endpoint": state.endpoint,
        "reason": notifications.one_line(f"Rejected {label} in replay on {state.endpoint}: {why}"),
        "detail": _with_cost("\n".join(lines), metered),
        "result": replay.uri("result.json"),
    } | metered


def _why(verdict: dict[str, Any]) -> str:
    """Why a rollout is rolling back, in one line: the judge's explanation, or the error a Catch recorded."""
    if verdict.get("explanation"):
        return notifications.one_line(str(verdict["explanation"]))
    return notifications.explain(verdict).reason


def _inconclusive(state: RolloutState, verdict: dict[str, Any], why: str) -> tuple[str, str]:
    """The reason and detail of an INCONCLUSIVE ending: a person must decide, and the two ways to."""
    arn, label = state.package_arn, notifications.package_label(state.package_arn)
    again = f"shepherd rollout start {arn}"
    longer = ""
    index = verdict.get("stage_index")
    ran_out = bool(verdict.get("statistics"))  # judged until its maximum; an abort (superseded) judged nothing
    if (
        ran_out
        and isinstance(index, int)
        and 0 <= index < len(state.stages)
        and state.stages[index].kind in STAGE_SECTIONS
    ):
        stage = state.stages[index]
        # The maximum it was judged with: derived from its traffic, or the configured one
        limits = [m["max_minutes"] for m in verdict["statistics"] if isinstance(m, dict) and "max_minutes" in m]
        limit = max(limits, default=stage.max_minutes)
        longer = f" --override rollout.{STAGE_SECTIONS[stage.kind]}.max_duration_minutes={2 * limit}"
    reject = (
        f"aws sagemaker update-model-package --model-package-arn {arn} --model-approval-status Rejected "
        '--approval-description "<why>"'
    )
    reason = (
        f"A person must decide: the rollout of {label} on {state.endpoint} was inconclusive ({why.rstrip('.')}). "
        f"Roll it out again (`{again}`) or reject it."
    )
    detail = "\n".join(
        [
            f"The champion serves all traffic again on its last good config {state.last_good}; "
            f"package {arn} stays Approved and will not roll out by itself.",
            f"To try again{', with a longer stage' if longer else ''}: {again}{longer}",
            f"To reject it: {reject}",
        ]
    )
    return reason, detail


# ---------------------------------------------------------------- executions and the lock


def hand_over(deps: Deps, state: RolloutState, execution: str) -> dict[str, Any]:
    """A long stage outgrows one execution's history (25,000 events): the rollout continues in a fresh
    execution, named here. The lock names it first, so the reconciler sees the rollout alive meanwhile."""
    continuation = state.continuation + 1
    successor = plan.continuation_name(state.run, continuation)
    deps.store.hand_over(state.endpoint, state.run, successor, deps.now().timestamp())
    _record(deps, state, "continued", execution=execution, successor=successor, continuation=continuation)
    return {"name": successor, "continuation": continuation}


def resume(deps: Deps, state: RolloutState, execution: str) -> dict[str, Any]:
    """The fresh execution takes over the lock and carries on where its predecessor stopped judging."""
    deps.store.take_over(state.endpoint, state.run, execution, deps.now().timestamp())
    _record(deps, state, "resumed", execution=execution, continuation=state.continuation)
    return {"execution": execution}


def release(deps: Deps, state: RolloutState) -> dict[str, Any]:
    """Free the lock; after a failed first deployment, first delete the endpoint it left Failed (it never
    served). A deletion that fails leaves it to the next rollout's Prepare, which deletes it the same way."""
    deleted = False
    lock = deps.store.lock_of(state.endpoint)
    if state.first and lock is not None and lock.get("owner") == state.run:
        live = deps.endpoints.describe_endpoint(state.endpoint)
        if live is not None and live["EndpointStatus"] == "Failed" and _never_served(deps, state.endpoint):
            try:
                _delete_failed_first(deps, state.endpoint, state.run, state.package_arn, live)
                deleted = True
            except ShepherdError as exc:
                logger.warning("could not delete the Failed endpoint %s: %s", state.endpoint, exc)
    released = deps.store.release(state.endpoint, state.run)
    _record(deps, state, "ended", error=state.error)
    return {"released": released, "deleted": deleted} if state.first else {"released": released}


# ---------------------------------------------------------------- notifications


def describe_failure(
    event: str, error: dict[str, Any] | None, facts: dict[str, Any], verdict: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The notification of a rollout that failed: the error a Catch recorded told in one line, then what
    it means for the endpoint and the package. Never raises: it is the message of a failure."""
    endpoint, package = facts.get("endpoint") or "", str(facts.get("package") or "")
    label = notifications.package_label(package) if package else "a package"
    explained = notifications.explain(error if isinstance(error, dict) else None)
    again = f"The package stays Approved: fix the cause, then `shepherd rollout start {package}`."
    if event == notifications.ROLLBACK_FAILED:
        reason = f"ROLLBACK FAILED on {endpoint or 'the endpoint'}: {explained.reason}"
        lines = [
            explained.detail,
            f"ReconcileRollouts restores the champion's recorded config on its schedule and notifies "
            f"(RolloutReconciled); `shepherd status {endpoint}` shows the endpoint.",
        ]
        if verdict:
            lines.append(f"It was rolling back because: {_why(verdict)}")
    elif event == notifications.LOCK_LOST:
        reason = (
            f"The rollout of {label} on {endpoint} stopped and left the endpoint alone: it no longer holds the "
            f"endpoint's lock ({explained.reason})"
        )
        lines = [explained.detail, "Another rollout has the endpoint, or ReconcileRollouts cleaned up after this one."]
    elif endpoint:
        reason = f"Deploying {label} to the new endpoint {endpoint} failed: {explained.reason}"
        lines = [
            explained.detail,
            f"An endpoint {endpoint} that SageMaker left Failed never served: Shepherd deletes it (SageMaker allows "
            "nothing else on a Failed endpoint), now or at the next rollout's start.",
            again,
        ]
    else:
        reason = f"The rollout of {label} did not start: {explained.reason}"
        lines = [explained.detail, again]
    facts = {k: facts.get(k) for k in ("execution", "model", "endpoint", "package")}
    return notifications.document(
        event, reason, "\n".join(line for line in lines if line), **facts, error=explained.error
    )
