"""IAM for the local cloud's own principals: who asks (principals), what a request asks (requests), whether
policies allow it (policy), and the WSGI middleware that refuses it as AWS does (middleware).

See docs/LOCAL_IAM.md for what is enforced as AWS enforces it and what is not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# A state machine with a LoggingConfiguration: Step Functions checks these at creation, on "*" ("Logging using
# CloudWatch Logs", step-functions/latest/dg/cw-logs.html); SAM's translator does not add them.
# The local cloud checks them at CreateStateMachine; tools/check_iam.py checks the template has them.
LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)

# The local cloud's own keys and endpoints, and the developer's AWS configuration: what a container (a training
# script, a model) must never reach. On AWS it has its role's session, or nothing.
_CLOUD_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    }
)


def container_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` without the cloud's credentials and endpoints, and with no AWS config or credentials file."""
    kept = {k: v for k, v in environment.items() if k not in _CLOUD_VARIABLES and not k.startswith("AWS_ENDPOINT_URL_")}
    return {**kept, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


ContextValue = str | tuple[str, ...]
Context = Mapping[str, ContextValue]


@dataclass(frozen=True)
class Principal:
    """A role session the local STS issued: ``arn`` is the assumed-role ARN, ``role_arn`` the role's."""

    arn: str
    role_arn: str
    account: str
    service: str = ""  # the service principal it was issued for: lambda.amazonaws.com, states.amazonaws.com, ...


@dataclass(frozen=True)
class Check:
    """One action on one resource a request needs; ``context`` holds the request's own condition keys."""

    action: str
    resource: str  # an ARN, or "*" for an action with no resource type
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    kind: Literal["allow", "explicit-deny", "implicit-deny"]
    # Where the deny comes from, worded as AWS's message ends: "because no identity-based policy allows the
    # s3:GetObject action", "with an explicit deny in a resource-based policy", ...
    reason: str = ""
