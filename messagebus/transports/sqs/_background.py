"""The SQS transport's own background tasks: calls made for callers that may go away.

Batched deletes and sends, the batching windows' timers and long polls run apart from
the tasks that asked for them (see :mod:`messagebus.transports._coalesce`), in a
:class:`Background`: plain asyncio tasks (the transport is asyncio-only), not an anyio
task group. A task group must be left in the task and cancel-scope nesting it was
entered in, and a transport is entered and left by its owner, who may well close it
inside a scope of its own (a bus closes its resources shielded from cancellation).
:meth:`Background.wait` is the task group's exit: it waits for every task, those
started meanwhile included, and raises the first failure, if any, once all are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Background"]


class Background:
    """Runs tasks of the transport; :meth:`wait` on close (see the module docstring)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures: list[BaseException] = []

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> None:
        """Run ``func(*args)`` in a task of its own, from now until it ends."""

        async def run() -> None:
            await func(*args)

        task = asyncio.get_running_loop().create_task(
            run(), name=None if name is None else str(name)
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (failure := task.exception()) is not None:
            self._failures.append(failure)

    async def wait(self) -> None:
        """Return once every task has ended; raise the first failure of one, if any.

        If the wait itself is cancelled, the tasks are cancelled too (nobody is left to
        wait for them), and the cancellation propagates.
        """
        try:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except BaseException:
            for task in self._tasks:
                task.cancel()
            raise
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise failure
