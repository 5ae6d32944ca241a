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


# TransformResources.InstanceType's values (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
# API_TransformResources.html): an endpoint's instance type that is not one of them (ml.t2, ml.c5.large...) cannot
# run a rollout's replay, which then takes batch.instance_type.
TRANSFORM_INSTANCE_TYPES = frozenset(
    [f"ml.m4.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "10xlarge", "16xlarge")]
    + [f"ml.c4.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge")]
    + [f"ml.p2.{s}" for s in ("xlarge", "8xlarge", "16xlarge")]
    + [f"ml.p3.{s}" for s in ("2xlarge", "8xlarge", "16xlarge")]
    + [f"ml.c5.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge")]
    + [f"ml.m5.{s}" for s in ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge")]
    + [
        f"ml.{family}.{s}"
        for family in ("m6i", "c6i", "r6i")
        for s in ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge")
    ]
    + [
        f"ml.{family}.{s}"
        for family in ("m7i", "c7i", "r7i")
        for s in ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")
    ]
    + [f"ml.g4dn.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")]
    + [
        f"ml.{family}.{s}"
        for family in ("g5", "g6", "g6e")
        for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")
    ]
    + ["ml.trn1.2xlarge", "ml.trn1.32xlarge"]
    + [f"ml.inf2.{s}" for s in ("xlarge", "8xlarge", "24xlarge", "48xlarge")]
)
