"""Events as an append-only log: global positions, streams, replay then live, order.

- :class:`EventLog`: the store protocol; :class:`InMemoryEventLog`,
  :class:`SQLiteEventLog`, :class:`PostgresEventLog` implement it, each with a
  :class:`CheckpointStore` beside it (``log.checkpoints``).
- :class:`Subscription` (``log.subscribe(...)``): history in pages, then live appends.
- :class:`Resequencer`: each stream in sequence for subscribers that need order.
"""

from messagebus._errors import SequenceGapError
from messagebus.eventlog._memory import InMemoryCheckpointStore, InMemoryEventLog
from messagebus.eventlog._postgres import PostgresEventLog
from messagebus.eventlog._record import SEQUENCE_HEADER, LogRecord
from messagebus.eventlog._resequencer import Resequenced, Resequencer
from messagebus.eventlog._sqlite import SQLiteEventLog
from messagebus.eventlog._store import CheckpointStore, EventLog
from messagebus.eventlog._subscription import Subscription

__all__ = [
    "SEQUENCE_HEADER",
    "CheckpointStore",
    "EventLog",
    "InMemoryCheckpointStore",
    "InMemoryEventLog",
    "LogRecord",
    "PostgresEventLog",
    "Resequenced",
    "Resequencer",
    "SQLiteEventLog",
    "SequenceGapError",
    "Subscription",
]
