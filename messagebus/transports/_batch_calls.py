"""Batch calls shared by the AWS transports (SQS, SNS, EventBridge): one call, its retries.

AWS's batch APIs (SendMessageBatch, PublishBatch, DeleteMessageBatch, PutEvents) take up
to 10 entries and answer per entry. Each transport turns its API's answer into the
``Failed`` shape of SQS (``Id``, ``Code``, ``Message``, ``SenderFault``), and then:

- :func:`call_batch` makes one call and retries, entry by entry, what AWS failed for its
  own reasons (``SenderFault`` false); what it failed for ours is reported.
- :func:`raise_failures` turns what a send left undone into the contract's errors.
- :class:`WindowTimer` flushes a batch that does not fill up once its window has passed.
- :class:`Spawner` is where calls made for other tasks run (an anyio task group, or the
  SQS transport's asyncio :class:`~messagebus.transports.sqs._background.Background`).

:mod:`messagebus.transports._coalesce` builds the sharing of calls between concurrent
senders on these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import anyio
import attrs

from messagebus._errors import SendError, TransportError
from messagebus.transports._protocol import Outgoing

__all__ = [
    "CONCURRENT_BATCHES",
    "MAX_ENTRIES",
    "BatchOutcome",
    "Failures",
    "Spawner",
    "WindowTimer",
    "call_batch",
    "copy_error",
    "raise_failures",
]

E = TypeVar("E", bound=Mapping[str, object])
Failures = Sequence[Mapping[str, object]]

MAX_ENTRIES = 10
CONCURRENT_BATCHES = 8
ENTRY_ATTEMPTS = 3
ENTRY_RETRY_DELAY = 0.05


class Spawner(Protocol):
    """What starts the batching's calls: an anyio task group, or the SQS ``Background``."""

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> object: ...


@attrs.define(eq=False)
class WindowTimer:
    """Calls ``flush`` ``window`` seconds after :meth:`start`, in a task of ``task_group``.

    Starting a running timer changes nothing (the window counts from the first message
    waiting); :meth:`stop` cancels the wait, and ``flush`` then runs at once (the owner,
    closing, has usually flushed already: ``flush`` must do nothing when nothing waits).
    """

    task_group: Spawner
    window: float
    flush: Callable[[], None]
    _scope: anyio.CancelScope | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        """Start the window unless it is running."""
        if self._scope is None:
            self._scope = anyio.CancelScope()
            self.task_group.start_soon(self._run, self._scope)

    def stop(self) -> None:
        """Cut the window short."""
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(self.window)
        if self._scope is scope:
            self._scope = None
        self.flush()


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
    call: Callable[[list[E]], Awaitable[Failures]],
    entries: list[E],
    *,
    attempts: int = ENTRY_ATTEMPTS,
    retry_delay: float = ENTRY_RETRY_DELAY,
) -> BatchOutcome:
    """Make one batch call; retry the entries AWS failed on its side, ``attempts`` in all.

    ``call`` sends the entries and returns AWS's ``Failed`` list (or raises a
    :class:`TransportError` for the whole call). Entries failed with ``SenderFault`` are
    final at once: sending them again cannot help. Retries wait ``retry_delay`` seconds,
    doubling each time (AWS asks for a backoff).
    """
    failed: dict[str, str] = {}
    pending = entries
    for attempt in range(attempts):
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
            if not failure.get("SenderFault") and attempt + 1 < attempts:
                retry.append(entry)
        if not retry:
            break
        for entry in retry:
            del failed[str(entry["Id"])]
        pending = retry
        await anyio.sleep(retry_delay * 2**attempt)
    return BatchOutcome(failed)


def copy_error(error: TransportError) -> TransportError:
    """Return a fresh instance of ``error`` with the same cause: one per waiting task.

    Raising one exception object in several tasks would tangle their tracebacks.
    """
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy


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
