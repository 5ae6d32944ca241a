"""SNS: the stack's notification topic."""

from __future__ import annotations

import json
from typing import Any

from shepherd.aws.clients import client
from shepherd.aws.errors import mapped

SUBJECT_MAX = 100  # SNS refuses a longer Subject


class SnsTopic:
    """Implements shepherd.rollout.reconcile.Notifications on one topic."""

    def __init__(self, topic_arn: str) -> None:
        self.topic_arn = topic_arn

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        with mapped(f"notifying {self.topic_arn}"):
            client("sns").publish(
                TopicArn=self.topic_arn, Subject=subject[:SUBJECT_MAX], Message=json.dumps(message, default=str)
            )
