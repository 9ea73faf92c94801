"""Transports: the contract (:class:`Transport`), the routing table and the implementations.

- :class:`Transport`, :class:`Delivery`, :class:`Capabilities` and the topology types
  (:class:`Topology`, :class:`QueueSpec`, :class:`TopicSpec`,
  :class:`TopicSubscription`): the contract, in :mod:`messagebus.transports._protocol`.
- :class:`Router`, :class:`Destination`, :func:`topic_name`: where a service's messages
  go (commands to their owner's queue, events to their type's topic), in
  :mod:`messagebus.transports._routing`.
- :mod:`messagebus.transports.memory`: :class:`InMemoryTransport` on a
  :class:`MemoryBroker`, SQS semantics in one process, the default and the test double.
- :mod:`messagebus.transports.sqs`: :class:`SQSTransport`, AWS SQS with SNS topics for
  events (``pip install messagebus[sqs]``; asyncio only). Imported on first use, so this
  package imports without aiobotocore.
- :func:`visibility_heartbeat`: keeps a delivery invisible while a long handler runs;
  any transport's.
- :func:`transport_from_url` / :func:`transport_from_env`: a transport from
  configuration (``memory://``, ``sqs://...``; ``MESSAGEBUS_TRANSPORT``).

Each implementation is a folder of its own; :mod:`messagebus.testing` holds the
conformance suite every one of them passes.
"""

from typing import TYPE_CHECKING, Any

from messagebus.transports._heartbeat import MAX_LIFETIME, keep_visible, visibility_heartbeat
from messagebus.transports._protocol import (
    Capabilities,
    Delivery,
    Outgoing,
    QueueSpec,
    TopicSpec,
    TopicSubscription,
    Topology,
    Transport,
)
from messagebus.transports._routing import Destination, DestinationKind, Router, topic_name
from messagebus.transports._url import SQSSettings, transport_from_env, transport_from_url
from messagebus.transports.memory import (
    MEMORY_CAPABILITIES,
    InMemoryTransport,
    MemoryBroker,
    MemoryDelivery,
    QueueDepth,
)

if TYPE_CHECKING:
    from messagebus.transports.sqs import SQSDelivery, SQSTransport

__all__ = [
    "MAX_LIFETIME",
    "MEMORY_CAPABILITIES",
    "Capabilities",
    "Delivery",
    "Destination",
    "DestinationKind",
    "InMemoryTransport",
    "MemoryBroker",
    "MemoryDelivery",
    "Outgoing",
    "QueueDepth",
    "QueueSpec",
    "Router",
    "SQSDelivery",
    "SQSSettings",
    "SQSTransport",
    "TopicSpec",
    "TopicSubscription",
    "Topology",
    "Transport",
    "keep_visible",
    "topic_name",
    "transport_from_env",
    "transport_from_url",
    "visibility_heartbeat",
]

_LAZY = {"SQSDelivery", "SQSTransport"}


def __getattr__(name: str) -> Any:
    # The SQS transport needs aiobotocore (an extra): import it only when asked for.
    if name in _LAZY:
        from messagebus.transports import sqs  # noqa: PLC0415

        return getattr(sqs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
