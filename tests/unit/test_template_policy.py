"""House rules for template.yaml that the linters cannot see (least privilege: test_security_controls.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from shepherd.monitor.layout import REPORT_TAG, baseline_prefix, report_prefix, state_key

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


def test_the_judge_writes_nothing_in_the_data_bucket_but_its_quality_state_which_expires_with_the_capture():
    from shepherd.rollout import plan
    from shepherd.rollout.quality import STATE_ROOT, state_key

    statements = [s for p in FUNCTIONS["JudgeStageFunction"]["Properties"]["Policies"] for s in p["Statement"]]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    reads = {"s3:GetObject", "s3:ListBucket"}
    writes = [s for s in s3 if set(_actions(s)) - reads]
    # its quality state, and the replay stage's result under the capture (capture/<endpoint>/<endpoint>/replay/...)
    assert writes == [
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": [
                {"Fn::Sub": f"${{DataBucket.Arn}}/{STATE_ROOT}*"},
                {"Fn::Sub": "${DataBucket.Arn}/capture/*/replay/*"},
            ],
        }
    ]
    assert state_key("churn", "churn-v2-run", 0).startswith(STATE_ROOT)
    assert plan.replay_prefix("churn", "churn-v2-run").startswith("capture/churn/churn/replay/")
    # the state is read back with GetObject and found with ListBucket, which capture/ already allows
    gets = next(s for s in s3 if _actions(s) == ["s3:GetObject"])
    assert {"Fn::Sub": "${DataBucket.Arn}/capture/*"} in gets["Resource"]
    rules = RESOURCES["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [rule] = [r for r in rules if r["Status"] == "Enabled" and STATE_ROOT.startswith(r.get("Prefix", ""))]
    assert "ExpirationInDays" in rule
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1  # each call's rewrite leaves a version


def _actions(statement):
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_monitor_reports_expire_by_their_tag_and_baselines_and_state_do_not():
    # Given the data bucket's lifecycle rules and the tag the monitor writes its reports with
    rules = RESOURCES["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [rule] = [r for r in rules if r["Id"] == "ExpireMonitorReports"]
    # Then the rule expires tagged objects under monitoring/ after the stack's parameter, and their old versions
    assert rule["Status"] == "Enabled"
    assert rule["TagFilters"] == [{"Key": REPORT_TAG[0], "Value": REPORT_TAG[1]}]
    assert rule["ExpirationInDays"] == {"Ref": "MonitorReportRetentionDays"}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert TEMPLATE["Parameters"]["MonitorReportRetentionDays"]["Default"] == 90
    assert report_prefix("churn", "churn", datetime(2026, 12, 7, tzinfo=UTC)).startswith(rule["Prefix"])
    # and no other rule reaches a baseline or the state (they carry no tag and stay)
    for key in (baseline_prefix("churn", 1) + "statistics.json", state_key("churn")):
        assert [r["Id"] for r in rules if key.startswith(r.get("Prefix", "")) and "TagFilters" not in r] == []
    # and the monitor may tag what it writes (PutObject with a tag-set needs s3:PutObjectTagging)
    statements = FUNCTIONS["MonitorFunction"]["Properties"]["Policies"][1]["Statement"]
    assert any("s3:PutObjectTagging" in _actions(s) for s in statements)
