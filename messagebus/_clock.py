"""Time as a parameter: the :class:`Clock` protocol that every timed part accepts.

The library's timed parts (retry waits, the memory broker's visibility and delays, the
outbox relay's polling and the stores' leases and TTLs, idempotency waits, the
resequencer's bound, the worker's heartbeat) read time and wait through injection
points: a ``clock=`` that was a bare ``Callable[[], float]`` and a ``sleep=``. Each
also accepts a :class:`Clock` object, which supplies both readings and the waiting, so
a test hands one fake clock (:class:`messagebus.testing.FakeClock`) to every part.

:func:`wall_time` and :func:`monotonic_time` turn either form into the reading a part
needs: a bare callable is used as it is (existing callers keep working), a
:class:`Clock` gives its ``time`` or ``monotonic`` method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeAlias, runtime_checkable

import anyio

__all__ = ["Clock", "TimeSource", "monotonic_time", "sleep_of", "wall_time"]


@runtime_checkable
class Clock(Protocol):
    """A source of time and of timed waits.

    Contract: ``time()`` is seconds since the Unix epoch (what stores keep);
    ``monotonic()`` never goes back (what durations are measured with); both advance
    together. ``sleep(seconds)`` returns once ``monotonic()`` has moved ``seconds`` on,
    and ``move_on_after(seconds)`` is a cancel scope cancelled at that point, like
    :func:`anyio.move_on_after`. Both are cancellable like any anyio wait.
    """

    def time(self) -> float:
        """Return seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` on this clock."""
        ...

    def move_on_after(self, seconds: float) -> AbstractContextManager[anyio.CancelScope, bool]:
        """Return a cancel scope cancelled after ``seconds`` on this clock."""
        ...


TimeSource: TypeAlias = Callable[[], float] | Clock
"""What a ``clock=`` parameter takes: a bare reading, or a :class:`Clock`."""


def wall_time(clock: TimeSource) -> Callable[[], float]:
    """Return the epoch-seconds reading of ``clock`` (its ``time``, or itself)."""
    return clock.time if isinstance(clock, Clock) else clock


def monotonic_time(clock: TimeSource) -> Callable[[], float]:
    """Return the monotonic reading of ``clock`` (its ``monotonic``, or itself)."""
    return clock.monotonic if isinstance(clock, Clock) else clock


def sleep_of(
    clock: TimeSource | None, sleep: Callable[[float], Awaitable[object]] | None
) -> Callable[[float], Awaitable[object]]:
    """Return how to wait: ``sleep`` if given, else the clock's, else :func:`anyio.sleep`."""
    if sleep is not None:
        return sleep
    if isinstance(clock, Clock):
        return clock.sleep
    return anyio.sleep
