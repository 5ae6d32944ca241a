"""moto's EventBridge: a rule delivers to the local cloud's targets (state machines, functions, queues).

moto's own delivery stays for other targets. Schedule-only and disabled rules receive no events, and an event's
time reaches targets in AWS's format.
"""

from __future__ import annotations

import copy
import datetime
import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("shepherd.local.events")

Deliver = Callable[[dict[str, Any], dict[str, Any], str], None]
"""A rule's target (its Arn, Input, InputTransformer, RoleArn ...) receiving an event: (target, event, rule ARN)."""

LOCAL_TARGETS = ("states", "lambda", "sqs")  # the services whose targets the local cloud delivers to
_hooks: dict[str, Deliver | None] = {"deliver": None}  # set by attach(), for the patched Rule.send_to_targets
_rule_listeners: list[Callable[[], None]] = []  # told after a rule is put, enabled, disabled or deleted
RULE_CHANGES = ("put_rule", "delete_rule", "enable_rule", "disable_rule")  # EventsBackend's methods that change one


def attach(deliver: Deliver) -> None:
    """Deliver events to targets of LOCAL_TARGETS through ``deliver``."""
    _hooks["deliver"] = deliver


def _deliver() -> Deliver:
    deliver = _hooks["deliver"]
    if deliver is None:
        raise RuntimeError("no local cloud is running")
    return deliver


def on_rules_changed(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after each change of RULE_CHANGES (a schedule may be due sooner); returns its removal."""
    _rule_listeners.append(listener)
    return lambda: _rule_listeners.remove(listener) if listener in _rule_listeners else None


def _telling_rule_listeners(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def changing(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            for listener in list(_rule_listeners):
                listener()

    return changing


def default_bus_rules(account_id: str, region: str) -> list[Any]:
    """The rules on the account's default event bus in ``region``."""
    from moto.events.models import events_backends

    bus = events_backends[account_id][region].event_buses.get("default")
    return list(bus.rules.values()) if bus else []


def patch() -> None:
    """Rule.send_to_targets hands LOCAL_TARGETS to the attached delivery, one failing target stopping none."""
    from moto.events import models as events_models

    original = events_models.Rule.send_to_targets

    @functools.wraps(original)
    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if self.state != "ENABLED" or self.event_pattern.dump() is None:
            return  # disabled and schedule-only rules receive no events
        if not self.event_pattern.matches_event(original_event):
            return
        event = copy.deepcopy(original_event)
        if isinstance(event.get("time"), int | float):
            event["time"] = datetime.datetime.fromtimestamp(float(event["time"]), datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        event.pop("ingestion-time", None)
        for target in self.targets:
            service = target["Arn"].split(":")[2]
            if service in LOCAL_TARGETS:
                try:
                    _deliver()(target, event, self.arn)
                except Exception:  # one failing target must not stop delivery to the others
                    log.exception("delivery of %s to %s failed", event.get("detail-type"), target["Arn"])
                continue
            saved = self.targets
            self.targets = [target]
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    events_models.Rule.send_to_targets = send_to_targets
    for name in RULE_CHANGES:
        setattr(events_models.EventsBackend, name, _telling_rule_listeners(getattr(events_models.EventsBackend, name)))


def __getattr__(name: str) -> Any:
    """events_backends, imported on first use."""
    if name == "events_backends":
        from moto.events.models import events_backends

        return events_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
