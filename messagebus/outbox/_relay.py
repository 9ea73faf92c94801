"""The relay: delivers committed outbox rows, at least once, in order per group key.

:class:`OutboxRelay` takes rows from an :class:`~messagebus.extension.OutboxStore` and
hands them to a :data:`Deliver` function in batches. Contract:

- :meth:`~OutboxRelay.flush` delivers now: the given ids (right after their commit), or
  everything claimable, batch after batch, until nothing claimable is left.
- :meth:`~OutboxRelay.drain` is a flush of everything that also waits for the flushes
  already running (the background loop's, another task's), flushing again after them,
  so that when it returns no delivery of this relay is in progress: for a process about
  to be frozen (a Lambda function returning) or stopped.
- :meth:`~OutboxRelay.run` is the background loop: a flush of everything at start and
  every ``poll_interval`` seconds (rows a crash left behind, rows of other processes),
  a flush of the notified ids as soon as :meth:`~OutboxRelay.notify` is called (give it
  to the store's ``on_commit``), and a bounded cleanup of sent rows every
  ``cleanup_interval``. A failing store call is logged and tried again at the next poll.
  If the store is a :class:`~messagebus.outbox.CommitWatcher` (PostgreSQL), ``run()``
  also runs its ``watch_commits``: a commit in another process wakes the loop for a
  flush of everything at once, the poll staying as the safety net. If the store is a
  :class:`~messagebus.outbox.SchedulingStore` (both SQL stores), the loop also wakes
  when the next scheduled row falls due (or a failed row's backoff ends): after each
  flush that may have left such rows it asks the store's ``until_due`` and sleeps no
  longer than that, so scheduled messages are delivered on time, not at the next poll.
- A delivery that fails is retried after ``backoff.delay(attempts)`` seconds (the store's
  clock; the row is simply not claimable before), and after ``max_attempts`` failures,
  or at once for a failure marked ``retry=False``, the row is parked as dead: listed by
  the store's ``list("dead")``, replayed by ``requeue(id)``. Nothing spins: a failing row
  waits for its backoff.
- Per group: when a message fails, the later messages of its group in the same batch
  are released without counting an attempt (whatever ``deliver`` reported for them
  after failing the first: see :data:`Deliver`), so they wait behind it.
- Cancelling a flush releases the rows it had claimed (shielded), so another relay can
  take them at once; rows a dead process had claimed wait for their lease to end.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence

import anyio
import structlog

from messagebus._clock import Clock
from messagebus._errors import InvalidArgumentError
from messagebus._ids import new_message_id
from messagebus._log import get_logger
from messagebus._retry_policy import ExponentialBackoff, FixedBackoff
from messagebus.outbox._message import (
    DeliveryFailure,
    OutboxEntry,
    OutboxMessage,
    failures_by_id,
)
from messagebus.outbox._store import CommitWatcher, OutboxStore, SchedulingStore, Settlement

__all__ = ["Deliver", "OutboxRelay", "deliver_each"]

_BACKOFF = ExponentialBackoff(initial=1.0, multiplier=2.0, cap=300.0)

Deliver = Callable[[Sequence[OutboxMessage]], Awaitable[Sequence[DeliveryFailure]]]
"""Delivers a batch (in commit order, any destinations); returns the messages that failed.

Every message not listed as failed counts as delivered. An exception fails the whole
batch (retried, as ``DeliveryFailure(id, repr(error))`` for each). Messages of one
``group_key`` must be delivered in the order given, and once one of them fails the later
ones of that group must not be delivered (report them failed too); transports that send
per destination group the batch with :func:`itertools.groupby` or a dict, keeping order.
"""


def deliver_each(send: Callable[[OutboxMessage], Awaitable[object]]) -> Deliver:
    """Make a :data:`Deliver` that calls ``send`` per message, one after the other.

    A message whose ``send`` raises fails with ``repr(error)``; the later messages of its
    group are then not sent and fail too. For in-process dispatch and tests.
    """

    async def deliver(messages: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
        failures: list[DeliveryFailure] = []
        blocked: set[str] = set()
        for message in messages:
            if message.group_key is not None and message.group_key in blocked:
                failures.append(DeliveryFailure(message.id, "an earlier message failed"))
                continue
            try:
                await send(message)
            except Exception as error:  # noqa: BLE001  # a failure is data: it backs off
                failures.append(DeliveryFailure(message.id, repr(error)))
                if message.group_key is not None:
                    blocked.add(message.group_key)
        return failures

    return deliver


class OutboxRelay:
    """Delivers an outbox's committed messages; see the module for the contract.

    Args:
        store: the outbox.
        deliver: where messages go (a transport, the local dispatcher).
        batch_size: rows per claim, and so per ``deliver`` call.
        lease: seconds a claim keeps its rows from other relays; longer than a
            ``deliver`` call can take, or another relay delivers them again.
        max_attempts: failed deliveries before a row is parked as dead.
        backoff: the delay before retry ``n`` (1 for the first).
        poll_interval: seconds between flushes of everything in :meth:`run`.
        retention: seconds a sent row is kept before cleanup deletes it.
        cleanup_interval: seconds between cleanups in :meth:`run`.
        cleanup_limit: rows one cleanup deletes at most.
        owner: the name the relay claims rows under (unique per relay; made up if None).
        logger: a structlog logger; if None, the library's (see :mod:`messagebus._log`).
        clock: what the polling and cleanup intervals are measured by (anyio's clock by
            default), e.g. a test's :class:`~messagebus.testing.FakeClock`; the
            backoff of a failed row follows the store's own ``clock``.
    """

    def __init__(
        self,
        store: OutboxStore,
        deliver: Deliver,
        *,
        batch_size: int = 100,
        lease: float = 30.0,
        max_attempts: int = 10,
        backoff: ExponentialBackoff | FixedBackoff = _BACKOFF,
        poll_interval: float = 1.0,
        retention: float = 86_400.0,
        cleanup_interval: float = 60.0,
        cleanup_limit: int = 1000,
        owner: str | None = None,
        logger: structlog.typing.FilteringBoundLogger | None = None,
        clock: Clock | None = None,
    ) -> None:
        if batch_size < 1 or max_attempts < 1:
            raise InvalidArgumentError(
                f"batch_size and max_attempts must be >= 1: {batch_size}, {max_attempts}"
            )
        self.store = store
        self._deliver = deliver
        self._batch_size = batch_size
        self._lease = lease
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._poll_interval = poll_interval
        self._retention = retention
        self._cleanup_interval = cleanup_interval
        self._cleanup_limit = cleanup_limit
        self.owner = owner or f"relay-{new_message_id()}"
        self._log = get_logger("messagebus") if logger is None else logger
        self._notified: dict[str, None] = {}  # ordered set
        self._poll_due = False  # a commit elsewhere: flush everything now
        self._wake = anyio.Event()
        self._clock = clock
        self._flushing = 0  # flushes in progress, any task's
        self._idle = anyio.Event()  # set when the last of them ends

    def notify(self, ids: Sequence[str]) -> None:
        """Ask :meth:`run` to flush these ids now. Never blocks; call it from the event loop."""
        self._notified.update(dict.fromkeys(ids))
        self._wake.set()

    async def flush(self, ids: Iterable[str] | None = None) -> int:
        """Deliver claimable rows now: these ids, or all; return how many were delivered.

        Rows held back (leased elsewhere, backing off, behind an earlier row of their
        group) are left for a later flush.
        """
        if self._flushing == 0:
            self._idle = anyio.Event()
        self._flushing += 1
        try:
            return await self._flush(ids)
        finally:
            self._flushing -= 1
            if self._flushing == 0:
                self._idle.set()

    async def drain(self) -> int:
        """Flush everything, and wait for flushes already running; return how many sent.

        Rows another task had claimed are delivered (or released) by that task: waiting
        for it, then flushing again, leaves nothing claimable behind and nothing of this
        relay running. Rows held back (backing off, leased by another process) stay.
        """
        delivered = await self.flush()
        while self._flushing:
            await self._idle.wait()
            delivered += await self.flush()
        return delivered

    async def _flush(self, ids: Iterable[str] | None) -> int:
        delivered = 0
        if ids is not None:
            wanted = list(ids)
            for start in range(0, len(wanted), self._batch_size):
                chunk = wanted[start : start + self._batch_size]
                delivered += await self._round(chunk)
            return delivered
        while True:
            claimed = await self.store.claim(self.owner, lease=self._lease, limit=self._batch_size)
            if not claimed:
                return delivered
            delivered += await self._deliver_claimed(claimed)

    async def cleanup(self) -> int:
        """Delete up to ``cleanup_limit`` rows sent more than ``retention`` ago."""
        return await self.store.cleanup(self._retention, limit=self._cleanup_limit)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver until cancelled: notified ids at once, everything every ``poll_interval``.

        With a :class:`~messagebus.outbox.CommitWatcher` store, everything also as soon
        as the store hears of a commit elsewhere.
        """
        async with anyio.create_task_group() as tasks:
            if isinstance(self.store, CommitWatcher):
                tasks.start_soon(self.store.watch_commits, self._commits_elsewhere)
            task_status.started()
            await self._loop()

    def _commits_elsewhere(self) -> None:
        self._poll_due = True
        self._wake.set()

    async def _loop(self) -> None:
        clock = self._clock
        now_of = anyio.current_time if clock is None else clock.monotonic
        move_on_after = anyio.move_on_after if clock is None else clock.move_on_after
        next_poll = next_cleanup = now_of()
        next_due = math.inf
        while True:
            look_ahead = False  # rows may be waiting for a time: ask the store which
            if self._notified:
                ids = list(self._notified)
                self._notified.clear()
                # All delivered: these commits added no row that waits for a time.
                look_ahead = await self._guarded("flush", self.flush(ids)) < len(ids)
            now = now_of()
            if now >= next_poll or now >= next_due or self._poll_due:
                # Cleared before the flush: a wake-up during it asks for another one.
                self._poll_due = False
                next_poll = now + self._poll_interval
                await self._guarded("poll", self.flush())
                look_ahead = True
            if look_ahead:
                next_due = await self._next_due()
            if now >= next_cleanup:
                next_cleanup = now + self._cleanup_interval
                await self._guarded("cleanup", self.cleanup())
            if not self._notified and not self._poll_due:
                wake_at = min(next_poll, next_cleanup, next_due)
                with move_on_after(wake_at - now_of()):
                    await self._wake.wait()
            self._wake = anyio.Event()

    async def _next_due(self) -> float:
        """Return when (on the relay's monotonic clock) the next row waiting for a time is due."""
        store = self.store
        if not isinstance(store, SchedulingStore):
            return math.inf
        try:
            wait = await store.until_due()
        except Exception:  # noqa: BLE001  # the store may be down for a while: poll again later
            self._log.exception("outbox.relay_failed", step="until_due", relay=self.owner)
            return math.inf
        now = anyio.current_time() if self._clock is None else self._clock.monotonic()
        return math.inf if wait is None else now + max(wait, 0.0)

    async def _guarded(self, what: str, work: Awaitable[int]) -> int:
        """Return ``await work``; on failure, log it and return -1."""
        try:
            return await work
        except Exception:  # noqa: BLE001  # the store may be down for a while: poll again later
            self._log.exception("outbox.relay_failed", step=what, relay=self.owner)
            return -1

    async def _round(self, ids: Sequence[str]) -> int:
        claimed = await self.store.claim(self.owner, lease=self._lease, limit=len(ids), ids=ids)
        return await self._deliver_claimed(claimed) if claimed else 0

    async def _deliver_claimed(self, claimed: Sequence[OutboxEntry]) -> int:
        messages = [entry.message for entry in claimed]
        try:
            try:
                failures = await self._deliver(messages)
            except Exception as error:  # noqa: BLE001  # a failed delivery is data: it backs off
                failures = [DeliveryFailure(message.id, repr(error)) for message in messages]
        except BaseException:
            # Cancelled mid-delivery: give the rows back now rather than at lease end.
            with anyio.CancelScope(shield=True):
                released = Settlement(released=[message.id for message in messages])
                await self.store.settle(self.owner, released)
            raise
        settlement = self._settlement(claimed, failures)
        await self.store.settle(self.owner, settlement)
        return len(settlement.sent)

    def _settlement(
        self, claimed: Sequence[OutboxEntry], failures: Sequence[DeliveryFailure]
    ) -> Settlement:
        failed = failures_by_id(failures)
        sent: list[str] = []
        retry: list[tuple[str, float, str]] = []
        dead: list[tuple[str, str]] = []
        released: list[str] = []
        failed_groups: set[str] = set()
        for entry in claimed:
            message = entry.message
            failure = failed.get(message.id)
            if failure is None:
                sent.append(message.id)
                continue
            group = message.group_key
            if group is not None and group in failed_groups:
                released.append(message.id)
                continue
            if group is not None:
                failed_groups.add(group)
            attempts = entry.attempts + 1
            if not failure.retry or attempts >= self._max_attempts:
                dead.append((message.id, failure.reason))
                self._log.error(
                    "outbox.message_dead",
                    message_id=message.id,
                    attempts=attempts,
                    error=failure.reason,
                )
            else:
                delay = self._backoff.delay(attempts)
                retry.append((message.id, delay, failure.reason))
                self._log.warning(
                    "outbox.delivery_failed",
                    message_id=message.id,
                    attempts=attempts,
                    retry_in=delay,
                    error=failure.reason,
                )
        return Settlement(sent=sent, retry=retry, dead=dead, released=released)
