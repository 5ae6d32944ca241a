"""shepherd.edge: the pydantic-free field checks and environment settings of the functions."""

from __future__ import annotations

import pytest
from shepherd.edge import MissingSetting, field, list_setting, optional_setting, setting
from shepherd.errors import InvalidInput


def test_a_present_field_of_the_right_type_is_returned() -> None:
    assert field({"name": "job-1"}, "name", str) == "job-1"
    assert field({"n": 3}, "n", int) == 3
    assert field({"started": 60}, "started", float) == 60  # JSON does not tell 60 from 60.0


@pytest.mark.parametrize(
    ("event", "kind", "options", "message"),
    [
        ([], str, {}, "the event must be an object, got list"),
        ({}, str, {}, "the event has no 'x'"),
        ({"x": ""}, str, {}, "x must not be empty"),
        ({"x": 5}, str, {}, "x must be a string, got 5"),
        ({"x": True}, int, {}, "x must be an integer, got True"),
        ({"x": True}, float, {}, "x must be a number, got True"),
        ({"x": 0}, int, {}, "x must be >= 1, got 0"),
        ({"x": -1.5}, float, {"minimum": 0}, "x must be >= 0, got -1.5"),
        ({"x": "c"}, str, {"choices": ("a", "b")}, "x must be one of a, b, got 'c'"),
        ({"x": 1}, str, {"where": "stage."}, "stage.x must be a string, got 1"),
        ("s", str, {"where": "stage."}, "stage must be an object, got str"),
    ],
)
def test_a_bad_field_is_one_specific_error(event: object, kind: type, options: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        field(event, "x", kind, **options)
    assert str(raised.value) == message


def test_a_default_stands_in_for_an_absent_field_only() -> None:
    assert field({}, "x", str, default="d") == "d"
    with pytest.raises(InvalidInput):
        field({"x": 3}, "x", str, default="d")


# ---------------------------------------------------------------- the function's environment


def test_a_setting_is_read_from_the_environment() -> None:
    assert setting("DATA_BUCKET", {"DATA_BUCKET": "shepherd-data"}) == "shepherd-data"


@pytest.mark.parametrize("environ", [{}, {"DATA_BUCKET": ""}])
def test_a_missing_setting_is_a_deployment_error_naming_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(MissingSetting, match=r"environment has no DATA_BUCKET: template\.yaml sets it"):
        setting("DATA_BUCKET", environ)


def test_an_optional_setting_left_empty_is_none() -> None:
    assert optional_setting("DATA_KEY_ARN", {"DATA_KEY_ARN": ""}) is None
    assert optional_setting("DATA_KEY_ARN", {}) is None
    assert optional_setting("DATA_KEY_ARN", {"DATA_KEY_ARN": "arn:key"}) == "arn:key"


def test_a_list_setting_is_split_on_commas_and_empty_when_unset() -> None:
    assert list_setting("SUBNET_IDS", {"SUBNET_IDS": "subnet-1,subnet-2"}) == ["subnet-1", "subnet-2"]
    assert list_setting("SUBNET_IDS", {"SUBNET_IDS": ""}) == []
    assert list_setting("SUBNET_IDS", {}) == []
