"""A transport that tells the demo's story of where messages go: relay, queue, worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from messagebus.extension import Delivery, Transport
from messagebus.transports import Outgoing, TransportWrapper


class _Type(msgspec.Struct):
    """The one field of a CloudEvents body the story names: the message type."""

    type: str = "?"


_TYPE = msgspec.json.Decoder(_Type)


def message_types(bodies: Sequence[bytes]) -> list[str]:
    """Return the CloudEvents ``type`` of each body (``"?"`` for one that is not ours)."""
    types = []
    for body in bodies:
        try:
            types.append(_TYPE.decode(body).type)
        except msgspec.DecodeError:
            types.append("?")
    return types


class NarratedTransport(TransportWrapper):
    """Wraps the demo's transport and says, as it happens, what crosses it.

    Publishing is what the outbox relay does once a transaction has committed; sending
    is a command enqueued or a retry's delayed copy; receiving is the worker taking
    messages off the blog's queue. Everything else is passed through unchanged.
    """

    def __init__(self, transport: Transport, say: Any) -> None:
        super().__init__(transport)
        self._say = say

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Publish, saying so: in this service only the outbox relay publishes."""
        types = message_types([message.body for message in messages])
        self._say("   relay -> transport: published after the commit", topic=topic, types=types)
        await self.inner.publish(topic, messages)

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send, saying so (a delayed copy is a retry waiting in the queue, not in memory)."""
        types = message_types([message.body for message in messages])
        delays = sorted({round(message.delay, 2) for message in messages if message.delay})
        self._say(
            "   -> queue", queue=queue, types=types, **({"delay_s": delays} if delays else {})
        )
        await self.inner.send(queue, messages)

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[Delivery]:
        """Receive, saying what the worker took off the queue."""
        deliveries = await self.inner.receive(
            queue, max_messages=max_messages, wait=wait, visibility_timeout=visibility_timeout
        )
        if deliveries:
            types = message_types([delivery.body for delivery in deliveries])
            self._say("   worker <- queue: received", queue=queue, types=types)
        return deliveries
