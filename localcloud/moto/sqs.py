"""moto's SQS: a queue receiving what EventBridge delivers to it."""

from __future__ import annotations


def send_message(queue_arn: str, body: str, group_id: str | None) -> None:
    """SendMessage to the queue with this ARN (MessageGroupId for a FIFO queue)."""
    from moto.sqs.models import sqs_backends

    region, account, queue = queue_arn.split(":")[3:6]
    sqs_backends[account][region].send_message(queue_name=queue, message_body=body, group_id=group_id)
