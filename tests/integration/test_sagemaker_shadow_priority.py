"""A shadow variant's worker processes run at a lower CPU priority than production's, in the same CPU group."""

from __future__ import annotations

import os
import tarfile
import uuid

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from localcloud.sagemaker import serving

from .conftest import FIXTURES, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


@pytest.fixture(scope="module")
def model_url(cloud, tmp_path_factory):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    work = tmp_path_factory.mktemp("shadow-model")
    joblib.dump(model, work / "model.joblib")
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work / "model.joblib", arcname="model.joblib")
        tar.add(FIXTURES / "serving" / "inference.py", arcname="code/inference.py")
    bucket = f"shadow-{uuid.uuid4().hex[:8]}"
    s3 = cloud.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(archive), bucket, "model/model.tar.gz")
    return f"s3://{bucket}/model/model.tar.gz"


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of /proc/<pid>/stat (fields[0] here is field 3, the state)


def _autogroup(pid: int) -> str:
    with open(f"/proc/{pid}/autogroup") as autogroup:  # "/autogroup-17 nice 0"
        return autogroup.read().split()[0]


def test_shadow_workers_run_at_a_higher_nice_value_than_production(cloud, model_url):
    sagemaker = cloud.client("sagemaker")
    suffix = uuid.uuid4().hex[:8]
    sagemaker.create_model(
        ModelName=f"m-{suffix}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url}
    )
    variant = {"ModelName": f"m-{suffix}", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"c-{suffix}",
        ProductionVariants=[{"VariantName": "Production", **variant}],
        ShadowProductionVariants=[{"VariantName": "Shadow", "InitialVariantWeight": 1.0, **variant}],
    )
    sagemaker.create_endpoint(EndpointName=f"e-{suffix}", EndpointConfigName=f"c-{suffix}")
    wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=f"e-{suffix}")["EndpointStatus"] == "InService", timeout=120
    )
    variants = cloud.sagemaker.endpoints[f"e-{suffix}"].variants
    production, shadow = variants["Production"].fleet.pids, variants["Shadow"].fleet.pids
    assert len(production) == 2
    assert len(shadow) == 2

    production_nice = {_nice(pid) for pid in production}
    shadow_nice = {_nice(pid) for pid in shadow}
    assert production_nice == {os.getpriority(os.PRIO_PROCESS, pid) for pid in production}
    assert shadow_nice == {os.getpriority(os.PRIO_PROCESS, pid) for pid in shadow}
    assert min(shadow_nice) > max(production_nice)
    assert min(shadow_nice) - max(production_nice) == min(serving.SHADOW_NICE, 19 - max(production_nice))
    # One session, so one autogroup for all: nice values weigh only within a group.
    assert len({os.getsid(pid) for pid in production + shadow}) == 1
    assert len({os.getpgid(pid) for pid in production + shadow}) == 4  # each its own process group
    if os.path.exists(f"/proc/{shadow[0]}/autogroup"):
        assert len({_autogroup(pid) for pid in production + shadow}) == 1

    # Both still serve: production answers, the shadow gets the mirrored copy.
    runtime = cloud.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(
        EndpointName=f"e-{suffix}", Body="0.5,0,0,0", ContentType="text/csv", Accept="text/csv"
    )
    assert response["InvokedProductionVariant"] == "Production"
    assert float(response["Body"].read().decode().strip()) > 0.5
    sagemaker.delete_endpoint(EndpointName=f"e-{suffix}")
