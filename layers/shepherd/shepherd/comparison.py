"""The Evaluate and JudgeOnSameRows steps: the gates, and the champion scored on the candidate's validation rows.

Evaluate judges the thresholds; when one gate asks to beat the champion and there is one, it writes the
validation rows' features (the label column left out) and labels under the run's artifacts, makes a model of
each side (the candidate's repacked archive, the champion's Approved package) and plans one transform job per
side, which the state machine runs in parallel. JudgeOnSameRows reads both outputs and compares them
(shepherd.paired). Either step writes the run's evaluation record. docs/PIPELINES.md, "Evaluation gates".
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from shepherd.batch import build_transform_request, manifest
from shepherd.config import ModelConfig
from shepherd.errors import InvalidInput, NotFound
from shepherd.evaluation import Champion, Evaluation, compares_with_champion, evaluate
from shepherd.model_archive import RepackedModel, hosting_archive_uri
from shepherd.monitor.model_quality import REGRESSION, Labelled, infer_problem_type
from shepherd.names import ALPHANUMERIC_UNSAFE, bounded, digest
from shepherd.objects import DataObject, split_s3_uri
from shepherd.paired import PairedComparison, bootstrap, mcnemar, regression_metric
from shepherd.rollout.quality import finite_number

logger = logging.getLogger(__name__)

VALIDATION_CHANNEL = "validation"
MAX_ROWS = 20_000  # of validation rows compared: enough for a tight interval, seconds of inference
MAX_BYTES = 32 * 2**20  # of validation CSV read
WAIT_MARGIN_SECONDS = 900  # provisioning and model download on top of the batch runtime
FEATURES, LABELS, RECORD = "features.csv", "labels.json", "evaluation.json"
SIDES = ("candidate", "champion")
NAME_MAX = 63


class Objects(Protocol):
    """The data bucket (shepherd.aws.s3); read_bytes raises NotFound for a missing object."""

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...
    def write_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str | None: ...


class Models(Protocol):
    """SageMaker's registry and models (shepherd.aws.sagemaker); create_model accepts a model that exists."""

    def latest_approved_package(self, group: str) -> dict[str, Any] | None: ...
    def create_model(self, request: dict[str, Any]) -> None: ...


class Archives(Protocol):
    def repack_in_s3(self, model_uri: str, source_uri: str, target_uri: str, *, program: str) -> RepackedModel: ...


@dataclass(frozen=True)
class Deps:
    objects: Objects
    models: Models
    archives: Archives
    sagemaker_role_arn: str
    kms_key_arn: str | None = None
    default_instance_type: str | None = None  # the stack's batch instance type, where the config names none


class TrainedJob(BaseModel):
    job_name: str
    model_data_url: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class EvaluateRequest(BaseModel):
    model: str
    run: str = ""
    group: str
    config: dict[str, Any]
    job: TrainedJob
    image: str = ""
    source_uri: str = ""
    lineage_uri: str = ""


class Scored(BaseModel):
    """One side's transform job as its Parallel branch ended: completed, or failed with Step Functions' error."""

    failed: bool = False
    job_name: str | None = None
    error: str | None = None
    cause: str | None = None


class JudgeRequest(EvaluateRequest):
    evaluation: dict[str, Any]  # Evaluate's result, with its "comparison" plan
    scoring: list[Scored] = Field(min_length=2, max_length=2)  # candidate, champion


class Unavailable(Exception):
    """Why the champion cannot be compared on the same rows: told in the gates' results, never raised out."""


@dataclass(frozen=True)
class Rows:
    """The validation rows both models score: features as headerless CSV lines, and their labels."""

    features: list[str]
    labels: list[str]
    source: str
    columns: list[str]  # the features' names, in their order (the header without the label column)


# ---------------------------------------------------------------- Evaluate


def evaluate_run(deps: Deps, request: EvaluateRequest) -> dict[str, Any]:
    """Judge the thresholds; plan the champion comparison where a gate asks for one and there is a champion."""
    config = ModelConfig.model_validate(request.config, context={"model": request.model})
    gates, metrics = config.evaluation.gates, request.job.metrics
    thresholds = evaluate(gates, metrics, None)
    asks = compares_with_champion(gates)
    # Transform jobs cost money: none when a threshold already rejects the candidate, or no gate asks.
    champion = deps.models.latest_approved_package(request.group) if asks and thresholds.passed else None
    if champion is None:
        summary = thresholds.summary
        if asks and thresholds.passed:
            summary += " (no Approved champion in the group yet: nothing to compare with)"
        return _finish(deps, request, thresholds.model_copy(update={"summary": summary}), None, None)
    arn = str(champion["ModelPackageArn"])
    try:
        plan = _plan(deps, request, config, champion)
    except Unavailable as exc:
        logger.warning("no champion comparison", extra={"champion": arn, "reason": str(exc)})
        return _finish(deps, request, evaluate(gates, metrics, Champion(arn, unavailable=str(exc))), arn, None)
    logger.info("champion comparison planned", extra={"champion": arn, "rows": plan["rows"]})
    return {
        "passed": False,
        "compare": True,
        "summary": f"comparing with the champion {arn} on {plan['rows']} validation rows",
        "champion_arn": arn,
        "comparison": plan,
        "paired": None,
        "record_uri": None,
    }


def _plan(deps: Deps, request: EvaluateRequest, config: ModelConfig, package: dict[str, Any]) -> dict[str, Any]:
    target = config.training.target_column
    if not target:
        raise Unavailable("training.target_column is not set, so the validation rows' labels cannot be told apart")
    if not (request.lineage_uri and request.source_uri and request.image and request.job.model_data_url):
        raise InvalidInput("Evaluate needs the run's lineage_uri, source_uri, image and the job's model_data_url")
    rows = validation_rows(deps.objects, request.lineage_uri, target)
    trained_on = champion_columns(deps.objects, package)
    if trained_on is not None and trained_on != rows.columns:
        raise Unavailable(
            f"the champion was trained on other feature columns ({_listed(trained_on)}) than the candidate's "
            f"validation rows hold ({_listed(rows.columns)}): a changed schema, which its model cannot score, so "
            f"beating it cannot be shown"
        )
    champion_arn = str(package["ModelPackageArn"])
    bucket, prefix = comparison_prefix(request.lineage_uri)
    deps.objects.write_bytes(bucket, f"{prefix}{FEATURES}", "".join(rows.features).encode(), "text/csv")
    deps.objects.write_bytes(bucket, f"{prefix}{LABELS}", json.dumps(rows.labels).encode(), "application/json")
    listing = f"{prefix}manifest.json"
    deps.objects.write_bytes(bucket, listing, json.dumps(manifest(bucket, f"{prefix}{FEATURES}")).encode())
    program = config.inference_entry_point or config.entry_point
    hosting = hosting_archive_uri(request.source_uri)
    # The candidate's inference code goes into its archive as registration will (the same bytes again there).
    deps.archives.repack_in_s3(request.job.model_data_url, request.source_uri, hosting, program=program)
    candidate = _model_name(request.model, "cand", request.run)
    deps.models.create_model(
        {
            "ModelName": candidate,
            "PrimaryContainer": {
                "Image": request.image,
                "ModelDataUrl": hosting,
                "Environment": {"SAGEMAKER_PROGRAM": program, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
            },
            "ExecutionRoleArn": deps.sagemaker_role_arn,
            "EnableNetworkIsolation": True,
            "Tags": _tags(request.model, request.run),
        }
    )
    champion = f"{request.group[:40]}-v{champion_arn.rsplit('/', 1)[-1]}-batch"  # batch runs' name: one per version
    deps.models.create_model(
        {
            "ModelName": champion,
            "PrimaryContainer": {"ModelPackageName": champion_arn},
            "ExecutionRoleArn": deps.sagemaker_role_arn,
            "EnableNetworkIsolation": True,
            "Tags": [
                {"Key": "shepherd:model", "Value": request.model},
                {"Key": "shepherd:package", "Value": champion_arn[:256]},
            ],
        }
    )
    scoring = _scoring_batch(config, deps.default_instance_type)
    requests = {
        side: build_transform_request(
            scoring,
            job_name=_model_name(request.model, "eval" + side[:4], request.run),
            model_name=name,
            bucket=bucket,
            manifest_key=listing,
            output_prefix=f"{prefix}{side}/",
            kms_key_arn=deps.kms_key_arn,
            tags={"shepherd:model": request.model, "shepherd:execution": request.run[:256]},
        )
        for side, name in zip(SIDES, (candidate, champion), strict=True)
    }
    return {
        "rows": len(rows.labels),
        "source": rows.source,
        "bucket": bucket,
        "prefix": prefix,
        "wait_timeout_seconds": scoring.max_runtime_seconds + WAIT_MARGIN_SECONDS,
        **{side: {"request": requests[side], "model_name": requests[side]["ModelName"]} for side in SIDES},
    }


def _scoring_batch(config: ModelConfig, default_instance_type: str | None) -> Any:
    """The config's batch resources, with the formats of the written rows: headerless CSV in, one line out each."""
    batch = config.batch.model_copy(
        update={
            "content_type": "text/csv",
            "accept": "text/csv",
            "split_type": "Line",
            "assemble_with": "Line",
            "strategy": "MultiRecord",
        }
    )
    if "instance_type" not in config.batch.model_fields_set and default_instance_type:
        batch.instance_type = default_instance_type
    return batch


def _model_name(model: str, kind: str, run: str) -> str:
    return bounded(f"{model}-{kind}", digest(run, length=12), limit=NAME_MAX, unsafe=ALPHANUMERIC_UNSAFE)


def _tags(model: str, run: str) -> list[dict[str, str]]:
    return [{"Key": "shepherd:model", "Value": model}, {"Key": "shepherd:execution", "Value": run[:256]}]


def comparison_prefix(lineage_uri: str) -> tuple[str, str]:
    """(bucket, prefix) of a run's comparison files: beside its lineage, under artifacts/<model>/<run>/."""
    bucket, key = split_s3_uri(lineage_uri)
    return bucket, f"{key.rsplit('/', 1)[0]}/comparison/"


def _lineage(objects: Objects, lineage_uri: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(lineage_uri)
    document = json.loads(objects.read_bytes(bucket, key))
    if not isinstance(document, dict):
        raise InvalidInput(f"{lineage_uri} is not a lineage document")
    return document


def validation_rows(objects: Objects, lineage_uri: str, target: str) -> Rows:
    """The run's validation channel (the versions its lineage names), at most MAX_ROWS rows with a label."""
    lineage = _lineage(objects, lineage_uri)
    dataset = str(lineage.get("dataset", ""))
    if not dataset.startswith("s3://"):
        raise Unavailable(f"the run's lineage ({lineage_uri}) names no dataset to read validation rows from")
    data_bucket, prefix = split_s3_uri(dataset)
    prefix = prefix if prefix.endswith("/") else f"{prefix}/"
    files = sorted(
        (
            o
            for o in (DataObject.model_validate(d) for d in lineage.get("data", []))
            if o.key.startswith(f"{prefix}{VALIDATION_CHANNEL}/") and o.key.lower().endswith(".csv") and o.size
        ),
        key=lambda o: o.key,
    )
    if not files:
        raise Unavailable(f"the dataset {dataset} has no {VALIDATION_CHANNEL}/ channel of CSV files to compare on")
    features: list[str] = []
    labels: list[str] = []
    header: list[str] | None = None
    size = 0
    for found in files:
        if len(labels) >= MAX_ROWS or size >= MAX_BYTES:
            break
        data = objects.read_bytes(data_bucket, found.key, found.version_id)
        size += len(data)
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
        first = next(reader, None)
        header = header or first
        if not first or target not in first:
            raise Unavailable(f"{found.key} has no header naming {target!r} (training.target_column)")
        column = first.index(target)
        for row in reader:
            if len(labels) >= MAX_ROWS:
                break
            if len(row) != len(first) or not row[column].strip():
                continue
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow(row[:column] + row[column + 1 :])
            features.append(buffer.getvalue())
            labels.append(row[column].strip())
    if not labels:
        raise Unavailable(f"the {VALIDATION_CHANNEL}/ channel of {dataset} holds no labelled rows")
    columns = [c for c in header or [] if c != target]
    return Rows(features, labels, f"{dataset}{VALIDATION_CHANNEL}/ ({len(labels)} rows)", columns)


def champion_columns(objects: Objects, package: dict[str, Any]) -> list[str] | None:
    """The feature columns the champion was trained on, in order, from its data baseline's statistics.json
    (features only: shepherd.monitor.baseline); None when it has none to tell."""
    baseline = ((package.get("DriftCheckBaselines") or {}).get("ModelDataQuality") or {}).get("Statistics") or {}
    uri = baseline.get("S3Uri")
    if not isinstance(uri, str):
        return None
    try:
        document = json.loads(objects.read_bytes(*split_s3_uri(uri)))
    except (NotFound, ValueError):
        return None
    names = [f.get("name") for f in document.get("features", []) if isinstance(f, dict)]
    return [str(n) for n in names] or None


def _listed(columns: list[str], limit: int = 6) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


# ---------------------------------------------------------------- JudgeOnSameRows


def judge_run(deps: Deps, request: JudgeRequest) -> dict[str, Any]:
    """Both sides' answers on the same rows, compared per gate; the gates judged again with the comparison."""
    config = ModelConfig.model_validate(request.config, context={"model": request.model})
    gates, metrics = config.evaluation.gates, request.job.metrics
    plan = request.evaluation.get("comparison") or {}
    arn = str(request.evaluation.get("champion_arn") or "")
    try:
        paired = _compare(deps, request, config, plan)
    except Unavailable as exc:
        logger.warning("no champion comparison", extra={"champion": arn, "reason": str(exc)})
        return _finish(deps, request, evaluate(gates, metrics, Champion(arn, unavailable=str(exc))), arn, None)
    result = evaluate(gates, metrics, Champion(arn, paired=paired))
    return _finish(deps, request, result, arn, paired)


def _compare(
    deps: Deps, request: JudgeRequest, config: ModelConfig, plan: dict[str, Any]
) -> dict[str, PairedComparison]:
    candidate, champion = request.scoring
    if candidate.failed:
        raise Unavailable(f"the candidate could not score its own validation rows: {_told(candidate)}")
    if champion.failed:
        raise Unavailable(
            f"the champion's model could not score the candidate's validation rows (a changed schema?): "
            f"{_told(champion)}; beating it cannot be shown"
        )
    bucket, prefix = str(plan["bucket"]), str(plan["prefix"])
    labels = [str(v) for v in json.loads(deps.objects.read_bytes(bucket, f"{prefix}{LABELS}"))]
    answers = {side: _answers(deps.objects, bucket, f"{prefix}{side}/{FEATURES}.out", len(labels)) for side in SIDES}
    quality = config.rollout.judge.quality
    rows = [Labelled(prediction=p, label=y) for p, y in zip(answers["candidate"], labels, strict=True)]
    regression = (quality is not None and quality.tolerance is not None) or infer_problem_type(rows) == REGRESSION
    compared = [g.metric for g in config.evaluation.gates if g.must_beat_champion_by is not None]
    if regression:
        numbers = {side: _numbers(side, answers[side]) for side in SIDES}
        values = _numbers("label", labels)
        seed = int(digest(request.run, length=8), 16)
        return {
            metric: bootstrap(values, numbers["candidate"], numbers["champion"], regression_metric(metric), seed=seed)
            for metric in compared
        }
    threshold = quality.decision_threshold if quality is not None else 0.5
    ours = [_label(a, threshold) for a in answers["candidate"]]
    theirs = [_label(a, threshold) for a in answers["champion"]]
    truth = [_label(y, 0.5) for y in labels]
    disagreement = sum(a != b for a, b in zip(ours, theirs, strict=True)) / len(labels)
    result = mcnemar(
        [a == y for a, y in zip(ours, truth, strict=True)],
        [b == y for b, y in zip(theirs, truth, strict=True)],
        disagreement,
    )
    return dict.fromkeys(compared, result)


def _told(scored: Scored) -> str:
    return " ".join(f"{scored.error or 'failed'}: {scored.cause or ''}".split())[:300]


def _answers(objects: Objects, bucket: str, key: str, expected: int) -> list[str]:
    """The first value of each output line (one per input row: AssembleWith Line)."""
    try:
        text = objects.read_bytes(bucket, key).decode("utf-8", errors="replace")
    except NotFound:
        raise Unavailable(f"the transform job wrote no s3://{bucket}/{key}") from None
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) != expected:
        raise Unavailable(f"s3://{bucket}/{key} holds {len(lines)} answers for {expected} rows")
    return [line.split(",", 1)[0].strip().strip('"[]') for line in lines]


def _numbers(side: str, values: list[str]) -> list[float]:
    parsed = [finite_number(v) for v in values]
    bad = next((i for i, n in enumerate(parsed) if n is None), None)
    if bad is not None:
        raise Unavailable(f"{side} value {values[bad]!r} on row {bad + 1} is not a number: no regression errors")
    return [n for n in parsed if n is not None]


def _label(value: str, threshold: float) -> str:
    """An answer as a class: a probability in [0, 1] by the decision threshold; a whole number as itself."""
    number = finite_number(value)
    if number is None:
        return value.strip()
    if 0.0 <= number <= 1.0 and not number.is_integer():
        return "1" if number >= threshold else "0"
    return str(int(number)) if number.is_integer() else repr(number)


# ---------------------------------------------------------------- the record


def package_metadata(paired: dict[str, PairedComparison], record_uri: str) -> dict[str, str]:
    """The CustomerMetadataProperties of a comparison (the replay stage reads the first four)."""
    first = next(iter(paired.values()))
    metadata = {
        "shepherd:problem": first.problem,
        "shepherd:paired-rows": str(first.rows),
        "shepherd:paired-disagreement": repr(round(first.disagreement, 6)),
        "shepherd:paired-metric": first.metric,
        "shepherd:paired-improvement": repr(round(first.improvement, 6)),
        "shepherd:paired-lower": repr(round(first.lower, 6)),
        "shepherd:paired-p": f"{first.p_value:.3g}",
        "shepherd:evaluation": record_uri,
    }
    if first.band is not None:
        metadata["shepherd:paired-band"] = repr(round(first.band, 6))
    return metadata


def _finish(
    deps: Deps,
    request: EvaluateRequest,
    result: Evaluation,
    champion_arn: str | None,
    paired: dict[str, PairedComparison] | None,
) -> dict[str, Any]:
    """Write the run's evaluation record beside its lineage, and return the step's result."""
    record_uri = None
    if request.lineage_uri:
        bucket, key = split_s3_uri(request.lineage_uri)
        record_key = f"{key.rsplit('/', 1)[0]}/{RECORD}"
        record = {
            "passed": result.passed,
            "summary": result.summary,
            "gates": [r.model_dump() for r in result.results],
            "champion": champion_arn,
            "paired": {metric: asdict(comparison) for metric, comparison in (paired or {}).items()},
        }
        deps.objects.write_bytes(bucket, record_key, json.dumps(record, indent=2).encode(), "application/json")
        record_uri = f"s3://{bucket}/{record_key}"
    logger.info("evaluated", extra={"job": request.job.job_name, "passed": result.passed, "summary": result.summary})
    return result.model_dump() | {
        "compare": False,
        "champion_arn": champion_arn,
        "comparison": None,
        "paired": package_metadata(paired, record_uri or "") if paired and result.passed else None,
        "record_uri": record_uri,
    }
