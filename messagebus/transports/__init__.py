"""Transports: the data of the contract, the routing table, and the families.

- The contract's protocols, :class:`~messagebus.extension.Transport` and
  :class:`~messagebus.extension.Delivery`, are in :mod:`messagebus.extension`; the data
  they exchange is here: :class:`Outgoing`, :class:`Capabilities` and the topology
  types (:class:`Topology`, :class:`QueueSpec`, :class:`TopicSpec`,
  :class:`TopicSubscription`), in :mod:`messagebus.transports._protocol`.
- :class:`Router`, :class:`Destination`, :func:`topic_name`: where a service's messages
  go (commands to their owner's queue, events to their type's topic), in
  :mod:`messagebus.transports._routing`.
- :mod:`messagebus.transports.memory`: :class:`InMemoryTransport` on a
  :class:`MemoryBroker`, SQS semantics in one process, the default and the test double.
- :mod:`messagebus.transports.sqs`: :class:`SQSTransport`, AWS SQS with SNS topics for
  events (``pip install 'anyio-messagebus[sqs]'``; asyncio only). Importing it imports
  aiobotocore; this package does not.
- :mod:`messagebus.transports.eventbridge`: :class:`EventBridgeTransport`, events
  through EventBridge rules into the queues of a queue transport, and
  :class:`MemoryEventBridge`, its in-memory double.
- :class:`TransportWrapper`: passes every call to another transport, for decorators
  (tracing, logging) that override only what they add to.
- :func:`visibility_heartbeat`: keeps a delivery invisible while a long handler runs;
  any transport's.
- :func:`transport_from_url` / :func:`transport_from_env`: a transport from
  configuration (``memory://``, ``sqs://...``; ``MESSAGEBUS_TRANSPORT``).

Each implementation is a folder of its own; :mod:`messagebus.testing` holds the
conformance suite every one of them passes.
"""

from messagebus.transports._heartbeat import MAX_LIFETIME, keep_visible, visibility_heartbeat
from messagebus.transports._protocol import (
    Capabilities,
    Outgoing,
    QueueSpec,
    TopicSpec,
    TopicSubscription,
    Topology,
)
from messagebus.transports._routing import Destination, DestinationKind, Router, topic_name
from messagebus.transports._url import SQSSettings, transport_from_env, transport_from_url
from messagebus.transports._wrapper import TransportWrapper

__all__ = [
    "MAX_LIFETIME",
    "Capabilities",
    "Destination",
    "DestinationKind",
    "Outgoing",
    "QueueSpec",
    "Router",
    "SQSSettings",
    "TopicSpec",
    "TopicSubscription",
    "Topology",
    "TransportWrapper",
    "keep_visible",
    "topic_name",
    "transport_from_env",
    "transport_from_url",
    "visibility_heartbeat",
]
