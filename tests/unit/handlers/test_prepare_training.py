"""PrepareTraining: validates the model's config, snapshots its code and dataset, and builds the training request."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from types import ModuleType
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import validate_parameters
from shepherd.errors import InvalidInput

from .conftest import BUCKET, KEY_ARN, ROLE_ARN, ROOT, Cloud, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
CONFIG = (ROOT / "examples" / "churn" / "shepherd.yaml").read_text()
CONFIG_KEY = "models/churn/shepherd.yaml"
CODE = {"train.py": "print('validation:auc=0.82;')\n", "inference.py": "def model_fn(model_dir):\n    return None\n"}
DATA = {"train/part-0.csv": "target,x,y\n1,0.5,0.2\n0,0.1,0.9\n", "validation/part-0.csv": "target,x,y\n1,0.4,0.3\n"}


@pytest.fixture
def prepare_training(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("prepare_training")


def upload_model(aws: Cloud, config: str | None = CONFIG, code: dict[str, str] = CODE) -> None:
    if config is not None:
        aws.put(CONFIG_KEY, config)
    for name, text in code.items():
        aws.put(f"models/churn/code/{name}", text)


def upload_dataset(aws: Cloud, files: dict[str, str] = DATA, **given: Any) -> dict[str, Any]:
    """The dataset's files and its marker; returns PrepareTraining's input for it (the execution's input, its name)."""
    event = sample_event("prepare_training")
    dataset = event["input"]
    for name, text in files.items():
        aws.put(f"{dataset['prefix']}{name}", text)
    return event | {"input": dataset | {"marker_version": aws.put(dataset["marker"], b"")} | given}


def versions(aws: Cloud, prefix: str) -> list[tuple[str, str]]:
    listed = aws.s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return sorted((v["Key"], v["VersionId"]) for v in listed.get("Versions", []))


def test_a_good_upload_builds_a_request_with_manifest_channels(aws: Cloud, prepare_training: ModuleType) -> None:
    # Given the churn example's config and code, and a dataset with train/ and validation/ folders
    upload_model(aws)
    event = upload_dataset(aws)
    # When PrepareTraining runs
    prepared = prepare_training.handler(event, aws.context)
    # Then the request trains on one manifest per channel, written under the run's artifacts, and (isolated, as
    # the example is) gets the code snapshot as the SDK's code channel
    request = prepared["training_request"]
    run_prefix = f"artifacts/churn/{event['run']}/"
    assert [
        (c["ChannelName"], c["DataSource"]["S3DataSource"]["S3DataType"], c["DataSource"]["S3DataSource"]["S3Uri"])
        for c in request["InputDataConfig"]
    ] == [
        ("train", "ManifestFile", f"s3://{BUCKET}/{run_prefix}manifests/train.json"),
        ("validation", "ManifestFile", f"s3://{BUCKET}/{run_prefix}manifests/validation.json"),
        ("code", "S3Prefix", f"s3://{BUCKET}/{run_prefix}sourcedir.tar.gz"),
    ]
    assert json.loads(request["HyperParameters"]["sagemaker_submit_directory"]) == (
        "/opt/ml/input/data/code/sourcedir.tar.gz"
    )
    assert request["RoleArn"] == ROLE_ARN
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == KEY_ARN
    assert prepared["source_uri"] == f"s3://{BUCKET}/{run_prefix}sourcedir.tar.gz"
    assert prepared["lineage_uri"] == f"s3://{BUCKET}/{run_prefix}lineage.json"
    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model("CreateTrainingJob").input_shape)


def test_a_good_upload_writes_only_under_the_runs_artifacts(aws: Cloud, prepare_training: ModuleType) -> None:
    # Given a model and a dataset, and every object version in the bucket
    upload_model(aws)
    event = upload_dataset(aws)
    before = versions(aws, "")
    # When PrepareTraining runs
    prepare_training.handler(event, aws.context)
    # Then exactly the run's artifacts were added: nothing under training/ or batch/*/input/ (no new triggers)
    added = sorted(set(versions(aws, "")) - set(before))
    run_prefix = f"artifacts/churn/{event['run']}/"
    assert sorted(key for key, _ in added) == [
        f"{run_prefix}lineage.json",
        f"{run_prefix}manifests/train.json",
        f"{run_prefix}manifests/validation.json",
        f"{run_prefix}sourcedir.tar.gz",
    ]


def test_manifests_name_exactly_the_channels_files(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws)
    event = upload_dataset(aws)
    prepare_training.handler(event, aws.context)
    manifest = json.loads(aws.read(f"artifacts/churn/{event['run']}/manifests/train.json"))
    assert manifest == [{"prefix": f"s3://{BUCKET}/{event['input']['prefix']}train/"}, "part-0.csv"]


def test_the_source_archive_holds_the_code_dir(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws)
    event = upload_dataset(aws)
    prepare_training.handler(event, aws.context)
    archive = aws.read(f"artifacts/churn/{event['run']}/sourcedir.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["inference.py", "train.py"]


def test_the_lineage_records_each_data_objects_version(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws)
    event = upload_dataset(aws)
    prepared = prepare_training.handler(event, aws.context)
    lineage = json.loads(aws.read(f"artifacts/churn/{event['run']}/lineage.json"))
    uploaded = {
        key: version for key, version in versions(aws, event["input"]["prefix"]) if key != event["input"]["marker"]
    }
    assert {o["key"]: o["version_id"] for o in lineage["data"]} == uploaded
    assert lineage["marker_version"] == event["input"]["marker_version"]
    assert prepared["lineage"]["channels"] == "train,validation"


def test_a_missing_config_is_invalid_input_naming_its_key(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws, config=None)
    event = upload_dataset(aws)
    with pytest.raises(InvalidInput, match=f"s3://{BUCKET}/{CONFIG_KEY} does not exist"):
        prepare_training.handler(event, aws.context)


def test_an_invalid_config_is_invalid_input_listing_the_problem(aws: Cloud, prepare_training: ModuleType) -> None:
    broken = yaml.safe_load(CONFIG) | {"framework": "pytorch"}
    upload_model(aws, config=yaml.safe_dump(broken))
    event = upload_dataset(aws)
    with pytest.raises(InvalidInput) as refused:
        prepare_training.handler(event, aws.context)
    assert CONFIG_KEY in str(refused.value)
    assert "framework" in str(refused.value)
    assert "pytorch" in str(refused.value)


def test_a_dataset_with_only_its_marker_is_invalid_input(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws)
    event = upload_dataset(aws, files={})
    with pytest.raises(InvalidInput, match="holds no data besides its _READY marker"):
        prepare_training.handler(event, aws.context)


def test_an_entry_point_missing_from_the_code_dir_is_invalid_input(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws, code={"inference.py": CODE["inference.py"]})
    event = upload_dataset(aws)
    with pytest.raises(InvalidInput, match=r"models/churn/code/train\.py does not exist"):
        prepare_training.handler(event, aws.context)


def test_refused_inputs_write_nothing(aws: Cloud, prepare_training: ModuleType) -> None:
    upload_model(aws, code={})
    event = upload_dataset(aws)
    with pytest.raises(InvalidInput):
        prepare_training.handler(event, aws.context)
    assert aws.keys("artifacts/") == set()


def test_requirements_in_an_isolated_source_dir_are_refused_saying_what_to_do(
    aws: Cloud, prepare_training: ModuleType
) -> None:
    # Given the churn example (network isolation on) with a requirements.txt beside its scripts
    upload_model(aws, code=CODE | {"requirements.txt": "lightgbm==4.6.0\n"})
    event = upload_dataset(aws)
    # When PrepareTraining runs, then it refuses before anything is written, naming both ways out
    with pytest.raises(InvalidInput, match=r"requirements\.txt: training\.network_isolation is on") as refused:
        prepare_training.handler(event, aws.context)
    assert "vendor the packages into the code directory" in str(refused.value)
    assert aws.keys("artifacts/") == set()


def test_requirements_train_from_s3_when_isolation_is_off(aws: Cloud, prepare_training: ModuleType) -> None:
    # Given isolation turned off and a serverless endpoint (the one serving container SageMaker does not isolate):
    # every container may pip-install, and the training one downloads its code itself
    config = yaml.safe_load(CONFIG)
    config["training"]["network_isolation"] = False
    config["endpoint"] = {"kind": "serverless"}
    upload_model(aws, config=yaml.safe_dump(config), code=CODE | {"requirements.txt": "lightgbm==4.6.0\n"})
    event = upload_dataset(aws)
    request = prepare_training.handler(event, aws.context)["training_request"]
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    assert json.loads(request["HyperParameters"]["sagemaker_submit_directory"]) == (
        f"s3://{BUCKET}/artifacts/churn/{event['run']}/sourcedir.tar.gz"
    )


def test_a_ragged_csv_is_invalid_input_naming_the_file_and_line(aws: Cloud, prepare_training: ModuleType) -> None:
    # Given a train file whose third line has a field too many
    upload_model(aws)
    event = upload_dataset(aws, DATA | {"train/part-1.csv": "target,x,y\n1,0.5,0.2\n0,0.1,0.9,7\n"})
    # When PrepareTraining runs, then it refuses before any job, naming the object and the line
    with pytest.raises(InvalidInput) as refused:
        prepare_training.handler(event, aws.context)
    assert str(refused.value) == f"{event['input']['prefix']}train/part-1.csv line 3: 4 fields, the header has 3"
    assert aws.keys("artifacts/") == set()


def test_a_dataset_already_registered_is_skipped_unless_forced(aws: Cloud, prepare_training: ModuleType) -> None:
    # Given a run registered as version 1 of the model's group, with the lineage PrepareTraining recorded
    upload_model(aws)
    event = upload_dataset(aws)
    lineage = prepare_training.handler(event, aws.context)["lineage"]
    aws.sagemaker.create_model_package_group(ModelPackageGroupName="churn")
    arn = aws.sagemaker.create_model_package(
        ModelPackageGroupName="churn",
        CustomerMetadataProperties={f"shepherd:{k}": v for k, v in lineage.items() if v},
    )["ModelPackageArn"]
    # When the same marker starts another run, then it is skipped, naming the package
    again = event | {"run": "churn-coldstart-again"}
    skipped = prepare_training.handler(again, aws.context)
    assert skipped["skipped"] is True
    assert skipped["reason"].startswith(f"already trained: {arn}")
    assert not aws.keys("artifacts/churn/churn-coldstart-again/")
    # and with "force": true in the execution's input, it trains
    forced = prepare_training.handler(again | {"input": again["input"] | {"force": True}}, aws.context)
    assert forced["skipped"] is False


def test_the_failure_path_gets_its_notification_from_the_same_function(
    aws: Cloud, prepare_training: ModuleType
) -> None:
    # Given the lifecycle's state when PrepareTraining failed, as the DescribeFailure state passes it
    cause = json.dumps({"errorMessage": "k.csv line 3: 4 fields, the header has 3", "errorType": "TrainingDataError"})
    event = {
        "action": "describe_failure",
        "execution": "arn:aws:states:us-east-1:123456789012:execution:lifecycle:run",
        "state": sample_event("prepare_training")["input"] | {"error": {"Error": "TrainingDataError", "Cause": cause}},
    }
    # When the function describes it, then the notification leads with the one-line reason
    notice = prepare_training.handler(event, aws.context)
    assert list(notice)[:3] == ["reason", "detail", "event"]
    assert notice["reason"] == "TrainingDataError: k.csv line 3: 4 fields, the header has 3"
    assert (notice["model"], notice["execution"]) == ("churn", event["execution"])
