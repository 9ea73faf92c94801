"""What the store checks share: a clock they move by hand, and running calls at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio
import attrs

from messagebus.testing._harness import NotApplicable

__all__ = ["T0", "ManualClock", "at_once", "run_checks"]

_T = TypeVar("_T")
_H = TypeVar("_H")

T0 = 1_714_564_800.0
"""Where the checks' clocks start: 2024-05-01 12:00 UTC, whole seconds (exact in every store)."""


@attrs.define
class ManualClock:
    """Seconds since the Unix epoch that move only when a check says so.

    A store takes it as its ``clock=``: calling it returns the time. A store may call it
    from a worker thread; the checks move it only while no call of theirs is running.
    """

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds``."""
        self.now += seconds


async def at_once(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Start every call in one task group, so that they overlap; return their results in order.

    The tasks all start before any of them runs, so calls that await their store
    (a worker thread, a socket) are in flight together.
    """
    results: dict[int, _T] = {}

    async def one(index: int, call: Callable[[], Awaitable[_T]]) -> None:
        results[index] = await call()

    async with anyio.create_task_group() as tasks:
        for index, call in enumerate(calls):
            tasks.start_soon(one, index, call)
    return [results[index] for index in range(len(calls))]


async def run_checks(
    checks: Sequence[Callable[[_H], Awaitable[None]]], make: Callable[[], _H]
) -> list[str]:
    """Run ``checks``, each on a new harness from ``make``; return the names of the moot ones.

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    skipped: list[str] = []
    for check in checks:
        try:
            await check(make())
        except NotApplicable:
            skipped.append(check.__name__)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__}: {error}") from error
    return skipped
