"""In-memory implementations of shepherd.rollout.ports, with SageMaker's and DynamoDB's refusals.

They refuse what the real services refuse where a rollout step depends on it: SageMaker will not remove
a variant that still has a scaling target, or update an endpoint that is not InService; the lock table's
conditions are those of shepherd.aws.rollouts.RolloutTable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shepherd.callbacks import Waiter
from shepherd.errors import Conflict, EndpointBusy, NotFound
from shepherd.rollout.ports import LockHeld, LockLost

LEASE_SECONDS = 3 * 3600


@dataclass
class ManualClock:
    at: datetime = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class FakeEndpoints:
    """Endpoints and Packages: DescribeEndpoint answers as SageMaker gives them once a change has settled."""

    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    scaling: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # creation order, for the List* calls
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _created(self, name: str) -> None:
        self.created.setdefault(name, len(self.created))

    # ------------------------------------------------------------ endpoints and configs

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.live.get(name))

    def describe_endpoint_config(self, name: str) -> dict[str, Any]:
        if name not in self.configs:
            raise NotFound(f"describing endpoint config {name}: Could not find endpoint configuration")
        return copy.deepcopy(self.configs[name])

    def create_endpoint_config(self, request: dict[str, Any]) -> None:
        self.calls.append(("create_endpoint_config", request["EndpointConfigName"]))
        for variant in request["ProductionVariants"] + request.get("ShadowProductionVariants", []):
            if variant["ModelName"] not in self.models:
                raise NotFound(f"Could not find model {variant['ModelName']}")
        self.configs.setdefault(request["EndpointConfigName"], copy.deepcopy(request))
        self._created(request["EndpointConfigName"])

    def _variants(self, config: str, previous: dict[str, Any] | None, *, keep_weights: bool) -> dict[str, Any]:
        """The live variants once UpdateEndpoint (RetainAllVariantProperties) has settled."""
        old = {v["VariantName"]: v for v in (previous or {}).get("ProductionVariants", [])}
        request = self.configs[config]

        def live(variant: dict[str, Any], retained: dict[str, Any] | None) -> dict[str, Any]:
            out: dict[str, Any] = {"VariantName": variant["VariantName"]}
            if "ServerlessConfig" in variant:
                out["CurrentServerlessConfig"] = dict(variant["ServerlessConfig"])
            else:
                out["CurrentInstanceCount"] = (retained or {}).get(
                    "CurrentInstanceCount", variant["InitialInstanceCount"]
                )
            weight = variant["InitialVariantWeight"]
            out["CurrentWeight"] = (retained or {}).get("CurrentWeight", weight) if keep_weights else weight
            return out

        answer: dict[str, Any] = {
            "ProductionVariants": [live(v, old.get(v["VariantName"])) for v in request["ProductionVariants"]]
        }
        if request.get("ShadowProductionVariants"):
            answer["ShadowProductionVariants"] = [live(v, None) for v in request["ShadowProductionVariants"]]
        return answer

    def create_endpoint(self, name: str, config: str, tags: dict[str, str]) -> None:
        self.calls.append(("create_endpoint", name, config))
        if name in self.live:
            raise Conflict(f"Cannot create already existing endpoint {name}")
        variants = self._variants(config, None, keep_weights=False)
        self.live[name] = {"EndpointName": name, "EndpointConfigName": config, "EndpointStatus": "InService"} | variants

    def update_endpoint(self, name: str, config: str, *, exclude_weights: bool) -> None:
        self.calls.append(("update_endpoint", name, config))
        current = self._in_service(name)
        keep = {v["VariantName"] for v in self.configs[config]["ProductionVariants"]}
        for variant in current["ProductionVariants"]:
            if variant["VariantName"] not in keep and (name, variant["VariantName"]) in self.scaling:
                # SageMaker: a variant with a scaling target cannot be removed (deregister it first)
                raise Conflict(f"The variant {variant['VariantName']} has an automatic scaling policy")
        variants = self._variants(config, current, keep_weights=not exclude_weights)
        self.live[name] = current | {"EndpointConfigName": config} | variants
        if "ShadowProductionVariants" not in variants:
            self.live[name].pop("ShadowProductionVariants", None)

    def delete_endpoint(self, name: str) -> None:
        """Gone at once (SageMaker passes through Deleting). SystemUpdating "cannot be updated or deleted"
        (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html, EndpointStatus)."""
        self.calls.append(("delete_endpoint", name))
        if name not in self.live:
            raise NotFound(f"Could not find endpoint {name}")
        if self.live[name]["EndpointStatus"] == "SystemUpdating":
            raise EndpointBusy(f"Cannot delete in-progress endpoint {name}")
        del self.live[name]

    def update_weights(self, name: str, desired: list[dict[str, Any]]) -> None:
        self.calls.append(("update_weights", name, tuple((d["VariantName"], d["DesiredWeight"]) for d in desired)))
        current = self._in_service(name)
        variants = {v["VariantName"]: v for v in current["ProductionVariants"]}
        for wanted in desired:
            if wanted["VariantName"] not in variants:
                raise NotFound(f"The variant {wanted['VariantName']} does not exist on endpoint {name}")
            variants[wanted["VariantName"]]["CurrentWeight"] = wanted["DesiredWeight"]
            if "DesiredInstanceCount" in wanted:
                variants[wanted["VariantName"]]["CurrentInstanceCount"] = wanted["DesiredInstanceCount"]

    def _in_service(self, name: str) -> dict[str, Any]:
        if name not in self.live:
            raise NotFound(f"Could not find endpoint {name}")
        if self.live[name]["EndpointStatus"] != "InService":
            raise EndpointBusy(f"Cannot update in-progress endpoint {name}")
        return self.live[name]

    # ------------------------------------------------------------ scaling

    def register_scaling(
        self, endpoint: str, variant: str, *, minimum: int, maximum: int, target: float, scale_in: int, scale_out: int
    ) -> None:
        self.calls.append(("register_scaling", endpoint, variant))
        self.scaling[(endpoint, variant)] = {"minimum": minimum, "maximum": maximum, "target": target}

    def deregister_scaling(self, endpoint: str, variant: str) -> bool:
        self.calls.append(("deregister_scaling", endpoint, variant))
        return self.scaling.pop((endpoint, variant), None) is not None

    # ------------------------------------------------------------ models and packages

    def create_model(self, request: dict[str, Any]) -> None:
        self.models.setdefault(request["ModelName"], copy.deepcopy(request))
        self._created(request["ModelName"])

    def serves_multi_model(self, model_name: str) -> bool:
        return self.models[model_name]["PrimaryContainer"].get("Mode") == "MultiModel"

    def endpoint_configs_named(self, prefix: str) -> list[tuple[str, Any]]:
        return [(n, self.created[n]) for n in self.configs if prefix in n]

    def models_named(self, prefix: str) -> list[tuple[str, Any]]:
        return [(n, self.created[n]) for n in self.models if prefix in n]

    def delete_endpoint_config(self, name: str) -> None:
        self.configs.pop(name)

    def delete_model(self, name: str) -> None:
        self.models.pop(name)

    def describe_package(self, package_arn: str) -> dict[str, Any]:
        if package_arn not in self.packages:
            raise NotFound(f"Model Package {package_arn} does not exist")
        return copy.deepcopy(self.packages[package_arn])

    def reject_package(self, package_arn: str, reason: str) -> None:
        self.packages[package_arn] |= {"ModelApprovalStatus": "Rejected", "ApprovalDescription": reason}


@dataclass
class FakeObjects:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def read_bytes(self, bucket: str, key: str) -> bytes:
        if (bucket, key) not in self.objects:
            raise NotFound(f"reading s3://{bucket}/{key}: no such object")
        return self.objects[(bucket, key)]


@dataclass
class FakeRolloutStore:
    """RolloutStore with the lock table's conditions."""

    items: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def acquire(self, endpoint: str, owner: str, package: str, now_epoch: float) -> None:
        lock = self.items.get((endpoint, "lock"))
        if lock and lock["owner"] != owner and float(lock["lease_until"]) >= now_epoch:
            raise LockHeld(f"endpoint {endpoint} is being rolled out by {lock['owner']}: this rollout waits")
        self.items[(endpoint, "lock")] = {
            "owner": owner,
            "execution": owner,
            "package": package,
            "lease_until": str(int(now_epoch + LEASE_SECONDS)),
            "version": "1",
        }

    def _held(self, endpoint: str, owner: str, **changes: str | None) -> int:
        lock = self.items.get((endpoint, "lock"))
        if lock is None or lock["owner"] != owner:
            raise LockLost(f"rollout {owner} no longer holds endpoint {endpoint}")
        for key, value in changes.items():
            if value is None:
                lock.pop(key, None)
            else:
                lock[key] = value
        lock["version"] = str(int(lock["version"]) + 1)
        return int(lock["version"])

    def renew(self, endpoint: str, owner: str, now_epoch: float) -> int:
        return self._held(endpoint, owner, lease_until=str(int(now_epoch + LEASE_SECONDS)))

    def hand_over(self, endpoint: str, owner: str, successor: str, now_epoch: float) -> int:
        return self._held(endpoint, owner, successor=successor, lease_until=str(int(now_epoch + LEASE_SECONDS)))

    def take_over(self, endpoint: str, owner: str, execution: str, now_epoch: float) -> int:
        until = str(int(now_epoch + LEASE_SECONDS))
        return self._held(endpoint, owner, execution=execution, successor=None, lease_until=until)

    def note_restoring(self, endpoint: str, owner: str, config: str) -> int:
        return self._held(endpoint, owner, restoring=config)

    def release(self, endpoint: str, owner: str) -> bool:
        lock = self.items.get((endpoint, "lock"))
        if lock is None or lock["owner"] != owner:
            return False
        del self.items[(endpoint, "lock")]
        return True

    def lock_of(self, endpoint: str) -> dict[str, str] | None:
        lock = self.items.get((endpoint, "lock"))
        return dict(lock) if lock else None

    def locks(self) -> list[dict[str, str]]:
        return [{"endpoint": e} | dict(v) for (e, sort), v in self.items.items() if sort == "lock"]

    def champion(self, endpoint: str) -> dict[str, str] | None:
        found = self.items.get((endpoint, "champion"))
        return dict(found) if found else None

    def set_champion(self, endpoint: str, champion: dict[str, str]) -> None:
        self.items[(endpoint, "champion")] = dict(champion)

    def record(self, endpoint: str, entry: dict[str, Any], at_iso: str, *, unique: str | None = None) -> None:
        self.entries.append((endpoint, dict(entry) | {"at": at_iso}))

    def records(self, endpoint: str) -> list[dict[str, Any]]:
        return [entry for e, entry in self.entries if e == endpoint]

    def events(self, endpoint: str) -> list[str]:
        return [entry["event"] for entry in self.records(endpoint)]

    def flag(self, endpoint: str, flag: str) -> dict[str, str] | None:
        found = self.items.get((endpoint, f"flag#{flag}"))
        return dict(found) if found else None

    def set_flag(
        self, endpoint: str, flag: str, *, by: str, reason: str = "", verdict: str = "", at_iso: str = ""
    ) -> None:
        item = {"by": by, "reason": reason or flag} | ({"verdict": verdict} if verdict else {})
        item |= {"at": at_iso} if at_iso else {}
        self.items[(endpoint, f"flag#{flag}")] = item

    def clear_flag(self, endpoint: str, flag: str) -> None:
        self.items.pop((endpoint, f"flag#{flag}"), None)


@dataclass
class FakeTokens:
    """TokenStore: the waiters stored, by key."""

    items: dict[str, Waiter] = field(default_factory=dict)

    def put(self, waiter: Waiter, *, expires_after_seconds: int) -> None:
        self.items[waiter.job_name] = waiter

    def get(self, job_name: str) -> Waiter | None:
        return self.items.get(job_name)

    def mark_settled(self, waiter: Waiter, outcome: str) -> None:
        self.items.pop(waiter.job_name, None)

    def forget(self, waiter: Waiter) -> None:
        self.items.pop(waiter.job_name, None)

    def waiting(self) -> list[Waiter]:
        return list(self.items.values())


@dataclass
class FakeResumer:
    sent: list[tuple[str, str, Any]] = field(default_factory=list)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        self.sent.append(("success", token, output))
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        self.sent.append(("failure", token, {"error": error, "cause": cause}))
        return True
