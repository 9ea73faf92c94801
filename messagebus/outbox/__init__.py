"""The transactional outbox: messages written with the business data, relayed after commit."""

from messagebus.outbox._message import (
    DeliveryFailure,
    Destination,
    DestinationKind,
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
