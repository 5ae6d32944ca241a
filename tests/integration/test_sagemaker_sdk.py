"""The seed's SageMaker Python SDK v2 workflows, unchanged, against the local cloud."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"  # get_execution_role() only works inside SageMaker


@pytest.fixture(scope="module")
def sdk(cloud):
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker

    boto_session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    return sagemaker.Session(boto_session=boto_session)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    sys.path.insert(0, str(EXAMPLE))
    try:
        from generate_data import write_splits
    finally:
        sys.path.remove(str(EXAMPLE))
    return write_splits(tmp_path_factory.mktemp("churn"), rows=1500)


def test_sklearn_estimator_fit_then_batch_transform(cloud, sdk, data, tmp_path):
    from sagemaker.sklearn.estimator import SKLearn

    # Given the seed's notebook flow: data uploaded with the session, a script-mode SKLearn estimator
    bucket = sdk.default_bucket()
    assert bucket == "sagemaker-us-east-1-123456789012", "the SDK config names the bucket; no STS call"
    prefix = f"churn-{uuid.uuid4().hex[:8]}"
    train = sdk.upload_data(str(data["train"]), bucket=bucket, key_prefix=f"{prefix}/train")
    estimator = SKLearn(
        entry_point="train.py",
        source_dir=str(EXAMPLE),
        role=ROLE,
        instance_type="ml.m5.xlarge",
        framework_version="1.2-1",
        py_version="py3",
        hyperparameters={"n_estimators": 20, "max_depth": 4},
        metric_definitions=[{"Name": "validation:accuracy", "Regex": r"validation:accuracy=([0-9\.]+);"}],
        sagemaker_session=sdk,
    )
    # When it fits
    estimator.fit({"train": train}, wait=True, logs="None")
    # Then the job completed and its model artifact is in S3
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed"
    assert estimator.model_data.endswith("/output/model.tar.gz")

    # Given features without the label, When the estimator's transformer scores them
    test = pd.read_csv(data["test"])
    features = test.drop(columns=["target"])
    batch = tmp_path / "batch.csv"
    features.to_csv(batch, header=False, index=False)
    batch_input = sdk.upload_data(str(batch), bucket=bucket, key_prefix=f"{prefix}/batch-input")
    transformer = estimator.transformer(
        instance_count=1,
        instance_type="ml.m5.xlarge",
        output_path=f"s3://{bucket}/{prefix}/batch-output/",
        entry_point="inference.py",
    )
    transformer.transform(data=batch_input, content_type="text/csv", split_type="Line")
    transformer.wait(logs=False)
    # Then there is one prediction per input line, each a churn probability. The seed sets no accept
    # type, so the container answers in its default, JSON: one document per mini-batch, concatenated.
    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/batch-output/batch.csv.out")["Body"].read().decode()
    decoder, position, values = json.JSONDecoder(), 0, []
    while position < len(body.strip()):
        document, position = decoder.raw_decode(body, position)
        values += document["predictions"]
        while position < len(body) and body[position].isspace():
            position += 1
    predictions = np.array(values, dtype=float)
    assert len(predictions) == len(features)
    assert ((predictions >= 0) & (predictions <= 1)).all()
