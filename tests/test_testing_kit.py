"""The application test kit: recording follow-ups, replacing handlers, running until idle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from messagebus import Context, Envelope, InvalidArgumentError, MessageBus, NoHandlerError
from messagebus.demo import Blog, build_bus
from messagebus.demo import PublishPost as DemoPublishPost
from messagebus.extension import CallNext
from messagebus.middleware import UnitOfWorkMiddleware
from messagebus.outbox import SQLiteOutbox
from messagebus.testing import (
    BusRecorder,
    record_outgoing,
    replace_handler,
    replace_subscriber,
    run_until_idle,
)
from messagebus.transports.memory import InMemoryTransport
from tests.messages import IndexPost, PostId, PostIndexed, PostPublished, PublishPost

pytestmark = pytest.mark.anyio


def blog_bus(**options: Any) -> tuple[MessageBus, list[Envelope[Any]]]:
    """PublishPost -> PostPublished + IndexPost; IndexPost -> PostIndexed.

    Returns the bus and the envelopes the PublishPost handler was given.
    """
    bus = MessageBus(**options)
    handled: list[Envelope[Any]] = []

    @bus.handler(PublishPost, name="publish-post")
    async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
        handled.append(ctx.envelope)
        ctx.publish(PostPublished(1, command.title))
        ctx.send(IndexPost(1))
        return PostId(1)

    @bus.handler(IndexPost, name="index-post")
    async def index(command: IndexPost, ctx: Context[IndexPost]) -> None:
        ctx.publish(PostIndexed(command.post_id))

    return bus, handled


class TestBusRecorder:
    """What leaves each handler, with its envelope, and assertions that read well."""

    async def test_records_follow_ups_with_their_envelopes(self) -> None:
        """Events published and commands sent are recorded with correlation and causation."""
        bus, handled = blog_bus()
        with BusRecorder(bus) as recorder:
            await bus.send(PublishPost("hello"), correlation_id="request-1")
        command = handled[0]
        event = recorder.assert_published(PostPublished, post_id=1, title="hello")
        assert (event.correlation_id, event.causation_id) == ("request-1", command.message_id)
        sent = recorder.assert_sent(IndexPost, post_id=1)
        assert sent.causation_id == command.message_id
        # The follow-up's own follow-up, caused by the IndexPost.
        indexed = recorder.assert_published(PostIndexed)
        assert indexed.causation_id == sent.message_id
        assert [(r.kind, r.handler) for r in recorder.records] == [
            ("published", "publish-post"),
            ("sent", "publish-post"),
            ("published", "index-post"),
        ]
        assert recorder.published == [event, indexed]
        assert recorder.sent == [sent]

    async def test_a_failing_assertion_lists_what_was_recorded(self) -> None:
        """The message names what was expected and lists every record, one a line."""
        bus, _ = blog_bus()
        with BusRecorder(bus) as recorder:
            await bus.send(PublishPost("hello"), correlation_id="request-1")
        with pytest.raises(AssertionError) as caught:
            recorder.assert_published(PostPublished, post_id=2)
        published, sent, indexed = recorder.records
        assert str(caught.value) == (
            "expected PostPublished(post_id=2) to be published; 3 messages recorded:\n"
            "  published PostPublished(post_id=1, title='hello') by publish-post "
            f"(correlation request-1, causation {published.envelope.causation_id})\n"
            "  sent IndexPost(post_id=1) by publish-post "
            f"(correlation request-1, causation {sent.envelope.causation_id})\n"
            "  published PostIndexed(post_id=1) by index-post "
            f"(correlation request-1, causation {indexed.envelope.causation_id})"
        )

    async def test_assert_nothing_published(self) -> None:
        """It passes on an empty record and fails listing the events there are."""
        bus, _ = blog_bus()
        with BusRecorder(bus) as recorder:
            recorder.assert_nothing_published()
            recorder.assert_nothing_sent()
            with pytest.raises(AssertionError) as caught:
                recorder.assert_sent(IndexPost, post_id=1)
            assert str(caught.value) == (
                "expected IndexPost(post_id=1) to be sent; nothing was recorded"
            )
            await bus.send(PublishPost("hello"))
        with pytest.raises(AssertionError, match=r"^expected nothing published; 3 messages"):
            recorder.assert_nothing_published()
        recorder.clear()
        recorder.assert_nothing_published()

    async def test_a_module_level_bus_serves_test_after_test(self) -> None:
        """Recorders come and go; one recording layer stays, recording nothing between them."""
        bus, _ = blog_bus()
        with BusRecorder(bus) as first:
            await bus.send(PublishPost("one"))
        await bus.send(PublishPost("between"))
        with BusRecorder(bus) as second:
            await bus.send(PublishPost("two"))
        first.assert_published(PostPublished, title="one")
        with pytest.raises(AssertionError):
            first.assert_published(PostPublished, title="two")
        second.assert_published(PostPublished, title="two")
        with pytest.raises(AssertionError):
            second.assert_published(PostPublished, title="between")

    async def test_the_middleware_misses_what_a_unit_of_work_took(self, tmp_path: Path) -> None:
        """A per-handler unit of work takes the follow-ups first; record_outgoing sees them.

        It sees them while the handler runs, so it names the handler too.
        """
        for hooks, expected in (((), []), ((record_outgoing,), [("published", "publish")])):
            bus = MessageBus(outbox=SQLiteOutbox(tmp_path / f"{len(hooks)}.db"), outgoing=hooks)

            @bus.handler(PublishPost, name="publish", middleware=[UnitOfWorkMiddleware(bus)])
            async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
                ctx.publish(PostPublished(7, command.title))
                return PostId(7)

            async with bus:
                with BusRecorder(bus) as recorder:
                    await bus.send(PublishPost("kept"))
            assert [(r.kind, r.handler) for r in recorder.records] == expected

    async def test_record_outgoing_sees_a_direct_publish_once(self) -> None:
        """On a transport, bus.publish inside a handler is seen, by it; a follow-up only once."""
        bus = MessageBus(transport=InMemoryTransport(), outgoing=[record_outgoing])
        bus.declare(PostIndexed, PostPublished)

        @bus.handler(PublishPost, name="publish-post")
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            await bus.publish(PostIndexed(3))
            ctx.publish(PostPublished(3, command.title))
            return PostId(3)

        async with bus:
            await bus.provision()
            with BusRecorder(bus) as recorder:
                await bus.send(PublishPost("direct"))
        assert [(r.message, r.handler) for r in recorder.records] == [
            (PostIndexed(3), "publish-post"),
            (PostPublished(3, "direct"), "publish-post"),
        ]

    async def test_record_outgoing_sees_an_enqueued_command_as_sent(self) -> None:
        """bus.enqueue from outside any handler: sent, by no handler, and asserted so."""
        bus = MessageBus(transport=InMemoryTransport(), service="blog", outgoing=[record_outgoing])
        bus.handler(PublishPost, lambda command: PostId(1))
        async with bus:
            await bus.provision()
            with BusRecorder(bus) as recorder:
                await bus.enqueue(PublishPost("later"))
        envelope = recorder.assert_sent(PublishPost, title="later")
        assert [(r.kind, r.handler) for r in recorder.records] == [("sent", None)]
        assert recorder.sent == [envelope]
        recorder.assert_nothing_published()
        with pytest.raises(AssertionError, match="1 message recorded"):
            recorder.assert_nothing_sent()


class TestReplace:
    """A handler or subscriber swapped for one block, then put back."""

    async def test_replace_handler_keeps_name_and_middleware(self) -> None:
        """The replacement runs inside the same chain; the original is back afterwards."""
        seen: list[str] = []

        async def note(envelope: Envelope[Any], call_next: CallNext) -> Any:
            seen.append(type(envelope.message).__name__)
            return await call_next(envelope)

        bus, _ = blog_bus(middleware=[note])

        async def fake(command: PublishPost) -> PostId:
            return PostId(99)

        with BusRecorder(bus) as recorder:
            with replace_handler(bus, PublishPost, fake):
                assert await bus.send(PublishPost("x")) == PostId(99)
            recorder.assert_nothing_published()
            assert await bus.send(PublishPost("x")) == PostId(1)
        assert seen == ["PublishPost", "PublishPost", "IndexPost"]

    async def test_restored_when_the_block_raises(self) -> None:
        """An exception in the block still puts the original back."""
        bus, _ = blog_bus()

        async def fake(command: PublishPost) -> PostId:
            return PostId(99)

        with pytest.raises(KeyError), replace_handler(bus, PublishPost, fake):
            raise KeyError("boom")
        assert await bus.send(PublishPost("x")) == PostId(1)

    async def test_replace_subscriber_by_name(self) -> None:
        """Only the named subscriber is swapped; the others run in their order."""
        bus = MessageBus()
        calls: list[str] = []

        @bus.subscriber(PostPublished, name="first")
        async def first(event: PostPublished) -> None:
            calls.append("first")

        @bus.subscriber(PostPublished, name="second")
        async def second(event: PostPublished) -> None:
            calls.append("second")

        async def fake(event: PostPublished) -> None:
            calls.append("fake")

        with replace_subscriber(bus, PostPublished, "first", fake):
            await bus.publish(PostPublished(1, "t"))
        await bus.publish(PostPublished(1, "t"))
        assert calls == ["fake", "second", "first", "second"]

    async def test_nothing_to_replace(self) -> None:
        """Replacing what is not registered says so, naming what is."""
        bus, _ = blog_bus()

        async def fake(event: PostPublished) -> None:
            pass

        with (
            pytest.raises(NoHandlerError, match="no handler or subscriber named 'x'"),
            replace_subscriber(bus, PostPublished, "x", fake),
        ):
            pass  # pragma: no cover
        with (
            pytest.raises(NoHandlerError, match="PostPublished"),
            replace_handler(bus, PostPublished, fake),  # type: ignore[arg-type]
        ):
            pass  # pragma: no cover


class TestRunUntilIdle:
    """The worker, the relay and the queue driven until nothing is left, with no sleep."""

    async def test_runs_every_follow_up_through_the_queue(self) -> None:
        """A publish, its subscriber's command, and that command's handler: all handled."""
        bus = MessageBus(transport=InMemoryTransport())
        indexed: list[int] = []

        @bus.subscriber(PostPublished)
        async def ask_to_index(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.send(IndexPost(event.post_id))

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            indexed.append(command.post_id)

        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(5, "queued"))
            idle = await run_until_idle(bus)
        assert indexed == [5]
        assert (idle.handled, idle.returned, idle.delayed) == (2, 0, 0)

    async def test_the_demo_blog_through_its_outbox(self, tmp_path: Path) -> None:
        """The demo's PublishPost: its outbox row relayed, both subscribers run."""
        blog = Blog(followers={"ada": ["grace"]})
        outbox = SQLiteOutbox(tmp_path / "blog.db")
        bus = build_bus(blog, outbox=outbox, transport=InMemoryTransport())
        async with bus:
            await bus.provision()
            async with bus.unit_of_work() as uow:
                await uow.execute(
                    "CREATE TABLE posts (id INTEGER PRIMARY KEY, author TEXT, title TEXT)"
                )
            post_id = await bus.send(DemoPublishPost("ada", "Hello queues"))
            await run_until_idle(bus)
            status = await outbox.status()
        assert blog.inboxes == {"grace": ["ada: Hello queues"]}
        assert blog.search_index == {"hello": post_id, "queues": post_id}
        assert (status.pending, status.in_flight, status.sent) == (0, 0, 1)

    async def test_the_memory_transport_only(self) -> None:
        """Another transport is refused: only the memory broker can be watched to idle."""

        class Elsewhere:
            """Not a memory transport (the bus enters nothing it cannot)."""

        bus = MessageBus(transport=Elsewhere())  # type: ignore[arg-type]
        async with bus:
            with pytest.raises(InvalidArgumentError, match="memory transport only, not"):
                await run_until_idle(bus)

    async def test_stuck_says_what_is_left(self) -> None:
        """A handler that never returns: an assertion naming the message in flight."""
        bus = MessageBus(transport=InMemoryTransport())
        never = anyio.Event()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            await never.wait()

        async with bus:
            await bus.provision()
            await bus.enqueue(IndexPost(1))
            with pytest.raises(
                AssertionError, match=r"^not idle after 5 rounds: .* the worker handles 1,"
            ):
                await run_until_idle(bus, max_rounds=5)
