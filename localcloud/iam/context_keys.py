"""The request's own condition keys: read from its parameters, tags and (S3) headers, for the actions that support them.

Global keys (aws:SecureTransport, aws:PrincipalArn, ...) are the middleware's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from localcloud.iam import ContextValue

if TYPE_CHECKING:
    from localcloud.iam.actions import Action


def as_strings(value: Any) -> list[str]:
    """A parameter's value as the strings IAM compares: lists flattened, booleans lower-case, structures none."""
    if value is None or value == "" or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [s for v in value for s in as_strings(v)]
    return ["true" if value is True else "false" if value is False else str(value)]


def _path(params: Any, dotted: str) -> list[Any]:
    """The value at ``A.B``, as a one-item list ([] when absent); through a list, the list of its items' values
    (``Targets.Arn`` is every target's Arn)."""
    value = params
    for part in dotted.split("."):
        value = _step(value, part)
        if value is None:
            return []
    return [value]


def _step(value: Any, part: str) -> Any:
    if isinstance(value, list):
        items = [v for v in (_step(item, part) for item in value) if v is not None]
        return items or None
    return value.get(part) if isinstance(value, dict) else None


def _all_values(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _all_values(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _all_values(v, key)


# Request condition keys read from parameters: key -> parameter paths (the first present wins).
_CONTEXT: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "s3:prefix": ("Prefix",),
        "s3:delimiter": ("Delimiter",),
        "s3:max-keys": ("MaxKeys",),
        "s3:versionid": ("VersionId",),
    },
    "dynamodb": {
        "dynamodb:EnclosingOperation": ("EnclosingOperation",),
        "dynamodb:ReturnValues": ("ReturnValues",),
        "dynamodb:Select": ("Select",),
        "dynamodb:ReturnConsumedCapacity": ("ReturnConsumedCapacity",),
    },
    "cloudwatch": {"cloudwatch:namespace": ("Namespace",), "cloudwatch:AlarmActions": ("AlarmActions",)},
    "application-autoscaling": {
        "application-autoscaling:service-namespace": ("ServiceNamespace",),
        "application-autoscaling:scalable-dimension": ("ScalableDimension",),
    },
    "iam": {"iam:AWSServiceName": ("AWSServiceName",)},
    "kms": {
        "kms:EncryptionAlgorithm": ("EncryptionAlgorithm",),
        "kms:KeySpec": ("KeySpec",),
        "kms:KeyUsage": ("KeyUsage",),
        "kms:GranteePrincipal": ("GranteePrincipal",),
        "kms:RetiringPrincipal": ("RetiringPrincipal",),
        "kms:GrantOperations": ("Operations",),
    },
    "sagemaker": {
        "sagemaker:ModelApprovalStatus": ("ModelApprovalStatus",),
        "sagemaker:TargetModel": ("TargetModel",),
        "sagemaker:MaxRuntimeInSeconds": ("StoppingCondition.MaxRuntimeInSeconds",),
        "sagemaker:NetworkIsolation": ("EnableNetworkIsolation",),
        "sagemaker:InterContainerTrafficEncryption": ("EnableInterContainerTrafficEncryption",),
        "sagemaker:OutputKmsKey": (
            "OutputDataConfig.KmsKeyId",
            "TransformOutput.KmsKeyId",
            "ProcessingOutputConfig.KmsKeyId",
        ),
        "sagemaker:VolumeKmsKey": (
            "ResourceConfig.VolumeKmsKeyId",
            "TransformResources.VolumeKmsKeyId",
            "ProcessingResources.ClusterConfig.VolumeKmsKeyId",
            "KmsKeyId",
        ),
        "sagemaker:VpcSubnets": ("VpcConfig.Subnets", "NetworkConfig.VpcConfig.Subnets"),
        "sagemaker:VpcSecurityGroupIds": ("VpcConfig.SecurityGroupIds", "NetworkConfig.VpcConfig.SecurityGroupIds"),
    },
    "sns": {"sns:Protocol": ("Protocol",), "sns:Endpoint": ("Endpoint",)},
    "events": {
        "events:TargetArn": ("Targets.Arn",),
        "events:source": ("Source",),
        "events:detail-type": ("DetailType",),
    },
    "logs": {},
}


def _context_value(values: list[Any]) -> ContextValue | None:
    strings = as_strings(values)
    if not strings:
        return None
    return strings[0] if len(strings) == 1 and not isinstance(values[0], list) else tuple(strings)


def request_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """A request's tags: [{Key, Value}], [{key, value}] or {k: v}."""
    tags = params.get("Tags", params.get("tags"))
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    out = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict):
            key = tag.get("Key", tag.get("key"))
            if key is not None:
                out[str(key)] = str(tag.get("Value", tag.get("value", "")))
    return out


def request_context(
    action: Action, prefix: str, params: Mapping[str, Any], *, headers: Mapping[str, str], query: str, account: str
) -> dict[str, ContextValue]:
    """The request's own condition keys the action supports."""
    out: dict[str, ContextValue] = {}
    for key, paths in _CONTEXT.get(prefix, {}).items():
        if action.supports(key):
            value = next((_context_value(v) for p in paths if (v := _path(params, p))), None)
            if value is not None:
                out[key] = value
    tags = request_tags(params)
    if tags and action.supports("aws:TagKeys"):
        out["aws:TagKeys"] = tuple(tags)
        out.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
    if prefix == "sagemaker" and action.supports("sagemaker:InstanceTypes"):
        types = tuple(dict.fromkeys(as_strings(list(_all_values(params, "InstanceType")))))
        if types:
            out["sagemaker:InstanceTypes"] = types
    if prefix == "kms" and action.supports("kms:CallerAccount"):
        out["kms:CallerAccount"] = account
    if prefix == "kms":
        encryption_context = params.get("EncryptionContext")
        if isinstance(encryption_context, dict) and encryption_context:
            out.update({f"kms:EncryptionContext:{k}": str(v) for k, v in encryption_context.items()})
            out["kms:EncryptionContextKeys"] = tuple(encryption_context)
        key_id = params.get("KeyId")
        if isinstance(key_id, str) and (key_id.startswith("alias/") or ":alias/" in key_id):
            out["kms:RequestAlias"] = key_id.split(":", 5)[-1]
        out = {k: v for k, v in out.items() if action.supports(k)}
    if prefix == "s3":
        out.update(_s3_context(action, headers, query, account))
    return out


def _s3_context(action: Action, headers: Mapping[str, str], query: str, account: str) -> dict[str, ContextValue]:
    """S3's request keys from headers and the signature ("Amazon S3 condition key examples", S3 userguide)."""
    out: dict[str, ContextValue] = {}
    for key in action.conditions:
        header = key[len("s3:") :]
        if header.startswith(("x-amz-", "if-")) and header in headers:
            out[f"s3:{header}"] = headers[header]
    authorization = headers.get("authorization", "")
    if action.supports("s3:signatureversion"):  # "AWS" for Signature Version 2, "AWS4-HMAC-SHA256" for SigV4
        v2 = authorization.startswith("AWS ") or (not authorization and "AWSAccessKeyId=" in query)
        out["s3:signatureversion"] = "AWS" if v2 else "AWS4-HMAC-SHA256"
    if action.supports("s3:authType"):
        out["s3:authType"] = "REST-HEADER" if authorization else "REST-QUERY-STRING"
    if action.supports("s3:ResourceAccount"):
        out["s3:ResourceAccount"] = account
    tagging = headers.get("x-amz-tagging")
    if tagging and action.supports("s3:RequestObjectTagKeys"):
        tags = dict(parse_qsl(tagging, keep_blank_values=True))
        out["s3:RequestObjectTagKeys"] = tuple(tags)
        out.update({f"s3:RequestObjectTag/{k}": v for k, v in tags.items()})
    return out
