"""Malformed input (issue 20): a batch file, a training CSV, a model archive. Each is refused before anything is
paid for or written, its file is kept (batch: under failed/ with a reason; training: where it was uploaded), and
one notification says which file and why. Driven along the state machines' Catch paths as the rollout's are."""

from __future__ import annotations

import io
import json

import jsonschema
import pytest
from shepherd import batch_run, training
from shepherd.config import Gate
from shepherd.errors import InvalidInput
from shepherd.evaluation import evaluate
from shepherd.model_archive import repack

from tests.unit.test_batch_run import CONFIG as BATCH_CONFIG
from tests.unit.test_batch_run import KEY, RUN, FakeBucket, FakeModels, deps
from tests.unit.test_model_archive import MODEL, SOURCE, tar_gz
from tests.unit.test_prepare_training_step import DATA, DATASET, World

from .conftest import Row
from .driver import SCHEMA, Harness

BUCKET = "shepherd-data"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


def batch_run_of(data: bytes, size: int | None = None) -> tuple[FakeBucket, dict[str, object]]:
    """statemachines/batch_transform.asl.json: PrepareTransform, its Catch (States.ALL) to FinishFailed, then
    DescribeFailure's notification."""
    bucket = FakeBucket({"models/churn/shepherd.yaml": BATCH_CONFIG, KEY: data})
    models = FakeModels(approved={"churn": {"ModelPackageArn": ARN}})
    request = batch_run.PrepareRequest(model="churn", bucket=BUCKET, key=KEY, size=size or len(data), run=RUN)
    with pytest.raises(InvalidInput) as refused:
        batch_run.prepare(deps(bucket, models), request)
    assert models.models == {}  # no model, no transform job: nothing paid for
    error = {"Error": type(refused.value).__name__, "Cause": json.dumps({"errorMessage": str(refused.value)})}
    finish = batch_run.FinishRequest(outcome="Failed", model="churn", run=RUN, bucket=BUCKET, key=KEY, error=error)
    summary = batch_run.finish(bucket, finish, deps(bucket, models).now())
    told = {
        "reason": f"{KEY} failed: {summary['reason']}",
        "detail": summary["detail"],
        "event": "BatchTransformFailed",
        "model": "churn",
        "execution": RUN,
    }
    jsonschema.validate(told, SCHEMA)
    return bucket, told


def filed_under_failed(bucket: FakeBucket) -> int:
    """The input is under failed/ with a reason file; the number of input files lost (0)."""
    assert KEY not in bucket.objects
    failed = [k for k in bucket.objects if k.startswith("batch/churn/failed/")]
    assert any(k.endswith(".reason.txt") for k in failed)
    assert any(not k.endswith(".reason.txt") for k in failed)
    return 0


@pytest.mark.parametrize(
    ("fault", "data", "size", "why"),
    [
        ("malformed batch file (ragged CSV)", b"1.0,2.0\n3.0\n", None, "InvalidBatchFile"),
        ("malformed batch file (not numbers)", b"1.0,2.0\nyes,no\n", None, "InvalidBatchFile"),
        ("oversized batch file (> 100 MB)", b"1.0,2.0\n", 101 * 2**20, "100 MB"),
    ],
)
def test_a_malformed_batch_file_is_filed_under_failed_with_its_reason(
    row: Row, fault: str, data: bytes, size: int | None, why: str
) -> None:
    bucket, told = batch_run_of(data, size)
    lost = filed_under_failed(bucket)
    assert why in str(told["reason"])
    assert "\n" not in str(told["reason"])
    row(fault, "PrepareTransform", "refused before any job; input under failed/", 0, 0, lost, told["reason"])


def test_a_malformed_training_csv_is_refused_and_the_dataset_kept(row: Row) -> None:
    # statemachines/model_lifecycle.asl.json: PrepareTraining's Catch to the ModelLifecycleFailed notification
    world = World()
    world.upload_model()
    request = world.upload_dataset(DATA | {"train/part-1.csv": b"target,x\n1,0.5,7\n"})
    uploaded = {key: list(versions) for key, versions in world.bucket.versions.items()}
    with pytest.raises(InvalidInput) as refused:
        world.prepare(request)
    assert world.bucket.written == []  # nothing under the run's artifacts
    assert world.bucket.versions == uploaded  # every uploaded file is where it was: none lost
    error = {"Error": type(refused.value).__name__, "Cause": json.dumps({"errorMessage": str(refused.value)})}
    told = training.failure_notice("arn:execution", {"model": "churn", "error": error})
    jsonschema.validate(told, SCHEMA)
    assert told["reason"] == f"TrainingDataError: {DATASET}train/part-1.csv line 2: 3 fields, the header has 2"
    row(
        "malformed training CSV",
        "PrepareTraining",
        "refused before the training job; dataset kept",
        0,
        0,
        0,
        told["reason"],
    )


@pytest.mark.parametrize(
    ("fault", "member"),
    [
        ("model archive with path traversal", ("file", "a/../../escaped.txt", b"x")),
        ("model archive with a symlink out", ("symlink", "link", "/etc/passwd")),
    ],
)
def test_a_hostile_model_archive_is_refused_and_the_champion_keeps_serving(
    row: Row, fault: str, member: tuple[str, str, bytes | str]
) -> None:
    # RegisterModel repacks the trained archive with its code (shepherd.model_archive.repack): refused there,
    # nothing is registered, so nothing rolls out; the champion serves on.
    harness = Harness()
    out = io.BytesIO()
    with pytest.raises(InvalidInput, match="member") as refused:
        repack(
            io.BytesIO(tar_gz([("file", "model.joblib", MODEL["model.joblib"]), member])),
            io.BytesIO(tar_gz(SOURCE)),
            out,
            program="inference.py",
            model_uri="s3://shepherd-data/artifacts/churn/run2/model.tar.gz",
        )
    error = {"Error": "InvalidInput", "Cause": json.dumps({"errorMessage": str(refused.value)})}
    told = training.failure_notice("arn:execution", {"model": "churn", "error": error})
    jsonschema.validate(told, SCHEMA)
    harness.settle_down(10)
    seen = harness.check()
    assert (seen["variants"], seen["answered_by"], seen["failed"]) == (["v1"], ["churn-v1"], 0)
    assert told["reason"].startswith("InvalidInput: s3://shepherd-data/artifacts/churn/run2/model.tar.gz: member")
    row(fault, "RegisterModel (repack)", "refused, not registered", 0, 0, "-", told["reason"])


def test_failed_evaluation_gates_register_nothing_and_the_champion_serves_on(row: Row) -> None:
    # statemachines/model_lifecycle.asl.json: Evaluate, GatesPassed (false) -> DescribeRejection -> NotifyRejected
    harness = Harness()
    gates = [Gate(metric="auc", direction="maximize", threshold=0.8)]
    evaluation = evaluate(gates, {"auc": 0.71}, champion=None)
    assert not evaluation.passed
    told = {
        "reason": evaluation.summary,
        "detail": "training job churn-train-2; champion " + ARN,
        "event": "ModelRejected",
        "execution": "arn:execution",
        "model": "churn",
    }
    jsonschema.validate(told, SCHEMA)
    harness.settle_down(10)
    seen = harness.check()
    assert (seen["variants"], seen["answered_by"], seen["failed"]) == (["v1"], ["churn-v1"], 0)
    assert told["reason"].startswith("rejected: auc = 0.71, must be at least 0.8")
    row("evaluation gates fail", "Evaluate", "not registered, no rollout", 0, 0, "-", told["reason"])
