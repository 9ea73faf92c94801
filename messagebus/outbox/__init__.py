"""The transactional outbox: messages written with the business data, relayed after commit.

:class:`Destination` (where a row goes) is the routing table's own type, re-exported
here because every :class:`OutboxMessage` carries one; it is the same class as
:class:`messagebus.transports.Destination`.
"""

from messagebus.outbox._message import (
    DeliveryFailure,
    OutboxEntry,
    OutboxMessage,
    OutboxStatus,
    Status,
)
from messagebus.outbox._postgres import PostgresOutbox, PostgresTransaction
from messagebus.outbox._relay import Deliver, OutboxRelay, deliver_each
from messagebus.outbox._sqlite import SQLiteOutbox, SQLiteTransaction
from messagebus.outbox._store import (
    CommitListener,
    CommitWatcher,
    OutboxStore,
    OutboxTransaction,
    Settlement,
)
from messagebus.transports._routing import Destination, DestinationKind

__all__ = [
    "CommitListener",
    "CommitWatcher",
    "Deliver",
    "DeliveryFailure",
    "Destination",
    "DestinationKind",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStatus",
    "OutboxStore",
    "OutboxTransaction",
    "PostgresOutbox",
    "PostgresTransaction",
    "SQLiteOutbox",
    "SQLiteTransaction",
    "Settlement",
    "Status",
    "deliver_each",
]
