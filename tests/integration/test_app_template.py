"""The application's own template.yaml on the local cloud: a dataset marker starts ModelLifecycle once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from localcloud.deployer import Deployer

from .conftest import finished_execution, wait_for

pytestmark = pytest.mark.integration
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def app(cloud):
    return Deployer(cloud, "app").deploy(TEMPLATE, {"StageName": "apptest"})


def _executions(cloud, app) -> list[dict]:
    return cloud.client("stepfunctions").list_executions(stateMachineArn=app["ModelLifecycleStateMachineArn"])[
        "executions"
    ]


def test_data_files_start_nothing_and_the_marker_starts_one_execution(cloud, app):
    # Given a dataset's files uploaded under training/<model>/<dataset>/
    s3 = cloud.client("s3")
    dataset = f"ds-{uuid.uuid4().hex[:6]}"
    for part in ("part-1.csv", "part-2.csv"):
        s3.put_object(Bucket=app["DataBucketName"], Key=f"training/churn/{dataset}/{part}", Body=b"a,b\n1,2\n")
    before = {e["executionArn"] for e in _executions(cloud, app)}
    # When its marker lands
    s3.put_object(Bucket=app["DataBucketName"], Key=f"training/churn/{dataset}/_READY", Body=b"")
    # Then exactly one execution starts, named for the dataset, with the dataset's location
    (arn,) = wait_for(lambda: [e["executionArn"] for e in _executions(cloud, app) if e["executionArn"] not in before])
    execution = finished_execution(cloud, arn)
    assert execution["name"].startswith(f"churn-{dataset}-")
    started = json.loads(execution["input"])
    assert started["prefix"] == f"training/churn/{dataset}/"
    assert started["marker_version"], "the bucket is versioned: the marker's version is the run's identity"
    # and, with no models/churn/shepherd.yaml in this bucket, it fails at once saying so
    assert execution["status"] == "FAILED"
    history = cloud.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    failed = next(e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed")
    assert failed["error"] == "InvalidInput"
    assert "models/churn/shepherd.yaml does not exist" in failed["cause"]


def test_the_same_event_twice_starts_one_execution(cloud, app):
    # Given the S3 event of one marker object
    s3 = cloud.client("s3")
    key = f"training/churn/ds-{uuid.uuid4().hex[:6]}/_READY"
    version = s3.put_object(Bucket=app["DataBucketName"], Key=key + ".tmp", Body=b"")["VersionId"]
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "s3_object_created.json").read_text())
    event["detail"]["bucket"]["name"] = app["DataBucketName"]
    event["detail"]["object"].update({"key": key, "version-id": version})
    names = [f["FunctionName"] for f in cloud.client("lambda").list_functions()["Functions"]]
    function = next(n for n in names if n.startswith("app-StartLifecycleFunction"))
    # When it is delivered twice (EventBridge delivers at least once)
    answers = [
        json.loads(
            cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())["Payload"].read()
        )
        for _ in range(2)
    ]
    # Then the second delivery is recognised and starts nothing (while the first still runs, StartExecution
    # with the same name and input answers with that execution, as AWS does; once it has ended, it refuses)
    assert answers[0]["started"]
    assert answers[0]["execution_name"] == answers[1]["execution_name"]
    named = [e for e in _executions(cloud, app) if e["name"] == answers[0]["execution_name"]]
    assert len(named) == 1


def test_a_key_that_is_not_a_marker_is_refused_clearly(cloud, app):
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "s3_object_created.json").read_text())
    event["detail"]["object"]["key"] = "training/churn/ds/part-1.csv"
    names = [f["FunctionName"] for f in cloud.client("lambda").list_functions()["Functions"]]
    function = next(n for n in names if n.startswith("app-StartLifecycleFunction"))
    response = cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    error = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "MalformedEvent"
    assert "training/<model>/<dataset>/_READY" in error["errorMessage"]


def _stack_roles(cloud, stack: str, prefix: str) -> list[tuple[str, str, str]]:
    """(role ARN, service principal, session name) of every function and state machine of the stack."""
    functions = [f for f in cloud.lambdas.functions if f.name.startswith(f"{stack}-")]
    roles = [(f.role_arn, "lambda.amazonaws.com", f.name) for f in functions]
    sfn = cloud.client("stepfunctions")
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"].startswith(prefix):
            role_arn = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["roleArn"]
            roles.append((role_arn, "states.amazonaws.com", "shepherd-states"))
    return roles


def test_every_role_of_the_stack_is_refused_an_out_of_role_call_in_aws_s_shape(cloud, app, denials):
    # Given each function's and state machine's role (their own calls pass in the workflow tests)
    roles = _stack_roles(cloud, "app", "shepherd-apptest-")
    assert len(roles) >= 12, roles
    denials.expect("s3:DeleteBucket")
    denials.expect("sagemaker:DeleteModelPackageGroup")
    for role_arn, service, session in roles:
        credentials = cloud.role_credentials(role_arn, service, session)
        # When it deletes the data bucket or the registry (no role of the stack may)
        for client, call in (
            (cloud.role_client("s3", credentials), lambda c: c.delete_bucket(Bucket=app["DataBucketName"])),
            (
                cloud.role_client("sagemaker", credentials),
                lambda c: c.delete_model_package_group(ModelPackageGroupName="churn"),
            ),
        ):
            # Then IAM refuses it, in the protocol's shape, naming the session
            with pytest.raises(ClientError) as caught:
                call(client)
            error = caught.value.response["Error"]
            assert error["Code"] in ("AccessDenied", "AccessDeniedException"), (role_arn, error)
            assert error["Message"].startswith(f"User: {credentials.principal.arn} is not authorized"), error
    assert cloud.client("s3").head_bucket(Bucket=app["DataBucketName"])  # nothing was deleted
