"""Running a service on the memory transport until it has nothing left to do.

``await run_until_idle(bus)`` (inside ``async with bus``, on an
:class:`~messagebus.transports.memory.InMemoryTransport`) runs a
:class:`~messagebus.Worker` on the service's queue and flushes the outbox relay,
round after round, until the queue holds no visible or in-flight message, the worker
handles nothing and the outbox has no pending row. Each round waits for every other
task to block (:func:`anyio.wait_all_tasks_blocked`), not for a time: the run is
deterministic, and a test that publishes, runs until idle and asserts never sleeps.

What it does not wait for: messages delayed on the queue (a deferred retry, a nack with
a delay), which become due only as time passes: they are counted in the result (the
fake clock of a later step will advance to them); and other services' queues (a command
routed to another service's queue stays there).
"""

from __future__ import annotations

import math

import anyio
import attrs

from messagebus._bus import MessageBus
from messagebus._errors import InvalidArgumentError
from messagebus._worker import Worker
from messagebus.transports.memory import InMemoryTransport

__all__ = ["Idle", "run_until_idle"]


@attrs.frozen
class Idle:
    """What a :func:`run_until_idle` did.

    Attributes:
        handled: messages the worker received and acknowledged (dead letters included).
        returned: messages the worker returned to the queue.
        delayed: messages left on the queue waiting for a delay to pass.
        rounds: rounds it took (each: flush the relay, let every task run, look).
    """

    handled: int
    returned: int
    delayed: int
    rounds: int


async def run_until_idle(
    bus: MessageBus, *, concurrency: int = 1, max_rounds: int = 100_000
) -> Idle:
    """Run ``bus``'s worker and relay until nothing is left to do; see the module.

    ``concurrency`` 1 (the default) handles one message at a time, in queue order, so
    that a test sees one order every run.

    Raises:
        BusStateError: the bus is not running (``async with bus``), or has no transport.
        InvalidArgumentError: the transport is not an ``InMemoryTransport``.
        AssertionError: not idle after ``max_rounds`` rounds (a handler that never
            returns); the message tells what was left. A handler that sleeps (an
            in-process retry's backoff) costs rounds until its sleep ends: keep test
            backoffs short, or wrap the call in :func:`anyio.fail_after`.
    """
    transport = bus.running_transport()
    if not isinstance(transport, InMemoryTransport):
        raise InvalidArgumentError(
            f"run_until_idle drives the memory transport only, not {type(transport).__qualname__}"
        )
    queue = bus.router.service
    # The worker's receive waits on the broker's news, never on the clock alone; once
    # idle it has nothing in flight, and when stuck it must not wait for its handlers.
    worker = Worker(bus, concurrency=concurrency, batch=concurrency, wait=math.inf, grace=0.0)
    rounds = 0
    stuck = False
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
            if not (depth.visible or depth.in_flight or handling or pending):
                break
            if rounds >= max_rounds:
                stuck = True
                break
        worker.stop()
    if stuck:
        # Raised out here: inside the task group it would reach the caller wrapped.
        raise AssertionError(
            f"not idle after {rounds} rounds: queue {queue!r} holds {depth.visible} "
            f"visible and {depth.in_flight} in-flight messages, the worker handles "
            f"{handling}, the outbox has {pending} pending rows"
        )
    return Idle(worker.acked, worker.returned, depth.delayed, rounds)
