"""Drift -> retrain: when a model's config asks for it, sustained drift starts ModelLifecycle, debounced.

Never while a rollout holds the endpoint, never within the cooldown of the last trigger; every decision
carries its evidence, which goes into the run's alert.json and its notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shepherd.events.names import execution_name
from shepherd.events.s3 import MARKER, dataset_marker
from shepherd.objects import DataObject, split_s3_uri


@dataclass
class RetrainState:
    """When the current drift episode began (None: no drift now), and when the last retrain was started."""

    drift_since: str | None = None
    last_trigger: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)  # the last few, newest last

    def to_json(self) -> dict[str, Any]:
        return {"drift_since": self.drift_since, "last_trigger": self.last_trigger, "triggers": self.triggers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetrainState:
        return cls(data.get("drift_since"), data.get("last_trigger"), list(data.get("triggers") or []))


KEPT_TRIGGERS = 20


@dataclass(frozen=True)
class Policy:
    """monitoring.retrain of a model's config."""

    on: tuple[str, ...]
    sustained_hours: int
    cooldown_hours: int
    dataset: str | None


@dataclass(frozen=True)
class Gate:
    """Whether to retrain now, and why (or why not)."""

    retrain: bool
    reason: str
    evidence: dict[str, Any]


def gate(policy: Policy, state: RetrainState, *, drifting: bool, at: datetime, rollout: str | None) -> Gate:
    """Update the drift episode in ``state`` and decide: drift for ``sustained_hours``, no rollout running
    (``rollout``: the run holding the endpoint's lock), the cooldown since the last trigger over."""
    if not drifting:
        state.drift_since = None
        return Gate(False, "no drift", {})
    state.drift_since = state.drift_since or at.isoformat()
    since = datetime.fromisoformat(state.drift_since)
    evidence: dict[str, Any] = {
        "drift_since": state.drift_since,
        "drift_hours": round((at - since).total_seconds() / 3600, 2),
    }
    if "drift" not in policy.on:
        return Gate(False, "retraining on drift is not configured (monitoring.retrain.on)", evidence)
    if at - since < timedelta(hours=policy.sustained_hours):
        return Gate(
            False, f"drift for less than monitoring.retrain.sustained_hours ({policy.sustained_hours} h)", evidence
        )
    if rollout is not None:
        return Gate(False, f"a rollout ({rollout}) holds the endpoint: no retraining while it runs", evidence)
    if state.last_trigger is not None:
        last = datetime.fromisoformat(state.last_trigger)
        if at - last < timedelta(hours=policy.cooldown_hours):
            evidence["last_trigger"] = state.last_trigger
            return Gate(False, f"within the cooldown ({policy.cooldown_hours} h) of the last retrain", evidence)
    return Gate(True, f"drift sustained for {evidence['drift_hours']} h", evidence)


def note_trigger(state: RetrainState, trigger: dict[str, Any], at: datetime) -> None:
    state.last_trigger = at.isoformat()
    state.triggers = [*state.triggers, trigger][-KEPT_TRIGGERS:]


def newest_marker(objects: list[DataObject]) -> DataObject | None:
    """The most recently written dataset marker among a listing."""
    markers = [o for o in objects if o.key.endswith(f"/{MARKER}")]
    return max(markers, key=lambda o: (o.last_modified or "", o.key), default=None)


def lifecycle_start(model: str, bucket: str, marker: DataObject, *, episode: str) -> tuple[str, dict[str, Any]]:
    """The ModelLifecycle execution a marker upload would start, forced (the data may be the champion's own),
    named once per drift episode so that a retried run starts it once."""
    found = dataset_marker(marker.key)
    version = marker.version_id or marker.etag or ""
    name = execution_name(f"{model}-retrain", bucket, marker.key, version, episode)
    payload = {
        "model": model,
        "dataset": found.dataset,
        "bucket": bucket,
        "prefix": found.prefix,
        "marker": marker.key,
        "marker_version": version,
        "force": True,
    }
    return name, payload


def dataset_prefix(model: str, bucket: str, configured: str | None) -> tuple[str, str]:
    """(bucket, prefix) to look for the marker in: the configured dataset, or the model's training area."""
    if configured is None:
        return bucket, f"training/{model}/"
    found_bucket, prefix = split_s3_uri(configured)
    return found_bucket, prefix if prefix.endswith("/") else f"{prefix}/"
