"""What runs on every invocation or every sweep says nothing unless it has something to say (issue 22, item 10)."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from shepherd.aws.powertools import powertools
from shepherd.rollout.reconcile import MISSING, Deps, reconcile

from localcloud.logs import LogShipper

from .fakes import FakeEndpoints, FakeRolloutStore, ManualClock

# ---------------------------------------------------------------------------------------------- Powertools


@pytest.fixture
def metrics_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's Powertools settings, and the "shepherd" logger made before capsys swaps stdout (Logger()
    binds its handler to the stdout of the moment, and later tests must not write to a closed capture)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shepherd")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "shepherd")
    powertools()


def test_a_handler_that_adds_no_metric_warns_nothing(metrics_namespace: None, capsys: pytest.CaptureFixture[str]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning recorded, unless a filter of powertools() ignores it
        _, _, metrics = powertools()

        @metrics.log_metrics
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return {}

        assert handler({}, None) == {}
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().out == ""  # and no empty EMF document either


def test_a_handler_that_adds_a_metric_still_publishes_it(metrics_namespace: None, capsys: pytest.CaptureFixture[str]):
    with warnings.catch_warnings():
        _, _, metrics = powertools()

        @metrics.log_metrics
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            metrics.add_metric(name="TokensSettledByReconciler", unit=MetricUnit.Count, value=2)
            return {}

        handler({}, None)
    document = json.loads(capsys.readouterr().out)
    assert document["TokensSettledByReconciler"] == [2.0]
    assert document["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "TokensSettledByReconciler", "Unit": "Count"}
    ]


# ---------------------------------------------------------------------------------------------- the console


class FakeLogs:
    """PutLogEvents as CloudWatch Logs answers it: an empty message refuses the whole call."""

    class exceptions:  # boto3's spelling
        ResourceAlreadyExistsException = KeyError

    def __init__(self) -> None:
        self.events: list[str] = []

    def create_log_group(self, **_: Any) -> None: ...

    def create_log_stream(self, **_: Any) -> None: ...

    def put_log_events(self, logGroupName: str, logStreamName: str, logEvents: list[dict[str, Any]]) -> None:
        if any(not event["message"] for event in logEvents):
            raise ValueError("1 validation error detected: Value '' at 'logEvents.1.member.message'")
        self.events += [event["message"] for event in logEvents]


def invocation(request: str, *lines: str) -> list[str]:
    return [f"START RequestId: {request} Version: $LATEST", *lines, f"END RequestId: {request}",
            f"REPORT RequestId: {request}\tDuration: 3.00 ms"]  # fmt: skip


def test_the_console_skips_an_invocation_that_printed_nothing_and_cloudwatch_keeps_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs = FakeLogs()
    shipper = LogShipper(lambda: logs, echo=True)
    quiet, acting = invocation("r1"), invocation("r2", '{"level":"INFO","message":"reconciled"}')
    for line in quiet + acting:
        shipper.put("/aws/lambda/reconcile", "stream-1", line, "ReconcileJobs")
    shipper.close()
    assert capsys.readouterr().err.splitlines() == [f"[ReconcileJobs] {line}" for line in acting]
    assert logs.events == quiet + acting


def test_an_empty_line_does_not_lose_the_lines_shipped_with_it() -> None:
    # Given a container's message with a blank line in it (the 415's text has one)
    logs = FakeLogs()
    shipper = LogShipper(lambda: logs, echo=False)
    for line in ["Invocation failed (415): Content type application/xml is not supported.", "", "Please implement"]:
        shipper.put("/aws/sagemaker/Endpoints/e", "AllTraffic/i-local", line)
    shipper.close()
    assert logs.events == [
        "Invocation failed (415): Content type application/xml is not supported.",
        "Please implement",
    ]


# ---------------------------------------------------------------------------------------------- sweeps

RUN = "churn-v2-0123456789abcdef"
CONFIG = "churn-final-v1-aaaa"


@dataclass
class Ended:
    """Executions: every one has ended (MISSING); a topic that keeps what it is told."""

    sent: list[Any] = field(default_factory=list)

    def status(self, name: str) -> str:
        return MISSING

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        self.sent.append(subject)


def test_a_sweep_that_waits_logs_nothing_at_info_and_one_that_acts_says_so(caplog: pytest.LogCaptureFixture) -> None:
    # Given a stranded lock on an endpoint still updating (the sweep waits for it), champion v1
    clock, store, endpoints, ended = ManualClock(), FakeRolloutStore(), FakeEndpoints(), Ended()
    store.acquire(
        "churn", RUN, "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2", clock.now().timestamp()
    )
    store.set_champion("churn", {"variant": "v1", "config": CONFIG})
    endpoints.live["churn"] = {"EndpointName": "churn", "EndpointStatus": "Updating", "EndpointConfigName": CONFIG}
    deps = Deps(store=store, endpoints=endpoints, executions=ended, notifications=ended, now=clock.now)
    caplog.set_level(logging.DEBUG, logger="shepherd.rollout.reconcile")
    # When a sweep finds nothing to do yet
    assert reconcile(deps) == {"waiting": 1}
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    # And when the endpoint has settled on the champion, the next sweep frees the lock and says so
    endpoints.live["churn"]["EndpointStatus"] = "InService"
    assert reconcile(deps) == {"released": 1}
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [("WARNING", "stranded rollout cleaned up")]
