"""Plumbing the SQL stores share, private to messagebus.

- :mod:`._schema`: table names and the ``messagebus_schema`` version bookkeeping.
- :mod:`._sqlite`: :class:`SQLiteDatabase`, one ``sqlite3`` connection in worker threads.
- :mod:`._postgres`: :class:`PostgresDatabase`, a psycopg pool in worker threads.
- :mod:`._store`: :class:`SQLStore`, ``async with`` and ``aclose`` for a store over either.

Nothing here imports psycopg at import time: it is an optional extra.
"""
