"""The function Lambda calls: a batch of records through the application's bus.

Contract of the function :func:`lambda_handler` returns, for one invocation:

- The bus is entered once per execution environment, at the first invocation, in an
  event loop of its own (an anyio blocking portal: a thread running the loop), and stays
  entered across warm invocations, so a transport's clients and a database's pool are
  made once, as Lambda advises for SDK clients; :meth:`LambdaFunction.close` leaves it.
  Each invocation runs in that loop and returns only when its records, their follow-ups
  and the outbox flush are done: nothing the invocation started is left running when
  Lambda freezes the process. The bus's own background service (the outbox relay's
  poll) idles in between: the drain before each return leaves it no round in progress.
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
  each on their own, FIFO groups each in order.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import attrs
import structlog
from anyio.from_thread import BlockingPortal, start_blocking_portal

from messagebus._deadline import deadline
from messagebus._envelope import Envelope
from messagebus._errors import BatchFailedError, InvalidArgumentError, TransportError
from messagebus._messages import Message
from messagebus._received import Received, receiving
from messagebus._redelivery import collecting, send_copies
from messagebus.aws_lambda._records import Record, Unreadable, records_of
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
        logger: a structlog logger for the entry point's own lines.

    Raises:
        InvalidArgumentError: ``margin`` is negative or ``concurrency`` below 1.
    """
    if margin < 0 or concurrency < 1:
        raise InvalidArgumentError(
            f"margin must be >= 0 and concurrency >= 1: {margin!r}, {concurrency!r}"
        )
    log = structlog.get_logger("messagebus.aws_lambda") if logger is None else logger
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
        self._portal: AbstractContextManager[BlockingPortal] | None = None
        self._call: BlockingPortal | None = None
        self._bus: AbstractContextManager[Any] | None = None

    def __call__(self, event: Any, context: LambdaContext) -> dict[str, Any] | None:
        """Handle one invocation's ``event``; return the partial batch response for SQS."""
        answer, records = records_of(event)
        outcomes = self._running().call(self._batch.run, records, context)
        failed = [
            record.item_id or "?"
            for record, done in zip(records, outcomes, strict=True)
            if not done
        ]
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
        bus, self._bus = self._bus, None
        portal, self._portal = self._portal, None
        self._call = None
        try:
            if bus is not None:
                bus.__exit__(None, None, None)
        finally:
            if portal is not None:
                portal.__exit__(None, None, None)

    def _running(self) -> BlockingPortal:
        if self._call is None:
            self._batch.router.check(self._batch.bus.registry)
            self._portal = start_blocking_portal(self._backend)
            self._call = self._portal.__enter__()
            try:
                self._bus = self._call.wrap_async_context_manager(self._batch.bus)
                self._bus.__enter__()
            except BaseException:
                self.close()
                raise
        return self._call


@attrs.define
class _Batch:
    """One invocation's work on ``bus``: records in lanes, under the deadline."""

    bus: MessageBus
    margin: float
    concurrency: int
    log: Any
    router: EventRouter

    async def run(self, records: list[Record], context: LambdaContext) -> list[bool]:
        # Idempotency claims made now must not outlive the invocation (see _deadline).
        with deadline(lambda: context.get_remaining_time_in_millis() / 1000):
            return await self._run(records, context)

    async def _run(self, records: list[Record], context: LambdaContext) -> list[bool]:
        outcomes = [_FAILED] * len(records)
        # Records of one FIFO group share a lane, in order; any other record is alone.
        lanes: dict[object, list[int]] = {}
        for index, record in enumerate(records):
            lanes.setdefault(index if record.group is None else record.group, []).append(index)
        budget = context.get_remaining_time_in_millis() / 1000 - self.margin
        with anyio.move_on_after(budget):
            if self.concurrency == 1:
                for lane in lanes.values():
                    await self._lane(lane, records, outcomes, context, None)
            else:
                limiter = anyio.CapacityLimiter(self.concurrency)
                async with anyio.create_task_group() as tasks:
                    for lane in lanes.values():
                        tasks.start_soon(self._lane, lane, records, outcomes, context, limiter)
        relay = self.bus.relay
        if relay is not None:
            with anyio.move_on_after(context.get_remaining_time_in_millis() / 2000):
                await relay.drain()
        return outcomes

    async def _lane(
        self,
        lane: list[int],
        records: list[Record],
        outcomes: list[bool],
        context: LambdaContext,
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        """Handle ``lane``'s records in order; stop at the first failure or the deadline."""
        for index in lane:
            if context.get_remaining_time_in_millis() <= self.margin * 1000:
                return  # not started: failed, it comes back
            if limiter is None:
                outcomes[index] = await self._one(records[index])
            else:
                async with limiter:
                    outcomes[index] = await self._one(records[index])
            if not outcomes[index]:
                return  # the later records of a FIFO group wait behind this one

    async def _one(self, record: Record) -> bool:
        """Handle one record; True when it must not come back."""
        bus = self.bus
        for content in record.contents(bus.codec, self.router):
            if isinstance(content, Unreadable):
                letter = DeadLetter.from_undecodable(
                    content.text.encode(), record.queue, content.error
                )
                await bus.record_dead_letter(letter)
            elif not await self._handled(record, content):
                return _FAILED  # what this record carried after it runs when it comes back
        return _DONE

    async def _handled(self, record: Record, envelope: Envelope[Message]) -> bool:
        """Run ``envelope`` through the bus; True when its record need not come back for it."""
        bus = self.bus
        if record.receive_count > 1:
            envelope = envelope.replace(attempt=envelope.attempt + record.receive_count - 1)
        copies = self._can_copy()
        try:
            # A queue's or stream's record can always come back (failed); a direct
            # invocation only through a delayed copy, else its retries wait here.
            with (
                collecting(enabled=copies or record.item_id is not None) as redeliveries,
                receiving(
                    Received(
                        record.queue,
                        _SYSTEMS.get(record.source, "aws_lambda"),
                        record.receive_count,
                    )
                ),
            ):
                await bus.handle_delivered(envelope)
            if redeliveries:
                if not copies:
                    return _FAILED
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

    def _can_copy(self) -> bool:
        """Whether deferred retries can go back to the service's queue as delayed copies."""
        transport = self.bus.transport
        if transport is None:
            return False
        return not self.bus.router.queue.fifo or transport.capabilities.fifo_delay


def _system(record: Record) -> str:
    """Return the ``messaging.system`` of the service a record came through."""
    return _SYSTEMS.get(record.source, "aws_lambda")
