"""The EventBridge transport: events through an EventBridge bus, commands through queues.

Events are published to an EventBridge bus with PutEvents and routed by rules to each
subscribing service's queue; commands, and receiving, stay with a queue transport (SQS,
or in memory for tests). This package imports no AWS library: give
:class:`EventBridgeTransport` aiobotocore's ``events`` client (``pip install
'anyio-messagebus[sqs]'``; asyncio only) or the in-memory :class:`MemoryEventBridge`.

- :class:`EventBridgeTransport`: the transport (``_transport``); its deliveries are
  :class:`EventBridgeDelivery`, the client it needs :class:`EventsClient`;
  :func:`unwrap_event` reads our envelope out of an AWS event body.
- :class:`MemoryEventBridge`: buses, rules and targets in memory with AWS's semantics,
  on a :class:`~messagebus.transports.memory.MemoryBroker`, any anyio backend
  (``_double``); it refuses calls with :class:`EventBridgeClientError`.
- :func:`matches`: whether an event matches an event pattern, a pure function
  (``_patterns``).
"""

from messagebus.transports.eventbridge._double import EventBridgeClientError, MemoryEventBridge
from messagebus.transports.eventbridge._patterns import matches
from messagebus.transports.eventbridge._transport import (
    EventBridgeDelivery,
    EventBridgeTransport,
    EventsClient,
    unwrap_event,
)

__all__ = [
    "EventBridgeClientError",
    "EventBridgeDelivery",
    "EventBridgeTransport",
    "EventsClient",
    "MemoryEventBridge",
    "matches",
    "unwrap_event",
]
