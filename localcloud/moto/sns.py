"""moto's SNS: topics that alarm actions publish to, and their policies."""

from __future__ import annotations

from typing import Any


def publish(topic_arn: str, message: str, subject: str) -> None:
    """Publish to the topic with this ARN; raises what moto raises for a missing topic."""
    from moto.sns.models import sns_backends

    region, account = topic_arn.split(":")[3:5]
    sns_backends[account][region].publish(message, arn=topic_arn, subject=subject)


def __getattr__(name: str) -> Any:
    """sns_backends, imported on first use."""
    if name == "sns_backends":
        from moto.sns.models import sns_backends

        return sns_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
