"""ModelLifecycle on the local cloud with the real template and real training of examples/churn.

A user uploads a model's config and code, then a dataset and its _READY marker; Shepherd trains,
evaluates against the gates and the champion, and registers a package with its lineage, or says
clearly why not.
"""

from __future__ import annotations

import json
import time

import pytest

from localcloud.deployer import Deployer

from .conftest import finished_execution, wait_for
from .workflow import EXAMPLE, FAILING, ROOT, App, churn_config, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(cloud):
    outputs = Deployer(cloud, "wf").deploy(ROOT / "template.yaml", {"StageName": "wftest"})
    return App(cloud, outputs | {"_stack": "wf"})


def test_a_marked_dataset_becomes_a_registered_package_with_metrics_and_lineage(app):
    model = unique("churn")
    app.upload_project(model, churn_config(model))
    marker_version = app.upload_dataset(model, "2026-11-25")

    execution = app.run_of(model, "2026-11-25")

    assert execution["status"] == "SUCCEEDED", execution
    (package,) = app.packages(model)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"  # a human approves (the AWS default)
    metadata = package["CustomerMetadataProperties"]
    assert float(metadata["metric:validation:auc"]) > 0.75
    assert metadata["shepherd:execution"] == execution["name"]
    assert metadata["shepherd:marker_version"] == marker_version
    # the package serves the model repacked with its inference code, as an isolated container needs it
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{app.bucket}/artifacts/{model}/{execution['name']}/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    # the full lineage: every data object's version id, the code's, the config's
    lineage_key = metadata["shepherd:lineage"].removeprefix(f"s3://{app.bucket}/")
    lineage = json.loads(app.s3.get_object(Bucket=app.bucket, Key=lineage_key)["Body"].read())
    data_keys = {o["key"]: o["version_id"] for o in lineage["data"]}
    assert set(data_keys) == {f"training/{model}/2026-11-25/{s}/{s}.csv" for s in ("train", "validation")}
    assert all(data_keys.values())
    assert lineage["config"]["version_id"]
    assert {c["key"].rsplit("/", 1)[1] for c in lineage["code"]} == {"train.py", "inference.py"}
    notification = app.notifications("ModelRegistered", model)
    assert notification["package"] == package["ModelPackageArn"]
    assert notification["reason"] == f"registered {package['ModelPackageArn']} (PendingManualApproval)"
    # the job carried Shepherd's secure settings
    job = app.sagemaker.describe_training_job(TrainingJobName=metadata["shepherd:training_job"])
    assert job["EnableNetworkIsolation"] is True
    assert job["InputDataConfig"][-1]["ChannelName"] == "code"  # its code came in as the SDK's code channel
    assert (
        json.loads(job["HyperParameters"]["sagemaker_submit_directory"]) == "/opt/ml/input/data/code/sourcedir.tar.gz"
    )
    assert job["OutputDataConfig"]["KmsKeyId"] == app.outputs["DataKeyArn"]
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == app.outputs["DataKeyArn"]
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"]
    # waiting was event-driven: no polling loop in the history while the job ran
    history = app.history(execution["executionArn"])
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    print(f"ModelLifecycle: {len(entered)} states entered, {len(history)} history events: {entered}")
    assert entered.count("Train") == 1
    assert len(entered) <= 10
    # The same marker uploaded again: the same data, code and config are not trained twice
    app.s3.put_object(Bucket=app.bucket, Key=f"training/{model}/2026-11-25/_READY", Body=b"")
    (again,) = wait_for(lambda: [e for e in app.executions(f"{model}-2026-11-25-") if e["name"] != execution["name"]])
    skipped = finished_execution(app.cloud, again["executionArn"])
    assert skipped["status"] == "SUCCEEDED"
    assert json.loads(skipped["output"])["event"] == "TrainingSkipped"
    notice = app.notifications("TrainingSkipped", model)
    assert notice["reason"].startswith(f"already trained: {package['ModelPackageArn']} (version 1, ")
    assert len(app.packages(model)) == 1
    assert "Train" not in app.path(skipped)


def test_a_ragged_or_unlabelled_csv_fails_before_any_training_job_naming_file_and_line(app):
    model = unique("unlabelled")
    app.upload_project(model, churn_config(model))  # training.target_column: target
    app.upload_dataset(model, "bad", breaking=True)

    execution = app.run_of(model, "bad")

    assert execution["status"] == "FAILED"
    reason = f"TrainingDataError: training/{model}/bad/train/train.csv line 1: no column 'target' (training."
    assert execution["error"] == "ModelLifecycleFailed"
    assert execution["cause"].startswith(reason)
    notification = app.notifications("ModelLifecycleFailed", model)
    assert notification["error"] == "TrainingDataError"
    assert list(notification)[:3] == ["reason", "detail", "event"]
    assert notification["reason"] == execution["cause"]
    assert "stackTrace" not in json.dumps(notification)
    assert app.sagemaker.list_training_jobs(NameContains=model)["TrainingJobSummaries"] == []


def test_a_csv_the_check_cannot_judge_fails_in_the_script_with_its_one_line_reason(app):
    model = unique("broken")
    app.upload_project(model, churn_config(model, **{"training.target_column": None}))
    app.upload_dataset(model, "bad", breaking=True)

    execution = app.run_of(model, "bad")

    assert execution["status"] == "FAILED"
    notification = app.notifications("ModelLifecycleFailed", model)
    assert notification["error"] == "TrainingJobFailed"
    assert "AlgorithmError: train.csv: no column 'target' (the header has tenure" in notification["reason"]
    assert "\n" not in notification["reason"]
    assert app.packages(model) == []


def test_a_model_that_fails_its_gates_is_not_registered_and_the_reason_is_sent(app):
    model = unique("picky")
    config = churn_config(model)
    config["evaluation"]["gates"][0]["threshold"] = 0.999
    app.upload_project(model, config)
    app.upload_dataset(model, "d1")

    execution = app.run_of(model, "d1")

    assert execution["status"] == "SUCCEEDED"
    notification = app.notifications("ModelRejected", model)
    assert "validation:auc" in notification["reason"]
    assert "at least 0.999" in notification["reason"]
    assert app.packages(model) == []


def test_a_challenger_must_beat_the_champion(app):
    model = unique("champ")
    config = churn_config(model)
    config["evaluation"]["gates"][0]["must_beat_champion_by"] = 0.5  # impossible on the same rows
    app.upload_project(model, churn_config(model, approval="automatic"))  # an approved champion
    app.upload_dataset(model, "first")
    assert app.run_of(model, "first")["status"] == "SUCCEEDED"
    app.upload_project(model, config)
    app.upload_dataset(model, "second", seed=8)

    assert app.run_of(model, "second", timeout=180)["status"] == "SUCCEEDED"

    notification = app.notifications("ModelRejected", model)
    assert "on the same 225 validation rows accuracy" in notification["reason"]
    assert "must beat the champion by at least 0.5 at 95%" in notification["reason"]
    assert len(app.packages(model)) == 1


def test_a_second_version_is_compared_with_the_champion_on_its_own_validation_rows(app):
    # Given a weak Approved champion (shallow trees, low thresholds)
    model = unique("paired")
    weak = churn_config(model, approval="automatic", **{"hyperparameters.max_depth": 1})
    for gate in weak["evaluation"]["gates"]:
        gate["threshold"] = 0.5
    app.upload_project(model, weak)
    started = time.monotonic()
    app.upload_dataset(model, "first")
    assert app.run_of(model, "first")["status"] == "SUCCEEDED"
    first_seconds = time.monotonic() - started
    (champion,) = app.packages(model)
    # When a deeper model trains on a new dataset (500 validation rows)
    app.upload_project(model, churn_config(model))
    started = time.monotonic()
    app.upload_dataset(model, "second", rows=2000, seed=8)
    execution = app.run_of(model, "second", timeout=180)
    second_seconds = time.monotonic() - started

    # Then both models scored the candidate's validation rows in parallel, and the comparison was judged
    assert execution["status"] == "SUCCEEDED", execution
    taken = app.path(execution)
    order = [taken.index(state) for state in ("Evaluate", "ScoreOnSameRows", "JudgeOnSameRows", "Register")]
    assert order == sorted(order)
    assert order[1] < taken.index("ScoreCandidate") < order[2]
    assert order[1] < taken.index("ScoreChampion") < order[2]
    print(f"wall seconds per run: {first_seconds:.1f} without a champion, {second_seconds:.1f} compared with it")
    times = {
        (e["type"], (e.get("stateEnteredEventDetails") or {}).get("name")): e
        for e in app.history(execution["executionArn"])
    }
    comparing = (
        times[("TaskStateEntered", "Register")]["timestamp"] - times[("TaskStateEntered", "Evaluate")]["timestamp"]
    )
    print(f"Evaluate to Register (the comparison on the same rows): {comparing.total_seconds():.1f} s")
    # and the package records it, with the keys the replay stage reads
    (candidate,) = [p for p in app.packages(model) if p["ModelPackageArn"] != champion["ModelPackageArn"]]
    metadata = candidate["CustomerMetadataProperties"]
    assert metadata["shepherd:problem"] == "classification"
    assert metadata["shepherd:paired-rows"] == "500"
    assert 0.0 < float(metadata["shepherd:paired-disagreement"]) < 0.5
    assert float(metadata["shepherd:paired-lower"]) > 0.0  # shown better at 95 %
    # and so does the run's evaluation record
    record = json.loads(
        app.s3.get_object(Bucket=app.bucket, Key=metadata["shepherd:evaluation"].removeprefix(f"s3://{app.bucket}/"))[
            "Body"
        ].read()
    )
    assert record["champion"] == champion["ModelPackageArn"]
    compared = record["paired"]["validation:auc"]
    assert (compared["rows"], compared["metric"]) == (500, "accuracy")
    assert compared["candidate"] > compared["champion"]
    assert record["passed"] is True

    # When a candidate whose serving code fails every request trains next
    app.upload_project(
        model, churn_config(model), {"train.py": (EXAMPLE / "train.py").read_bytes(), "inference.py": FAILING.encode()}
    )
    app.upload_dataset(model, "third", rows=2000, seed=9)
    third = app.run_of(model, "third", timeout=180)
    # Then its scoring job failed and was recorded, and the gate rejected it for that reason
    assert third["status"] == "SUCCEEDED", third
    assert "CandidateNotScored" in app.path(third)
    notification = app.notifications("ModelRejected", model)
    assert "the candidate could not score its own validation rows: TransformJobFailed" in notification["reason"]
    assert len(app.packages(model)) == 2


def test_a_lost_job_event_is_settled_by_the_reconciler(app, cloud):
    model = unique("lost")
    events = cloud.client("events")
    rule = next(
        r["Name"]
        for r in events.list_rules()["Rules"]
        if r["Name"].startswith("wf-JobCallbackFunctionTrainingStateChange")
    )
    events.disable_rule(Name=rule)
    try:
        app.upload_project(model, churn_config(model))
        app.upload_dataset(model, "d1")
        (running,) = wait_for(lambda: app.executions(f"{model}-d1-"), timeout=20)
        job = wait_for(
            lambda: [
                j
                for j in app.sagemaker.list_training_jobs(NameContains=model)["TrainingJobSummaries"]
                if j["TrainingJobStatus"] == "Completed"
            ],
            timeout=60,
        )
        assert job
        # The job has finished but its event went nowhere: the execution still waits...
        assert app.sfn.describe_execution(executionArn=running["executionArn"])["status"] == "RUNNING"
    finally:
        events.enable_rule(Name=rule)
    # ...until the scheduled reconciler (every 10 virtual minutes) finds it.
    execution = finished_execution(cloud, running["executionArn"], timeout=60)
    assert execution["status"] == "SUCCEEDED"
    assert len(app.packages(model)) == 1


def test_a_wait_that_times_out_stops_the_job(app):
    model = unique("slow")
    # max_runtime 60 s: the state machine waits 60 + 900 s (16 s of wall time at time scale 60), while
    # this script trains for real seconds (training does not run on the virtual clock).
    config = churn_config(model, **{"training.max_runtime_seconds": 60, "training.spot.enabled": False})
    slow = b"import time\nprint('training slowly')\ntime.sleep(120)\n"
    app.upload_project(model, config, code={"train.py": slow, "inference.py": b""})
    app.upload_dataset(model, "d1")

    execution = app.run_of(model, "d1", timeout=90)

    assert execution["status"] == "FAILED"
    notification = app.notifications("ModelLifecycleFailed", model)
    assert notification["error"] == "States.Timeout"
    assert notification["reason"] == execution["cause"]
    assert notification["reason"].startswith(f"training job {model}-train-")
    assert "did not end within 960 seconds" in notification["reason"]
    assert notification["reason"].endswith(": it was stopped")
    (job,) = app.sagemaker.list_training_jobs(NameContains=model)["TrainingJobSummaries"]
    status = wait_for(
        lambda: (
            (s := app.sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"]))["TrainingJobStatus"]
            == "Stopped"
            and s
        ),
        timeout=30,
    )
    assert status["TrainingJobStatus"] == "Stopped"


def test_the_retraining_schedule_starts_only_new_data(app, cloud):
    model = unique("sched")
    app.upload_project(model, churn_config(model))
    app.upload_dataset(model, "d1")
    first = app.run_of(model, "d1")
    assert first["status"] == "SUCCEEDED"
    rule = next(
        r["Name"]
        for r in cloud.client("events").list_rules()["Rules"]
        if r["Name"].startswith("wf-StartLifecycleFunctionRetrain")
    )

    cloud.scheduler.trigger(rule)  # no new data since the run: nothing starts

    assert [e["name"] for e in app.executions(f"{model}-")] == [first["name"]]
    # a newer dataset whose marker event never arrived is picked up by the schedule
    events = cloud.client("events")
    marker_rule = next(
        r["Name"] for r in events.list_rules()["Rules"] if r["Name"].startswith("wf-StartLifecycleFunctionDatasetReady")
    )
    events.disable_rule(Name=marker_rule)
    try:
        app.upload_dataset(model, "d2", seed=9)
    finally:
        events.enable_rule(Name=marker_rule)
    assert app.executions(f"{model}-d2-") == []
    cloud.scheduler.trigger(rule)
    assert app.run_of(model, "d2")["status"] == "SUCCEEDED"
