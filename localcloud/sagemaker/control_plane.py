"""What the local SageMaker's resource families share: errors, ARNs, fault tags, paging, state and events."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from localcloud.clock import VirtualClock
from localcloud.faults import FaultRegistry
from localcloud.iam.principals import Credentials, RoleNotAssumable
from localcloud.sagemaker.endpoints import Endpoint, FleetFactory
from localcloud.sagemaker.jobs import Job
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.services import CloudServices

log = logging.getLogger("shepherd.local.sagemaker")
ACCOUNT = "123456789012"
REGION = "us-east-1"
FAULT_TAG_PREFIX = "shepherd:fault:"


class SageMakerError(Exception):
    code = "ValidationException"
    status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ResourceNotFound(SageMakerError):
    code = "ResourceNotFound"


class ResourceInUse(SageMakerError):
    code = "ResourceInUse"


class ResourceLimitExceeded(SageMakerError):
    code = "ResourceLimitExceeded"


def arn(resource: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}"


def epoch_millis(value: Any) -> Any:
    """Event details carry times as epoch milliseconds, as SageMaker's events do."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: epoch_millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [epoch_millis(v) for v in value]
    return value


def faults_of(request: dict[str, Any]) -> dict[str, str]:
    """Opt-in fault injection for tests, by tag: e.g. shepherd:fault:spot-interruptions = 1."""
    return {
        t["Key"][len(FAULT_TAG_PREFIX) :]: t["Value"]
        for t in request.get("Tags", [])
        if t["Key"].startswith(FAULT_TAG_PREFIX)
    }


class ControlPlane:
    """The backend's resources and the services every resource family uses: clients, roles, logs, events, threads.

    ``metrics`` are the endpoints' (fleets observe model loads in them); ``scalable_variants`` names an endpoint's
    variants registered with Application Auto Scaling, which an update may not remove.
    """

    fleet_factory: FleetFactory  # how an endpoint variant's instances are started (tests pass fakes)
    faults: FaultRegistry  # event-drop and event-delay rules (the server hands in the cloud's registry)

    def __init__(
        self,
        services: CloudServices,
        *,
        metrics: EndpointMetrics,
        scalable_variants: Callable[[str], set[str]],
    ) -> None:
        self.services = services
        self.metrics = metrics
        self.scalable_variants = scalable_variants
        self.lock = threading.RLock()
        self.training_jobs: dict[str, Job] = {}
        self.transform_jobs: dict[str, Job] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.package_groups: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}  # by ARN
        self.package_tokens: dict[str, str] = {}  # CreateModelPackage ClientToken -> the ARN it created
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._threads: list[threading.Thread] = []
        self.faults = FaultRegistry()
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._event_thread = threading.Thread(target=self._put_events, name="sagemaker-events", daemon=True)
        self._event_thread.start()

    # ------------------------------------------------------------------ runner context

    def client(self, service: str) -> Any:
        return self.services.client(service)

    def assume(self, role_arn: str) -> Credentials:
        """SageMaker's session of an execution role; a role it cannot assume is the request's error."""
        try:
            return self.services.role_credentials(role_arn, "sagemaker.amazonaws.com", "SageMaker")
        except RoleNotAssumable as exc:
            raise SageMakerError(str(exc)) from exc

    def model_client(self, model: dict[str, Any], service: str) -> Any:
        """A client acting as the model's execution role (what reads its model data on AWS)."""
        role = model.get("ExecutionRoleArn")
        return self.services.role_client(service, self.assume(role)) if role else self.client(service)

    def log(self, group: str, stream: str, line: str) -> None:
        self.services.log_shipper.put(group, stream, line)

    @property
    def work_root(self) -> Path:
        return self.services.state_dir / "sagemaker"

    @property
    def clock(self) -> VirtualClock:
        return self.services.clock

    def worker_environment(self) -> dict[str, str]:
        """The cloud's environment for the processes a runner starts (containers keep its clock, not its keys)."""
        return self.services.worker_environment()

    # ------------------------------------------------------------------ events

    def emit(self, detail_type: str, resource_arn: str, detail: dict[str, Any]) -> None:
        """Queue a state-change event; one thread puts them in order, off the API's and the jobs' paths."""
        entry = {
            "Source": "aws.sagemaker",
            "DetailType": detail_type,
            "Resources": [resource_arn],
            "Detail": json.dumps(epoch_millis(detail), default=str),
        }
        fault = self.faults.for_event(detail_type, resource_arn, detail)
        if fault is None:
            self._events.put(entry)
        elif fault.kind == "event-drop":
            log.info("fault %s dropped %s for %s", fault.id, detail_type, resource_arn)
        else:  # a delayed event arrives after the ones emitted meanwhile, as a late delivery would
            timer = threading.Timer(self.clock.wall_seconds(fault.delay_seconds), self._events.put, [entry])
            timer.daemon = True
            timer.start()

    def _put_events(self) -> None:
        client = None
        while (entry := self._events.get()) is not None:
            try:
                client = client or self.client("events")
                client.put_events(Entries=[entry])
            except Exception:  # an event that cannot be put must not fail anything else
                log.exception("could not put %s for %s", entry["DetailType"], entry["Resources"][0])

    # ------------------------------------------------------------------ shared by every family

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    @staticmethod
    def _page(items: list[dict[str, Any]], p: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults", 100))
        page: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            page["NextToken"] = str(start + size)
        return page
