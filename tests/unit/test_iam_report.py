"""Tests for tools/iam_report.py, the least-privilege report read from the local cloud's authorization logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tools"))  # tools/ holds scripts, not a package

import iam_report  # noqa: E402

ACCOUNT = "123456789012"
TRAIN = f"arn:aws:iam::{ACCOUNT}:role/shepherd-TrainRole"
DEPLOY = f"arn:aws:iam::{ACCOUNT}:role/service/shepherd-DeployRole"
BUCKET = "arn:aws:s3:::models"


def decision(
    role: str, action: str, resource: str, verdict: str = "allow", *, enforced: bool = True, **extra: Any
) -> dict[str, Any]:
    name = role.rsplit("/", 1)[-1]
    entry: dict[str, Any] = {
        "time": 1765097000.123,
        "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session-1",
        "role": role,
        "action": action,
        "resource": resource,
        "decision": verdict,
        "enforced": enforced,
        "operation": action,
    }
    if verdict != "allow":
        entry["reason"] = f"because no identity-based policy allows the {action} action"
    return entry | extra


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: str | list[str], resources: str | list[str], sid: str = "") -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return statement | ({"Sid": sid} if sid else {})


def write_log(directory: Path, entries: list[dict[str, Any]], name: str = "authz.jsonl", extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + extra)
    return path


def write_roles(directory: Path, roles: dict[str, list[str]]) -> None:
    (directory / "authz-roles.json").write_text(json.dumps(roles, indent=1))


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = iam_report.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def role_of(data: dict[str, Any], role: str) -> dict[str, Any]:
    return next(r for r in data["roles"] if r["role"] == role)


@pytest.fixture
def clean_run(tmp_path: Path) -> Path:
    """Two workers' logs of one run: the training role reads and lists, the deploy role describes endpoints."""
    run_dir = tmp_path / "run"
    write_log(
        run_dir / "gw0",
        [
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/a/model.tar.gz"),
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/a/model.tar.gz"),
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/b/data.csv"),
            decision(TRAIN, "s3:ListBucket", BUCKET),
            decision(TRAIN, "logs:PutLogEvents", "*", modelled=False),
        ],
    )
    write_log(
        run_dir / "gw1",
        [
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/c/x"),
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/d/y"),
            decision(DEPLOY, "sagemaker:DescribeEndpoint", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/ep"),
        ],
    )
    train = [
        policy(
            allow(["s3:Get*", "s3:PutObject"], [f"{BUCKET}/*", "arn:aws:s3:::archive/*"], sid="Objects"),
            allow("s3:ListBucket", BUCKET),
        ),
        policy(allow("logs:PutLogEvents", "*")),
    ]
    deploy = [policy(allow(["sagemaker:Describe*", "sagemaker:UpdateEndpoint"], "*"))]
    write_roles(run_dir / "gw0", {TRAIN: train})
    write_roles(run_dir / "gw1", {TRAIN: train, DEPLOY: deploy})
    return run_dir


def test_used_actions_are_counted_with_examples(clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, out, err = run(capsys, clean_run, "--json", tmp_path / "out" / "report.json")
    assert code == 0
    assert err == ""
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["decisions"] == 8
    assert len(data["logs"]) == 2
    assert [r["name"] for r in data["roles"]] == ["shepherd-DeployRole", "shepherd-TrainRole"]
    used = {u["action"]: u for u in role_of(data, TRAIN)["used"]}
    assert sorted(used) == ["logs:PutLogEvents", "s3:GetObject", "s3:ListBucket"]
    assert used["s3:GetObject"]["count"] == 5
    assert len(used["s3:GetObject"]["examples"]) == 3
    assert used["s3:GetObject"]["examples"][0] == f"{BUCKET}/a/model.tar.gz"  # the most frequent first
    assert role_of(data, TRAIN)["denies"] == []
    assert "s3:GetObject  x5" in out


def test_wildcard_grant_used_is_not_reported_but_an_unused_action_is(
    clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run(capsys, clean_run, "--json", tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    unused = role_of(data, TRAIN)["unused"]
    assert [(u["action"], u["sid"], u["policy"]) for u in unused] == [("s3:PutObject", "Objects", 1)]
    assert unused[0]["resources"] == [f"{BUCKET}/*", "arn:aws:s3:::archive/*"]
    deploy = role_of(data, DEPLOY)
    assert [u["action"] for u in deploy["unused"]] == ["sagemaker:UpdateEndpoint"]
    assert deploy["summary"] == {"actions_used": 1, "granted_never_used": 1, "denies": 0}


def test_action_patterns_match_case_insensitively(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_log(tmp_path, [decision(TRAIN, "S3:getobject", f"{BUCKET}/k")])
    write_roles(tmp_path, {TRAIN: [policy(allow("s3:GetObject", f"{BUCKET}/*"))]})
    report = iam_report.build(iam_report.collect([tmp_path]))
    assert report.roles[0].unused == []


def test_resource_patterns_no_used_resource_matched_are_narrowing_candidates(
    clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run(capsys, clean_run, "--json", tmp_path / "report.json")
    narrowing = role_of(json.loads((tmp_path / "report.json").read_text()), TRAIN)["narrowing"]
    assert len(narrowing) == 1
    assert narrowing[0]["unmatched"] == ["arn:aws:s3:::archive/*"]
    assert narrowing[0]["used_actions"] == ["s3:GetObject"]
    assert narrowing[0]["all_unmatched"] is False
    assert narrowing[0]["sid"] == "Objects"


def test_a_statement_whose_resources_matched_nothing_used_is_flagged_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # The read came through the first statement; the second grants the same action on a bucket never read.
    write_log(tmp_path, [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")])
    write_roles(
        tmp_path,
        {TRAIN: [policy(allow("s3:GetObject", f"{BUCKET}/*"), allow("s3:*", "arn:aws:s3:::other/*", sid="Other"))]},
    )
    report = iam_report.build(iam_report.collect([tmp_path]))
    (narrowing,) = report.roles[0].narrowing
    assert (narrowing.sid, narrowing.unmatched, narrowing.all_unmatched) == ("Other", ["arn:aws:s3:::other/*"], True)
    assert report.roles[0].unused == []


def test_policy_variables_in_resources_are_resolved_from_the_principal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    write_log(tmp_path, [decision(TRAIN, "s3:GetObject", f"{BUCKET}/{ACCOUNT}/k")])
    write_roles(tmp_path, {TRAIN: [policy(allow("s3:GetObject", f"{BUCKET}/${{aws:PrincipalAccount}}/*"))]})
    report = iam_report.build(iam_report.collect([tmp_path]))
    assert report.roles[0].narrowing == []


def test_not_action_statement_is_one_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_log(tmp_path, [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")])
    not_iam = {"Effect": "Allow", "NotAction": ["s3:*", "iam:*"], "Resource": "*"}
    write_roles(tmp_path, {TRAIN: [policy(allow("s3:GetObject", "*"), not_iam)]})
    (unused,) = iam_report.build(iam_report.collect([tmp_path])).roles[0].unused
    assert (unused.action, unused.not_action) == ("s3:*, iam:*", True)


def test_deny_statements_are_not_grants(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_log(tmp_path, [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")])
    deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
    write_roles(tmp_path, {TRAIN: [policy(allow("s3:GetObject", "*"), deny)]})
    assert iam_report.build(iam_report.collect([tmp_path])).roles[0].unused == []


def test_not_modelled_decisions_are_counted_per_action(clean_run: Path, capsys: pytest.CaptureFixture[str]):
    report = iam_report.build(iam_report.collect([clean_run]))
    train = next(r for r in report.roles if r.role == TRAIN)
    assert [(m.action, m.count) for m in train.not_modelled] == [("logs:PutLogEvents", 1)]
    assert next(r for r in report.roles if r.role == DEPLOY).not_modelled == []
    assert "Resource not modelled" in iam_report.render_text(report)


@pytest.fixture
def denied_run(tmp_path: Path) -> Path:
    directory = tmp_path / "denied"
    write_log(
        directory,
        [
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/k"),
            decision(TRAIN, "s3:PutObject", f"{BUCKET}/out", "implicit-deny"),
            decision(TRAIN, "s3:PutObject", f"{BUCKET}/out", "implicit-deny"),
            decision(TRAIN, "kms:Decrypt", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k1", "explicit-deny"),
        ],
    )
    write_roles(directory, {TRAIN: [policy(allow("s3:GetObject", f"{BUCKET}/*"))]})
    return directory


def test_denies_are_grouped_and_fail_only_with_the_flag(
    denied_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, out, _ = run(capsys, denied_run, "--json", tmp_path / "r.json")
    assert code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    denies = role_of(data, TRAIN)["denies"]
    assert [(d["action"], d["decision"], d["count"], d["enforced"]) for d in denies] == [
        ("kms:Decrypt", "explicit-deny", 1, True),
        ("s3:PutObject", "implicit-deny", 2, True),
    ]
    assert "no identity-based policy allows the s3:PutObject action" in denies[1]["reason"]
    assert data["enforced_denies"] == 3
    assert "1 actions used, 0 granted patterns never used, 3 denies" in out
    assert run(capsys, denied_run, "--fail-on-deny")[0] == 1


def test_unenforced_denies_are_reported_but_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_log(tmp_path, [decision(TRAIN, "s3:PutObject", f"{BUCKET}/out", "implicit-deny", enforced=False)])
    write_roles(tmp_path, {TRAIN: []})
    code, out, _ = run(capsys, tmp_path, "--fail-on-deny")
    assert code == 0
    assert "implicit-deny (not enforced)" in out


def test_clean_run_passes_with_the_flag(clean_run: Path, capsys: pytest.CaptureFixture[str]):
    code, out, _ = run(capsys, clean_run, "--fail-on-deny")
    assert code == 0
    assert out.rstrip().endswith("0 enforced denies")


def test_several_paths_merge_roles_by_arn(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    first = write_log(tmp_path / "a", [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")], name="authz-gw0.jsonl")
    second = write_log(tmp_path / "b", [decision(TRAIN, "s3:GetObject", f"{BUCKET}/j")], name="authz-gw1.jsonl")
    write_roles(tmp_path / "a", {TRAIN: [policy(allow("s3:GetObject", "*"))]})
    write_roles(tmp_path / "b", {TRAIN: [policy(allow("s3:GetObject", "*"))]})
    collected = iam_report.collect([first, second, tmp_path])  # the directory names both again: read once
    report = iam_report.build(collected)
    assert collected.decisions == 2
    assert [(r.role, r.used[0].count) for r in report.roles] == [(TRAIN, 2)]
    assert collected.problems == []


def test_differing_snapshots_are_merged_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_log(tmp_path / "a", [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")])
    write_log(tmp_path / "b", [])
    write_roles(tmp_path / "a", {TRAIN: [policy(allow("s3:GetObject", "*"))]})
    write_roles(tmp_path / "b", {TRAIN: [policy(allow("s3:PutObject", "*"))]})
    collected = iam_report.collect([tmp_path])
    assert any("policies differ" in p for p in collected.problems)
    assert [u.action for u in iam_report.build(collected).roles[0].unused] == ["s3:PutObject"]


def test_missing_path_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, out, err = run(capsys, tmp_path / "nope")
    assert code == 2
    assert out == ""
    assert "nope: no such file or directory" in err


def test_directory_without_logs_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "other.jsonl").write_text("{}\n")
    code, _, err = run(capsys, tmp_path)
    assert code == 2
    assert "no authz*.jsonl under this directory" in err


def test_malformed_lines_are_reported_with_their_place_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    log = write_log(
        tmp_path,
        [decision(TRAIN, "s3:GetObject", f"{BUCKET}/k")],
        extra='{"role": "truncated\n[1, 2]\n\n{"role": "r", "action": "a", "resource": "*", "decision": "maybe"}\n',
    )
    write_roles(tmp_path, {TRAIN: [policy(allow("s3:GetObject", "*"))]})
    code, out, err = run(capsys, log, "--json", tmp_path / "r.json")
    assert code == 0
    assert f"{log}:2: skipped: not JSON" in err
    assert f"{log}:3: skipped: not a JSON object" in err
    assert f"{log}:5: skipped: unknown decision 'maybe'" in err
    assert "3 malformed lines skipped" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["skipped_lines"], data["decisions"]) == (3, 1)


def test_a_log_without_its_roles_file_reports_usage_and_unknown_grants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    log = write_log(
        tmp_path,
        [
            decision(TRAIN, "s3:GetObject", f"{BUCKET}/k"),
            decision(TRAIN, "s3:PutObject", f"{BUCKET}/o", "implicit-deny"),
        ],
    )
    code, out, err = run(capsys, log, "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert code == 0
    assert "no authz-roles.json beside it" in err
    assert "1 actions used, granted actions unknown, 1 denies" in out
    assert "s3:GetObject  x1" in out
    data = json.loads((tmp_path / "r.json").read_text())
    train = role_of(data, TRAIN)
    assert train["granted_known"] is False
    assert train["summary"]["granted_never_used"] is None
    assert "Granted actions unknown" in (tmp_path / "r.md").read_text()


def test_markdown_has_a_summary_table_and_a_section_per_role(
    clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run(capsys, clean_run, "--markdown", tmp_path / "docs" / "iam.md")
    text = (tmp_path / "docs" / "iam.md").read_text()
    assert "| Role | Actions used | Granted, never used | Denies | Not modelled |" in text
    assert "| `shepherd-TrainRole` | 3 | 1 | 0 | 1 |" in text
    assert "## shepherd-DeployRole" in text
    assert "| `s3:PutObject` | `arn:aws:s3:::models/*`, `arn:aws:s3:::archive/*` | 1 | Objects |" in text
    assert "| `s3:GetObject` | `arn:aws:s3:::archive/*` | 1 | Objects |" in text


def test_runs_as_a_script_from_the_repo_root(clean_run: Path):
    result = subprocess.run(
        [sys.executable, "tools/iam_report.py", str(clean_run)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("IAM least-privilege report: 2 logs, 2 roles files, 8 decisions, 2 roles")
