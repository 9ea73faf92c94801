"""What Lambda's SQS event source mapping does, against a real queue (LocalStack).

:class:`EventSourceMapping` receives a batch with ReceiveMessage (all system and message
attributes), turns the real output into the Lambda SQS event the way the mapping does
(``MessageId`` -> ``messageId``, ``Attributes`` -> ``attributes``, each message attribute
``{"StringValue", "DataType"}`` -> ``{"stringValue", "stringListValues",
"binaryListValues", "dataType"}``, the queue's ARN as ``eventSourceARN``), invokes the
function with a context, and deletes the messages the function did not report in
``batchItemFailures`` (ReportBatchItemFailures on). Reported ones are left alone: they
come back after the queue's visibility timeout, as on AWS.

The function is synchronous (Lambda calls it so); it is called from a worker thread
so that the poller's event loop (aiobotocore: asyncio) keeps running.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import attrs

from messagebus.aws_lambda import LambdaContext, LambdaFunction
from tests.lambda_events import FakeContext


@attrs.define
class Round:
    """One invocation: the event built, the response, what was deleted."""

    event: dict[str, Any]
    response: Any
    deleted: list[str]


@attrs.define
class EventSourceMapping:
    """An SQS event source mapping of ``function`` on ``queue_url`` (see the module)."""

    sqs: Any
    queue_url: str
    function: LambdaFunction
    region: str
    batch_size: int = 10
    wait: int = 1
    context: Callable[[], LambdaContext] = FakeContext
    rounds: list[Round] = attrs.field(factory=list)
    _arn: str | None = None

    async def poll(self) -> Round | None:
        """Receive one batch and invoke the function; None when the queue gave nothing."""
        received = await self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return None
        arn = await self._queue_arn()
        event = {"Records": [self._record(message, arn) for message in messages]}
        response = await anyio.to_thread.run_sync(self.function, event, self.context())
        assert response is not None  # an SQS batch is always answered
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        done = [message for message in messages if message["MessageId"] not in failed]
        if done:
            result = await self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(done)
                ],
            )
            assert not result.get("Failed"), result["Failed"]
        this = Round(event, response, [message["MessageId"] for message in done])
        self.rounds.append(this)
        return this

    async def _queue_arn(self) -> str:
        if self._arn is None:
            attributes = await self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )
            self._arn = str(attributes["Attributes"]["QueueArn"])
        return self._arn

    def _record(self, message: dict[str, Any], arn: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as the mapping writes it (lower camel case, binary as base64)."""
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return attribute
