"""What the store checks share: where their clocks start, and running calls at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from messagebus.testing._clock import EPOCH
from messagebus.testing._harness import NotApplicable

__all__ = ["T0", "at_once", "run_checks"]

_T = TypeVar("_T")
_H = TypeVar("_H")

T0 = EPOCH
"""Where the checks' clocks start: 2024-05-01 12:00 UTC, whole seconds (exact in every store)."""


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
