"""The BatchTransform steps (shepherd.batch_run) on in-memory ports: checking, choosing the model, filing away."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from shepherd import batch_run
from shepherd.batch import InvalidBatchFile
from shepherd.errors import InvalidInput, NotFound
from shepherd.rollout import MULTI_MODEL_PACKAGE

BUCKET = "shepherd-data"
KEY = "batch/churn/input/day1/scores.csv"
RUN = "churn-batch-0123456789ab"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"
CONFIG = b"framework: sklearn\nentry_point: train.py\n"


@dataclass
class FakeBucket:
    objects: dict[str, bytes] = field(default_factory=dict)

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        if key not in self.objects:
            raise NotFound(f"reading s3://{bucket}/{key}: no such object")
        return self.objects[key]

    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "") -> str | None:
        self.objects[key] = data
        return None

    def move(self, bucket: str, key: str, version_id: str | None, target: str) -> None:
        self.objects[target] = self.objects.pop(key)


@dataclass
class FakeModels:
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    approved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        return self.endpoints.get(name)

    def describe_endpoint_config(self, name: str) -> dict[str, Any]:
        return self.configs[name]

    def describe_model(self, name: str) -> dict[str, Any]:
        return self.models[name]

    def create_model(self, request: dict[str, Any]) -> None:
        self.models.setdefault(request["ModelName"], request)

    def latest_approved_package(self, group: str) -> dict[str, Any] | None:
        return self.approved.get(group)


@pytest.fixture
def bucket() -> FakeBucket:
    return FakeBucket({"models/churn/shepherd.yaml": CONFIG, KEY: b"1.0,2.0\n3.0,4.0\n"})


@pytest.fixture
def models() -> FakeModels:
    return FakeModels()


def deps(bucket: FakeBucket, models: FakeModels, default_instance_type: str | None = None) -> batch_run.Deps:
    return batch_run.Deps(
        bucket=bucket,
        models=models,
        sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
        now=lambda: NOW,
        default_instance_type=default_instance_type,
    )


def prepare(bucket: FakeBucket, models: FakeModels, **kwargs: Any) -> dict[str, Any]:
    request = batch_run.PrepareRequest(model="churn", bucket=BUCKET, key=KEY, size=len(bucket.objects[KEY]), run=RUN)
    return batch_run.prepare(deps(bucket, models, **kwargs), request)


def serving(models: FakeModels, container: dict[str, Any]) -> None:
    """Endpoint churn serves mostly variant v2 (model churn-v2) with the given container."""
    models.endpoints["churn"] = {
        "EndpointStatus": "InService",
        "EndpointConfigName": "churn-ab",
        "ProductionVariants": [{"VariantName": "v1", "CurrentWeight": 25}, {"VariantName": "v2", "CurrentWeight": 75}],
    }
    models.configs["churn-ab"] = {
        "ProductionVariants": [
            {"VariantName": "v1", "ModelName": "churn-v1"},
            {"VariantName": "v2", "ModelName": "churn-v2"},
        ]
    }
    models.models["churn-v2"] = {"PrimaryContainer": container}


def test_the_endpoint_s_main_variant_scores_the_batch(bucket: FakeBucket, models: FakeModels) -> None:
    # Given an endpoint whose challenger carries most of the traffic
    serving(models, {"ModelPackageName": ARN})
    # When a file is prepared
    prepared = prepare(bucket, models)
    # Then that model scores it, from a manifest naming the one file
    assert (prepared["model_name"], prepared["model_package_arn"]) == ("churn-v2", ARN)
    assert prepared["records"] == 2
    manifest = json.loads(bucket.objects[f"artifacts/churn/batch/{RUN}/manifest.json"])
    assert manifest[0] == {"prefix": f"s3://{BUCKET}/batch/churn/input/day1/"}
    assert prepared["transform_request"]["ModelName"] == "churn-v2"
    assert prepared["started"] == NOW.isoformat()


def test_a_multi_model_champion_scores_as_a_single_model_of_its_package(bucket: FakeBucket, models: FakeModels) -> None:
    # Given a multi-model endpoint (a transform job sends no TargetModel)
    serving(models, {"Mode": "MultiModel", "Environment": {MULTI_MODEL_PACKAGE: ARN}})
    prepared = prepare(bucket, models)
    # Then batch scores with a model made from the champion's package
    assert prepared["model_name"] == "churn-v3-batch"
    assert models.models["churn-v3-batch"]["PrimaryContainer"] == {"ModelPackageName": ARN}
    assert models.models["churn-v3-batch"]["EnableNetworkIsolation"] is True


def test_without_an_endpoint_the_latest_approved_package_scores(bucket: FakeBucket, models: FakeModels) -> None:
    models.approved["churn"] = {"ModelPackageArn": ARN}
    assert prepare(bucket, models)["model_name"] == "churn-v3-batch"


def test_with_nothing_to_score_with_the_error_says_what_to_do(bucket: FakeBucket, models: FakeModels) -> None:
    with pytest.raises(InvalidInput, match="train churn and approve a package first"):
        prepare(bucket, models)


def test_a_missing_config_names_the_file(bucket: FakeBucket, models: FakeModels) -> None:
    del bucket.objects["models/churn/shepherd.yaml"]
    with pytest.raises(InvalidInput, match=r"s3://shepherd-data/models/churn/shepherd\.yaml does not exist"):
        prepare(bucket, models)


def test_a_ragged_csv_is_refused_before_any_job(bucket: FakeBucket, models: FakeModels) -> None:
    models.approved["churn"] = {"ModelPackageArn": ARN}
    bucket.objects[KEY] = b"1.0,2.0\n3.0\n"
    with pytest.raises(InvalidBatchFile):
        prepare(bucket, models)
    assert models.models == {}


def test_the_stack_s_default_instance_type_fills_only_an_unset_one(bucket: FakeBucket, models: FakeModels) -> None:
    models.approved["churn"] = {"ModelPackageArn": ARN}
    instance = prepare(bucket, models, default_instance_type="ml.c5.xlarge")["transform_request"]
    assert instance["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    bucket.objects["models/churn/shepherd.yaml"] = CONFIG + b"batch:\n  instance_type: ml.m5.large\n"
    instance = prepare(bucket, models, default_instance_type="ml.c5.xlarge")["transform_request"]
    assert instance["TransformResources"]["InstanceType"] == "ml.m5.large"


def test_a_completed_run_files_its_input_under_processed(bucket: FakeBucket) -> None:
    request = batch_run.FinishRequest(outcome="Completed", model="churn", run=RUN, bucket=BUCKET, key=KEY, records=2)
    summary = batch_run.finish(bucket, request, NOW)
    assert KEY not in bucket.objects
    assert summary["moved_to_uri"].startswith(f"s3://{BUCKET}/batch/churn/processed/")
    assert summary["output_uris"] == [f"s3://{BUCKET}/batch/churn/output/{RUN}/scores.csv.out"]
    written = json.loads(bucket.objects[summary["summary_uri"].removeprefix(f"s3://{BUCKET}/")])
    assert written["status"] == "Completed"


def test_a_failed_run_files_its_input_under_failed_with_the_lambda_s_message(bucket: FakeBucket) -> None:
    cause = json.dumps({"errorMessage": "line 3: expected 2 fields, saw 1", "stackTrace": ["..."]})
    request = batch_run.FinishRequest(
        outcome="Failed",
        model="churn",
        run=RUN,
        bucket=BUCKET,
        key=KEY,
        error={"Error": "InvalidBatchFile", "Cause": cause},
    )
    summary = batch_run.finish(bucket, request, NOW)
    assert summary["reason"] == "InvalidBatchFile: line 3: expected 2 fields, saw 1"
    reasons = [k for k in bucket.objects if k.startswith("batch/churn/failed/") and k.endswith(".reason.txt")]
    assert [bucket.objects[k] for k in reasons] == [b"InvalidBatchFile: line 3: expected 2 fields, saw 1\n"]
    assert summary["output_uris"] == []
