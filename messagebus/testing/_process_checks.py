"""The process store conformance checks: one coroutine per part of the contract.

Each ``check_process_*`` takes a :class:`ProcessHarness`, opens stores with it and raises
:class:`AssertionError` saying what went wrong, or
:class:`~messagebus.testing.NotApplicable` when the store cannot take the checks' clock
and the check needs to move time. Nothing here imports a test framework; see
:mod:`messagebus.testing` for running them from pytest, or run them all with
:func:`check_process_store`. The contract is
:class:`~messagebus.process.ProcessStore`'s docstring.

A process store works inside the outbox's units of work, so the harness opens the
three stores of one database object together (:class:`ProcessStores`). Most checks
call the store's ``*_in`` methods in units of work of that outbox, as a process manager
does; :func:`check_process_timeout_after_completion` runs a real
:class:`~messagebus.process.ProcessManager` on a bus. Time never passes for real: the
checks give the stores a clock they move by hand.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial
from typing import Any, TypeVar

import attrs

from messagebus._bus import MessageBus
from messagebus._errors import ProcessConflictError
from messagebus._messages import Command, Event
from messagebus.idempotency._store import InboxStore
from messagebus.outbox._message import OutboxMessage
from messagebus.outbox._relay import OutboxRelay
from messagebus.outbox._store import OutboxStore
from messagebus.process._manager import Process, ProcessManager
from messagebus.process._store import ProcessRecord, ProcessStore
from messagebus.testing._clock import FakeClock
from messagebus.testing._harness import NotApplicable
from messagebus.testing._store_support import T0, at_once, run_checks
from messagebus.transports._routing import Destination

__all__ = [
    "PROCESS_CHECKS",
    "ProcessCheck",
    "ProcessHarness",
    "ProcessStores",
    "check_process_crash_between_commit_and_relay",
    "check_process_start_and_load",
    "check_process_start_race",
    "check_process_store",
    "check_process_timeout_after_completion",
    "check_process_tombstone_retention",
    "check_process_update_race",
    "check_process_version_check",
]

_T = TypeVar("_T")

PROCESS, KEY = "checks.order", "order-1"
RETENTION = 3600.0
MAX_RUNS = 100
"""Runs of one racer before a check gives up: a bound, far above what a store needs."""


@attrs.frozen
class ProcessStores:
    """The stores of one database object that a process manager runs on.

    Attributes:
        processes: the process store under test.
        outbox: the outbox whose units of work the process store's ``*_in`` methods
            join (the process store's ``database``).
        inbox: an inbox-mode idempotency store on the same database object (the
            process manager's duplicate check, for the bus-level check).
    """

    processes: ProcessStore
    outbox: OutboxStore
    inbox: InboxStore


@attrs.frozen
class ProcessHarness:
    """How the checks make the process store under test.

    Attributes:
        open: ``open(clock)`` makes the stores of one new database object, each
            reading the time from ``clock`` (seconds since the Unix epoch, a callable),
            as an async context manager that closes them. Every call within one check
            must give stores on the same tables: a second call stands for another
            process on the same database. Use a new harness, on empty tables, for each
            check.
        takes_clock: False if the stores keep their own time: the checks that move
            time are then not applicable.
        concurrency: how many racing units of work the race checks run at once.
    """

    open: Callable[[Callable[[], float]], AbstractAsyncContextManager[ProcessStores]]
    takes_clock: bool = True
    concurrency: int = 8


ProcessCheck = Callable[[ProcessHarness], Awaitable[None]]
"""One process store check."""


def _moves_time(harness: ProcessHarness) -> None:
    if not harness.takes_clock:
        raise NotApplicable("the stores keep their own time (takes_clock is False)")


async def _in_unit(stores: ProcessStores, call: Callable[[Any], _T]) -> _T:
    """Return ``call(connection)`` run in a unit of work of the outbox, then committed."""
    async with stores.outbox.transaction() as unit:
        return await unit.run(call)


async def _get(stores: ProcessStores, key: str = KEY, process: str = PROCESS) -> ProcessRecord:
    record = await stores.processes.get(process, key)
    assert record is not None, f"get({process!r}, {key!r}) returned None after a committed start"
    return record


async def _start(
    stores: ProcessStores, state: str, *, key: str = KEY, process: str = PROCESS
) -> None:
    processes = stores.processes
    started = await _in_unit(
        stores, lambda connection: processes.start_in(connection, process, key, state, 1)
    )
    assert started is True, f"start_in({process!r}, {key!r}) of a new instance returned {started!r}"


async def _save(stores: ProcessStores, state: str, expected: int, key: str = KEY) -> None:
    processes = stores.processes
    await _in_unit(
        stores,
        lambda connection: processes.save_in(
            connection, PROCESS, key, state=state, state_version=1, expected_version=expected
        ),
    )


async def _complete(stores: ProcessStores, expected: int, key: str = KEY) -> None:
    processes = stores.processes
    await _in_unit(
        stores,
        lambda connection: processes.complete_in(
            connection, PROCESS, key, expected_version=expected, retention=RETENTION
        ),
    )


async def _conflicts(call: Awaitable[None], what: str) -> None:
    try:
        await call
    except ProcessConflictError:
        return
    raise AssertionError(f"{what} did not raise ProcessConflictError")


class _Boom(Exception):
    """The caller's failure inside a unit of work."""


async def _start_and_fail(
    stores: ProcessStores, key: str, messages: Sequence[OutboxMessage]
) -> None:
    processes = stores.processes
    async with stores.outbox.transaction() as unit:
        await unit.run(lambda c: processes.start_in(c, PROCESS, key, "{}", 1))
        unit.add(messages)
        raise _Boom


async def _fail_after_start(
    stores: ProcessStores, key: str, messages: Sequence[OutboxMessage] = ()
) -> None:
    """Start ``key`` and add ``messages`` in a unit of work that then fails."""
    try:
        await _start_and_fail(stores, key, messages)
    except _Boom:
        return
    raise AssertionError("the exception raised in a unit of work did not propagate")


async def check_process_start_and_load(harness: ProcessHarness) -> None:
    """Check that a start commits an instance at version 1, intact, and only once.

    ``load_in`` and ``get`` return what was started (state text exactly, its state
    version); a start of an existing key returns False and changes nothing; one key
    under two process names is two instances; a start in a unit of work that fails
    keeps nothing.
    """
    state = '{"note": "Zoë \\"the\\" 🦊 — 行", "lines": [1, 2]}'
    async with harness.open(FakeClock()) as stores:
        processes = stores.processes
        missing = await _in_unit(stores, lambda c: processes.load_in(c, PROCESS, KEY))
        assert missing is None, f"load_in of an instance never started returned {missing!r}"
        started = await _in_unit(stores, lambda c: processes.start_in(c, PROCESS, KEY, state, 3))
        assert started is True, f"start_in of a new instance returned {started!r}"
        want = ProcessRecord(state, 3, 1, False)
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"get after a start returned {got!r}, want {want!r}"
        loaded = await _in_unit(stores, lambda c: processes.load_in(c, PROCESS, KEY))
        assert loaded == want, f"load_in after a start returned {loaded!r}, want {want!r}"
        again = await _in_unit(stores, lambda c: processes.start_in(c, PROCESS, KEY, "{}", 1))
        assert again is False, f"start_in of an existing instance returned {again!r}"
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"a second start changed the instance to {got!r}"
        await _start(stores, "{}", process="checks.other")
        other = await _get(stores, process="checks.other")
        assert other.state == "{}", f"one key under another process name read {other!r}"
        await _fail_after_start(stores, "rolled-back")
        kept = await stores.processes.get(PROCESS, "rolled-back")
        assert kept is None, f"a start in a unit of work that failed kept {kept!r}"


def _start_in(processes: ProcessStore, state: str, connection: Any) -> bool:
    return processes.start_in(connection, PROCESS, KEY, state, 1)


async def check_process_start_race(harness: ProcessHarness) -> None:
    """Check that starts of one key racing (two store objects) make one instance.

    Each racer loads the key and starts it if missing, in one unit of work. Exactly one
    start succeeds; every other racer found the instance, or saw its start return False
    (it waited for the winner's uncommitted row) and, retrying, found it. The instance
    holds the winner's state at version 1.
    """
    async with AsyncExitStack() as stack:
        sides = [await stack.enter_async_context(harness.open(FakeClock())) for _ in range(2)]

        async def racer(n: int) -> tuple[list[str], ProcessRecord]:
            stores = sides[n % 2]
            processes = stores.processes
            outcomes: list[str] = []
            for _ in range(MAX_RUNS):
                async with stores.outbox.transaction() as unit:
                    record = await unit.run(lambda c: processes.load_in(c, PROCESS, KEY))
                    if record is not None:
                        outcomes.append("found")
                        return outcomes, record
                    state = json.dumps({"by": n})
                    started = await unit.run(partial(_start_in, processes, state))
                outcomes.append("started" if started else "conflict")
                if started:
                    return outcomes, ProcessRecord(state, 1, 1, False)
            raise AssertionError(f"a racer found no instance after {MAX_RUNS} runs: {outcomes}")

        results = await at_once([partial(racer, n) for n in range(harness.concurrency)])
        winners = [n for n, (outcomes, _) in enumerate(results) if "started" in outcomes]
        assert len(winners) == 1, (
            f"{harness.concurrency} racing starts of one key started {len(winners)} "
            f"instances, want exactly 1 (outcomes: {[outcomes for outcomes, _ in results]})"
        )
        want = ProcessRecord(json.dumps({"by": winners[0]}), 1, 1, False)
        seen = {record for _, record in results}
        assert seen == {want}, f"the racers saw {seen}, want only the winner's {want!r}"
        got = await sides[1].processes.get(PROCESS, KEY)
        assert got == want, f"after the race get returned {got!r}, want {want!r}"


async def check_process_update_race(harness: ProcessHarness) -> None:
    """Check that concurrent updates of one instance (two store objects) are serialised.

    Each updater loads the instance, adds one to a count and saves at the version it
    loaded, in one unit of work, and runs again after a ProcessConflictError. Every
    increment is kept, the version counts every save, and no updater met a conflict:
    ``load_in`` holds the instance until its transaction ends, so no run loads a
    version another run is about to replace.
    """
    async with AsyncExitStack() as stack:
        sides = [await stack.enter_async_context(harness.open(FakeClock())) for _ in range(2)]
        await _start(sides[0], json.dumps({"count": 0}))

        def increment(processes: ProcessStore, connection: Any) -> None:
            record = processes.load_in(connection, PROCESS, KEY)
            assert record is not None, "load_in of a started instance returned None"
            assert record.state is not None, f"load_in of a live instance returned {record!r}"
            count = json.loads(record.state)["count"]
            processes.save_in(
                connection,
                PROCESS,
                KEY,
                state=json.dumps({"count": count + 1}),
                state_version=1,
                expected_version=record.version,
            )

        async def updater(n: int) -> int:
            stores = sides[n % 2]
            conflicts = 0
            for _ in range(MAX_RUNS):
                try:
                    await _in_unit(stores, lambda c: increment(stores.processes, c))
                except ProcessConflictError:
                    conflicts += 1
                else:
                    return conflicts
            raise AssertionError(f"an update conflicted {MAX_RUNS} times in a row")

        conflicts = await at_once([partial(updater, n) for n in range(harness.concurrency)])
        total = harness.concurrency
        record = await _get(sides[1])
        got = (json.loads(record.state or "null"), record.version)
        want = ({"count": total}, total + 1)
        assert got == want, (
            f"after {total} concurrent increments (state, version) is {got}, want {want}"
        )
        assert sum(conflicts) == 0, (
            f"concurrent updates met {sum(conflicts)} conflicts: load_in did not hold the "
            "instance until the transaction ended"
        )


async def check_process_version_check(harness: ProcessHarness) -> None:
    """Check that saves and completions apply only at the version loaded, else change nothing.

    A save at the current version stores the state (and its state version) as the next
    version; a save or a completion at an older version, or of a key never started,
    raises :class:`~messagebus.ProcessConflictError` and leaves the row as it was.
    """
    async with harness.open(FakeClock()) as stores:
        processes = stores.processes
        await _start(stores, '{"step": 1}')
        await _in_unit(
            stores,
            lambda c: processes.save_in(
                c, PROCESS, KEY, state='{"step": 2}', state_version=2, expected_version=1
            ),
        )
        want = ProcessRecord('{"step": 2}', 2, 2, False)
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"after a save at version 1 get returned {got!r}, want {want!r}"
        await _conflicts(_save(stores, '{"step": "stale"}', 1), "a save at a stale version")
        await _conflicts(_complete(stores, 1), "a completion at a stale version")
        await _conflicts(_save(stores, "{}", 1, key="never"), "a save of a key never started")
        await _conflicts(_complete(stores, 1, key="never"), "a completion of a key never started")
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"stale saves and completions changed the instance to {got!r}"
        never = await stores.processes.get(PROCESS, "never")
        assert never is None, f"a save of a key never started made {never!r}"


async def check_process_tombstone_retention(harness: ProcessHarness) -> None:
    """Check that completion leaves a tombstone for the retention, then cleanup removes it.

    The tombstone has no state and counts as a save (version + 1); it is loaded as
    completed, cannot be started again, saved or completed again. It is kept for
    ``retention`` seconds from the completion; ``cleanup`` deletes expired tombstones
    only, ``limit`` at most a call, and counts them; once it went, the key can start a
    new instance.
    """
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as stores:
        processes = stores.processes
        for n in range(3):
            await _start(stores, "{}", key=f"done-{n}")
        await _start(stores, "{}", key="live")
        await _start(stores, '{"v": 1}')
        await clock.advance(10)
        await _complete(stores, 1)
        for n in range(3):
            await _complete(stores, 1, key=f"done-{n}")
        want = ProcessRecord(None, 1, 2, True)
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"after completion get returned {got!r}, want the tombstone {want!r}"
        loaded = await _in_unit(stores, lambda c: processes.load_in(c, PROCESS, KEY))
        assert loaded == want, f"load_in of a completed instance returned {loaded!r}"
        again = await _in_unit(stores, lambda c: processes.start_in(c, PROCESS, KEY, "{}", 1))
        assert again is False, f"start_in over a tombstone returned {again!r}"
        await _conflicts(_save(stores, "{}", 2), "a save of a completed instance")
        await _conflicts(_complete(stores, 2), "a second completion")
        deleted = await stores.processes.cleanup()
        assert deleted == 0, f"cleanup deleted {deleted} tombstones before any expired"
        await clock.advance(RETENTION - 1)
        deleted = await stores.processes.cleanup()
        assert deleted == 0, f"cleanup a second before the retention ended deleted {deleted}"
        got = await stores.processes.get(PROCESS, KEY)
        assert got == want, f"a second before the retention ended get returned {got!r}"
        await clock.advance(1)
        deleted = await stores.processes.cleanup(limit=0)
        assert deleted == 0, f"cleanup(limit=0) deleted {deleted} tombstones"
        counts = [await stores.processes.cleanup(limit=3) for _ in range(3)]
        assert counts == [3, 1, 0], (
            f"cleanup(limit=3) of 4 expired tombstones deleted {counts}, want [3, 1, 0]"
        )
        live = await stores.processes.get(PROCESS, "live")
        assert live == ProcessRecord("{}", 1, 1, False), f"cleanup changed a live instance: {live}"
        gone = await stores.processes.get(PROCESS, KEY)
        assert gone is None, f"after cleanup get of the expired tombstone returned {gone!r}"
        await _start(stores, '{"v": 2}')
        got = await stores.processes.get(PROCESS, KEY)
        assert got == ProcessRecord('{"v": 2}', 1, 1, False), f"a new start made {got!r}"


@attrs.frozen
class _Placed(Event, name="messagebus.checks.process.placed"):
    order_id: str


@attrs.frozen
class _Paid(Event, name="messagebus.checks.process.paid"):
    order_id: str


@attrs.frozen
class _Overdue(Command[None], name="messagebus.checks.process.overdue"):
    order_id: str


@attrs.define
class _Order:
    order_id: str
    paid: bool = False


TIMEOUT = 1800.0


def _order_process(overdue: list[str]) -> ProcessManager[_Order]:
    """Return an order process; ``overdue`` records the timeouts it handled."""
    orders = ProcessManager(PROCESS, _Order, retention=RETENTION)

    @orders.starts(_Placed, correlate=lambda event: event.order_id)
    async def placed(event: _Placed, process: Process[_Order]) -> _Order:
        process.schedule(_Overdue(event.order_id), delay=TIMEOUT)
        return _Order(event.order_id)

    @orders.handles(_Paid, correlate=lambda event: event.order_id)
    async def paid(state: _Order, event: _Paid, process: Process[_Order]) -> None:
        process.complete()

    @orders.handles(_Overdue, correlate=lambda command: command.order_id)
    async def late(state: _Order, command: _Overdue, process: Process[_Order]) -> None:
        overdue.append(state.order_id)
        process.complete()

    return orders


async def check_process_timeout_after_completion(harness: ProcessHarness) -> None:
    """Check that a timeout delivered after its instance completed is ignored, quietly.

    A :class:`~messagebus.process.ProcessManager` on a bus over the harness's stores:
    the start schedules a timeout, a payment completes the instance; when the timeout
    falls due it is delivered, finds the tombstone and is ignored: its handler does not
    run, nothing is dead-lettered, no instance is started again.
    """
    _moves_time(harness)
    clock = FakeClock()
    overdue: list[str] = []
    async with harness.open(clock) as stores:
        bus = MessageBus(outbox=stores.outbox)
        _order_process(overdue).register(bus, store=stores.processes, inbox=stores.inbox)
        async with bus:
            relay = bus.relay
            assert relay is not None  # a bus with an outbox has one
            await bus.publish(_Placed(KEY))
            await bus.publish(_Paid(KEY))
            await relay.drain()
            await clock.advance(TIMEOUT)
            await relay.drain()
            status = await stores.outbox.status()
            dead = await bus.dead_letters.list()
            got = await stores.processes.get(PROCESS, KEY)
        counts = (status.sent, status.pending, status.in_flight, status.scheduled, status.dead)
        assert counts == (1, 0, 0, 0, 0), (
            f"(sent, pending, in flight, scheduled, dead) is {counts}, want the timeout sent"
        )
        assert overdue == [], f"the timeout's handler ran on a completed instance: {overdue}"
        assert not dead, f"the late timeout was dead-lettered: {[d.error_message for d in dead]}"
        want = ProcessRecord(None, 1, 2, True)
        assert got == want, f"after the late timeout get returned {got!r}, want {want!r}"


async def check_process_crash_between_commit_and_relay(harness: ProcessHarness) -> None:
    """Check that a started instance and its messages commit together, for any relay.

    One unit of work starts an instance and adds a message and a timeout (due later);
    its stores are closed before any relay ran, as a process killed after its commit.
    Stores opened anew (another process) find the instance, and a new relay delivers
    the message at once and the timeout when due, bodies intact. A unit of work that
    fails after the same writes keeps neither the instance nor its messages.
    """
    _moves_time(harness)
    clock = FakeClock()
    message = OutboxMessage(
        id="pm-sent", destination=Destination.topic("checks"), body=b"accepted", created_at=T0
    )
    timeout = attrs.evolve(message, id="pm-timeout", body=b"overdue", due_at=T0 + TIMEOUT)
    async with harness.open(clock) as crashed:
        processes = crashed.processes
        async with crashed.outbox.transaction() as unit:
            await unit.run(lambda c: processes.start_in(c, PROCESS, KEY, '{"n": 1}', 1))
            unit.add([message, timeout])
        await _fail_after_start(crashed, "failed", [attrs.evolve(message, id="pm-failed")])
    delivered: list[OutboxMessage] = []

    async def sink(batch: Sequence[OutboxMessage]) -> list[Any]:
        delivered.extend(batch)
        return []

    async with harness.open(clock) as restarted:
        got = await restarted.processes.get(PROCESS, KEY)
        want = ProcessRecord('{"n": 1}', 1, 1, False)
        assert got == want, f"after the restart get returned {got!r}, want {want!r}"
        failed = await restarted.processes.get(PROCESS, "failed")
        assert failed is None, f"a start in a unit of work that failed kept {failed!r}"
        relay = OutboxRelay(restarted.outbox, sink)
        now = await relay.flush()
        await clock.advance(TIMEOUT)
        due = await relay.flush()
    got_ids = [(m.id, m.body) for m in delivered]
    want_ids = [("pm-sent", b"accepted"), ("pm-timeout", b"overdue")]
    assert (now, due, got_ids) == (1, 1, want_ids), (
        f"a new relay delivered {now} then, when due, {due}: {got_ids}; want 1 then 1: {want_ids}"
    )


PROCESS_CHECKS: tuple[ProcessCheck, ...] = (
    check_process_start_and_load,
    check_process_version_check,
    check_process_start_race,
    check_process_update_race,
    check_process_tombstone_retention,
    check_process_timeout_after_completion,
    check_process_crash_between_commit_and_relay,
)
"""Every process store check, the basics first."""


async def check_process_store(make: Callable[[], ProcessHarness]) -> list[str]:
    """Run every check in :data:`PROCESS_CHECKS`, each on ``make()``'s new harness.

    Returns the names of the checks that were not applicable.

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    return await run_checks(PROCESS_CHECKS, make)
