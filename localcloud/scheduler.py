"""Schedules on the virtual clock: EventBridge schedule rules and EventBridge Scheduler schedules.

moto stores them but never fires them; the Scheduler fires each when its rate() or cron() comes due on the
local cloud's virtual clock, and delivers to its targets as EventBridge does (localcloud.eventbridge.EventDelivery).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import uuid
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.cron import ScheduleExpression
from localcloud.eventbridge import EventDelivery, target_input

log = logging.getLogger("shepherd.local.events")
_NEVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)


_IDLE_CHECK_SECONDS = 60.0  # virtual: the longest it sleeps (a rule changed other than through moto's API waits this)


class Scheduler:
    """Fires schedule rules (and EventBridge Scheduler schedules) on the virtual clock."""

    def __init__(self, clock: VirtualClock, delivery: EventDelivery) -> None:
        self.clock = clock
        self.delivery = delivery
        self._next: dict[str, tuple[str, datetime.datetime]] = {}
        self._stop = threading.Event()
        self._changed = threading.Event()  # a rule or schedule changed: what is due next may have too
        self._unsubscribe: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.fired: list[tuple[str, datetime.datetime]] = []

    def start(self) -> None:
        from localcloud.moto import events, scheduler

        self._unsubscribe = [
            events.on_rules_changed(self._changed.set),
            scheduler.on_schedules_changed(self._changed.set),
        ]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._thread.join(timeout=5)

    def _rules(self) -> list[Any]:
        from localcloud.moto.core import DEFAULT_ACCOUNT_ID
        from localcloud.moto.events import events_backends

        bus = events_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].event_buses.get("default")
        return [r for r in (bus.rules.values() if bus else []) if r.scheduled_expression and r.state == "ENABLED"]

    def _schedules(self) -> list[Any]:
        from localcloud.moto.core import DEFAULT_ACCOUNT_ID
        from localcloud.moto.scheduler import scheduler_backends

        backend = scheduler_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        return [
            s for group in backend.schedule_groups.values() for s in group.schedules.values() if s.state == "ENABLED"
        ]

    def check(self) -> datetime.datetime:
        """Fire what is due, learn new and changed schedules; returns when the next one is due."""
        now = self.clock.now()
        due: list[tuple[str, Any]] = []
        live: dict[str, tuple[str, datetime.datetime]] = {}
        for kind, items in (("rule", self._rules()), ("schedule", self._schedules())):
            for item in items:
                expression = item.scheduled_expression if kind == "rule" else item.schedule_expression
                key = f"{kind}:{item.arn}"
                known = self._next.get(key)
                try:
                    if known is None or known[0] != expression:
                        live[key] = (expression, ScheduleExpression(expression).next_after(now))
                    elif known[1] <= now:
                        live[key] = (expression, ScheduleExpression(expression).next_after(known[1]))
                        due.append((kind, item))
                    else:
                        live[key] = known
                except ValueError as exc:  # one bad schedule must not stop the others
                    if known is None or known[0] != expression:
                        log.error("%s: %s", item.name, exc)
                    live[key] = (expression, _NEVER)
        self._next = live  # deleted and disabled ones are forgotten: enabled again, they start afresh
        for kind, item in due:
            self._fire(kind, item)
        return min((moment for _, moment in live.values()), default=_NEVER)

    def upcoming(self) -> dict[str, datetime.datetime]:
        """When each enabled rule and schedule is due next, by ARN, as of the last check."""
        return {key.split(":", 1)[1]: moment for key, (_, moment) in self._next.items()}

    def _run(self) -> None:
        # Asleep until the next schedule is due or one changes (moto's API tells), not on a fixed tick: at a time
        # scale of 60 a tick fine enough for rate(1 minute) woke it 50 times a second, the idle cloud's largest cost.
        while not self._stop.is_set():
            self._changed.clear()
            try:
                virtual = min(self.clock.until(self.check()), _IDLE_CHECK_SECONDS)
            except Exception:  # moto's in-process mocks (handler tests in the same session) reset the backends
                log.exception("checking the schedules failed")
                virtual = 1.0
            self._changed.wait(max(0.005, self.clock.wall_seconds(virtual)))

    def _fire(self, kind: str, item: Any) -> int:
        self.fired.append((item.name, self.clock.now()))
        if kind == "schedule":
            target = item.target
            with contextlib.suppress(Exception):
                self.delivery.deliver(target["Arn"], json.loads(target.get("Input") or "{}"))
            return 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": item.account_id,
            "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": item.region_name,
            "resources": [item.arn],
            "detail": {},
        }
        for target in item.targets:
            try:
                self.delivery.deliver(target["Arn"], target_input(target, event), target, item.arn)
            except Exception:
                log.exception("schedule %s: delivery to %s failed", item.name, target["Arn"])
        return len(item.targets)

    def trigger(self, name: str) -> int:
        """Fire a schedule rule (or schedule) by name now; KeyError if there is none."""
        for rule in self._rules():
            if rule.name == name:
                return self._fire("rule", rule)
        for schedule in self._schedules():
            if schedule.name == name:
                return self._fire("schedule", schedule)
        raise KeyError(name)
