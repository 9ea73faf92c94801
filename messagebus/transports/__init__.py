"""Transports: the contract (:class:`Transport`) and its implementations.

- :class:`Transport`, :class:`Delivery`, :class:`Capabilities` and the topology types:
  the contract, in :mod:`messagebus.transports._protocol`.

Implementations live one per module beside it.
"""

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
    "Capabilities",
    "Delivery",
    "Outgoing",
    "QueueSpec",
    "Subscription",
    "TopicSpec",
    "Topology",
    "Transport",
]
