"""A model's monitor read back from the data bucket: its config, state.json, reports and baselines.

Read-only, with the caller's clients (the CLI's `shepherd monitor status`). Keys come from shepherd.monitor.layout;
what the documents hold, from shepherd.monitor.run. Missing documents are None, never an error: the caller says
what that means (no model, no baseline, no runs yet).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.monitor.constraints import monitoring_config
from shepherd.monitor.distance import CHI_SQUARED, feature_distance
from shepherd.monitor.layout import baseline_prefix, monitoring_root, state_key
from shepherd.monitor.statistics import completeness
from shepherd.objects import split_s3_uri

REPORT_FILES = ("statistics.json", "constraint_violations.json", "alert.json")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature of one report: its drift against the baseline and the Model Monitor violations it got."""

    name: str
    kind: str  # numerical | categorical | "" (kinds differ or no baseline: no distance)
    distance: float | None
    threshold: float | None
    p_value: bool  # ChiSquared: the value is a p-value, drift when below the threshold
    completeness: float
    violations: tuple[str, ...]

    @property
    def drifted(self) -> bool:
        if self.distance is None or self.threshold is None:
            return False
        return self.distance < self.threshold if self.p_value else self.distance > self.threshold


def feature_drift(
    statistics: dict[str, Any],
    violations: dict[str, Any],
    baseline: dict[str, Any] | None,
    constraints: dict[str, Any] | None,
    overrides: Mapping[str, object] | None = None,
) -> list[FeatureDrift]:
    """Per feature of a report (and each baseline feature it lacks): distance vs threshold, completeness, violations."""
    baselined = {f["name"]: f for f in (baseline or {}).get("features", [])}
    constrained = {f["name"]: f for f in (constraints or {}).get("features", [])}
    found: dict[str, list[str]] = {}
    for violation in violations.get("violations", []):
        found.setdefault(str(violation.get("feature_name")), []).append(str(violation.get("constraint_check_type")))
    rows = []
    current = {f["name"]: f for f in statistics.get("features", [])}
    for name in dict.fromkeys([*current, *baselined]):
        feature = current.get(name)
        config = monitoring_config(constraints or {}, overrides, feature=constrained.get(name))[
            "distribution_constraints"
        ]
        measured = None
        if feature is not None and name in baselined:
            measured = feature_distance(
                baselined[name],
                feature,
                method=config["comparison_method"],
                categorical_method=config["categorical_drift_method"],
            )
        kind, distance = measured if measured and not math.isnan(measured[1]) else ("", None)
        threshold = (
            config["categorical_comparison_threshold"] if kind == "categorical" else config["comparison_threshold"]
        )
        rows.append(
            FeatureDrift(
                name=name,
                kind=kind,
                distance=distance,
                threshold=float(threshold) if kind else None,
                p_value=kind == "categorical" and config["categorical_drift_method"] == CHI_SQUARED,
                completeness=completeness(feature) if feature is not None else 0.0,
                violations=tuple(found.get(name, [])),
            )
        )
    return rows


class MonitorReports:
    """Reads a model's monitor documents in the data bucket through ``clients`` (default: the layer's)."""

    def __init__(self, bucket: str, clients: Callable[[str], Any] | None = None) -> None:
        self.bucket = bucket
        self._clients = clients or client

    @property
    def s3(self) -> Any:
        return self._clients("s3")

    def document(self, key: str) -> dict[str, Any] | None:
        """A JSON document, or None when the key is not there (listed first: without ListBucket S3 answers 403)."""
        if key not in self.keys(key):
            return None
        with mapped(f"reading s3://{self.bucket}/{key}"):
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            value = json.loads(body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def text(self, key: str) -> str | None:
        if key not in self.keys(key):
            return None
        with mapped(f"reading s3://{self.bucket}/{key}"):
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()).decode("utf-8", "replace")

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        with mapped(f"listing s3://{self.bucket}/{prefix}"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        return found

    def config_text(self, model: str) -> str | None:
        """models/<model>/shepherd.yaml as uploaded."""
        return self.text(f"models/{model}/shepherd.yaml")

    def state(self, model: str) -> dict[str, Any] | None:
        return self.document(state_key(model))

    def baseline_root(self, model: str) -> str:
        """``s3://`` folder of the model's baselines, one folder per package version."""
        return f"s3://{self.bucket}/{monitoring_root(model)}baseline/"

    def baseline_versions(self, model: str) -> list[str]:
        """The package versions a baseline was written for, oldest first."""
        prefix = f"{monitoring_root(model)}baseline/"
        versions = {key.removeprefix(prefix).split("/", 1)[0] for key in self.keys(prefix)}
        return sorted(versions, key=lambda v: (len(v), v))

    def baseline(self, model: str, version: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(statistics.json, constraints.json) of the package version, or None if either is missing."""
        prefix = baseline_prefix(model, version)
        statistics, constraints = self.document(f"{prefix}statistics.json"), self.document(f"{prefix}constraints.json")
        return (statistics, constraints) if statistics is not None and constraints is not None else None

    def report(self, uri: str, names: tuple[str, ...] = REPORT_FILES) -> dict[str, dict[str, Any]]:
        """The documents of one report folder (``s3://bucket/…/hh/``) by file name; a missing one is left out."""
        bucket, prefix = split_s3_uri(uri if uri.endswith("/") else f"{uri}/")
        reader = self if bucket == self.bucket else MonitorReports(bucket, self._clients)
        return {name: doc for name in names if (doc := reader.document(f"{prefix}{name}")) is not None}

    def report_folders(self, model: str, endpoint: str, last: int) -> list[str]:
        """The ``s3://`` folders of the endpoint's latest ``last`` reports (those with an alert.json), oldest first."""
        prefix = f"{monitoring_root(model)}reports/{endpoint}/"
        folders = sorted(key.rsplit("/", 1)[0] + "/" for key in self.keys(prefix) if key.endswith("/alert.json"))
        return [f"s3://{self.bucket}/{folder}" for folder in folders[-last:]] if last > 0 else []


def quality_summary(section: Mapping[str, Any] | None) -> str | None:
    """One line on a run's model quality (alert.json's ``quality``): its status, labels, and the quality alert."""
    if not section:
        return None
    decision = section.get("decision") or {}
    parts = [str(section.get("status", "?"))]
    if "labelled" in section:
        parts.append(f"{section['labelled']} labelled predictions")
    if "violations" in section:
        parts.append(f"{section['violations']} violation(s)")
    if decision.get("degraded"):
        parts.append("quality-loss episode open")
    reason = section.get("reason") or decision.get("reason")  # why it was not judged, else the alert's word
    return "; ".join(parts) + (f": {reason}" if reason else "")
