"""Transports: the contract (:class:`Transport`) and its implementations.

- :class:`Transport`, :class:`Delivery`, :class:`Capabilities` and the topology types:
  the contract, in :mod:`messagebus.transports._protocol`.
- :class:`InMemoryTransport` on a :class:`MemoryBroker`: SQS semantics in one process,
  the default and the test double.
- :class:`SQSTransport`: AWS SQS, with SNS topics for events (``pip install
  messagebus[sqs]``; asyncio only). Imported on first use, so this package imports
  without aiobotocore.
- :func:`visibility_heartbeat`: keeps a delivery invisible while a long handler runs.
- :func:`transport_from_url` / :func:`transport_from_env`: a transport from
  configuration (``memory://``, ``sqs://...``; ``MESSAGEBUS_TRANSPORT``).

Implementations live one per module beside it; :mod:`messagebus.testing` holds the
conformance suite every one of them passes.
"""

from typing import TYPE_CHECKING, Any

from messagebus.transports._heartbeat import MAX_LIFETIME, keep_visible, visibility_heartbeat
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
from messagebus.transports._url import SQSSettings, transport_from_env, transport_from_url

if TYPE_CHECKING:
    from messagebus.transports._sqs import SQSDelivery, SQSTransport

__all__ = [
    "MAX_LIFETIME",
    "MEMORY_CAPABILITIES",
    "Capabilities",
    "Delivery",
    "InMemoryTransport",
    "MemoryBroker",
    "MemoryDelivery",
    "Outgoing",
    "QueueDepth",
    "QueueSpec",
    "SQSDelivery",
    "SQSSettings",
    "SQSTransport",
    "Subscription",
    "TopicSpec",
    "Topology",
    "Transport",
    "keep_visible",
    "transport_from_env",
    "transport_from_url",
    "visibility_heartbeat",
]

_LAZY = {"SQSDelivery", "SQSTransport"}


def __getattr__(name: str) -> Any:
    # The SQS transport needs aiobotocore (an extra): import it only when asked for.
    if name in _LAZY:
        from messagebus.transports import _sqs  # noqa: PLC0415

        return getattr(_sqs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
