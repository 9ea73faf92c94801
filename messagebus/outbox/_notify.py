"""Cross-process wake-up for the PostgreSQL outbox: LISTEN/NOTIFY, with polling behind it.

A :class:`~messagebus.outbox.PostgresOutbox` sends ``pg_notify(<channel>, <payload>)``
inside every unit of work that adds rows; PostgreSQL delivers it to every listening
session when, and only if, the transaction commits. :class:`CommitWatch` is the
listening side, run by :meth:`OutboxRelay.run <messagebus.outbox.OutboxRelay.run>`
through the store's ``watch_commits``. Contract:

- The channel is derived from the schema and the table (:func:`channel_name`, at most 63
  bytes, PostgreSQL's limit; hashed when longer), so one store's notifications wake only
  relays of the same table. With ``schema=None`` it names no schema: stores on another
  search path's table of the same name wake each other needlessly (a claim that finds
  nothing), never wrongly.
- :meth:`CommitWatch.run` holds ONE dedicated autocommit connection (not from the pool:
  a pooled connection would hold a pool slot forever and lose its LISTEN when recycled)
  and calls ``wake()`` in the event loop once per burst of notifications, and once
  after each (re)connection: rows committed while it was not listening are found then.
  A notification whose payload is ``ignore()`` (the store's own units of work, when its
  commit listeners were told already) does not wake.
- It is an accelerator only: the relay's poll still runs. A lost connection is logged
  (``outbox.listener_lost``) and made again after a backoff (0.1 s doubling to 30 s,
  reset once connected); nothing is lost meanwhile.
- The blocking wait runs in a worker thread for at most :data:`WAIT` seconds at a time,
  so cancelling ``run()`` returns within about that long; the connection is closed
  (shielded) on the way out.

Known limit: a connection that silently stops carrying packets (a half-open TCP
connection) is not detected by this loop; the poll delivers meanwhile. Use the DSN's
``keepalives*`` parameters where that matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from messagebus._log import get_logger
from messagebus._retry_policy import ExponentialBackoff

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["WAIT", "CommitWatch", "channel_name"]

WAIT = 0.25
"""Seconds one blocking wait for notifications lasts at most: the bound on shutdown."""

_MAX_CHANNEL = 63  # NAMEDATALEN - 1: PostgreSQL refuses longer channel names
_PREFIX = "messagebus_outbox:"
_RECONNECT = ExponentialBackoff(initial=0.1, multiplier=2.0, cap=30.0)
_CONNECT_TIMEOUT = 5


def channel_name(schema: str | None, table: str) -> str:
    """Return the NOTIFY channel of the outbox ``table`` in ``schema``: <= 63 bytes."""
    name = f"{_PREFIX}{schema or ''}.{table}"
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[: _MAX_CHANNEL - len(_PREFIX)]
    return _PREFIX + digest


class CommitWatch:
    """Listens on ``channel`` on its own connection and wakes a relay; see the module.

    Args:
        connect_with: returns the connection string and psycopg connection parameters
            (a borrowed pool's ``conninfo`` and ``kwargs``); called at each connection,
            in a worker thread.
        channel: from :func:`channel_name`.
        ignore: the payload not to wake for at this moment, or None.
    """

    def __init__(
        self,
        connect_with: Callable[[], tuple[str, Mapping[str, Any]]],
        channel: str,
        ignore: Callable[[], str | None],
    ) -> None:
        self._connect_with = connect_with
        self._channel = channel
        self._ignore = ignore
        self._log = get_logger("messagebus")
        # Its own limiter: the listener must not wait behind the pool's calls, nor take
        # one of anyio's shared thread tokens from them.
        self._limiter = anyio.CapacityLimiter(1)
        self._connected = False

    async def run(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` after commits of rows on the channel, until cancelled."""
        import psycopg  # noqa: PLC0415

        failures = 0
        while True:
            try:
                await self._listen(wake)
            except (psycopg.Error, OSError) as error:
                # Connected for a while before this failure: start the backoff again.
                failures = 1 if self._connected else failures + 1
                delay = _RECONNECT.delay(failures)
                self._log.warning(
                    "outbox.listener_lost", channel=self._channel, error=repr(error), retry_in=delay
                )
                await anyio.sleep(delay)

    async def _listen(self, wake: Callable[[], None]) -> None:
        self._connected = False
        connection = await self._thread(self._connect)
        try:
            self._connected = True
            wake()
            while True:
                if await self._thread(self._wait, connection):
                    wake()
        finally:
            with anyio.CancelScope(shield=True):
                await self._thread(connection.close)

    async def _thread(self, call: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(call, *args, limiter=self._limiter)

    def _connect(self) -> Connection[Any]:
        import psycopg  # noqa: PLC0415
        from psycopg import sql  # noqa: PLC0415
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

        conninfo, kwargs = self._connect_with()
        params = dict(kwargs)
        if "connect_timeout" not in params and "connect_timeout" not in conninfo_to_dict(conninfo):
            # Bounded, so a cancelled run() does not wait on an unreachable server for long.
            params["connect_timeout"] = _CONNECT_TIMEOUT
        params["autocommit"] = True  # LISTEN takes effect at once, and no idle transaction
        connection = psycopg.connect(conninfo, **params)
        try:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            connection.close()
            raise
        return connection

    def _wait(self, connection: Connection[Any]) -> bool:
        """Wait up to WAIT s for a notification; return whether one should wake the relay."""
        woken = False
        # The first wait blocks; the second only takes what has arrived already, so a
        # burst of notifications wakes the relay once.
        for timeout, stop_after in ((WAIT, 1), (0.0, None)):
            for note in connection.notifies(timeout=timeout, stop_after=stop_after):
                # Asked per note: commit listeners may have been added during the wait.
                woken = woken or note.payload != self._ignore()
        return woken
