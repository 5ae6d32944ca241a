"""A variant's instances for real: model worker processes, loaded before they serve.

Real-time (``VariantFleet``: one single-process pool per instance), serverless (``ServerlessFleet``: cold
starts, MaxConcurrency, scale to zero) and multi-model (``MultiModelFleet``: load on first use, LRU under a
memory budget); a shadow's workers run at nice ``SHADOW_NICE``. How each behaves: docs/LOCAL_SAGEMAKER.md.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from localcloud.clock import VirtualClock
from localcloud.sagemaker.endpoints import (
    Fleet,
    InvocationFailed,
    InvocationRequest,
    ModelLoadFailed,
    TargetModelNotFound,
    Throttled,
)
from localcloud.sagemaker.inference import InferenceError, UnsupportedImage
from localcloud.sagemaker.metrics import EndpointMetrics
from localcloud.sagemaker.model_artifacts import PreparedModel, prepare_model
from localcloud.sagemaker.model_worker import isolation_environment
from localcloud.sagemaker.model_worker_pool import ModelWorkerPool

LOG_GROUP = "/aws/sagemaker/Endpoints"
INSTANCE_ID = "i-local"  # the instance part of a variant's log stream, <variant>/<instance id> as on AWS
DRAIN_SECONDS = 60.0  # wall seconds a replaced fleet waits for its in-flight requests
SHADOW_NICE = 10  # added to a shadow variant's worker processes' nice value


class FleetHost(Protocol):
    """What a fleet uses of the local SageMaker (the backend is one): a work root, logs, the model's S3 client,
    the clock its idle timeouts run on, and the endpoint metrics its loads are observed in."""

    @property
    def work_root(self) -> Path: ...

    def log(self, group: str, stream: str, line: str) -> None: ...

    def model_client(self, model: dict[str, Any], service: str) -> Any: ...

    @property
    def clock(self) -> VirtualClock: ...

    @property
    def metrics(self) -> EndpointMetrics: ...


class _InstanceFleet:
    """What real-time and multi-model fleets share: the model, the variant, a work dir, a log stream."""

    def __init__(
        self,
        model: dict[str, Any],
        variant: dict[str, Any],
        count: int,
        host: FleetHost,
        endpoint: str,
        *,
        nice: int = 0,
    ) -> None:
        self.model = model
        self.variant = variant
        self.count = count
        self.host = host
        self.endpoint = endpoint
        self.nice = nice
        self.work_dir = host.work_root / "endpoints" / f"{variant['VariantName']}-{uuid.uuid4().hex[:8]}"

    def _log(self, line: str) -> None:
        self.host.log(LOG_GROUP + "/" + self.endpoint, f"{self.variant['VariantName']}/{INSTANCE_ID}", line)


class VariantFleet(_InstanceFleet):
    def __init__(
        self,
        model: dict[str, Any],
        variant: dict[str, Any],
        count: int,
        host: FleetHost,
        endpoint: str,
        *,
        nice: int = 0,
    ) -> None:
        super().__init__(model, variant, count, host, endpoint, nice=nice)
        self._prepared: PreparedModel | None = None
        self._instances: list[ModelWorkerPool] = []
        self._idle: queue.Queue[ModelWorkerPool] = queue.Queue()
        self._retire = 0
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._inflight = 0
        self._stopped = False

    def _new_instance(self) -> ModelWorkerPool:
        assert self._prepared is not None
        pool = ModelWorkerPool(
            self._prepared,
            1,
            log_line=self._log,
            name=self.variant["VariantName"],
            nice=self.nice,
            extra_env=isolation_environment(self.model),
        ).start()
        try:
            pool.wait_ready()
        except InferenceError as exc:
            pool.close()
            raise ModelLoadFailed(f"The model of variant {self.variant['VariantName']} failed to load: {exc}") from exc
        return pool

    def start(self) -> None:
        try:
            self._prepared = prepare_model(
                _container(self.model), self.host.model_client(self.model, "s3"), self.work_dir, self._log
            )
        except UnsupportedImage as exc:
            raise ModelLoadFailed(str(exc)) from exc
        except InferenceError as exc:
            raise ModelLoadFailed(
                f"The model of variant {self.variant['VariantName']} could not be prepared: {exc}"
            ) from exc
        try:
            for _ in range(max(1, self.count)):
                self._add(self._new_instance())
        except ModelLoadFailed:
            self.stop()
            raise

    def _add(self, instance: ModelWorkerPool) -> None:
        with self._lock:
            self._instances.append(instance)
        self._idle.put(instance)

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        with self._lock:
            self._inflight += 1
        try:
            instance = self._idle.get()
            try:
                return instance.invoke(request.body, request.content_type, request.accept)
            except InferenceError as exc:
                raise InvocationFailed(exc.status, str(exc)) from exc
            finally:
                self._release(instance)
        finally:
            with self._lock:
                self._inflight -= 1
                if not self._inflight:
                    self._drained.notify_all()

    def crash(self) -> None:
        """Fault injection (localcloud/faults.py): the instance next in line dies, as a crashed container does, and is
        started again, loaded, before it takes traffic."""
        instance = self._idle.get()
        instance.close()
        try:
            replacement = self._new_instance()
        except ModelLoadFailed:
            with self._lock:
                self._instances.remove(instance)
            raise
        with self._lock:
            self._instances[self._instances.index(instance)] = replacement
        self._idle.put(replacement)

    def _release(self, instance: ModelWorkerPool) -> None:
        if not self._retire:  # the fast path, without the lock: no instance is due to retire
            self._idle.put(instance)
            return
        with self._lock:
            if self._retire > 0 and len(self._instances) > 1:
                self._retire -= 1
                self._instances.remove(instance)
                retired = True
            else:
                retired = False
        if retired:
            instance.close()
        else:
            self._idle.put(instance)

    def resize(self, count: int) -> None:
        """New instances load fully before taking traffic; surplus ones retire when next idle."""
        with self._lock:
            current = len(self._instances) - self._retire
        for _ in range(count - current):
            self._add(self._new_instance())
        if count < current:
            with self._lock:
                self._retire += current - count
            for _ in range(current - count):
                with contextlib.suppress(queue.Empty):
                    self._release(self._idle.get_nowait())
        self.count = count

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [pid for instance in self._instances for pid in instance.pids]

    def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Let requests already routed here finish (a replaced fleet drains), then shut down."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._drained.wait_for(lambda: self._inflight == 0, timeout=drain_seconds)
            instances, self._instances = list(self._instances), []
        for instance in instances:
            instance.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _container(model: dict[str, Any]) -> dict[str, Any]:
    return dict(model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0])


def make_fleet(
    model: dict[str, Any],
    variant: dict[str, Any],
    count: int,
    host: FleetHost,
    endpoint: str,
    *,
    shadow: bool = False,
) -> Fleet:
    """The fleet for one variant; a shadow variant's (``shadow``) workers run at nice SHADOW_NICE."""
    nice = SHADOW_NICE if shadow else 0
    if "ServerlessConfig" in variant:
        return ServerlessFleet(model, variant, host, endpoint, nice=nice)
    if _container(model).get("Mode") == "MultiModel":
        return MultiModelFleet(model, variant, count, host, endpoint, nice=nice)
    return VariantFleet(model, variant, count, host, endpoint, nice=nice)


class ServerlessFleet:
    IDLE_SECONDS = 600.0  # virtual seconds an idle serverless instance is kept warm

    def __init__(
        self,
        model: dict[str, Any],
        variant: dict[str, Any],
        host: FleetHost,
        endpoint: str,
        *,
        nice: int = 0,
    ) -> None:
        self.variant = variant
        self.host = host
        self.endpoint = endpoint
        self.max_concurrency = int(variant["ServerlessConfig"]["MaxConcurrency"])
        self._loader = VariantFleet(model, variant, 0, host, endpoint, nice=nice)
        self._idle: list[tuple[ModelWorkerPool, float]] = []
        self._active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name=f"serverless-{endpoint}", daemon=True)

    def start(self) -> None:
        """Prepare the model and prove it loads (creation fails otherwise); keep no instance warm."""
        self._loader.start()
        self._loader.resize(0)
        self._reaper.start()

    @property
    def warm_instances(self) -> int:
        with self._lock:
            return len(self._idle)

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        with self._lock:
            if self._active >= self.max_concurrency:
                raise Throttled(f"Endpoint {self.endpoint} is at its MaxConcurrency of {self.max_concurrency}.")
            self._active += 1
            instance = self._idle.pop()[0] if self._idle else None
        try:
            if instance is None:
                started = time.perf_counter()
                instance = self._loader._new_instance()
                self.host.metrics.observe(
                    self.endpoint,
                    self.variant["VariantName"],
                    "ModelSetupTime",
                    int((time.perf_counter() - started) * 1e6),
                )
            try:
                return instance.invoke(request.body, request.content_type, request.accept)
            except InferenceError as exc:
                raise InvocationFailed(exc.status, str(exc)) from exc
        finally:
            with self._lock:
                self._active -= 1
                if instance is not None:
                    self._idle.append((instance, time.monotonic()))

    def _reap(self) -> None:
        clock = self.host.clock
        while not self._stop.wait(max(0.05, clock.wall_seconds(self.IDLE_SECONDS) / 10)):
            cutoff = time.monotonic() - clock.wall_seconds(self.IDLE_SECONDS)
            with self._lock:
                expired = [i for i, used in self._idle if used < cutoff]
                self._idle = [(i, used) for i, used in self._idle if used >= cutoff]
            for instance in expired:
                instance.close()

    def resize(self, count: int) -> None:
        """Serverless capacity follows requests, not an instance count."""

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            idle, self._idle = [i for i, _ in self._idle], []
        for instance in idle:
            instance.close()
        self._loader.stop()


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class MultiModelFleet(_InstanceFleet):
    """Models under one S3 prefix, loaded on demand into ``count`` worker processes each, LRU-evicted."""

    def __init__(
        self,
        model: dict[str, Any],
        variant: dict[str, Any],
        count: int,
        host: FleetHost,
        endpoint: str,
        *,
        nice: int = 0,
    ) -> None:
        super().__init__(model, variant, count, host, endpoint, nice=nice)
        container = _container(model)
        self.prefix = str(container.get("ModelDataUrl", "")).rstrip("/") + "/"
        budget = container.get("Environment", {}).get("SHEPHERD_MME_MEMORY_BUDGET_MB", "1024")
        self.budget_bytes = int(float(budget) * 1024 * 1024)
        self._loaded: collections.OrderedDict[str, tuple[ModelWorkerPool, int]] = collections.OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        if not self.prefix.startswith("s3://"):
            raise ModelLoadFailed(f"A multi-model container needs an S3 prefix as ModelDataUrl, got {self.prefix!r}.")

    def loaded_models(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def _observe(self, name: str, value: int) -> None:
        self.host.metrics.observe(self.endpoint, self.variant["VariantName"], name, value)

    def _pool(self, target: str) -> ModelWorkerPool:
        with self._lock:
            if target in self._loaded:
                self._loaded.move_to_end(target)
                self._observe("ModelCacheHit", 1)
                return self._loaded[target][0]
            gate = self._loading.setdefault(target, threading.Lock())
        with gate:
            with self._lock:
                if target in self._loaded:
                    return self._loaded[target][0]
            started = time.perf_counter()
            container = {**_container(self.model), "ModelDataUrl": self.prefix + target}
            target_dir = self.work_dir / uuid.uuid4().hex[:8]
            try:
                prepared = prepare_model(container, self.host.model_client(self.model, "s3"), target_dir, self._log)
            except InferenceError as exc:
                shutil.rmtree(target_dir, ignore_errors=True)
                raise TargetModelNotFound(
                    f"Failed to download model data(bucket: {self.prefix[5:].split('/', 1)[0]}, key: "
                    f"{(self.prefix + target)[5:].split('/', 1)[1]}). Please ensure that there is an object "
                    "located at the URL and that the role passed to CreateModel has permissions to download "
                    "the model."
                ) from exc
            pool = ModelWorkerPool(
                prepared,
                max(1, self.count),
                log_line=self._log,
                name=target,
                nice=self.nice,
                extra_env=isolation_environment(self.model),
            ).start()
            try:
                pool.wait_ready()
            except InferenceError as exc:
                pool.close()
                raise InvocationFailed(exc.status, f"Model {target} failed to load: {exc}") from exc
            size = _directory_bytes(prepared.model_dir)
            self._observe("ModelLoadingWaitTime", int((time.perf_counter() - started) * 1e6))
            self._observe("ModelCacheHit", 0)
            with self._lock:
                self._loaded[target] = (pool, size)
                evicted = []
                while len(self._loaded) > 1 and sum(s for _, s in self._loaded.values()) > self.budget_bytes:
                    evicted.append(self._loaded.popitem(last=False))
            for name, (old, _) in evicted:
                self._log(f"Evicting model {name} to stay within the memory budget")
                old.close()
            return pool

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        if not request.target_model:
            raise TargetModelNotFound("TargetModel is required for a multi-model endpoint.")
        pool = self._pool(request.target_model)
        try:
            return pool.invoke(request.body, request.content_type, request.accept)
        except InferenceError as exc:
            raise InvocationFailed(exc.status, str(exc)) from exc

    def resize(self, count: int) -> None:
        """New loads use the new count; loaded models keep theirs until evicted."""
        self.count = count

    def stop(self) -> None:
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), collections.OrderedDict()
        for pool, _ in loaded:
            pool.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)
