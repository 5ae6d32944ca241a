"""The faults only the real local cloud shows, end to end, each row of docs/FAULTS.md's table measured here.

One champion endpoint serves clients throughout (the Rollout's first deployment, once per module); each test
injects its fault while traffic flows and asserts issue 20's four things where they apply: the endpoint ends on
the last good model (DescribeEndpoint and the clients' answers), no client request failed because of the system
(a bad request's own error is counted apart), every input file is kept or moved with a reason, and one clear
notification. tools/fault_table.py --run runs this module with tests/faults.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import joblib
import pytest
from shepherd.images import image_uri
from shepherd.registry import CONTENT_TYPES, SUBMIT_DIRECTORY
from sklearn.ensemble import RandomForestClassifier

from localcloud.faults import FaultRule
from localcloud.sagemaker.runtime import MAX_PAYLOAD_BYTES
from tests.faults import rows
from tests.tarballs import tar_gz

from .conftest import wait_for
from .workflow import (
    EXAMPLE,
    ROLLED_BACK,
    STARTED,
    App,
    Traffic,
    generate,
    rollout_config,
    serving_script,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_recorded: list[dict[str, Any]] = []


@dataclass
class Served:
    """The module's endpoint: its model's name (the endpoint's too) and the champion's endpoint config."""

    app: App
    model: str
    config: str
    package: dict[str, Any]  # what the champion was registered from (register() takes it again)

    def on_champion(self) -> None:
        """The endpoint serves the champion alone: its config, one variant, all the traffic."""
        live = self.app.sagemaker.describe_endpoint(EndpointName=self.model)
        assert live["EndpointStatus"] == "InService"
        assert live["EndpointConfigName"] == self.config
        assert self.app.serving(self.model) == [("v1", 1.0)]

    def drained(self, quiet: float = 0.5) -> int:
        """Every notification sent so far read (none for ``quiet`` seconds); how many there are: a test's start."""
        quiet_until = time.monotonic() + quiet
        while time.monotonic() < quiet_until:
            got = self.app.sqs.receive_message(QueueUrl=self.app.queue, MaxNumberOfMessages=10).get("Messages", [])
            for message in got:
                self.app._seen.append(json.loads(message["Body"]))
                self.app.sqs.delete_message(QueueUrl=self.app.queue, ReceiptHandle=message["ReceiptHandle"])
                quiet_until = time.monotonic() + quiet
            time.sleep(0.1)
        return len(self.app._seen)

    def told(self, since: int) -> list[dict[str, Any]]:
        """The notifications about this model or its endpoint sent after ``since`` (drained()): a second
        without any more, so a duplicate would show."""
        self.drained(quiet=1.0)
        about = (self.model, self.model)
        return [n for n in self.app._seen[since:] if (n.get("model"), n.get("endpoint", self.model)) == about]


def _trained(app: App, model: str) -> dict[str, Any]:
    """A package's inference spec as Shepherd registers one (shepherd/registry.py), its churn model trained here in
    a second rather than by a training job: the version the tests register, as the champion and the candidate."""
    frame = generate(600, seed=7)
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0, n_jobs=1)
    forest.fit(frame.drop(columns=["target"]), frame["target"])
    pickled = io.BytesIO()
    joblib.dump(forest, pickled)
    archive = tar_gz({"model.joblib": pickled.getvalue(), "code/inference.py": (EXAMPLE / "inference.py").read_bytes()})
    key = f"artifacts/{model}/trained-here/model.tar.gz"
    app.s3.put_object(Bucket=app.bucket, Key=key, Body=archive)
    container = {
        "Image": image_uri("sklearn", "1.2-1", "us-east-1"),
        "ModelDataUrl": f"s3://{app.bucket}/{key}",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": SUBMIT_DIRECTORY},
    }
    spec = {"Containers": [container], "SupportedContentTypes": CONTENT_TYPES}
    return {"InferenceSpecification": spec | {"SupportedResponseMIMETypes": CONTENT_TYPES}}


@pytest.fixture(scope="module")
def served(rollout_app: App) -> Iterator[Served]:
    """A champion (version 1 of its own model) deployed by the Rollout's first deployment."""
    model = unique("fault")
    rollout_app.upload_project(model, rollout_config(model))
    package = _trained(rollout_app, model)
    rollout_app.register(model, package)
    first = rollout_app.rollout(model, 1)
    assert first["status"] == "SUCCEEDED", first
    config = rollout_app.sagemaker.describe_endpoint(EndpointName=model)["EndpointConfigName"]
    yield Served(rollout_app, model, config, package)
    rows.write("end-to-end", _recorded)


def _record(request: pytest.FixtureRequest, served: Served, *cells: object) -> None:
    """The test's row (it passed: this is its last line), names of this run replaced by the table's."""
    item = request.node
    text = [re.sub(r"\b[0-9a-f]{8,}\b", "…", str(c).replace(served.model, "churn")) for c in cells]
    _recorded.append(rows.row(*text) | {"test": item.nodeid, "order": item.session.items.index(item)})


def test_a_candidate_that_crashes_on_load_is_rolled_back_and_clients_never_meet_it(request, served, cloud):
    app = served.app
    # Given the candidate's containers exit while loading its model
    since = served.drained()
    crash = FaultRule(kind="container-crash-on-load", resource=f"{served.model}-v2", id="crash-on-load")
    rule = cloud.faults.add(crash)

    try:
        with Traffic(cloud, served.model, rate=20.0, malformed=0.0) as traffic:
            # When it is approved while clients call the endpoint
            v2 = app.register(served.model, served.package)
            rolled_back = app.rollout(served.model, 2)
            wait_for(lambda: traffic.sent > 0)
    finally:
        cloud.faults.remove(rule)

    # Then its first stage's update fails, SageMaker keeps the champion's config, and the rollout rolls back
    assert rolled_back["status"] == "FAILED"
    assert app.path(rolled_back)[: len(STARTED)] == STARTED
    assert app.path(rolled_back)[-len(ROLLED_BACK) :] == ROLLED_BACK
    served.on_champion()
    assert app.sagemaker.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Rejected"
    # every client request was answered, by the champion
    assert traffic.failures == []
    assert traffic.unexpected == []
    assert set(traffic.by_variant) == {"v1"}
    # one notification, naming the failed load
    (told,) = served.told(since)
    assert (told["event"], told["package"]) == ("RolloutRolledBack", v2)
    assert "crash-on-load" in told["reason"], told
    _record(
        request,
        served,
        "candidate crashes on load",
        "model_fn in the serving container (shadow's UpdateEndpoint)",
        "rolled back; SageMaker kept the champion's config",
        len(traffic.failures),
        0,
        "-",
        told["reason"],
    )


# A model that spills each request to a scratch file before predicting: on a full disk every answer is its 500.
SPILLING = serving_script(
    """def predict_fn(data, model):
    spill = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"spill-{os.getpid()}.bin")
    with open(spill, "wb") as scratch:
        scratch.write(b"spilled")
    os.remove(spill)
    return _predict(data, model)
"""
)


def test_a_candidate_whose_disk_is_full_is_rolled_back_in_shadow_and_clients_never_meet_it(request, served, cloud):
    app = served.app
    # Given a candidate whose model writes a scratch file for every request, and whose containers' disk is full
    since = served.drained()
    version = len(app.packages(served.model)) + 1
    full = FaultRule(kind="container-disk-full", resource=f"{served.model}-v{version}", id="disk-full")
    rule = cloud.faults.add(full)

    try:
        with Traffic(cloud, served.model, rate=20.0, malformed=0.0) as traffic:
            # When it is approved while clients call the endpoint
            candidate = app.register(served.model, served.package, inference=SPILLING)
            assert candidate.endswith(f"/{version}")
            rolled_back = app.rollout(served.model, version)
    finally:
        cloud.faults.remove(rule)

    # Then it loads (its load writes nothing), fails every request it shadows, and the judge rolls it back in
    # shadow: SageMaker returns the champion's answers to clients, so none of them met the candidate
    assert rolled_back["status"] == "FAILED", rolled_back
    path = app.path(rolled_back)
    assert path[: len(STARTED)] == STARTED
    assert path[len(STARTED)] == "EnterStage"
    assert path[-len(ROLLED_BACK) :] == ROLLED_BACK
    served.on_champion()
    assert app.sagemaker.describe_model_package(ModelPackageName=candidate)["ModelApprovalStatus"] == "Rejected"
    assert traffic.failures == []
    assert traffic.unexpected == []
    assert set(traffic.by_variant) == {"v1"}
    # the candidate's container said why it failed: the disk, in its log stream
    logs = cloud.client("logs")
    spilled = wait_for(
        lambda: [
            e["message"]
            for e in logs.filter_log_events(logGroupName=f"/aws/sagemaker/Endpoints/{served.model}")["events"]
            if "No space left on device" in e["message"]
        ]
    )
    assert spilled[0].startswith("Invocation failed (500"), spilled[0]
    # judged in shadow, on its error rate
    (verdict,) = [r for r in app.records(served.model) if r.get("verdict") == "ROLLBACK" and r["package"] == candidate]
    assert verdict["stage"] == "shadow"
    # one notification: the rollback and the candidate's errors that decided it
    (told,) = served.told(since)
    assert (told["event"], told["package"]) == ("RolloutRolledBack", candidate)
    assert "error rate is higher than the champion's" in told["reason"], told
    _record(
        request,
        served,
        "candidate's disk full (every write fails ENOSPC)",
        "the serving container's filesystem (a scratch file per request), from shadow",
        "rolled back in shadow on its errors; the endpoint on the champion's config",
        len(traffic.failures),
        0,
        "-",
        # the reason without the candidate's version and sample counts, which depend on the tests run before
        "RolloutRolledBack: " + told["reason"].split(": ", 1)[1].split(" (", 1)[0],
    )


MALFORMED = (
    ("text/csv", b"1,2"),  # too few features
    ("text/csv", b"0,0,0,0,0,0\n1,2\n"),  # ragged
    ("application/json", b"{not json"),
    ("application/xml", b"<x/>"),  # no decoder
)


def test_malformed_payloads_get_the_containers_error_and_the_endpoint_serves_on(request, served, cloud):
    runtime = cloud.client("sagemaker-runtime")  # botocore's standard retries: a retried request shows
    since = served.drained()
    with Traffic(cloud, served.model, rate=20.0, malformed=0.0) as traffic:
        # When clients send payloads the model cannot read, each several times, among valid requests
        answers = []
        for content_type, body in MALFORMED * 5:
            with pytest.raises(runtime.exceptions.ModelError) as caught:
                runtime.invoke_endpoint(EndpointName=served.model, ContentType=content_type, Body=body)
            answers.append(caught.value.response)
        wait_for(lambda: traffic.answered >= 20)

    # Then each got the container's own status in a ModelError (424, never retried: the model ran once), with
    # its message; the valid requests around them were all answered, and the endpoint is unchanged
    assert all(a["ResponseMetadata"]["HTTPStatusCode"] == 424 for a in answers)
    assert all(a["ResponseMetadata"]["RetryAttempts"] == 0 for a in answers)
    statuses = sorted({(a["OriginalStatusCode"]) for a in answers})
    assert all(400 <= s < 600 for s in statuses)
    assert all(a["OriginalMessage"] for a in answers)
    assert traffic.failures == []
    assert traffic.unexpected == []
    served.on_champion()
    # nothing to notify: the client has the answer (no rollout, no Shepherd step involved)
    assert served.told(since) == []
    _record(
        request,
        served,
        "malformed invocation payload (4 kinds)",
        "InvokeEndpoint (the container's 4XX/5XX)",
        f"ModelError with the container's status {statuses} to the caller, not retried; endpoint unchanged",
        len(traffic.failures),
        0,
        "-",
        "- (the caller's ModelError: " + answers[0]["OriginalMessage"] + ")",
    )


def test_an_oversized_payload_is_refused_before_the_model_and_the_endpoint_serves_on(request, served, cloud):
    # InvokeEndpoint's Body: "Length Constraints: Maximum length of 6291456"; a request that breaks a constraint
    # is a ValidationError, 400 (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html,
    # Request Body and Errors). The real-time limit: "The maximum request payload size is 6 MB" (its description).
    runtime = cloud.client("sagemaker-runtime")  # botocore's standard retries: a retried request shows
    row = b"0,0,0,0,0,0,0,0,0,0\n"
    at_limit = row * (MAX_PAYLOAD_BYTES // len(row)) + b"0" * (MAX_PAYLOAD_BYTES % len(row))
    assert len(at_limit) == MAX_PAYLOAD_BYTES == 6291456

    with Traffic(cloud, served.model, rate=20.0, malformed=0.0) as traffic:
        # When a client sends one byte more than the limit
        with pytest.raises(runtime.exceptions.ValidationError) as caught:
            runtime.invoke_endpoint(EndpointName=served.model, ContentType="text/csv", Body=at_limit + b"\n")
        # and then exactly the limit
        try:
            runtime.invoke_endpoint(EndpointName=served.model, ContentType="text/csv", Body=at_limit)
            limit_answer = "answered"
        except runtime.exceptions.ModelError:  # the model's own verdict on the rows: the size was accepted
            limit_answer = "the model's answer"
        wait_for(lambda: traffic.answered >= 20)

    # Then the larger is refused as SageMaker refuses it, not retried, and the model never saw it
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    assert "6291456" in error["Error"]["Message"]
    assert limit_answer in ("answered", "the model's answer")
    assert traffic.failures == []
    assert traffic.unexpected == []
    served.on_champion()
    _record(
        request,
        served,
        "oversized invocation payload (> 6 MB)",
        "InvokeEndpoint",
        "ValidationError 400 to the caller before the model, not retried; 6 MB exactly accepted; endpoint unchanged",
        len(traffic.failures),
        0,
        "-",
        "- (the caller's ValidationError: " + error["Error"]["Message"] + ")",
    )


def test_a_training_job_that_fails_leaves_the_endpoint_and_the_dataset_and_says_why_once(request, served, cloud):
    app = served.app
    # Given a config whose target column the pre-training check cannot verify, and a dataset without it: the
    # training job itself fails (train.py cannot find its label)
    config = rollout_config(served.model)
    config["training"]["target_column"] = None
    app.upload_project(served.model, config)
    since = served.drained()
    packages = len(app.packages(served.model))
    try:
        with Traffic(cloud, served.model, rate=20.0, malformed=0.0) as traffic:
            # When the dataset is marked ready while clients call the endpoint
            app.upload_dataset(served.model, "broken", breaking=True)
            execution = app.run_of(served.model, "broken")
    finally:
        app.upload_project(served.model, rollout_config(served.model))

    # Then the lifecycle fails with the job's reason; nothing is registered; the endpoint serves the champion
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ModelLifecycleFailed"
    (job,) = app.sagemaker.list_training_jobs(NameContains=served.model)["TrainingJobSummaries"]
    assert job["TrainingJobStatus"] == "Failed"
    assert len(app.packages(served.model)) == packages
    served.on_champion()
    assert traffic.failures == []
    assert traffic.unexpected == []
    # the dataset is where it was uploaded, every file
    listed = app.s3.list_objects_v2(Bucket=app.bucket, Prefix=f"training/{served.model}/broken/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 2)[-2] + "/" + o["Key"].rsplit("/", 1)[-1] for o in listed) == [
        "broken/_READY",
        "train/train.csv",
        "validation/validation.csv",
    ]
    # one notification, with the script's own one-line reason
    (told,) = served.told(since)
    assert (told["event"], told["error"]) == ("ModelLifecycleFailed", "TrainingJobFailed")
    assert "no column 'target'" in told["reason"]
    _record(
        request,
        served,
        "training fails (the job)",
        "training job (train.py)",
        "lifecycle failed, nothing registered; endpoint unchanged; dataset kept",
        len(traffic.failures),
        0,
        0,
        told["reason"],
    )
