"""Retry policies as data, and the pure decision they make after a failure."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from messagebus._envelope import Envelope
from messagebus._errors import (
    ArgumentTypeError,
    CommandRejected,
    ConfigurationError,
    DispatchError,
    IdempotencyKeyReused,
    SerializationError,
)
from messagebus._messages import Message

__all__ = [
    "NEVER_RETRIED",
    "Attempt",
    "Decision",
    "Discard",
    "ExponentialBackoff",
    "FixedBackoff",
    "GiveUp",
    "Retry",
    "RetryPolicy",
]

NEVER_RETRIED: tuple[type[BaseException], ...] = (
    CommandRejected,
    SerializationError,
    DispatchError,
    ConfigurationError,
    IdempotencyKeyReused,
)
"""Failures no policy retries: a refusal, undecodable data, a message with nowhere to go,
a broken set-up or a call with a bad argument, a reused idempotency key. Running the
handler again cannot change their outcome."""

Jitter = Literal["full", "equal", "none"]


@attrs.frozen
class ExponentialBackoff:
    """Wait ``initial * multiplier ** (n - 1)`` seconds before retry ``n``, at most ``cap``."""

    initial: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    cap: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))

    def delay(self, retry: int) -> float:
        """Return the delay before retry number ``retry`` (1 for the first), no jitter."""
        try:
            return min(self.cap, self.initial * self.multiplier ** (retry - 1))
        except OverflowError:  # 2.0 ** 10_000 has no float; it is past any cap
            return self.cap


@attrs.frozen
class FixedBackoff:
    """Wait the same ``seconds`` before every retry."""

    seconds: float = attrs.field(validator=attrs.validators.ge(0))

    def delay(self, retry: int) -> float:
        """Return ``seconds``, whatever the retry number."""
        return self.seconds


@attrs.frozen
class Attempt:
    """One failed run of a handler, as the retry middleware saw it.

    ``failed_at`` is a reading of the middleware's monotonic clock (seconds).
    """

    number: int
    failed_at: float
    error: BaseException


@attrs.frozen
class Retry:
    """Run the handler again after ``delay`` seconds."""

    delay: float


@attrs.frozen
class GiveUp:
    """Stop: the failure stands and the message becomes a dead letter."""

    reason: str


@attrs.frozen
class Discard:
    """Stop and drop the message on purpose: no retry, no dead letter."""

    reason: str


Decision = Retry | GiveUp | Discard


def _exception_types(value: Sequence[type[BaseException]]) -> tuple[type[BaseException], ...]:
    types = tuple(value)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ArgumentTypeError(f"expected exception classes, got {kind!r}")
    return types


@attrs.frozen
class RetryPolicy:
    """When to run a failed handler again, how long to wait, and when to stop.

    Args:
        max_attempts: runs in all, the first included (1 means never retry).
        backoff: the delay schedule, before jitter.
        jitter: ``"full"`` waits a uniform random time in ``[0, delay]`` (the default:
            spreads retries of many failing messages best), ``"equal"`` waits
            ``delay / 2`` plus a uniform random time in ``[0, delay / 2]``, ``"none"``
            waits exactly ``delay``.
        deadline: seconds from the first failure after which no retry starts (a retry
            whose delay would end past it is not scheduled); None for no deadline. It
            counts from the first failure, not the first start, because a run that
            succeeds is not timed at all.
        retry_on: only these exceptions (and subclasses) are retried.
        never_retry: these are never retried, on top of :data:`NEVER_RETRIED`.
        discard_on: these end the message quietly: no retry, no dead letter (for
            failures that mean the message no longer matters).

    The policy never sleeps; :meth:`decide` only says what to do, so it can be tested
    without waiting.
    """

    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    backoff: ExponentialBackoff | FixedBackoff = ExponentialBackoff()
    jitter: Jitter = attrs.field(
        default="full", validator=attrs.validators.in_(("full", "equal", "none"))
    )
    deadline: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types
    )
    never_retry: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_exception_types
    )
    discard_on: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_exception_types
    )

    def decide(
        self,
        envelope: Envelope[Message],
        error: BaseException,
        history: Sequence[Attempt],
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> Decision:
        """Decide what follows the failure of the last attempt in ``history``.

        ``history`` holds every failed attempt on this message so far, the last one
        (which raised ``error``) included. ``uniform(a, b)`` draws the jitter; pass a
        fixed function for repeatable results. Pure: the same arguments give the same
        decision, and nothing is changed.
        """
        if isinstance(error, self.discard_on):
            return Discard(f"{type(error).__qualname__} is in discard_on")
        if isinstance(error, NEVER_RETRIED + self.never_retry) or not isinstance(
            error, self.retry_on
        ):
            return GiveUp(f"{type(error).__qualname__} is never retried")
        # The envelope's counter: attempts made before this process (a redelivered
        # message) count too.
        attempts = max(len(history), history[-1].number)
        if attempts >= self.max_attempts:
            return GiveUp(f"{attempts} of {self.max_attempts} attempts failed")
        base = self.backoff.delay(attempts)
        if self.jitter == "full":
            delay = uniform(0.0, base)
        elif self.jitter == "equal":
            delay = base / 2 + uniform(0.0, base / 2)
        else:
            delay = base
        if self.deadline is not None:
            elapsed = history[-1].failed_at - history[0].failed_at
            if elapsed + delay > self.deadline:
                return GiveUp(f"the {self.deadline} s deadline would pass before the next attempt")
        return Retry(delay)
