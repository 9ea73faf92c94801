"""PostgreSQL: one database object that hands out the outbox, inbox, dead letters and event log.

Stores that must share transactions (the outbox, an idempotency store in inbox mode,
the event log a unit of work appends to) share them because they are made from one
:class:`PostgresDatabase`, on its one pool. Needs the ``anyio-messagebus[postgres]`` extra
(psycopg is imported when a database object is made, not at import).
"""

from messagebus.postgres._database import PostgresDatabase

__all__ = ["PostgresDatabase"]
