"""Shared plumbing for the peer adapters (no peer package is imported here).

Every adapter counts handler invocations with a :class:`Counter` so that
``build()`` can prove, with one real dispatch, that the runner is not
benchmarking a no-op.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Runner = Callable[[], Awaitable[None]]

SCENARIOS = ("S1", "S2", "S3", "S4", "S5")
S3_SUBSCRIBERS = 10
S4_MIDDLEWARES = 3


class Counter:
    """Handler-call counter; the handlers' only work is ``calls += 1``."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0


def run_blocking(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion from sync code, even inside a running loop.

    ``build()`` is synchronous but may be called from within the benchmark's
    event loop, so the one-shot sanity dispatch then runs in a helper thread
    with its own asyncio loop.
    """

    async def main() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def check_calls(peer: str, scenario: str, counter: Counter, expected: int) -> None:
    """Raise if one sanity dispatch did not reach the expected handler count."""
    if counter.calls != expected:
        raise RuntimeError(
            f"{peer} {scenario}: sanity dispatch called handlers {counter.calls} "
            f"times, expected {expected}"
        )
    counter.calls = 0
