"""Keep a delivery invisible while a long handler runs: a visibility heartbeat.

Any transport's :class:`~messagebus.extension.Delivery` works: the heartbeat only calls
:meth:`Delivery.extend`. Use it around the handler::

    async with visibility_heartbeat(delivery, visibility=30.0):
        await handle(delivery)
    await delivery.ack()

Every ``visibility / 2`` seconds it extends the delivery by ``visibility`` seconds from
now, so one lost or slow extension still leaves half a timeout of margin. Extensions
never reach past ``max_lifetime`` (SQS: 12 hours) from ``received_at``, because SQS
refuses those; once the cap is reached the heartbeat stops, and the message reappears
when its visibility runs out. If the receipt is lost (:class:`DeliveryExpiredError`:
another receiver may have the message now) it logs that and stops; a failed extension
for another transport error is logged and tried again at the next beat. It never raises
into the handler: the handler's work goes on, and its ack will report the lost receipt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from messagebus._clock import TimeSource, monotonic_time, sleep_of
from messagebus._errors import DeliveryExpiredError, InvalidArgumentError, TransportError
from messagebus._log import get_logger
from messagebus.transports._protocol import Delivery

__all__ = ["MAX_LIFETIME", "keep_visible", "visibility_heartbeat"]

MAX_LIFETIME = 12 * 3600.0

_log = get_logger("messagebus.transports.heartbeat")


@asynccontextmanager
async def visibility_heartbeat(
    delivery: Delivery,
    visibility: float,
    *,
    received_at: float | None = None,
    max_lifetime: float = MAX_LIFETIME,
    clock: TimeSource = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> AsyncIterator[None]:
    """Extend ``delivery`` every ``visibility / 2`` s while the block runs; see the module.

    Args:
        delivery: what to keep invisible.
        visibility: seconds each extension adds from now (the queue's timeout, say).
        received_at: ``clock()`` when the message was first received (default: now);
            the 12 h cap counts from it.
        max_lifetime: the cap in seconds.
        clock: the time source (seconds; monotonic by default), or a
            :class:`~messagebus.extension.Clock` (a fake clock) that also measures the waits.
        sleep: how to wait; None: the clock's if it is a ``Clock``, else ``anyio.sleep``.
    """
    if visibility <= 0:
        raise InvalidArgumentError("visibility must be positive")
    clock, sleep = monotonic_time(clock), sleep_of(clock, sleep)
    start = clock() if received_at is None else received_at
    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(_beat, delivery, visibility, start + max_lifetime, clock, sleep)
        try:
            yield
        except Exception as error:  # noqa: BLE001  # re-raised below, as it is
            failure = error
        finally:
            group.cancel_scope.cancel()
    # Raised outside the task group, so the block's error reaches the caller as it is,
    # not wrapped in an ExceptionGroup.
    if failure is not None:
        raise failure


async def keep_visible(
    delivery: Delivery,
    visibility: float,
    *,
    received_at: float | None = None,
    max_lifetime: float = MAX_LIFETIME,
    clock: TimeSource = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> None:
    """Extend ``delivery`` every ``visibility / 2`` s until cancelled or capped.

    The heartbeat itself, for a task of the caller's own task group (the worker runs one
    beside each handler); :func:`visibility_heartbeat` wraps it around a block. The
    arguments are :func:`visibility_heartbeat`'s.
    """
    if visibility <= 0:
        raise InvalidArgumentError("visibility must be positive")
    clock, sleep = monotonic_time(clock), sleep_of(clock, sleep)
    start = clock() if received_at is None else received_at
    await _beat(delivery, visibility, start + max_lifetime, clock, sleep)


async def _beat(
    delivery: Delivery,
    visibility: float,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[object]],
) -> None:
    visible_until = clock() + visibility
    while True:
        await sleep(visibility / 2)
        now = clock()
        target = min(now + visibility, deadline)
        if target <= visible_until:
            _log.info("visibility heartbeat reached its cap", queue=delivery.queue)
            return
        try:
            await delivery.extend(target - now)
        except DeliveryExpiredError as error:
            _log.warning(
                "visibility heartbeat lost the receipt", queue=delivery.queue, error=str(error)
            )
            return
        except TransportError as error:
            _log.warning(
                "visibility heartbeat failed; retrying", queue=delivery.queue, error=str(error)
            )
            continue
        visible_until = target
