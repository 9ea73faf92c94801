"""Events as an append-only log: global positions, streams, replay then live, order.

- :class:`InMemoryEventLog`, :class:`SQLiteEventLog`, :class:`PostgresEventLog`: the
  logs, each with a checkpoint store beside it (``log.checkpoints``); the protocols,
  :class:`~messagebus.extension.EventLog` and
  :class:`~messagebus.extension.CheckpointStore`, are in :mod:`messagebus.extension`.
- :class:`Subscription` (``log.subscribe(...)``): history in pages, then live appends.
- :class:`Resequencer`: each stream in sequence for subscribers that need order.
"""

from messagebus.eventlog._memory import InMemoryCheckpointStore, InMemoryEventLog
from messagebus.eventlog._postgres import PostgresEventLog
from messagebus.eventlog._record import SEQUENCE_HEADER, LogRecord
from messagebus.eventlog._resequencer import Resequenced, Resequencer
from messagebus.eventlog._sqlite import SQLiteEventLog
from messagebus.eventlog._subscription import Subscription

__all__ = [
    "SEQUENCE_HEADER",
    "InMemoryCheckpointStore",
    "InMemoryEventLog",
    "LogRecord",
    "PostgresEventLog",
    "Resequenced",
    "Resequencer",
    "SQLiteEventLog",
    "Subscription",
]
