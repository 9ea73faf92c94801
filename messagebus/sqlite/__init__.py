"""SQLite: one database object that hands out the outbox, inbox, dead letters and event log.

Stores that must share transactions (the outbox, an idempotency store in inbox mode,
the event log a unit of work appends to) share them because they are made from one
:class:`SQLiteDatabase`, on its one connection.
"""

from messagebus.sqlite._database import SQLiteDatabase

__all__ = ["SQLiteDatabase"]
