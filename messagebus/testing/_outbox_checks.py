"""The outbox store conformance checks: one coroutine per part of the contract.

Each ``check_outbox_*`` takes an :class:`OutboxHarness`, opens stores with it and raises
:class:`AssertionError` saying what went wrong, or
:class:`~messagebus.testing.NotApplicable` when the store cannot take the checks' clock
and the check needs to move time. Nothing here imports a test framework; see
:mod:`messagebus.testing` for running them from pytest, or run them all with
:func:`check_outbox_store`. The contract is :mod:`messagebus.outbox`'s
:class:`~messagebus.outbox.OutboxStore` (the row's life in its module docstring).

The checks write rows through the unit of work's ``add`` only (no SQL of their own, so
any database passes), and play the relay by calling ``claim`` and ``settle`` directly.
Time never passes for real: the checks give the store a clock they move by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial

import attrs

from messagebus.outbox._message import OutboxEntry, OutboxMessage, OutboxStatus
from messagebus.outbox._store import OutboxStore, Settlement
from messagebus.testing._clock import FakeClock
from messagebus.testing._harness import NotApplicable
from messagebus.testing._store_support import T0, at_once, run_checks
from messagebus.transports._routing import Destination

__all__ = [
    "OUTBOX_CHECKS",
    "OutboxCheck",
    "OutboxHarness",
    "check_outbox_claim_order",
    "check_outbox_cleanup",
    "check_outbox_commit",
    "check_outbox_concurrent_relays",
    "check_outbox_dead_and_requeue",
    "check_outbox_group_backoff",
    "check_outbox_group_order",
    "check_outbox_lease_expiry",
    "check_outbox_release",
    "check_outbox_retry_backoff",
    "check_outbox_rollback",
    "check_outbox_status",
    "check_outbox_store",
]

LEASE = 30.0


@attrs.frozen
class OutboxHarness:
    """How the checks make the outbox store under test.

    Attributes:
        open: ``open(clock)`` makes a store that reads the time from ``clock`` (seconds
            since the Unix epoch, a callable), as an async context manager. Every call
            within one check must give a store on the same table: a new object on the
            same database (a second one stands for another process's relay), or the
            same object for a store that keeps its rows in itself. Use a new harness,
            on an empty table, for each check.
        takes_clock: False if the store keeps its own time: the checks that move time
            are then not applicable.
        messages: how many rows the concurrency check relays.
        concurrency: how many relays it runs at once.
    """

    open: Callable[[Callable[[], float]], AbstractAsyncContextManager[OutboxStore]]
    takes_clock: bool = True
    messages: int = 60
    concurrency: int = 4


OutboxCheck = Callable[[OutboxHarness], Awaitable[None]]
"""One outbox store check."""


def _moves_time(harness: OutboxHarness) -> None:
    if not harness.takes_clock:
        raise NotApplicable("the store keeps its own time (takes_clock is False)")


def _message(n: int, *, group: str | None = None, **fields: object) -> OutboxMessage:
    values: dict[str, object] = {
        "id": f"m-{n:04d}",
        "destination": Destination.topic("checks"),
        "body": f"body-{n}".encode(),
        "group_key": group,
        "created_at": T0,
    }
    values.update(fields)
    return OutboxMessage(**values)  # type: ignore[arg-type]  # the fields of OutboxMessage


def _ids(entries: Sequence[OutboxEntry]) -> list[str]:
    return [entry.message.id for entry in entries]


async def _commit(store: OutboxStore, messages: Sequence[OutboxMessage]) -> None:
    async with store.transaction() as unit:
        unit.add(messages)


async def _claim_ids(
    store: OutboxStore, owner: str, *, limit: int = 100, ids: Sequence[str] | None = None
) -> list[str]:
    return _ids(await store.claim(owner, lease=LEASE, limit=limit, ids=ids))


def _expect(got: Sequence[str], want: Sequence[str], what: str) -> None:
    assert list(got) == list(want), f"{what}: claimed {list(got)}, want {list(want)}"


class _Boom(Exception):
    """The caller's failure inside a unit of work."""


async def _fail_in_unit(store: OutboxStore, message: OutboxMessage) -> None:
    async with store.transaction() as unit:
        unit.add(message)
        raise _Boom


async def check_outbox_commit(harness: OutboxHarness) -> None:
    """Check that committed rows come back intact, and listeners hear their ids after the commit.

    Every field of the message is kept (the body byte for byte); a new row is pending
    with no attempts. A unit of work that adds nothing notifies nobody.
    """
    sent = [
        _message(1, destination=Destination.queue("orders"), body=bytes(range(256))),
        _message(2, group="g", deduplication_id="d-2", created_at=T0 - 0.25),
        _message(3, destination=Destination.local(), body=b""),
    ]
    heard: list[tuple[list[str], bool]] = []
    async with harness.open(FakeClock()) as store:
        block_ended = False
        store.on_commit(lambda ids: heard.append((list(ids), block_ended)))
        async with store.transaction() as unit:
            unit.add(sent[0])
            unit.add(sent[1:])
            block_ended = True
        want_ids = [message.id for message in sent]
        assert heard == [(want_ids, True)], (
            f"listeners heard {heard}, want the ids {want_ids} once, after the block"
        )
        async with store.transaction():
            pass
        assert len(heard) == 1, f"a unit of work without messages notified {heard[1:]}"
        entries = await store.claim("relay", lease=LEASE, limit=10)
        got = [entry.message for entry in entries]
        assert got == sent, f"claimed {got}, want the committed {sent}"
        states = {(entry.status, entry.attempts, entry.last_error) for entry in entries}
        assert states == {("pending", 0, None)}, f"new rows claimed as {states}"


async def check_outbox_rollback(harness: OutboxHarness) -> None:
    """Check that a unit of work that fails keeps none of its rows and notifies nobody.

    The caller's exception propagates; a duplicate id fails the commit and rolls back
    the whole unit of work, the other rows of it included.
    """
    heard: list[list[str]] = []
    async with harness.open(FakeClock()) as store:
        store.on_commit(lambda ids: heard.append(list(ids)))
        try:
            await _fail_in_unit(store, _message(1))
        except _Boom:
            pass
        else:
            raise AssertionError("the exception raised in a unit of work did not propagate")
        await _commit(store, [_message(2)])
        try:
            async with store.transaction() as unit:
                unit.add([_message(3), _message(2, body=b"again")])
        except Exception:  # the database's own error for the duplicate key  # noqa: BLE001
            pass
        else:
            raise AssertionError("a unit of work adding an existing id committed")
        assert heard == [["m-0002"]], f"listeners heard {heard}, want only the one commit"
        got = await _claim_ids(store, "relay")
        _expect(got, ["m-0002"], "after two failed units of work")
        (entry,) = await store.list("pending")
        assert entry.message.body == b"body-2", "a failed unit of work changed a committed row"


async def check_outbox_claim_order(harness: OutboxHarness) -> None:
    """Check that claims lease rows in commit order, ``limit`` at most, each to one owner.

    Leased rows are left out of other claims; ``ids`` restricts a claim to those rows.
    """
    async with harness.open(FakeClock()) as store:
        await _commit(store, [_message(n) for n in (5, 1, 4)])
        await _commit(store, [_message(n) for n in (3, 2)])
        _expect(await _claim_ids(store, "a", limit=2), ["m-0005", "m-0001"], "a claim of 2")
        _expect(await _claim_ids(store, "b"), ["m-0004", "m-0003", "m-0002"], "the next claim")
        _expect(await _claim_ids(store, "c"), [], "a claim with every row leased")
        await _commit(store, [_message(n) for n in (6, 7, 8)])
        got = await _claim_ids(store, "c", ids=["m-0008", "m-0006", "m-0001", "m-none"])
        _expect(got, ["m-0006", "m-0008"], "a claim of given ids (m-0001 leased)")


async def check_outbox_lease_expiry(harness: OutboxHarness) -> None:
    """Check that a dead relay's rows come back when its lease ends, and it lost them then.

    A relay that lost its lease can still record rows as sent, but its retries, dead
    rows and releases are ignored.
    """
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        await _commit(store, [_message(n) for n in range(1, 5)])
        ids = await _claim_ids(store, "lost")
        await clock.advance(LEASE - 1)
        _expect(await _claim_ids(store, "other"), [], "a second before the lease ends")
        await clock.advance(2)
        _expect(await _claim_ids(store, "other"), ids, "after the lease ended")
        lost = Settlement(
            sent=["m-0001"],
            retry=[("m-0002", 0.0, "late")],
            dead=[("m-0003", "late")],
            released=["m-0004"],
        )
        await store.settle("lost", lost)
        status = await store.status()
        counts = (status.sent, status.dead, status.in_flight)
        assert counts == (1, 0, 3), (
            f"after the lost relay settled, (sent, dead, in flight) is {counts}, want (1, 0, 3)"
        )
        _expect(await _claim_ids(store, "third"), [], "after the lost relay settled")


async def check_outbox_release(harness: OutboxHarness) -> None:
    """Check that released rows are claimable again at once, with no attempt counted."""
    async with harness.open(FakeClock()) as store:
        await _commit(store, [_message(1), _message(2)])
        await _claim_ids(store, "a")
        await store.settle("a", Settlement(sent=["m-0001"], released=["m-0002"]))
        entries = await store.claim("b", lease=LEASE, limit=10)
        _expect(_ids(entries), ["m-0002"], "after a release")
        attempts = entries[0].attempts
        assert attempts == 0, f"a release counted {attempts} attempt(s)"


async def check_outbox_retry_backoff(harness: OutboxHarness) -> None:
    """Check that a retry counts an attempt, keeps the error and waits out its delay."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        await _commit(store, [_message(1)])
        await _claim_ids(store, "a")
        await store.settle("a", Settlement(retry=[("m-0001", 10.0, "timeout")]))
        await clock.advance(9)
        _expect(await _claim_ids(store, "b"), [], "a second before the retry's delay ends")
        await clock.advance(2)
        entries = await store.claim("b", lease=LEASE, limit=10)
        _expect(_ids(entries), ["m-0001"], "after the retry's delay")
        got = (entries[0].attempts, entries[0].last_error)
        assert got == (1, "timeout"), f"(attempts, last_error) after a retry is {got}"


async def check_outbox_dead_and_requeue(harness: OutboxHarness) -> None:
    """Check that a dead row is parked with its error, listed, and requeued with attempts reset."""
    async with harness.open(FakeClock()) as store:
        await _commit(store, [_message(1), _message(2)])
        await _claim_ids(store, "a")
        await store.settle("a", Settlement(dead=[("m-0001", "too large")], released=["m-0002"]))
        dead = await store.list("dead")
        got = [(entry.message.id, entry.status, entry.attempts, entry.last_error) for entry in dead]
        want = [("m-0001", "dead", 1, "too large")]
        assert got == want, f"list('dead') returned {got}, want {want}"
        _expect(await _claim_ids(store, "b", limit=1), ["m-0002"], "with one row dead")
        for message_id, expected in (("m-0002", False), ("m-none", False), ("m-0001", True)):
            requeued = await store.requeue(message_id)
            assert requeued is expected, f"requeue({message_id!r}) returned {requeued!r}"
        entries = await store.claim("c", lease=LEASE, limit=10)
        _expect(_ids(entries), ["m-0001"], "after requeue")
        assert entries[0].attempts == 0, f"requeue left {entries[0].attempts} attempt(s)"
        left = await store.list("dead")
        assert not left, f"list('dead') after requeue returned {_ids(left)}"


async def check_outbox_group_order(harness: OutboxHarness) -> None:
    """Check that a group's rows are claimed in order, one claim's worth at a time.

    A later row of a group is held back while an earlier one is leased, or left out of a
    claim of given ids; rows of other groups and rows without a group go on; a dead row
    holds nothing back.
    """
    async with harness.open(FakeClock()) as store:
        await _commit(store, [_message(1, group="g"), _message(2, group="g"), _message(3)])
        await _commit(store, [_message(4, group="g"), _message(5, group="h")])
        _expect(await _claim_ids(store, "a", limit=1), ["m-0001"], "the first claim")
        _expect(await _claim_ids(store, "b"), ["m-0003", "m-0005"], "with g's first row leased")
        await store.settle("b", Settlement(sent=["m-0003", "m-0005"]))
        await store.settle("a", Settlement(sent=["m-0001"]))
        got = await _claim_ids(store, "c", ids=["m-0004"])
        _expect(got, [], "a claim of g's third row only, with its second pending")
        _expect(await _claim_ids(store, "c"), ["m-0002", "m-0004"], "with g's first row sent")
        await store.settle("c", Settlement(dead=[("m-0002", "bad")], released=["m-0004"]))
        _expect(await _claim_ids(store, "d"), ["m-0004"], "with g's second row dead")


async def check_outbox_group_backoff(harness: OutboxHarness) -> None:
    """Check that a row backing off after a failure holds its group back until it is due."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        await _commit(store, [_message(1, group="g"), _message(2, group="g"), _message(3)])
        await _claim_ids(store, "a")
        await store.settle(
            "a", Settlement(retry=[("m-0001", 10.0, "down")], released=["m-0002", "m-0003"])
        )
        _expect(await _claim_ids(store, "b"), ["m-0003"], "with g's first row backing off")
        await clock.advance(11)
        _expect(await _claim_ids(store, "b"), ["m-0001", "m-0002"], "once the retry is due")


async def check_outbox_concurrent_relays(harness: OutboxHarness) -> None:
    """Check that relays claiming at once (two store objects) share the rows, never double.

    Each relay claims a few rows at a time and settles them as sent; every row is
    claimed exactly once, and no row is claimed before the earlier rows of its group
    were delivered.
    """
    total = harness.messages
    messages = [_message(n, group=f"g{n % 3}" if n % 4 else None) for n in range(total)]
    earlier = {
        message.id: [m.id for m in messages[:n] if m.group_key == message.group_key]
        for n, message in enumerate(messages)
        if message.group_key is not None
    }
    claims: list[str] = []
    delivered: set[str] = set()
    jumped: list[str] = []  # raised after the task group, which would wrap an exception
    clock = FakeClock()
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(harness.open(clock)) for _ in range(2)]
        for start in range(0, total, 10):
            await _commit(stores[0], messages[start : start + 10])

        async def relay(number: int) -> None:
            store, owner = stores[number % 2], f"relay-{number}"
            while ids := await _claim_ids(store, owner, limit=3):
                claims.extend(ids)
                for message_id in ids:  # delivered in the order claimed
                    early = [e for e in earlier.get(message_id, []) if e not in delivered]
                    if early:
                        jumped.append(f"{message_id} before {early}")
                    delivered.add(message_id)
                await store.settle(owner, Settlement(sent=ids))

        await at_once([partial(relay, n) for n in range(harness.concurrency)])
    assert not jumped, f"rows claimed before earlier rows of their group: {jumped[:3]}"
    twice = sorted({message_id for message_id in claims if claims.count(message_id) > 1})
    assert not twice, f"rows claimed more than once by concurrent relays: {twice}"
    missing = sorted({message.id for message in messages} - set(claims))
    assert not missing, f"rows never claimed: {missing}"


async def check_outbox_status(harness: OutboxHarness) -> None:
    """Check that status counts each state, and the oldest pending row's age by the clock."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        empty = await store.status()
        want = OutboxStatus(pending=0, in_flight=0, dead=0, sent=0, oldest_pending_age=None)
        assert empty == want, f"status of an empty outbox is {empty}"
        await _commit(store, [_message(n, created_at=T0 - n) for n in range(1, 7)])
        await _claim_ids(store, "a", limit=3)
        await store.settle("a", Settlement(sent=["m-0001"], dead=[("m-0002", "bad")]))
        await clock.advance(10)
        got = await store.status()
        want = OutboxStatus(pending=3, in_flight=1, dead=1, sent=1, oldest_pending_age=16.0)
        assert got == want, f"status is {got}, want {want}"


async def check_outbox_cleanup(harness: OutboxHarness) -> None:
    """Check that cleanup deletes rows sent longer ago than the retention, ``limit`` a call."""
    _moves_time(harness)
    clock = FakeClock()
    async with harness.open(clock) as store:
        await _commit(store, [_message(n) for n in range(1, 8)])
        await _claim_ids(store, "a", limit=6)
        await store.settle("a", Settlement(sent=[f"m-{n:04d}" for n in range(1, 5)]))
        await store.settle("a", Settlement(dead=[("m-0005", "bad")]))
        await clock.advance(100)
        await store.settle("a", Settlement(sent=["m-0006"]))
        await clock.advance(50)
        deleted = await store.cleanup(200)
        assert deleted == 0, f"cleanup(200) deleted {deleted} rows, none sent 200 s ago"
        counts = [await store.cleanup(120, limit=3) for _ in range(3)]
        assert counts == [3, 1, 0], (
            f"cleanup(120, limit=3) of 4 old sent rows deleted {counts}, want [3, 1, 0]"
        )
        status = await store.status()
        got = (status.sent, status.dead, status.pending)
        assert got == (1, 1, 1), f"after cleanup (sent, dead, pending) is {got}, want (1, 1, 1)"


OUTBOX_CHECKS: tuple[OutboxCheck, ...] = (
    check_outbox_commit,
    check_outbox_rollback,
    check_outbox_claim_order,
    check_outbox_release,
    check_outbox_dead_and_requeue,
    check_outbox_group_order,
    check_outbox_concurrent_relays,
    check_outbox_lease_expiry,
    check_outbox_retry_backoff,
    check_outbox_group_backoff,
    check_outbox_status,
    check_outbox_cleanup,
)
"""Every outbox store check, the basics first."""


async def check_outbox_store(make: Callable[[], OutboxHarness]) -> list[str]:
    """Run every check in :data:`OUTBOX_CHECKS`, each on ``make()``'s new harness.

    Returns the names of the checks that were not applicable.

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    return await run_checks(OUTBOX_CHECKS, make)
