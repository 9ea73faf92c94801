"""Coalescing for the AWS transports: concurrent sends to one destination share calls.

The bus sends one message per :meth:`~messagebus.MessageBus.enqueue` or ``publish``, and
each handler of a worker sends its own follow-ups, so under load many tasks call a
transport's ``send`` (or ``publish``) with one message each at about the same time. A
:class:`SendCollector` (one per queue, topic or event bus) turns those calls into batch
calls (SendMessageBatch, PublishBatch, PutEvents) of up to 10 entries and ``max_bytes``
bytes:

- A caller's messages join the destination's pending batch in order. A batch that is
  full (10 entries, or the next message would pass ``max_bytes``) goes at once; what is
  left goes when ``window`` seconds have passed since the first message waiting for it.
- Each caller waits for its own entries only, and gets what
  :func:`~messagebus.transports._batch_calls.raise_failures` makes of them: nothing,
  :class:`~messagebus.SendError` listing its own failed messages, or the call-level
  error (:class:`~messagebus.DestinationNotFoundError`,
  :class:`~messagebus.TransportUnavailableError`, a copy each) when every one of its
  messages was in a call that failed as a whole.
- In order (FIFO queues and topics), one call at a time goes to the destination, in the
  order the batches were formed, so the calls of one group keep their arrival order and
  a caller's messages stay in order. Once one of a caller's messages failed, its later
  messages are not sent (``not sent: an earlier message failed (FIFO)``), as without
  coalescing; other callers' messages go on. Otherwise up to ``concurrency`` calls run
  at once.
- Calls run in the transport's background tasks, not in a caller's task: a caller cancelled
  while it waits withdraws its messages that are not in a call yet (they are not sent),
  while a call already made goes on for every entry in it, the cancelled caller's
  included. Nobody else's message is lost or sent twice.
- :meth:`SendCollector.close` sends what is pending at once (the transport closes and
  waits for the calls); a call cut off by cancellation fails its entries with
  :class:`~messagebus.TransportError` (never passes them as sent).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

import anyio
import attrs

from messagebus._errors import TransportError
from messagebus.transports._batch_calls import (
    CONCURRENT_BATCHES,
    ENTRY_ATTEMPTS,
    ENTRY_RETRY_DELAY,
    MAX_ENTRIES,
    Failures,
    Spawner,
    WindowTimer,
    call_batch,
    raise_failures,
)
from messagebus.transports._protocol import Outgoing

__all__ = ["SendCollector"]

E = TypeVar("E", bound=Mapping[str, object])

FIFO_SKIPPED = "not sent: an earlier message failed (FIFO)"


@attrs.define(eq=False)
class _Caller:
    """One send call waiting for its entries' outcome."""

    messages: Sequence[Outgoing]
    refused: Mapping[int, str]
    failed: dict[int, str]
    errors: list[TransportError] = attrs.field(factory=list)
    unsettled: int = 0
    withdrawn: bool = False
    crash: Exception | None = None
    done: anyio.Event = attrs.field(factory=anyio.Event)

    def settle(self, index: int, reason: str | None, error: TransportError | None) -> None:
        if reason is not None:
            self.failed[index] = reason
            if error is not None:
                self.errors.append(error)
        self.unsettled -= 1
        if self.unsettled == 0:
            self.done.set()


@attrs.frozen(eq=False)
class _Item(Generic[E]):
    caller: _Caller
    index: int
    entry_id: str
    entry: E
    size: int


@attrs.define(eq=False)
class SendCollector(Generic[E]):
    """Coalesces the sends of many tasks to one destination (see the module docstring).

    Attributes:
        call: makes one batch call with the entries given; returns AWS's ``Failed``
            list or raises :class:`TransportError` for the whole call.
        task_group: where the calls and the window's timer run (the transport's
            :class:`~messagebus.transports.sqs._background.Background`, or
            an anyio task group the transport holds).
        window: seconds the first message of a batch waits for others to join.
        max_bytes: the most body bytes per call (SQS 1 MiB; SNS 256 KiB).
        in_order: one call at a time, in order (FIFO).
        max_entries: the most entries per call (AWS: 10).
        concurrency: the most calls at once when not in order.
        attempts, retry_delay: per entry failed on AWS's side (see
            :func:`~messagebus.transports._batch_calls.call_batch`).
    """

    call: Callable[[list[E]], Awaitable[Failures]]
    task_group: Spawner
    window: float
    max_bytes: int
    in_order: bool
    max_entries: int = MAX_ENTRIES
    concurrency: int = CONCURRENT_BATCHES
    attempts: int = ENTRY_ATTEMPTS
    retry_delay: float = ENTRY_RETRY_DELAY
    _pending: list[_Item[E]] = attrs.field(factory=list, init=False)
    _pending_bytes: int = attrs.field(default=0, init=False)
    _next_id: int = attrs.field(default=0, init=False)
    _timer: WindowTimer = attrs.field(init=False)
    _ready: deque[list[_Item[E]]] = attrs.field(factory=deque, init=False)
    _draining: bool = attrs.field(default=False, init=False)
    _limiter: anyio.CapacityLimiter = attrs.field(init=False)

    @_timer.default
    def _make_timer(self) -> WindowTimer:
        return WindowTimer(self.task_group, self.window, self._flush_pending)

    @_limiter.default
    def _make_limiter(self) -> anyio.CapacityLimiter:
        return anyio.CapacityLimiter(self.concurrency)

    async def send(
        self,
        messages: Sequence[Outgoing],
        refused: Mapping[int, str],
        entry: Callable[[int, str], E],
        sizes: Sequence[int] | None = None,
    ) -> None:
        """Send ``messages`` with others' in shared calls; return once all of them are done.

        ``refused`` holds, by index, messages not to send (reported as failed);
        ``entry(index, entry_id)`` makes the request entry of ``messages[index]``;
        ``sizes`` are the entries' sizes as the API counts them against ``max_bytes``
        (by default the bodies' lengths).

        Raises:
            SendError, or the call-level error: see the module docstring.
        """
        caller = _Caller(messages, refused, dict(refused))
        for index, message in enumerate(messages):
            if index in refused:
                continue
            size = len(message.body) if sizes is None else sizes[index]
            if self._pending and (
                len(self._pending) >= self.max_entries
                or self._pending_bytes + size > self.max_bytes
            ):
                self._flush()
            entry_id = str(self._next_id)
            self._next_id += 1
            self._pending.append(_Item(caller, index, entry_id, entry(index, entry_id), size))
            self._pending_bytes += size
            caller.unsettled += 1
        if len(self._pending) >= self.max_entries or self._pending_bytes >= self.max_bytes:
            self._flush()
        if self._pending:
            self._timer.start()
        if caller.unsettled:
            try:
                await caller.done.wait()
            except BaseException:
                # Cancelled: what is not in a call yet stays unsent (see _call).
                caller.withdrawn = True
                raise
        if caller.crash is not None:
            raise caller.crash
        raise_failures(messages, refused, caller.failed, caller.errors)

    def close(self) -> None:
        """Send what is pending now and stop the window's timer (the transport closes)."""
        self._timer.stop()
        self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        batch = self._pending
        self._pending, self._pending_bytes, self._next_id = [], 0, 0
        if not self.in_order:
            self.task_group.start_soon(self._call_limited, batch)
            return
        self._ready.append(batch)
        if not self._draining:
            self._draining = True
            self.task_group.start_soon(self._drain)

    async def _call_limited(self, batch: list[_Item[E]]) -> None:
        async with self._limiter:
            await self._call(batch)

    async def _drain(self) -> None:
        try:
            while self._ready:
                await self._call(self._ready.popleft())
        finally:
            self._draining = False
            # Cut off (the transport closing): no entry still queued may pass as sent.
            while self._ready:
                self._fail(self._ready.popleft())

    async def _call(self, batch: list[_Item[E]]) -> None:
        items: list[_Item[E]] = []
        for item in batch:
            caller = item.caller
            if caller.withdrawn:
                caller.settle(item.index, "not sent: the send was cancelled", None)
            elif self.in_order and len(caller.failed) > len(caller.refused):
                caller.settle(item.index, FIFO_SKIPPED, None)
            else:
                items.append(item)
        if not items:
            return
        try:
            outcome = await call_batch(
                self.call,
                [item.entry for item in items],
                attempts=self.attempts,
                retry_delay=self.retry_delay,
            )
        except Exception as error:  # noqa: BLE001 - a bug below: each caller raises it
            for item in items:
                item.caller.crash = error
                item.caller.settle(item.index, str(error), None)
            return
        except BaseException:
            self._fail(items)
            raise
        for item in items:
            item.caller.settle(item.index, outcome.failed.get(item.entry_id), outcome.error)

    @staticmethod
    def _fail(items: Sequence[_Item[E]]) -> None:
        for item in items:
            error = TransportError("the send was not confirmed before the transport closed")
            item.caller.settle(item.index, str(error), error)
