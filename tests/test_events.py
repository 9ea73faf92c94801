from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from messagebus import (
    Context,
    DuplicateSubscriberError,
    InvalidMessageTypeError,
    MessageBus,
    MessageKindError,
)
from messagebus.dead_letters import InMemoryDeadLetterStore
from tests.messages import ChargeCard, PostPublished

pytestmark = pytest.mark.anyio


class FlakySubscriberError(RuntimeError):
    pass


class TestPublish:
    """An event goes to every subscriber, each isolated from the others."""

    async def test_every_subscriber_runs_in_registration_order(self) -> None:
        """All subscribers of the type run, one after another, in order."""
        bus = MessageBus()
        calls: list[str] = []

        @bus.subscriber(PostPublished)
        async def notify_followers(event: PostPublished) -> None:
            calls.append(f"notify {event.post_id}")

        @bus.subscriber(PostPublished)
        def update_index(event: PostPublished) -> None:
            calls.append(f"index {event.post_id}")

        await bus.publish(PostPublished(7, "hi"))
        assert calls == ["notify 7", "index 7"]

    async def test_plain_call_registration(self) -> None:
        """bus.subscriber(Type, fn) subscribes without a decorator and returns fn."""
        bus = MessageBus()
        seen: list[int] = []

        async def remember(event: PostPublished) -> None:
            seen.append(event.post_id)

        assert bus.subscriber(PostPublished, remember) is remember
        await bus.publish(PostPublished(1, "x"))
        assert seen == [1]

    async def test_no_subscribers_is_fine(self) -> None:
        """An event nobody listens to is not an error."""
        await MessageBus().publish(PostPublished(1, "x"))

    async def test_a_failing_subscriber_does_not_stop_the_others(self) -> None:
        """The publisher returns normally; the failure is logged and dead-lettered."""
        store = InMemoryDeadLetterStore()
        bus = MessageBus(dead_letters=store)
        calls: list[str] = []

        @bus.subscriber(PostPublished, name="first")
        async def first(event: PostPublished) -> None:
            calls.append("first")

        @bus.subscriber(PostPublished, name="broken")
        async def broken(event: PostPublished) -> None:
            raise FlakySubscriberError("search index is down")

        @bus.subscriber(PostPublished, name="last")
        async def last(event: PostPublished) -> None:
            calls.append("last")

        with capture_logs() as logs:
            await bus.publish(PostPublished(7, "hi"))

        assert calls == ["first", "last"]
        (letter,) = await store.list()
        assert letter.handler == "broken"
        assert letter.error_type == f"{__name__}.FlakySubscriberError"
        assert letter.error_message == "search index is down"
        assert "raise FlakySubscriberError" in letter.traceback
        assert bus.codec.decode(letter.body).message == PostPublished(7, "hi")
        assert letter.message_type == "blog.post.published"
        assert letter.attempts == 1
        assert letter.first_failed_at == letter.last_failed_at
        (line,) = [log for log in logs if log["log_level"] == "error"]
        assert line["handler"] == "broken"
        assert line["message_id"] == letter.message_id
        assert line["message_type"] == "blog.post.published"

    async def test_a_failing_sync_subscriber_is_isolated_too(self) -> None:
        """Isolation holds for sync subscribers and for subscribers with a context."""
        bus = MessageBus()
        calls: list[str] = []

        @bus.subscriber(PostPublished, name="sync")
        def sync(event: PostPublished) -> None:
            raise ValueError("sync broke")

        @bus.subscriber(PostPublished, name="with-context")
        async def with_context(event: PostPublished, ctx: Context[PostPublished]) -> None:
            raise ValueError("context broke")

        @bus.subscriber(PostPublished, name="fine")
        async def fine(event: PostPublished) -> None:
            calls.append("fine")

        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        letters = await bus.dead_letters.list()
        assert [letter.handler for letter in letters] == ["sync", "with-context"]
        assert calls == ["fine"]

    async def test_publishing_a_command_is_refused(self) -> None:
        """publish() takes events only, and says what to do instead."""
        bus = MessageBus()
        with pytest.raises(MessageKindError, match=r"send\(\)"):
            await bus.publish(ChargeCard(1))  # type: ignore[arg-type]

    async def test_publishing_a_non_message_is_refused(self) -> None:
        """Arbitrary objects are refused."""
        with pytest.raises(MessageKindError):
            await MessageBus().publish({"type": "post.published"})  # type: ignore[arg-type]

    async def test_cancellation_is_not_swallowed(self) -> None:
        """Isolation covers errors, not cancellation: a cancelled publish stops."""
        bus = MessageBus()
        reached: list[str] = []
        started = anyio.Event()

        @bus.subscriber(PostPublished, name="waits")
        async def waits(event: PostPublished) -> None:
            started.set()
            await anyio.sleep_forever()

        @bus.subscriber(PostPublished, name="after")
        async def after(event: PostPublished) -> None:
            reached.append("after")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(bus.publish, PostPublished(1, "x"))
            await started.wait()
            tasks.cancel_scope.cancel()
        assert reached == []
        assert await bus.dead_letters.list() == ()


class TestConcurrentFanout:
    """With fanout='concurrent', subscribers run in parallel tasks."""

    async def test_subscribers_overlap(self) -> None:
        """Each subscriber waits for the other: only concurrency lets both finish."""
        bus = MessageBus(fanout="concurrent")
        a_started, b_started = anyio.Event(), anyio.Event()

        @bus.subscriber(PostPublished, name="a")
        async def a(event: PostPublished) -> None:
            a_started.set()
            await b_started.wait()

        @bus.subscriber(PostPublished, name="b")
        async def b(event: PostPublished) -> None:
            b_started.set()
            await a_started.wait()

        with anyio.fail_after(5):
            await bus.publish(PostPublished(1, "x"))

    async def test_isolation_and_shared_ids(self) -> None:
        """A failure is dead-lettered; every subscriber sees the same message id."""
        bus = MessageBus(fanout="concurrent")
        ids: list[str] = []

        @bus.subscriber(PostPublished, name="ok")
        async def ok(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ids.append(ctx.envelope.message_id)

        @bus.subscriber(PostPublished, name="broken")
        async def broken(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ids.append(ctx.envelope.message_id)
            raise RuntimeError("nope")

        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        (letter,) = await bus.dead_letters.list()
        assert letter.handler == "broken"
        assert len(set(ids)) == 1
        assert letter.message_id == ids[0]

    async def test_one_subscriber_runs_inline(self) -> None:
        """A single subscriber needs no task group, and still works."""
        bus = MessageBus(fanout="concurrent")
        seen: list[int] = []
        bus.subscriber(PostPublished, lambda event: seen.append(event.post_id))
        await bus.publish(PostPublished(3, "x"))
        assert seen == [3]


class TestSubscription:
    """Subscriber registration and names."""

    def test_default_name_is_the_qualified_function_name(self) -> None:
        """Names default to '<module>.<qualified name>'."""
        bus = MessageBus()

        async def notify(event: PostPublished) -> None:
            return None

        bus.subscriber(PostPublished, notify)
        (route,) = bus._events[PostPublished]
        assert route.handler.name == (
            f"{__name__}.TestSubscription.test_default_name_is_the_qualified_function_name.notify"
        )

    def test_callable_object_default_name_is_its_class(self) -> None:
        """A callable object is named after its class."""

        class Notifier:
            async def __call__(self, event: PostPublished) -> None:
                return None

        bus = MessageBus()
        bus.subscriber(PostPublished, Notifier())
        (route,) = bus._events[PostPublished]
        assert route.handler.name == (
            f"{__name__}.TestSubscription.test_callable_object_default_name_is_its_class.Notifier"
        )
        assert route.handler.is_async

    def test_two_subscribers_with_one_name_are_refused(self) -> None:
        """Names identify subscribers, so they must differ per event type."""
        bus = MessageBus()
        bus.subscriber(PostPublished, lambda event: None, name="notify")
        with pytest.raises(DuplicateSubscriberError, match="notify"):
            bus.subscriber(PostPublished, lambda event: None, name="notify")

    def test_one_function_on_two_event_types_is_fine(self) -> None:
        """Names are unique per event type, not globally."""
        bus = MessageBus()

        def audit(event: Any) -> None:
            return None

        bus.subscriber(PostPublished, audit)
        from tests.messages import PostIndexed

        bus.subscriber(PostIndexed, audit)

    def test_command_types_are_refused(self) -> None:
        """bus.subscriber() takes event types; commands go to bus.handler()."""
        bus = MessageBus()
        with pytest.raises(InvalidMessageTypeError, match=r"handler\(\)"):
            bus.subscriber(ChargeCard, lambda command: None)  # type: ignore[type-var]
