"""No KMS key where SageMaker refuses one: instance types with local NVMe storage.

CreateEndpointConfig's KmsKeyId and ResourceConfig's VolumeKmsKeyId (SageMaker API reference): "You can't
request a ... when using an instance type with local storage" - the call fails.
"""

from __future__ import annotations

import pytest
from shepherd.instances import has_instance_storage
from shepherd.rollout import plan

from tests.unit.test_rollout_plan import _config
from tests.unit.test_training import KEY, config_of, request_of

LOCAL_STORAGE = ["ml.m5d.large", "ml.c5d.xlarge", "ml.r5d.2xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge", "ml.p4d.24xlarge"]
EBS_ONLY = ["ml.m5.large", "ml.c5.xlarge", "ml.t2.medium", "ml.r5.large", "ml.p3.2xlarge", "ml.inf1.xlarge"]


@pytest.mark.parametrize("instance_type", LOCAL_STORAGE)
def test_instance_types_with_local_storage_are_recognised(instance_type: str) -> None:
    assert has_instance_storage(instance_type)


@pytest.mark.parametrize("instance_type", [*EBS_ONLY, None])
def test_ebs_only_instance_types_take_a_key(instance_type: str | None) -> None:
    assert not has_instance_storage(instance_type)


def _endpoint_config(champion_type: str, candidate_type: str) -> dict[str, object]:
    champion = plan.VariantSpec(variant="v1", model_name="m1", instance_type=champion_type, instance_count=2)
    candidate = plan.VariantSpec(variant="v2", model_name="m2", instance_type=candidate_type, instance_count=2)
    return plan.endpoint_config(
        _config(),
        name="c",
        production=[(champion, 1.0)],
        shadow=candidate,
        bucket="b",
        endpoint="churn",
        kms_key_arn=KEY,
        tags={},
    )


def test_an_endpoint_config_with_any_local_storage_variant_has_no_kms_key() -> None:
    assert _endpoint_config("ml.m5.large", "ml.m5.large")["KmsKeyId"] == KEY
    assert "KmsKeyId" not in _endpoint_config("ml.m5.large", "ml.g4dn.xlarge")  # the shadow's type counts too
    assert "KmsKeyId" not in _endpoint_config("ml.c5d.large", "ml.m5.large")


def test_training_on_local_storage_keeps_the_output_key_but_no_volume_key() -> None:
    request = request_of(config_of(training={"instance_type": "ml.m5d.large"}))
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY
