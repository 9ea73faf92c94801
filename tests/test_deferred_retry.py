"""Long retry delays wait in the queue, not in a worker slot, for the failed handler only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from messagebus import Context, Envelope, MessageBus, Worker
from messagebus.idempotency import Claimed, InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware, RetryMiddleware
from messagebus.retry import FixedBackoff, RetryPolicy
from messagebus.transports import Outgoing, QueueSpec
from messagebus.transports.memory import InMemoryTransport
from tests.messages import FollowersNotified, IndexPost, PostPublished

pytestmark = pytest.mark.anyio

SLOW = RetryPolicy(max_attempts=3, backoff=FixedBackoff(1.5), jitter="none")


@asynccontextmanager
async def working(bus: MessageBus) -> AsyncIterator[Worker]:
    worker = Worker(bus, wait=1.0)
    async with anyio.create_task_group() as tasks:
        await tasks.start(worker.run)
        yield worker
        worker.stop()


def blog(transport: InMemoryTransport, policy: RetryPolicy = SLOW, **options: object) -> MessageBus:
    return MessageBus(
        transport=transport,
        service="blog",
        middleware=[RetryMiddleware(events=policy, commands=policy, **options)],  # type: ignore[arg-type]
    )


class TestDeferredRetries:
    """A delay over max_inline_delay becomes a delayed copy of the message in the queue."""

    async def test_only_the_failed_subscriber_runs_again(self) -> None:
        """B succeeded at once; A failed, is redelivered alone, and succeeds on attempt 2."""
        transport = InMemoryTransport()
        bus = blog(transport)
        runs: list[tuple[str, int]] = []
        done = anyio.Event()

        @bus.subscriber(PostPublished, name="a")
        async def a(event: PostPublished, ctx: Context[PostPublished]) -> None:
            runs.append(("a", ctx.envelope.attempt))
            if ctx.envelope.attempt == 1:
                raise ConnectionError("mail server down")
            done.set()

        @bus.subscriber(PostPublished, name="b")
        async def b(event: PostPublished, ctx: Context[PostPublished]) -> None:
            runs.append(("b", ctx.envelope.attempt))

        async with bus:
            await bus.provision()
            async with working(bus) as worker:
                await bus.publish(PostPublished(1, "x"))
                with anyio.fail_after(10):
                    await done.wait()
                await anyio.wait_all_tasks_blocked()
                assert worker.acked == 2
        assert runs == [("a", 1), ("b", 1), ("a", 2)]
        assert list(await bus.dead_letters.list()) == []

    async def test_attempts_count_across_redeliveries(self) -> None:
        """Two attempts allowed: the redelivered second failure is a dead letter of 2."""
        transport = InMemoryTransport()
        bus = blog(transport, RetryPolicy(max_attempts=2, backoff=FixedBackoff(1.5), jitter="none"))
        failed = anyio.Event()
        attempts: list[int] = []

        @bus.handler(IndexPost, idempotent=True)
        async def index(command: IndexPost, ctx: Context[IndexPost]) -> None:
            attempts.append(ctx.envelope.attempt)
            if len(attempts) == 2:
                failed.set()
            raise ConnectionError("index down")

        async with bus:
            await bus.provision()
            async with working(bus):
                await bus.enqueue(IndexPost(1))
                with anyio.fail_after(10):
                    await failed.wait()
                await anyio.wait_all_tasks_blocked()
        assert attempts == [1, 2]
        (letter,) = await bus.dead_letters.list()
        assert letter.attempts == 2
        assert letter.error_message == "index down"

    async def test_a_fifo_queue_retries_in_process(self) -> None:
        """A FIFO queue takes no per-message delay: the worker slot waits instead."""
        transport = InMemoryTransport()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        bus = MessageBus(
            transport=transport,
            service="blog",
            queue=QueueSpec("blog", fifo=True),
            middleware=[RetryMiddleware(events=SLOW, sleep=sleep)],
        )
        runs: list[int] = []
        done = anyio.Event()

        @bus.subscriber(PostPublished)
        async def flaky(event: PostPublished, ctx: Context[PostPublished]) -> None:
            runs.append(ctx.envelope.attempt)
            if ctx.envelope.attempt == 1:
                raise ConnectionError("down")
            done.set()

        async with bus:
            await bus.provision()
            async with working(bus):
                await bus.publish(PostPublished(1, "x"), group_key="post-1")
                with anyio.fail_after(10):
                    await done.wait()
        assert runs == [1, 2]
        assert waits == [1.5]

    async def test_a_discarded_run_announces_nothing(self) -> None:
        """Follow-ups held by a run that ends in Discard are dropped, not published."""
        bus = MessageBus(
            middleware=[RetryMiddleware(events=RetryPolicy(discard_on=(LookupError,)))]
        )
        notified: list[int] = []
        bus.subscriber(FollowersNotified, lambda event: notified.append(event.post_id))

        @bus.subscriber(PostPublished)
        async def stale(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.publish(FollowersNotified(event.post_id))
            raise LookupError("post deleted meanwhile")

        await bus.publish(PostPublished(1, "x"))
        assert notified == []
        assert list(await bus.dead_letters.list()) == []


class TestInProgressDuplicates:
    """A run that meets its idempotency key in progress elsewhere waits in the queue."""

    async def test_it_goes_back_to_the_queue_and_is_no_dead_letter(self) -> None:
        """Another delivery holds the key: a delayed copy for this subscriber, no letter."""
        transport = InMemoryTransport()
        store = InMemoryIdempotencyStore()
        idempotency = IdempotencyMiddleware(store, wait=0)
        bus = MessageBus(transport=transport, service="blog", middleware=[idempotency])
        seen: list[PostPublished] = []

        @bus.subscriber(PostPublished, name="index")
        async def index(event: PostPublished) -> None:
            seen.append(event)

        envelope = Envelope(PostPublished(1, "x"))
        digest = idempotency.fingerprint_of(envelope)
        assert isinstance(await store.claim("index", envelope.message_id, digest, 300.0), Claimed)
        async with bus:
            await bus.provision()
            async with working(bus) as worker:
                body = bus.codec.encode(envelope)
                await transport.send("blog", [Outgoing(body, envelope.message_id)])
                with anyio.fail_after(10):
                    while worker.acked < 1:
                        await anyio.wait_all_tasks_blocked()
                depth = await transport.depth("blog")
        assert seen == []
        assert list(await bus.dead_letters.list()) == []
        # The original was acked; its copy, for "index" only, waits out its delay.
        assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 1)
