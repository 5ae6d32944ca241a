"""One local cloud per test session (moto's backends are process-global), with the fixture app deployed."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.deployer import Deployer
from localcloud.sagemaker import training_opt_ml
from localcloud.server import LocalCloud

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TIME_SCALE = 60.0
REAL_OPT_ML = training_opt_ml.OPT_ML


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with pytest.MonkeyPatch.context() as patch:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            # Parallel workers' training jobs would queue for the machine's one /opt/ml (a flock), and a job's time
            # in the queue counts against its workflow's virtual-clock wait: a worker's jobs use their SM_* paths
            # with a directory of its own there, and the tests about /opt/ml itself take the real one back.
            own = tmp_path_factory.mktemp("opt") / "ml"
            own.mkdir()
            patch.setattr(training_opt_ml, "OPT_ML", own)
        local = LocalCloud(port=0, time_scale=TIME_SCALE, state_dir=tmp_path_factory.mktemp("state"))
        local.start()
        local.deploy(FIXTURES / "app" / "template.yaml", {"Greeting": "hello from the template"}, "fixture")
        yield local
        local.stop()
        _keep_authorization_log(local)


AUTHZ_DIR = FIXTURES.parents[1] / ".shepherd" / "authz"


def _keep_authorization_log(cloud: LocalCloud) -> None:
    """The run's authorization log, kept per worker for `make iam-report` (tools/iam_report.py)."""
    target = AUTHZ_DIR / os.environ.get("PYTEST_XDIST_WORKER", "main")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("authz.jsonl", "authz-roles.json"):
        source = cloud.state_dir / name
        if source.exists():
            shutil.copyfile(source, target / name)


@pytest.fixture
def real_opt_ml(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The machine's /opt/ml for a test about it, whatever the session's cloud uses otherwise."""
    monkeypatch.setattr(training_opt_ml, "OPT_ML", REAL_OPT_ML)
    return REAL_OPT_ML


@pytest.fixture(scope="session")
def outputs(cloud: LocalCloud) -> dict[str, str]:
    return cloud.outputs


@pytest.fixture(scope="session")
def rollout_app(cloud: LocalCloud) -> Any:
    """The application's template.yaml deployed once per session (per worker) for every rollout test: each rolls
    out its own model to its own endpoint, so they share the stack's functions, table and bucket."""
    from .workflow import ROOT, App  # here: workflow.py imports this module

    outputs = Deployer(cloud, "ro").deploy(ROOT / "template.yaml", {"StageName": "rotest"})
    return App(cloud, outputs | {"_stack": "ro"})


@pytest.fixture(scope="session")
def churn_package(rollout_app: Any) -> dict[str, Any]:
    """The churn example trained once through the lifecycle and registered, not approved (nothing rolls out): the
    trained model a rollout test registers again, as its own model's versions, instead of training its own."""
    from .workflow import churn_config, unique  # here: workflow.py imports this module

    model = unique("seed")
    rollout_app.upload_project(model, churn_config(model))
    rollout_app.upload_dataset(model, "d1")
    assert rollout_app.run_of(model, "d1")["status"] == "SUCCEEDED"
    (package,) = rollout_app.packages(model)
    return package


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until check() returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


def role(cloud: LocalCloud, name: str, service: str, actions: list[str], resource: str = "*") -> str:
    """A role ``service`` may assume, allowed ``actions`` on ``resource``: what a test's own resources act as."""
    iam = cloud.client("iam")
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
    iam.put_role_policy(RoleName=name, PolicyName="test", PolicyDocument=json.dumps(policy))
    return str(arn)


def finished_execution(cloud: LocalCloud, execution_arn: str, timeout: float = 20.0) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")

    def done() -> dict[str, Any] | None:
        described = sfn.describe_execution(executionArn=execution_arn)
        return None if described["status"] == "RUNNING" else described

    return wait_for(done, timeout)


class Denials:
    """IAM refusals of the cloud's principals during one test; a test names the ones it provokes."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.refusals = cloud.authorizer.refusals
        self.start = len(self.refusals)
        self.expected: list[tuple[str, str]] = []

    def expect(self, action: str, resource_part: str = "") -> None:
        self.expected.append((action, resource_part))

    def seen(self) -> list[dict[str, Any]]:
        return self.refusals[self.start :]

    def unexpected(self) -> list[dict[str, Any]]:
        return [r for r in self.seen() if not any(r["action"] == a and p in r["resource"] for a, p in self.expected)]


@pytest.fixture(autouse=True)
def denials(request: pytest.FixtureRequest) -> Iterator[Denials | None]:
    """Fails a test during which the local cloud refused a request the test did not expect (docs/LOCAL_IAM.md)."""
    if "cloud" not in request.fixturenames:
        yield None
        return
    watch = Denials(request.getfixturevalue("cloud"))
    yield watch
    unexpected = watch.unexpected()
    assert not unexpected, f"IAM refused {len(unexpected)} request(s) the test did not expect: {unexpected[:5]}"
