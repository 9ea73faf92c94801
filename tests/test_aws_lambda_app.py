"""The same application module, unchanged, behind the Lambda entry point.

tests/blog_app.py is the module tests/test_same_app.py runs with a worker. Here its bus
is behind :func:`~messagebus.aws_lambda.lambda_handler`, fed by a small poller that does
what Lambda's event source mapping does, on the memory broker: receive from the
service's queue, build the SQS event from what was received, invoke the function,
delete what it did not report failed. Each invocation is its own event loop (the
handler calls ``anyio.run``), as in Lambda; the poller calls it from a worker thread.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.to_thread
import pytest

from messagebus.aws_lambda import LambdaFunction
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.blog_app import Blog, PostPublished, PublishPost, build
from tests.lambda_events import FakeContext, lambda_handler, sqs_event, sqs_record

pytestmark = pytest.mark.anyio


async def poll(broker: MemoryBroker, queue: str, function: LambdaFunction) -> int:
    """One round of an event source mapping on ``queue``: return how many records it had."""
    async with InMemoryTransport(broker) as transport:
        deliveries = await transport.receive(queue, max_messages=10, wait=0)
        if not deliveries:
            return 0
        event = sqs_event(
            *(
                sqs_record(
                    delivery.body.decode(),
                    queue=queue,
                    message_id=delivery.message_id,
                    receive_count=delivery.receive_count,
                )
                for delivery in deliveries
            )
        )
        response: Any = await anyio.to_thread.run_sync(function, event, FakeContext())
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for delivery in deliveries:
            if delivery.message_id not in failed:
                await delivery.ack()
        return len(deliveries)


async def until_idle(broker: MemoryBroker, queue: str, function: LambdaFunction) -> None:
    """Poll until a receive comes back empty (a few rounds at most here)."""
    with anyio.fail_after(10):
        while await poll(broker, queue, function):
            pass


def deployed(anyio_backend: str) -> tuple[MemoryBroker, Blog, LambdaFunction, Any]:
    """The blog module's bus on a provisioned broker, behind the entry point."""
    # Invocations are separate event loops: the broker keeps time on the process's clock.
    broker = MemoryBroker(clock=time.monotonic)
    blog = Blog()
    bus = build(InMemoryTransport(broker), blog)
    broker.provision(bus.topology())
    return broker, blog, lambda_handler(bus, backend=anyio_backend), bus


class TestTheSameApplicationInLambda:
    """build(transport) behaves behind the entry point as it does in a worker."""

    async def test_an_enqueued_command_s_event_reaches_both_subscribers(
        self, anyio_backend: str
    ) -> None:
        """Command -> handler -> event via the topic -> both subscribers, once each."""
        broker, blog, function, bus = deployed(anyio_backend)
        async with InMemoryTransport(broker) as transport:
            body = bus.codec.encode(_envelope(PublishPost("Hello"))).decode()
            await transport.send("blog", [_outgoing(body)])
        await until_idle(broker, "blog", function)
        assert blog.posts == {1: "Hello"}
        assert blog.notified == [1]
        assert blog.indexed == ["Hello"]

    async def test_published_events_reach_both_subscribers(self, anyio_backend: str) -> None:
        """Five events in the queue: each subscriber sees all five, over the batches."""
        broker, blog, function, bus = deployed(anyio_backend)
        async with InMemoryTransport(broker) as transport:
            await transport.publish(
                "blogapp-post-published",
                [
                    _outgoing(bus.codec.encode(_envelope(PostPublished(n, f"p{n}"))).decode())
                    for n in range(1, 6)
                ],
            )
        await until_idle(broker, "blog", function)
        assert sorted(blog.notified) == [1, 2, 3, 4, 5]
        assert sorted(blog.indexed) == [f"p{n}" for n in range(1, 6)]


def _envelope(message: Any) -> Any:
    from messagebus import Envelope

    return Envelope(message)


def _outgoing(body: str) -> Any:
    from messagebus.transports import Outgoing

    return Outgoing(body=body.encode(), message_id=f"out-{time.monotonic_ns()}")
