"""The operations AWS authorizes otherwise than ``<prefix>:<Operation>`` on the resources they name, each citing
AWS's documentation; every other operation takes the generic rule (localcloud.iam.resolve)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from localcloud.iam.resolve import Request
from localcloud.iam.s3_checks import describe_s3

# Lambda's Invoke and the batch operations AWS authorizes as another action. Invoke: "This is a special case where
# the action identifier (lambda:InvokeFunction) differs from the API operation" (lambda-api-permissions-ref.html), as
# for InvokeWithResponseStream ("requires permission for the lambda:InvokeFunction action", API reference) and
# GetLayerVersionByArn ("The GetLayerVersion action also covers GetLayerVersionByArn"). SQS: "setting permissions for
# SendMessage, DeleteMessage, or ChangeMessageVisibility sets permissions for the corresponding batch versions"
# (SQSDeveloperGuide/sqs-batch-api-actions.html). InvokeEndpointWithResponseStream: "your IAM permissions must allow
# the sagemaker:InvokeEndpoint action" (SageMaker Runtime API reference).
ACTIONS: dict[tuple[str, str], str] = {
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "lambda:InvokeFunction",
    ("lambda", "GetLayerVersionByArn"): "lambda:GetLayerVersion",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): "sagemaker:InvokeEndpoint",
}
# Service-linked role names by AWSServiceName ("Service-linked roles for Application Auto Scaling",
# autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html).
_SERVICE_LINKED_ROLES = {
    "sagemaker.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    "ecs.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_ECSService",
    "dynamodb.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_DynamoDBTable",
    "lambda.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_LambdaConcurrency",
}


# DynamoDB transactions: "Permissions for Put, Update, Delete, and Get actions are governed by the permissions used
# for the underlying PutItem, UpdateItem, DeleteItem, and GetItem operations. For the ConditionCheck action, you can use
# the dynamodb:ConditionCheckItem permission" (amazondynamodb/latest/developerguide/transaction-apis-iam.html), with
# dynamodb:EnclosingOperation naming the transaction. Batches are their own actions on each table they touch
# ("... is not authorized to perform: dynamodb:BatchWriteItem on resource: <table>").
_TRANSACT_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_transaction(request: Request) -> None:
    items = request.params.get("TransactItems")
    for item in items if isinstance(items, list) else []:
        for part, name in _TRANSACT_PARTS.items():
            if isinstance(item, dict) and isinstance(item.get(part), dict):
                params = {**item[part], "EnclosingOperation": request.call.operation}
                request.generic(f"dynamodb:{name}", params, extras=False)
    if not items:
        request.approximate(f"dynamodb:{request.call.operation}")


def _dynamodb_batch(request: Request) -> None:
    tables = request.params.get("RequestItems")
    for table in tables if isinstance(tables, dict) else {}:
        request.generic(f"dynamodb:{request.call.operation}", {"TableName": table}, extras=False)
    if not tables:
        request.approximate(f"dynamodb:{request.call.operation}")


def _send_task(request: Request) -> None:
    """SendTaskSuccess/Failure/Heartbeat: the Service Authorization Reference gives no resource type, but Step
    Functions authorizes them on the state machine whose execution issued the token (tools/check_iam.py's
    RESOURCE_FORMATS: aws/aws-cdk#8486, NOAA-OWP/hydrovis#837)."""
    name = f"states:{request.call.operation}"
    token = request.params.get("taskToken")
    owner = request.lookups.task_token_owner(token) if isinstance(token, str) and token else None
    if owner:
        request.add(name, owner)
    else:
        request.approximate(name)


_MOTO_KEY_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ciphertext_key(blob: Any) -> str | None:
    """The key id a ciphertext carries. moto's blob starts with it (moto/kms/utils.py, _serialize_ciphertext_blob);
    KMS's own format carries it too, which is why Decrypt needs no KeyId for symmetric keys."""
    try:
        raw = base64.b64decode(blob) if isinstance(blob, str) else blob
    except (ValueError, binascii.Error):
        return None
    if isinstance(raw, bytes) and _MOTO_KEY_ID.fullmatch(raw[:36]):
        return raw[:36].decode()
    return None


def _kms_decrypt(request: Request) -> None:
    """Decrypt (and ReEncrypt's source) without a KeyId: the key the ciphertext names. ReEncrypt: "kms:ReEncryptFrom
    permission on the source KMS key, kms:ReEncryptTo permission on the destination KMS key" (KMS API reference)."""
    params = request.params
    operation = request.call.operation
    source = params.get("SourceKeyId" if operation == "ReEncrypt" else "KeyId") or _ciphertext_key(
        params.get("CiphertextBlob")
    )
    name = "kms:ReEncryptFrom" if operation == "ReEncrypt" else "kms:Decrypt"
    if source:
        request.generic(name, {**params, "KeyId": source, "DestinationKeyId": None, "SourceKeyId": None})
    else:
        request.approximate(name)
    if operation == "ReEncrypt":
        destination = params.get("DestinationKeyId")
        context = {"EncryptionContext": params.get("DestinationEncryptionContext"), "KeyId": destination}
        request.generic("kms:ReEncryptTo", {**context, "DestinationKeyId": None, "SourceKeyId": None}, extras=False)


def _put_events(request: Request) -> None:
    """PutEvents: events:PutEvents on each bus its entries name (the default one when they name none), with the
    entries' sources and detail types as events:source and events:detail-type."""
    entries = request.params.get("Entries")
    buses: dict[str, list[dict[str, Any]]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            buses.setdefault(str(entry.get("EventBusName") or "default"), []).append(entry)
    for bus, on_bus in buses.items():
        params = {
            "EventBusName": bus,
            "Source": list(dict.fromkeys(str(e["Source"]) for e in on_bus if e.get("Source"))),
            "DetailType": list(dict.fromkeys(str(e["DetailType"]) for e in on_bus if e.get("DetailType"))),
        }
        request.generic("events:PutEvents", params, extras=False)
    if not buses:
        request.approximate("events:PutEvents")


def _service_linked_role(request: Request) -> None:
    """iam:CreateServiceLinkedRole on the role it creates, aws-service-role/<service>/<name>."""
    service = str(request.params.get("AWSServiceName") or "")
    name = _SERVICE_LINKED_ROLES.get(service)
    suffix = request.params.get("CustomSuffix")
    if name and suffix:
        name = f"{name}_{suffix}"
    if name:
        role = f"aws-service-role/{service}/{name}"
        request.generic("iam:CreateServiceLinkedRole", {**request.params, "RoleName": role})
    else:
        request.add("iam:CreateServiceLinkedRole", "*", {"iam:AWSServiceName": service})
        request.modelled = False


def _nothing(request: Request) -> None:
    """sts:GetCallerIdentity: "No permissions are required to perform this operation" (STS API reference)."""


_HANDLERS: dict[tuple[str, str], Callable[[Request], None]] = {
    ("dynamodb", "TransactWriteItems"): _dynamodb_transaction,
    ("dynamodb", "TransactGetItems"): _dynamodb_transaction,
    ("dynamodb", "BatchWriteItem"): _dynamodb_batch,
    ("dynamodb", "BatchGetItem"): _dynamodb_batch,
    ("states", "SendTaskSuccess"): _send_task,
    ("states", "SendTaskFailure"): _send_task,
    ("states", "SendTaskHeartbeat"): _send_task,
    ("kms", "Decrypt"): _kms_decrypt,
    ("kms", "ReEncrypt"): _kms_decrypt,
    ("events", "PutEvents"): _put_events,
    ("iam", "CreateServiceLinkedRole"): _service_linked_role,
    ("sts", "GetCallerIdentity"): _nothing,
}


def describe_call(request: Request) -> None:
    """The request's checks: its operation's handler, else the generic rule on its (renamed) action."""
    service, operation = request.call.service, request.call.operation
    if service.prefix == "s3":
        describe_s3(request)
        return
    handler = _HANDLERS.get((service.prefix, operation))
    if handler is not None:
        handler(request)
        return
    request.generic(ACTIONS.get((service.name, operation)) or f"{service.prefix}:{operation}")
