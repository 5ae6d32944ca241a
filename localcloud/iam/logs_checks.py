"""What CloudWatch Logs checks of the KMS key a log group is created (or associated) with, as AWS checks it.

"Encrypt log data in CloudWatch Logs using AWS Key Management Service" (AmazonCloudWatch/latest/logs/
encrypt-log-data-kms.html): the key policy must let ``logs.<region>.amazonaws.com`` use the key, and CloudWatch Logs
calls KMS with the encryption context ``aws:logs:arn`` = the log group's ARN, which the guide's statement conditions
on. The key's own policy decides (localcloud.iam.authorizer: a service principal, resource policy required).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from localcloud.iam import Check, ContextValue
from localcloud.iam.authorizer import Authorizer
from localcloud.moto.logs import Refused

log = logging.getLogger("shepherd.local.iam")

# What envelope encryption of the group's data needs: a data key to write, Decrypt to read. The AWS managed policy
# CloudWatchLogsAPIKeyAccess grants exactly these two on the aws:logs:arn context. DescribeKey is not checked: it
# carries no encryption context, so the guide's own statement (Describe* under that condition) would refuse it.
LOGS_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def _key_state(key_arn: str) -> str | None:
    """The KMS key's state (Enabled, Disabled, PendingDeletion, ...), or None when no such key exists."""
    parts = key_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "kms" or not parts[5].startswith("key/"):
        return None
    from localcloud.moto.kms import kms_backends

    regional = dict.get(kms_backends, parts[4])  # dict.get: BackendDict's [] would create the account's backends
    backend = dict.get(regional, parts[3]) if regional is not None else None
    key = dict(backend.keys).get(parts[5][len("key/") :]) if backend is not None else None
    return None if key is None else str(getattr(key, "key_state", "Enabled"))


def log_group_key_refusal(authorizer: Authorizer) -> Callable[[str, str, str, str], Refused | None]:
    """Why CloudWatch Logs refuses a log group's ``kmsKeyId``, or None; called with (key, group, region, account)."""

    def refusal(kms_key_id: str, log_group_name: str, region: str, account: str) -> Refused | None:
        group_arn = f"arn:aws:logs:{region}:{account}:log-group:{log_group_name}"
        # The AccessDeniedException AWS answers (hashicorp/terraform-provider-aws#29282,
        # ministryofjustice/modernisation-platform#7870); the encryption context is this ARN, without ":*".
        sentence = f"The specified KMS key does not exist or is not allowed to be used with Arn '{group_arn}'"
        # CreateLogGroup and AssociateKmsKey API references: "If you attempt to associate a KMS key with the log
        # group but the KMS key does not exist or the KMS key is disabled, you receive an InvalidParameterException".
        # kmsKeyId is "The Amazon Resource Name (ARN) of the KMS key"; CloudFormation's schema requires the ARN.
        if _key_state(kms_key_id) != "Enabled":
            return Refused("InvalidParameterException", sentence)
        service = f"logs.{region}.amazonaws.com"
        context: dict[str, ContextValue] = {
            "kms:EncryptionContext:aws:logs:arn": group_arn,
            "kms:EncryptionContextKeys": ("aws:logs:arn",),
        }
        for action in LOGS_KEY_ACTIONS:
            refused = authorizer.authorize_service(service, Check(action, kms_key_id, context), group_arn, account)
            if refused is not None:
                log.warning("CloudWatch Logs may not use %s for %s: %s", kms_key_id, group_arn, refused.message)
                return Refused("AccessDeniedException", sentence)
        return None

    return refusal
