"""The function Lambda calls: a batch of records through the application's bus.

Contract of the function :func:`lambda_handler` returns, for one invocation:

- The bus is entered once per execution environment, at the first invocation, in an
  event loop of its own, and stays entered across warm invocations, so a transport's
  clients and a database's pool are made once, as Lambda advises for SDK clients;
  :meth:`LambdaFunction.close` leaves it. On asyncio that loop is driven on the calling
  thread and does not run between invocations; on trio it runs in a thread of its own
  (:mod:`messagebus.aws_lambda._loop`). Each invocation runs in that loop and returns
  only when its records, their follow-ups and the outbox flush are done: nothing the
  invocation started is left running when Lambda freezes the process. The bus's own
  background service (the outbox relay's poll) idles in between: the drain before each
  return leaves it no round in progress.
- Each record is decoded (see :mod:`messagebus.aws_lambda._records` for the shapes) and
  handed to :meth:`MessageBus.handle_delivered`, exactly as a
  :class:`~messagebus.Worker` hands a delivery: routing, middleware, idempotency, retry
  policies, dead letters and follow-ups are the bus's. A record that can never succeed
  (not JSON, not an envelope, an unknown type or version, a foreign record) is recorded
  as a dead letter with the reason and counts as handled: it must not come back.
- What a failure means here. A handler that fails is retried by its policy in the
  invocation (short waits), then becomes a dead letter, as in a worker: the record is
  handled. A retry whose delay is too long to wait out in the invocation (the retry
  middleware's ``max_inline_delay``) is deferred: on a bus with a transport whose queue
  takes delays, a delayed copy for the failed handler alone goes to the service's queue
  (as a worker does) and the record is handled; otherwise the record is *failed*, and
  SQS delivers it again after its visibility timeout (the delay is the queue's, and the
  other subscribers of an event run again: make them idempotent). On a record received
  more than once, the attempt number is raised by the receives before this one
  (``ApproximateReceiveCount - 1``), so the policy gives up after its attempts, whichever
  way they were spent, and the record ends as a dead letter rather than cycling. A record
  whose follow-ups the transport did not take is failed too.
- SQS batches return the partial batch response, ``{"batchItemFailures": [{"itemIdentifier":
  messageId}, ...]}``, listing failed records only (the event source mapping must have
  ``ReportBatchItemFailures``). With ``raise_on_batch_failure`` a batch in which every
  record failed raises :class:`~messagebus.BatchFailedError` instead (Lambda then counts an error).
  SNS and EventBridge invocations have no such response: a failed record raises
  :class:`~messagebus.BatchFailedError`, so Lambda's asynchronous retries run the event again; they
  return None otherwise. On those, with no queue to defer to, retries wait in-process.
- FIFO queues (records with ``MessageGroupId``): the records of one group are handled in
  order; once one fails, the later records of its group are not started and are failed,
  while other groups carry on.
- The deadline: idempotency leases taken in the invocation are capped at its remaining
  time (:func:`messagebus.extension.time_left`), so a claim never outlives the process
  that holds it. A record is started only while ``context.get_remaining_time_in_millis()``
  is above ``margin`` seconds; records not started are failed (they come back, nothing
  is lost). Records still running when only ``margin`` remains (measured from the start)
  are cancelled and failed. The margin pays for the outbox flush and the bus's exit.
- Before returning, the outbox relay (a bus with an outbox) drains: it flushes what is
  claimable and waits for the rounds its background loop had started (then flushes
  again), so messages committed by this invocation's handlers leave now, not at the next
  one, and no delivery is left half done when Lambda freezes the process.
- ``concurrency`` above 1 runs that many records at once: records of a standard queue
  each on their own, FIFO groups each in order. At 1 (the default) the records run one
  after the other in arrival order, with no task per record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import attrs

from messagebus._deadline import deadline
from messagebus._envelope import Envelope
from messagebus._errors import (
    BatchFailedError,
    DecodeError,
    InvalidArgumentError,
    TransportError,
)
from messagebus._log import get_logger
from messagebus._messages import Message
from messagebus._received import Received, receiving
from messagebus._redelivery import Redelivery, collecting, send_copies
from messagebus.aws_lambda._loop import Loop, PortalLoop, ResidentLoop
from messagebus.aws_lambda._records import TEXT_SOURCES, Record, Unreadable, records_of
from messagebus.aws_lambda._router import EventRouter
from messagebus.dead_letters import DeadLetter

if TYPE_CHECKING:
    from messagebus._bus import MessageBus

__all__ = ["LambdaContext", "LambdaFunction", "lambda_handler"]

Backend = Literal["asyncio", "trio"]

# The ``messaging.system`` a record's source names, for tracing (``received_from``).
_SYSTEMS = {
    "sqs": "aws_sqs",
    "sns": "aws_sns",
    "eventbridge": "aws_eventbridge",
    "s3": "aws_s3",
    "dynamodb": "aws_dynamodb",
}


class LambdaContext(Protocol):
    """What the entry point reads of Lambda's context object."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


_DONE, _FAILED = True, False


def lambda_handler(
    bus: MessageBus,
    *,
    margin: float = 2.0,
    concurrency: int = 1,
    raise_on_batch_failure: bool = False,
    backend: Backend = "asyncio",
    router: EventRouter | None = None,
    logger: Any = None,
) -> LambdaFunction:
    """Return the function Lambda calls with ``(event, context)``; see the module.

    Make it at import time, beside the bus: ``handler = lambda_handler(bus)``, and set
    the function's handler to ``module.handler``.

    Args:
        bus: the application's bus, with its handlers registered (not entered: each
            invocation enters it).
        margin: seconds kept back from the deadline: no record starts with less left,
            and records still running then are cancelled.
        concurrency: records handled at once (FIFO groups stay in order).
        raise_on_batch_failure: raise :class:`~messagebus.BatchFailedError` when every record of an
            SQS batch failed, instead of reporting them all.
        backend: the async library the invocation runs on: ``"asyncio"`` (the default,
            and the only one the SQS transport runs on) or ``"trio"``.
        router: the rules that bind records which are not our envelope (S3, DynamoDB
            Streams, other EventBridge sources) to the bus's event types; without it,
            such records are dead letters.
        logger: a structlog logger for the entry point's own lines; if None, the
            library's (see :mod:`messagebus._log`: the application's structlog if it
            configured one, else :mod:`logging`).

    Raises:
        InvalidArgumentError: ``margin`` is negative or ``concurrency`` below 1.
    """
    if margin < 0 or concurrency < 1:
        raise InvalidArgumentError(
            f"margin must be >= 0 and concurrency >= 1: {margin!r}, {concurrency!r}"
        )
    log = get_logger("messagebus.aws_lambda") if logger is None else logger
    batch = _Batch(bus, margin, concurrency, log, EventRouter() if router is None else router)
    return LambdaFunction(batch, raise_on_batch_failure, backend)


class LambdaFunction:
    """The function Lambda calls, ``handler(event, context)``; see the module.

    Made by :func:`lambda_handler`. The first call enters the bus in an event loop of
    its own that later calls reuse; :meth:`close` leaves the bus and stops that loop
    (tests; Lambda simply ends the process).
    """

    def __init__(self, batch: _Batch, raise_on_batch_failure: bool, backend: Backend) -> None:
        self._batch = batch
        self._raise = raise_on_batch_failure
        self._backend = backend
        self._loop: Loop | None = None

    def __call__(self, event: Any, context: LambdaContext) -> dict[str, Any] | None:
        """Handle one invocation's ``event``; return the partial batch response for SQS."""
        answer, records = records_of(event)
        loop = self._loop
        if loop is None:
            loop = self._running()
        outcomes = loop.run(self._batch.run, records, context, loop.move_on_after)
        failed = (
            [
                record.item_id or "?"
                for record, done in zip(records, outcomes, strict=True)
                if not done
            ]
            if _FAILED in outcomes
            else []
        )
        if answer == "none":
            if failed:
                raise BatchFailedError(failed)
            return None
        if answer == "dynamodb":
            # Lambda checkpoints at the first failure and sends the stream from there again.
            failed = failed[:1]
        if failed and self._raise and len(failed) == len(records):
            raise BatchFailedError(failed)
        return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}

    def close(self) -> None:
        """Leave the bus and stop its event loop; the next call enters it again."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.leave()

    def _running(self) -> Loop:
        """Enter the bus in a new loop (the first call, or the first after :meth:`close`)."""
        self._batch.router.check(self._batch.bus.registry)
        loop = ResidentLoop() if self._backend == "asyncio" else PortalLoop(self._backend)
        self._loop = loop
        try:
            loop.enter(self._batch.bus)
        except BaseException:
            self.close()
            raise
        return loop


@attrs.define
class _Batch:
    """One invocation's work on ``bus``: records in order or in lanes, under the deadline."""

    bus: MessageBus
    margin: float
    concurrency: int
    log: Any
    router: EventRouter
    _received: dict[tuple[str, str], Received] = attrs.field(factory=dict, init=False)
    """The :class:`Received` of first deliveries, one per queue and source: made once."""

    async def run(
        self,
        records: list[Record],
        context: LambdaContext,
        move_on_after: Callable[[float], AbstractContextManager[object]],
    ) -> list[bool]:
        """Handle ``records``; return for each whether it is done (True) or failed.

        ``move_on_after`` is the loop's ``anyio.move_on_after``.
        """
        # Idempotency claims made now must not outlive the invocation (see _deadline).
        with deadline(lambda: context.get_remaining_time_in_millis() / 1000):
            outcomes = [_FAILED] * len(records)
            budget = context.get_remaining_time_in_millis() / 1000 - self.margin
            with move_on_after(budget):
                if self.concurrency == 1:
                    await self._in_order(records, outcomes, context)
                else:
                    await self._in_lanes(records, outcomes, context)
            relay = self.bus.relay
            if relay is not None:
                with move_on_after(context.get_remaining_time_in_millis() / 2000):
                    await relay.drain()
            return outcomes

    async def _in_order(
        self, records: list[Record], outcomes: list[bool], context: LambdaContext
    ) -> None:
        """Handle ``records`` one at a time, in order; a failure holds back its FIFO group."""
        if not records:
            return
        # One record at a time needs no task per lane: the records of a FIFO group are in
        # order already, and a group that failed is skipped from there on. The context
        # the handlers read (where the record came from, whether a retry may be
        # deferred) is set once for the batch, for every record that shares it.
        held: set[str] = set()
        margin = self.margin * 1000
        copies = self._can_copy()
        first = records[0]
        queue, source, identified = first.queue, first.source, first.item_id is not None
        with (
            collecting(enabled=copies or identified) as redeliveries,
            receiving(self._received_of(first)),
        ):
            for index, record in enumerate(records):
                group = record.group
                if group is not None and group in held:
                    continue  # behind a failed record of its group: failed, it comes back
                if context.get_remaining_time_in_millis() <= margin:
                    return  # not started: failed, it comes back
                # The batch's context fits a first delivery from the same place (a
                # redelivery has its own receive count), alike in having an item id.
                fits = (
                    record.receive_count == 1
                    and record.queue == queue
                    and record.source == source
                    and (record.item_id is not None) == identified
                )
                if await self._one(record, copies, redeliveries if fits else None):
                    outcomes[index] = _DONE
                elif group is not None:
                    held.add(group)

    async def _in_lanes(
        self, records: list[Record], outcomes: list[bool], context: LambdaContext
    ) -> None:
        """Handle ``concurrency`` records at once; a FIFO group is one lane, in order."""
        # Records of one FIFO group share a lane, in order; any other record is alone.
        lanes: dict[object, list[int]] = {}
        for index, record in enumerate(records):
            lanes.setdefault(index if record.group is None else record.group, []).append(index)
        limiter = anyio.CapacityLimiter(self.concurrency)
        async with anyio.create_task_group() as tasks:
            for lane in lanes.values():
                tasks.start_soon(self._lane, lane, records, outcomes, context, limiter)

    async def _lane(
        self,
        lane: list[int],
        records: list[Record],
        outcomes: list[bool],
        context: LambdaContext,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        """Handle ``lane``'s records in order; stop at the first failure or the deadline."""
        copies = self._can_copy()
        for index in lane:
            async with limiter:
                # Asked once the record has its slot: a lane may wait long for one, and
                # the deadline is about when a record starts, not when it queued.
                if context.get_remaining_time_in_millis() <= self.margin * 1000:
                    return  # not started: failed, it comes back
                outcomes[index] = await self._one(records[index], copies, None)
            if not outcomes[index]:
                return  # the later records of a FIFO group wait behind this one

    async def _one(self, record: Record, copies: bool, shared: list[Redelivery] | None) -> bool:
        """Handle one record; True when it must not come back.

        ``copies``: whether deferred retries can go back to the service's queue as
        delayed copies (:meth:`_can_copy`). ``shared``: the redeliveries list of the
        context set for the whole batch when it fits this record (see ``_in_order``);
        None to set this record's own.
        """
        bus = self.bus
        codec = bus.codec
        payload = record.payload
        contents: Sequence[Envelope[Message] | Unreadable]
        if type(payload) is str and record.source in TEXT_SOURCES:
            # The usual case, our envelope as the whole body: decoded straight from the
            # text. Anything else (a wrapping, a foreign event, a body that is not an
            # envelope) fails that and is read by Record.contents, which says what it is.
            try:
                contents = (codec.decode(payload),)
            except DecodeError:
                contents = record.contents(codec, self.router)
        else:
            contents = record.contents(codec, self.router)
        for content in contents:
            if isinstance(content, Unreadable):
                letter = DeadLetter.from_undecodable(
                    content.text.encode(), record.queue, content.error
                )
                await bus.record_dead_letter(letter)
                continue
            try:
                if shared is None:
                    redeliveries = await self._delivered(record, content, copies)
                else:
                    shared.clear()  # the previous record's, handled already
                    await bus.handle_delivered(content)
                    redeliveries = shared
                if redeliveries:
                    if not copies:
                        return _FAILED  # what it carried after this runs when it comes back
                    await send_copies(
                        bus.running_transport(), bus.codec, bus.router.service, redeliveries
                    )
            except TransportError as error:
                self.log.warning(
                    "follow-ups not handed on; record failed",
                    queue=record.queue,
                    error=f"{type(error).__qualname__}: {error}",
                )
                return _FAILED
        return _DONE

    async def _delivered(
        self, record: Record, envelope: Envelope[Message], copies: bool
    ) -> list[Redelivery]:
        """Run ``envelope`` through the bus in ``record``'s own context; return its redeliveries.

        Raises:
            TransportError: the follow-ups could not be handed on.
        """
        if record.receive_count > 1:
            envelope = envelope.replace(attempt=envelope.attempt + record.receive_count - 1)
        # A queue's or stream's record can always come back (failed); a direct
        # invocation only through a delayed copy, else its retries wait here.
        with (
            collecting(enabled=copies or record.item_id is not None) as redeliveries,
            receiving(self._received_of(record)),
        ):
            await self.bus.handle_delivered(envelope)
        return redeliveries

    def _received_of(self, record: Record) -> Received:
        """Return where ``record`` came from; one object per queue for first deliveries."""
        if record.receive_count > 1:
            return Received(record.queue, _system(record), record.receive_count)
        key = (record.queue, record.source)
        received = self._received.get(key)
        if received is None:
            received = self._received[key] = Received(record.queue, _system(record), 1)
        return received

    def _can_copy(self) -> bool:
        """Whether deferred retries can go back to the service's queue as delayed copies."""
        transport = self.bus.transport
        if transport is None:
            return False
        return not self.bus.router.queue.fifo or transport.capabilities.fifo_delay


def _system(record: Record) -> str:
    """Return the ``messaging.system`` of the service a record came through."""
    return _SYSTEMS.get(record.source, "aws_lambda")
