"""The Rollout state machine's steps: prepare, deploy, enter a stage, promote, roll back and verify.

One function, one `action` per step, so the endpoint logic lives in one place; each action is
idempotent under retries (configs are named per run and stage, a waiter is stored before the
endpoint change it waits for, the lock is re-entrant for its owner).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from shepherd import clock
from shepherd.aws import endpoints, rollouts, s3
from shepherd.aws.powertools import powertools
from shepherd.aws.sagemaker import create_model, describe_endpoint, describe_model, is_multi_model
from shepherd.aws.stepfunctions import StepFunctionsResumer
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import Waiter, waiter_key
from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.config.models import FIRST_EXECUTION_JUDGE_CALLS
from shepherd.errors import InvalidInput, NotFound, ShepherdError
from shepherd.rollout import plan
from shepherd.rollout.plan import Stage, VariantSpec

logger, tracer, metrics = powertools()
WAIT_SECONDS = 3600


class RollbackFailed(ShepherdError):
    """The endpoint is not back on its last good config: reported as a failed rollout; ReconcileRollouts retries."""


def _config(state: dict[str, Any]) -> ModelConfig:
    return ModelConfig.model_validate(state["config"], context={"model": state["model"]})


def _now_iso() -> str:
    return clock.now().isoformat()


def _record(state: dict[str, Any], event: str, **fields: Any) -> None:
    entry = {"run": state["run"], "package": state["package_arn"], "event": event} | fields
    rollouts.record(state["endpoint"], entry, _now_iso())


def _wait_for(state: dict[str, Any], token: str, expect: str) -> None:
    """Store the waiter before the endpoint change: its InService event may come before this function returns.

    Every endpoint change waits for something, so this is also where a rollout checks that it still holds the
    endpoint's lock (and renews its lease): LockLost, and it changes nothing."""
    rollouts.renew(state["endpoint"], state["run"], clock.now().timestamp())
    waiter = Waiter(
        waiter_key("endpoint", state["endpoint"]), "endpoint", token, state["run"], datetime.now(UTC), expect
    )
    DynamoTokenStore().put(waiter, expires_after_seconds=WAIT_SECONDS + 86400)


def _done_now(token: str, output: dict[str, Any]) -> None:
    """Nothing to wait for: resume the waiting state at once."""
    StepFunctionsResumer().succeed(token, output | {"at": clock.now().timestamp()})


def _tags(state: dict[str, Any]) -> dict[str, str]:
    return {"shepherd:model": state["model"], "shepherd:rollout": state["run"][:256]}


def _endpoint_config(
    state: dict[str, Any],
    stage: str,
    production: list[tuple[VariantSpec, float]],
    shadow: VariantSpec | None = None,
    shadow_weight: float = 1.0,
) -> str:
    name = plan.config_name(state["endpoint"], stage, state["version"], state["run"])
    request = plan.endpoint_config(
        _config(state),
        name=name,
        production=production,
        shadow=shadow,
        shadow_weight=shadow_weight,
        bucket=os.environ["DATA_BUCKET"],
        endpoint=state["endpoint"],
        kms_key_arn=os.environ.get("DATA_KEY_ARN") or None,
        tags=_tags(state),
    )
    endpoints.create_endpoint_config(request)
    return name


def _judge_settings(config: ModelConfig, *, bucket: str, model: str, endpoint: str) -> dict[str, Any]:
    """rollout.judge, plus where quality judging finds captured predictions and ground truth."""
    judge = config.rollout.judge.model_dump(mode="json", exclude_none=True)
    if "quality" in judge:
        judge["quality"]["sources"] = {
            "bucket": bucket,
            "capture": plan.capture_prefix(endpoint),  # + <variant>/yyyy/mm/dd/hh/
            "feedback": f"feedback/{model}/",
        }
    return judge


def _create_model(config: ModelConfig, package: dict[str, Any], candidate: VariantSpec, model: str) -> str | None:
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
    create_model(
        {
            "ModelName": candidate.model_name,
            "PrimaryContainer": container,
            "ExecutionRoleArn": os.environ["SAGEMAKER_ROLE_ARN"],
            "EnableNetworkIsolation": config.endpoint.kind != "serverless",
            "Tags": [{"Key": "shepherd:model", "Value": model}, {"Key": "shepherd:package", "Value": arn}],
        }
    )
    return target_model


def prepare(event: dict[str, Any]) -> dict[str, Any]:
    arn, run = event["ModelPackageArn"], event["run"]
    package = endpoints.describe_package(arn)
    if package.get("ModelApprovalStatus") != "Approved":
        raise InvalidInput(f"{arn} is {package.get('ModelApprovalStatus')}, not Approved: nothing to roll out")
    metadata = package.get("CustomerMetadataProperties") or {}
    model = metadata.get("shepherd:model") or package["ModelPackageGroupName"]
    bucket = os.environ["DATA_BUCKET"]
    key = f"models/{model}/shepherd.yaml"
    try:
        text = s3.read_bytes(bucket, key).decode("utf-8", errors="replace")
        config = load_config(text, f"s3://{bucket}/{key}", model=model, overrides=event.get("Overrides") or None)
    except NotFound:
        raise InvalidInput(f"s3://{bucket}/{key} does not exist: no config for {model}") from None
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    endpoint = config.endpoint.name or model
    paused = rollouts.flag(endpoint, rollouts.PAUSED)
    if paused is not None and not event.get("Manual"):
        raise InvalidInput(
            f"rollouts to {endpoint} are paused by {paused['by']} ({paused['reason']}): the champion stays; "
            f"`shepherd rollout resume {endpoint}` lifts it, `shepherd rollout start {arn}` rolls out by hand"
        )
    try:
        rollouts.acquire(endpoint, run, arn, clock.now().timestamp())
    except rollouts.LockHeld:
        if config.rollout.on_new_approval == "supersede":
            _supersede(endpoint, arn)
        raise  # the state machine retries: this rollout starts once the running one has ended
    try:
        return _planned(package, config, run=run, model=model, endpoint=endpoint)
    except Exception:
        # Nothing has touched the endpoint yet: free it for the next approval rather than leave the lock
        # to the reconciler or its lease (the state machine's failure path has no state to release it with).
        rollouts.release(endpoint, run)
        raise


def _supersede(endpoint: str, arn: str) -> None:
    """Ask the rollout holding the endpoint to end at its next judge call (rollout.on_new_approval: supersede).

    It ends INCONCLUSIVE: the champion gets all traffic back and the superseded package stays Approved (it
    was replaced, not found bad). A duplicate of the running package's own approval supersedes nothing."""
    holder = rollouts.lock_of(endpoint)
    if holder is None or holder.get("package") == arn:
        return
    rollouts.set_flag(
        endpoint,
        rollouts.ABORT,
        by=f"superseded by {arn}",
        reason=f"package {arn} was approved while {holder.get('package')} was rolling out",
        verdict="INCONCLUSIVE",
    )


def _planned(package: dict[str, Any], config: ModelConfig, *, run: str, model: str, endpoint: str) -> dict[str, Any]:
    """The rollout's state and plan, for a rollout that holds the endpoint's lock."""
    arn = package["ModelPackageArn"]
    version = plan.version_of(arn)
    bucket = os.environ["DATA_BUCKET"]
    rollouts.clear_flag(endpoint, rollouts.ABORT)  # an abort meant for an earlier rollout must not end this one
    candidate = plan.candidate_spec(config, endpoint=endpoint, version=version)
    target_model = _create_model(config, package, candidate, model)
    state: dict[str, Any] = {
        "run": run,
        "model": model,
        "endpoint": endpoint,
        "package_arn": arn,
        "version": version,
        "config": config.model_dump(mode="json"),
        "candidate": candidate.model_dump(),
        "judge": _judge_settings(config, bucket=bucket, model=model, endpoint=endpoint),
        "interval_seconds": config.rollout.judge_interval_minutes * 60,
        # Continuations inherit it: a few more executions, never a history past its cap.
        "judge_calls_per_execution": min(config.rollout.judge_calls_per_execution, FIRST_EXECUTION_JUDGE_CALLS),
        "stage_index": 0,
        # full and the watch judge the candidate against the champion's counts since this moment
        "started_at": clock.now().timestamp(),
    }
    if target_model is not None:
        state["target_model"] = target_model  # what clients name in InvokeEndpoint's TargetModel
    live = describe_endpoint(endpoint)
    if live is None:
        state |= {"first": True, "noop": False, "champion": None, "last_good": None, "stages": [], "stage_count": 0}
        _record(state, "started", strategy=f"first-deployment ({config.endpoint.kind})", **_target(state))
        return state
    if live["EndpointStatus"] not in ("InService",):
        raise InvalidInput(f"endpoint {endpoint} is {live['EndpointStatus']}: a rollout starts only from InService")
    current = endpoints.describe_config(live["EndpointConfigName"])
    weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in live.get("ProductionVariants", [])}
    counts = {v["VariantName"]: v.get("CurrentInstanceCount") for v in live.get("ProductionVariants", [])}
    serving = max(current["ProductionVariants"], key=lambda v: weights.get(v["VariantName"], 0.0))
    champion = VariantSpec(
        variant=serving["VariantName"],
        model_name=serving["ModelName"],
        instance_type=serving.get("InstanceType"),
        instance_count=counts.get(serving["VariantName"]) or serving.get("InitialInstanceCount"),
        serverless=serving.get("ServerlessConfig"),
    )
    kind = config.endpoint.kind
    _same_kind(endpoint, kind, champion)
    recorded = rollouts.champion(endpoint)
    last_good = recorded["config"] if recorded else live["EndpointConfigName"]
    stages = [s.model_dump() for s in plan.stages(config, kind)]
    state |= {
        "first": False,
        "noop": champion.model_name == candidate.model_name,
        "champion": champion.model_dump(),
        "last_good": last_good,
        "stages": stages,
        "stage_count": len(stages),
    }
    strategy = " -> ".join(f"{s['kind']} {s['weight']:g}%" if s["kind"] == "ab" else s["kind"] for s in stages)
    if kind == "serverless":
        # One production variant, no data capture: no shadow, A/B or full. The closest safe strategy.
        strategy = (
            "serverless: switch, then a post-promotion watch against the champion's counts before it "
            "(serverless endpoints allow one production variant and no data capture)"
            if stages
            else "serverless: direct switch (post_promotion_watch disabled)"
        )
    elif not stages:
        strategy = "direct switch (shadow and A/B disabled)"
    elif kind == "multi_model" and config.rollout.shadow.enabled:
        strategy = f"multi-model: {strategy} (no shadow: SageMaker allows no shadow variant on a multi-model endpoint)"
    _record(state, "started", strategy=strategy, champion=champion.model_name, last_good=last_good, **_target(state))
    return state


def _target(state: dict[str, Any]) -> dict[str, Any]:
    return {"target_model": state["target_model"]} if state.get("target_model") else {}


def _same_kind(endpoint: str, kind: str, champion: VariantSpec) -> None:
    """A rollout keeps an endpoint's kind: a variant of another kind beside the champion would fail the
    clients (a multi-model endpoint needs TargetModel, a single-model one refuses it). Changing between
    multi-model and single-model is a new endpoint: a new endpoint.name, or `shepherd teardown` first."""
    multi = is_multi_model(describe_model(champion.model_name))
    if multi != (kind == "multi_model"):
        serving = "multi-model" if multi else "single-model"
        raise InvalidInput(
            f"endpoint {endpoint} is a {serving} endpoint but the config asks for endpoint.kind {kind}: a rollout "
            "does not change an endpoint's kind. Give the model a new endpoint.name, or remove this one with "
            "`shepherd teardown` first"
        )


def deploy_first(state: dict[str, Any], token: str) -> dict[str, Any]:
    candidate = VariantSpec.model_validate(state["candidate"])
    name = _endpoint_config(state, "first", [(candidate, 1.0)])
    _wait_for(state, token, name)
    if describe_endpoint(state["endpoint"]) is None:
        endpoints.create_endpoint(state["endpoint"], name, _tags(state))
    _record(state, "deploying", stage="first", config=name)
    return {"config": name}


def _scaling(state: dict[str, Any]) -> dict[str, Any] | None:
    """endpoint.autoscaling as endpoints.register_scaling takes it (also kept on the champion record, so
    that ReconcileRollouts can give a restored champion its scaling target back)."""
    scaling = _config(state).endpoint.autoscaling
    if scaling is None:
        return None
    return {
        "minimum": scaling.min_capacity,
        "maximum": scaling.max_capacity,
        "target": scaling.target_invocations_per_instance,
        "scale_in": scaling.scale_in_cooldown_seconds,
        "scale_out": scaling.scale_out_cooldown_seconds,
    }


def _register_scaling(state: dict[str, Any], variant: str) -> None:
    scaling = _scaling(state)
    if scaling is not None:
        endpoints.register_scaling(state["endpoint"], variant, **scaling)


def _final_config(state: dict[str, Any], token: str, champion: VariantSpec, candidate: VariantSpec) -> str:
    """Switch to the challenger alone. SageMaker refuses to remove a variant that still has a scaling
    target: the champion's goes first; the challenger's is registered before the switch, while the
    endpoint is InService, so it is never left without one."""
    endpoints.deregister_scaling(state["endpoint"], champion.variant)
    _register_scaling(state, candidate.variant)
    name = _endpoint_config(state, "final", [(candidate, 1.0)])
    _wait_for(state, token, name)
    endpoints.update_endpoint(state["endpoint"], name, exclude_weights=True)
    return name


def enter_stage(state: dict[str, Any], token: str) -> dict[str, Any]:
    index = state["stage_index"]
    stage = Stage.model_validate(state["stages"][index])
    previous = Stage.model_validate(state["stages"][index - 1]) if index else None
    champion = VariantSpec.model_validate(state["champion"])
    candidate = VariantSpec.model_validate(state["candidate"])
    live = describe_endpoint(state["endpoint"]) or {}
    both_serving = previous is not None and previous.kind in ("ab", "full")
    if stage.kind == "watch":
        name = _final_config(state, token, champion, candidate)
    elif stage.kind == "shadow":
        # RetainAllVariantProperties keeps the champion's current weight (and capacity): a shadow of the same
        # weight receives a copy of every request, so it gets as many instances as the champion serves them
        # with (kept by name when it becomes the A/B challenger).
        serving = _live_variant(live, champion.variant)
        weight = serving.get("CurrentWeight") or 1.0
        if candidate.instance_count is not None and serving.get("CurrentInstanceCount"):
            raised = max(candidate.instance_count, int(serving["CurrentInstanceCount"]))
            candidate = candidate.model_copy(update={"instance_count": raised})
        name = _endpoint_config(state, "shadow", [(champion, 1.0)], shadow=candidate, shadow_weight=float(weight))
        _wait_for(state, token, name)
        endpoints.update_endpoint(state["endpoint"], name, exclude_weights=False)
    elif both_serving:
        name = live["EndpointConfigName"]
        count = _raised_count(state, live, index, champion, candidate)
        _wait_for(state, token, name)
        endpoints.update_weights(
            state["endpoint"], plan.weights(champion.variant, candidate.variant, stage.weight, count)
        )
    else:
        count = _raised_count(state, live, index, champion, candidate)
        if count is not None:
            candidate = candidate.model_copy(update={"instance_count": count})
        name = _endpoint_config(
            state, f"{stage.kind}{stage.weight:g}", [(champion, 100 - stage.weight), (candidate, stage.weight)]
        )
        _wait_for(state, token, name)
        endpoints.update_endpoint(state["endpoint"], name, exclude_weights=True)
    _record(state, "stage-entered", stage=stage.kind, stage_index=index, weight=stage.weight, config=name)
    return {"config": name}


def _raised_count(
    state: dict[str, Any], live: dict[str, Any], index: int, champion: VariantSpec, candidate: VariantSpec
) -> int | None:
    """The challenger's raised instance count for this stage, None when it keeps its own (see
    plan.challenger_count); instance-based variants only."""
    if candidate.serverless or candidate.instance_count is None:
        return None
    wanted = plan.challenger_count(
        [Stage.model_validate(s) for s in state["stages"]],
        index,
        candidate.instance_count,
        _live_variant(live, champion.variant).get("CurrentInstanceCount") or champion.instance_count or 0,
    )
    if wanted is None or (_live_variant(live, candidate.variant).get("CurrentInstanceCount") or 0) >= wanted:
        return None
    return wanted


def _live_variant(live: dict[str, Any], variant: str) -> dict[str, Any]:
    """A production variant of a DescribeEndpoint answer, {} when it has none of that name."""
    return next((v for v in live.get("ProductionVariants", []) if v["VariantName"] == variant), {})


def finalize(state: dict[str, Any], token: str) -> dict[str, Any]:
    """The challenger alone: done already when the post-promotion watch ran on that config."""
    champion = VariantSpec.model_validate(state["champion"])
    candidate = VariantSpec.model_validate(state["candidate"])
    final = plan.config_name(state["endpoint"], "final", state["version"], state["run"])
    live = describe_endpoint(state["endpoint"]) or {}
    if live.get("EndpointConfigName") == final and live.get("EndpointStatus") == "InService":
        _done_now(token, {"config": final})
        return {"config": final}
    name = _final_config(state, token, champion, candidate)
    _record(state, "finalizing", config=name)
    return {"config": name}


def promoted(state: dict[str, Any]) -> dict[str, Any]:
    candidate = VariantSpec.model_validate(state["candidate"])
    live = describe_endpoint(state["endpoint"]) or {}
    _register_scaling(state, candidate.variant)  # an upsert: registered already when the watch ran
    champion = {
        "package": state["package_arn"],
        "model": candidate.model_name,
        "variant": candidate.variant,
        "config": live.get("EndpointConfigName", ""),
    }
    scaling = _scaling(state)
    if scaling is not None:
        champion["scaling"] = json.dumps(scaling)
    rollouts.set_champion(state["endpoint"], champion)
    _record(state, "promoted", champion=champion)
    _retire_old_versions(state, keep={champion["config"], champion["model"], state["last_good"] or ""})
    rollouts.clear_flag(state["endpoint"], rollouts.ABORT)  # too late to abort: it is promoted
    rollouts.release(state["endpoint"], state["run"])
    return {"outcome": "promoted", "endpoint": state["endpoint"], "champion": champion}


def _retire_old_versions(state: dict[str, Any], keep: set[str]) -> None:
    """Keep the last few versions' configs and models (a rollback target, `rollout start` to an earlier
    package); delete older ones, which SageMaker keeps forever otherwise. A failure here never fails a promotion."""
    prefix = f"{state['endpoint']}-"
    try:
        for name in plan.retired(endpoints.endpoint_configs_named(prefix), prefix=prefix, keep=keep):
            endpoints.delete_endpoint_config(name)
        for name in plan.retired(endpoints.models_named(prefix), prefix=prefix, keep=keep):
            endpoints.delete_model(name)
    except ShepherdError as exc:
        logger.warning("could not retire old versions", extra={"error": str(exc)})


def rollback_weights(state: dict[str, Any], token: str) -> dict[str, Any]:
    """During A/B, weights move back first: seconds, no redeploy."""
    champion = VariantSpec.model_validate(state["champion"])
    candidate = VariantSpec.model_validate(state["candidate"])
    live = describe_endpoint(state["endpoint"]) or {}
    weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in live.get("ProductionVariants", [])}
    if (
        live.get("EndpointStatus") == "InService"
        and weights.get(candidate.variant, 0.0) > 0
        and champion.variant in weights
    ):
        _wait_for(state, token, live["EndpointConfigName"])
        endpoints.update_weights(state["endpoint"], plan.weights(champion.variant, candidate.variant, 0))
        _record(state, "rolling-back", step="weights")
        return {"moved": True}
    _done_now(token, {"moved": False})
    return {"moved": False}


def rollback_config(state: dict[str, Any], token: str) -> dict[str, Any]:
    live = describe_endpoint(state["endpoint"]) or {}
    if live.get("EndpointConfigName") == state["last_good"] and live.get("EndpointStatus") == "InService":
        _done_now(token, {"restored": False})
        return {"restored": False}
    # The challenger's variant goes: its scaling target first (registered when the watch began).
    endpoints.deregister_scaling(state["endpoint"], VariantSpec.model_validate(state["candidate"]).variant)
    _wait_for(state, token, state["last_good"])
    endpoints.update_endpoint(state["endpoint"], state["last_good"], exclude_weights=True)
    _record(state, "rolling-back", step="config", config=state["last_good"])
    return {"restored": True}


def verify_rollback(state: dict[str, Any]) -> dict[str, Any]:
    """Report a rollback only once DescribeEndpoint shows the last good config serving, alone."""
    champion = VariantSpec.model_validate(state["champion"])
    live = describe_endpoint(state["endpoint"]) or {}
    variants = live.get("ProductionVariants") or []
    problems = []
    if live.get("EndpointStatus") != "InService":
        problems.append(f"status {live.get('EndpointStatus')}")
    if live.get("EndpointConfigName") != state["last_good"]:
        problems.append(f"config {live.get('EndpointConfigName')}, not {state['last_good']}")
    if [v["VariantName"] for v in variants] != [champion.variant]:
        problems.append(f"variants {[v['VariantName'] for v in variants]}, not [{champion.variant}]")
    if live.get("ShadowProductionVariants"):
        problems.append("a shadow variant remains")
    if any(v.get("CurrentInstanceCount", 0) < 1 and not v.get("CurrentServerlessConfig") for v in variants):
        problems.append("no instances")  # (a serverless variant has none: its capacity is its config)
    if problems:
        _record(state, "rollback-failed", problems=problems)
        raise RollbackFailed(f"endpoint {state['endpoint']} is not restored: {'; '.join(problems)}")
    # The champion's scaling target: kept through shadow and A/B, deregistered when the watch began.
    _register_scaling(state, champion.variant)
    verdict = state.get("verdict") or {}  # the judge's verdict, or the error a Catch recorded
    reason = verdict.get("explanation") or f"{verdict.get('Error', 'error')}: {verdict.get('Cause', '')}"
    if verdict.get("verdict") == "INCONCLUSIVE":
        # Undecided is not bad: the champion keeps the traffic and a human decides about the package.
        _record(state, "inconclusive", reason=reason, config=state["last_good"])
    else:
        endpoints.reject_package(state["package_arn"], f"Rolled back by Shepherd: {reason}")
        _record(state, "rolled-back", reason=reason, config=state["last_good"])
    rollouts.release(state["endpoint"], state["run"])
    return {"outcome": "rolled-back", "endpoint": state["endpoint"], "config": state["last_good"], "reason": reason}


def hand_over(state: dict[str, Any], execution: str) -> dict[str, Any]:
    """A long stage outgrows one execution's history (25,000 events): the rollout continues in a fresh
    execution of the same state machine, named here. The lock names it first, so the reconciler sees the
    rollout alive while either execution runs."""
    continuation = int(state.get("continuation", 0)) + 1
    successor = plan.continuation_name(state["run"], continuation)
    rollouts.hand_over(state["endpoint"], state["run"], successor, clock.now().timestamp())
    _record(state, "continued", execution=execution, successor=successor, continuation=continuation)
    return {"name": successor, "continuation": continuation}


def resume(state: dict[str, Any], execution: str) -> dict[str, Any]:
    """The fresh execution takes over the lock and carries on where its predecessor stopped judging."""
    rollouts.take_over(state["endpoint"], state["run"], execution, clock.now().timestamp())
    _record(state, "resumed", execution=execution, continuation=state.get("continuation", 0))
    return {"execution": execution}


def release(state: dict[str, Any]) -> dict[str, Any]:
    endpoint = state.get("endpoint")
    released = rollouts.release(endpoint, state["run"]) if endpoint else False
    if endpoint:
        _record(state | {"package_arn": state.get("package_arn", "")}, "ended", error=state.get("error"))
    return {"released": released}


WITH_TOKEN = {
    "deploy_first": deploy_first,
    "enter_stage": enter_stage,
    "finalize": finalize,
    "rollback_weights": rollback_weights,
    "rollback_config": rollback_config,
}
PLAIN = {"promoted": promoted, "verify_rollback": verify_rollback, "release": release}
WITH_EXECUTION = {"hand_over": hand_over, "resume": resume}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    logger.append_keys(action=action, run=(event.get("state") or event).get("run"))
    if action == "prepare":
        return prepare(event)
    state = dict(event.get("state") or {})
    for key in ("stage_index", "verdict", "continuation"):  # the state machine keeps these beside the state
        if key in event:
            state[key] = event[key]
    if action in WITH_TOKEN:
        return WITH_TOKEN[action](state, event["token"])
    if action in PLAIN:
        return PLAIN[action](state)
    if action in WITH_EXECUTION:
        return WITH_EXECUTION[action](state, event["execution"])
    raise InvalidInput(f"unknown rollout action {action!r}")
