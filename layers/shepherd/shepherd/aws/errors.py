"""ClientError → domain errors, so handlers and state machines see what a failure means, not botocore's shape."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shepherd.errors import Conflict, EndpointBusy, InvalidInput, NotFound, ShepherdError, TransientError

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
    }
)
NOT_FOUND_CODES = frozenset(
    {"NoSuchKey", "NoSuchBucket", "404", "ResourceNotFound", "ResourceNotFoundException", "NotFound"}
)

IN_PROGRESS = "in-progress endpoint"


def code_of(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def message_of(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Run an AWS call; raise TransientError, NotFound, InvalidInput or Conflict naming ``what`` on failure."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

    try:
        yield
    except ClientError as exc:
        code, message = code_of(exc), message_of(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in TRANSIENT_CODES or status >= 500:
            raise TransientError(f"{what}: {code}: {message}") from exc
        if code in NOT_FOUND_CODES or "does not exist" in message or "Could not find" in message:
            raise NotFound(f"{what}: {message}") from exc
        if code == "ValidationException" and IN_PROGRESS in message:
            # SageMaker refuses an update of an endpoint that is still updating ('Cannot update in-progress
            # endpoint "arn:..."'): not the caller's mistake; the state machines retry it with a long backoff.
            raise EndpointBusy(f"{what}: {message}") from exc
        if code in ("ValidationException", "InvalidParameterValue", "InvalidRequest"):
            raise InvalidInput(f"{what}: {message}") from exc
        if code in ("ConflictException", "ResourceInUse", "ConditionalCheckFailedException"):
            raise Conflict(f"{what}: {message}") from exc
        raise ShepherdError(f"{what}: {code}: {message}") from exc
    except (ConnectionError, ReadTimeoutError) as exc:
        raise TransientError(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise ShepherdError(f"{what}: {exc}") from exc
