"""Plumbing the SQL stores share, private to messagebus.

- :mod:`._schema`: table names, the ``messagebus_schema`` version bookkeeping, and the
  queue of table set-ups each database runs once.
- :mod:`._database`: :class:`SharedDatabase`, the holders of one database and which
  stores are on it (:func:`database_of`, :func:`require_same_database`).
- :mod:`._sqlite`: :class:`SQLiteConnection`, one ``sqlite3`` connection in worker threads.
- :mod:`._postgres`: :class:`PostgresPool`, a psycopg pool in worker threads.
- :mod:`._store`: :class:`SQLStore`, ``async with`` and ``aclose`` for a store on either.

Nothing here imports psycopg at import time: it is an optional extra.
"""

from messagebus._sql._database import SharedDatabase, database_of, require_same_database

__all__ = ["SharedDatabase", "database_of", "require_same_database"]
