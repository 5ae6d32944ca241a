"""Domain errors. Their class names are the `Error` names a state machine's Retry and Catch see.

A Lambda handler that raises lets the error name reach Step Functions as the task's error, so
the state machines retry ``TransientError`` (and Lambda's own service errors) with backoff and
never retry ``InvalidInput``: a broken config, CSV or model archive fails at once, with a
message that says what is wrong, and goes to the failure path that notifies.
"""

from __future__ import annotations


class ShepherdError(Exception):
    """Base of Shepherd's errors; not retried unless a subclass says so."""


class InvalidInput(ShepherdError):
    """The user's input (config, data, event, archive) is wrong: retrying cannot help; the message says why."""


class NotFound(ShepherdError):
    """A resource Shepherd needs does not exist (yet)."""


class TransientError(ShepherdError):
    """Throttling, a timeout or a 5xx from AWS: safe to retry after a backoff."""


class Conflict(ShepherdError):
    """The resource is in a state that forbids the operation now (e.g. an endpoint that is Updating)."""


class EndpointBusy(ShepherdError):
    """The endpoint is being updated (Application Auto Scaling, another change): retry once it is InService again."""
