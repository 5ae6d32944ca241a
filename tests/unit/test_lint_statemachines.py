"""Tests for tools/lint_statemachines.py, the pre-deploy linter for state machine definitions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "lint"
DEFINITIONS = FIXTURES / "statemachines"


def _load_tool() -> ModuleType:
    # tools/ holds scripts, not a package, so load the module from its file.
    spec = importlib.util.spec_from_file_location("lint_statemachines", ROOT / "tools" / "lint_statemachines.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


lint = _load_tool()


def run_main(capsys: pytest.CaptureFixture[str], *fixtures: str) -> tuple[int, list[str]]:
    exit_code = lint.main([str(FIXTURES / fixture) for fixture in fixtures])
    captured = capsys.readouterr()
    assert captured.err == ""
    return exit_code, captured.out.splitlines()


def test_valid_machine_with_lambda_substitution_passes(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a SAM state machine whose Task Resource is `${ScoreFunctionArn}` <- !GetAtt ScoreFunction.Arn,
    # plus !Ref/!Sub substitutions for a table, a topic and a service integration
    # When it is linted
    exit_code, lines = run_main(capsys, "valid.yaml")

    # Then it passes with a one-line summary naming the machine and its definition file
    assert exit_code == 0
    assert lines == [f"{FIXTURES / 'valid.yaml'}:Scoring ({DEFINITIONS / 'valid.asl.json'}): OK (3 states)"]


def test_missing_next_target_is_reported_by_statelint(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a state whose Next names a state that does not exist
    # When it is linted
    exit_code, lines = run_main(capsys, "missing_next.yaml")

    # Then statelint's complaint is reported against the template, machine and definition file
    assert exit_code == 1
    prefix = f"{FIXTURES / 'missing_next.yaml'}:Dangling ({DEFINITIONS / 'missing_next.asl.json'}): "
    assert (
        f'{prefix}statelint: No state found named "Nowhere", referenced at State Machine.States.Prepare.Next' in lines
    )


def test_unsubstituted_placeholder_is_reported_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a definition using ${EvaluateFunctionArn}, which DefinitionSubstitutions lacks
    # When it is linted
    exit_code, lines = run_main(capsys, "unsubstituted.yaml")

    # Then exactly that placeholder is reported, with the file and the machine's logical id
    assert exit_code == 1
    assert lines == [
        f"{FIXTURES / 'unsubstituted.yaml'}:Training ({DEFINITIONS / 'unsubstituted.asl.json'}): "
        "placeholder ${EvaluateFunctionArn} is not in DefinitionSubstitutions"
    ]


def test_heartbeat_not_below_timeout_is_caught_by_moto_parser_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a Task whose HeartbeatSeconds (300) exceeds its TimeoutSeconds (60): valid per statelint
    # When it is linted
    exit_code, lines = run_main(capsys, "heartbeat.yaml")

    # Then moto's parser rejects it, and statelint contributed nothing
    assert exit_code == 1
    assert len(lines) == 1
    assert ": moto: RuntimeError: 'HeartbeatSeconds' interval MUST be smaller than" in lines[0]


def test_express_machine_rejects_sync_integration(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an EXPRESS state machine that starts a child execution with `.sync:2`
    # When it is linted
    exit_code, lines = run_main(capsys, "express_sync.yaml")

    # Then moto's EXPRESS checks reject the integration
    assert exit_code == 1
    assert len(lines) == 1
    assert "Express state machine does not support" in lines[0]


def test_invalid_json_is_reported_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a definition file with a trailing comma
    # When it is linted
    exit_code, lines = run_main(capsys, "invalid_json.yaml")

    # Then one line names the file and the position, without a traceback
    assert exit_code == 1
    assert lines == [
        f"{FIXTURES / 'invalid_json.yaml'}:Broken ({DEFINITIONS / 'invalid_json.asl.json'}): invalid JSON: "
        "Expecting property name enclosed in double quotes: line 5 column 3 (char 72)"
    ]


def test_missing_definition_file_is_reported_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a DefinitionUri naming a file that does not exist
    # When it is linted
    exit_code, lines = run_main(capsys, "missing_file.yaml")

    # Then one line says so
    assert exit_code == 1
    assert lines == [
        f"{FIXTURES / 'missing_file.yaml'}:Ghost ({DEFINITIONS / 'does_not_exist.asl.json'}): definition file not found"
    ]


def test_inline_definition_is_resolved_and_linted(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an AWS::StepFunctions::StateMachine with an inline Definition using !GetAtt and a dangling Next
    # When it is linted
    exit_code, lines = run_main(capsys, "inline.yaml")

    # Then the intrinsic is evaluated and the dangling Next is reported
    assert exit_code == 1
    assert (
        f'{FIXTURES / "inline.yaml"}:Inline (inline Definition): statelint: No state found named "Missing", '
        "referenced at State Machine.States.Notify.Next"
    ) in lines


def test_substitution_of_unknown_resource_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a substitution that is !GetAtt of a resource the template does not declare
    # When it is linted
    exit_code, lines = run_main(capsys, "unknown_reference.yaml")

    # Then the substitution key and the unknown resource are named
    assert exit_code == 1
    assert lines == [
        f"{FIXTURES / 'unknown_reference.yaml'}:Orphan ({DEFINITIONS / 'valid.asl.json'}): "
        "DefinitionSubstitutions.ScoreFunctionArn: Fn::GetAtt of unknown resource 'NoSuchFunction'"
    ]


def test_unparseable_template_is_reported_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a template with an unterminated YAML flow sequence
    # When it is linted
    exit_code, lines = run_main(capsys, "malformed.yaml")

    # Then one line names the template and the YAML error
    assert exit_code == 1
    assert lines == [f"{FIXTURES / 'malformed.yaml'}: cannot parse template: line 6: did not find expected ',' or ']'"]


def test_template_yaml_in_the_current_directory_is_the_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a directory without a template.yaml
    monkeypatch.chdir(tmp_path)

    # When the linter runs without arguments
    exit_code = lint.main([])

    # Then it looked for template.yaml
    assert exit_code == 1
    assert capsys.readouterr().out == "template.yaml: template file not found\n"


def test_one_failing_template_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a clean template and a broken one
    # When both are linted in one run
    exit_code, lines = run_main(capsys, "valid.yaml", "missing_file.yaml")

    # Then both are reported and the run fails
    assert exit_code == 1
    assert lines[0].endswith(": OK (3 states)")
    assert lines[1].endswith(": definition file not found")


def test_ref_of_function_is_its_name_and_getatt_arn_its_arn() -> None:
    # Given a template with a SAM function
    resolver = lint.Resolver({"Resources": {"Train": {"Type": "AWS::Serverless::Function"}}})

    # When Ref and Fn::GetAtt Arn are evaluated
    # Then they follow CloudFormation: Ref is the function name, Arn the function ARN
    assert resolver.resolve({"Ref": "Train"}) == "Train"
    assert resolver.resolve({"Fn::GetAtt": ["Train", "Arn"]}) == "arn:aws:lambda:us-east-1:123456789012:function:Train"


def test_sub_evaluates_pseudo_parameters_parameters_resources_and_variables() -> None:
    # Given a template with a parameter, a state machine and a topic
    resolver = lint.Resolver(
        {
            "Parameters": {"Stage": {"Type": "String", "Default": "prod"}, "Owner": {"Type": "String"}},
            "Resources": {
                "Child": {"Type": "AWS::Serverless::StateMachine"},
                "Alerts": {"Type": "AWS::SNS::Topic"},
            },
        }
    )

    # When an Fn::Sub mixing every kind of reference is evaluated
    value = resolver.resolve(
        {"Fn::Sub": ["${AWS::StackName}/${Stage}/${Owner}/${Child.Name}/${Alerts}/${Extra}", {"Extra": "x"}]}
    )

    # Then each reference has its stand-in value (a parameter without Default stands for itself)
    assert value == "shepherd/prod/Owner/Child/arn:aws:sns:us-east-1:123456789012:Alerts/x"


def test_sub_keeps_escaped_placeholders_literal() -> None:
    # Given an empty template
    resolver = lint.Resolver({})

    # When an Fn::Sub contains the ${!Literal} escape
    # Then it yields ${Literal}
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"
