"""Transports: the contract (:class:`Transport`) and its implementations.

- :class:`Transport`, :class:`Delivery`, :class:`Capabilities` and the topology types:
  the contract, in :mod:`messagebus.transports._protocol`.
- :class:`InMemoryTransport` on a :class:`MemoryBroker`: SQS semantics in one process,
  the default and the test double.

Implementations live one per module beside it; :mod:`messagebus.testing` holds the
conformance suite every one of them passes.
"""

from messagebus.transports._memory import (
    MEMORY_CAPABILITIES,
    InMemoryTransport,
    MemoryBroker,
    MemoryDelivery,
)
from messagebus.transports._memory_queue import QueueDepth
from messagebus.transports._protocol import (
    Capabilities,
    Delivery,
    Outgoing,
    QueueSpec,
    Subscription,
    TopicSpec,
    Topology,
    Transport,
)

__all__ = [
    "MEMORY_CAPABILITIES",
    "Capabilities",
    "Delivery",
    "InMemoryTransport",
    "MemoryBroker",
    "MemoryDelivery",
    "Outgoing",
    "QueueDepth",
    "QueueSpec",
    "Subscription",
    "TopicSpec",
    "Topology",
    "Transport",
]
