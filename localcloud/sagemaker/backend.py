"""The local SageMaker control plane: one backend composed of its resource families, answering the API.

Operations are methods named as boto3 names them (``create_training_job``); each takes the request's
parameters (already validated against botocore's model) and returns the response body. Real work runs
in runners (training_runner.py, transform.py, monitoring/processing.py) and fleets (serving.py) on threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcloud.sagemaker.endpoint_operations import EndpointOperations
from localcloud.sagemaker.endpoints import Fleet
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.sagemaker.model_operations import ModelOperations
from localcloud.sagemaker.monitoring.schedule_operations import MonitoringOperations
from localcloud.services import CloudServices


class SageMakerBackend(MonitoringOperations, ModelOperations, EndpointOperations):
    """Jobs (training, transform, processing), models and the registry, endpoints, Model Monitor schedules."""

    def __init__(
        self,
        services: CloudServices,
        *,
        metrics: EndpointMetrics,
        scalable_variants: Callable[[str], set[str]],
    ) -> None:
        super().__init__(services, metrics=metrics, scalable_variants=scalable_variants)
        self.fleet_factory = self._serving_fleet

    def _serving_fleet(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> Fleet:
        from localcloud.sagemaker.serving import make_fleet

        return make_fleet(model, variant, count, self, endpoint, shadow=shadow)

    # ------------------------------------------------------------------ tags

    def add_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            tags = {t["Key"]: t for t in self.tags.get(p["ResourceArn"], [])}
            tags.update({t["Key"]: t for t in p["Tags"]})
            self.tags[p["ResourceArn"]] = list(tags.values())
        return {"Tags": p["Tags"]}

    def list_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": list(self.tags.get(p["ResourceArn"], []))}

    def delete_tags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.tags[p["ResourceArn"]] = [
                t for t in self.tags.get(p["ResourceArn"], []) if t["Key"] not in p["TagKeys"]
            ]
        return {}

    def stop(self) -> None:
        self._stop_monitoring()
        for job in [*self.training_jobs.values(), *self.transform_jobs.values()]:
            job.stop_requested.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for endpoint in list(self.endpoints.values()):
            for variant in list(endpoint.variants.values()):
                variant.fleet.stop()
            if endpoint.capture is not None:
                endpoint.capture.close()
        self._events.put(None)
        self._event_thread.join(timeout=5)


SUPPORTED_OPERATIONS = frozenset(
    name
    for name in dir(SageMakerBackend)
    if not name.startswith("_")
    and name not in {"client", "log", "work_root", "clock", "worker_environment", "emit", "stop", "fleet_factory"}
)
