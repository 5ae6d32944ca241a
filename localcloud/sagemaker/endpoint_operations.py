"""Endpoint configs and endpoints: creation, updates with blue/green traffic shifting, weights, deletion."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from localcloud.sagemaker.capture import CaptureWriter
from localcloud.sagemaker.control_plane import FAULT_TAG_PREFIX, ControlPlane, SageMakerError, arn
from localcloud.sagemaker.endpoints import Endpoint, ModelLoadFailed, Variant, check_endpoint_config, describe
from localcloud.sagemaker.events import deployment_state_change, endpoint_state_change
from localcloud.sagemaker.jobs import utcnow

# The statuses in which SageMaker refuses DeleteEndpoint. SystemUpdating: the endpoint "cannot be updated or deleted
# or re-scaled until it has completed" (DescribeEndpoint's EndpointStatus,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html). An endpoint still Creating,
# Updating or RollingBack is refused alike with a ValidationException, as UpdateEndpoint refuses it: reported for
# Creating in aws/amazon-sagemaker-examples#3432 ("stuck at Creating ... no way of deleting it" until it failed) and
# #3188 ("the endpoint was still in-progress ... causing a failure"), for Updating in
# hashicorp/terraform-provider-aws#39152. Failed, InService, OutOfService and UpdateRollbackFailed endpoints can be
# deleted ("DeleteEndpoint is the only operation that can be performed on a failed endpoint", the same page).
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


class EndpointOperations(ControlPlane):
    """Endpoint configs, and endpoints whose variants run as fleets of model workers."""

    # ------------------------------------------------------------------ endpoint configs

    def create_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["EndpointConfigName"]
        config_arn = arn(f"endpoint-config/{name.lower()}")
        with self.lock:
            if name in self.endpoint_configs:
                raise SageMakerError(f'Cannot create already existing endpoint configuration "{config_arn}".')
            problems = check_endpoint_config(p, self.models)
            if problems:
                raise SageMakerError(" ".join(problems))
            config = {k: copy.deepcopy(v) for k, v in p.items() if k != "Tags"}
            config.update({"EndpointConfigArn": config_arn, "CreationTime": utcnow()})
            self.endpoint_configs[name] = config
            self.tags[config_arn] = list(p.get("Tags", []))
        return {"EndpointConfigArn": config_arn}

    def _endpoint_config(self, name: str) -> dict[str, Any]:
        config = self.endpoint_configs.get(name)
        if config is None:
            raise SageMakerError(f'Could not find endpoint configuration "{arn("endpoint-config/" + name.lower())}".')
        return config

    def describe_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))

    def list_endpoint_configs(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            configs = list(self.endpoint_configs.values())
        if p.get("NameContains"):
            configs = [c for c in configs if p["NameContains"] in c["EndpointConfigName"]]
        configs.sort(key=lambda c: c["CreationTime"], reverse=p.get("SortOrder", "Descending") == "Descending")
        items = [{k: c[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")} for c in configs]
        return self._page(items, p, "EndpointConfigs")

    def delete_endpoint_config(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._endpoint_config(p["EndpointConfigName"])
            del self.endpoint_configs[p["EndpointConfigName"]]
        return {}

    # ------------------------------------------------------------------ endpoints

    def _endpoint(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise SageMakerError(f'Could not find endpoint "{name}".')
        return endpoint

    def _endpoint_changed(self, endpoint: Endpoint) -> None:
        config = self.endpoint_configs.get(endpoint.config_name)
        detail = endpoint_state_change(endpoint, config, self.tags.get(endpoint.arn, []))
        self.emit("SageMaker Endpoint State Change", endpoint.arn, detail)

    def _set_endpoint_status(self, endpoint: Endpoint, status: str, failure: str | None = None) -> None:
        with endpoint.lock:
            endpoint.status = status
            endpoint.failure_reason = failure
            endpoint.last_modified = utcnow()
        self._endpoint_changed(endpoint)

    def _fault(self, endpoint: Endpoint, name: str) -> bool:
        """Opt-in fault injection by tag, e.g. shepherd:fault:fail-next-update = true (consumed once)."""
        key = f"{FAULT_TAG_PREFIX}{name}"
        with self.lock:
            tags = self.tags.get(endpoint.arn, [])
            if not any(t["Key"] == key and t["Value"].lower() == "true" for t in tags):
                return False
            self.tags[endpoint.arn] = [t for t in tags if t["Key"] != key]
            return True

    def _build_variants(
        self,
        endpoint: str,
        config: dict[str, Any],
        retained: dict[str, Variant],
        excluded: frozenset[str] = frozenset(),
    ) -> dict[str, Variant]:
        """Start a fleet for every variant of the config; on a load failure stop those started and raise.

        A retained variant keeps its current weight and count, except the properties that
        ExcludeRetainedVariantProperties names: those come from the new config, as on SageMaker.
        """
        built: dict[str, Variant] = {}
        try:
            for shadow, key in ((False, "ProductionVariants"), (True, "ShadowProductionVariants")):
                for spec in config.get(key) or []:
                    old = retained.get(spec["VariantName"])
                    keep_weight = old is not None and "DesiredWeight" not in excluded
                    keep_count = old is not None and "DesiredInstanceCount" not in excluded
                    weight = old.current_weight if old and keep_weight else float(spec.get("InitialVariantWeight", 1.0))
                    count = old.current_count if old and keep_count else int(spec.get("InitialInstanceCount", 1))
                    model = self.models.get(spec["ModelName"])
                    if model is None:
                        raise ModelLoadFailed(f'Could not find model "{spec["ModelName"]}".')
                    fleet = self.fleet_factory(model, spec, count, endpoint, shadow=shadow)
                    built[spec["VariantName"]] = Variant(spec, fleet, shadow, weight, weight, count, count)
                    fleet.start()
        except Exception:
            for variant in built.values():
                variant.fleet.stop()
            raise
        return built

    def _capture_writer(self, endpoint: str, endpoint_config: dict[str, Any]) -> CaptureWriter | None:
        """Data capture, written as the execution role of the config's first model (which must be allowed to put
        the objects, and to use the capture KMS key, as on AWS)."""
        config = endpoint_config.get("DataCaptureConfig")
        if not config or not config.get("EnableCapture", True):
            return None
        variants = endpoint_config.get("ProductionVariants") or [{}]
        model = self.models.get(variants[0].get("ModelName", ""), {})
        return CaptureWriter(endpoint, config, lambda: self.model_client(model, "s3"), now=self.clock.now)

    def create_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["EndpointName"]
        endpoint_arn = arn(f"endpoint/{name.lower()}")
        with self.lock:
            if name in self.endpoints:
                raise SageMakerError(f'Cannot create already existing endpoint "{endpoint_arn}".')
            config = copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))
            now = utcnow()
            endpoint = Endpoint(
                name,
                endpoint_arn,
                p["EndpointConfigName"],
                "Creating",
                now,
                now,
                data_capture=config.get("DataCaptureConfig"),
            )
            self.endpoints[name] = endpoint
            self.tags[endpoint_arn] = list(p.get("Tags", []))
        self._endpoint_changed(endpoint)

        def deploy() -> None:
            try:
                variants = self._build_variants(name, config, {})
            except Exception as exc:
                self._set_endpoint_status(endpoint, "Failed", _load_failure(exc))
                return
            with endpoint.lock:
                endpoint.variants = variants
                endpoint.capture = self._capture_writer(name, config)
            self._set_endpoint_status(endpoint, "InService")

        self._in_background(f"endpoint-{name}", deploy)
        return {"EndpointArn": endpoint_arn}

    def describe_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        return describe(self._endpoint(p["EndpointName"]), self.models)

    def list_endpoints(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            endpoints = list(self.endpoints.values())
        if p.get("NameContains"):
            endpoints = [e for e in endpoints if p["NameContains"] in e.name]
        if p.get("StatusEquals"):
            endpoints = [e for e in endpoints if e.status == p["StatusEquals"]]
        endpoints.sort(
            key=lambda e: e.name if p.get("SortBy") == "Name" else e.creation_time,
            reverse=p.get("SortOrder", "Descending") == "Descending",
        )
        items = [
            {
                "EndpointName": e.name,
                "EndpointArn": e.arn,
                "CreationTime": e.creation_time,
                "LastModifiedTime": e.last_modified,
                "EndpointStatus": e.status,
            }
            for e in endpoints
        ]
        return self._page(items, p, "Endpoints")

    def _require_in_service(self, endpoint: Endpoint, action: str) -> None:
        if endpoint.status != "InService":
            raise SageMakerError(f'Cannot {action} in-progress endpoint "{endpoint.arn}".')

    def update_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        with endpoint.lock:
            self._require_in_service(endpoint, "update")
            config = copy.deepcopy(self._endpoint_config(p["EndpointConfigName"]))
            kept = {
                v["VariantName"]
                for key in ("ProductionVariants", "ShadowProductionVariants")
                for v in config.get(key) or []
            }
            scaled = sorted(self.scalable_variants(endpoint.name) - kept)
            if scaled:
                raise SageMakerError(
                    f'The variant(s) {scaled} of endpoint "{endpoint.name}" are registered as Application Auto '
                    "Scaling scalable targets and cannot be removed. Deregister them first."
                )
            retain = p.get("RetainAllVariantProperties", False)
            excluded = {e["VariantPropertyType"] for e in p.get("ExcludeRetainedVariantProperties", [])}
            endpoint.pending_config = p["EndpointConfigName"]
            if p.get("DeploymentConfig"):
                endpoint.last_deployment_config = p["DeploymentConfig"]
            current = dict(endpoint.variants)
        self._set_endpoint_status(endpoint, "Updating")
        retained = {} if not retain else dict(current)

        def update() -> None:
            try:
                if self._fault(endpoint, "fail-next-update"):
                    raise ModelLoadFailed("Injected fault: the update's new fleet failed its health check.")
                variants = self._build_variants(endpoint.name, config, retained, frozenset(excluded))
            except Exception as exc:
                with endpoint.lock:
                    endpoint.pending_config = None
                self._set_endpoint_status(
                    endpoint,
                    "InService",
                    f"Update failed, the endpoint keeps its previous configuration: {_load_failure(exc)}",
                )
                return
            blue_green = (deployment or {}).get("BlueGreenUpdatePolicy")
            if blue_green and not self._shift_traffic(endpoint, variants, blue_green, deployment or {}):
                for variant in variants.values():
                    variant.fleet.stop()
                return
            with endpoint.lock:
                endpoint.variants = variants
                endpoint.green, endpoint.green_share = None, 0.0
                endpoint.config_name = config["EndpointConfigName"]
                endpoint.data_capture = config.get("DataCaptureConfig")
                endpoint.pending_config = None
                old_capture, endpoint.capture = (
                    endpoint.capture,
                    self._capture_writer(endpoint.name, config),
                )
            for variant in current.values():
                variant.fleet.stop()
            if old_capture is not None:
                old_capture.close()
            self._set_endpoint_status(endpoint, "InService")

        deployment = p.get("DeploymentConfig")
        self._in_background(f"endpoint-update-{endpoint.name}", update)
        return {"EndpointArn": endpoint.arn}

    # ------------------------------------------------------------------ blue/green deployments

    def _baking_event(self, endpoint: Endpoint, green: dict[str, Variant], share: float, bake: float) -> None:
        """AWS documents deployment events for steps in progress only: completion and rollback are endpoint events."""
        instances = max(1, round(share * sum(v.current_count for v in green.values() if not v.shadow)))
        capacity = "full" if share >= 1.0 else "canary"
        message = (
            f"Baking for {bake:g} seconds (WaitIntervalInSeconds) with traffic enabled on {capacity} capacity "
            f"of {instances} instance(s)."
        )
        detail = deployment_state_change(endpoint, green, message, utcnow(), self.tags.get(endpoint.arn, []))
        self.emit("SageMaker Endpoint Deployment State Change", endpoint.arn, detail)

    def _alarm_in_alarm(self, names: list[str]) -> str | None:
        if not names:
            return None
        alarms = self.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
        return next((a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"), None)

    def _shift_traffic(
        self, endpoint: Endpoint, green: dict[str, Variant], policy: dict[str, Any], deployment: dict[str, Any]
    ) -> bool:
        """Move traffic to the green fleet in SageMaker's steps, baking each while watching the alarms.

        Returns False after a rollback (all traffic back on blue, green to be torn down).
        """
        routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        steps = _traffic_steps(routing, sum(v.current_count for v in green.values() if not v.shadow))
        bake = float(routing.get("WaitIntervalInSeconds", 0))
        alarms = [a["AlarmName"] for a in (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
        clock = self.clock
        deadline = clock.now() + timedelta(seconds=float(policy.get("MaximumExecutionTimeoutInSeconds", 28800)))
        for share in steps:
            with endpoint.lock:
                endpoint.green, endpoint.green_share = green, share
            self._baking_event(endpoint, green, share, bake)
            bake_until = clock.now() + timedelta(seconds=bake)
            while True:
                tripped = self._alarm_in_alarm(alarms)
                expired = clock.now() > deadline
                if tripped or expired:
                    reason = f"Alarm {tripped} is in ALARM" if tripped else "MaximumExecutionTimeoutInSeconds elapsed"
                    self._roll_back(endpoint, reason)
                    return False
                if clock.now() >= bake_until:
                    break
                clock.sleep(min(5.0, max(0.0, (bake_until - clock.now()).total_seconds())))
        termination = float(policy.get("TerminationWaitInSeconds", 0))
        if termination:
            clock.sleep(termination)
        return True

    def _roll_back(self, endpoint: Endpoint, reason: str) -> None:
        self._set_endpoint_status(endpoint, "RollingBack", f"Deployment rolled back: {reason}")
        with endpoint.lock:
            endpoint.green, endpoint.green_share = None, 0.0
            endpoint.pending_config = None
        self._set_endpoint_status(endpoint, "InService", f"Deployment rolled back: {reason}")

    def update_endpoint_weights_and_capacities(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        with endpoint.lock:
            self._require_in_service(endpoint, "update")
            missing = [
                d["VariantName"] for d in p["DesiredWeightsAndCapacities"] if d["VariantName"] not in endpoint.variants
            ]
            if missing:
                raise SageMakerError(
                    f'The variant(s) "{missing}" is/are not present in the endpoint "{endpoint.name}".'
                )
            for desired in p["DesiredWeightsAndCapacities"]:
                variant = endpoint.variants[desired["VariantName"]]
                if "DesiredWeight" in desired:
                    variant.desired_weight = float(desired["DesiredWeight"])
                if "DesiredInstanceCount" in desired:
                    variant.desired_count = int(desired["DesiredInstanceCount"])
            if not any(v.desired_weight > 0 for v in endpoint.production):
                raise SageMakerError("At least one production variant must have a weight greater than 0.")
        self._set_endpoint_status(endpoint, "Updating")

        def apply() -> None:
            with endpoint.lock:
                variants = list(endpoint.variants.values())
            for variant in variants:
                if variant.desired_count != variant.current_count:
                    variant.fleet.resize(variant.desired_count)
            with endpoint.lock:
                for variant in variants:
                    variant.current_count = variant.desired_count
                    variant.current_weight = variant.desired_weight
            self._set_endpoint_status(endpoint, "InService")

        self._in_background(f"endpoint-weights-{endpoint.name}", apply)
        return {"EndpointArn": endpoint.arn}

    def delete_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(p["EndpointName"])
        with endpoint.lock:
            if endpoint.status in IN_PROGRESS:
                raise SageMakerError(f'Cannot delete in-progress endpoint "{endpoint.arn}".')
            endpoint.status = "Deleting"  # under the lock: a second DeleteEndpoint sees it at once
        self._set_endpoint_status(endpoint, "Deleting")

        def delete() -> None:
            with endpoint.lock:
                variants = list(endpoint.variants.values())
                endpoint.variants = {}
                capture, endpoint.capture = endpoint.capture, None
            for variant in variants:
                variant.fleet.stop()
            if capture is not None:
                capture.close()
            with self.lock:
                self.endpoints.pop(endpoint.name, None)

        self._in_background(f"endpoint-delete-{endpoint.name}", delete)
        return {}


def _traffic_steps(routing: dict[str, Any], green_instances: int) -> list[float]:
    """The shares of traffic on green after each step of ALL_AT_ONCE, CANARY or LINEAR routing."""
    kind = routing.get("Type", "ALL_AT_ONCE")
    if kind == "ALL_AT_ONCE":
        return [1.0]
    size = routing.get("CanarySize" if kind == "CANARY" else "LinearStepSize") or {}
    value = float(size.get("Value", 10))
    step = (
        value / 100 if size.get("Type", "CAPACITY_PERCENT") == "CAPACITY_PERCENT" else value / max(1, green_instances)
    )
    step = min(1.0, max(step, 0.01))
    if kind == "CANARY":
        return [step, 1.0]
    shares, share = [], step
    while share < 1.0 - 1e-9:
        shares.append(round(share, 6))
        share += step
    return [*shares, 1.0]


def _load_failure(exc: Exception) -> str:
    if isinstance(exc, ModelLoadFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
