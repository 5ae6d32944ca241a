"""Tests for localcloud/template.py: parameters, the SAM transform, intrinsics and deployment order."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from localcloud.template import (
    CloudFormationTemplate,
    Evaluator,
    TemplateError,
    deployment_order,
    load_template,
    references,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "tests" / "fixtures" / "templates"
INTRINSICS = TEMPLATES / "intrinsics.yaml"
SAM_REGION = "us-east-1"  # the SAM transform needs a region it knows


def load(name: str, overrides: dict[str, str] | None = None) -> CloudFormationTemplate:
    return load_template(TEMPLATES / name, overrides or {}, SAM_REGION, "shepherd-test")


def evaluator(
    overrides: dict[str, str] | None = None,
    region: str = "eu-west-1",
    attributes: dict[str, dict[str, str]] | None = None,
    physical_ids: dict[str, str] | None = None,
) -> Evaluator:
    template = load("intrinsics.yaml", overrides)
    return Evaluator(
        template,
        region=region,
        stack_name="shepherd-test",
        physical_ids=physical_ids or {},
        attributes=attributes or {},
    )


def resolve(value: Any, **kwargs: Any) -> Any:
    return evaluator(**kwargs).resolve(value)


# ---------------------------------------------------------------- parameters


def test_parameter_defaults_are_used_when_not_overridden() -> None:
    # Given a template whose parameters all have defaults
    # When it is loaded without overrides
    template = load("intrinsics.yaml")
    # Then each parameter takes its Default
    assert template.parameters["Stage"] == "dev"
    assert template.parameters["ModelName"] == "churn"


def test_non_string_default_becomes_a_string() -> None:
    # Given a Number parameter whose YAML Default is the integer 2
    # When the template is loaded
    template = load("intrinsics.yaml")
    # Then the value is the string CloudFormation would pass
    assert template.parameters["InstanceCount"] == "2"


def test_override_replaces_default() -> None:
    # Given an override for a parameter with a default
    # When the template is loaded
    template = load("intrinsics.yaml", {"Stage": "prod"})
    # Then the override wins
    assert template.parameters["Stage"] == "prod"


def test_unknown_parameter_error_names_it() -> None:
    # Given an override for a parameter the template does not declare
    # When the template is loaded
    with pytest.raises(TemplateError) as err:
        load("intrinsics.yaml", {"Stag": "prod"})
    # Then the error names the unknown parameter and the file
    assert "Stag" in str(err.value)
    assert "intrinsics.yaml" in str(err.value)


def test_missing_required_parameter_error_names_it() -> None:
    # Given a parameter with no Default and no override
    # When the template is loaded
    with pytest.raises(TemplateError) as err:
        load("required_parameter.yaml")
    # Then the error names the parameter
    assert "TrainingImage" in str(err.value)


def test_required_parameter_given_as_override_is_accepted() -> None:
    # Given a value for the parameter that has no Default
    # When the template is loaded
    template = load("required_parameter.yaml", {"TrainingImage": "repo/image:1"})
    # Then it is used
    assert template.parameters["TrainingImage"] == "repo/image:1"


def test_value_outside_allowed_values_is_refused() -> None:
    # Given Stage allows only dev and prod
    # When it is set to staging
    with pytest.raises(TemplateError) as err:
        load("intrinsics.yaml", {"Stage": "staging"})
    # Then the error names the parameter and the bad value
    assert "Stage" in str(err.value)
    assert "staging" in str(err.value)


def test_value_not_matching_allowed_pattern_is_refused() -> None:
    # Given ModelName must match [a-z][a-z0-9-]*
    # When it is set to a value with upper case and an underscore
    with pytest.raises(TemplateError) as err:
        load("intrinsics.yaml", {"ModelName": "Churn_1"})
    # Then the error names the parameter and the bad value
    assert "ModelName" in str(err.value)
    assert "Churn_1" in str(err.value)


def test_allowed_pattern_must_match_the_whole_value() -> None:
    # Given a value whose prefix matches the pattern but whose tail does not
    # When the template is loaded
    # Then it is refused, as CloudFormation anchors AllowedPattern
    with pytest.raises(TemplateError):
        load("intrinsics.yaml", {"ModelName": "churn!"})


def test_unquoted_boolean_allowed_values_accept_their_string_value() -> None:
    # Given AllowedValues: [true, false] written as YAML booleans (CloudFormation reads them as "true"/"false")
    # When the template is loaded with the default "true"
    template = load("boolean_parameter.yaml")
    # Then the value is accepted
    assert template.parameters["EnableMonitoring"] == "true"


# ---------------------------------------------------------------- template files


def test_missing_template_file_error_names_the_file(tmp_path: Path) -> None:
    # Given a path with no file behind it
    missing = tmp_path / "nowhere.yaml"
    # When it is loaded
    with pytest.raises(TemplateError) as err:
        load_template(missing, {}, SAM_REGION, "s")
    # Then the error names the file
    assert str(missing) in str(err.value)


def test_unparseable_template_error_names_the_file() -> None:
    # Given a file that is not valid YAML
    # When it is loaded
    with pytest.raises(TemplateError) as err:
        load("not_yaml.yaml")
    # Then the error names the file and says it does not parse
    assert "not_yaml.yaml" in str(err.value)
    assert "does not parse" in str(err.value)


def test_template_that_is_not_a_mapping_raises_template_error() -> None:
    # Given valid YAML whose top level is a list, not a mapping
    # When it is loaded
    with pytest.raises(TemplateError) as err:
        load("not_a_mapping.yaml")
    # Then the caller gets a TemplateError naming the file (load_template promises TemplateError)
    assert "not_a_mapping.yaml" in str(err.value)


def test_template_without_resources_error_names_the_file() -> None:
    # Given a template with no Resources section
    # When it is loaded
    with pytest.raises(TemplateError) as err:
        load("no_resources.yaml")
    # Then the error says so and names the file
    assert "Resources" in str(err.value)
    assert "no_resources.yaml" in str(err.value)


def test_missing_code_uri_directory_error_names_the_logical_id() -> None:
    # Given a function whose CodeUri directory does not exist
    # When the template is loaded
    with pytest.raises(TemplateError) as err:
        load("missing_code_uri.yaml")
    # Then the error names the function and the path it looked for
    assert "TrainFunction" in str(err.value)
    assert "no-such-dir" in str(err.value)


# ---------------------------------------------------------------- SAM transform


def test_sam_function_becomes_a_lambda_function() -> None:
    # Given a template with the SAM transform and an AWS::Serverless::Function
    # When it is loaded
    template = load("sam_function.yaml")
    # Then the function is plain CloudFormation
    assert template.resources["HelloFunction"]["Type"] == "AWS::Lambda::Function"


def test_sam_function_code_maps_back_to_the_local_directory() -> None:
    # Given a SAM function with CodeUri code/hello/
    # When it is loaded and transformed
    template = load("sam_function.yaml")
    code = template.resources["HelloFunction"]["Properties"]["Code"]
    # Then its Code location maps back to that directory
    assert template.artifacts.local_path(code) == (TEMPLATES / "code" / "hello").resolve()


def test_foreign_code_location_does_not_map_to_a_local_path() -> None:
    # Given a Code location in a real bucket, not one of the placeholders
    template = load("sam_function.yaml")
    # When it is looked up
    # Then there is no local path for it
    assert template.artifacts.local_path({"S3Bucket": "someone-elses-bucket", "S3Key": "artifact-0"}) is None


def test_sam_function_code_uri_from_globals_is_accepted() -> None:
    # Given CodeUri set once under Globals.Function, which `sam deploy` accepts
    # When the template is loaded
    template = load("globals_code_uri.yaml")
    code = template.resources["HelloFunction"]["Properties"]["Code"]
    # Then the function's code still maps back to the local directory
    assert template.artifacts.local_path(code) == (TEMPLATES / "code" / "hello").resolve()


def test_sam_transform_restores_the_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given AWS_DEFAULT_REGION set to something else
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    # When a SAM template is transformed for us-east-1
    load("sam_function.yaml")
    # Then the environment is as it was
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"


# ---------------------------------------------------------------- Ref and pseudo parameters


def test_ref_to_partition() -> None:
    # Given / When Ref AWS::Partition is resolved / Then it is aws
    assert resolve({"Ref": "AWS::Partition"}) == "aws"


def test_ref_to_account_id() -> None:
    # Given / When Ref AWS::AccountId is resolved / Then it is moto's default account
    assert resolve({"Ref": "AWS::AccountId"}) == "123456789012"


def test_ref_to_stack_name() -> None:
    # Given an evaluator for stack shepherd-test
    # When Ref AWS::StackName is resolved
    # Then it is the stack name
    assert resolve({"Ref": "AWS::StackName"}) == "shepherd-test"


def test_ref_to_region_is_the_evaluator_region() -> None:
    # Given an evaluator for eu-west-1 / When Ref AWS::Region is resolved / Then it is eu-west-1
    assert resolve({"Ref": "AWS::Region"}, region="eu-west-1") == "eu-west-1"


def test_ref_to_unknown_pseudo_parameter_is_refused() -> None:
    # Given a pseudo parameter that does not exist
    # When it is resolved
    with pytest.raises(TemplateError) as err:
        resolve({"Ref": "AWS::Nonsense"})
    # Then the error names it
    assert "AWS::Nonsense" in str(err.value)


def test_ref_to_parameter_gives_its_value() -> None:
    # Given Stage overridden to prod / When Ref Stage is resolved / Then it is prod
    assert resolve({"Ref": "Stage"}, overrides={"Stage": "prod"}) == "prod"


def test_ref_to_deployed_resource_gives_its_physical_id() -> None:
    # Given ModelBucket deployed as bucket-123
    # When Ref ModelBucket is resolved
    # Then it is the physical id
    assert resolve({"Ref": "ModelBucket"}, physical_ids={"ModelBucket": "bucket-123"}) == "bucket-123"


def test_ref_to_undeployed_name_is_refused() -> None:
    # Given a name that is neither a parameter nor a deployed resource
    # When it is resolved
    with pytest.raises(TemplateError) as err:
        resolve({"Ref": "Ghost"})
    # Then the error names it
    assert "Ghost" in str(err.value)


def test_comma_delimited_list_default_is_split_and_trimmed() -> None:
    # Given Subnets: CommaDelimitedList with default "subnet-a, subnet-b,subnet-c"
    # When Ref Subnets is resolved
    # Then it is a list without surrounding spaces
    assert resolve({"Ref": "Subnets"}) == ["subnet-a", "subnet-b", "subnet-c"]


def test_comma_delimited_list_override_is_split() -> None:
    # Given Subnets overridden to "x,y" / When Ref Subnets is resolved / Then it is [x, y]
    assert resolve({"Ref": "Subnets"}, overrides={"Subnets": "x,y"}) == ["x", "y"]


# ---------------------------------------------------------------- Conditions and Fn::If


def test_equals_condition_false_by_default() -> None:
    # Given Stage defaults to dev / When IsProd is evaluated / Then it is false
    assert evaluator().condition("IsProd") is False


def test_equals_condition_true_with_override() -> None:
    # Given Stage=prod / When IsProd is evaluated / Then it is true
    assert evaluator({"Stage": "prod"}).condition("IsProd") is True


def test_not_condition_negates() -> None:
    # Given Stage=prod / When IsNotProd (Fn::Not of IsProd) is evaluated / Then it is false
    assert evaluator({"Stage": "prod"}).condition("IsNotProd") is False


def test_and_condition_needs_both() -> None:
    # Given prod but no retention, and prod with retention
    only_prod = evaluator({"Stage": "prod"})
    both = evaluator({"Stage": "prod", "RetentionDays": "30"})
    # When ProdWithRetention is evaluated
    # Then it is true only when both hold
    assert only_prod.condition("ProdWithRetention") is False
    assert both.condition("ProdWithRetention") is True


def test_or_condition_needs_either() -> None:
    # Given neither, and only retention
    neither = evaluator()
    only_retention = evaluator({"RetentionDays": "30"})
    # When ProdOrRetention is evaluated
    # Then it is true once either holds
    assert neither.condition("ProdOrRetention") is False
    assert only_retention.condition("ProdOrRetention") is True


def test_undefined_condition_is_refused() -> None:
    # Given a condition name the template does not define
    # When it is evaluated
    with pytest.raises(TemplateError) as err:
        evaluator().condition("IsMars")
    # Then the error names it
    assert "IsMars" in str(err.value)


def test_equals_against_unquoted_yaml_boolean_matches_string_parameter() -> None:
    # Given Conditions: MonitoringEnabled: !Equals [!Ref EnableMonitoring, true] and the parameter "true"
    template = load("boolean_condition.yaml")
    # When the condition is evaluated
    # Then it is true, as on CloudFormation (YAML true is the string "true")
    assert Evaluator(template, region=SAM_REGION, stack_name="s").condition("MonitoringEnabled") is True


def test_if_picks_the_true_branch() -> None:
    # Given Stage=prod
    # When Fn::If on IsProd is resolved
    # Then the first branch is chosen
    assert resolve({"Fn::If": ["IsProd", "big", "small"]}, overrides={"Stage": "prod"}) == "big"


def test_if_picks_the_false_branch() -> None:
    # Given Stage=dev / When Fn::If on IsProd is resolved / Then the second branch is chosen
    assert resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"


def test_if_with_no_value_drops_the_key() -> None:
    # Given a property that is AWS::NoValue unless retention is set
    properties = {
        "BucketName": "models",
        "RetentionDays": {"Fn::If": ["HasRetention", {"Ref": "RetentionDays"}, {"Ref": "AWS::NoValue"}]},
    }
    # When it is resolved without retention
    resolved = resolve(properties)
    # Then the key is gone and the rest stays
    assert resolved == {"BucketName": "models"}


def test_if_with_no_value_keeps_the_key_when_condition_holds() -> None:
    # Given the same property with retention set
    properties = {"RetentionDays": {"Fn::If": ["HasRetention", {"Ref": "RetentionDays"}, {"Ref": "AWS::NoValue"}]}}
    # When it is resolved
    # Then the value is kept
    assert resolve(properties, overrides={"RetentionDays": "30"}) == {"RetentionDays": "30"}


def test_no_value_is_dropped_from_lists() -> None:
    # Given a list with an item that is AWS::NoValue
    # When it is resolved
    # Then the item is gone
    assert resolve(["a", {"Fn::If": ["IsProd", "b", {"Ref": "AWS::NoValue"}]}, "c"]) == ["a", "c"]


# ---------------------------------------------------------------- Fn::Sub


def test_sub_replaces_parameters() -> None:
    # Given ${ModelName}-${Stage} / When it is resolved / Then both parameters are substituted
    assert resolve({"Fn::Sub": "${ModelName}-${Stage}"}) == "churn-dev"


def test_sub_replaces_resource_attributes() -> None:
    # Given ModelBucket deployed with an Arn attribute
    attributes = {"ModelBucket": {"Arn": "arn:aws:s3:::models"}}
    # When ${ModelBucket.Arn}/* is resolved
    # Then the attribute is substituted
    assert resolve({"Fn::Sub": "${ModelBucket.Arn}/*"}, attributes=attributes) == "arn:aws:s3:::models/*"


def test_sub_replaces_pseudo_parameters() -> None:
    # Given an evaluator for eu-west-1
    # When ${AWS::Region} and ${AWS::AccountId} are substituted
    # Then they are the region and account
    text = {"Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:t"}
    assert resolve(text, region="eu-west-1") == "arn:aws:sns:eu-west-1:123456789012:t"


def test_sub_leaves_escaped_literal() -> None:
    # Given ${!Literal}, CloudFormation's escape for a literal ${Literal}
    # When it is resolved
    # Then it becomes ${Literal}, not a lookup
    assert resolve({"Fn::Sub": "echo ${!Literal} for ${Stage}"}) == "echo ${Literal} for dev"


def test_sub_list_form_uses_local_variables() -> None:
    # Given the list form with a local variable bound to a Ref
    sub = {"Fn::Sub": ["${Prefix}/${ModelName}", {"Prefix": {"Ref": "Stage"}}]}
    # When it is resolved
    # Then the local variable and the parameter are both substituted
    assert resolve(sub, overrides={"Stage": "prod"}) == "prod/churn"


def test_sub_local_variable_shadows_parameter() -> None:
    # Given a local variable with the same name as a parameter
    sub = {"Fn::Sub": ["${Stage}", {"Stage": "local"}]}
    # When it is resolved
    # Then the local value wins
    assert resolve(sub) == "local"


def test_sub_with_unavailable_attribute_names_it() -> None:
    # Given ModelBucket deployed without a DomainName attribute
    attributes = {"ModelBucket": {"Arn": "arn:aws:s3:::models"}}
    # When ${ModelBucket.DomainName} is resolved
    with pytest.raises(TemplateError) as err:
        resolve({"Fn::Sub": "${ModelBucket.DomainName}"}, attributes=attributes)
    # Then the error names the resource and attribute
    assert "ModelBucket.DomainName" in str(err.value)


# ---------------------------------------------------------------- other intrinsics


def test_join_concatenates_resolved_items() -> None:
    # Given Fn::Join over a literal and a Ref / When it is resolved / Then items are joined
    assert resolve({"Fn::Join": ["-", ["model", {"Ref": "Stage"}]]}) == "model-dev"


def test_join_accepts_a_list_parameter() -> None:
    # Given Fn::Join over a CommaDelimitedList Ref / When it is resolved / Then the list is joined
    assert resolve({"Fn::Join": [";", {"Ref": "Subnets"}]}) == "subnet-a;subnet-b;subnet-c"


def test_select_picks_by_index() -> None:
    # Given Fn::Select 1 of the Subnets list / When it is resolved / Then it is the second item
    assert resolve({"Fn::Select": [1, {"Ref": "Subnets"}]}) == "subnet-b"


def test_select_accepts_string_index() -> None:
    # Given the index written as the string "2" / When it is resolved / Then it is the third item
    assert resolve({"Fn::Select": ["2", ["a", "b", "c"]]}) == "c"


def test_split_splits_on_delimiter() -> None:
    # Given Fn::Split on "/" / When it is resolved / Then it gives the parts
    assert resolve({"Fn::Split": ["/", "training/churn/data.csv"]}) == ["training", "churn", "data.csv"]


def test_select_of_split_of_sub() -> None:
    # Given intrinsics nested three deep
    value = {"Fn::Select": [1, {"Fn::Split": ["-", {"Fn::Sub": "${Stage}-${ModelName}"}]}]}
    # When it is resolved
    # Then each layer is evaluated
    assert resolve(value) == "churn"


def test_find_in_map_looks_up_with_resolved_keys() -> None:
    # Given Stage=prod / When FindInMap StageSettings/!Ref Stage/InstanceType is resolved
    value = {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "InstanceType"]}
    # Then the prod row is used
    assert resolve(value, overrides={"Stage": "prod"}) == "ml.m5.4xlarge"


def test_find_in_map_missing_key_is_refused() -> None:
    # Given a second-level key the mapping lacks
    # When FindInMap is resolved
    with pytest.raises(TemplateError) as err:
        resolve({"Fn::FindInMap": ["StageSettings", "qa", "InstanceType"]})
    # Then the error names the path
    assert "StageSettings/qa/InstanceType" in str(err.value)


def test_get_azs_gives_zones_in_the_region() -> None:
    # Given an evaluator for eu-west-1
    # When Fn::GetAZs is resolved
    zones = resolve({"Fn::GetAZs": ""}, region="eu-west-1")
    # Then every zone is in that region
    assert zones
    assert all(zone.startswith("eu-west-1") and len(zone) == len("eu-west-1") + 1 for zone in zones)


def test_select_first_az() -> None:
    # Given Fn::Select 0 of Fn::GetAZs / When it is resolved / Then it is the region's first zone
    assert resolve({"Fn::Select": [0, {"Fn::GetAZs": {"Ref": "AWS::Region"}}]}, region="us-west-2") == "us-west-2a"


def test_base64_encodes_resolved_text() -> None:
    # Given Fn::Base64 of a Sub
    value = {"Fn::Base64": {"Fn::Sub": "stage=${Stage}"}}
    # When it is resolved
    encoded = resolve(value)
    # Then it decodes back to the substituted text
    assert base64.b64decode(encoded).decode() == "stage=dev"


def test_equals_compares_values() -> None:
    # Given equal and unequal operands / When Fn::Equals is resolved / Then it reflects equality
    assert resolve({"Fn::Equals": [{"Ref": "Stage"}, "dev"]}) is True
    assert resolve({"Fn::Equals": [{"Ref": "Stage"}, "prod"]}) is False


def test_and_or_not_inline() -> None:
    # Given boolean intrinsics over Fn::Equals
    true = {"Fn::Equals": ["a", "a"]}
    false = {"Fn::Equals": ["a", "b"]}
    # When they are resolved
    # Then they follow boolean logic
    assert resolve({"Fn::And": [true, false]}) is False
    assert resolve({"Fn::Or": [false, true]}) is True
    assert resolve({"Fn::Not": [false]}) is True


def test_get_att_resolves_deployed_attribute() -> None:
    # Given ModelBucket deployed with an Arn / When Fn::GetAtt is resolved / Then it is that Arn
    attributes = {"ModelBucket": {"Arn": "arn:aws:s3:::models"}}
    assert resolve({"Fn::GetAtt": ["ModelBucket", "Arn"]}, attributes=attributes) == "arn:aws:s3:::models"


def test_import_value_is_refused() -> None:
    # Given Fn::ImportValue, which needs another stack / When it is resolved / Then it is refused
    with pytest.raises(TemplateError):
        resolve({"Fn::ImportValue": "SharedVpcId"})


# ---------------------------------------------------------------- references and deployment order


def test_references_finds_ref_getatt_and_sub_targets() -> None:
    # Given a property value using Ref, both GetAtt forms and Sub
    value = {
        "A": {"Ref": "Topic"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::GetAtt": "Table.StreamArn"},
        "D": [{"Fn::Sub": "${Bucket.Arn}/${Stage}"}],
    }
    # When its references are collected
    # Then every logical id is found
    assert references(value) >= {"Topic", "Queue", "Table", "Bucket", "Stage"}


def test_references_skip_sub_literals_and_local_variables() -> None:
    # Given a Sub with an escaped literal and a local variable
    value = {"Fn::Sub": ["${!Literal} ${Local} ${Bucket}", {"Local": "x"}]}
    # When its references are collected
    found = references(value)
    # Then only the real reference is found
    assert "Bucket" in found
    assert "Literal" not in found
    assert "!Literal" not in found
    assert "Local" not in found


def test_deployment_order_puts_referenced_resources_first() -> None:
    # Given a consumer listed before the producer it refers to, and a resource that DependsOn the consumer
    resources: dict[str, dict[str, Any]] = {
        "Consumer": {"Type": "AWS::Lambda::Function", "Properties": {"Env": {"Fn::GetAtt": ["Producer", "Arn"]}}},
        "Follower": {"Type": "AWS::SNS::Topic", "DependsOn": "Consumer"},
        "Producer": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Stage"}}},
    }
    # When they are ordered
    order = deployment_order(resources, Path("t.yaml"))
    # Then each comes after what it needs, and every resource appears once
    assert sorted(order) == sorted(resources)
    assert order.index("Producer") < order.index("Consumer") < order.index("Follower")


def test_deployment_order_follows_sub_references() -> None:
    # Given a resource that refers to another only through Fn::Sub
    resources: dict[str, dict[str, Any]] = {
        "Policy": {"Type": "X", "Properties": {"Resource": {"Fn::Sub": "${Bucket.Arn}/*"}}},
        "Bucket": {"Type": "AWS::S3::Bucket"},
    }
    # When they are ordered
    # Then the bucket comes first
    assert deployment_order(resources, Path("t.yaml")) == ["Bucket", "Policy"]


def test_deployment_order_reports_circular_dependency() -> None:
    # Given two resources that refer to each other
    resources: dict[str, dict[str, Any]] = {
        "Alpha": {"Type": "X", "Properties": {"Peer": {"Ref": "Beta"}}},
        "Beta": {"Type": "X", "Properties": {"Peer": {"Fn::GetAtt": ["Alpha", "Arn"]}}},
    }
    # When they are ordered
    with pytest.raises(TemplateError) as err:
        deployment_order(resources, Path("cycle.yaml"))
    # Then the error names the file and the cycle
    message = str(err.value)
    assert "cycle.yaml" in message
    assert "circular dependency" in message
    assert "Alpha" in message
    assert "Beta" in message


def test_deployment_order_of_transformed_sam_template() -> None:
    # Given the transformed SAM fixture (function plus its generated role)
    resources = load("sam_function.yaml").resources
    # When it is ordered
    order = deployment_order(resources, TEMPLATES / "sam_function.yaml")
    # Then the role comes before the function that uses it
    assert order.index("HelloFunctionRole") < order.index("HelloFunction")


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    # Given a template that names one resource twice (CloudFormation refuses this)
    template = tmp_path / "dup.yaml"
    template.write_text("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n  Queue:\n    Type: AWS::SNS::Topic\n")
    # When it is loaded, Then the error names the file, the key and the line
    with pytest.raises(TemplateError, match=r"dup\.yaml: template does not parse: .*duplicate key 'Queue'.*line 4"):
        load_template(template, {}, "us-east-1", "stack")
