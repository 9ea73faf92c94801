"""Running a service on the memory transport until it has nothing left to do.

``await run_until_idle(bus)`` (inside ``async with bus``, on an
:class:`~messagebus.transports.memory.InMemoryTransport`) runs a
:class:`~messagebus.Worker` on the service's queue and flushes the outbox relay,
round after round, until the queue holds no visible or in-flight message, the worker
handles nothing and the outbox has no pending row. Each round waits for every other
task to block (:func:`anyio.wait_all_tasks_blocked`), not for a time: the run is
deterministic, and a test that publishes, runs until idle and asserts never sleeps.

With a :class:`~messagebus.testing.FakeClock` (``run_until_idle(bus, clock=clock)``,
the same clock the transport, the retry middleware and the stores were given), time is
part of the work: when every task is blocked and something is still to do (a message
delayed on the queue by a deferred retry or a nack, a handler sleeping out an
in-process retry's backoff), the clock advances to the earliest sleeper and the rounds
go on, until nothing is delayed either. The worker's heartbeat beats on the clock, so
an in-flight message keeps its visibility while time moves. ``max_advance`` bounds the
fake time it may move (a message that fails forever on a retry policy without an end).

Without a clock, delayed messages are counted in the result, not waited for. Other
services' queues are never waited for (a command routed to another service's queue
stays there).
"""

from __future__ import annotations

import math

import anyio
import attrs

from messagebus._bus import MessageBus
from messagebus._errors import InvalidArgumentError
from messagebus._worker import Worker
from messagebus.testing._clock import FakeClock
from messagebus.transports.memory import InMemoryTransport

__all__ = ["Idle", "run_until_idle"]


@attrs.frozen
class Idle:
    """What a :func:`run_until_idle` did.

    Attributes:
        handled: messages the worker received and acknowledged (dead letters included).
        returned: messages the worker returned to the queue.
        delayed: messages left on the queue waiting for a delay to pass (0 with a clock).
        rounds: rounds it took (each: flush the relay, let every task run, look).
        advanced: seconds the fake clock was moved on (0 without a clock).
    """

    handled: int
    returned: int
    delayed: int
    rounds: int
    advanced: float = 0.0


async def run_until_idle(
    bus: MessageBus,
    *,
    concurrency: int = 1,
    max_rounds: int = 100_000,
    clock: FakeClock | None = None,
    max_advance: float = 86_400.0,
) -> Idle:
    """Run ``bus``'s worker and relay until nothing is left to do; see the module.

    ``concurrency`` 1 (the default) handles one message at a time, in queue order, so
    that a test sees one order every run. With ``clock``, delayed work is waited for by
    advancing it, at most ``max_advance`` seconds in all.

    Raises:
        BusStateError: the bus is not running (``async with bus``), or has no transport.
        InvalidArgumentError: the transport is not an ``InMemoryTransport``, or
            ``max_advance`` is negative.
        AssertionError: not idle after ``max_rounds`` rounds (a handler that never
            returns), or, with a clock, not idle within ``max_advance`` seconds of it, or
            stalled with nothing due on the clock; the message tells what was left.
            Without a clock, a handler that sleeps (an in-process retry's backoff)
            costs rounds until its sleep ends: give the retry middleware the clock.
    """
    transport = bus.running_transport()
    if not isinstance(transport, InMemoryTransport):
        raise InvalidArgumentError(
            f"run_until_idle drives the memory transport only, not {type(transport).__qualname__}"
        )
    if not max_advance >= 0:
        raise InvalidArgumentError(f"max_advance must not be negative: {max_advance}")
    queue = bus.router.service
    # The worker's receive waits on the broker's news, never on the clock alone; once
    # idle it has nothing in flight, and when stuck it must not wait for its handlers.
    worker = Worker(
        bus, concurrency=concurrency, batch=concurrency, wait=math.inf, grace=0.0, clock=clock
    )
    rounds = 0
    advanced = 0.0
    stuck: str | None = None
    async with anyio.create_task_group() as tasks:
        await tasks.start(worker.run)
        while True:
            rounds += 1
            if bus.relay is not None:
                await bus.relay.flush()
            await anyio.wait_all_tasks_blocked()
            depth = await transport.depth(queue)
            pending = 0
            if bus.outbox is not None:
                status = await bus.outbox.status()
                pending = status.pending + status.in_flight
            handling = worker.in_flight  # read now: stopping the worker cancels them
            left = (
                f"queue {queue!r} holds {depth.visible} visible, {depth.in_flight} in-flight "
                f"and {depth.delayed} delayed messages, the worker handles {handling}, "
                f"the outbox has {pending} pending rows"
            )
            delayed = depth.delayed if clock is not None else 0
            if not (depth.visible or depth.in_flight or delayed or handling or pending):
                break
            if rounds >= max_rounds:
                stuck = f"not idle after {rounds} rounds: {left}"
                break
            if clock is None:
                continue
            # Every task is blocked: only time can move what is left.
            due = clock.next_due()
            if due is None:
                if depth.visible or handling:
                    continue  # a handler blocked on something else; rounds bound it
                stuck = (
                    f"stalled after advancing the clock {advanced:g} s: {left}, and nothing "
                    "sleeps on the clock (was the transport given it: "
                    "InMemoryTransport(clock=clock)?)"
                )
                break
            if advanced + due > max_advance:
                stuck = (
                    f"not idle within max_advance={max_advance:g} s of the clock: {left}; "
                    f"the next sleeper is due {due:g} s later"
                )
                break
            await clock.advance(due)
            advanced += due
        worker.stop()
    if stuck is not None:
        # Raised out here: inside the task group it would reach the caller wrapped.
        raise AssertionError(stuck)
    return Idle(worker.acked, worker.returned, depth.delayed, rounds, advanced)
