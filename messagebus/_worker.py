"""The worker: runs a service's handlers on what arrives in its queue.

Contract:

- It receives from the bus's input queue only as many messages as it has free slots
  (``concurrency``), so messages it cannot start on stay in the queue for other
  workers: backpressure without a buffer. It waits until a ``batch`` fits, or half
  the slots are free when ``concurrency`` is less than twice ``batch``, so receives
  come in batches without long runs holding the queue back.
- Each delivery is decoded with the bus's codec. A body that does not decode (bad JSON,
  an unknown type or version, data that does not fit) is recorded in the bus's dead
  letter store with the reason and acknowledged: one poison message never blocks the
  queue, and nothing is lost.
- A decoded message goes to :meth:`MessageBus.handle_delivered`: each handler run is
  isolated (a failure after its retry policy is a dead letter), follow-ups are handed
  to the transport, and then the delivery is acknowledged. A retry whose delay is too
  long to wait out in a slot goes back to the queue as a delayed copy for the failed
  handler alone (:mod:`messagebus._redelivery`), before the ack. If handing follow-ups on
  fails, the delivery is returned to the queue (after ``backoff``) to run again, unless
  no retry can cure it: a follow-up too large for the transport
  (:class:`~messagebus.MessageTooLargeError`) or with no JSON form
  (:class:`~messagebus.EncodeError`) makes the message a dead letter at once (handler
  ``"<follow-ups>"``, the error as its reason), and the delivery is acknowledged.
- No body stops the worker: every body either decodes or is a dead letter, whatever
  it holds (the codec raises nothing but ``DecodeError``).
- While a handler runs, a heartbeat (:func:`~messagebus.transports.keep_visible`, in
  a task beside the handler's) extends the delivery's
  visibility at half the visibility timeout, so a long handler keeps its message.
- :meth:`Worker.stop` stops receiving at once (a waiting receive is cancelled, which
  loses nothing), lets in-flight handlers finish within ``grace`` seconds, then
  cancels the rest and returns their messages to the queue with visibility 0.
- An unreachable transport makes the receive loop back off (``backoff``) and resume;
  it never ends the worker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from messagebus._clock import Clock, TimeSource, sleep_of
from messagebus._errors import (
    DecodeError,
    DeliveryExpiredError,
    EncodeError,
    InvalidArgumentError,
    MessageTooLargeError,
    TransportError,
)
from messagebus._log import get_logger
from messagebus._received import Received, receiving
from messagebus._redelivery import collecting, send_copies
from messagebus._retry_policy import ExponentialBackoff
from messagebus.dead_letters import DeadLetter
from messagebus.transports._heartbeat import keep_visible
from messagebus.transports._protocol import Delivery, NamedTransport

if TYPE_CHECKING:
    from messagebus._bus import MessageBus

__all__ = ["FOLLOW_UPS", "Worker", "serve"]

FOLLOW_UPS = "<follow-ups>"
"""The handler name of a dead letter whose handlers ran but whose follow-ups can never
be sent (too large for the transport, or not encodable)."""

# Errors of handing follow-ups on that no retry can cure.
_NEVER_SENDABLE = (MessageTooLargeError, EncodeError)


class Worker:
    """Consumes the input queue of ``bus`` (which must have a transport); see the module.

    Run it while the bus runs: ``async with bus: await worker.run()``, or start it in a
    task group with ``await tasks.start(worker.run)`` (it reports started once it is
    receiving). :func:`serve` does both and stops on SIGTERM/SIGINT.

    Args:
        bus: the service's bus.
        concurrency: how many messages are handled at once, at most.
        grace: seconds in-flight handlers get to finish after :meth:`stop`.
        wait: seconds one receive waits for messages (long polling; SQS: up to 20).
        batch: the most messages asked for in one receive (SQS: up to 10).
        visibility_timeout: overrides the queue's visibility timeout for received
            messages; the heartbeat extends by it.
        backoff: the waits after an unreachable transport, and before a message whose
            follow-ups could not be handed on is visible again.
        sleep: how to wait (``anyio.sleep``); tests pass a fake.
        clock: a :class:`~messagebus.extension.Clock` (a test's fake clock) for the
            visibility heartbeat and the waits; ``sleep``, if given, still waits.
    """

    def __init__(
        self,
        bus: MessageBus,
        *,
        concurrency: int = 16,
        grace: float = 30.0,
        wait: float = 20.0,
        batch: int = 10,
        visibility_timeout: float | None = None,
        backoff: ExponentialBackoff | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        logger: Any = None,
        clock: Clock | None = None,
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise InvalidArgumentError("concurrency and batch must be at least 1")
        self.bus = bus
        self.concurrency = concurrency
        self.grace = grace
        self.wait = wait
        self.batch = batch
        self.visibility_timeout = visibility_timeout
        self.backoff = ExponentialBackoff(0.1, 2.0, 30.0) if backoff is None else backoff
        self._sleep = sleep_of(clock, sleep)
        self._clock: TimeSource = time.monotonic if clock is None else clock
        self._log = get_logger("messagebus.worker") if logger is None else logger
        self._in_flight = 0
        self._changed = anyio.Event()
        self._receiving: anyio.CancelScope | None = None
        self._stopping = False
        self._can_delay = True
        self._system = "messagebus"
        self._address = ""
        self.received = 0
        """Messages received so far."""
        self.acked = 0
        """Messages handled and acknowledged (dead-lettered ones included)."""
        self.returned = 0
        """Messages returned to the queue (follow-ups not handed on, or cancelled)."""

    @property
    def in_flight(self) -> int:
        """Messages being handled right now."""
        return self._in_flight

    def stop(self) -> None:
        """Stop receiving now; in-flight handlers get ``grace`` seconds to finish."""
        self._stopping = True
        if self._receiving is not None:
            self._receiving.cancel()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive and handle messages until :meth:`stop`; return once drained."""
        transport = self.bus.running_transport()
        queue = self.bus.router.service
        # A FIFO queue that takes no per-message delay keeps retries in-process.
        self._can_delay = not self.bus.router.queue.fifo or transport.capabilities.fifo_delay
        self._system = transport.capabilities.system
        # The broker's name of the queue, for telemetry (``messaging.destination.name``).
        self._address = (
            transport.address(queue, fifo=self.bus.router.queue.fifo)
            if isinstance(transport, NamedTransport)
            else queue
        )
        visibility = (
            self.bus.router.queue.visibility_timeout
            if self.visibility_timeout is None
            else self.visibility_timeout
        )
        async with anyio.create_task_group() as handlers:
            with anyio.CancelScope() as self._receiving:
                if self._stopping:
                    self._receiving.cancel()
                task_status.started()
                failures = 0
                while True:
                    await self._free_slot()
                    try:
                        deliveries = await transport.receive(
                            queue,
                            max_messages=min(self.batch, self.concurrency - self._in_flight),
                            wait=self.wait,
                            visibility_timeout=self.visibility_timeout,
                        )
                    except TransportError as error:
                        failures += 1
                        delay = self.backoff.delay(failures)
                        self._log.warning(
                            "receive failed; backing off",
                            queue=queue,
                            error=f"{type(error).__qualname__}: {error}",
                            delay_s=round(delay, 3),
                        )
                        await self._sleep(delay)
                        continue
                    failures = 0
                    for delivery in deliveries:
                        self._in_flight += 1
                        self.received += 1
                        handlers.start_soon(self._handle, handlers, delivery, queue, visibility)
            with anyio.move_on_after(self.grace):
                while self._in_flight:
                    await self._next_change()
            # Whatever is still running is cancelled; each returns its message (see _handle).
            handlers.cancel_scope.cancel()

    async def _free_slot(self) -> None:
        # Wait for room for a batch: receiving the odd one or two messages as slots free
        # up one by one costs a request each (0.4 requests per message on SQS at
        # concurrency 20, measured, against 0.3 with full batches). At most half the
        # slots, though: long runs (an ordered subscriber waiting its turn) must not
        # stop the worker from receiving the message they wait for.
        room = max(1, min(self.batch, self.concurrency // 2))
        while self.concurrency - self._in_flight < room:
            await self._next_change()

    async def _next_change(self) -> None:
        await self._changed.wait()

    def _done(self) -> None:
        self._in_flight -= 1
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _handle(
        self,
        handlers: anyio.abc.TaskGroup,
        delivery: Delivery,
        queue: str,
        visibility: float,
    ) -> None:
        bus = self.bus
        try:
            try:
                envelope = bus.codec.decode(delivery.body)
            except DecodeError as error:
                await bus.record_dead_letter(
                    DeadLetter.from_undecodable(delivery.body, queue, error)
                )
            else:
                with collecting(enabled=self._can_delay) as redeliveries:
                    # The heartbeat runs in the worker's own task group, beside this task:
                    # no task group per message (cheaper, and no scope to unwind here).
                    beating = anyio.CancelScope()
                    handlers.start_soon(self._beat, beating, delivery, visibility)
                    try:
                        received = Received(self._address, self._system, delivery.receive_count)
                        with receiving(received):
                            await bus.handle_delivered(envelope)
                    except _NEVER_SENDABLE as error:
                        # Redelivery would repeat the handlers' side effects and fail the
                        # same way: record why, once, and settle the delivery.
                        await bus.record_dead_letter(
                            DeadLetter.from_failure(bus.codec, envelope, FOLLOW_UPS, error)
                        )
                    finally:
                        beating.cancel()
                if redeliveries:
                    await send_copies(bus.running_transport(), bus.codec, queue, redeliveries)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._return(delivery, 0.0)
            raise
        except TransportError as error:
            self._log.warning(
                "follow-ups not handed on; message returned to the queue",
                queue=queue,
                error=f"{type(error).__qualname__}: {error}",
            )
            with anyio.CancelScope(shield=True):
                await self._return(delivery, self.backoff.delay(delivery.receive_count))
        else:
            try:
                await delivery.ack()
            except TransportError as error:
                # The message comes back by itself after its visibility: handled twice.
                self._log.warning(
                    "ack failed; the message will be delivered again",
                    queue=queue,
                    error=f"{type(error).__qualname__}: {error}",
                )
            else:
                self.acked += 1
        finally:
            self._done()

    async def _beat(self, scope: anyio.CancelScope, delivery: Delivery, visibility: float) -> None:
        with scope:
            await keep_visible(delivery, visibility, clock=self._clock, sleep=self._sleep)

    async def _return(self, delivery: Delivery, delay: float) -> None:
        try:
            await delivery.nack(delay)
        except DeliveryExpiredError:
            pass  # visible again already: nothing to give back
        except TransportError as error:
            self._log.warning(
                "could not return a message; it reappears after its timeout",
                error=f"{type(error).__qualname__}: {error}",
            )
        self.returned += 1


async def serve(
    bus: MessageBus,
    *,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    provision: bool = False,
    ready: Callable[[], Awaitable[object]] | None = None,
    **worker_options: Any,
) -> Worker:
    """Run ``bus`` with a :class:`Worker` until one of ``signals`` arrives; return the worker.

    Enters the bus (which enters its transport), provisions its topology first if
    ``provision``, awaits ``ready()`` once the worker is receiving, and on the first
    signal stops the worker gracefully (see :meth:`Worker.stop`): it returns once the
    worker has drained. ``worker_options`` go to the :class:`Worker`.
    """
    worker = Worker(bus, **worker_options)
    async with bus:
        if provision:
            await bus.provision()
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(*signals) as received:
                    async for _ in received:
                        worker.stop()
                        return

            async def work(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                await worker.run(task_status=task_status)
                # Stopped and drained: the signal watcher has nothing left to do.
                tasks.cancel_scope.cancel()

            tasks.start_soon(stop_on_signal)
            await tasks.start(work)
            if ready is not None:
                await ready()
    return worker
