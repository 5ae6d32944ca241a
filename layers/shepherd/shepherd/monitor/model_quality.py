"""Model quality in Model Monitor's formats: metrics of labelled predictions, suggested constraints, violations.

The files are those of the SageMaker developer guide: "Model quality metrics" (model-monitor-model-quality-metrics:
``regression_metrics``, ``binary_classification_metrics``, ``multiclass_classification_metrics``, each metric a
``{"value", "standard_deviation"}``, the latter only from 200 rows, of five 80 % samples), "Create a model quality
baseline" (``<problem>_constraints``: per metric a ``threshold`` and a ``comparison_operator``) and
schemas/model_monitor/model_quality_*.schema.json. A prediction is the first value of the endpoint's answer (a
binary classifier's is the probability of class 1), as the rollout judge reads it (shepherd.rollout.quality).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shepherd.rollout.quality import finite_number

BINARY, MULTICLASS, REGRESSION = "BinaryClassification", "MulticlassClassification", "Regression"
SECTIONS = {
    BINARY: "binary_classification",
    MULTICLASS: "multiclass_classification",
    REGRESSION: "regression",
}
MIN_FOR_DEVIATION = 200  # the guide: standard deviations only from 200 rows
SAMPLES, SAMPLE_SHARE = 5, 0.8
CURVE_POINTS = 101  # thresholds on the ROC and precision-recall curves, at most
MAX_CLASSES = 20  # integral labels with more distinct values than this are taken for a regression target
# The metrics a run checks against the baseline, and which way is worse (the rest are written, not checked).
LOWER_IS_WORSE = {
    BINARY: ("accuracy", "precision", "recall", "f1", "auc"),
    MULTICLASS: ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1"),
    REGRESSION: ("r2",),
}
HIGHER_IS_WORSE = {BINARY: (), MULTICLASS: (), REGRESSION: ("mae", "rmse")}
LESS, GREATER = "LessThanThreshold", "GreaterThanThreshold"


@dataclass(frozen=True, slots=True)
class Labelled:
    """One prediction joined with its ground truth on InferenceId (both as their first value's text)."""

    prediction: str
    label: str


def infer_problem_type(rows: Sequence[Labelled]) -> str:
    """0/1 labels with predictions in [0, 1]: binary; few distinct whole-number or text labels: multiclass;
    else regression."""
    labels = [finite_number(r.label) for r in rows]
    predictions = [finite_number(r.prediction) for r in rows]
    if all(v is not None for v in labels) and all(v is not None for v in predictions):
        if set(labels) <= {0.0, 1.0} and all(0.0 <= p <= 1.0 for p in predictions if p is not None):
            return BINARY
        whole = all(v is not None and v.is_integer() for v in labels)
        return MULTICLASS if whole and len(set(labels)) <= MAX_CLASSES else REGRESSION
    return MULTICLASS


def _metric(value: float) -> dict[str, Any]:
    return {"value": value if math.isfinite(value) else "NaN", "standard_deviation": "NaN"}


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else math.nan


def _f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    return _ratio((1 + b2) * precision * recall, b2 * precision + recall) if precision + recall else 0.0


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive outranks a negative (ties count half)."""
    positives, negatives = int(truth.sum()), int(len(truth) - truth.sum())
    if not positives or not negatives:
        return math.nan
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average ranks over ties
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _curves(scores: np.ndarray, truth: np.ndarray) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    thresholds = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, CURVE_POINTS)))[::-1]
    positives, negatives = max(int(truth.sum()), 1), max(int(len(truth) - truth.sum()), 1)
    fprs, tprs, precisions, recalls = [0.0], [0.0], [], []
    for threshold in thresholds:
        predicted = scores >= threshold
        tp = int((predicted & (truth == 1)).sum())
        fp = int((predicted & (truth == 0)).sum())
        fprs.append(fp / negatives)
        tprs.append(tp / positives)
        precisions.append(_ratio(tp, tp + fp) if tp + fp else 1.0)
        recalls.append(tp / positives)
    return (
        {"false_positive_rates": fprs, "true_positive_rates": tprs},
        {"precisions": precisions, "recalls": recalls},
    )


def _binary_values(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = scores >= threshold
    tp = float((predicted & (truth == 1)).sum())
    fp = float((predicted & (truth == 0)).sum())
    fn = float((~predicted & (truth == 1)).sum())
    tn = float((~predicted & (truth == 0)).sum())
    n = tp + fp + fn + tn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    prevalence = _ratio(tp + fn, n)  # the best constant classifier predicts 1 for all (the guide's example)
    values = {
        "recall": recall,
        "precision": precision,
        "accuracy": _ratio(tp + tn, n),
        "recall_best_constant_classifier": 1.0 if tp + fn else math.nan,
        "precision_best_constant_classifier": prevalence,
        "accuracy_best_constant_classifier": prevalence,
        "true_positive_rate": recall,
        "true_negative_rate": _ratio(tn, tn + fp),
        "false_positive_rate": _ratio(fp, fp + tn),
        "false_negative_rate": _ratio(fn, fn + tp),
        "auc": _auc(scores, truth),
    }
    for beta, name in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
        values[name] = _f_beta(precision, recall, beta) if not math.isnan(precision + recall) else math.nan
        values[f"{name}_best_constant_classifier"] = _f_beta(prevalence, 1.0, beta) if tp + fn else math.nan
    return values


def _multiclass_values(predicted: list[str], truth: list[str]) -> dict[str, float]:
    n = len(truth)
    support = Counter(truth)
    majority = support.most_common(1)[0][0]  # the best constant classifier: the most frequent class
    values = {"accuracy": sum(p == t for p, t in zip(predicted, truth, strict=True)) / n}
    for prefix, answers in (("", predicted), ("_best_constant_classifier", [majority] * n)):
        totals = dict.fromkeys(("recall", "precision", "f0_5", "f1", "f2"), 0.0)
        for label, count in support.items():
            tp = sum(a == label and t == label for a, t in zip(answers, truth, strict=True))
            said = sum(a == label for a in answers)
            precision, recall = (tp / said if said else 0.0), tp / count
            weight = count / n
            totals["recall"] += weight * recall
            totals["precision"] += weight * precision
            for beta, name in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
                totals[name] += weight * _f_beta(precision, recall, beta)
        if prefix:
            values["accuracy_best_constant_classifier"] = support[majority] / n
        values |= {f"weighted_{name}{prefix}": value for name, value in totals.items()}
    return values


def _regression_values(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    errors = predicted - truth
    mse = float(np.mean(errors**2))
    spread = float(np.sum((truth - truth.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": 1.0 - float(np.sum(errors**2)) / spread if spread else math.nan,
    }


@dataclass(frozen=True)
class Table:
    """Labelled rows read for one problem type; ``unreadable``: rows whose prediction or label it cannot take."""

    problem_type: str
    predictions: list[str]
    labels: list[str]
    unreadable: int

    @property
    def count(self) -> int:
        return len(self.labels)


def table(rows: Sequence[Labelled], problem_type: str) -> Table:
    predictions, labels, unreadable = [], [], 0
    for row in rows:
        prediction, label = finite_number(row.prediction), finite_number(row.label)
        if problem_type == MULTICLASS:
            predictions.append(_class(row.prediction))
            labels.append(_class(row.label))
        elif prediction is None or label is None or (problem_type == BINARY and label not in (0.0, 1.0)):
            unreadable += 1
        else:
            predictions.append(row.prediction)
            labels.append(row.label)
    return Table(problem_type, predictions, labels, unreadable)


def _class(text: str) -> str:
    """A class label as text: 1, 1.0 and " 1" are one class."""
    value = finite_number(text)
    return str(int(value)) if value is not None and value.is_integer() else text.strip()


def _values_of(data: Table, indices: Sequence[int], threshold: float) -> dict[str, float]:
    if data.problem_type == MULTICLASS:
        return _multiclass_values([data.predictions[i] for i in indices], [data.labels[i] for i in indices])
    predicted = np.array([float(data.predictions[i]) for i in indices])
    truth = np.array([float(data.labels[i]) for i in indices])
    if data.problem_type == BINARY:
        return _binary_values(predicted, truth.astype(int), threshold)
    return _regression_values(predicted, truth)


def statistics(
    data: Table, *, threshold: float = 0.5, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dict[str, Any]:
    """statistics.json of model quality; ``threshold``: a binary score at or above it predicts 1."""
    everything = range(data.count)
    values = _values_of(data, everything, threshold)
    section: dict[str, Any] = {name: _metric(value) for name, value in values.items()}
    if data.count >= MIN_FOR_DEVIATION:
        draws = np.random.default_rng(data.count)  # deterministic: the same rows give the same file
        size = int(SAMPLE_SHARE * data.count)
        samples = [
            _values_of(data, [int(i) for i in draws.choice(data.count, size, replace=False)], threshold)
            for _ in range(SAMPLES)
        ]
        for name in values:
            found = [s[name] for s in samples if math.isfinite(s[name])]
            if len(found) == SAMPLES:
                section[name]["standard_deviation"] = float(np.std(found))
    if data.problem_type == BINARY:
        scores = np.array([float(p) for p in data.predictions])
        truth = np.array([int(float(t)) for t in data.labels])
        predicted = scores >= threshold
        section["confusion_matrix"] = {
            str(actual): {str(said): int(((truth == actual) & (predicted == said)).sum()) for said in (0, 1)}
            for actual in (0, 1)
        }
        section["receiver_operating_characteristic_curve"], section["precision_recall_curve"] = _curves(scores, truth)
    elif data.problem_type == MULTICLASS:
        classes = sorted(set(data.labels) | set(data.predictions))
        pairs = Counter(zip(data.labels, data.predictions, strict=True))
        section["confusion_matrix"] = {a: {s: pairs[(a, s)] for s in classes} for a in classes}
    stamp = now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "version": 0.0,
        "dataset": {"item_count": data.count, "evaluation_time": stamp},
        f"{SECTIONS[data.problem_type]}_metrics": section,
    }


def problem_type_of(document: dict[str, Any]) -> str | None:
    """The problem type a model-quality statistics or constraints document is of, from its section's name."""
    for problem, section in SECTIONS.items():
        if f"{section}_metrics" in document or f"{section}_constraints" in document:
            return problem
    return None


def suggest_constraints(baseline: dict[str, Any]) -> dict[str, Any]:
    """constraints.json of model quality: each checked metric's baseline value as its threshold, worse being
    below it (accuracy, F1, AUC, R2 ...) or above it (MAE, RMSE); the guide asks for thresholds too aggressive to be
    edited, and Shepherd's quality alert, not these, is what notifies (docs/MONITORING.md)."""
    problem = problem_type_of(baseline)
    if problem is None:
        raise ValueError("not a model-quality statistics document")
    section = baseline[f"{SECTIONS[problem]}_metrics"]
    suggested: dict[str, Any] = {}
    for names, operator in ((LOWER_IS_WORSE[problem], LESS), (HIGHER_IS_WORSE[problem], GREATER)):
        for name in names:
            value = (section.get(name) or {}).get("value")
            if isinstance(value, (int, float)):
                suggested[name] = {"threshold": float(value), "comparison_operator": operator}
    return {"version": 0.0, f"{SECTIONS[problem]}_constraints": suggested}


def check(current: dict[str, Any], constraints: dict[str, Any]) -> dict[str, Any]:
    """constraint_violations.json: each constrained metric past its threshold, as Model Monitor words it."""
    problem = problem_type_of(constraints)
    if problem is None or problem_type_of(current) != problem:
        return {"violations": []}
    section = current[f"{SECTIONS[problem]}_metrics"]
    violations = []
    for name, constraint in sorted(constraints[f"{SECTIONS[problem]}_constraints"].items()):
        value = (section.get(name) or {}).get("value")
        threshold, operator = constraint.get("threshold"), constraint.get("comparison_operator")
        if not isinstance(value, (int, float)) or not isinstance(threshold, (int, float)):
            continue
        if (operator == LESS and value < threshold) or (operator == GREATER and value > threshold):
            violations.append(
                {
                    "metric_name": name,
                    "constraint_check_type": operator,
                    "description": f"Metric {name} with {value:.4g} was {operator} '{threshold:.4g}'",
                }
            )
    return {"violations": violations}


def metric_values(document: dict[str, Any]) -> dict[str, float]:
    """The CloudWatch metrics of a statistics document: every metric with a finite value (curves and the
    confusion matrix are not metrics)."""
    problem = problem_type_of(document)
    if problem is None:
        return {}
    section = document[f"{SECTIONS[problem]}_metrics"]
    return {
        name: float(entry["value"])
        for name, entry in sorted(section.items())
        if isinstance(entry, dict) and isinstance(entry.get("value"), (int, float))
    }
