"""Where an invocation runs: one event loop per execution environment, kept between calls.

Lambda calls the function synchronously, one invocation at a time, and reuses the
process (a warm container) for later ones; the bus, entered once, must stay entered in
one event loop across them. Two ways to hold that loop, behind one small interface
(:class:`Loop`: enter an async context manager, run a coroutine function to its end,
leave):

- :class:`ResidentLoop` (asyncio, the default backend): an asyncio loop driven on the
  calling thread, ``run_until_complete`` once per invocation. No thread hop per call
  (a portal's costs tens of microseconds, a batch of ten records' worth), and between
  invocations the loop does not run at all: nothing the bus holds (its relay's poll, a
  client's pool) can act after the function returned, exactly as Lambda's freeze
  would have it. The bus is entered by a host task that waits for :meth:`leave`, so
  its task group and cancel scopes are entered and left by one task, as anyio
  requires. This is the one place in the Lambda entry point that speaks asyncio: no
  anyio API drives a loop a step at a time.
- :class:`PortalLoop` (any anyio backend; trio): the loop in a thread of its own, an
  anyio blocking portal, each invocation one hop into it.

Contract, both: calls are serialised (Lambda makes one at a time; a caller that makes
two at once waits); :meth:`Loop.run` returns only when the coroutine has ended, and
raises what it raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.from_thread import BlockingPortal

__all__ = ["Loop", "PortalLoop", "ResidentLoop"]

T = TypeVar("T")


class Loop(Protocol):
    """An event loop that outlives one invocation; see the module."""

    def enter(self, manager: AbstractAsyncContextManager[Any]) -> None:
        """Start the loop and enter ``manager`` in it; raise what entering raised."""
        ...

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``function(*args)`` in the loop to its end; return or raise its outcome."""
        ...

    def move_on_after(self, delay: float) -> AbstractContextManager[object]:
        """Return a block cancelled after ``delay`` seconds, which then ends quietly.

        ``anyio.move_on_after``'s meaning, entered inside :meth:`run`.
        """
        ...

    def leave(self) -> None:
        """Leave the manager entered (if any) and stop the loop."""
        ...


def _sniffed() -> str | None:
    """Return the async library sniffio says runs on this thread (trio sets it), if any.

    anyio asks sniffio, when it is installed (trio brings it), which library it runs on,
    and sniffio answers from this thread before asking asyncio.
    """
    sniffio = sys.modules.get("sniffio")
    if sniffio is None:
        return None
    name: str | None = sniffio.thread_local.name
    return name


class ResidentLoop:
    """An asyncio loop driven on the calling thread, one turn (or more) a call."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: asyncio.Task[None] | None = None
        self._release: asyncio.Future[None] | None = None
        self._lock = threading.Lock()
        self._waited = False
        """Whether the call in progress has waited (its first turn did not end it)."""
        self._unarmed: list[_MoveOnAfter] = []
        """The deadlines entered in the call's first turn: their timers start if it waits."""

    def enter(self, manager: AbstractAsyncContextManager[Any]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        entered: asyncio.Future[None] = loop.create_future()
        release = self._release = loop.create_future()

        async def host() -> None:
            async with manager:
                entered.set_result(None)
                await release

        async def entering() -> None:
            await asyncio.wait((entered, host_task), return_when=asyncio.FIRST_COMPLETED)

        with self._lock:
            host_task = self._host = loop.create_task(host(), context=contextvars.Context())
            self._drive(loop, entering())
            if host_task.done():  # entering failed: the host has ended with its error
                self._host = None
                host_task.result()

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = self._loop
        assert loop is not None, "run before enter"
        with self._lock:
            if asyncio._get_running_loop() is None and _sniffed() is None:
                return self._turns(loop, function(*args))  # _drive's usual case, inlined
            return self._drive(loop, function(*args))

    def move_on_after(self, delay: float) -> AbstractContextManager[object]:
        assert self._loop is not None, "move_on_after outside run"
        return _MoveOnAfter(self, self._loop.time() + delay)

    def leave(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        host, self._host = self._host, None
        with self._lock:
            try:
                if host is not None:
                    assert self._release is not None
                    self._release.set_result(None)
                    self._drive(loop, host)
            finally:
                self._close(loop)

    def _drive(self, loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
        """Run ``loop`` until ``awaitable`` is done; on a helper thread if this one runs one.

        A thread already running an event loop (an async test calling the entry point
        directly) cannot drive a second one, and under trio anyio would take the loop
        for trio's: the call goes to a thread of its own then, the rare path.
        """
        if asyncio._get_running_loop() is None and _sniffed() is None:
            return self._turns(loop, awaitable)
        outcome: list[Any] = []

        def drive() -> None:
            try:
                outcome.append((True, self._turns(loop, awaitable)))
            except BaseException as exc:  # noqa: BLE001  # handed to the caller below
                outcome.append((False, exc))

        helper = threading.Thread(target=drive, name="messagebus-lambda-loop")
        helper.start()
        helper.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        result: T = value
        return result

    def _turns(self, loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
        """Run ``loop`` until ``awaitable`` is done: one turn when it never waits."""
        if asyncio.iscoroutine(awaitable):
            # A context of its own, not the caller's: an invocation sees no context
            # variable of whoever called (an async library's own, which would tell anyio
            # it runs on that library), as in the loop's own thread.
            task: asyncio.Future[T] = loop.create_task(awaitable, context=contextvars.Context())
        else:
            task = asyncio.ensure_future(awaitable, loop=loop)
        # A batch whose handlers never wait (in-memory stores, no I/O) ends in its task's
        # first step: one turn of the loop is then the whole call, a third cheaper than
        # run_until_complete's own set-up. stop() before run_forever() is that turn, as
        # asyncio documents: one poll of the selector, the callbacks ready, and out.
        # Anything the turn scheduled (a done callback) runs at the next call's turn.
        loop.stop()
        loop.run_forever()
        if task.done():
            return task.result()
        # It waits: the deadlines entered so far start their timers now, and any entered
        # from here on at once (see _MoveOnAfter).
        self._waited = True
        try:
            unarmed, self._unarmed = self._unarmed, []
            for deadline in unarmed:
                deadline.arm()
            return loop.run_until_complete(task)
        finally:
            self._waited = False

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close ``loop`` as ``asyncio.run`` does: cancel what is left, finish generators."""
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                self._drive(loop, asyncio.gather(*left, return_exceptions=True))
            self._drive(loop, loop.shutdown_asyncgens())
            self._drive(loop, loop.shutdown_default_executor())
        finally:
            loop.close()


class _MoveOnAfter:
    """``anyio.move_on_after`` for :class:`ResidentLoop`: the timer starts only if needed.

    A deadline can only act when the task it cancels waits: the cancellation is
    delivered at an ``await`` that yields to the loop. A call's first step runs without
    yielding, so a deadline entered in it needs no timer unless the call goes on to
    wait; the loop then starts it (:meth:`arm`), at once if the time is already up.
    Batches that never wait (the common case of quick handlers) thus cost no timer
    handle and no scope, where an ``asyncio.timeout`` costs as much as the loop's turn.
    On expiry the task is cancelled; the cancellation ends at this block, which then
    ends quietly, with ``asyncio.timeout``'s accounting (``uncancel``) so that a
    cancellation from outside still propagates.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_resident", "_task", "_when")

    def __init__(self, resident: ResidentLoop, when: float) -> None:
        self._resident = resident
        self._when = when
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def __enter__(self) -> object:
        task = asyncio.current_task()
        assert task is not None, "a deadline outside a task"
        self._task = task
        self._cancelling = task.cancelling()
        if self._resident._waited:
            self.arm()
        else:
            self._resident._unarmed.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None
        elif not self._expired:
            self._resident._unarmed.remove(self)  # never started: the call did not wait
        if self._expired and self._task.uncancel() <= self._cancelling:
            return kind is asyncio.CancelledError  # the time is up: it ends here
        return False

    def arm(self) -> None:
        """Start the timer (due now if the time is up already)."""
        self._handle = self._task.get_loop().call_at(self._when, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self._expired = True
        self._task.cancel()


class PortalLoop:
    """The loop in a thread of its own (an anyio blocking portal), for any backend."""

    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._portal: AbstractContextManager[BlockingPortal] | None = None
        self._call: BlockingPortal | None = None
        self._entered: AbstractContextManager[Any] | None = None

    def enter(self, manager: AbstractAsyncContextManager[Any]) -> None:
        from anyio.from_thread import start_blocking_portal  # noqa: PLC0415  # trio only

        self._portal = start_blocking_portal(self._backend)
        self._call = self._portal.__enter__()
        try:
            entered = self._call.wrap_async_context_manager(manager)
            entered.__enter__()
            self._entered = entered
        except BaseException:
            self.leave()
            raise

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        assert self._call is not None, "run before enter"
        return self._call.call(function, *args)

    def move_on_after(self, delay: float) -> AbstractContextManager[object]:
        return anyio.move_on_after(delay)

    def leave(self) -> None:
        entered, self._entered = self._entered, None
        portal, self._portal = self._portal, None
        self._call = None
        try:
            if entered is not None:
                entered.__exit__(None, None, None)
        finally:
            if portal is not None:
                portal.__exit__(None, None, None)
