"""The outlet to a transport: commands to their owner's queue, events to their topic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus._outlets._departure import Departure, send_batch
from messagebus.transports._protocol import Outgoing, Transport
from messagebus.transports._routing import Destination

__all__ = ["TransportOutlet"]


class TransportOutlet:
    """Hands envelopes to the transport, batched per destination.

    Every envelope is encoded before anything is sent, so an unencodable one stops the
    whole lot; then each destination gets one call with its messages, in order.

    Args:
        transport: returns the running transport (raises
            :class:`~messagebus.BusStateError` while the bus is not running).
        departure: hooks, destination and encoding (see :class:`Departure`).
    """

    def __init__(self, transport: Callable[[], Transport], departure: Departure) -> None:
        self._transport = transport
        self.departure = departure

    async def emit(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Encode every envelope, then send them per destination, in order."""
        transport = self._transport()
        batches: dict[Destination, list[Outgoing]] = {}
        for envelope in envelopes:
            destination, outgoing = self.departure.depart(envelope)
            batches.setdefault(destination, []).append(outgoing)
        for destination, batch in batches.items():
            await send_batch(transport, destination, batch)
