"""The bus on a transport: publish, follow-ups and enqueue go through it; a worker runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest

from messagebus import (
    BusStateError,
    Context,
    DecodeError,
    Envelope,
    Event,
    MessageBus,
    NoHandlerError,
    Worker,
)
from messagebus.dead_letters import DeadLetter
from messagebus.transports import Outgoing, QueueSpec, TopicSubscription
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.messages import IndexPost, PostId, PostIndexed, PostPublished, PublishPost

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def working(bus: MessageBus, **options: object) -> AsyncIterator[Worker]:
    """Run ``bus`` (entered by the caller) with a worker; stop it on the way out."""
    worker = Worker(bus, **options)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tasks:
        await tasks.start(worker.run)
        yield worker
        worker.stop()


async def quiet() -> None:
    """Return once every task waits on something: the worker has done all it can."""
    await anyio.wait_all_tasks_blocked()


def blog(broker: MemoryBroker, **options: object) -> MessageBus:
    return MessageBus(transport=InMemoryTransport(broker), service="blog", **options)  # type: ignore[arg-type]


class TestTopology:
    """A service's queue, topics and subscriptions follow from what it handles."""

    def test_queue_topics_and_subscriptions(self) -> None:
        """Its queue; a topic per subscribed or declared event; subscriptions for the first."""
        bus = blog(MemoryBroker(), queue=QueueSpec("blog", visibility_timeout=5.0))

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished) -> None: ...

        bus.declare(PostIndexed)
        topology = bus.topology()
        assert topology.queues == (QueueSpec("blog", visibility_timeout=5.0),)
        assert [topic.name for topic in topology.topics] == [
            "blog-post-published",
            "search-post-indexed",
        ]
        assert topology.subscriptions == (TopicSubscription("blog-post-published", "blog"),)

    def test_queue_must_be_named_after_the_service(self) -> None:
        """The input queue's name is the service's: anything else is refused."""
        with pytest.raises(ValueError, match="named after the service"):
            blog(MemoryBroker(), queue=QueueSpec("other"))

    def test_service_name_must_name_a_queue(self) -> None:
        """A service name that cannot name a queue is refused at construction."""
        with pytest.raises(ValueError, match="service must be"):
            MessageBus(service="blog service")

    def test_routes_take_command_types(self) -> None:
        """Routes map Command types; an event type there is refused."""
        with pytest.raises(TypeError, match="routes map Command types"):
            MessageBus(routes={PostPublished: "blog"})  # type: ignore[dict-item]


class TestPublishOnATransport:
    """publish() hands the event to its topic; subscribers run where the worker runs."""

    async def test_publish_goes_through_the_queue(self) -> None:
        """Nothing runs at publish; the worker delivers it to the subscriber."""
        seen: list[PostPublished] = []
        bus = blog(MemoryBroker())

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished) -> None:
            seen.append(event)

        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "Hello"), headers={"tenant": "a"})
            assert seen == []
            depth = await bus.transport.depth("blog")  # type: ignore[union-attr]
            assert depth.visible == 1
            async with working(bus) as worker:
                await quiet()
                assert seen == [PostPublished(1, "Hello")]
                assert worker.acked == 1
            assert (await bus.transport.depth("blog")).visible == 0  # type: ignore[union-attr]

    async def test_publish_needs_a_running_bus(self) -> None:
        """Before 'async with bus' a bus on a transport refuses to publish."""
        bus = blog(MemoryBroker())
        bus.declare(PostPublished)
        with pytest.raises(BusStateError, match="async with bus"):
            await bus.publish(PostPublished(1, "x"))

    async def test_provision_needs_a_transport(self) -> None:
        """provision() on an in-process bus says there is no transport."""
        async with MessageBus() as bus:
            with pytest.raises(BusStateError, match="no transport"):
                await bus.provision()

    async def test_metadata_survives_the_trip(self) -> None:
        """The subscriber sees the ids, headers and keys the publisher's envelope had."""
        seen: list[Context[PostPublished]] = []
        bus = blog(MemoryBroker())

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
            seen.append(ctx)

        async with bus:
            await bus.provision()
            await bus.publish(
                PostPublished(1, "x"),
                headers={"tenant": "a"},
                idempotency_key="k1",
                group_key="post-1",
                correlation_id="conversation-7",
            )
            async with working(bus):
                await quiet()
        (ctx,) = seen
        assert dict(ctx.envelope.headers) == {"tenant": "a"}
        assert ctx.envelope.idempotency_key == "k1"
        assert ctx.envelope.group_key == "post-1"
        assert ctx.envelope.correlation_id == "conversation-7"
        assert ctx.envelope.attempt == 1


class TestCommandsOnATransport:
    """send() runs here and answers; follow-ups and enqueue() go through the queue."""

    async def test_send_runs_here_and_follow_ups_travel(self) -> None:
        """The handler answers the sender; its event reaches the subscriber via the queue."""
        order: list[str] = []
        bus = blog(MemoryBroker())

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(7, command.title))
            order.append("handler")
            return PostId(7)

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
            order.append(f"notified {event.post_id} caused by {ctx.envelope.causation_id}")

        async with bus:
            await bus.provision()
            assert await bus.send(PublishPost("Hi")) == PostId(7)
            assert order == ["handler"]
            async with working(bus):
                await quiet()
        assert len(order) == 2
        assert order[1].startswith("notified 7 caused by ")

    async def test_enqueue_runs_the_handler_in_the_worker(self) -> None:
        """enqueue() returns at once; the worker runs the handler later."""
        indexed: list[int] = []
        bus = blog(MemoryBroker())

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            indexed.append(command.post_id)

        async with bus:
            await bus.provision()
            await bus.enqueue(IndexPost(3))
            assert indexed == []
            async with working(bus):
                await quiet()
        assert indexed == [3]

    async def test_enqueue_without_a_transport_runs_now(self) -> None:
        """In-process, enqueue() runs the handler before returning; failures are dead letters."""
        bus = MessageBus()

        @bus.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            raise RuntimeError("index down")

        await bus.enqueue(IndexPost(3))
        (letter,) = await bus.dead_letters.list()
        assert letter.error_message == "index down"

    async def test_commands_route_to_their_owner(self) -> None:
        """A follow-up command handled by another service lands in that service's queue."""
        broker = MemoryBroker()
        indexed: list[int] = []
        search = MessageBus(transport=InMemoryTransport(broker), service="search")

        @search.handler(IndexPost)
        async def index(command: IndexPost) -> None:
            indexed.append(command.post_id)

        bus = blog(broker, routes={IndexPost: "search"})

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.send(IndexPost(9))
            return PostId(9)

        async with search, bus:
            await search.provision()
            await bus.provision()
            await bus.send(PublishPost("x"))
            async with working(search):
                await quiet()
        assert indexed == [9]

    async def test_unrouted_command_is_refused_at_once(self) -> None:
        """ctx.send of a command with no handler and no route fails the sending handler."""
        bus = blog(MemoryBroker())

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.send(IndexPost(1))
            return PostId(1)

        async with bus:
            await bus.provision()
            with pytest.raises(NoHandlerError, match="route it to its owner's queue"):
                await bus.send(PublishPost("x"))

    async def test_misrouted_command_is_a_dead_letter(self) -> None:
        """A command that arrives where no handler is registered is kept, not lost."""
        broker = MemoryBroker()
        sender = MessageBus(transport=InMemoryTransport(broker), routes={IndexPost: "blog"})
        bus = blog(broker)
        bus.declare(IndexPost)
        async with sender, bus:
            await bus.provision()
            await sender.enqueue(IndexPost(5))
            async with working(bus) as worker:
                await quiet()
                assert worker.acked == 1
        (letter,) = await bus.dead_letters.list()
        assert letter.handler == "<no handler>"
        assert "misrouted" in letter.error_message


@attrs.frozen
class Unknown(Event, name="blog.unknown.happened"):
    value: int


class TestPoisonMessages:
    """A body that does not decode is a dead letter with the reason; the worker goes on."""

    async def test_undecodable_bodies_are_dead_letters(self) -> None:
        """Bad JSON and an unknown type are recorded; the next message is still handled."""
        broker = MemoryBroker()
        seen: list[int] = []
        bus = blog(broker)

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished) -> None:
            seen.append(event.post_id)

        producer = MessageBus(transport=InMemoryTransport(broker), service="producer")
        producer.declare(Unknown)
        async with bus, producer:
            await bus.provision()
            await producer.transport.provision(  # type: ignore[union-attr]
                attrs.evolve(
                    producer.topology(),
                    subscriptions=(TopicSubscription("blog-unknown-happened", "blog"),),
                )
            )
            await bus.transport.send("blog", [Outgoing(b"{not json", "m-1")])  # type: ignore[union-attr]
            await producer.publish(Unknown(1))
            await bus.publish(PostPublished(2, "fine"))
            async with working(bus) as worker:
                await quiet()
                assert worker.acked == 3
        assert seen == [2]
        letters = sorted(await bus.dead_letters.list(), key=lambda letter: letter.message_type)
        assert [(letter.handler, letter.message_type) for letter in letters] == [
            ("<decode:blog>", "?"),
            ("<decode:blog>", "blog.unknown.happened"),
        ]
        assert "not JSON" in letters[0].error_message
        assert "unknown message type" in letters[1].error_message

    async def test_replay_once_the_type_is_known(self) -> None:
        """A poison message whose type is registered later replays to its subscriber."""
        seen: list[int] = []
        bus = MessageBus()
        producer = MessageBus()
        producer.declare(Unknown)
        body = producer.codec.encode(Envelope(Unknown(4)))
        letter = DeadLetter.from_undecodable(body, "blog", DecodeError("unknown message type"))
        await bus.dead_letters.add(letter)
        with pytest.raises(DecodeError):
            await bus.replay(letter.id)

        @bus.subscriber(Unknown)
        async def react(event: Unknown) -> None:
            seen.append(event.value)

        await bus.replay(letter.id)
        assert seen == [4]
        assert list(await bus.dead_letters.list()) == []


class TestSameApplicationModule:
    """One application, unchanged, runs in-process or on a transport by configuration."""

    @pytest.mark.parametrize("on_transport", [False, True])
    async def test_story_runs_either_way(self, on_transport: bool) -> None:
        """The same handlers produce the same outcome on both."""
        outcome: list[str] = []

        def build(bus: MessageBus) -> MessageBus:
            @bus.handler(PublishPost)
            async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
                ctx.publish(PostPublished(1, command.title))
                return PostId(1)

            @bus.subscriber(PostPublished)
            async def notify(event: PostPublished) -> None:
                outcome.append(f"notified {event.title}")

            return bus

        bus = build(blog(MemoryBroker()) if on_transport else MessageBus(service="blog"))
        async with bus:
            if on_transport:
                await bus.provision()
                async with working(bus):
                    assert await bus.send(PublishPost("Hi")) == PostId(1)
                    await quiet()
            else:
                assert await bus.send(PublishPost("Hi")) == PostId(1)
        assert outcome == ["notified Hi"]
