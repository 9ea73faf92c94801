"""Batching for the SQS transport: split by count and bytes, retry entries, collect acks.

- :func:`plan_batches` splits a send into calls of at most ``max_entries`` messages and
  ``max_bytes`` bytes each, in order (FIFO groups keep their order across calls).
- :func:`~messagebus.transports._batch_calls.call_batch` (shared with the other AWS
  transports) makes one batch call and retries what AWS failed on its side.
- :func:`send_all` sends a whole send or publish that way, in order for FIFO, and turns
  what is left undone into the contract's errors (``raise_failures``, which the
  coalescing of :mod:`messagebus.transports._coalesce` shares); :func:`encode_texts`
  checks sizes before anything goes.
- :class:`DeleteBatcher` turns concurrent :meth:`Delivery.ack` calls on one queue into
  DeleteMessageBatch calls: an ack waits a short window for others to join, a full batch
  goes at once, and each ack waits for its own entry's result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import anyio
import attrs

from messagebus._errors import (
    DeliveryExpiredError,
    MessageTooLargeError,
    TransportError,
)
from messagebus.transports._batch_calls import (
    CONCURRENT_BATCHES,
    MAX_ENTRIES,
    BatchOutcome,
    Failures,
    Spawner,
    WindowTimer,
    call_batch,
    copy_error,
    raise_failures,
)
from messagebus.transports._protocol import Outgoing
from messagebus.transports.sqs._errors import EXPIRED_CODES

__all__ = [
    "DeleteBatcher",
    "delete_error",
    "encode_texts",
    "plan_batches",
    "send_all",
]

E = TypeVar("E", bound=Mapping[str, object])


def plan_batches(sizes: Sequence[int], max_entries: int, max_bytes: int) -> list[range]:
    """Split items of ``sizes`` (bytes each) into ordered batches.

    Each batch is a range of indexes holding at most ``max_entries`` items whose sizes
    add up to at most ``max_bytes``; a new batch starts only when the next item would
    break a limit, so the number of calls is the least that keeps the order. An item
    larger than ``max_bytes`` on its own is a batch of its own.
    """
    batches: list[range] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index - start == max_entries or total + size > max_bytes:
            batches.append(range(start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


@attrs.define(eq=False)
class _PendingDelete:
    receipt_handle: str
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: TransportError | None = None


DeleteBatch = Callable[[Sequence[str]], Awaitable[Sequence[TransportError | None]]]


@attrs.define(eq=False)
class DeleteBatcher:
    """Collects the acks of one queue into batch deletes (see the module docstring).

    Attributes:
        delete: deletes up to ``max_entries`` receipt handles in one call and returns,
            per handle in order, None or the error for that entry.
        task_group: where the calls run (the transport's background, so closing it
            waits for them).
        window: seconds the first ack of a batch waits for others to join.
        max_entries: the most handles per call (SQS: 10).
    """

    delete: DeleteBatch
    task_group: Spawner
    window: float = 0.005
    max_entries: int = 10
    _pending: list[_PendingDelete] = attrs.field(factory=list, init=False)
    _timer: WindowTimer = attrs.field(init=False)

    @_timer.default
    def _make_timer(self) -> WindowTimer:
        return WindowTimer(self.task_group, self.window, self._flush_pending)

    async def ack(self, receipt_handle: str) -> None:
        """Delete one message; return once its entry is done (raise its error if any)."""
        entry = _PendingDelete(receipt_handle)
        self._pending.append(entry)
        if len(self._pending) >= self.max_entries:
            self._flush()
        else:
            self._timer.start()
        await entry.done.wait()
        if entry.error is not None:
            raise entry.error

    def close(self) -> None:
        """Send everything pending now, and stop the window's timer (the transport closes)."""
        self._timer.stop()
        self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending:
            self._flush()

    def _flush(self) -> None:
        batch = self._pending[: self.max_entries]
        del self._pending[: self.max_entries]
        self.task_group.start_soon(self._delete, batch)

    async def _delete(self, batch: list[_PendingDelete]) -> None:
        try:
            errors = await self.delete([entry.receipt_handle for entry in batch])
        except BaseException:
            # Cancelled (the transport closing) or broken: no ack may pass as confirmed.
            for entry in batch:
                entry.error = TransportError(
                    "the ack was not confirmed before the transport closed"
                )
                entry.done.set()
            raise
        for entry, error in zip(batch, errors, strict=True):
            entry.error = error
            entry.done.set()


def encode_texts(messages: Sequence[Outgoing], limit: int) -> tuple[list[str], dict[int, str]]:
    """Decode the bodies (SQS and SNS carry text) and refuse the oversize before sending.

    Returns the texts, and by index the bodies that are not UTF-8 (not sent, reported).
    """
    for message in messages:
        if len(message.body) > limit:
            raise MessageTooLargeError(message.message_id, len(message.body), limit)
    texts: list[str] = []
    refused: dict[int, str] = {}
    for index, message in enumerate(messages):
        try:
            texts.append(message.body.decode())
        except UnicodeDecodeError:
            texts.append("")
            refused[index] = "the body is not UTF-8 text"
    return texts, refused


def delete_error(outcome: BatchOutcome, entry_id: str, queue: str) -> TransportError | None:
    reason = outcome.failed.get(entry_id)
    if reason is None:
        return None
    if outcome.error is not None:
        return copy_error(outcome.error)
    if reason.split(":", 1)[0] in EXPIRED_CODES:
        return DeliveryExpiredError(f"queue {queue!r}: the receipt is no longer valid ({reason})")
    return TransportError(f"queue {queue!r}: the delete failed ({reason})")


async def send_all(
    messages: Sequence[Outgoing],
    refused: Mapping[int, str],
    *,
    entries: list[E],
    call: Callable[[list[E]], Awaitable[Failures]],
    max_bytes: int,
    in_order: bool,
) -> None:
    """Send ``entries`` (``Id`` = index in ``messages``) in as few calls as the limits allow.

    In order (FIFO), one call after another, stopping at the first failure so that no
    later message of a group overtakes it; otherwise up to 8 calls at once.

    Raises:
        The call-level error (unavailable, not found) if no message was sent at all,
        else SendError listing every message not sent (``refused`` included).
    """
    sendable = [entry for entry in entries if int(str(entry["Id"])) not in refused]
    sizes = [len(messages[int(str(entry["Id"]))].body) for entry in sendable]
    batches = [
        [sendable[index] for index in indexes]
        for indexes in plan_batches(sizes, MAX_ENTRIES, max_bytes)
    ]
    failed: dict[int, str] = dict(refused)
    outcomes: list[BatchOutcome] = []
    if in_order:
        for number, batch in enumerate(batches):
            outcomes.append(outcome := await call_batch(call, batch))
            if outcome.failed:
                for entry in (entry for later in batches[number + 1 :] for entry in later):
                    failed[int(str(entry["Id"]))] = "not sent: an earlier message failed (FIFO)"
                break
    else:
        limiter = anyio.CapacityLimiter(CONCURRENT_BATCHES)

        async def one(batch: list[E]) -> None:
            async with limiter:
                outcomes.append(await call_batch(call, batch))

        async with anyio.create_task_group() as group:
            for batch in batches:
                group.start_soon(one, batch)
    for outcome in outcomes:
        failed.update((int(entry_id), reason) for entry_id, reason in outcome.failed.items())
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    raise_failures(messages, refused, failed, errors)
