"""What the local cloud lends its subsystems: its clock, AWS clients, role sessions, logs and state directory.

Subsystems take these protocols (or narrower ones of their own, like sagemaker.jobs.RunnerContext), never the
LocalCloud: none of them imports localcloud.server, and a test builds any of them from fakes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from localcloud.clock import VirtualClock
    from localcloud.iam.authorizer import Authorizer
    from localcloud.iam.principals import Credentials


class Clocked(Protocol):
    @property
    def clock(self) -> VirtualClock: ...


class Clients(Protocol):
    def client(self, service: str) -> Any:
        """A boto3 client of the local endpoint with the cloud's own keys (IAM lets them do anything)."""
        ...


class RoleSessions(Protocol):
    def role_credentials(self, role_arn: str, service: str, session_name: str) -> Credentials:
        """A session of ``role_arn`` as ``service`` assumes it (raises RoleNotAssumable as AWS refuses)."""
        ...


class RoleClients(Protocol):
    def role_client(self, service: str, credentials: Credentials) -> Any:
        """A boto3 client acting as a role session, authorized by the cloud's IAM."""
        ...


class LogSink(Protocol):
    def put(self, group: str, stream: str, line: str, label: str | None = None) -> None:
        """A line for a CloudWatch Logs stream."""
        ...


class CloudServices(Clocked, Clients, RoleSessions, RoleClients, Protocol):
    """The whole loan, as the local SageMaker takes it: its jobs and endpoints act as roles, log, keep files,
    and hand the cloud's endpoint and clock on to the processes they start."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def log_shipper(self) -> LogSink: ...

    @property
    def authorizer(self) -> Authorizer: ...

    @property
    def endpoint(self) -> str: ...

    def worker_environment(self) -> dict[str, str]:
        """The environment under which a process the cloud starts reaches it (and reads its clock)."""
        ...
