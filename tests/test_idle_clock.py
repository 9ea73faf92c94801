"""run_until_idle with a fake clock: it advances to delayed work, within a bound."""

from __future__ import annotations

import pytest

from messagebus import Context, InvalidArgumentError, MessageBus
from messagebus.middleware import RetryMiddleware
from messagebus.retry import FixedBackoff, RetryPolicy
from messagebus.testing import FakeClock, run_until_idle
from messagebus.transports.memory import InMemoryTransport
from tests.messages import IndexPost, PostPublished

pytestmark = pytest.mark.anyio


def flaky_bus(
    clock: FakeClock, backoff: float, *, failures: int, transport_clock: bool = True
) -> tuple[MessageBus, list[float]]:
    """A subscriber that fails ``failures`` times, retried after ``backoff`` seconds.

    Returns the bus and the clock's monotonic reading at each attempt.
    """
    policy = RetryPolicy(max_attempts=100, backoff=FixedBackoff(backoff), jitter="none")
    transport = InMemoryTransport(clock=clock) if transport_clock else InMemoryTransport()
    bus = MessageBus(transport=transport, middleware=[RetryMiddleware(events=policy, clock=clock)])
    attempts: list[float] = []

    @bus.subscriber(PostPublished, name="notify")
    async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
        attempts.append(clock.monotonic())
        if len(attempts) <= failures:
            raise RuntimeError("mail server down")
        ctx.send(IndexPost(event.post_id))

    @bus.handler(IndexPost)
    async def index(command: IndexPost) -> None:
        attempts.append(-1.0)  # marks the follow-up's run

    return bus, attempts


class TestRunUntilIdleWithAClock:
    """Delayed messages and sleeping retries are advanced to, not merely counted."""

    async def test_advances_to_a_deferred_retry(self) -> None:
        """A retry deferred 30 s on the queue runs at 30 s; its follow-up runs after it."""
        clock = FakeClock()
        bus, attempts = flaky_bus(clock, 30.0, failures=1)
        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "t"))
            idle = await run_until_idle(bus, clock=clock)
        assert attempts == [0.0, 30.0, -1.0]
        assert (idle.delayed, idle.advanced, clock.elapsed) == (0, 30.0, 30.0)

    async def test_advances_through_in_process_backoff(self) -> None:
        """Short backoffs sleep in the worker's slot, on the clock: 3 failures, 0.5 s apart."""
        clock = FakeClock()
        bus, attempts = flaky_bus(clock, 0.5, failures=3)
        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "t"))
            idle = await run_until_idle(bus, clock=clock)
        assert attempts == [0.0, 0.5, 1.0, 1.5, -1.0]
        assert idle.advanced == 1.5

    async def test_without_a_clock_delayed_messages_are_counted(self) -> None:
        """Without ``clock=``, the deferred retry stays on the queue and is reported."""
        clock = FakeClock()
        bus, attempts = flaky_bus(clock, 30.0, failures=1)
        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "t"))
            idle = await run_until_idle(bus)
        assert attempts == [0.0]
        assert (idle.delayed, idle.advanced) == (1, 0.0)

    async def test_max_advance_bounds_the_fake_time(self) -> None:
        """A subscriber that always fails: an assertion naming the bound and what is left."""
        clock = FakeClock()
        bus, _ = flaky_bus(clock, 600.0, failures=1000)
        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "t"))
            with pytest.raises(AssertionError) as caught:
                await run_until_idle(bus, clock=clock, max_advance=1000)
        assert str(caught.value) == (
            "not idle within max_advance=1000 s of the clock: queue 'messagebus' holds 0 "
            "visible, 0 in-flight and 1 delayed messages, the worker handles 0, the outbox "
            "has 0 pending rows; the next sleeper is due 600 s later"
        )
        assert clock.elapsed == 600

    async def test_a_transport_off_the_clock_is_named(self) -> None:
        """Delayed messages that nothing on the clock waits for: a hint at the transport."""
        clock = FakeClock()
        bus, _ = flaky_bus(clock, 30.0, failures=1, transport_clock=False)
        async with bus:
            await bus.provision()
            await bus.publish(PostPublished(1, "t"))
            with pytest.raises(AssertionError, match=r"InMemoryTransport\(clock=clock\)"):
                await run_until_idle(bus, clock=clock)

    async def test_negative_max_advance_is_refused(self) -> None:
        """A negative bound is a typed argument error."""
        bus = MessageBus(transport=InMemoryTransport())
        async with bus:
            with pytest.raises(InvalidArgumentError, match="max_advance"):
                await run_until_idle(bus, clock=FakeClock(), max_advance=-1)
