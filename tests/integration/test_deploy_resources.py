"""Plain CloudFormation resources, conditions, mappings and outputs deploy as CloudFormation would."""

from __future__ import annotations

import json

import pytest

from localcloud.deployer import Deployer

from .conftest import FIXTURES, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def resources(cloud):
    return Deployer(cloud, "res").deploy(FIXTURES / "resources" / "template.yaml", {})


def test_outputs_resolve_intrinsics_and_skip_excluded_conditions(resources):
    assert resources["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:res-dev-notifications"
    assert resources["QueueUrl"].endswith("/res-b-queue")
    assert resources["Mode"] == "development"
    assert "ProdQueue" not in resources
    assert resources["AzCount"] == "us-east-1a,us-east-1b,us-east-1c"


def test_resources_exist_in_their_services(cloud, resources):
    assert cloud.client("ssm").get_parameter(Name="/res/retention")["Parameter"]["Value"] == "7"
    queues = cloud.client("sqs").list_queues().get("QueueUrls", [])
    assert any(q.endswith("/res-b-queue") for q in queues)
    assert not any("ProdOnlyQueue" in q for q in queues)
    ttl = cloud.client("dynamodb").describe_time_to_live(TableName="res-Table")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_rule_with_input_transformer_delivers_to_sqs(cloud, resources):
    events = cloud.client("events")
    events.put_events(
        Entries=[{"Source": "shepherd.fixture", "DetailType": "Ready", "Detail": json.dumps({"model": "churn"})}]
    )
    sqs = cloud.client("sqs")

    def received():
        return sqs.receive_message(QueueUrl=resources["QueueUrl"], WaitTimeSeconds=1).get("Messages")

    (message,) = wait_for(received)
    assert json.loads(message["Body"]) == {"message": "model churn is ready", "model": "churn"}
