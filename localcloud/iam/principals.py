"""The local STS for the cloud's own principals: role credentials for functions, state machines and SageMaker.

Each Lambda function, state machine and SageMaker job or endpoint acts as its role, as on AWS, with temporary
credentials moto's STS issues (so GetCallerIdentity names the assumed role). A role that does not exist, or whose
trust policy does not let the service assume it, is refused as AWS refuses it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from localcloud.iam import Principal

ACCOUNT = "123456789012"
REGION = "us-east-1"


class RoleNotAssumable(Exception):
    """The role does not exist, or its trust policy does not trust the service."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    principal: Principal

    def environment(self) -> dict[str, str]:
        """The variables Lambda and SageMaker give a process that acts as the role."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


def _iam_backend(account: str = ACCOUNT) -> Any:
    from localcloud.moto.iam import iam_backends

    return iam_backends[account]["aws"]


def load_aws_managed_policies(account: str = ACCOUNT) -> None:
    """Give moto's IAM AWS's managed policies (AWSLambdaBasicExecutionRole, ...), as an account has them.

    moto loads them only when MOTO_IAM_LOAD_MANAGED_POLICIES was set before its IAM backend was first built.
    """
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    backend = _iam_backend(account)
    if not backend.aws_managed_policies:
        backend.aws_managed_policies = backend._init_aws_policies()
        for policy in backend.aws_managed_policies:
            backend.managed_policies.setdefault(policy.arn, policy)


def role_named(role_arn: str) -> Any:
    """The moto role with this ARN, or None."""
    parts = role_arn.split(":")
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        return None
    try:
        return _iam_backend(parts[4]).get_role_by_arn(role_arn)
    except Exception:
        return None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _regional(service: str) -> str:
    """The regional form of a service principal, which trust policies may name instead (states.us-east-1...)."""
    name, _, suffix = service.partition(".")
    return f"{name}.{REGION}.{suffix}"


def trusts(role: Any, service: str) -> bool:
    """Whether the role's trust policy lets ``service`` call sts:AssumeRole (its conditions are not evaluated)."""
    document = json.loads(role.assume_role_policy_document) if role.assume_role_policy_document else {}
    for statement in _listed(document.get("Statement", [])):
        principal = statement.get("Principal") or {}
        services = _listed(principal.get("Service", [])) if isinstance(principal, dict) else []
        actions = [str(a).lower() for a in _listed(statement.get("Action", []))]
        if (
            statement.get("Effect") == "Allow"
            and (service in services or _regional(service) in services)
            and any(a in ("sts:assumerole", "sts:*", "*") for a in actions)
        ):
            return True
    return False


def identity_policies(role_arn: str) -> list[str]:
    """The role's identity-based policy documents: inline, then attached managed (their default versions)."""
    role = role_named(role_arn)
    if role is None:
        return []
    documents = [str(d) for d in role.policies.values()]
    for policy in role.managed_policies.values():
        documents.extend(str(v.document) for v in policy.versions if v.is_default)
    return documents


class Principals:
    """Issues role sessions and tells which session an access key belongs to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Principal] = {}
        self._sessions: dict[tuple[str, str, str], Credentials] = {}

    def issue(self, role_arn: str, service: str, session_name: str) -> Credentials:
        """Credentials of ``role_arn`` as ``service`` assumes it; one session per (role, service, name) is reused."""
        role = role_named(role_arn)
        if role is None or not trusts(role, service):
            # CreateTrainingJob's wording; Lambda and Step Functions raise their own errors from this one.
            raise RoleNotAssumable(
                f"Could not assume role {role_arn}. Please ensure that the role exists and allows principal "
                f"'{service}' to assume the role."
            )
        key = (role_arn, service, session_name)
        with self._lock:
            if key in self._sessions:
                return self._sessions[key]
            from localcloud.moto.sts import sts_backends

            account = role_arn.split(":")[4]
            session = sts_backends[account]["aws"].assume_role(
                region_name=REGION,
                role_session_name=session_name,
                role_arn=role_arn,
                policy="",
                duration=43200,
                external_id="",
            )
            principal = Principal(arn=session.arn, role_arn=role_arn, account=account, service=service)
            credentials = Credentials(
                session.access_key_id, session.secret_access_key, session.session_token, principal
            )
            self._sessions[key] = credentials
            self._by_key[session.access_key_id] = principal
            return credentials

    def principal_of(self, access_key_id: str) -> Principal | None:
        return self._by_key.get(access_key_id)
