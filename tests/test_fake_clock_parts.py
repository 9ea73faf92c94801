"""Every timed part takes the fake clock through its ``clock=``, and waits on it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import anyio
import pytest

from messagebus import Context, MessageBus
from messagebus.eventlog import SEQUENCE_HEADER, Resequencer
from messagebus.extension import OutboxStore
from messagebus.idempotency import InMemoryIdempotencyStore, InProgress
from messagebus.middleware import OrderingMiddleware, RetryMiddleware
from messagebus.outbox import OutboxRelay
from messagebus.retry import FixedBackoff, RetryPolicy
from messagebus.testing import EPOCH, FakeClock, run_until_idle
from messagebus.testing._harness import outgoing, probe
from messagebus.transports import QueueSpec, Topology
from messagebus.transports._heartbeat import keep_visible
from messagebus.transports.memory import InMemoryTransport
from tests.eventlog_fixtures import event
from tests.messages import PostId, PublishPost
from tests.test_ordering import deliver, numbered, ordered

pytestmark = pytest.mark.anyio


class TestRetry:
    """Retry waits follow the clock given as ``clock=``."""

    async def test_backoff_waits_on_the_fake_clock(self) -> None:
        """Two failures with a 10 s backoff take 20 s of fake time and no real time."""
        clock = FakeClock()
        policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(10.0), jitter="none")
        bus = MessageBus(middleware=[RetryMiddleware(commands=policy, clock=clock)])
        attempts: list[float] = []

        @bus.handler(PublishPost, idempotent=True)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            attempts.append(clock.monotonic())
            if len(attempts) < 3:
                raise RuntimeError("flaky")
            return PostId(7)

        async with clock.autojump():
            assert await bus.send(PublishPost("t")) == PostId(7)
        assert attempts == [0.0, 10.0, 20.0]

    async def test_an_explicit_sleep_still_wins(self) -> None:
        """``sleep=`` given beside a clock is the one that waits."""
        clock = FakeClock()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        policy = RetryPolicy(max_attempts=2, backoff=FixedBackoff(3.0), jitter="none")
        bus = MessageBus(middleware=[RetryMiddleware(commands=policy, clock=clock, sleep=sleep)])
        calls = 0

        @bus.handler(PublishPost, idempotent=True)
        async def publish(command: PublishPost) -> PostId:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("flaky")
            return PostId(1)

        await bus.send(PublishPost("t"))
        assert (waits, clock.elapsed) == ([3.0], 0)


class TestMemoryBroker:
    """Visibility, delays and the long poll follow the broker's clock."""

    async def test_a_delayed_message_arrives_when_the_clock_reaches_it(self) -> None:
        """A receiver waiting on a 30 s delay gets the message at 30 s, not at 29 s."""
        clock = FakeClock()
        got: list[float] = []
        async with InMemoryTransport(clock=clock) as transport:
            await transport.provision(Topology(queues=(QueueSpec("q"),)))
            await transport.send("q", [outgoing(probe("later"), delay=30)])

            async def receiver() -> None:
                deliveries = await transport.receive("q", wait=math.inf)
                got.append(clock.monotonic())
                await deliveries[0].ack()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()
                await clock.advance(29)
                assert got == []
                await clock.advance(1)
        assert got == [30.0]

    async def test_the_long_poll_ends_by_the_clock(self) -> None:
        """A receive's ``wait`` is measured on the fake clock."""
        clock = FakeClock()
        async with InMemoryTransport(clock=clock) as transport:
            await transport.provision(Topology(queues=(QueueSpec("q"),)))
            async with clock.autojump():
                assert list(await transport.receive("q", wait=20)) == []
        assert clock.elapsed == 20

    async def test_visibility_ends_by_the_clock(self) -> None:
        """An unsettled message is visible again once its visibility passes on the clock."""
        clock = FakeClock()
        async with InMemoryTransport(clock=clock) as transport:
            await transport.provision(Topology(queues=(QueueSpec("q", visibility_timeout=60),)))
            await transport.send("q", [outgoing(probe("x"))])
            assert len(await transport.receive("q", wait=0)) == 1
            await clock.advance(59)
            assert (await transport.depth("q")).in_flight == 1
            await clock.advance(1)
            assert (await transport.depth("q")).visible == 1


class _CountingStore:
    """The part of an outbox store the relay's loop calls: counts the flushes."""

    def __init__(self) -> None:
        self.claims: list[float] = []
        self.clock: FakeClock | None = None

    async def claim(self, owner: str, **options: Any) -> Sequence[Any]:
        assert self.clock is not None
        self.claims.append(self.clock.monotonic())
        return []

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        return 0


class TestRelay:
    """The relay polls on its clock."""

    async def test_polls_every_interval_of_fake_time(self) -> None:
        """With poll_interval 5, three polls happen by 10 s of fake time."""
        clock = FakeClock()
        store = _CountingStore()
        store.clock = clock

        async def deliver(messages: Sequence[Any]) -> list[Any]:
            return []

        relay = OutboxRelay(cast(OutboxStore, store), deliver, poll_interval=5, clock=clock)
        async with anyio.create_task_group() as tasks:
            await tasks.start(relay.run)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(10)
            tasks.cancel_scope.cancel()
        assert store.claims == [0.0, 5.0, 10.0]


class TestStores:
    """Stores read the wall time of a clock object."""

    async def test_idempotency_lease_is_in_wall_time(self) -> None:
        """A lease taken at EPOCH for 30 s ends at EPOCH + 30, and ends when advanced."""
        clock = FakeClock()
        store = InMemoryIdempotencyStore(clock=clock)
        await store.claim("h", "k", "fp", 30)
        assert await store.claim("h", "k", "fp", 30) == InProgress(EPOCH + 30)
        await clock.advance(30)
        assert not isinstance(await store.claim("h", "k", "fp", 30), InProgress)


class TestResequencer:
    """The resequencer's time bound reads the monotonic time."""

    def test_deadline_is_on_the_monotonic_reading(self) -> None:
        """An early arrival held at monotonic 100 is given up at 105, by the advance."""
        clock = FakeClock(monotonic_start=100.0)
        resequencer = Resequencer(max_wait=5, clock=clock)
        resequencer.push(event(2, "s", **{SEQUENCE_HEADER: "2"}))
        assert resequencer.next_deadline() == 105.0


class TestOrdering:
    """The ordering middleware's bound on a gap is measured on its clock."""

    async def test_a_gap_times_out_after_max_wait_of_fake_time(self) -> None:
        """Sequence 2 waits 30 fake seconds for 1, then is dead-lettered as a timeout."""
        clock = FakeClock()
        bus = MessageBus(service="blog", transport=InMemoryTransport(clock=clock))
        seen: list[tuple[str, int]] = []
        ordered(bus, OrderingMiddleware(max_wait=30, clock=clock), seen)
        async with bus:
            await bus.provision()
            await deliver(bus, numbered("a", 2))
            idle = await run_until_idle(bus, clock=clock)
        (letter,) = await bus.dead_letters.list()
        assert "(timeout)" in letter.error_message
        assert (seen, idle.advanced) == ([], 30.0)


class _Delivery:
    """A delivery that records the extensions asked of it."""

    queue = "q"

    def __init__(self, clock: FakeClock) -> None:
        self.extended: list[tuple[float, float]] = []
        self._clock = clock

    async def extend(self, seconds: float) -> None:
        self.extended.append((self._clock.monotonic(), seconds))


class TestHeartbeat:
    """The visibility heartbeat beats on the clock."""

    async def test_extends_every_half_visibility(self) -> None:
        """With visibility 10, extensions come at 5 and 10 s of fake time."""
        clock = FakeClock()
        delivery = _Delivery(clock)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: keep_visible(cast(Any, delivery), 10, clock=clock))
            await anyio.wait_all_tasks_blocked()
            await clock.advance(10)
            tasks.cancel_scope.cancel()
        assert delivery.extended == [(5.0, 10.0), (10.0, 10.0)]
