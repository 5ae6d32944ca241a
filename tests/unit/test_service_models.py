"""The layer's trimmed copies of botocore's data (tools/trim_service_models.py) stay right.

They must be what the tool writes from the installed botocore (a botocore upgrade regenerates them),
and hold every operation the layer and the functions call: a missing one would be an
AttributeError in production, at the first call of a path no test ran. Clients made through the
layer's loader (shepherd.aws.data_loader) must reach the same endpoints, signed the same way, as
stock botocore's, in every partition, FIPS and dual-stack included.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*ROOT.glob("layers/shepherd/shepherd/**/*.py"), *ROOT.glob("functions/*/app.py")]


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("trim_service_models", ROOT / "tools/trim_service_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def called_operations(service: str) -> set[str]:
    """snake_case operations called as client("<service>").op(...), paginated ones included, plus the
    job operations shepherd.aws.sagemaker reaches with getattr."""
    found: set[str] = set()
    for path in SOURCES:
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call)):
                continue
            call = node.value
            name = getattr(call.func, "id", getattr(call.func, "attr", None))
            if name == "client" and call.args and getattr(call.args[0], "value", None) == service:
                found.add(node.attr)
            # a paginated call: client(service).get_paginator(<operation>)
            if name == "get_paginator" and isinstance(call.func, ast.Attribute):
                inner = call.func.value
                if (
                    isinstance(inner, ast.Call)
                    and getattr(inner.func, "id", None) == "client"
                    and getattr(inner.args[0], "value", None) == service
                ):
                    found.add(call.args[0].value)
        if service == "sagemaker" and path.name == "sagemaker.py":
            found |= set(re.findall(r'"((?:describe|create|stop)_(?:training|transform)_job)"', text))
    found.discard("get_paginator")
    return found


def client_services() -> set[str]:
    """Every service named in a client("<service>") call."""
    found: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            if getattr(node.func, "id", getattr(node.func, "attr", None)) == "client":
                found.add(str(node.args[0].value))
    return found


# The fewest calls the scan must find per service (it still sees the code).
MINIMUM_CALLS = {"sagemaker": 5, "s3": 5, "dynamodb": 5, "cloudwatch": 1, "events": 1, "sns": 1}


@pytest.mark.parametrize("service", sorted(MINIMUM_CALLS))
def test_every_called_operation_is_in_the_trimmed_model(service: str) -> None:
    from botocore import xform_name

    operations = _tool().OPERATIONS[service]
    kept = {xform_name(op) for op in operations}
    called = called_operations(service)
    assert len(called) >= MINIMUM_CALLS[service]
    assert called <= kept, f"add {sorted(called - kept)} to OPERATIONS in tools/trim_service_models.py"


def test_every_trimmed_service_is_checked() -> None:
    assert set(_tool().OPERATIONS) == set(MINIMUM_CALLS)


def test_every_client_service_has_its_endpoints() -> None:
    services = client_services()
    assert {"sagemaker", "s3", "dynamodb", "stepfunctions"} <= services  # the scan still finds the calls
    missing = services - set(_tool().CLIENT_SERVICES)
    assert not missing, f"add {sorted(missing)} to CLIENT_SERVICES in tools/trim_service_models.py"


def test_the_committed_models_are_what_the_tool_writes() -> None:
    for path, text in _tool().outputs().items():
        assert path.exists(), f"run tools/trim_service_models.py: {path.relative_to(ROOT)} is missing"
        assert path.read_text() == text, f"run tools/trim_service_models.py: {path.relative_to(ROOT)} is stale"


def _partition_regions() -> list[str]:
    """The first and the last region of every partition botocore knows."""
    import botocore.loaders

    regions = []
    for partition in botocore.loaders.create_loader().load_data("endpoints")["partitions"]:
        names = sorted(partition["regions"])
        regions.extend({names[0], names[-1]})
    return regions


# One call per service, on which the request's URL and signature scope are compared.
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "application-autoscaling": ("describe_scalable_targets", {"ServiceNamespace": "sagemaker"}),
    "cloudwatch": ("get_metric_data", {"MetricDataQueries": [], "StartTime": 0, "EndTime": 60}),
    "dynamodb": ("get_item", {"TableName": "t", "Key": {"pk": {"S": "k"}}}),
    "events": ("put_events", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}),
    "s3": ("get_object", {"Bucket": "shepherd-data-123456789012", "Key": "models/churn/shepherd.yaml"}),
    "sagemaker": ("describe_training_job", {"TrainingJobName": "job"}),
    "sns": ("publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "m"}),
    "stepfunctions": ("start_execution", {"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m"}),
}


def _request(session: Any, service: str, region: str, variant: dict[str, bool]) -> tuple[str, str]:
    """(URL, "region/service" it is signed for) of the service's call from a client of this session,
    or (error type, message) if the client or the call fails before sending."""
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> AWSResponse:
        scope = str(request.headers.get("Authorization", "")).split("Credential=")[-1].split(",")[0]
        sent.update(url=request.url, scope="/".join(scope.split("/")[2:4]))
        return AWSResponse(request.url, 599, {}, None)  # not sent: a made-up answer, then an error

    try:
        config = Config(retries={"total_max_attempts": 1}, parameter_validation=False, **variant)
        api = session.create_client(service, region_name=region, config=config)
        api.meta.events.register_first("before-send", capture)
        operation, params = CALLS[service]
        getattr(api, operation)(**params)
    except Exception as exc:  # an unsupported combination must fail the same way on both
        if not sent:
            return type(exc).__name__, str(exc)
    return sent["url"], sent["scope"]


def test_layer_clients_resolve_endpoints_as_stock_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given clients from stock botocore and from the layer's loader, in every partition, plain, FIPS and
    dual-stack, when each makes its call, then both send it to the same URL with the same signing scope."""
    import botocore.session
    from shepherd.aws import clients

    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "AWS_USE_", "AWS_S3_")) or name in ("AWS_PROFILE", "AWS_CONFIG_FILE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    stock, layer = botocore.session.get_session(), clients.new_session()
    variants = [{}, {"use_fips_endpoint": True}, {"use_dualstack_endpoint": True}]
    compared = 0
    for service in _tool().CLIENT_SERVICES:
        for region in _partition_regions():
            for variant in variants:
                expected = _request(stock, service, region, variant)
                assert _request(layer, service, region, variant) == expected, (service, region, variant)
                compared += expected[0].startswith("https://")
    assert compared > 280  # most combinations resolve to an endpoint


def test_the_layer_loader_knows_only_real_services() -> None:
    from botocore.exceptions import UnknownServiceError
    from shepherd.aws.data_loader import LayerDataLoader

    with pytest.raises(UnknownServiceError, match="Unknown service: 'sagemakr'"):
        LayerDataLoader().load_service_model("sagemakr", "service-2")


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"])
def test_the_layer_loader_loads_what_botocore_does(type_name: str) -> None:
    """Without its scan of every service folder, the loader still finds the same data (with its extras)."""
    import botocore.loaders
    from shepherd.aws.data_loader import MODELS, LayerDataLoader

    stock, layer = botocore.loaders.Loader(extra_search_paths=[str(MODELS)]), LayerDataLoader()
    for service in ("sagemaker", "s3", "dynamodb"):
        assert layer.load_service_model(service, type_name) == stock.load_service_model(service, type_name)


def test_the_layer_clients_use_the_trimmed_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from shepherd.aws import clients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.reset()
    try:
        sagemaker = clients.client("sagemaker")
        assert len(sagemaker.meta.service_model.operation_names) == len(_tool().OPERATIONS["sagemaker"])
        assert sagemaker.can_paginate("list_model_packages")  # paginators still come from botocore
    finally:
        clients.reset()
