"""What a new user meets in the `shepherd` CLI: refused typos, one labelled clock, full names, clear hints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from botocore.exceptions import NoCredentialsError
from shepherd.config import ConfigError, check_overrides, load_config
from typer.testing import CliRunner

from shepherd_cli import cloud as cli_cloud
from shepherd_cli.main import app

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"
CONFIG = (Path(__file__).resolve().parents[2] / "examples" / "churn" / "shepherd.yaml").read_text()
WALL = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# The local cloud's clock: a day ahead of the wall clock at WALL, running 60 times faster.
CLOCK = f"{WALL.timestamp() + 86400},{WALL.timestamp()},60"


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


class Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **request: Any) -> list[dict[str, Any]]:
        return self.pages


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"RolloutsTableName": "rollouts", "RolloutStateMachineArn": "arn:sm"}))
    return path


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, outputs: Path) -> Any:
    """`shepherd <args>` against a local cloud whose services are the given fakes and whose clock is CLOCK."""
    monkeypatch.setattr(cli_cloud, "_health", lambda endpoint_url: {"clock": CLOCK})
    monkeypatch.delenv("COLUMNS", raising=False)
    services: dict[str, Any] = {}

    def client(self: Any, service: str) -> Any:
        if service not in services:
            raise AssertionError(f"the command called {service}")
        return services[service]

    monkeypatch.setattr(cli_cloud.Target, "client", client)

    def run(*args: str, stack: bool = True, **fakes: Any) -> Any:
        services.clear()
        services.update(fakes)
        connection = ["--endpoint-url", "http://127.0.0.1:9"] + (["--outputs", str(outputs)] if stack else [])
        return CliRunner().invoke(app, [*args, *connection])

    return run


# ---------------------------------------------------------------- rollout start --override


def test_an_override_typo_is_refused_before_anything_starts(local: Any) -> None:
    # No fake service at all: any AWS call would fail the test.
    result = local("rollout", "start", PACKAGE, "--override", "rollout.shadow.enabeld=false")

    text = _one_error_line(result)
    assert "--override: rollout.shadow.enabeld: unknown key (did you mean enabled?" in text
    assert "nothing started" in text
    assert "shepherd.yaml" not in text


def test_an_override_of_the_wrong_type_is_refused_naming_the_key(local: Any) -> None:
    result = local("rollout", "start", PACKAGE, "--override", "rollout.judge_interval_minutes=soon")

    assert '--override: rollout.judge_interval_minutes: "soon" is not allowed (must be a whole number)' in (
        _one_error_line(result)
    )


def test_overrides_need_not_repeat_what_the_file_gives() -> None:
    check_overrides({"rollout": {"judge_interval_minutes": 2, "shadow": {"enabled": False}}})
    check_overrides({"endpoint": {"realtime": {"instance_type": "ml.c5.xlarge"}}})


def test_a_rollout_given_a_bad_override_blames_the_override_not_the_file() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(CONFIG, "s3://b/models/churn/shepherd.yaml", overrides={"rollout": {"judge_intervall": 2}})

    assert refused.value.source == "overrides"
    assert "rollout.judge_intervall: unknown key (did you mean judge_interval_minutes?" in str(refused.value)


# ---------------------------------------------------------------- package arguments


def test_approve_takes_group_slash_version_and_finds_its_arn(local: Any) -> None:
    class SageMaker:
        updated: dict[str, Any] = {}  # noqa: RUF012 - one fake per test

        def get_paginator(self, operation: str) -> Pages:
            assert operation == "list_model_packages"
            other = PACKAGE.replace("/2", "/1")
            return Pages(
                [
                    {"ModelPackageSummaryList": [{"ModelPackageArn": other, "ModelPackageVersion": 1}]},
                    {"ModelPackageSummaryList": [{"ModelPackageArn": PACKAGE, "ModelPackageVersion": 2}]},
                ]
            )

        def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:
            return {"ModelApprovalStatus": "PendingManualApproval"}

        def update_model_package(self, **request: Any) -> None:
            self.updated.update(request)

    sagemaker = SageMaker()
    result = local("approve", "churn/2", stack=False, sagemaker=sagemaker)

    assert result.exit_code == 0, result.output
    assert sagemaker.updated["ModelPackageArn"] == PACKAGE
    assert f"approved {PACKAGE}" in result.stdout


def test_approve_of_a_bare_name_says_what_is_expected_with_an_example(local: Any) -> None:
    text = _one_error_line(local("approve", "churn", stack=False))

    assert "'churn' is not a model package: give its ARN" in text
    assert PACKAGE in text
    assert "churn/2" in text


def test_a_version_that_is_not_registered_is_named(local: Any) -> None:
    class SageMaker:
        def get_paginator(self, operation: str) -> Pages:
            return Pages([{"ModelPackageSummaryList": []}])

    text = _one_error_line(local("approve", "churn/9", stack=False, sagemaker=SageMaker()))

    assert "no version 9 in model package group churn" in text


# ---------------------------------------------------------------- status: one clock, full names


class SageMakerEndpoint:
    CONFIG = "churn-ab10-v2-" + "f" * 40

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        return {
            "EndpointName": EndpointName,
            "EndpointStatus": "InService",
            "EndpointConfigName": self.CONFIG,
            "CreationTime": WALL,
            "LastModifiedTime": WALL,
            "ProductionVariants": [{"VariantName": "v1", "CurrentWeight": 1.0, "CurrentInstanceCount": 1}],
        }

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict[str, Any]:
        variant = {"VariantName": "v1", "ModelName": "churn-v1-" + "m" * 40, "InstanceType": "ml.m5.large"}
        return {"ProductionVariants": [variant]}


class RolloutItems:
    """The rollouts table's items the status command reads: a lock and one record, both on the virtual clock."""

    EXPLANATION = "candidate is no worse on error rate " + "and latency " * 12

    def get_item(self, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:
        if Key["sk"]["S"] == "lock":
            lease = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
            return {"Item": {"owner": {"S": "churn-v2-run"}, "lease_until": {"N": str(int(lease))}}}
        return {}

    def query(self, **request: Any) -> dict[str, Any]:
        entry = {"event": "verdict", "stage": "shadow", "verdict": "INCONCLUSIVE", "explanation": self.EXPLANATION}
        item = {"sk": {"S": "record#2026-12-02T10:00:00+00:00#1"}, "entry": {"S": json.dumps(entry)}}
        return {"Items": [item]}


def test_status_shows_every_time_on_the_local_cloud_clock_and_says_so(local: Any) -> None:
    result = local("status", "churn", sagemaker=SageMakerEndpoint(), dynamodb=RolloutItems())

    assert result.exit_code == 0, result.output
    text = result.stdout
    # SageMaker stamped 09:00 wall time: a day ahead on the local cloud's clock, like the records and the lease.
    assert "created 2026-12-02 09:00:00" in text
    assert "lease until 2026-12-02 12:00:00" in text
    assert "2026-12-02 10:00:00" in text
    assert "times: local cloud clock (virtual, 60x wall time), UTC" in text


def test_status_does_not_split_names_when_stdout_is_not_a_terminal(local: Any) -> None:
    result = local("status", "churn", sagemaker=SageMakerEndpoint(), dynamodb=RolloutItems())

    assert result.exit_code == 0, result.output
    assert SageMakerEndpoint.CONFIG in result.stdout
    assert "churn-v1-" + "m" * 40 in result.stdout
    assert RolloutItems.EXPLANATION.strip() in result.stdout


def test_aws_times_are_labelled_utc_wall_clock() -> None:
    clock = cli_cloud.CloudClock()

    assert clock.wall_time(WALL) == "2026-12-01 09:00:00"
    assert clock.label == "times: UTC (wall clock)"


def test_outside_the_project_folder_status_says_where_it_looked_before_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")

    def no_credentials(self: Any, service: str) -> Any:
        raise NoCredentialsError

    monkeypatch.setattr(cli_cloud.Target, "client", no_credentials)

    text = _one_error_line(CliRunner().invoke(app, ["status", "churn"]))

    assert "no AWS credentials" in text
    assert f"no .shepherd/local/outputs.json in {tmp_path}" in text
    assert "so this tried AWS" in text


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", [["teardown"], ["demo"], ["local", "up"], ["status"], ["runs"]])
def test_help_shows_no_value_placeholder_for_flags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "<bool>" not in result.output


def test_teardown_help_names_the_model_by_its_folder() -> None:
    result = CliRunner().invoke(app, ["teardown", "--help"], env={"COLUMNS": "200"})

    assert "shepherd.yaml's name" not in result.output
    assert "models/<model>/shepherd.yaml" in result.output


# ---------------------------------------------------------------- local trigger


def test_local_trigger_uses_the_exported_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []

    class Answer:
        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read(self) -> bytes:
            return b'{"targets": 1}'

    def urlopen(request: Any, timeout: float) -> Answer:
        requested.append(request.full_url)
        return Answer()

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:41234")

    result = CliRunner().invoke(app, ["local", "trigger", "shepherd-RetrainSchedule"])

    assert result.exit_code == 0, result.output
    assert requested == ["http://127.0.0.1:41234/_shepherd/trigger/shepherd-RetrainSchedule"]
    assert cli_cloud.LOCAL_ENDPOINT not in result.output


def test_local_trigger_takes_endpoint_url_like_every_command() -> None:
    result = CliRunner().invoke(app, ["local", "trigger", "--help"], env={"COLUMNS": "200"})

    assert "--endpoint-url" in result.output
    assert "--endpoint " not in result.output


# ---------------------------------------------------------------- what `shepherd approve` users read


def test_a_package_description_keeps_its_commas_and_loses_its_newlines() -> None:
    from shepherd.registry import package_request

    config = load_config(CONFIG, "models/churn/shepherd.yaml")
    request = package_request(
        config,
        group="churn",
        image="image",
        model_data_url="s3://b/model.tar.gz",
        region="us-east-1",
        metrics={},
        lineage={},
        lineage_uri="s3://b/lineage.json",
        description="churn trained by job-1. gates passed: auc 0.91 >= 0.8, f1 0.7 >= 0.5\nchampion none",
    )

    assert request["ModelPackageDescription"] == (
        "churn trained by job-1. gates passed: auc 0.91 >= 0.8, f1 0.7 >= 0.5 champion none"
    )


# ---------------------------------------------------------------- the connection options, in one place


def _connected_app(seen: list[cli_cloud.Target], *, stack: bool) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @cli_cloud.connected(stack=stack)
    def show(target: cli_cloud.Target, name: str, fail: bool = False) -> None:
        seen.append(target)
        if fail:
            raise cli_cloud.CommandError(f"{name} failed")

    return probe


def test_a_connected_command_takes_the_options_after_its_own_and_runs_with_their_target(tmp_path: Path) -> None:
    seen: list[cli_cloud.Target] = []
    outputs = tmp_path / "outputs.json"
    arguments = ["churn", "--endpoint-url", "http://127.0.0.1:9", "--region", "eu-west-1", "--outputs", str(outputs)]

    result = CliRunner().invoke(_connected_app(seen, stack=True), [*arguments, "--stack-name", "other"])

    assert result.exit_code == 0, result.output
    [target] = seen
    assert (target.endpoint_url, target.profile, target.region) == ("http://127.0.0.1:9", None, "eu-west-1")
    assert (target.stack_name, target.outputs_path) == ("other", outputs)


def test_a_command_without_stack_resources_takes_only_the_connection_options() -> None:
    result = CliRunner().invoke(
        _connected_app([], stack=False), ["churn", "--endpoint-url", "http://x", "--stack-name", "other"]
    )

    assert result.exit_code == 2
    assert "No such option: --stack-name" in result.output


def test_a_failure_in_a_connected_command_is_one_error_line() -> None:
    result = CliRunner().invoke(_connected_app([], stack=True), ["churn", "--fail", "--endpoint-url", "http://x"])

    assert "error: churn failed" in _one_error_line(result)
