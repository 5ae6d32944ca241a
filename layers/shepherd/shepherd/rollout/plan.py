"""What a rollout does to an endpoint, stage by stage, as SageMaker requests (pure functions).

The requests follow SageMaker's mechanics: one production variant beside a shadow, capacity retained,
weights moved in place, a variant's scaling target deregistered before the variant is removed.
docs/ROLLOUTS.md, "Stages on SageMaker".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from shepherd.instances import has_instance_storage
from shepherd.names import SAGEMAKER_UNSAFE, bounded, digest
from shepherd.rollout import MULTI_MODEL_PACKAGE, budget

if TYPE_CHECKING:  # the judge imports Stage; it must not pay for the config schema's import
    from shepherd.config import ModelConfig

StageKind = Literal["replay", "shadow", "ab", "full", "watch"]
NAME_MAX = 63
EXECUTION_NAME_MAX = 80  # Step Functions execution names


class Stage(BaseModel):
    kind: StageKind
    weight: float = Field(ge=0, le=100, description="The challenger's traffic percentage (shadow: mirrored).")
    max_minutes: int
    at_max: Literal["INCONCLUSIVE", "ROLLBACK"] = "INCONCLUSIVE"
    # True: max_minutes is a cap, and the judge ends the stage once its traffic says a good candidate should have been
    # decided (shepherd.judge.duration); False: max_minutes is the user's.
    max_from_traffic: bool = False
    # The stage's part of the rollout's error budget (shepherd.rollout.budget): its alpha is the config's alpha x
    # alpha_share, its beta the config's beta ** beta_power (0: after the decision to promote to full). None: a
    # stage planned before budgets, judged with the config's alpha and beta whole.
    alpha_share: float | None = Field(default=None, gt=0, le=1)
    beta_power: float | None = Field(default=None, ge=0, le=1)


class VariantSpec(BaseModel):
    """A production variant as an endpoint config names it."""

    variant: str
    model_name: str
    instance_type: str | None = None
    instance_count: int | None = None
    serverless: dict[str, int] | None = None


def _name(*parts: str, unique: str = "") -> str:
    readable = "-".join(p for p in parts if p)
    if not unique:
        return SAGEMAKER_UNSAFE.sub("-", readable).strip("-")[:NAME_MAX].rstrip("-")
    return bounded(readable, digest(unique, length=8), limit=NAME_MAX, unsafe=SAGEMAKER_UNSAFE)


def serving_variant(live: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The endpoint config's production variant that carries most of the live endpoint's traffic."""
    weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in live.get("ProductionVariants", [])}
    return max(config["ProductionVariants"], key=lambda v: weights.get(v["VariantName"], 0.0))


def version_of(package_arn: str) -> int:
    return int(package_arn.rsplit("/", 1)[-1])


def variant_name(version: int) -> str:
    return f"v{version}"


def model_name(endpoint: str, version: int) -> str:
    return _name(endpoint, f"v{version}")


def continuation_name(run: str, continuation: int) -> str:
    """The execution a rollout continues in: readable, at most 80 characters, the same on every retry."""
    suffix = f"-c{continuation}"
    if len(run) + len(suffix) <= EXECUTION_NAME_MAX:
        return run + suffix
    tag = digest(run, length=8)
    return f"{run[: EXECUTION_NAME_MAX - len(suffix) - len(tag) - 1]}-{tag}{suffix}"


def replay_job_name(endpoint: str, version: int, run: str, role: str) -> str:
    """A replay transform job's name (63 characters at most), unique per rollout run and role (candidate or
    champion), the same on every retry."""
    return _name(endpoint, f"v{version}", "replay", role, unique=f"{run}/replay/{role}")


def replay_prefix(endpoint: str, run: str) -> str:
    """Where a run's replay reads and writes, under the endpoint's capture: the bucket's ExpireCapturedData rule
    (capture/) expires it with the requests it was made from."""
    return f"{capture_prefix(endpoint)}replay/{SAGEMAKER_UNSAFE.sub('-', run)[:200]}/"


def config_name(endpoint: str, stage: str, version: int, run: str) -> str:
    """Unique per rollout run and stage, so a retried step re-uses its own config and never another's."""
    return _name(endpoint, stage, f"v{version}", unique=f"{run}/{stage}")


def stages(config: ModelConfig, kind: str = "realtime") -> list[Stage]:
    """The judged stages a model's config asks for: replay, shadow, each A/B step, full, the post-promotion watch.

    Where the endpoint kind forbids a stage (serverless: one variant, no capture; multi-model: no shadow) the
    path is the closest safe one. docs/ROLLOUTS.md, "Stages on SageMaker" and "Endpoint kinds".
    """
    rollout = config.rollout
    path: list[Stage] = []
    if kind == "serverless":
        if rollout.post_promotion_watch.enabled:
            path.append(_watch(config))
        return with_budget(path)
    if rollout.shadow.enabled and kind != "multi_model":  # SageMaker allows no shadow on a multi-model endpoint
        path.append(
            Stage(
                kind="shadow",
                weight=100,
                **_limit(rollout.shadow.max_duration_minutes),
                at_max=rollout.shadow.at_max_duration.upper(),  # type: ignore[arg-type]
            )
        )
    if rollout.ab.enabled:
        path.extend(
            Stage(
                kind="ab",
                weight=step,
                **_limit(rollout.ab.max_duration_minutes),
                at_max=rollout.ab.at_max_duration.upper(),  # type: ignore[arg-type]
            )
            for step in rollout.ab.steps
        )
    if path:
        path.append(
            Stage(
                kind="full",
                weight=100,
                **_limit(rollout.full.max_duration_minutes),
                at_max=rollout.full.at_max_duration.upper(),  # type: ignore[arg-type]
            )
        )
        if rollout.post_promotion_watch.enabled:
            path.append(_watch(config))
        if replays(config, kind):  # before the first live stage; a direct switch stays one
            path.insert(0, Stage(kind="replay", weight=0, max_minutes=rollout.replay.max_duration_minutes))
    return with_budget(path)


def replays(config: ModelConfig, kind: str) -> bool:
    """Whether the rollout replays captured requests first: asked for, and the endpoint captures them (a serverless
    endpoint captures nothing; docs/ROLLOUTS.md, "Replay"). A champion without capture yet is skipped when entered."""
    return (
        config.rollout.replay.enabled
        and kind in ("realtime", "multi_model")
        and bool(config.endpoint.data_capture.enabled)
    )


def _limit(configured: int | None) -> dict[str, Any]:
    """A stage's max_minutes: the user's, or the cap of one derived from its traffic."""
    from shepherd.config.models import DERIVED_CAP_MINUTES

    if configured is None:
        return {"max_minutes": DERIVED_CAP_MINUTES, "max_from_traffic": True}
    return {"max_minutes": configured}


def with_budget(path: list[Stage]) -> list[Stage]:
    """The stages with their parts of the rollout's one error budget (shepherd.rollout.budget.split): the config's
    alpha and beta hold for the whole rollout, not for each stage."""
    shares = budget.split([stage.kind for stage in path])
    return [
        stage.model_copy(update={"alpha_share": share.alpha_share, "beta_power": share.beta_power})
        for stage, share in zip(path, shares, strict=True)
    ]


def _watch(config: ModelConfig) -> Stage:
    watch = config.rollout.post_promotion_watch
    return Stage(
        kind="watch",
        weight=100,
        max_minutes=watch.max_duration_minutes,
        at_max=watch.at_max_duration.upper(),  # type: ignore[arg-type]
    )


def candidate_spec(config: ModelConfig, *, endpoint: str, version: int) -> VariantSpec:
    if config.endpoint.kind == "serverless" and config.endpoint.serverless is not None:
        return VariantSpec(
            variant=variant_name(version),
            model_name=model_name(endpoint, version),
            serverless={
                "MemorySizeInMB": config.endpoint.serverless.memory_mb,
                "MaxConcurrency": config.endpoint.serverless.max_concurrency,
            },
        )
    realtime = config.endpoint.realtime
    assert realtime is not None  # filled by the config's validation for realtime and multi-model
    return VariantSpec(
        variant=variant_name(version),
        model_name=model_name(endpoint, version),
        instance_type=realtime.instance_type,
        instance_count=realtime.instance_count,
    )


def multi_model_container(container: dict[str, Any], package_arn: str) -> tuple[dict[str, Any], str]:
    """A package's container as a multi-model one, and the TargetModel that names its artifact.

    The container loads models from the artifact's S3 folder (the run's artifacts/<model>/<run>/,
    where RegisterModel wrote the repacked archive), so the artifact is served where it lies,
    uncopied; clients name it in TargetModel (model.tar.gz for the models Shepherd trains). Each
    version is its own model with its own folder, and A/B routes between versions by variant
    weight, not by TargetModel."""
    url = str(container.get("ModelDataUrl") or "")
    folder, _, artifact = url.rpartition("/")
    if not url.startswith("s3://") or not artifact.endswith(".tar.gz") or folder.count("/") < 3:
        raise ValueError(
            f"{package_arn} cannot be served by a multi-model endpoint: its ModelDataUrl {url!r} is not an "
            "s3://bucket/.../<name>.tar.gz archive"
        )
    environment = dict(container.get("Environment") or {}) | {MULTI_MODEL_PACKAGE: package_arn}
    return {
        "Image": container["Image"],
        "ModelDataUrl": f"{folder}/",
        "Mode": "MultiModel",
        "Environment": environment,
    }, artifact


def _variant(spec: VariantSpec, weight: float) -> dict[str, Any]:
    out: dict[str, Any] = {"VariantName": spec.variant, "ModelName": spec.model_name, "InitialVariantWeight": weight}
    if spec.serverless:
        out["ServerlessConfig"] = dict(spec.serverless)
    else:
        out["InstanceType"] = spec.instance_type
        out["InitialInstanceCount"] = spec.instance_count
    return out


CAPTURE_ROOT = "capture/"


def capture_prefix(endpoint: str) -> str:
    """Where SageMaker writes an endpoint's captured requests, <DestinationS3Uri>/<endpoint>/: each
    variant's under <variant>/yyyy/mm/dd/hh/."""
    return f"{CAPTURE_ROOT}{endpoint}/{endpoint}/"


def _capture(config: ModelConfig, bucket: str, endpoint: str, kms_key_arn: str | None) -> dict[str, Any] | None:
    capture = config.endpoint.data_capture
    if not capture.enabled:
        return None
    out: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": capture.sampling_percentage,
        "DestinationS3Uri": f"s3://{bucket}/{CAPTURE_ROOT}{endpoint}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    }
    if kms_key_arn:
        out["KmsKeyId"] = kms_key_arn
    return out


def endpoint_config(
    config: ModelConfig,
    *,
    name: str,
    production: list[tuple[VariantSpec, float]],
    shadow: VariantSpec | None = None,
    shadow_weight: float = 1.0,
    bucket: str,
    endpoint: str,
    kms_key_arn: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    """A CreateEndpointConfig request: production variants with weights, an optional shadow, capture, KMS."""
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [_variant(spec, weight) for spec, weight in production],
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
    if shadow is not None:
        # The shadow's weight relative to production's sets the share of requests mirrored to it.
        request["ShadowProductionVariants"] = [_variant(shadow, shadow_weight)]
    capture = _capture(config, bucket, endpoint, kms_key_arn)
    if capture is not None:
        request["DataCaptureConfig"] = capture
    variants = [spec for spec, _ in production] + ([shadow] if shadow is not None else [])
    if kms_key_arn and not any(spec.serverless or has_instance_storage(spec.instance_type) for spec in variants):
        request["KmsKeyId"] = kms_key_arn
    return request


def weights(
    champion: str, challenger: str, challenger_percent: float, challenger_count: int | None = None
) -> list[dict[str, Any]]:
    """DesiredWeightsAndCapacities for an A/B step (weights are relative: percentages are fine), with the
    challenger's new instance count when it is to be raised."""
    wanted: dict[str, Any] = {"VariantName": challenger, "DesiredWeight": float(challenger_percent)}
    if challenger_count is not None:
        wanted["DesiredInstanceCount"] = challenger_count
    return [{"VariantName": champion, "DesiredWeight": float(100 - challenger_percent)}, wanted]


def proportional_count(champion_count: int, weight: float) -> int:
    """Instances for a challenger carrying ``weight`` % of the traffic at the load per instance of the champion's
    fleet (``champion_count`` instances) carrying the rest: champion_count x weight / (100 - weight), the nearest
    whole number, at least one; the champion's count at 100 %."""
    if weight >= 100:
        return max(1, champion_count)
    return max(1, math.floor(champion_count * weight / (100 - weight) + 0.5))


def challenger_count(stages: list[Stage], index: int, champion_count: int) -> int | None:
    """The challenger's instance count on entering stage ``index`` of a realtime path (A/B or full), or None to
    leave it: in proportion to its traffic share (proportional_count), for this stage and the next, so that the
    next stage's instances are InService before its traffic arrives (docs/ROLLOUTS.md, "Capacity")."""
    here = stages[index]
    if here.kind not in ("ab", "full"):
        return None
    following = stages[index + 1] if index + 1 < len(stages) else None
    wanted = proportional_count(champion_count, here.weight)
    if following is not None and following.kind in ("ab", "full"):
        wanted = max(wanted, proportional_count(champion_count, following.weight))
    return wanted


KEEP_VERSIONS = 5


def retired(names: list[tuple[str, Any]], *, prefix: str, keep: set[str], newest: int = KEEP_VERSIONS) -> list[str]:
    """Which of a rollout's old endpoint configs or models to delete: those named for this endpoint
    (``<endpoint>-...``), beyond the `newest` most recent, that are not in use (`keep`).

    `names` are (name, creation time) pairs as ListEndpointConfigs / ListModels give them. Models a batch
    run created (``...-batch``) are left to their own lifecycle.
    """
    ours = sorted(
        ((name, created) for name, created in names if name.startswith(prefix) and not name.endswith("-batch")),
        key=lambda item: item[1],
        reverse=True,
    )
    return [name for name, _ in ours[newest:] if name not in keep]
