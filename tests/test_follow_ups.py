from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from messagebus import (
    CommandRejected,
    Context,
    Envelope,
    MessageBus,
    MessageKindError,
    NoHandlerError,
    current_envelope,
)
from tests.messages import (
    ChargeCard,
    FollowersNotified,
    IndexPost,
    PostId,
    PostIndexed,
    PostPublished,
    PublishPost,
    Receipt,
)

pytestmark = pytest.mark.anyio


def blog(bus: MessageBus, log: list[str]) -> None:
    """PublishPost -> PostPublished -> (FollowersNotified, IndexPost -> PostIndexed)."""

    @bus.handler(PublishPost)
    async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
        log.append("publish")
        ctx.publish(PostPublished(1, command.title))
        log.append("publish returns")
        return PostId(1)

    @bus.subscriber(PostPublished, name="notify")
    async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
        log.append("notify")
        ctx.publish(FollowersNotified(event.post_id))

    @bus.subscriber(PostPublished, name="index")
    async def index(event: PostPublished, ctx: Context[PostPublished]) -> None:
        log.append("index")
        ctx.send(IndexPost(event.post_id))

    @bus.subscriber(FollowersNotified)
    async def notified(event: FollowersNotified) -> None:
        log.append("notified")

    @bus.handler(IndexPost)
    async def index_post(command: IndexPost, ctx: Context[IndexPost]) -> None:
        log.append("index_post")
        ctx.publish(PostIndexed(command.post_id))

    @bus.subscriber(PostIndexed)
    async def indexed(event: PostIndexed) -> None:
        log.append("indexed")


class TestHeldBack:
    """Follow-ups wait for their handler to succeed, then run breadth first."""

    async def test_dispatched_after_the_handler_breadth_first(self) -> None:
        """Each level of follow-ups runs before the next, in the order held."""
        bus = MessageBus()
        log: list[str] = []
        blog(bus, log)
        assert await bus.send(PublishPost("hi")) == PostId(1)
        assert log == [
            "publish",
            "publish returns",
            "notify",
            "index",
            "notified",
            "index_post",
            "indexed",
        ]

    async def test_discarded_when_the_handler_fails(self) -> None:
        """A failed handler announces nothing."""
        bus = MessageBus()
        announced: list[PostPublished] = []
        bus.subscriber(PostPublished, announced.append)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(1, command.title))
            raise CommandRejected("titles must be unique")

        with pytest.raises(CommandRejected):
            await bus.send(PublishPost("dup"))
        assert announced == []

    async def test_a_failing_subscriber_loses_only_its_own_follow_ups(self) -> None:
        """Follow-ups of the subscribers that succeeded still go out."""
        bus = MessageBus()
        seen: list[int] = []

        @bus.subscriber(PostPublished, name="ok")
        async def ok(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.publish(FollowersNotified(1))

        @bus.subscriber(PostPublished, name="broken")
        async def broken(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.publish(FollowersNotified(2))
            raise RuntimeError("down")

        bus.subscriber(FollowersNotified, lambda event: seen.append(event.post_id))
        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        assert seen == [1]

    async def test_concurrent_fanout_keeps_registration_order(self) -> None:
        """Follow-ups of parallel subscribers are dispatched in subscriber order."""
        bus = MessageBus(fanout="concurrent")
        seen: list[int] = []
        second_done = anyio.Event()

        @bus.subscriber(PostPublished, name="first")
        async def first(event: PostPublished, ctx: Context[PostPublished]) -> None:
            await second_done.wait()  # finishes last, but was registered first
            ctx.publish(FollowersNotified(1))

        @bus.subscriber(PostPublished, name="second")
        async def second(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.publish(FollowersNotified(2))
            second_done.set()

        bus.subscriber(FollowersNotified, lambda event: seen.append(event.post_id))
        await bus.publish(PostPublished(1, "x"))
        assert seen == [1, 2]

    async def test_follow_up_command_failure_is_dead_lettered(self) -> None:
        """Nobody awaits a follow-up command, so its failure becomes a dead letter."""
        bus = MessageBus()

        @bus.subscriber(PostPublished)
        async def charge_author(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.send(ChargeCard(5))

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            raise CommandRejected("card expired")

        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        (letter,) = await bus.dead_letters.list()
        assert letter.error_type == "messagebus._errors.CommandRejected"
        assert bus.codec.decode(letter.body).message == ChargeCard(5)

    async def test_sending_an_unhandled_follow_up_fails_the_handler_at_once(self) -> None:
        """ctx.send() checks for a handler immediately, so the handler can roll back."""
        bus = MessageBus()

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.send(ChargeCard(1))
            return PostId(1)

        with pytest.raises(NoHandlerError):
            await bus.send(PublishPost("x"))

    async def test_wrong_kinds_are_refused_at_once(self) -> None:
        """ctx.publish() takes events and ctx.send() takes commands."""
        bus = MessageBus()
        errors: list[Exception] = []

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            try:
                ctx.publish(ChargeCard(1))
            except MessageKindError as exc:
                errors.append(exc)
            try:
                ctx.send(PostPublished(1, "x"))
            except MessageKindError as exc:
                errors.append(exc)
            return PostId(1)

        await bus.send(PublishPost("x"))
        assert len(errors) == 2

    async def test_follow_up_metadata(self) -> None:
        """Options given to ctx.publish() land in the follow-up's envelope."""
        bus = MessageBus()
        seen: list[Envelope[Any]] = []

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(
                PostPublished(1, "x"), idempotency_key="k", group_key="post-1", headers={"h": "v"}
            )
            return PostId(1)

        @bus.subscriber(PostPublished)
        async def remember(event: PostPublished, ctx: Context[PostPublished]) -> None:
            seen.append(ctx.envelope)

        await bus.send(PublishPost("x"))
        (envelope,) = seen
        assert (envelope.idempotency_key, envelope.group_key, dict(envelope.headers)) == (
            "k",
            "post-1",
            {"h": "v"},
        )


class TestCausation:
    """Follow-ups carry the conversation's correlation id and their cause's id."""

    async def test_chain_through_held_follow_ups(self) -> None:
        """Every message of one conversation shares the root's correlation id."""
        bus = MessageBus()
        envelopes: dict[str, Envelope[Any]] = {}

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            envelopes["command"] = ctx.envelope
            ctx.publish(PostPublished(1, "x"))
            return PostId(1)

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
            envelopes["event"] = ctx.envelope
            ctx.publish(FollowersNotified(1))

        @bus.subscriber(FollowersNotified)
        async def notified(event: FollowersNotified, ctx: Context[FollowersNotified]) -> None:
            envelopes["grandchild"] = ctx.envelope

        await bus.send(PublishPost("x"), correlation_id="web-request-9")
        command, event, grandchild = (envelopes[k] for k in ("command", "event", "grandchild"))
        assert command.correlation_id == "web-request-9"
        assert event.correlation_id == grandchild.correlation_id == "web-request-9"
        assert event.causation_id == command.message_id
        assert grandchild.causation_id == event.message_id
        assert len({command.message_id, event.message_id, grandchild.message_id}) == 3

    async def test_direct_dispatch_inside_a_plain_handler_is_linked(self) -> None:
        """bus.publish() called inside a handler without ctx still links cause and effect."""
        bus = MessageBus()
        seen: dict[str, Envelope[Any] | None] = {}

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            seen["command"] = current_envelope()
            await bus.publish(PostPublished(1, "x"))
            return PostId(1)

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished) -> None:
            seen["event"] = current_envelope()

        await bus.send(PublishPost("x"))
        command, event = seen["command"], seen["event"]
        assert command is not None
        assert event is not None
        assert event.causation_id == command.message_id
        assert event.correlation_id == command.correlation_id == command.message_id

    async def test_tasks_started_by_a_handler_inherit_the_link(self) -> None:
        """Context variables follow child tasks, and so does causation."""
        bus = MessageBus()
        seen: dict[str, Envelope[Any] | None] = {}

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            seen["command"] = current_envelope()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(bus.publish, PostPublished(1, "x"))
            return PostId(1)

        @bus.subscriber(PostPublished)
        async def notify(event: PostPublished) -> None:
            seen["event"] = current_envelope()

        await bus.send(PublishPost("x"))
        assert seen["event"] is not None
        assert seen["command"] is not None
        assert seen["event"].causation_id == seen["command"].message_id

    async def test_no_envelope_outside_handlers(self) -> None:
        """current_envelope() is None outside any handler, including after one."""
        bus = MessageBus()
        bus.handler(ChargeCard, lambda command: Receipt(1))
        assert current_envelope() is None
        await bus.send(ChargeCard(1))
        assert current_envelope() is None

    async def test_sequential_subscribers_each_see_the_event(self) -> None:
        """The current envelope inside each subscriber is the event's."""
        bus = MessageBus()
        ids: list[str] = []

        def remember(event: PostPublished) -> None:
            envelope = current_envelope()
            assert envelope is not None
            ids.append(envelope.message_id)

        bus.subscriber(PostPublished, remember, name="a")
        bus.subscriber(PostPublished, remember, name="b")
        await bus.publish(PostPublished(1, "x"))
        assert len(ids) == 2
        assert ids[0] == ids[1]
