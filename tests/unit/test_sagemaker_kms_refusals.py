"""The local SageMaker refuses a KMS key for instance types with local NVMe storage, as SageMaker does.

CreateEndpointConfig KmsKeyId, ResourceConfig VolumeKmsKeyId, TransformResources VolumeKmsKeyId (SageMaker
API reference): "You can't request a ... when using an instance type with local storage" - the call fails.
"""

from __future__ import annotations

import pytest

from localcloud.sagemaker.backend import SageMakerBackend
from localcloud.sagemaker.control_plane import SageMakerError
from localcloud.sagemaker.endpoints import check_endpoint_config, kms_refused

KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
MODELS = {"m": {"ModelName": "m", "PrimaryContainer": {"Image": "i"}}}


def _config(instance_type: str, shadow: str | None = None) -> dict[str, object]:
    variant = {"VariantName": "a", "ModelName": "m", "InstanceType": instance_type, "InitialInstanceCount": 1}
    config: dict[str, object] = {"EndpointConfigName": "c", "ProductionVariants": [variant], "KmsKeyId": KEY}
    if shadow:
        config["ShadowProductionVariants"] = [variant | {"VariantName": "s", "InstanceType": shadow}]
    return config


@pytest.mark.parametrize("instance_type", ["ml.m5d.large", "ml.c5d.xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge"])
def test_an_endpoint_config_with_a_key_on_local_storage_is_refused(instance_type: str) -> None:
    problems = check_endpoint_config(_config(instance_type), MODELS)
    assert problems == [kms_refused(instance_type, "KmsKeyId")]
    assert check_endpoint_config(_config("ml.m5.large", shadow=instance_type), MODELS)  # a shadow's type counts


def test_an_endpoint_config_with_a_key_on_ebs_or_without_a_key_is_accepted() -> None:
    assert check_endpoint_config(_config("ml.m5.large"), MODELS) == []
    unkeyed = _config("ml.m5d.large")
    del unkeyed["KmsKeyId"]
    assert check_endpoint_config(unkeyed, MODELS) == []


def test_training_and_transform_jobs_with_a_volume_key_on_local_storage_are_refused() -> None:
    backend = SageMakerBackend.__new__(SageMakerBackend)  # the refusal comes before any state is touched
    training = {"TrainingJobName": "t", "ResourceConfig": {"InstanceType": "ml.m5d.large", "VolumeKmsKeyId": KEY}}
    with pytest.raises(SageMakerError, match=r"VolumeKmsKeyId is not supported for instance type ml\.m5d\.large"):
        backend.create_training_job(training)
    transform = {
        "TransformJobName": "t",
        "TransformResources": {"InstanceType": "ml.c5d.xlarge", "VolumeKmsKeyId": KEY},
    }
    with pytest.raises(SageMakerError, match=r"VolumeKmsKeyId is not supported for instance type ml\.c5d\.xlarge"):
        backend.create_transform_job(transform)
