"""The user-facing commands (`status`, `rollout`, `approve`, `teardown`) against the real template on the local cloud.

They run in-process (typer's CliRunner) with --endpoint-url and --outputs, exactly as a user points them at
a local cloud; endpoints here are served by fake fleets, since what the commands use is the control plane.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from localcloud.deployer import Deployer
from shepherd_cli.main import app
from shepherd_cli.rollouts import manual_execution_name, parse_overrides

from .conftest import wait_for
from .workflow import ROOT

pytestmark = [pytest.mark.integration]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


class _Fleet:
    """Stands in for model servers: status and teardown only use the endpoint's control plane."""

    def __init__(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> None:
        self.count = count

    def start(self) -> None:
        pass

    def resize(self, count: int) -> None:
        self.count = count

    def invoke(self, request: Any) -> tuple[bytes, str]:
        return b"0.5", "text/csv"

    def stop(self) -> None:
        pass


@pytest.fixture(scope="module")
def stack(cloud, tmp_path_factory) -> tuple[dict[str, str], Path]:
    # The reconcilers would settle the locks these tests plant (every 10 virtual minutes by default): not here.
    parameters = {"StageName": "cltest", "ReconcileSchedule": "rate(30 days)"}
    outputs = Deployer(cloud, "cl").deploy(ROOT / "template.yaml", parameters)
    path = tmp_path_factory.mktemp("cli") / "outputs.json"
    path.write_text(json.dumps(outputs))
    return outputs, path


@pytest.fixture
def shepherd(cloud, stack):
    """Run `shepherd <args>` against the local cloud; with_outputs=False for commands without stack options."""
    _, path = stack

    def run(*args: str, with_outputs: bool = True, input: str | None = None) -> Any:
        connection = ["--endpoint-url", cloud.endpoint] + (["--outputs", str(path)] if with_outputs else [])
        return CliRunner().invoke(app, [*args, *connection], input=input, env={"COLUMNS": "250"})

    return run


@pytest.fixture
def table(cloud, stack):
    outputs, _ = stack
    dynamodb = cloud.client("dynamodb")
    name = outputs["RolloutsTableName"]

    class Table:
        def get(self, endpoint: str, sort: str) -> dict[str, str] | None:
            item = dynamodb.get_item(
                TableName=name, Key={"pk": {"S": f"endpoint#{endpoint}"}, "sk": {"S": sort}}, ConsistentRead=True
            ).get("Item")
            return {k: v["S"] for k, v in item.items() if "S" in v} if item else None

        def put(self, endpoint: str, sort: str, **fields: str) -> None:
            item = {"pk": {"S": f"endpoint#{endpoint}"}, "sk": {"S": sort}} | {k: {"S": v} for k, v in fields.items()}
            dynamodb.put_item(TableName=name, Item=item)

        def record(self, endpoint: str, at: str, entry: dict[str, Any]) -> None:
            self.put(endpoint, f"record#{at}#000000001", entry=json.dumps(entry))

    return Table()


@pytest.fixture
def fake_fleets(cloud):
    original = cloud.sagemaker.fleet_factory
    cloud.sagemaker.fleet_factory = _Fleet
    yield
    cloud.sagemaker.fleet_factory = original


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _package(cloud, status: str = "PendingManualApproval") -> str:
    sagemaker = cloud.client("sagemaker")
    group = _unique("cligroup")
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    return sagemaker.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://nowhere-{group}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus=status,
    )["ModelPackageArn"]


def _model(cloud, name: str, tags: dict[str, str]) -> None:
    cloud.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://nowhere/model.tar.gz"},
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def _config(cloud, name: str, variants: dict[str, str], tags: dict[str, str], **weights: float) -> None:
    cloud.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": weights.get(variant, 1.0),
            }
            for variant, model in variants.items()
        ],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def _endpoint(cloud, name: str, config: str, tags: dict[str, str]) -> None:
    sagemaker = cloud.client("sagemaker")
    sagemaker.create_endpoint(
        EndpointName=name, EndpointConfigName=config, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService")


def _names(cloud, operation: str, key: str, name_key: str) -> set[str]:
    return {item[name_key] for item in getattr(cloud.client("sagemaker"), operation)(MaxResults=100)[key]}


# ---------------------------------------------------------------- help and errors


def test_help_names_every_command(shepherd):
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("status", "runs", "rollout", "approve", "teardown", "local", "demo"):
        assert command in result.output
    rollout = CliRunner().invoke(app, ["rollout", "--help"], env={"COLUMNS": "200"})
    for command in ("start", "abort", "pause", "resume"):
        assert command in rollout.output
    assert "--override" in CliRunner().invoke(app, ["rollout", "start", "--help"], env={"COLUMNS": "200"}).output


def test_status_of_an_unknown_endpoint_is_one_clear_error_line(shepherd):
    line = _one_error_line(shepherd("status", "no-such-endpoint"))
    assert "no endpoint named no-such-endpoint" in line


def test_missing_outputs_is_one_clear_error_line(cloud, tmp_path):
    result = CliRunner().invoke(
        app, ["rollout", "pause", "x", "--endpoint-url", cloud.endpoint, "--outputs", str(tmp_path / "none.json")]
    )
    assert "cannot read the stack outputs" in _one_error_line(result)


def test_an_unreachable_cloud_is_one_clear_error_line(stack):
    _, path = stack
    result = CliRunner().invoke(app, ["status", "x", "--endpoint-url", "http://127.0.0.1:9", "--outputs", str(path)])
    assert "cannot reach" in _one_error_line(result)


def test_overrides_nest_dotted_keys_and_parse_yaml_scalars():
    given = ["rollout.judge_interval_minutes=2", "rollout.judge.alpha=0.01", "endpoint.instance_type=ml.c5.xlarge"]
    assert parse_overrides([*given, "a=true"]) == {
        "rollout": {"judge_interval_minutes": 2, "judge": {"alpha": 0.01}},
        "endpoint": {"instance_type": "ml.c5.xlarge"},
        "a": True,
    }
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"
    first, second = manual_execution_name(arn), manual_execution_name(arn)
    assert first != second
    assert first.startswith("manual-churn-v3-")
    assert len(manual_execution_name(arn.replace("churn", "c" * 70))) <= 80


# ---------------------------------------------------------------- rollout pause | resume | abort


def test_pause_and_resume_set_and_clear_the_paused_flag(shepherd, table):
    endpoint = _unique("paused")
    result = shepherd("rollout", "pause", endpoint, "--reason", "holiday freeze")
    assert result.exit_code == 0, result.output
    flag = table.get(endpoint, "flag#paused")
    assert flag is not None
    assert flag["reason"] == "holiday freeze"
    assert flag["by"]
    assert "rollout start" in result.stderr

    status = shepherd("status", endpoint)
    assert status.exit_code == 0, status.output
    assert "paused" in status.stdout
    assert "holiday freeze" in status.stdout

    assert shepherd("rollout", "resume", endpoint).exit_code == 0
    assert table.get(endpoint, "flag#paused") is None
    again = shepherd("rollout", "resume", endpoint)
    assert again.exit_code == 0
    assert "not paused" in again.stderr


def test_abort_sets_the_flag_for_the_running_rollout_only(shepherd, table):
    endpoint = _unique("aborted")
    line = _one_error_line(shepherd("rollout", "abort", endpoint))
    assert "nothing to abort" in line
    assert table.get(endpoint, "flag#abort") is None

    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/4"
    table.put(endpoint, "lock", owner="churn-v4-abc", package=package, lease_until="4102444800")
    started = {"run": "churn-v4-abc", "event": "started", "strategy": "shadow"}
    table.record(endpoint, "2026-11-25T10:00:00+00:00", started)
    result = shepherd("rollout", "abort", endpoint, "--reason", "latency looks wrong")
    assert result.exit_code == 0, result.output
    flag = table.get(endpoint, "flag#abort")
    assert flag is not None
    assert flag["reason"] == "latency looks wrong"
    assert flag["by"]
    assert "next judge call" in result.stderr
    assert "last good config" in result.stderr


def test_abort_refuses_a_first_deployment_which_has_no_judge(shepherd, table):
    endpoint = _unique("first")
    table.put(endpoint, "lock", owner="churn-v1-abc", package="p", lease_until="4102444800")
    started = {"run": "churn-v1-abc", "event": "started", "strategy": "first-deployment"}
    table.record(endpoint, "2026-11-25T10:00:00+00:00", started)
    assert "first deployment" in _one_error_line(shepherd("rollout", "abort", endpoint))
    assert table.get(endpoint, "flag#abort") is None


# ---------------------------------------------------------------- approve and rollout start


def test_approve_flips_the_package_to_approved(cloud, shepherd):
    package = _package(cloud)
    result = shepherd("approve", package, "--description", "looks good", with_outputs=False)
    assert result.exit_code == 0, result.output
    assert "was PendingManualApproval" in result.stdout
    described = cloud.client("sagemaker").describe_model_package(ModelPackageName=package)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "looks good"
    again = shepherd("approve", package, with_outputs=False)
    assert again.exit_code == 0
    assert "already Approved" in again.stderr


def test_approve_of_an_unknown_package_is_one_clear_error_line(shepherd):
    missing = "arn:aws:sagemaker:us-east-1:123456789012:model-package/nothing-here/1"
    assert "DescribeModelPackage failed" in _one_error_line(shepherd("approve", missing, with_outputs=False))


def test_rollout_start_runs_the_state_machine_by_hand_with_overrides(cloud, stack, shepherd):
    outputs, _ = stack
    package = _package(cloud, "Approved")
    result = shepherd(
        "rollout",
        "start",
        package,
        "--override",
        "rollout.judge_interval_minutes=2",
        "--override",
        "endpoint.realtime.instance_type=ml.c5.xlarge",
    )
    assert result.exit_code == 0, result.output
    execution_arn = result.stdout.strip()
    assert execution_arn.startswith(outputs["RolloutStateMachineArn"].replace(":stateMachine:", ":execution:"))
    described = cloud.client("stepfunctions").describe_execution(executionArn=execution_arn)
    assert described["name"].startswith("manual-")
    assert json.loads(described["input"]) == {
        "ModelPackageArn": package,
        "Overrides": {
            "rollout": {"judge_interval_minutes": 2},
            "endpoint": {"realtime": {"instance_type": "ml.c5.xlarge"}},
        },
        "Manual": True,
    }
    # A second manual run of the same package gets its own name.
    second = shepherd("rollout", "start", package)
    assert second.exit_code == 0, second.output
    assert second.stdout.strip() != execution_arn
    # `shepherd runs` tells how the run ended (this package's config is nowhere) in one line, and its story.
    sfn = cloud.client("stepfunctions")
    wait_for(lambda: sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING")
    group = package.rsplit("/", 2)[-2]
    listed = shepherd("runs", group)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.stdout.splitlines() if described["name"] in line)
    assert "rollout" in line
    assert "FAILED" in line
    assert "Traceback" not in listed.stdout
    story = shepherd("runs", "show", described["name"])
    assert story.exit_code == 0, story.output
    assert "Prepare" in story.stdout
    assert package in story.stdout
    assert "times: local cloud clock" in story.stdout


def test_rollout_start_refuses_an_unapproved_package_and_bad_overrides(cloud, shepherd):
    package = _package(cloud)
    assert "not Approved" in _one_error_line(shepherd("rollout", "start", package))
    assert "key.path=value" in _one_error_line(shepherd("rollout", "start", package, "--override", "novalue"))
    assert "is not a model package: give its ARN" in _one_error_line(shepherd("rollout", "start", "churn"))
    typo = shepherd("rollout", "start", package, "--override", "rollout.judge_interval_minute=2")
    assert typo.exit_code == 1
    assert "--override: rollout.judge_interval_minute: unknown key (did you mean judge_interval_minutes?" in (
        typo.stderr
    )


def test_local_trigger_lists_the_schedule_rules_it_can_fire(cloud, stack, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", cloud.endpoint)
    listed = CliRunner().invoke(app, ["local", "trigger"])
    assert listed.exit_code == 0, listed.output
    rules = listed.stdout.split()
    assert any("RetrainSchedule" in rule or "Retrain" in rule for rule in rules), rules
    wrong = CliRunner().invoke(app, ["local", "trigger", "no-such-rule"])
    assert "no enabled schedule rule named 'no-such-rule'" in _one_error_line(wrong)
    assert rules[0] in wrong.stderr


# ---------------------------------------------------------------- status


@pytest.mark.usefixtures("fake_fleets")
def test_status_shows_the_endpoint_champion_lock_and_records(cloud, shepherd, table):
    endpoint = _unique("status")
    tags = {"shepherd:model": endpoint}
    _model(cloud, f"{endpoint}-v1", tags)
    _model(cloud, f"{endpoint}-v2", tags)
    config = f"{endpoint}-ab10"
    variants = {"champion": f"{endpoint}-v1", "candidate": f"{endpoint}-v2"}
    _config(cloud, config, variants, tags, champion=90, candidate=10)
    _endpoint(cloud, endpoint, config, tags)
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/7"
    table.put(endpoint, "champion", package=package.replace("/7", "/6"), model=f"{endpoint}-v1", variant="champion")
    table.put(endpoint, "lock", owner="churn-v7-run", package=package, lease_until="4102444800")
    records = [
        ("2026-11-25T10:00:00+00:00", {"run": "r", "package": package, "event": "started", "strategy": "shadow"}),
        ("2026-11-25T10:05:00+00:00", {"run": "r", "package": package, "event": "stage-entered", "stage": "shadow"}),
        (
            "2026-11-25T10:35:00+00:00",
            {
                "run": "r",
                "package": package,
                "event": "verdict",
                "stage": "ab",
                "weight": 10,
                "verdict": "CONTINUE",
                "explanation": "not enough samples yet",
            },
        ),
    ]
    for at, entry in records:
        table.record(endpoint, at, entry)

    result = shepherd("status", endpoint)

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "InService" in text
    assert config in text
    assert "champion" in text
    assert "candidate" in text
    assert "ml.m5.large" in text
    assert "churn v6" in text  # the champion's package
    assert "held by churn-v7-run" in text
    assert "automatic" in text
    for expected in ("stage-entered", "ab 10%", "CONTINUE", "not enough samples yet", "2026-11-25 10:35:00"):
        assert expected in text
    assert "times: local cloud clock (virtual, 60x wall time), UTC" in text

    last_one = shepherd("status", endpoint, "--last", "1")
    assert "not enough samples yet" in last_one.stdout
    assert "stage-entered" not in last_one.stdout


# ---------------------------------------------------------------- teardown


@pytest.mark.usefixtures("fake_fleets")
def test_teardown_deletes_what_is_tagged_for_the_model_and_nothing_else(cloud, shepherd):
    model, other = _unique("gone"), _unique("kept")
    mine, theirs = {"shepherd:model": model}, {"shepherd:model": other}
    _model(cloud, f"{model}-v1", mine)
    _config(cloud, f"{model}-final", {"main": f"{model}-v1"}, mine)
    _config(cloud, f"{model}-old", {"main": f"{model}-v1"}, mine)
    _endpoint(cloud, model, f"{model}-final", mine)
    scaling = cloud.client("application-autoscaling")
    resource = f"endpoint/{model}/variant/main"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    _model(cloud, f"{other}-v1", theirs)
    _config(cloud, f"{other}-final", {"main": f"{other}-v1"}, theirs)
    _model(cloud, f"{model}-untagged", {})

    declined = shepherd("teardown", model, with_outputs=False, input="n\n")
    assert declined.exit_code == 1
    assert "nothing deleted" in declined.stderr
    assert f"{model}-v1" in _names(cloud, "list_models", "Models", "ModelName")

    result = shepherd("teardown", model, "--yes", with_outputs=False)

    assert result.exit_code == 0, result.output
    for line in (
        f"deregistered scaling target {resource}",
        f"deleted endpoint {model}",
        f"deleted endpoint config {model}-final",
        f"deleted endpoint config {model}-old",
        f"deleted model {model}-v1",
    ):
        assert line in result.stdout
    assert "deleted 1 endpoint, 2 endpoint configs, 1 model" in result.stdout
    wait_for(lambda: model not in _names(cloud, "list_endpoints", "Endpoints", "EndpointName"))
    configs = _names(cloud, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName")
    models = _names(cloud, "list_models", "Models", "ModelName")
    assert not {f"{model}-final", f"{model}-old"} & configs
    assert f"{other}-final" in configs
    assert f"{model}-v1" not in models
    assert {f"{other}-v1", f"{model}-untagged"} <= models
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert resource not in [t["ResourceId"] for t in targets]

    nothing = shepherd("teardown", model, "--yes", with_outputs=False)
    assert nothing.exit_code == 0
    assert "nothing tagged" in nothing.stdout
