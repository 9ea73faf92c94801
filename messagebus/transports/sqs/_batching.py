"""Batching for the SQS transport: split by count and bytes, retry entries, collect acks.

- :func:`plan_batches` splits a send into calls of at most ``max_entries`` messages and
  ``max_bytes`` bytes each, in order (FIFO groups keep their order across calls).
- :func:`call_batch` makes one batch call and retries, entry by entry, what AWS failed
  for its own reasons (``SenderFault`` false); what it failed for ours is reported.
- :func:`send_all` sends a whole send or publish that way, in order for FIFO, and turns
  what is left undone into the contract's errors (:func:`raise_failures`, which the
  coalescing of :mod:`messagebus.transports.sqs._coalesce` shares); :func:`encode_texts`
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
    SendError,
    TransportError,
)
from messagebus.transports._protocol import Outgoing
from messagebus.transports.sqs._background import Spawner
from messagebus.transports.sqs._errors import EXPIRED_CODES

__all__ = [
    "CONCURRENT_BATCHES",
    "MAX_ENTRIES",
    "BatchOutcome",
    "DeleteBatcher",
    "call_batch",
    "copy_error",
    "delete_error",
    "encode_texts",
    "plan_batches",
    "raise_failures",
    "send_all",
]

E = TypeVar("E", bound=Mapping[str, object])
Failures = Sequence[Mapping[str, object]]

MAX_ENTRIES = 10
CONCURRENT_BATCHES = 8
ENTRY_ATTEMPTS = 3
ENTRY_RETRY_DELAY = 0.05


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


@attrs.frozen
class BatchOutcome:
    """What one batch left undone.

    Attributes:
        failed: entry id -> the reason it was not done.
        error: the call-level error when the whole call failed (its entries are all in
            ``failed``); None when AWS answered.
    """

    failed: Mapping[str, str]
    error: TransportError | None = None


async def call_batch(
    call: Callable[[list[E]], Awaitable[Failures]], entries: list[E]
) -> BatchOutcome:
    """Make one batch call; retry the entries AWS failed on its side, up to 3 attempts.

    ``call`` sends the entries and returns AWS's ``Failed`` list (or raises a
    :class:`TransportError` for the whole call). Entries failed with ``SenderFault`` are
    final at once: sending them again cannot help.
    """
    failed: dict[str, str] = {}
    pending = entries
    for attempt in range(ENTRY_ATTEMPTS):
        try:
            failures = await call(pending)
        except TransportError as error:
            failed.update((str(entry["Id"]), str(error)) for entry in pending)
            return BatchOutcome(failed, error)
        by_id = {str(failure["Id"]): failure for failure in failures}
        retry: list[E] = []
        for entry in pending:
            failure = by_id.get(str(entry["Id"]))
            if failure is None:
                continue
            reason = f"{failure.get('Code', '')}: {failure.get('Message', '')}".strip(": ")
            failed[str(entry["Id"])] = reason
            if not failure.get("SenderFault") and attempt + 1 < ENTRY_ATTEMPTS:
                retry.append(entry)
        if not retry:
            break
        for entry in retry:
            del failed[str(entry["Id"])]
        pending = retry
        await anyio.sleep(ENTRY_RETRY_DELAY * 2**attempt)
    return BatchOutcome(failed)


def copy_error(error: TransportError) -> TransportError:
    """Return a fresh instance of ``error`` with the same cause: one per waiting task.

    Raising one exception object in several tasks would tangle their tracebacks.
    """
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy


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
    _timer: anyio.CancelScope | None = attrs.field(default=None, init=False)

    async def ack(self, receipt_handle: str) -> None:
        """Delete one message; return once its entry is done (raise its error if any)."""
        entry = _PendingDelete(receipt_handle)
        self._pending.append(entry)
        if len(self._pending) >= self.max_entries:
            self._flush()
        elif self._timer is None:
            self._timer = anyio.CancelScope()
            self.task_group.start_soon(self._flush_after_window, self._timer)
        await entry.done.wait()
        if entry.error is not None:
            raise entry.error

    def close(self) -> None:
        """Send everything pending now, and stop the window's timer (the transport closes)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending:
            self._flush()

    async def _flush_after_window(self, timer: anyio.CancelScope) -> None:
        with timer:
            await anyio.sleep(self.window)
        if self._timer is timer:
            self._timer = None
        self._flush_pending()

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


def raise_failures(
    messages: Sequence[Outgoing],
    refused: Mapping[int, str],
    failed: Mapping[int, str],
    errors: Sequence[TransportError],
) -> None:
    """Turn what a send left undone into the contract's error; return if nothing was.

    ``failed`` maps indexes of ``messages`` to reasons (``refused`` included); ``errors``
    are the call-level errors of the calls that failed as a whole.

    Raises:
        A copy of the first call-level error if every message was in such a call (so
        each waiting task raises its own), else SendError listing every failed message.
    """
    if not failed:
        return
    if errors and len(failed) == len(messages) and not refused:
        raise copy_error(errors[0]) from errors[0].__cause__
    raise SendError(
        [(messages[index].message_id, failed[index]) for index in sorted(failed)]
    ) from (errors[0] if errors else None)
