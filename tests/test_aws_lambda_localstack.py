"""The blog application behind the Lambda entry point, fed from real queues (LocalStack).

tests/lambda_poller.py does what Lambda's event source mapping does: ReceiveMessage,
the Lambda SQS event built from the real output, the function invoked, DeleteMessage
for what it did not report failed. The function's bus is tests/blog_app.py's on an
SQSTransport, the same module tests/test_same_app.py runs in a worker: its commands
and events travel through real SQS queues and SNS topics between invocations.

asyncio only (aiobotocore): on trio these tests are skipped, and the SQS transport's
refusal of trio is tested apart (tests/test_transport_sqs.py).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs
import pytest

from messagebus import MessageBus
from tests.blog_app import Blog, PostPublished, PublishPost, build
from tests.lambda_events import FakeContext, lambda_handler
from tests.lambda_poller import EventSourceMapping
from tests.test_transport_sqs import REGION, sqs_transport

pytestmark = pytest.mark.anyio

PATIENCE = 30.0
"""SNS delivers to SQS asynchronously, and LocalStack's visibility runs on a 1 s tick."""


@attrs.define
class Deployment:
    """The blog function on its queue, a producer bus beside it, and the raw client."""

    blog: Blog
    mapping: EventSourceMapping
    producer: MessageBus
    sqs: Any

    async def until(self, done: Callable[[Blog], bool]) -> None:
        """Run the mapping until ``done(blog)`` holds (TimeoutError after PATIENCE)."""
        with anyio.fail_after(PATIENCE):
            while not done(self.blog):
                await self.mapping.poll()

    async def depth(self) -> int:
        attributes = await self.sqs.get_queue_attributes(
            QueueUrl=self.mapping.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        return sum(int(value) for value in attributes["Attributes"].values())


@pytest.fixture
async def deployed(anyio_backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    if anyio_backend != "asyncio":
        pytest.skip("SQSTransport runs on asyncio only (its refusal of trio is tested apart)")
    from aiobotocore.session import get_session

    endpoint = str(request.getfixturevalue("localstack_endpoint"))
    prefix = f"lam{secrets.token_hex(4)}-"

    def transport() -> Any:
        return sqs_transport(endpoint, prefix=prefix)

    blog = Blog()
    function = lambda_handler(build(transport(), blog))
    async with (
        build(transport(), Blog()) as producer,
        get_session().create_client(
            "sqs",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ) as sqs,
    ):
        await producer.provision()
        queue_url = (await sqs.get_queue_url(QueueName=f"{prefix}blog"))["QueueUrl"]
        mapping = EventSourceMapping(sqs, queue_url, function, REGION)
        yield Deployment(blog, mapping, producer, sqs)


def both_saw(count: int) -> Callable[[Blog], bool]:
    return lambda blog: len(blog.notified) == len(blog.indexed) == count


class TestTheSameApplicationThroughAnEventSourceMapping:
    """The blog module's own scenarios, each message through the entry point."""

    async def test_an_enqueued_command_s_event_reaches_both_subscribers(
        self, deployed: Deployment
    ) -> None:
        """Queue -> function (handler) -> SNS topic -> queue -> function (both subscribers)."""
        await deployed.producer.enqueue(PublishPost("Hello"))
        await deployed.until(both_saw(1))
        assert deployed.blog.posts == {1: "Hello"}
        assert deployed.blog.notified == [1]
        assert deployed.blog.indexed == ["Hello"]
        assert await deployed.depth() == 0

    async def test_published_events_reach_both_subscribers(self, deployed: Deployment) -> None:
        """Five events through the topic: each subscriber sees all five, once each."""
        for post_id in range(1, 6):
            await deployed.producer.publish(PostPublished(post_id, f"p{post_id}"))
        await deployed.until(both_saw(5))
        assert sorted(deployed.blog.notified) == [1, 2, 3, 4, 5]
        assert sorted(deployed.blog.indexed) == [f"p{n}" for n in range(1, 6)]
        assert await deployed.depth() == 0

    async def test_the_event_is_built_from_the_real_receive_output(
        self, deployed: Deployment
    ) -> None:
        """The record carries SQS's real ids, attributes and ARN, and the function reads it."""
        await deployed.producer.enqueue(PublishPost("Real"))
        with anyio.fail_after(PATIENCE):
            while (first := await deployed.mapping.poll()) is None:
                pass
        (record,) = first.event["Records"]
        queue_name = deployed.mapping.queue_url.rsplit("/", 1)[1]
        assert record["eventSourceARN"] == f"arn:aws:sqs:{REGION}:000000000000:{queue_name}"
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert first.response == {"batchItemFailures": []}
        assert first.deleted == [record["messageId"]]

    async def test_reported_failures_come_back_and_are_handled_then(
        self, deployed: Deployment
    ) -> None:
        """No time left: every record is reported failed and stays; the next receive has it."""
        await deployed.sqs.set_queue_attributes(
            QueueUrl=deployed.mapping.queue_url, Attributes={"VisibilityTimeout": "1"}
        )
        await deployed.producer.enqueue(PublishPost("Late"))
        deployed.mapping.context = lambda: FakeContext(timeout_ms=1_000)  # under the margin
        with anyio.fail_after(PATIENCE):
            while (failed := await deployed.mapping.poll()) is None:
                pass
        (record,) = failed.event["Records"]
        assert failed.response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        assert failed.deleted == []
        assert deployed.blog.posts == {}
        deployed.mapping.context = FakeContext
        await deployed.until(lambda blog: blog.posts == {1: "Late"})
        again = deployed.mapping.rounds[1].event["Records"][0]
        assert again["messageId"] == record["messageId"]
        assert again["attributes"]["ApproximateReceiveCount"] == "2"
        await deployed.until(both_saw(1))
