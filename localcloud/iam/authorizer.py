"""Decides a principal's checks with AWS's evaluation logic, and writes every decision to the authorization log.

The identity policies are the role's (moto's IAM); the resource policies are the bucket's, the KMS key's and the
SNS topic's, read from moto's backends. The log is JSON lines: one decision per line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from localcloud.iam import Check, ContextValue, Decision, Principal
from localcloud.iam.lookups import MotoLookups
from localcloud.iam.policy import PolicyError, evaluate, message
from localcloud.iam.principals import Principals, identity_policies, role_named

log = logging.getLogger("shepherd.local.iam")


@dataclass(frozen=True)
class Refusal:
    """The first check a request failed, and AWS's sentence for it."""

    check: Check
    decision: Decision
    message: str


def global_context(principal: Principal, region: str) -> dict[str, ContextValue]:
    """The global condition keys of a request from one of the cloud's principals ("AWS global condition context
    keys", reference_policies_condition-keys.html). The local cloud listens on loopback only, which counts as secure
    transport: a bucket policy denying aws:SecureTransport "false" does not refuse it (docs/LOCAL_IAM.md)."""
    session = principal.arn.rsplit("/", 1)[-1]
    role = role_named(principal.role_arn)
    return {
        "aws:SecureTransport": "true",
        "aws:RequestedRegion": region,
        "aws:PrincipalArn": principal.role_arn,
        "aws:PrincipalAccount": principal.account,
        "aws:PrincipalType": "AssumedRole",
        # "role-id:caller-specified-role-name", the role's unique AROA... id, as AWS sets it
        "aws:userid": f"{role.id if role is not None else principal.role_arn.rsplit('/', 1)[-1]}:{session}",
        "aws:SourceIp": "127.0.0.1",
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "aws:EpochTime": str(int(time.time())),
    }


def _decoded(policy: Any) -> str | None:
    if policy is None or policy == "":
        return None
    return policy.decode() if isinstance(policy, bytes) else str(policy)


def resource_policy(resource: str) -> tuple[str | None, bool]:
    """The resource-based policy that applies to ``resource``, and whether it is required (KMS key policies)."""
    parts = resource.split(":", 5)
    if len(parts) != 6:
        return None, False
    service, region, account, rest = parts[2], parts[3], parts[4], parts[5]
    try:
        if service == "s3":
            from localcloud.moto.s3 import s3_backends

            bucket_name = rest.split("/", 1)[0]
            if bucket_name not in s3_backends.bucket_accounts:
                return None, False
            partition, owner = s3_backends.bucket_accounts[bucket_name]
            bucket = s3_backends[owner][partition].buckets.get(bucket_name)
            return _decoded(getattr(bucket, "policy", None)), False
        if service == "kms" and rest.startswith("key/"):
            from localcloud.moto.kms import kms_backends

            key = kms_backends[account][region].keys.get(rest[len("key/") :])
            return _decoded(getattr(key, "policy", None)), True
        if service == "lambda" and rest.startswith("function:"):
            # The local cloud's moto runs Lambda without Docker: the "simple" backend holds the functions.
            from localcloud.moto.awslambda import lambda_simple_backends

            name = rest.split(":")[1]
            wire = json.loads(lambda_simple_backends[account][region].get_policy(name))  # GetPolicy's answer
            return _decoded(wire.get("Policy")), False
        if service == "sns":
            from localcloud.moto.sns import sns_backends

            topic = sns_backends[account][region].topics.get(resource)
            return _decoded(getattr(topic, "policy", None)), False
    except Exception:  # a resource the backend does not hold has no policy
        log.debug("no resource policy for %s", resource, exc_info=True)
    return None, False


def _decide(principal: Principal, check: Check, policies: list[str], context: Mapping[str, ContextValue]) -> Decision:
    """One check against the principal's policies and the resource's; a policy IAM would refuse grants nothing."""
    document, required = resource_policy(check.resource)
    try:
        return evaluate(principal, check, policies, document, resource_policy_required=required, context=context)
    except PolicyError as exc:  # moto stores documents IAM would refuse
        return Decision(False, "implicit-deny", f"because a policy cannot be evaluated ({exc})")


class Authorizer:
    """Authorizes the checks of one request; ``enabled`` False allows everything (``shepherd local up --iam off``)."""

    def __init__(self, principals: Principals, log_path: Path | None, enabled: bool = True) -> None:
        self.principals = principals
        self.enabled = enabled
        self._lock = threading.Lock()
        self._log: IO[str] | None = None
        self.log_path = log_path
        self.refusals: list[dict[str, Any]] = []
        self._lookups = MotoLookups()
        self._roles: dict[str, list[str]] = {}  # every role in the log, with its policies when first seen

    def authorize(
        self,
        principal: Principal,
        checks: Iterable[Check],
        region: str,
        *,
        service: str = "",
        operation: str = "",
        modelled: bool = True,
        record: bool = True,
    ) -> Refusal | None:
        """None when every check is allowed; else the first refusal. Every decision is logged but, with ``record``
        False, a refusal: the caller then makes the request through the API, which decides and logs it."""
        context: Mapping[str, ContextValue] = global_context(principal, region)
        policies = identity_policies(principal.role_arn)
        for check in checks:
            decision = _decide(principal, check, policies, context)
            allowed = decision.allowed or not self.enabled
            if not allowed and not record:
                return Refusal(check, decision, "")  # the request goes to the API, which decides and logs it
            self._record(principal, check, decision, allowed, service=service, operation=operation, modelled=modelled)
            if not allowed:
                return Refusal(check, decision, message(principal, check, decision))
        return None

    def authorize_service(self, service: str, check: Check, source_arn: str, account: str) -> Refusal | None:
        """A service principal's call on a resource that only its resource policy can allow (a Lambda function's
        permissions for events.amazonaws.com), with the aws:SourceArn and aws:SourceAccount AWS sets."""
        principal = Principal(arn=service, role_arn="", account="", service=service)
        decision = _decide(principal, check, [], {"aws:SourceArn": source_arn, "aws:SourceAccount": account})
        allowed = decision.allowed or not self.enabled
        self._record(principal, check, decision, allowed, service=service, operation=check.action, modelled=True)
        return None if allowed else Refusal(check, decision, message(principal, check, decision))

    def allows_s3(self, principal: Principal, action: str, bucket: str, key: str, region: str = "us-east-1") -> bool:
        """Whether the role may read or write one object (``s3_object_checks``); a refusal is not logged."""
        checks = self.s3_object_checks(action, bucket, key, region)
        return self.authorize(principal, checks, region, service="s3", operation=action, record=False) is None

    def s3_object_checks(self, action: str, bucket: str, key: str, region: str = "us-east-1") -> list[Check]:
        """s3:GetObject or s3:PutObject on one object, and its SSE-KMS key's action: kms:Decrypt to read the
        object's key, kms:GenerateDataKey to write with the bucket's ("Using server-side encryption with AWS KMS
        keys")."""
        checks = [Check(action, f"arn:aws:s3:::{bucket}/{key}")]
        reading = action == "s3:GetObject"
        kms_key = self._lookups.object_kms_key(bucket, key) if reading else self._lookups.bucket_kms_key(bucket)
        if kms_key:
            kms_action = "kms:Decrypt" if reading else "kms:GenerateDataKey"
            checks.append(Check(kms_action, kms_key, {"kms:ViaService": f"s3.{region}.amazonaws.com"}))
        return checks

    def _record(
        self,
        principal: Principal,
        check: Check,
        decision: Decision,
        allowed: bool,
        *,
        service: str,
        operation: str,
        modelled: bool,
    ) -> None:
        entry = {
            "time": round(time.time(), 3),
            "principal": principal.arn,
            "role": principal.role_arn,
            "action": check.action,
            "resource": check.resource,
            "decision": "allow" if decision.allowed else decision.kind,
            "enforced": self.enabled,
            "operation": f"{service}:{operation}" if service else operation,
        }
        if not modelled:
            entry["modelled"] = False
        if not allowed:
            entry["reason"] = decision.reason
            log.warning("denied: %s %s on %s %s", principal.arn, check.action, check.resource, decision.reason)
        line = json.dumps(entry) + "\n"
        with self._lock:
            if principal.role_arn and principal.role_arn not in self._roles:
                self._roles[principal.role_arn] = identity_policies(principal.role_arn)
            if not allowed:
                self.refusals.append(entry)
            if self.log_path is None:
                return
            if self._log is None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self.log_path.open("a", encoding="utf-8", buffering=1)
            self._log.write(line)

    def close(self) -> None:
        """Close the log, and beside it snapshot the policies of every role in it (tools/iam_report.py reads both)."""
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
            seen = dict(self._roles)
        if self.log_path is not None and seen:
            # A stack torn down before the cloud stops has deleted its roles: keep what they had when first seen.
            snapshot = {role: identity_policies(role) or first for role, first in sorted(seen.items())}
            (self.log_path.parent / "authz-roles.json").write_text(json.dumps(snapshot, indent=1) + "\n")
