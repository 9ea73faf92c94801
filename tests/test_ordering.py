"""Ordered delivery: each stream in sequence per subscriber, early runs wait, bounded."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from messagebus import ConfigurationError, Context, Envelope, MessageBus, SequenceGapError, Worker
from messagebus._handlers import inspect_handler
from messagebus.eventlog import (
    SEQUENCE_HEADER,
    InMemoryCheckpointStore,
    InMemoryEventLog,
    SQLiteEventLog,
)
from messagebus.middleware import OrderingMiddleware, RetryMiddleware
from messagebus.retry import NEVER_RETRIED, FixedBackoff, RetryPolicy
from messagebus.transports import Outgoing
from messagebus.transports.memory import InMemoryTransport
from tests.messages import IndexPost, PostPublished

pytestmark = pytest.mark.anyio

NAME = "ordered"


class BrokenCheckpoints(InMemoryCheckpointStore):
    """Loads work; every save fails."""

    async def save(self, name: str, position: int) -> None:
        raise OSError("disk full")


def numbered(stream: str, sequence: int) -> Envelope[PostPublished]:
    return Envelope(
        PostPublished(sequence, stream),
        group_key=stream,
        headers={SEQUENCE_HEADER: str(sequence)},
    )


async def publish(bus: MessageBus, stream: str, sequence: int) -> None:
    """Publish in process as if the log had numbered it ``sequence``."""
    await bus.publish(
        PostPublished(sequence, stream),
        group_key=stream,
        headers={SEQUENCE_HEADER: str(sequence)},
    )


def ordered(
    bus: MessageBus, ordering: OrderingMiddleware, seen: list[tuple[str, int]]
) -> OrderingMiddleware:
    @bus.subscriber(PostPublished, name=NAME, middleware=[ordering])
    async def record(event: PostPublished) -> None:
        seen.append((event.title, event.post_id))

    return ordering


@asynccontextmanager
async def working(bus: MessageBus, concurrency: int = 8) -> AsyncIterator[Worker]:
    """Run ``bus`` with a provisioned queue and a worker; stop it on the way out."""
    async with bus:
        await bus.provision()
        worker = Worker(bus, concurrency=concurrency, wait=1.0)
        async with anyio.create_task_group() as tasks:
            await tasks.start(worker.run)
            yield worker
            worker.stop()


async def deliver(bus: MessageBus, *envelopes: Envelope[PostPublished]) -> None:
    """Put ``envelopes`` in the bus's queue, in this order, as a transport delivers them."""
    await bus.transport.send(  # type: ignore[union-attr]
        "blog",
        [Outgoing(bus.codec.encode(e), e.message_id, group_key=e.group_key) for e in envelopes],
    )


async def quiet() -> None:
    """Return once every task waits on something (a waiting run is among them)."""
    await anyio.wait_all_tasks_blocked()


async def until(condition: object) -> None:
    """Poll ``condition()`` at each moment the worker has nothing left to do (10 s at most)."""
    with anyio.fail_after(10):
        while not condition():  # type: ignore[operator]
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()


def on_transport(**options: object) -> MessageBus:
    return MessageBus(transport=InMemoryTransport(), service="blog", **options)  # type: ignore[arg-type]


class TestInProcess:
    """Without a transport events arrive in order; the layer only checks and records."""

    async def test_events_in_order_pass_straight_through(self) -> None:
        """Three events of a stream, logged and published in order, run at once."""
        store = InMemoryCheckpointStore()
        bus = MessageBus(event_log=InMemoryEventLog())
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(store), seen)
        for n in (1, 2, 3):
            await bus.publish(PostPublished(n, "a"), group_key="a")
        assert seen == [("a", 1), ("a", 2), ("a", 3)]
        assert await store.load(f"{NAME}:a") == 3

    async def test_unordered_envelopes_pass_through(self) -> None:
        """No stream or no sequence header: nothing to order by, nothing recorded."""
        store = InMemoryCheckpointStore()
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(store), seen)
        await bus.publish(PostPublished(2, "none"))
        await bus.publish(PostPublished(1, "a"), group_key="a")
        await bus.publish(PostPublished(7, "x"), headers={SEQUENCE_HEADER: "7"})
        assert seen == [("none", 2), ("a", 1), ("x", 7)]
        assert await store.load(f"{NAME}:a") is None

    async def test_a_failing_run_does_not_advance(self) -> None:
        """Sequence 1 fails (a dead letter); its redelivery runs, it is not stale."""
        store = InMemoryCheckpointStore()
        bus = MessageBus()
        runs: list[int] = []

        @bus.subscriber(PostPublished, name=NAME, middleware=[OrderingMiddleware(store)])
        async def flaky(event: PostPublished) -> None:
            runs.append(event.post_id)
            if len(runs) == 1:
                raise ConnectionError("down")

        await publish(bus, "a", 1)
        assert await store.load(f"{NAME}:a") is None
        (letter,) = await bus.dead_letters.list()
        await bus.replay(letter.id)
        assert runs == [1, 1]
        assert await store.load(f"{NAME}:a") == 1

    async def test_a_stale_sequence_is_skipped_and_logged(self) -> None:
        """After 1 and 2, another 2 is a duplicate: skipped, logged at info."""
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(), seen)
        with capture_logs() as logs:
            for n in (1, 2, 2):
                await publish(bus, "a", n)
        assert seen == [("a", 1), ("a", 2)]
        (skipped,) = [log for log in logs if log["event"] == "stale redelivery skipped"]
        assert skipped["log_level"] == "info"
        assert (skipped["handler"], skipped["stream"], skipped["sequence"]) == (NAME, "a", 2)
        assert skipped["expected"] == 3

    async def test_first_seen_starts_where_the_stream_is_met(self) -> None:
        """start="first-seen": 5 runs first, 4 is then stale, 6 follows."""
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(start="first-seen"), seen)
        for n in (5, 4, 6):
            await publish(bus, "a", n)
        assert seen == [("a", 5), ("a", 6)]

    async def test_a_checkpoint_that_cannot_be_saved_is_logged(self) -> None:
        """The run succeeded, so the stream advances in memory; the failure is a warning."""
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(BrokenCheckpoints()), seen)
        with capture_logs() as logs:
            for n in (1, 2, 1):
                await publish(bus, "a", n)
        assert seen == [("a", 1), ("a", 2)]
        warnings = [log for log in logs if log["event"] == "checkpoint not saved"]
        assert [w["sequence"] for w in warnings] == [1, 2]
        assert warnings[0]["error"] == "OSError: disk full"


class TestCheckpoints:
    """Each stream continues from its checkpoint; skip_to moves it forward only."""

    async def test_a_new_instance_resumes_from_the_sql_checkpoint(self, sqlite_path: Path) -> None:
        """After 1 and 2, a restarted subscriber skips 2 and runs 3."""
        seen: list[tuple[str, int]] = []
        async with SQLiteEventLog(sqlite_path) as log:
            first = MessageBus()
            ordered(first, OrderingMiddleware(log.checkpoints), seen)
            for n in (1, 2):
                await publish(first, "a", n)
        async with SQLiteEventLog(sqlite_path) as log:
            restarted = MessageBus()
            ordered(restarted, OrderingMiddleware(log.checkpoints), seen)
            for n in (2, 3):
                await publish(restarted, "a", n)
            assert await log.checkpoints.load(f"{NAME}:a") == 3
        assert seen == [("a", 1), ("a", 2), ("a", 3)]

    async def test_skip_to_sets_where_a_stream_starts(self) -> None:
        """A subscriber added later starts after the given sequence."""
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordering = ordered(bus, OrderingMiddleware(), seen)
        await ordering.skip_to(NAME, "a", 40)
        for n in (40, 41):
            await publish(bus, "a", n)
        assert seen == [("a", 41)]

    async def test_skip_to_never_moves_back(self) -> None:
        """Below the saved or handled sequence changes nothing; negative is refused."""
        store = InMemoryCheckpointStore()
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordering = ordered(bus, OrderingMiddleware(store), seen)
        await store.save(f"{NAME}:b", 5)
        await ordering.skip_to(NAME, "b", 3)
        assert await store.load(f"{NAME}:b") == 5
        for n in (1, 2):
            await publish(bus, "a", n)
        await ordering.skip_to(NAME, "a", 1)
        assert await store.load(f"{NAME}:a") == 2
        with pytest.raises(ValueError, match="negative"):
            await ordering.skip_to(NAME, "a", -1)

    async def test_skip_to_releases_a_waiting_run(self) -> None:
        """Sequence 1 is lost; skipping past it lets the waiting 2 run."""
        bus = MessageBus()
        seen: list[tuple[str, int]] = []
        ordering = ordered(bus, OrderingMiddleware(), seen)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(publish, bus, "a", 2)
            await quiet()
            assert seen == []
            await ordering.skip_to(NAME, "a", 1)
        assert seen == [("a", 2)]


class TestRegistration:
    """The layer applies to subscribers, inside retries; misplacement fails at once."""

    async def test_command_handlers_are_left_alone(self) -> None:
        """bind gives no layer for a command handler; calling the object is refused."""
        ordering = OrderingMiddleware()
        info = inspect_handler(lambda command: None, IndexPost, "command", "index")
        assert ordering.bind(info) is None
        with pytest.raises(TypeError, match="bound per handler"):
            await ordering(numbered("a", 1), ordering)  # type: ignore[arg-type]

    def test_a_retry_layer_inside_is_refused(self) -> None:
        """A deferred retry inside would look like success: ConfigurationError."""
        bus = MessageBus()
        with pytest.raises(ConfigurationError, match="inside OrderingMiddleware"):
            bus.subscriber(PostPublished, middleware=[OrderingMiddleware(), RetryMiddleware()])(
                lambda event: None
            )

    def test_retries_outside_or_switched_off_are_accepted(self) -> None:
        """Retries in the bus's middleware, or a retry layer with no policy, are fine."""
        bus = MessageBus(middleware=[RetryMiddleware()])
        bus.subscriber(PostPublished, name="a", middleware=[OrderingMiddleware()])(
            lambda event: None
        )
        bus.subscriber(
            PostPublished, name="b", middleware=[OrderingMiddleware(), RetryMiddleware(events=None)]
        )(lambda event: None)

    def test_gap_errors_are_never_retried(self) -> None:
        """The run already waited max_wait; a retry would only wait again in a slot."""
        assert issubclass(SequenceGapError, NEVER_RETRIED)


class TestOnAWorker:
    """On a transport each delivery waits in its own task, unacknowledged, for its turn."""

    async def test_shuffled_streams_are_handled_in_sequence(self) -> None:
        """Two streams of five, delivered in a seeded shuffle, run in order per stream."""
        bus = on_transport()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(max_held=4), seen)
        envelopes = [numbered(stream, n) for stream in ("a", "b") for n in range(1, 6)]
        random.Random(8).shuffle(envelopes)
        assert [int(e.headers[SEQUENCE_HEADER]) for e in envelopes] != [1, 2, 3, 4, 5] * 2
        async with working(bus, concurrency=12) as worker:
            await deliver(bus, *envelopes)
            await until(lambda: worker.acked == 10)
        assert [n for stream, n in seen if stream == "a"] == [1, 2, 3, 4, 5]
        assert [n for stream, n in seen if stream == "b"] == [1, 2, 3, 4, 5]
        assert list(await bus.dead_letters.list()) == []

    async def test_a_redelivered_duplicate_is_skipped(self) -> None:
        """1, 2 and a second copy of 2: the copy is acknowledged without a run."""
        bus = on_transport()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(), seen)
        async with working(bus) as worker:
            await deliver(bus, numbered("a", 2), numbered("a", 1), numbered("a", 2))
            await until(lambda: worker.acked == 3)
        assert seen == [("a", 1), ("a", 2)]
        assert list(await bus.dead_letters.list()) == []

    async def test_a_gap_that_never_fills_times_out_into_a_dead_letter(self) -> None:
        """2 waits for 1; past max_wait it is a dead letter; replayed after 1, it runs."""
        bus = on_transport(middleware=[RetryMiddleware()])
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(max_wait=0.05), seen)
        async with working(bus) as worker:
            await deliver(bus, numbered("a", 2))
            await until(lambda: worker.acked == 1)
            (letter,) = await bus.dead_letters.list()
            assert letter.error_type.endswith(".SequenceGapError")  # module moves later
            assert "sequence 2 waited too long while sequence 1 is missing (timeout)" in (
                letter.error_message
            )
            assert letter.attempts == 1
            await deliver(bus, numbered("a", 1))
            await until(lambda: worker.acked == 2)
            await bus.replay(letter.id)
        assert seen == [("a", 1), ("a", 2)]
        assert list(await bus.dead_letters.list()) == []

    async def test_past_max_held_a_run_fails_at_once(self) -> None:
        """With 2 waiting and max_held=1, 3 is a dead letter at once; 1 then releases 2."""
        bus = on_transport()
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(max_held=1), seen)
        async with working(bus) as worker:
            await deliver(bus, numbered("a", 2))
            await quiet()
            assert (worker.acked, seen) == (0, [])  # 2 waits, unacknowledged
            await deliver(bus, numbered("a", 3))
            await until(lambda: worker.acked == 1)
            (letter,) = await bus.dead_letters.list()
            assert "sequence 3 found the resequencer full" in letter.error_message
            assert letter.error_message.endswith("(full)")
            await deliver(bus, numbered("a", 1))
            await until(lambda: worker.acked == 3)
        assert seen == [("a", 1), ("a", 2)]

    async def test_a_retried_run_keeps_its_successors_waiting(self) -> None:
        """1 fails once and is retried; 2, arrived first, runs only after 1 succeeded."""
        bus = on_transport(
            middleware=[
                RetryMiddleware(
                    events=RetryPolicy(max_attempts=2, backoff=FixedBackoff(0), jitter="none")
                )
            ]
        )
        runs: list[tuple[int, int]] = []

        @bus.subscriber(PostPublished, name=NAME, middleware=[OrderingMiddleware()])
        async def flaky(event: PostPublished, ctx: Context[PostPublished]) -> None:
            runs.append((event.post_id, ctx.envelope.attempt))
            if runs == [(1, 1)]:
                raise ConnectionError("down")

        async with working(bus) as worker:
            await deliver(bus, numbered("a", 2), numbered("a", 1))
            await until(lambda: worker.acked == 2)
        assert runs == [(1, 1), (1, 2), (2, 1)]
        assert list(await bus.dead_letters.list()) == []
