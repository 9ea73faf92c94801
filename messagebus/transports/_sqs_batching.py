"""Batching for the SQS transport: split by count and bytes, retry entries, collect acks.

- :func:`plan_batches` splits a send into calls of at most ``max_entries`` messages and
  ``max_bytes`` bytes each, in order (FIFO groups keep their order across calls).
- :func:`call_batch` makes one batch call and retries, entry by entry, what AWS failed
  for its own reasons (``SenderFault`` false); what it failed for ours is reported.
- :class:`DeleteBatcher` turns concurrent :meth:`Delivery.ack` calls on one queue into
  DeleteMessageBatch calls: an ack waits a short window for others to join, a full batch
  goes at once, and each ack waits for its own entry's result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from messagebus._errors import TransportError

__all__ = ["BatchOutcome", "DeleteBatcher", "call_batch", "copy_error", "plan_batches"]

E = TypeVar("E", bound=Mapping[str, object])
Failures = Sequence[Mapping[str, object]]

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
        task_group: where the calls run (the transport's, so closing it waits for them).
        window: seconds the first ack of a batch waits for others to join.
        max_entries: the most handles per call (SQS: 10).
    """

    delete: DeleteBatch
    task_group: TaskGroup
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
