"""The transactional outbox: messages written with the business data, relayed after commit.

Each :class:`OutboxMessage` carries a :class:`messagebus.transports.Destination`, the
routing table's type. The store protocols (:class:`~messagebus.extension.OutboxStore`,
:class:`~messagebus.extension.OutboxTransaction`) are in :mod:`messagebus.extension`.
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
    SchedulingStore,
    Settlement,
)

__all__ = [
    "CommitListener",
    "CommitWatcher",
    "Deliver",
    "DeliveryFailure",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStatus",
    "PostgresOutbox",
    "PostgresTransaction",
    "SQLiteOutbox",
    "SQLiteTransaction",
    "SchedulingStore",
    "Settlement",
    "Status",
    "deliver_each",
]
