"""Catch-up subscriptions: read the log's history in pages, then follow it live.

There is no seam to get wrong: history and live are the same loop. A subscription keeps
one cursor, the next position it wants, and reads ``position >= cursor`` in pages.
When a read comes back empty it is caught up, and waits for a wake-up: an in-process
append notifies the log's :class:`AppendSignal` at once, and appends by other processes
(or other store objects on the same database) are found by polling every
``poll_interval`` seconds. Because positions are gapless and become visible in order
(see :class:`~messagebus.extension.EventLog`), reading from the cursor can neither skip
an event appended concurrently nor deliver one twice.

Checkpoints: with ``checkpoint=name`` the subscription starts after the position saved
for ``name`` (or at ``from_position`` if none is saved), and saves its progress in the
log's checkpoint store. A record counts as processed when the consumer asks for the
next one (or leaves ``async with`` without an error); progress is saved every
``checkpoint_every`` processed records, whenever the subscription is caught up, and on
leaving ``async with``. Delivery is at least once: after a crash, the records processed
since the last save come again. Rebuilding a read model: ``await
log.checkpoints.reset(name)``, then subscribe again (from position 1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, cast

import anyio

from messagebus._errors import InvalidArgumentError
from messagebus.eventlog._record import LogRecord

if TYPE_CHECKING:
    from messagebus.eventlog._store import CheckpointStore

__all__ = ["AppendSignal", "Subscribable", "Subscription"]


class AppendSignal:
    """Wakes the subscriptions waiting on one log object, from the event loop's thread."""

    def __init__(self) -> None:
        # Made on first wait, in the event loop: anyio.Event needs a running backend.
        self._event: anyio.Event | None = None

    def waiter(self) -> anyio.Event:
        """Return the event the next :meth:`notify` sets; take it *before* reading."""
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def notify(self) -> None:
        """Wake every task waiting on the current event."""
        if self._event is not None:
            self._event.set()
            self._event = None


class _Readable(Protocol):
    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]: ...


class Subscription:
    """An async iterator of a log's records, from a position on, then live.

    Made by ``log.subscribe(...)``; see the module for the semantics. Use it as
    ``async with log.subscribe(...) as records: async for record in records: ...`` to
    have the last processed position saved on the way out; a bare ``async for`` works
    too, saving only as it goes.

    Args:
        from_position: the first position wanted (1: the whole log), when no
            checkpoint is saved.
        checkpoint: the subscriber's name in the log's checkpoint store, or None to
            keep no checkpoint.
        live: False to stop (``StopAsyncIteration``) once caught up, for a replay.
        page_size: records read per query.
        poll_interval: seconds between reads while caught up, for appends that no
            in-process notification announces.
        checkpoint_every: processed records between checkpoint saves.
    """

    def __init__(
        self,
        log: _Readable,
        signal: AppendSignal,
        checkpoints: CheckpointStore,
        *,
        from_position: int = 1,
        checkpoint: str | None = None,
        live: bool = True,
        page_size: int = 500,
        poll_interval: float = 1.0,
        checkpoint_every: int = 100,
    ) -> None:
        if from_position < 1:
            raise InvalidArgumentError(f"from_position must be at least 1, not {from_position}")
        if page_size < 1 or checkpoint_every < 1 or poll_interval <= 0:
            raise InvalidArgumentError(
                "page_size and checkpoint_every must be >= 1, poll_interval > 0"
            )
        self._log = log
        self._signal = signal
        self._checkpoints = checkpoints
        self._name = checkpoint
        self._live = live
        self._page_size = page_size
        self._poll_interval = poll_interval
        self._checkpoint_every = checkpoint_every
        self._next: int | None = None if checkpoint is not None else from_position
        self._from_position = from_position
        self._page: deque[LogRecord] = deque()
        self._handed: LogRecord | None = None  # given to the consumer, not yet processed
        self._processed = 0  # last processed position
        self._saved = 0  # last position saved in the checkpoint store
        self._unsaved = 0

    @property
    def position(self) -> int:
        """The position of the last record processed (0 before any)."""
        return self._processed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LogRecord:
        if self._next is None:
            self._next = await self._start()
        self._done_with_handed()
        if self._unsaved >= self._checkpoint_every:
            await self.save()
        while not self._page:
            wake = self._signal.waiter()
            page = await self._log.read(self._next, self._page_size)
            if page:
                self._page.extend(page)
                break
            await self.save()  # caught up: a good moment to record progress
            if not self._live:
                raise StopAsyncIteration
            with anyio.move_on_after(self._poll_interval):
                await wake.wait()
        record = self._page.popleft()
        self._next = record.position + 1
        self._handed = record
        return record

    async def save(self) -> None:
        """Save the last processed position now, if it changed (and there is a name)."""
        if self._name is not None and self._processed != self._saved:
            await self._checkpoints.save(self._name, self._processed)
            self._saved = self._processed
        self._unsaved = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._done_with_handed()
        # Shielded: leaving on cancellation must still record what was processed.
        with anyio.CancelScope(shield=True):
            await self.save()

    async def _start(self) -> int:
        assert self._name is not None  # _next is only None with a checkpoint name
        saved = await self._checkpoints.load(self._name)
        if saved is None:
            return self._from_position
        self._processed = self._saved = saved
        return saved + 1

    def _done_with_handed(self) -> None:
        if self._handed is not None:
            self._processed = self._handed.position
            self._handed = None
            self._unsaved += 1


class Subscribable:
    """What every log shares: its append signal, :meth:`subscribe`, :meth:`notify_appended`.

    A subclass sets ``_signal`` and ``_checkpoints`` and implements ``read``.
    """

    _signal: AppendSignal
    _checkpoints: CheckpointStore

    @property
    def checkpoints(self) -> CheckpointStore:
        """The checkpoint store kept with this log (same database)."""
        return self._checkpoints

    def subscribe(
        self,
        *,
        from_position: int = 1,
        checkpoint: str | None = None,
        live: bool = True,
        page_size: int = 500,
        poll_interval: float = 1.0,
        checkpoint_every: int = 100,
    ) -> Subscription:
        """Return a catch-up subscription: history in pages, then live appends.

        See :class:`Subscription` for the arguments.
        """
        return Subscription(
            cast(_Readable, self),
            self._signal,
            self._checkpoints,
            from_position=from_position,
            checkpoint=checkpoint,
            live=live,
            page_size=page_size,
            poll_interval=poll_interval,
            checkpoint_every=checkpoint_every,
        )

    def notify_appended(self) -> None:
        """Wake this log's subscriptions now (call from the event loop's thread).

        ``append`` does it itself; call it after committing a transaction in which you
        appended through ``append_in``.
        """
        self._signal.notify()
