"""House rules for template.yaml that the linters cannot see."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.template import _read_yaml

TEMPLATE = _read_yaml(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


def test_there_are_functions_to_check():
    assert len(FUNCTIONS) >= 10


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_log_group_with_a_retention(name):
    # cfn-lint-serverless's WS1004 is switched off for this (it only knows /aws/lambda/<function> names).
    group = FUNCTIONS[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_sets_its_timeout_and_uses_the_shared_layer_through_globals(name):
    assert "Timeout" in FUNCTIONS[name]["Properties"]
    assert TEMPLATE["Globals"]["Function"]["Layers"] == [{"Ref": "SharedLayer"}]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_no_policy_grants_a_wildcard_action(name):
    for policy in FUNCTIONS[name]["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if "*" in a], f"{name}: {actions}"
