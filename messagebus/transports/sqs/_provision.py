"""Provisioning for the SQS transport: queues, dead-letter queues, topics, subscriptions.

Everything is idempotent, so provisioning at every start-up is safe:

- A queue is created with its attributes (``VisibilityTimeout``, ``FifoQueue``, and a
  ``RedrivePolicy`` to its dead-letter queue with ``maxReceiveCount`` = ``max_receives``).
  If it exists with other attributes, they are set to the spec's (``FifoQueue`` cannot
  change: a queue's kind is in its name).
- A dead-letter queue is the same kind as its queue and keeps messages 14 days (the
  most SQS allows): a message keeps its original enqueue time when it moves there.
- A topic is created with ``MaximumMessageSize`` 1 MiB (SNS's default is 256 KiB) and
  ``FifoTopic`` where asked; ``CreateTopic`` returns the existing ARN.
- A subscription delivers raw (``RawMessageDelivery=true``: the body is the envelope,
  not wrapped in SNS JSON), and the queue's policy gains one statement allowing that
  topic, and only it, to ``sqs:SendMessage``; statements already there are kept.
- :func:`allow_service` does the same for another AWS service sending on behalf of one
  resource (EventBridge for a rule: ``events.amazonaws.com``, ``aws:SourceArn`` = the
  rule's ARN), and turns on content-based deduplication on a FIFO queue, which AWS
  requires of a FIFO queue that EventBridge targets (it sends no deduplication id).

What production needs to grant instead: sqs:CreateQueue/GetQueueUrl/GetQueueAttributes/
SetQueueAttributes and sns:CreateTopic/Subscribe for provisioning; sqs:SendMessage,
ReceiveMessage, DeleteMessage, ChangeMessageVisibility, GetQueueUrl and sns:Publish,
ListTopics for running.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from messagebus.transports._protocol import QueueSpec, TopicSpec, TopicSubscription
from messagebus.transports.sqs._errors import error_code, translated
from messagebus.transports.sqs._names import Names, ResolvedQueue, ResolvedTopic

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

__all__ = ["allow_service", "create_queue", "create_topic", "subscribe"]

DLQ_RETENTION = 14 * 24 * 3600
TOPIC_MAX_BYTES = 1024 * 1024
MAX_VISIBILITY = 12 * 3600
_EXISTS_CODES = frozenset(
    {"QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists"}
)


async def create_queue(sqs: SQSClient, names: Names, spec: QueueSpec) -> ResolvedQueue:
    """Create ``spec``'s queue (and its dead-letter queue) or bring it to the spec."""
    attributes: dict[QueueAttributeNameType, str] = {
        "VisibilityTimeout": str(visibility_seconds(spec.visibility_timeout))
    }
    if spec.max_receives is not None:
        dlq_url = await _create(
            sqs,
            names.physical(spec.dead_letter_queue, fifo=spec.fifo),
            {"MessageRetentionPeriod": str(DLQ_RETENTION)},
            fifo=spec.fifo,
        )
        redrive = {
            "deadLetterTargetArn": await queue_arn(sqs, dlq_url),
            "maxReceiveCount": str(spec.max_receives),
        }
        attributes["RedrivePolicy"] = json.dumps(redrive, separators=(",", ":"))
    url = await _create(sqs, names.physical(spec.name, fifo=spec.fifo), attributes, fifo=spec.fifo)
    return ResolvedQueue(spec.name, url, spec.fifo)


async def _create(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str], *, fifo: bool
) -> str:
    wanted = dict(attributes)
    if fifo:
        wanted["FifoQueue"] = "true"
    with translated(f"queue {name}"):
        try:
            return (await sqs.create_queue(QueueName=name, Attributes=wanted))["QueueUrl"]
        except ClientError as error:
            if error_code(error) not in _EXISTS_CODES:
                raise
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=dict(attributes))
        return url


async def queue_arn(sqs: SQSClient, url: str) -> str:
    """Return the ARN of the queue at ``url``."""
    with translated(url):
        answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return answer["Attributes"]["QueueArn"]


async def create_topic(sns: SNSClient, names: Names, spec: TopicSpec) -> ResolvedTopic:
    """Create ``spec``'s topic; return it (its existing ARN if it was there)."""
    name = names.physical(spec.name, fifo=spec.fifo)
    attributes = {"MaximumMessageSize": str(TOPIC_MAX_BYTES)}
    if spec.fifo:
        attributes["FifoTopic"] = "true"
    with translated(f"topic {name}"):
        answer = await sns.create_topic(Name=name, Attributes=attributes)
    return ResolvedTopic(spec.name, answer["TopicArn"], spec.fifo)


async def subscribe(
    sqs: SQSClient,
    sns: SNSClient,
    subscription: TopicSubscription,
    topic: ResolvedTopic,
    queue: ResolvedQueue,
) -> None:
    """Subscribe ``queue`` to ``topic`` with raw delivery and let the topic send to it."""
    arn = await queue_arn(sqs, queue.url)
    await _allow(sqs, queue.url, arn, "sns.amazonaws.com", topic.arn, sid="MessageBusTopic")
    with translated(f"subscription {subscription.topic} -> {subscription.queue}"):
        await sns.subscribe(
            TopicArn=topic.arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )


async def allow_service(
    sqs: SQSClient, queue: ResolvedQueue, *, service: str, source_arn: str
) -> str:
    """Let ``service`` send to ``queue`` for ``source_arn`` only; return the queue's ARN.

    Idempotent: the statement is added once (by its ``Sid``), others are kept. A FIFO
    queue also gets ``ContentBasedDeduplication`` (see the module).
    """
    arn = await queue_arn(sqs, queue.url)
    await _allow(sqs, queue.url, arn, service, source_arn, sid="MessageBusService")
    if queue.fifo:
        with translated(queue.url):
            await sqs.set_queue_attributes(
                QueueUrl=queue.url, Attributes={"ContentBasedDeduplication": "true"}
            )
    return arn


async def _allow(
    sqs: SQSClient, url: str, arn: str, service: str, source_arn: str, *, sid: str
) -> None:
    # The SNS statements' Sid hashes the topic ARN alone, as before services were added.
    key = source_arn if service == "sns.amazonaws.com" else f"{service} {source_arn}"
    sid += hashlib.sha256(key.encode()).hexdigest()[:24]
    with translated(url):
        answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
        existing = answer.get("Attributes", {}).get("Policy")
        policy: dict[str, Any] = (
            json.loads(existing) if existing else {"Version": "2012-10-17", "Statement": []}
        )
        if any(statement.get("Sid") == sid for statement in policy["Statement"]):
            return
        policy["Statement"].append(
            {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }
        )
        await sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def visibility_seconds(seconds: float) -> int:
    """``seconds`` as SQS takes a visibility timeout: whole seconds, 0 to 12 h."""
    return min(MAX_VISIBILITY, max(0, math.ceil(seconds)))
