"""The `shepherd` CLI uses the application's rollouts table and execution names, through its own clients."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from shepherd.aws.errors import mapped
from shepherd.aws.rollouts import RolloutTable
from shepherd.events.names import execution_name
from shepherd.rollout.ports import PAUSED

from shepherd_cli.cloud import Target, one_line_errors
from shepherd_cli.rollouts import manual_execution_name

TABLE = "shepherd-rollouts"
ENDPOINT_URL = "http://127.0.0.1:9"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"
LOCK = {
    "pk": {"S": "endpoint#churn"},
    "sk": {"S": "lock"},
    "owner": {"S": "churn-v3-run"},
    "lease_until": {"N": "4102444800"},
}


@pytest.fixture
def target(tmp_path: Path) -> Target:
    """A local-cloud target, as `--endpoint-url URL --outputs PATH` makes it."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"RolloutsTableName": TABLE}))
    return Target.resolve(ENDPOINT_URL, None, None, outputs=outputs)


def test_the_rollout_table_makes_its_calls_with_the_clients_it_is_given() -> None:
    requests: list[dict[str, Any]] = []

    class DynamoDB:
        def get_item(self, **request: Any) -> dict[str, Any]:
            requests.append(request)
            return {"Item": LOCK}

    table = RolloutTable(table=TABLE, clients={"dynamodb": DynamoDB()}.__getitem__)

    assert table.lock_of("churn") == {"owner": "churn-v3-run", "lease_until": "4102444800"}
    assert [r["TableName"] for r in requests] == [TABLE]


def test_the_cli_reads_the_rollout_table_of_its_outputs_at_its_endpoint(target: Target) -> None:
    dynamodb = target.client("dynamodb")
    key = {"pk": {"S": "endpoint#churn"}, "sk": {"S": "lock"}}

    with Stubber(dynamodb) as stub:
        stub.add_response("get_item", {"Item": LOCK}, {"TableName": TABLE, "Key": key, "ConsistentRead": True})
        lock = target.rollouts().lock_of("churn")

    assert lock is not None
    assert lock["owner"] == "churn-v3-run"
    assert dynamodb.meta.endpoint_url == ENDPOINT_URL


def test_a_failed_table_call_is_one_line_naming_the_aws_operation(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    with Stubber(target.client("dynamodb")) as stub:
        stub.add_client_error(
            "get_item", service_error_code="ResourceNotFoundException", service_message="Requested resource not found"
        )
        with pytest.raises(typer.Exit) as exited, one_line_errors(target):
            target.rollouts().flag("churn", PAUSED)

    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == "error: GetItem failed: ResourceNotFoundException: Requested resource not found\n"


def test_an_unreachable_table_names_the_endpoint_and_the_local_cloud(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit), one_line_errors(target), mapped("reading the lock of churn"):
        raise EndpointConnectionError(endpoint_url=f"{ENDPOINT_URL}/")

    assert capsys.readouterr().err == f"error: cannot reach {ENDPOINT_URL}/: is `shepherd local up` running?\n"


def test_a_manual_execution_is_named_by_the_applications_rule() -> None:
    now = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)

    first, second = manual_execution_name(PACKAGE, now), manual_execution_name(PACKAGE, now)

    assert re.fullmatch(r"manual-churn-v3-20261125T101500Z-[0-9a-f]{16}", first)
    assert second != first
    assert execution_name("churn-v3", PACKAGE) not in (first, second)  # the automatic execution's name


def test_a_manual_execution_name_of_a_long_group_fits_step_functions() -> None:
    name = manual_execution_name(PACKAGE.replace("churn", "c" * 63))

    assert len(name) <= 80
    assert re.fullmatch(r"manual-c+-[0-9a-f]{16}", name)
