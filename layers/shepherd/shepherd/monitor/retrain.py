"""Drift or quality loss -> retrain: when a model's config asks for it, a sustained episode starts ModelLifecycle.

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
    """When the current drift and quality-loss episodes began (None: none now), and when the last retrain was
    started."""

    drift_since: str | None = None
    last_trigger: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)  # the last few, newest last
    quality_since: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "drift_since": self.drift_since,
            "quality_since": self.quality_since,
            "last_trigger": self.last_trigger,
            "triggers": self.triggers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetrainState:
        triggers = list(data.get("triggers") or [])
        return cls(data.get("drift_since"), data.get("last_trigger"), triggers, data.get("quality_since"))


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


def gate(
    policy: Policy, state: RetrainState, *, drifting: bool, at: datetime, rollout: str | None, degraded: bool = False
) -> Gate:
    """Update the drift and quality-loss episodes in ``state`` and decide: a configured cause (``policy.on``) for
    ``sustained_hours``, no rollout running (``rollout``: the run holding the endpoint's lock), the cooldown since
    the last trigger over."""
    state.drift_since = (state.drift_since or at.isoformat()) if drifting else None
    state.quality_since = (state.quality_since or at.isoformat()) if degraded else None
    open_since = (("drift", state.drift_since), ("quality", state.quality_since))
    episodes = {cause: since for cause, since in open_since if since}
    if not episodes:
        return Gate(False, "no drift" if "quality" not in policy.on else "no drift, no quality loss", {})
    evidence: dict[str, Any] = {}
    lasted = {cause: at - datetime.fromisoformat(since) for cause, since in episodes.items()}
    hours = {cause: round(duration.total_seconds() / 3600, 2) for cause, duration in lasted.items()}
    for cause, since in episodes.items():
        evidence |= {f"{cause}_since": since, f"{cause}_hours": hours[cause]}
    words = {"drift": "drift", "quality": "quality loss"}
    configured = [cause for cause in episodes if cause in policy.on]
    if not configured:
        named = " and ".join(episodes)
        return Gate(False, f"retraining on {named} is not configured (monitoring.retrain.on)", evidence)
    sustained = [cause for cause in configured if lasted[cause] >= timedelta(hours=policy.sustained_hours)]
    if not sustained:
        named = " and ".join(words[c] for c in configured)
        return Gate(
            False, f"{named} for less than monitoring.retrain.sustained_hours ({policy.sustained_hours} h)", evidence
        )
    if rollout is not None:
        return Gate(False, f"a rollout ({rollout}) holds the endpoint: no retraining while it runs", evidence)
    if state.last_trigger is not None:
        last = datetime.fromisoformat(state.last_trigger)
        if at - last < timedelta(hours=policy.cooldown_hours):
            evidence["last_trigger"] = state.last_trigger
            return Gate(False, f"within the cooldown ({policy.cooldown_hours} h) of the last retrain", evidence)
    cause = sustained[0]
    return Gate(True, f"{words[cause]} sustained for {hours[cause]} h", evidence | {"cause": cause})


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
