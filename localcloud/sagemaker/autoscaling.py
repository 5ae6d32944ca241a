"""Application Auto Scaling for SageMaker endpoint variants, really changing instance counts.

moto stores scalable targets and policies but never scales. Here a thread on the virtual
clock evaluates every target-tracking policy of namespace ``sagemaker`` once a minute
(virtual): the metric (SageMakerVariantInvocationsPerInstance, or a customized one) is
read back from CloudWatch for the latest complete minute, the new capacity is current x
metric / target (rounded up, clamped to the target's min and max), scale-in waits for a
10 % margin below the target, and each direction honours its cooldown. Every change is a scaling activity, served by
DescribeScalingActivities, and goes through the endpoint as UpdateEndpointWeightsAndCapacities would.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from localcloud.clock import VirtualClock
from localcloud.moto import applicationautoscaling
from localcloud.sagemaker.endpoints import LiveEndpoints
from localcloud.sagemaker.metrics import PERIOD_SECONDS, EndpointMetrics
from localcloud.services import Clients
from localcloud.wsgi import json_response

log = logging.getLogger("shepherd.local.autoscaling")
EVALUATION_SECONDS = 60
SCALE_IN_MARGIN = 0.9
_TARGET = "AnyScaleFrontendService."


class ScalableEndpoints(LiveEndpoints, Protocol):
    """What the autoscaler scales (the SageMaker backend): live endpoints, and the operation that resizes them."""

    def update_endpoint_weights_and_capacities(self, p: dict[str, Any]) -> dict[str, Any]: ...


def registered_variants(endpoint: str) -> set[str]:
    """Variants of an endpoint that are scalable targets (SageMaker refuses to remove those)."""
    prefix = f"endpoint/{endpoint}/variant/"
    return {
        t.resource_id[len(prefix) :]
        for t in applicationautoscaling.backend().describe_scalable_targets("sagemaker", None, None)
        if t.resource_id.startswith(prefix)
    }


class EndpointAutoscaler:
    """Reads ``metrics`` back through CloudWatch (``clients``) on ``clock``, and resizes ``sagemaker``'s variants."""

    def __init__(
        self, clock: VirtualClock, clients: Clients, sagemaker: ScalableEndpoints, metrics: EndpointMetrics
    ) -> None:
        self.clock = clock
        self.clients = clients
        self.sagemaker = sagemaker
        self.metrics = metrics
        self.activities: list[dict[str, Any]] = []
        self._last_scale: dict[tuple[str, str], datetime] = {}
        self._acted_on: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()  # the clock's round and an explicit evaluate() must not race
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoscaling", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self.clock.sleep(EVALUATION_SECONDS, self._stop):
            try:
                self.evaluate()
            except Exception:  # one bad policy must not stop scaling for the others
                log.exception("autoscaling evaluation failed")

    def evaluate(self) -> None:
        with self._evaluating:
            self._evaluate_all()

    def _evaluate_all(self) -> None:
        self.metrics.flush()  # the periods that closed since the metrics thread published
        backend = applicationautoscaling.backend()
        for policy in list(backend.policies.values()):
            config = policy.target_tracking_scaling_policy_configuration
            if policy.service_namespace != "sagemaker" or not config:
                continue
            targets = backend.describe_scalable_targets("sagemaker", [policy.resource_id], policy.scalable_dimension)
            if targets:
                self._evaluate(policy, targets[0], config)

    def _evaluate(self, policy: Any, target: Any, config: dict[str, Any]) -> None:
        parts = policy.resource_id.split("/")  # endpoint/<e>/variant/<v>
        if len(parts) != 4:
            return
        endpoint_name, variant_name = parts[1], parts[3]
        endpoint = self.sagemaker.endpoints.get(endpoint_name)
        if endpoint is None or endpoint.status != "InService" or variant_name not in endpoint.variants:
            return
        current = endpoint.variants[variant_name].current_count
        measured = self._metric(config, endpoint_name, variant_name)
        if measured is None:
            return
        value, period = measured
        key = (endpoint_name, variant_name)
        if self._acted_on.get(key) == period:
            return  # each period's datapoint is acted on once, not again after the capacity it caused
        self._acted_on[key] = period
        goal = float(config["TargetValue"])
        wanted = math.ceil(current * value / goal) if goal > 0 else current
        if wanted < current and value >= goal * SCALE_IN_MARGIN:
            wanted = current
        suspended = target.suspended_state or {}
        if wanted > current and suspended.get("DynamicScalingOutSuspended"):
            return
        if wanted < current and (config.get("DisableScaleIn") or suspended.get("DynamicScalingInSuspended")):
            return
        wanted = max(int(target.min_capacity), min(int(target.max_capacity), wanted))
        if wanted == current:
            return
        cooldown = float(config.get("ScaleOutCooldown" if wanted > current else "ScaleInCooldown", 300))
        now = self.clock.now()
        last = self._last_scale.get((endpoint_name, variant_name))
        if last is not None and now - last < timedelta(seconds=cooldown):
            return
        self._scale(policy, endpoint_name, variant_name, current=current, wanted=wanted, value=value, goal=goal)

    def _metric(self, config: dict[str, Any], endpoint: str, variant: str) -> tuple[float, datetime] | None:
        now = self.clock.now()
        predefined = config.get("PredefinedMetricSpecification")
        if predefined:
            if predefined.get("PredefinedMetricType") != "SageMakerVariantInvocationsPerInstance":
                return None
            namespace, name, statistic = "AWS/SageMaker", "InvocationsPerInstance", "Sum"
            if not self.metrics.invoked_since(endpoint, variant, now - timedelta(minutes=3)):
                return None  # an idle variant has no datapoint to read: no request to CloudWatch per minute
            dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        else:
            custom = config.get("CustomizedMetricSpecification") or {}
            if "MetricName" not in custom:
                return None
            namespace, name = custom["Namespace"], custom["MetricName"]
            statistic, dimensions = custom.get("Statistic", "Average"), custom.get("Dimensions", [])
        points = self.clients.client("cloudwatch").get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=dimensions,
            StartTime=now - timedelta(minutes=3),
            EndTime=now,
            Period=PERIOD_SECONDS,
            Statistics=[statistic],
        )["Datapoints"]
        # Only complete periods, as CloudWatch alarms judge them: the current minute's partial sum
        # would understate the load, and each period is acted on once (see _evaluate)
        closed = now - timedelta(seconds=PERIOD_SECONDS)
        points = [p for p in points if p["Timestamp"] <= closed]
        if not points:
            return None
        latest = max(points, key=lambda p: p["Timestamp"])
        return float(latest[statistic]), latest["Timestamp"]

    def _scale(
        self, policy: Any, endpoint: str, variant: str, *, current: int, wanted: int, value: float, goal: float
    ) -> None:
        now = self.clock.now()
        direction = "out" if wanted > current else "in"
        cause = (
            f"monitor alarm TargetTracking-{policy.resource_id} in state ALARM triggered policy "
            f"{policy.policy_name}: metric {value:g} {'above' if wanted > current else 'below'} target {goal:g}"
        )
        activity = {
            "ActivityId": str(uuid.uuid4()),
            "ServiceNamespace": "sagemaker",
            "ResourceId": policy.resource_id,
            "ScalableDimension": policy.scalable_dimension,
            "Description": f"Setting desired instance count to {wanted}.",
            "Cause": cause,
            "StartTime": now,
            "StatusCode": "InProgress",
        }
        with self._lock:
            self.activities.insert(0, activity)
            self._last_scale[(endpoint, variant)] = now
        log.info("scaling %s/%s %s: %d -> %d", endpoint, variant, direction, current, wanted)
        try:
            self.sagemaker.update_endpoint_weights_and_capacities(
                {
                    "EndpointName": endpoint,
                    "DesiredWeightsAndCapacities": [{"VariantName": variant, "DesiredInstanceCount": wanted}],
                }
            )
        except Exception as exc:
            activity.update(StatusCode="Failed", StatusMessage=str(exc), EndTime=self.clock.now())
            return
        activity.update(
            StatusCode="Successful",
            StatusMessage=f"Successfully set desired instance count to "
            f"{wanted}. Change successfully fulfilled by sagemaker.",
            EndTime=self.clock.now(),
        )

    def describe(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            items = [a for a in self.activities if a["ServiceNamespace"] == p.get("ServiceNamespace")]
        if p.get("ResourceId"):
            items = [a for a in items if a["ResourceId"] == p["ResourceId"]]
        if p.get("ScalableDimension"):
            items = [a for a in items if a["ScalableDimension"] == p["ScalableDimension"]]
        return {
            "ScalingActivities": [
                {k: (v.timestamp() if isinstance(v, datetime) else v) for k, v in a.items()} for a in items
            ]
        }


class AutoscalingApi:
    """DescribeScalingActivities, which moto lacks; every other Application Auto Scaling call goes to moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]], scaler: EndpointAutoscaler) -> None:
        self.app = app
        self.scaler = scaler

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != f"{_TARGET}DescribeScalingActivities":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        params = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        return json_response(start_response, "200 OK", self.scaler.describe(params), "application/x-amz-json-1.1")
