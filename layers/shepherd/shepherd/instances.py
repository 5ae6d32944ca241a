"""What an ML instance type implies for the requests Shepherd builds."""

from __future__ import annotations

import re

# Nitro instances with local NVMe storage (m5d, c5d, r5d, g4dn, p3dn, p4d, g5, g6, trn1, p5, ...): SageMaker
# encrypts that storage with a hardware module and refuses a KMS key for it (CreateEndpointConfig KmsKeyId,
# ResourceConfig VolumeKmsKeyId, TransformResources VolumeKmsKeyId: "You can't request a ... when using an
# instance type with local storage"; the list: the SageMaker guide's "Instance Store Volumes" page).
_INSTANCE_STORAGE = re.compile(r"^ml\.([a-z]+\d+[a-z]*d[a-z]*|g5|g6|g6e|trn\d|p5[a-z]*)\.")


def has_instance_storage(instance_type: str | None) -> bool:
    """True when SageMaker refuses a volume KMS key for this instance type."""
    return bool(instance_type and _INSTANCE_STORAGE.match(instance_type))
