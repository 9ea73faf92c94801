r"""The outbox store protocol: a unit of work that writes messages, and the relay's side.

The outbox makes "change the database, then announce it" atomic. A producer opens a
unit of work, :meth:`OutboxStore.transaction`: ONE database transaction, in which the
producer's own SQL runs (:class:`OutboxTransaction`) and outgoing messages are added as
rows of the outbox table. Leaving the block normally commits both; an exception rolls
both back, so no message announces a change that did not happen and none is lost if it
did. After the commit, and only then, the store tells its commit listeners
(:meth:`OutboxStore.on_commit`) the ids of the rows just committed, so a relay in this
process delivers them at once; a relay's poll picks up whatever a crash left behind.
A store that can also hear of commits made by other processes is a
:class:`CommitWatcher` (PostgreSQL, through LISTEN/NOTIFY); the relay then wakes for
those too. SQLite has no such signal between processes: its relays poll.

A row's life, driven by :class:`~messagebus.outbox.OutboxRelay` through the store::

    pending --claim--> pending + lease --settle--> sent --cleanup--> (deleted)
                             |                 \--> pending again (retry: backs off)
                             |                  \-> dead --requeue--> pending
                             \-- lease expires (the relay died) --> claimable again

Claiming is exclusive: of concurrent claims (tasks, processes) at most one gets a row
while its lease lasts, so relays do not deliver a row twice in the normal path (a relay
outliving its lease, or dying after delivering and before settling, delivers again:
delivery is at least once). Order per ``group_key``: a row is claimable only while no
earlier row (in commit order) of its group is pending and leased or backing off (or,
for a claim of given ``ids``, pending and left out of them), and a claim returns rows
in commit order; so within a group, rows are delivered in order, one claim's worth at a
time, whatever the number of relays. Dead rows do not hold their
group back. Rows without a key have no order among them.

Scheduled rows (:attr:`OutboxMessage.due_at <messagebus.outbox.OutboxMessage.due_at>`)
are pending rows that are not claimable before their due time; until then they hold
nothing back, and once due they take their place in their group's commit order. A store
that keeps them is a :class:`SchedulingStore` (both SQL stores are); the bus schedules
only on one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from messagebus.outbox._message import OutboxEntry, OutboxMessage, OutboxStatus, Status

__all__ = [
    "CommitListener",
    "CommitWatcher",
    "OutboxStore",
    "OutboxTransaction",
    "SchedulingStore",
    "Settlement",
]

_T = TypeVar("_T")
_C_co = TypeVar("_C_co", covariant=True)

CommitListener = Callable[[Sequence[str]], None]
"""Called after a commit, in the committing task, with the committed messages' ids in
order (never with an empty sequence). Must not block or raise: it runs before the unit
of work's ``async with`` returns; an exception it raises is logged and dropped, as the
transaction has committed already. :meth:`OutboxRelay.notify
<messagebus.outbox.OutboxRelay.notify>` is one."""


class OutboxTransaction(Protocol[_C_co]):
    """One open unit of work: the caller's SQL and the outbox rows, in one transaction.

    ``_C_co`` is the driver's connection type (:class:`sqlite3.Connection`,
    :class:`psycopg.Connection`). Statements use the driver's placeholders (``?`` for
    SQLite, ``%s`` for psycopg). Calls run one at a time, in worker threads; after the
    block has ended they raise :class:`anyio.ClosedResourceError`.
    """

    def add(self, messages: OutboxMessage | Iterable[OutboxMessage]) -> None:
        """Add messages, to be written in this transaction, in this order.

        They are inserted just before the commit (one batch), so a duplicate id fails the
        commit and rolls the whole unit of work back.
        """

    async def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        """Run one statement in the transaction; return the rows it changed."""

    async def fetch(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query in the transaction; return its rows as tuples."""

    async def run(self, call: Callable[[_C_co], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread on the transaction's connection.

        For drivers' full API (``executemany``, cursors, ...). ``call`` must not commit,
        roll back or close the connection: the unit of work does that.
        """


@attrs.frozen
class Settlement:
    """What became of the rows one relay claimed, for :meth:`OutboxStore.settle`.

    Attributes:
        sent: delivered; the rows become ``sent`` (even if the lease was lost meanwhile).
        retry: ``(id, delay, error)``: failed; one more attempt counted, claimable again
            ``delay`` seconds from now.
        dead: ``(id, error)``: failed for good; one more attempt counted, parked as dead.
        released: not attempted (an earlier row of their group failed); claimable again
            now, no attempt counted.

    Retries, dead rows and releases apply only while the relay still holds the lease.
    """

    sent: Sequence[str] = ()
    retry: Sequence[tuple[str, float, str]] = ()
    dead: Sequence[tuple[str, str]] = ()
    released: Sequence[str] = ()


class OutboxStore(Protocol):
    """Where outbox rows live; see the module for the row's life and the guarantees.

    Every method is safe to call from many tasks at once, and from many processes on one
    database. Time is the store's clock (seconds since the Unix epoch).
    """

    def transaction(self) -> AbstractAsyncContextManager[OutboxTransaction[Any]]:
        """Open a unit of work; leaving the block commits it, an exception rolls it back."""

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener`` with the message ids of every unit of work that commits some."""

    async def claim(
        self, owner: str, *, lease: float, limit: int, ids: Sequence[str] | None = None
    ) -> Sequence[OutboxEntry]:
        """Lease up to ``limit`` claimable rows to ``owner`` for ``lease`` s, in commit order.

        ``ids``: only rows with these ids (rows already sent or leased are left out).
        """

    async def settle(self, owner: str, settlement: Settlement) -> None:
        """Record what became of rows ``owner`` claimed, in one transaction."""

    async def list(self, status: Status = "dead", *, limit: int = 100) -> Sequence[OutboxEntry]:
        """Return up to ``limit`` rows in this state, in commit order."""

    async def requeue(self, message_id: str) -> bool:
        """Make a dead row pending again, attempts reset; return whether there was one."""

    async def status(self) -> OutboxStatus:
        """Count the rows by state."""

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` rows sent more than ``retention`` s ago; return how many."""

    async def aclose(self) -> None:
        """Close the store's connections; later calls raise :class:`anyio.ClosedResourceError`."""


@runtime_checkable
class CommitWatcher(Protocol):
    """A store that hears of rows committed elsewhere; :meth:`OutboxRelay.run` uses it.

    :meth:`OutboxRelay.run <messagebus.outbox.OutboxRelay.run>` runs ``watch_commits``
    beside its loop when its store has it.
    """

    async def watch_commits(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (in the event loop, never blocking) after commits, until cancelled.

        Best effort: a wake-up may be missed or spurious, the relay's poll covers both.
        May return at once if the store cannot or was told not to watch.
        """


@runtime_checkable
class SchedulingStore(Protocol):
    """An outbox store that keeps scheduled rows; the bus schedules messages only on one.

    Contract, beyond :class:`OutboxStore`: a row added with ``due_at`` is not claimable
    before ``due_at`` by :attr:`clock` and is claimable from then on (a time already
    past: at once); it holds back no other row while it is not due (see the module).
    """

    clock: Callable[[], float]
    """The store's clock (seconds since the Unix epoch), on which due times are read."""

    async def cancel(self, message_id: str, transaction: Any = None) -> bool:
        """Delete the scheduled row ``message_id`` if it is pending and not leased.

        Return whether it did: False for an unknown id, a row not scheduled, delivered,
        dead, or leased by a relay right now. ``transaction``: one of this store's open
        units of work to do it in (it commits or rolls back with the unit).
        """

    async def until_due(self) -> float | None:
        """Seconds until the next pending row waiting for a time becomes claimable.

        Scheduled rows and rows backing off count; rows claimable now do not. None when
        there is none. A relay sleeps until then, so it delivers on time without polling.
        """
