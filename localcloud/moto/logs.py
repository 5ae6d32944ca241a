"""moto's CloudWatch Logs: a log group's KMS key is checked as CloudWatch Logs checks it, and AssociateKmsKey exists.

moto 5.2.5 stores CreateLogGroup's kmsKeyId unchecked and has no AssociateKmsKey. The attached Refusal (the local
cloud's, localcloud.iam.logs_checks) says why AWS would refuse a key: missing or disabled, or a key policy that does
not let CloudWatch Logs use it for that log group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from localcloud.moto.core import in_process_mock


class Refused(NamedTuple):
    """CloudWatch Logs' error for a key it may not use."""

    code: str  # AccessDeniedException or InvalidParameterException
    message: str


Refusal = Callable[[str, str, str, str], Refused | None]
"""Why CloudWatch Logs refuses (kmsKeyId, logGroupName, region, account), or None."""

_attached: dict[str, Refusal | None] = {"refusal": None}


def attach(refusal: Refusal | None) -> None:
    _attached["refusal"] = refusal


def _check(backend: Any, kms_key_id: str | None, log_group_name: str) -> None:
    refusal = _attached["refusal"]
    if not kms_key_id or refusal is None or in_process_mock():
        return
    refused = refusal(kms_key_id, log_group_name, backend.region_name, backend.account_id)
    if refused is not None:
        from moto.logs.exceptions import LogsClientError

        raise LogsClientError(refused.code, refused.message)


def patch() -> None:
    """CreateLogGroup checks its kmsKeyId; AssociateKmsKey checks it and sets the group's key."""
    from moto.logs.exceptions import ResourceNotFoundException
    from moto.logs.models import LogsBackend
    from moto.logs.responses import LogsResponse

    original = LogsBackend.create_log_group

    @functools.wraps(original)
    def create_log_group(self: Any, log_group_name: str, tags: dict[str, str], **kwargs: Any) -> Any:
        _check(self, kwargs.get("kmsKeyId"), log_group_name)
        return original(self, log_group_name, tags, **kwargs)

    def associate_kms_key(self: Any, log_group_name: str, kms_key_id: str) -> None:
        group = self.groups.get(log_group_name)
        if group is None:
            raise ResourceNotFoundException()
        _check(self, kms_key_id, log_group_name)
        group.kms_key_id = kms_key_id

    def associate_kms_key_response(self: Any) -> str:
        self.logs_backend.associate_kms_key(self._get_param("logGroupName"), self._get_param("kmsKeyId"))
        return ""

    LogsBackend.create_log_group = create_log_group
    LogsBackend.associate_kms_key = associate_kms_key
    LogsResponse.associate_kms_key = associate_kms_key_response
