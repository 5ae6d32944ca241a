"""What one signed request asks of IAM: the (action, resource, request condition keys) checks AWS makes for it.

The run-time twin of tools/check_iam.py. The request is read off the wire (wire); the action is
``<prefix>:<Operation>`` on the resources the request names (resolve, over actions.json: actions), except where AWS
documents otherwise (special_cases, s3_checks); the request's own condition keys are context_keys'. Global condition
keys (aws:SecureTransport, aws:PrincipalArn, ...) are the middleware's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from localcloud.iam import Check
from localcloud.iam.resolve import Lookups, Request
from localcloud.iam.special_cases import ACTIONS, describe_call
from localcloud.iam.wire import (
    Service,
    Wire,
    access_key_of,
    parse_call,
    protocol_of,
    services_of,
    signer_of,
    signing_service_of,
    unwsgi,
)

log = logging.getLogger("shepherd.local.iam")


@dataclass(frozen=True)
class Described:
    """A request as IAM sees it; ``modelled`` False when a resource could not be told (its checks then use "*")."""

    service: str  # botocore's service name: "s3", "stepfunctions", "sagemaker-runtime", ...
    operation: str  # the API operation: "GetObject"; "" when the request names none the model knows
    protocol: str  # the wire protocol the request speaks: "json", "query", "rest-xml", "smithy-rpc-v2-cbor", ...
    checks: tuple[Check, ...]  # () = always allowed (sts:GetCallerIdentity)
    modelled: bool = True


def describe(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    account: str,
    lookups: Lookups,
) -> Described | None:
    """The checks AWS makes for a SigV4-signed request; None for a request that is not an AWS API call (unsigned)."""
    signer = signer_of(headers, query)
    if signer is None:
        return None
    signing = signer[1]
    services = services_of(signing)
    default = services[0] if services else Service(signing, "", signing)
    try:
        call = parse_call(signing, Wire(method, unwsgi(path), query, headers, body))
    except Exception:  # a request the service would refuse as malformed
        log.debug("cannot parse a %s request to %s", signing, path, exc_info=True)
        call = None
    if call is None:  # an operation no model names: a check no policy but a wildcard one allows
        protocol = protocol_of(path, query, headers, default.protocol)
        return Described(default.name, "", protocol, (Check(f"{default.prefix}:UnknownOperation", "*"),), False)
    request = Request(call, headers, query, region, account, lookups)
    try:
        describe_call(request)
    except Exception:  # never let a request the tables do not foresee take the cloud down
        log.exception("cannot describe %s:%s", call.service.name, call.operation)
        request.checks = [Check(f"{call.service.prefix}:{call.operation}", "*")]
        request.modelled = False
    return Described(call.service.name, call.operation, call.protocol, tuple(request.checks), request.modelled)


__all__ = ["ACTIONS", "Described", "Lookups", "access_key_of", "describe", "signing_service_of"]
