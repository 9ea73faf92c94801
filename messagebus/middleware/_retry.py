"""Retrying failed handler runs, by policy, inside the process."""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from messagebus._clock import TimeSource, monotonic_time, sleep_of
from messagebus._dispatch._run import discard_follow_ups, enter_attempt
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, RetriesExhausted
from messagebus._handlers import HandlerInfo
from messagebus._log import get_logger
from messagebus._messages import Message
from messagebus._middleware import CallNext, OnFailure, Recover
from messagebus._redelivery import defer
from messagebus._retry_policy import Attempt, Discard, Retry, RetryPolicy

__all__ = ["RetryMiddleware"]

DEFAULT_EVENT_POLICY = RetryPolicy()
"""Subscribers: 5 attempts, exponential backoff from 0.1 s (cap 30 s), full jitter."""


@attrs.frozen
class RetryMiddleware:
    """Runs a failed handler again by its :class:`~messagebus.retry.RetryPolicy`, then gives up.

    Which policy applies to a handler is settled once, when its chain is built; the most
    specific wins: ``by_handler[handler name]``, then ``by_message_type[message class]``,
    then ``events`` for subscribers or ``commands`` for command handlers. ``None`` at any
    level means "do not retry" and removes the layer from that handler's chain.

    Defaults: subscribers retry (:data:`DEFAULT_EVENT_POLICY`); command handlers do not,
    because whether to repeat an intention (charge a card again?) is a business decision.
    A command handler given a policy without idempotency protection (an idempotency
    middleware in its chain, or ``bus.handler(..., idempotent=True)``) gets a
    :class:`RuntimeWarning` when its chain is built.

    When the policy gives up after more than one attempt, the middleware raises
    :class:`~messagebus.RetriesExhausted` from the last error (the bus then records a dead
    letter for a subscriber, or the sender of a command receives it); after a single
    attempt (an error that is never retried) the error itself propagates unchanged. A
    ``Discard`` decision returns None without a dead letter.

    Waits happen in this task with ``sleep`` when the handler's caller waits for it
    (``send``, an in-process ``publish``). On a message a :class:`~messagebus.Worker`
    received from a transport, a delay longer than ``max_inline_delay`` is not waited
    out in the worker's slot: the message goes back to the queue with that delay, for
    this handler alone, with its next attempt number (see :mod:`messagebus._redelivery`),
    and the policy decides again when it fails there.

    Args:
        events: the policy for event subscribers.
        commands: the policy for command handlers (None: no retries).
        by_message_type: policies for the handlers of particular message types.
        by_handler: policies for particular handlers, by handler name.
        sleep: how to wait; None: the clock's ``sleep`` if ``clock`` is a
            :class:`~messagebus.extension.Clock`, else ``anyio.sleep``.
        clock: a monotonic clock in seconds, for deadlines (``time.monotonic``), or a
            :class:`~messagebus.extension.Clock` (a test's fake clock: waits and
            deadlines both follow it).
        uniform: the jitter's random draw (``random.uniform``).
        max_inline_delay: the longest wait spent in a worker's slot, in seconds.
    """

    events: RetryPolicy | None = DEFAULT_EVENT_POLICY
    commands: RetryPolicy | None = None
    by_message_type: Mapping[type[Message], RetryPolicy | None] = attrs.field(factory=dict)
    by_handler: Mapping[str, RetryPolicy | None] = attrs.field(factory=dict)
    sleep: Callable[[float], Awaitable[None]] | None = None
    clock: TimeSource = time.monotonic
    uniform: Callable[[float, float], float] = random.uniform
    logger: Any = None
    max_inline_delay: float = 1.0

    def policy_for(self, handler: HandlerInfo) -> RetryPolicy | None:
        """Return the policy that applies to ``handler`` (None: no retries)."""
        if handler.name in self.by_handler:
            return self.by_handler[handler.name]
        if handler.message_type in self.by_message_type:
            return self.by_message_type[handler.message_type]
        return self.events if handler.kind == "event" else self.commands

    def bind(self, handler: HandlerInfo) -> OnFailure | None:
        """Return the retry layer for ``handler``, or None when it is not retried."""
        policy = self.policy_for(handler)
        if policy is None or policy.max_attempts == 1:
            return None
        if handler.kind == "command" and not _protected(handler):
            warnings.warn(
                f"command handler {handler.name} is retried ({policy.max_attempts} attempts) "
                "without idempotency protection: a retry can repeat its side effects "
                "(charge a card twice). Add idempotency middleware, or register it with "
                "idempotent=True if running it twice is harmless.",
                RuntimeWarning,
                stacklevel=2,
            )
        return OnFailure(_retrying(self, handler.name, policy))

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each handler."""
        raise ArgumentTypeError("RetryMiddleware is bound per handler by the bus; do not call it")


def _protected(handler: HandlerInfo) -> bool:
    return handler.idempotent or any(
        getattr(layer, "provides_idempotency", False) for layer in handler.middleware
    )


def _retrying(config: RetryMiddleware, name: str, policy: RetryPolicy) -> Recover:
    sleep, clock = sleep_of(config.clock, config.sleep), monotonic_time(config.clock)
    uniform = config.uniform
    max_inline_delay = config.max_inline_delay
    source = get_logger("messagebus") if config.logger is None else config.logger

    async def retry_failed_run(
        envelope: Envelope[Message], error: Exception, call_next: CallNext
    ) -> Any:
        # Only failures reach this point: a run that succeeds never enters it.
        history = [Attempt(envelope.attempt, clock(), error)]
        first_failed_at = datetime.now(UTC)
        log = source.bind(handler=name, message_type=envelope.message_type)
        while True:
            last = history[-1].error
            decision = policy.decide(envelope, last, history, uniform=uniform)
            if isinstance(decision, Discard):
                log.warning("message discarded", reason=decision.reason, attempt=envelope.attempt)
                # The failed run's held-back messages must not leave as if it had succeeded.
                discard_follow_ups()
                return None
            if not isinstance(decision, Retry):
                if history[-1].number == 1:
                    raise last
                raise RetriesExhausted(name, history[-1].number, first_failed_at) from last
            if decision.delay > max_inline_delay and defer(
                name, envelope.replace(attempt=envelope.attempt + 1), decision.delay
            ):
                log.info(
                    "retry deferred to the queue",
                    attempt=envelope.attempt,
                    delay_s=round(decision.delay, 3),
                    error=f"{type(last).__qualname__}: {last}",
                )
                discard_follow_ups()
                return None
            log.info(
                "retrying handler",
                attempt=envelope.attempt,
                delay_s=round(decision.delay, 3),
                error=f"{type(last).__qualname__}: {last}",
            )
            await sleep(decision.delay)
            envelope = envelope.replace(attempt=envelope.attempt + 1)
            enter_attempt(envelope)
            try:
                return await call_next(envelope)
            except Exception as retry_error:  # noqa: BLE001  # the policy decides
                _forget_earlier_attempts(retry_error, history)
                history.append(Attempt(envelope.attempt, clock(), retry_error))

    return retry_failed_run


def _forget_earlier_attempts(error: BaseException, history: list[Attempt]) -> None:
    """Cut the implicit links from ``error``'s chain to the errors of earlier attempts.

    The bus hands the first failure to this layer from inside its ``except`` block, so
    Python makes that error the ``__context__`` of whatever a later attempt raises
    ("During handling of the above exception, another exception occurred"): every
    traceback would tell all the attempts before it as its cause. An attempt's error is
    never caused by an earlier attempt's; only those links go, the handler's own
    chaining (``raise ... from``, an error raised while handling another) stays.
    """
    earlier = {id(attempt.error) for attempt in history}
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if link.__context__ is not None and id(link.__context__) in earlier:
            link.__context__ = None
        link = link.__cause__ if link.__cause__ is not None else link.__context__
