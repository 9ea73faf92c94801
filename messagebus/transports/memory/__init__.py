"""The in-memory transport: SQS semantics in one process, the default and the test double.

- :class:`InMemoryTransport`: one connection to a :class:`MemoryBroker` (the queues,
  topics and subscriptions that transports given the same broker share); its
  deliveries are :class:`MemoryDelivery`.
- :data:`MEMORY_CAPABILITIES`: what it declares (SQS's limits).
- :class:`QueueDepth`: a queue's message counts by state
  (:meth:`InMemoryTransport.depth`).

The transport is in :mod:`messagebus.transports.memory._transport`, one queue's rules
(no I/O, no awaits) in :mod:`messagebus.transports.memory._queue`.
"""

from messagebus.transports.memory._queue import QueueDepth
from messagebus.transports.memory._transport import (
    MEMORY_CAPABILITIES,
    InMemoryTransport,
    MemoryBroker,
    MemoryDelivery,
)

__all__ = [
    "MEMORY_CAPABILITIES",
    "InMemoryTransport",
    "MemoryBroker",
    "MemoryDelivery",
    "QueueDepth",
]
