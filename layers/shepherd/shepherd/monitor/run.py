"""One monitor run: the endpoint's capture since the last run against the champion's baselines.

Reports in Model Monitor's layout (statistics.json, constraint_violations.json) plus alert.json (the alert
decision and its evidence), per-feature CloudWatch metrics as Model Monitor names them; model quality from the
ground truth joined with the captured predictions (its files in the report's model_quality/ folder); the Batch
Transform inputs scored since the last run and the ground truth uploaded for scored files (batch_quality); and, on a
new drift or quality-loss alert, a retrain, or a scored file whose model quality violates its baseline, a
notification. A run without capture still reads the ground truth, for the predictions waiting for it.
state.json (the capture, ground-truth and batch checkpoints, the alerts and retrain state) is written last: a
run that fails before it is redone whole by the next, reading each object once.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from shepherd.config import ConfigError, ModelConfig, load_config
from shepherd.errors import InvalidInput, NotFound
from shepherd.events import notifications
from shepherd.monitor import (
    alert,
    batch_inputs,
    batch_quality,
    capture,
    history,
    model_quality,
    quality_alert,
    retrain,
)
from shepherd.monitor.baseline import MODEL_QUALITY, QUALITY_REFERENCE, REFERENCE
from shepherd.monitor.constraints import check
from shepherd.monitor.dataset import Dataset, from_capture
from shepherd.monitor.layout import batch_report_prefix, report_prefix, schedule_name, state_key
from shepherd.monitor.metrics import feature_metrics
from shepherd.monitor.ports import Lifecycle, Metrics, Models, Objects, Reports, Rollouts
from shepherd.monitor.reference import Reference
from shepherd.monitor.statistics import profile
from shepherd.objects import DataObject, split_s3_uri
from shepherd.rollout import quality as joined
from shepherd.rollout.plan import capture_prefix

logger = logging.getLogger(__name__)

NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"  # Model Monitor's ("CloudWatch Metrics for Deployed Models")
QUALITY_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"  # the guide's "Model quality CloudWatch metrics"
MIN_LABELLED = 100  # labelled predictions a run needs before its model quality is checked and published
STATE_FORMAT = 1
HOUR = 3600
READ_SECONDS = 120.0  # of the function's 300 s: the rest of the capture is read by the next run


@dataclass(frozen=True)
class Settings:
    bucket: str
    stage: str


@dataclass(frozen=True)
class Deps:
    objects: Objects
    reports: Reports
    models: Models
    rollouts: Rollouts
    metrics: Metrics
    lifecycle: Lifecycle
    settings: Settings
    now: Callable[[], datetime]
    monotonic: Callable[[], float]


class MonitorRequest(BaseModel):
    model: str
    trigger: Literal["schedule", "manual"] = "manual"


def baselines_of(package: dict[str, Any], kind: str = "ModelDataQuality") -> tuple[str, str] | None:
    """(statistics, constraints) S3 URIs a model package's DriftCheckBaselines (or ModelMetrics) name, of its
    ModelDataQuality or ModelQuality."""
    for section in (package.get("DriftCheckBaselines"), package.get("ModelMetrics")):
        quality = (section or {}).get(kind) or {}
        statistics, constraints = (quality.get("Statistics") or {}), (quality.get("Constraints") or {})
        if statistics.get("S3Uri") and constraints.get("S3Uri"):
            return statistics["S3Uri"], constraints["S3Uri"]
    return None


def monitor(deps: Deps, request: MonitorRequest) -> dict[str, Any]:
    """Run the model's monitor once; the result says whether to notify, and with what."""
    outcome = _monitor(deps, request)
    worse = [entry for entry in outcome.get("batch_quality") or [] if entry.get("violations")]
    return _batch_quality_notice(request.model, outcome, worse) if worse else outcome


def _monitor(deps: Deps, request: MonitorRequest) -> dict[str, Any]:
    at = deps.now()
    config = _config(deps, request.model)
    endpoint = config.endpoint.name or request.model
    outcome = {"model": request.model, "endpoint": endpoint, "trigger": request.trigger, "notify": False}
    if not config.monitoring.enabled:
        return outcome | {"status": "disabled", "reason": "monitoring.enabled is false"}
    live = deps.models.describe_endpoint(endpoint)
    if live is None:  # a batch-only model (or one not deployed yet): its Batch Transform inputs are still checked
        return outcome | _batch_only(deps, request.model, endpoint, config=config, at=at)
    package = _champion_package(deps, config, endpoint)
    if package is None:
        return outcome | {"status": "no_baseline", "reason": f"no approved model package serves {endpoint}"}
    arn = str(package["ModelPackageArn"])
    uris = baselines_of(package)
    if uris is None:
        why = (package.get("CustomerMetadataProperties") or {}).get("shepherd:baseline", "none recorded")
        return outcome | {
            "status": "no_baseline",
            "package": arn,
            "reason": f"{notifications.package_label(arn)} has no baseline: {why}",
        }
    baseline, constraints = (json.loads(_read(deps, uri)) for uri in uris)

    state = _load_state(deps, request.model, at)
    if state.get("package") != arn:  # a new champion: its own reference and episodes; the checkpoint, the cooldown kept
        retrain_state = (state.get("retrain") or {}) | {"drift_since": None, "quality_since": None}
        state |= {"package": arn, "alert": None, "reference": None, "retrain": retrain_state, "quality": None}
    checkpoint = capture.Checkpoint.from_json(state["capture"])
    deadline = deps.monotonic() + READ_SECONDS
    state["batch"], outcome["batch"] = _batch_checks(
        deps, request.model, baseline=baseline, constraints=constraints, state=state, config=config, at=at
    )
    state["batch_quality"], outcome["batch_quality"] = _batch_quality(deps, request.model, package, state=state, at=at)
    bucket = deps.settings.bucket
    read, predictions = _read_capture(deps, endpoint, live, checkpoint, at=at, deadline=deadline)
    dataset = from_capture(read.captured, names=[f["name"] for f in baseline.get("features", [])])
    outcome |= {
        "package": arn,
        "objects_read": read.objects,
        "records": dataset.item_count,
        "unreadable": dataset.unreadable,
        "complete": read.complete,
    }
    if dataset.item_count == 0:  # no capture: the labels are still read, for the predictions that wait for them
        return outcome | _labels_only(
            deps, request, package, state, checkpoint, config=config, at=at, deadline=deadline
        )

    quality = _model_quality(
        deps, request.model, package, state.get("quality"), predictions, config=config, at=at, deadline=deadline
    )
    statistics = profile(dataset, dataset_name=f"{endpoint} capture")
    violations = check(statistics, baseline, constraints, overrides=config.monitoring.monitoring_config)
    values = feature_metrics(statistics, baseline, constraints)
    alert_state, decision, used = _alert(
        deps, request.model, uris[0], dataset, arn=arn, state=state, config=config, at=at
    )
    policy = config.monitoring.retrain
    retrain_state = retrain.RetrainState.from_json(state.get("retrain") or {})
    gate = retrain.gate(
        retrain.Policy(tuple(policy.on), policy.sustained_hours, policy.cooldown_hours, policy.dataset),
        retrain_state,
        drifting=bool(decision.get("drifting")),
        at=at,
        rollout=(deps.rollouts.lock_of(endpoint) or {}).get("owner"),
        degraded=bool(quality.decision.get("degraded")),
    )
    started = _retrain(deps, request.model, policy.dataset, retrain_state, gate=gate, at=at) if gate.retrain else None

    where = report_prefix(request.model, endpoint, at, request.trigger)
    document = {
        "model": request.model,
        "endpoint": endpoint,
        "package": arn,
        "at": at.isoformat(),
        "trigger": request.trigger,
        "decision": decision,
        "violations": len(violations.get("violations", [])),
        "quality": quality.section,
        "batch": outcome["batch"],
        "batch_quality": outcome["batch_quality"],
        "retrain": {
            "started": started is not None,
            "reason": gate.reason,
            "evidence": gate.evidence,
            **(started or {}),
        },
    }
    _report(deps, f"{where}statistics.json", statistics)
    _report(deps, f"{where}constraint_violations.json", violations)
    _report(deps, f"{where}alert.json", document)
    dimensions = {"Endpoint": endpoint, "MonitoringSchedule": schedule_name(deps.settings.stage, request.model)}
    deps.metrics.put(NAMESPACE, dimensions, values, at)
    _write_quality(deps, quality, where, dimensions, at)
    _save_state(
        deps,
        request.model,
        state
        | {
            "capture": checkpoint.to_json(),
            "alert": alert_state,
            "reference": used,
            "quality": quality.state,
            "retrain": retrain_state.to_json(),
            "last_run": at.isoformat(),
            "last_report": f"s3://{bucket}/{where}",
        },
    )
    outcome |= {"status": "checked", "report": f"s3://{bucket}/{where}", "violations": document["violations"]}
    outcome["quality"] = quality.section
    if decision.get("alert") or quality.decision.get("alert") or started is not None:
        outcome |= {"notify": True, "notification": _notification(request.model, endpoint, arn, document, outcome)}
    return outcome


def _batch_only(deps: Deps, model: str, endpoint: str, *, config: ModelConfig, at: datetime) -> dict[str, Any]:
    """A model without an endpoint: the Batch Transform inputs scored since the last run checked against the data
    baseline of the package batch scores with (the latest approved), as for a model with one; drift alert and
    model quality need capture. Returns what it adds to the run's outcome."""
    package = _champion_package(deps, config, endpoint)
    uris = baselines_of(package) if package is not None else None
    missing = {"status": "no_endpoint", "reason": f"endpoint {endpoint} does not exist yet", "batch": []}
    if package is None or uris is None:
        return missing
    baseline, constraints = (json.loads(_read(deps, uri)) for uri in uris)
    state = _load_state(deps, model, at)
    state["batch"], checked = _batch_checks(
        deps, model, baseline=baseline, constraints=constraints, state=state, config=config, at=at
    )
    state["batch_quality"], labelled = _batch_quality(deps, model, package, state=state, at=at)
    _save_state(deps, model, state | {"last_run": at.isoformat()})
    arn = str(package["ModelPackageArn"])
    told = f"; {len(checked)} Batch Transform inputs checked against {notifications.package_label(arn)}'s baseline"
    return missing | {
        "package": arn,
        "batch": checked,
        "batch_quality": labelled,
        "reason": f"endpoint {endpoint} does not exist{told}",
    }


def _labels_only(
    deps: Deps,
    request: MonitorRequest,
    package: dict[str, Any],
    state: dict[str, Any],
    checkpoint: capture.Checkpoint,
    *,
    config: ModelConfig,
    at: datetime,
    deadline: float,
) -> dict[str, Any]:
    """A run without capture: the ground truth since the last run joined with the predictions that wait for it,
    its model quality reported and published (and notified on a quality alert) as a run with capture does; drift and
    retraining are judged only on capture. Returns what it adds to the run's outcome."""
    quality = _model_quality(
        deps, request.model, package, state.get("quality"), [], config=config, at=at, deadline=deadline
    )
    state = state | {"capture": checkpoint.to_json(), "quality": quality.state, "last_run": at.isoformat()}
    added: dict[str, Any] = {"status": "no_data", "quality": quality.section}
    added["reason"] = f"no captured requests of {config.endpoint.name or request.model} since the last run"
    if quality.files:
        endpoint = config.endpoint.name or request.model
        where = report_prefix(request.model, endpoint, at, request.trigger)
        arn = str(package["ModelPackageArn"])
        document = {
            "model": request.model,
            "endpoint": endpoint,
            "package": arn,
            "at": at.isoformat(),
            "trigger": request.trigger,
            "decision": {"alert": False, "drifting": False, "reason": "no capture this run: drift not judged"},
            "violations": 0,
            "quality": quality.section,
            "retrain": {"started": False},
        }
        _report(deps, f"{where}alert.json", document)
        dimensions = {"Endpoint": endpoint, "MonitoringSchedule": schedule_name(deps.settings.stage, request.model)}
        _write_quality(deps, quality, where, dimensions, at)
        state["last_report"] = added["report"] = f"s3://{deps.settings.bucket}/{where}"
        if quality.decision.get("alert"):
            added |= {"notify": True}
            added["notification"] = _notification(request.model, endpoint, arn, document, added)
    _save_state(deps, request.model, state)
    return added


def _alert(
    deps: Deps,
    model: str,
    statistics_uri: str,
    dataset: Dataset,
    *,
    arn: str,
    state: dict[str, Any],
    config: ModelConfig,
    at: datetime,
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any] | None]:
    """Shepherd's alert on this run's batch, judged as the hour before the run's (a replay of a judged hour
    changes nothing) against the reference learnt from capture once there is one, else the training data's;
    (its new state, its decision as alert.json tells it, the reference it used)."""
    reference_uri = statistics_uri.rsplit("/", 1)[0] + f"/{REFERENCE}"
    try:
        training = Reference.from_json(json.loads(_read(deps, reference_uri)))
    except NotFound:
        missing = {"alert": False, "drifting": False, "reason": "no alert reference beside the baseline"}
        return state.get("alert"), missing, state.get("reference")
    settings = alert.AlertSettings(
        false_alerts_per_month=config.monitoring.alert.false_alarms_per_month,
        checks_per_month=checks_per_month(config.monitoring.schedule),
    )
    hour = datetime.fromtimestamp((math.floor(at.timestamp() / HOUR) - 1) * HOUR, UTC)
    learning = config.monitoring.reference
    key = history.document_key(model)
    learnt = _learnt_document(deps, key, arn) if learning.learn else None
    reference, used = training, dict[str, Any](source="training", uri=reference_uri)
    if learnt is not None and learnt.get("status") == "learnt":
        reference = Reference.from_json(learnt["reference"])
        used = {"source": "capture", "uri": f"s3://{deps.settings.bucket}/{key}", "cycle_hours": reference.cycle_hours}
        used |= {name: learnt.get(name) for name in ("hours", "from", "to", "learnt_at", "left_out")}
    previous = state.get("alert")
    if (state.get("reference") or {}).get("source", "training") != used["source"]:
        previous = None  # charts judged against another reference start afresh
    new_state, decision = alert.step(previous, reference, dataset.columns, at=hour, settings=settings)
    told = decision.to_json() | {"hour": hour.isoformat(), "false_alarms_per_month": settings.false_alerts_per_month}
    if (learnt is not None and learnt.get("status") == "learnt") or not learning.learn:
        return new_state.to_json(), told | {"reference": used}, used
    learn_settings = history.LearnSettings(learning.history_days, learning.cycle_hours)
    observed = history.observe(
        learnt, training, dataset.columns, hour=hour, settings=learn_settings, alert_settings=settings
    )
    _write(deps, key, observed.document | {"package": arn})
    taken = (observed.document if observed.learnt else observed.document.get("history") or {}).get("hours", 0)
    used = used | {
        "learning": {
            "hours": int(taken),
            "needed": learn_settings.hours_needed,
            "note": observed.note + ("; used from the next run" if observed.learnt is not None else ""),
        }
    }
    return new_state.to_json(), told | {"reference": used}, used


def _learnt_document(deps: Deps, key: str, arn: str) -> dict[str, Any] | None:
    """The learning (or learnt) reference of this champion; None if there is none yet or it is another's."""
    bucket = deps.settings.bucket
    if key not in deps.objects.keys(bucket, key):
        return None
    try:
        document = json.loads(deps.objects.read_bytes(bucket, key))
    except ValueError as exc:
        logger.error("the learnt reference is unreadable: learning afresh", extra={"key": key, "error": str(exc)})
        return None
    return dict(document) if document.get("package") == arn and document.get("format") == history.FORMAT else None


def _batch_checks(
    deps: Deps,
    model: str,
    *,
    baseline: dict[str, Any],
    constraints: dict[str, Any],
    state: dict[str, Any],
    config: ModelConfig,
    at: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each Batch Transform input scored since the last run through the data-quality check against the champion's
    baseline, reported under monitoring/<model>/batch/<file>/ with Model Monitor's batch metrics; (the checkpoint,
    what each file gave)."""
    bucket = deps.settings.bucket
    checkpoint = batch_inputs.BatchCheckpoint.from_json(state.get("batch"), first=at.timestamp() - HOUR)
    listed = deps.objects.latest_objects(bucket, batch_inputs.processed_prefix(model))
    names = [f["name"] for f in baseline.get("features", [])]
    checked: list[dict[str, Any]] = []
    for stamp, found in batch_inputs.new_files(listed, checkpoint):
        entry: dict[str, Any] = {"input": f"s3://{bucket}/{found.key}"}
        if found.size > batch_inputs.MAX_BYTES:
            entry["status"] = f"not checked: over {batch_inputs.MAX_BYTES // 2**20} MB"
        else:
            text = deps.objects.read_bytes(bucket, found.key, found.version_id).decode("utf-8", errors="replace")
            try:
                dataset = batch_inputs.dataset_of(text, config.batch.content_type, names)
            except ValueError as exc:
                dataset, entry["status"] = None, f"not checked: unreadable as {config.batch.content_type} ({exc})"
            if dataset is not None and dataset.item_count:
                statistics = profile(dataset, dataset_name=f"s3://{bucket}/{found.key}")
                violations = check(statistics, baseline, constraints, overrides=config.monitoring.monitoring_config)
                where = batch_report_prefix(model, found.key)
                _report(deps, f"{where}statistics.json", statistics)
                _report(deps, f"{where}constraint_violations.json", violations)
                dimensions = {"MonitoringSchedule": schedule_name(deps.settings.stage, model)}
                values = feature_metrics(statistics, baseline, constraints)
                deps.metrics.put(batch_inputs.NAMESPACE, dimensions, values, at)
                entry |= {
                    "status": "checked",
                    "records": dataset.item_count,
                    "violations": len(violations["violations"]),
                    "report": f"s3://{bucket}/{where}",
                }
            elif dataset is not None:
                entry["status"] = "not checked: no rows"
        checked.append(entry)
        batch_inputs.mark_checked(checkpoint, stamp, found.key)
    return checkpoint.to_json(), checked


def _batch_quality(
    deps: Deps, model: str, champion: dict[str, Any], *, state: dict[str, Any], at: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each labels file uploaded under feedback/<model>/batch/ since the last run joined by row with its batch's
    scores, its model quality checked against the baseline of the package that scored it (the champion's if the
    run's summary names none) and reported in the batch's monitoring folder; (the checkpoint, what each gave)."""
    bucket = deps.settings.bucket
    # A first run takes every labels file there is: each is an upload for a scored run, never a stream's backlog.
    checkpoint = batch_inputs.BatchCheckpoint.from_json(state.get("batch_quality"), first=0.0)
    listed = deps.objects.latest_objects(bucket, batch_quality.labels_prefix(model))
    entries: list[dict[str, Any]] = []
    for stamp, found in batch_inputs.new_files(listed, checkpoint):
        entry: dict[str, Any] = {"labels": f"s3://{bucket}/{found.key}"}
        labels = batch_quality.labels_file(model, found.key)
        if labels is None:
            entry["status"] = f"not read: not {batch_quality.labels_prefix(model)}<run>/<file>{batch_quality.SUFFIX}"
        else:
            entry |= _labelled_batch(deps, labels, found, champion, at=at)
        entries.append(entry)
        batch_inputs.mark_checked(checkpoint, stamp, found.key)
    return checkpoint.to_json(), entries


def _labelled_batch(
    deps: Deps, labels: batch_quality.LabelsFile, found: DataObject, champion: dict[str, Any], *, at: datetime
) -> dict[str, Any]:
    """One labels file: its model quality's files and metrics, or a reason file saying why it was not checked."""
    bucket = deps.settings.bucket
    outputs = set(deps.objects.keys(bucket, labels.output_key.rsplit("/", 1)[0] + "/"))
    summary: dict[str, Any] = {}
    if labels.summary_key in outputs:
        try:
            summary = dict(json.loads(deps.objects.read_bytes(bucket, labels.summary_key)))
        except (ValueError, TypeError):
            summary = {}
    moved = str(summary.get("moved_to_uri") or "")
    where = batch_report_prefix(labels.model, moved or f"{labels.run}-{labels.file}") + MODEL_QUALITY
    try:
        if labels.output_key not in outputs:
            raise batch_quality.Refused(
                f"no scored output s3://{bucket}/{labels.output_key}: labels go under the run and file name "
                "BatchTransform scored (batch/<model>/output/<run>/<file>.out)"
            )
        if found.size > batch_quality.MAX_BYTES:
            raise batch_quality.Refused(f"over {batch_quality.MAX_BYTES // 2**20} MB")
        scored_by = str(summary.get("model_package_arn") or "")
        package = deps.models.describe_package(scored_by) if scored_by else champion
        arn = str(package.get("ModelPackageArn") or scored_by)
        uris = baselines_of(package, "ModelQuality")
        if uris is None:
            raise batch_quality.Refused(f"{notifications.package_label(arn)} has no model-quality baseline")
        reference = quality_alert.QualityReference.from_json(
            json.loads(_read(deps, uris[0].rsplit("/", 1)[0] + f"/{QUALITY_REFERENCE}"))
        )
        text = deps.objects.read_bytes(bucket, labels.output_key).decode("utf-8", errors="replace")
        given = deps.objects.read_bytes(bucket, found.key).decode("utf-8", errors="replace")
        data = model_quality.table(batch_quality.join(text, given), reference.problem_type)
    except (batch_quality.Refused, NotFound, KeyError, ValueError) as exc:
        reason = f"s3://{bucket}/{found.key} not checked: {exc}"
        deps.reports.write(bucket, f"{where}reason.txt", (reason + "\n").encode())
        logger.warning("batch labels not checked", extra={"labels": found.key, "reason": str(exc)})
        return {"status": f"refused: {exc}", "report": f"s3://{bucket}/{where}"}
    statistics = model_quality.statistics(data, threshold=reference.decision_threshold, now=lambda: at)
    _report(deps, f"{where}statistics.json", statistics)
    entry: dict[str, Any] = {
        "output": f"s3://{bucket}/{labels.output_key}",
        "package": arn,
        "labelled": data.count,
        "unreadable": data.unreadable,
        "report": f"s3://{bucket}/{where}",
    }
    if data.count < MIN_LABELLED:
        reason = f"{data.count} labelled records, fewer than {MIN_LABELLED}: metrics written, not checked"
        return entry | {"status": "too_few_labels", "reason": reason}
    violations = model_quality.check(statistics, json.loads(_read(deps, uris[1])))
    _report(deps, f"{where}constraint_violations.json", violations)
    dimensions = {"MonitoringSchedule": schedule_name(deps.settings.stage, labels.model)}
    deps.metrics.put(batch_quality.NAMESPACE, dimensions, model_quality.metric_values(statistics), at)
    return entry | {"status": "checked", "violations": len(violations["violations"])}


def _batch_quality_notice(model: str, outcome: dict[str, Any], worse: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's notification, with the scored files whose model quality violates their baseline added (or the
    only notification, when nothing else was to be told)."""
    files = [str(entry["output"]).rsplit("/", 1)[-1].removesuffix(".out") for entry in worse]
    lines = [
        f"Batch model quality: {entry['violations']} violations in {entry['output']} "
        f"({entry['labelled']} labelled records against {notifications.package_label(entry['package'])}'s "
        f"baseline); report {entry['report']}"
        for entry in worse
    ]
    told = dict(outcome.get("notification") or {})
    if told:
        told["detail"] = "\n".join([str(told.get("detail") or ""), *lines]).strip()
    else:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        told = notifications.document(
            notifications.MONITORING_ALERT,
            f"{model}: model quality of Batch Transform outputs below the baseline ({shown})",
            "\n".join(lines),
            model=model,
            package=worse[0]["package"],
            report=worse[0]["report"],
        )
    return outcome | {"notify": True, "notification": told}


def _read_capture(
    deps: Deps, endpoint: str, live: dict[str, Any], checkpoint: capture.Checkpoint, *, at: datetime, deadline: float
) -> tuple[capture.Read, list[joined.Prediction]]:
    """Every variant's capture since ``checkpoint``: its records, and its predictions with their InferenceId."""
    bucket = deps.settings.bucket
    sources = {
        v["VariantName"]: f"{capture_prefix(endpoint)}{v['VariantName']}/" for v in live.get("ProductionVariants", [])
    }
    predictions: list[joined.Prediction] = []

    def read_capture(key: str) -> list[str]:
        lines = _lines(deps, key)
        predictions.extend(joined.predictions(lines))
        return lines

    read = capture.read_new(
        checkpoint,
        sources,
        at.timestamp(),
        list_keys=lambda prefix: deps.objects.keys(bucket, prefix),
        read_lines=read_capture,
        out_of_time=lambda: deps.monotonic() > deadline,
    )
    return read, predictions


@dataclass(frozen=True)
class Quality:
    """One run's model quality: its state, what alert.json says of it, the files and metrics to write."""

    state: dict[str, Any] | None
    section: dict[str, Any]
    files: dict[str, dict[str, Any]]
    values: dict[str, float]

    @property
    def decision(self) -> dict[str, Any]:
        return dict(self.section.get("decision") or {})


def _model_quality(
    deps: Deps,
    model: str,
    package: dict[str, Any],
    state: dict[str, Any] | None,
    predictions: list[joined.Prediction],
    *,
    config: ModelConfig,
    at: datetime,
    deadline: float,
) -> Quality:
    """The champion's captured predictions joined with ground truth from feedback/<model>/ (read since the
    last run, as the capture is) against its model-quality baseline; without one, nothing is read or kept."""
    uris = baselines_of(package, "ModelQuality")
    if uris is None:
        return Quality(None, {"status": "no_baseline", "reason": "the champion has no model-quality baseline"}, {}, {})
    baseline_uri, constraints_uri = uris
    try:
        reference = quality_alert.QualityReference.from_json(
            json.loads(_read(deps, baseline_uri.rsplit("/", 1)[0] + f"/{QUALITY_REFERENCE}"))
        )
    except (NotFound, KeyError, ValueError) as exc:
        return Quality(None, {"status": "no_baseline", "reason": f"no readable quality reference: {exc}"}, {}, {})
    kept = dict(state or {})
    feedback = capture.Checkpoint.from_json(kept.get("feedback") or capture.Checkpoint.first(at.timestamp()).to_json())
    labels: dict[str, str] = {}

    def read_labels(key: str) -> list[str]:
        lines = _lines(deps, key)
        labels.update(joined.ground_truth(lines))
        return lines

    bucket = deps.settings.bucket
    read = capture.read_new(
        feedback,
        {"feedback": f"feedback/{model}/"},
        at.timestamp(),
        list_keys=lambda prefix: deps.objects.keys(bucket, prefix),
        read_lines=read_labels,
        out_of_time=lambda: deps.monotonic() > deadline,
    )
    waiting = quality_alert.QualityState.from_json(kept)
    rows = quality_alert.join(waiting, predictions, labels, at.timestamp())
    data = model_quality.table(rows, reference.problem_type)
    misses = quality_alert.missed(data, reference.problem_type, reference.decision_threshold, reference.tolerance)
    settings = quality_alert.QualitySettings(
        false_alerts_per_month=config.monitoring.alert.false_alarms_per_month,
        checks_per_month=checks_per_month(config.monitoring.schedule),
    )
    decision = quality_alert.step(waiting, reference, data.count, sum(misses), settings)
    section: dict[str, Any] = {
        "labelled": data.count,
        "unreadable": data.unreadable,
        "feedback_objects_read": read.objects,
        "waiting_predictions": len(waiting.pending),
        "decision": decision.to_json(reference, settings),
    }
    new_state = waiting.to_json() | {"feedback": feedback.to_json()}
    if data.count == 0:
        nothing = {"status": "no_labels", "reason": "no labelled predictions this run"}
        return Quality(new_state, section | nothing, {}, {})
    statistics = model_quality.statistics(data, threshold=reference.decision_threshold, now=lambda: at)
    files = {"statistics.json": statistics}
    if data.count < MIN_LABELLED:
        reason = f"{data.count} labelled predictions, fewer than {MIN_LABELLED}: metrics written, not checked"
        return Quality(new_state, section | {"status": "too_few_labels", "reason": reason}, files, {})
    violations = model_quality.check(statistics, json.loads(_read(deps, constraints_uri)))
    files["constraint_violations.json"] = violations
    section |= {"status": "checked", "violations": len(violations["violations"])}
    return Quality(new_state, section, files, model_quality.metric_values(statistics))


def _write_quality(deps: Deps, quality: Quality, where: str, dimensions: dict[str, str], at: datetime) -> None:
    """Model quality's report files in their own folder of the run's report, and its metrics."""
    for name, document in quality.files.items():
        _report(deps, f"{where}{MODEL_QUALITY}{name}", document)
    if quality.values:
        deps.metrics.put(QUALITY_NAMESPACE, dimensions, quality.values, at)


def checks_per_month(schedule: str) -> int:
    """How often a schedule runs in 30 days: exact for rate(); a cron() is taken as hourly."""
    found = re.match(r"^rate\((\d+) (minute|hour|day)s?\)$", schedule)
    if not found:
        return 720
    seconds = int(found.group(1)) * {"minute": 60, "hour": HOUR, "day": 24 * HOUR}[found.group(2)]
    return max(1, 30 * 24 * HOUR // seconds)


def _notification(
    model: str, endpoint: str, arn: str, document: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    decision, started = document["decision"], document["retrain"]
    quality = (document.get("quality") or {}).get("decision") or {}
    features = decision.get("features") or []
    shown = ", ".join(str(f) for f in features[:5]) + (f" and {len(features) - 5} more" if len(features) > 5 else "")
    causes = []
    if decision.get("alert") or (started["started"] and decision.get("drifting")):
        causes.append("data drift" + (f" ({shown})" if shown else ""))
    if quality.get("alert") or (started["started"] and quality.get("degraded")):
        causes.append("model quality loss")
    reason = f"{model}: {' and '.join(causes) or 'monitoring'} on {endpoint}"
    if started["started"]:
        reason += f"; retraining on {started['dataset']}"
    lines = [
        f"Champion {notifications.package_label(arn)}; {document['violations']} Model Monitor violations this run.",
        f"Alert: {decision.get('reason', '')}".rstrip(),
    ]
    if quality:
        lines.append(f"Quality: {quality.get('reason', '')}")
    lines += [f"Retrain: {started.get('reason', 'not judged (no capture this run)')}", f"Report: {outcome['report']}"]
    detail = "\n".join(lines)
    return notifications.document(
        notifications.MONITORING_ALERT,
        reason,
        detail,
        model=model,
        endpoint=endpoint,
        package=arn,
        report=outcome["report"],
        retrain=started,
    )


def _retrain(
    deps: Deps, model: str, dataset: str | None, state: retrain.RetrainState, *, gate: retrain.Gate, at: datetime
) -> dict[str, Any] | None:
    """Start ModelLifecycle on the dataset the config names, or the newest marked one; None if there is none."""
    bucket, prefix = retrain.dataset_prefix(model, deps.settings.bucket, dataset)
    if bucket != deps.settings.bucket:
        logger.warning("monitoring.retrain.dataset is not in the data bucket", extra={"dataset": dataset})
        return None
    marker = retrain.newest_marker(deps.objects.latest_objects(bucket, prefix))
    if marker is None:
        logger.warning("no marked dataset to retrain on", extra={"prefix": f"s3://{bucket}/{prefix}"})
        return None
    since = gate.evidence.get(f"{gate.evidence.get('cause', 'drift')}_since")
    name, payload = retrain.lifecycle_start(model, bucket, marker, episode=str(since or at.isoformat()))
    started = deps.lifecycle.start(name, payload)
    trigger = {
        "execution_name": name,
        "new_execution": started,
        "dataset": f"s3://{bucket}/{payload['prefix']}",
        "at": at.isoformat(),
        "evidence": gate.evidence,
    }
    retrain.note_trigger(state, trigger, at)
    return trigger


def _config(deps: Deps, model: str) -> ModelConfig:
    bucket, key = deps.settings.bucket, f"models/{model}/shepherd.yaml"
    try:
        text = deps.objects.read_bytes(bucket, key).decode("utf-8", errors="replace")
        return load_config(text, f"s3://{bucket}/{key}", model=model)
    except NotFound:
        raise InvalidInput(f"s3://{bucket}/{key} does not exist: no config for {model}") from None
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None


def _champion_package(deps: Deps, config: ModelConfig, endpoint: str) -> dict[str, Any] | None:
    recorded = (deps.rollouts.champion(endpoint) or {}).get("package")
    if recorded:
        return deps.models.describe_package(recorded)
    return deps.models.latest_approved_package(config.registry.model_package_group or endpoint)


def _lines(deps: Deps, key: str) -> list[str]:
    return deps.objects.read_bytes(deps.settings.bucket, key).decode("utf-8", errors="replace").splitlines()


def _read(deps: Deps, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return deps.objects.read_bytes(bucket, key)


def _write(deps: Deps, key: str, document: dict[str, Any]) -> None:
    deps.objects.write_bytes(deps.settings.bucket, key, json.dumps(document, indent=2).encode(), "application/json")


def _report(deps: Deps, key: str, document: dict[str, Any]) -> None:
    """A report object: tagged, so the bucket's ExpireMonitorReports rule expires it (state and baselines stay)."""
    deps.reports.write(deps.settings.bucket, key, json.dumps(document, indent=2).encode())


def _load_state(deps: Deps, model: str, at: datetime) -> dict[str, Any]:
    """The model's state.json, or a fresh one (a first run reads the last hour's capture)."""
    fresh = {"format": STATE_FORMAT, "capture": capture.Checkpoint.first(at.timestamp()).to_json()}
    bucket, key = deps.settings.bucket, state_key(model)
    if key not in deps.objects.keys(bucket, key):  # listed, not read blind (S3 answers 403 without ListBucket)
        return fresh
    try:
        state = json.loads(deps.objects.read_bytes(bucket, key))
        capture.Checkpoint.from_json(state["capture"])
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("state.json is unreadable: starting afresh", extra={"key": key, "error": str(exc)})
        return fresh
    return dict(state) if state.get("format") == STATE_FORMAT else fresh


def _save_state(deps: Deps, model: str, state: dict[str, Any]) -> None:
    _write(deps, state_key(model), state)


def failure_notice(execution: str, state: dict[str, Any]) -> dict[str, Any]:
    """The MonitoringFailed notification for the error a Catch recorded at ``state["error"]``."""
    told = notifications.explain(state.get("error"))
    return notifications.document(
        notifications.MONITORING_FAILED,
        f"{state.get('model')}: the monitor run failed: {told.reason}",
        told.detail,
        execution=execution,
        model=state.get("model"),
        error=told.error,
    )
