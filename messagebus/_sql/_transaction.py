"""A database transaction held across awaits: one connection, its calls in worker threads.

:class:`HeldTransaction` is what :meth:`SQLiteConnection.transaction
<messagebus._sql._sqlite.SQLiteConnection.transaction>` and :meth:`PostgresPool.transaction
<messagebus._sql._postgres.PostgresPool.transaction>` yield. Contract:

- :meth:`~HeldTransaction.run` calls a function with the transaction's connection in a
  worker thread, one call at a time (concurrent calls from several tasks queue in the
  event loop: a driver connection is not re-entrant).
- Once the transaction has ended (committed or rolled back), :meth:`~HeldTransaction.run`
  raises :class:`anyio.ClosedResourceError`: the connection may be someone else's now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["HeldTransaction"]

_C = TypeVar("_C")
_T = TypeVar("_T")


class HeldTransaction(Generic[_C]):
    """An open transaction on ``connection``; see the module."""

    def __init__(self, connection: _C) -> None:
        self._connection = connection
        self._ended = False
        # One thread at a time on the connection. A Lock, not CapacityLimiter(1): see
        # SQLiteConnection (anyio's asyncio limiter could over-grant before 4.14.2).
        self._lock = anyio.Lock()

    async def run(self, call: Callable[[_C], _T]) -> _T:
        """Return ``call(connection)``, run in a worker thread inside the transaction."""
        if self._ended:
            raise anyio.ClosedResourceError
        async with self._lock:
            return await anyio.to_thread.run_sync(self._call, call)

    async def end(self, finish: Callable[[_C], None]) -> None:
        """Refuse further calls, then run ``finish`` (commit or roll back), shielded.

        Shielded: a cancelled commit or rollback would leave the outcome unknown and the
        connection mid-transaction. It waits for a call still running in its thread.
        """
        self._ended = True
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(finish, self._connection)

    def _call(self, call: Callable[[_C], _T]) -> _T:
        # Checked again in the thread: end() may have run while this call queued.
        if self._ended:
            raise anyio.ClosedResourceError
        return call(self._connection)
