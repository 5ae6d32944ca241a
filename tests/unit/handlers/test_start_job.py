"""StartJob: the task token is stored under the job's name before the job is created; a retry never fails."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from shepherd.aws import clients
from shepherd.errors import InvalidInput

from .conftest import Cloud, LambdaContext, SentTasks, aws_error, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
TOKEN_GRACE_SECONDS = 86400


@pytest.fixture
def start_job(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("start_job")


@pytest.fixture
def duplicate_names_refused(aws: Cloud) -> None:
    """CreateTrainingJob answers a taken name as SageMaker does (moto accepts it silently)."""

    def refuse_taken_names(params: dict[str, Any], **_: Any) -> Any:
        name = json.loads(params["body"])["TrainingJobName"]
        if name in {s["TrainingJobName"] for s in aws.sagemaker.list_training_jobs()["TrainingJobSummaries"]}:
            return aws_error(
                "ValidationException",
                "Training job names must be unique within an AWS account and region, and a training job "
                f"with this name already exists (arn:aws:sagemaker:us-east-1:123456789012:training-job/{name})",
            )
        return None

    clients.client("sagemaker").meta.events.register("before-call.sagemaker.CreateTrainingJob", refuse_taken_names)


def test_the_token_is_stored_before_the_job_is_created(aws: Cloud, start_job: ModuleType) -> None:
    # Given a Train task's payload, and a look at the token table the moment CreateTrainingJob is called
    event = sample_event("start_job")
    name = event["request"]["TrainingJobName"]
    seen_at_create: list[dict[str, Any] | None] = []
    clients.client("sagemaker").meta.events.register(
        "before-call.sagemaker.CreateTrainingJob", lambda **_: seen_at_create.append(aws.token_item(name))
    )
    # When StartJob runs
    result = start_job.handler(event, aws.context)
    # Then the waiting token was already stored when the job was created
    assert result == {"job_name": name, "result": "created"}
    assert len(seen_at_create) == 1
    stored = seen_at_create[0]
    assert stored is not None
    assert (stored["status"], stored["token"], stored["kind"]) == ("WAITING", event["token"], "training")
    assert stored["execution"] == event["execution"]


def test_the_job_is_created_from_the_request(aws: Cloud, start_job: ModuleType) -> None:
    event = sample_event("start_job")
    start_job.handler(event, aws.context)
    described = aws.sagemaker.describe_training_job(TrainingJobName=event["request"]["TrainingJobName"])
    assert described["RoleArn"] == event["request"]["RoleArn"]
    assert described["HyperParameters"] == event["request"]["HyperParameters"]


def test_the_token_outlives_the_wait_by_a_day(aws: Cloud, start_job: ModuleType) -> None:
    event = sample_event("start_job")
    start_job.handler(event, aws.context)
    stored = aws.token_item(event["request"]["TrainingJobName"])
    assert stored is not None
    expected = time.time() + event["wait_timeout_seconds"] + TOKEN_GRACE_SECONDS
    assert abs(int(stored["expires_at"]) - expected) < 60


@pytest.mark.usefixtures("duplicate_names_refused")
def test_a_retried_start_whose_job_exists_resumes_the_waiter_instead_of_failing(
    aws: Cloud, start_job: ModuleType, waiting_tasks: SentTasks
) -> None:
    # Given a job StartJob created already (moto's jobs complete at once)
    event = sample_event("start_job")
    name = event["request"]["TrainingJobName"]
    start_job.handler(event, aws.context)
    # When Step Functions retries the task, with a new token
    retried = event | {"token": "retried-token"}
    result = start_job.handler(retried, LambdaContext(aws_request_id="retry"))
    # Then nothing fails, no second job exists, and the new token is resumed with the finished job's outcome
    assert result == {"job_name": name, "result": "settled"}
    assert [s["TrainingJobName"] for s in aws.sagemaker.list_training_jobs()["TrainingJobSummaries"]] == [name]
    assert [(operation, body["taskToken"]) for operation, body in waiting_tasks.calls] == [
        ("SendTaskSuccess", "retried-token")
    ]
    assert json.loads(waiting_tasks.calls[0][1]["output"])["job_name"] == name
    stored = aws.token_item(name)
    assert stored is not None
    assert stored["status"] == "SETTLED"


def test_a_request_without_a_token_is_refused(aws: Cloud, start_job: ModuleType) -> None:
    event = sample_event("start_job") | {"token": ""}
    with pytest.raises(InvalidInput, match="token"):
        start_job.handler(event, aws.context)
    assert aws.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
