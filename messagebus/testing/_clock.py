"""A fake clock that moves only when a test says so, or jumps when everything waits on it.

:class:`FakeClock` is a :class:`~messagebus.extension.Clock`: give the same one to every
timed part of a service (``RetryMiddleware(clock=...)``, ``InMemoryTransport(clock=...)``,
stores' ``clock=``, ``Worker(clock=...)``, ...) and time passes for all of them at once,
with no real waiting. It works the same on asyncio and trio: it is not the event loop's
clock (trio's ``MockClock`` is, and asyncio has none), only the clock those parts read.

- ``await clock.advance(seconds)`` moves time forward and wakes every sleeper (and
  cancels every ``move_on_after`` scope) that became due, one at a time in due order
  (ties in the order they started waiting): the clock reads the sleeper's due time while
  it runs, and the next one wakes only once every task is blocked again
  (:func:`anyio.wait_all_tasks_blocked`). Sleepers that a woken task starts and that
  fall due within the advance wake too.
- ``async with clock.autojump():`` runs a task that, whenever every other task is
  blocked and some task sleeps on this clock, jumps to the earliest due time; a test
  whose code sleeps on the clock then runs at once. A task blocked on something else
  (a lock held by a sleeper, a worker thread) counts as blocked, as with trio's
  ``MockClock(autojump_threshold=0)``: jump only when nothing but the clock can help.

Task-safety: one event loop; ``time()`` and ``monotonic()`` may be read from worker
threads (the stores do), and the clock only moves on the event loop.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import anyio.lowlevel
import attrs

from messagebus._errors import InvalidArgumentError

__all__ = ["EPOCH", "FakeClock"]

EPOCH = 1_714_564_800.0
"""Where a :class:`FakeClock`'s wall time starts by default: 2024-05-01 12:00 UTC."""


@attrs.define(eq=False)
class _Timer:
    due: float
    fire: Callable[[], None]
    cancelled: bool = False


class _MoveOnAfter:
    """``with clock.move_on_after(s) as scope``: a cancel scope the clock cancels."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._scope = anyio.CancelScope()
        self._timer: _Timer | None = None

    def __enter__(self) -> anyio.CancelScope:
        seconds = self._seconds
        if not seconds > 0:
            self._scope.cancel()
        elif seconds < math.inf:
            self._timer = self._clock._schedule(seconds, self._scope.cancel)
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._timer is not None:
            self._timer.cancelled = True
        return bool(self._scope.__exit__(exc_type, exc, traceback))


class FakeClock:
    """Wall and monotonic time that move only by :meth:`advance` or :meth:`autojump`.

    Calling the clock returns :meth:`time`, so it also serves as a bare ``clock=``
    reading (the store conformance checks pass it to stores that way).

    Args:
        start: the wall time at the start, seconds since the Unix epoch.
        monotonic_start: the monotonic reading at the start.
    """

    def __init__(self, *, start: float = EPOCH, monotonic_start: float = 0.0) -> None:
        self._start = start
        self._monotonic_start = monotonic_start
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        # Set when a timer is added, while autojump waits for one (made on the event loop).
        self._scheduled: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"FakeClock(elapsed={self._elapsed:g}, sleepers={self.sleepers})"

    def __call__(self) -> float:
        return self.time()

    def time(self) -> float:
        """Return the wall time: seconds since the Unix epoch."""
        return self._start + self._elapsed

    def monotonic(self) -> float:
        """Return the monotonic time."""
        return self._monotonic_start + self._elapsed

    @property
    def elapsed(self) -> float:
        """Seconds the clock has moved since it was made."""
        return self._elapsed

    @property
    def sleepers(self) -> int:
        """How many sleeps and ``move_on_after`` scopes wait on this clock."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_due(self) -> float | None:
        """Seconds until the earliest sleeper is due (0 if already), None if none waits."""
        timer = self._earliest()
        return None if timer is None else max(timer.due - self._elapsed, 0.0)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has moved ``seconds`` on (at once if not positive)."""
        if not seconds > 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        timer = self._schedule(seconds, woken.set)
        try:
            await woken.wait()
        finally:
            timer.cancelled = True

    def move_on_after(self, seconds: float) -> _MoveOnAfter:
        """Return a cancel scope cancelled once the clock has moved ``seconds`` on."""
        return _MoveOnAfter(self, seconds)

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` forward, waking what became due in due order; see the module.

        Raises:
            InvalidArgumentError: ``seconds`` is negative or not finite.
        """
        if not 0 <= seconds < math.inf:
            raise InvalidArgumentError(
                f"a clock advances by a finite time, not negative: {seconds}"
            )
        target = self._elapsed + seconds
        while True:
            timer = self._earliest()
            if timer is None or timer.due > target:
                break
            heapq.heappop(self._timers)
            self._elapsed = max(self._elapsed, timer.due)
            timer.cancelled = True
            timer.fire()
            # Let the woken task run until it blocks, so that the next one wakes after it.
            await anyio.wait_all_tasks_blocked()
        self._elapsed = max(self._elapsed, target)
        await anyio.lowlevel.checkpoint()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[FakeClock]:
        """Jump to the earliest sleeper whenever every other task is blocked; see the module."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._jump)
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()

    async def _jump(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            due = self.next_due()
            if due is None:
                # Nobody sleeps on the clock: wait for a sleeper rather than spin.
                self._scheduled = anyio.Event()
                await self._scheduled.wait()
                self._scheduled = None
                continue
            await self.advance(due)

    def _schedule(self, seconds: float, fire: Callable[[], None]) -> _Timer:
        timer = _Timer(self._elapsed + seconds, fire)
        heapq.heappush(self._timers, (timer.due, next(self._order), timer))
        if self._scheduled is not None:
            self._scheduled.set()
        return timer

    def _earliest(self) -> _Timer | None:
        while self._timers:
            timer = self._timers[0][2]
            if not timer.cancelled:
                return timer
            heapq.heappop(self._timers)
        return None
