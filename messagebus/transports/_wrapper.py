"""A transport that hands every call to another: the base of transport decorators."""

from __future__ import annotations

from collections.abc import Sequence

from messagebus.transports._protocol import (
    Capabilities,
    Delivery,
    NamedTransport,
    Outgoing,
    Topology,
    Transport,
)

__all__ = ["TransportWrapper"]


class TransportWrapper:
    """Passes every call to :attr:`inner`; subclasses override what they add to.

    Tracing (:class:`~messagebus.otel.TracedTransport`) and the demo's narration wrap a
    transport this way: the wrapper is a transport itself, its lifecycle the inner one's
    (entering it enters the inner transport, leaving it leaves it).
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        """The wrapped transport."""

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped transport's."""
        return self.inner.capabilities

    async def __aenter__(self) -> TransportWrapper:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)

    async def provision(self, topology: Topology) -> None:
        """Provision the wrapped transport."""
        await self.inner.provision(topology)

    def address(self, name: str, *, fifo: bool | None = None, topic: bool = False) -> str:
        """Return the wrapped transport's name of queue or topic ``name``, else ``name``.

        See :class:`~messagebus.extension.NamedTransport`.
        """
        inner = self.inner
        if isinstance(inner, NamedTransport):
            return inner.address(name, fifo=fifo, topic=topic)
        return name

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send through the wrapped transport."""
        await self.inner.send(queue, messages)

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Publish through the wrapped transport."""
        await self.inner.publish(topic, messages)

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[Delivery]:
        """Receive from the wrapped transport."""
        return await self.inner.receive(
            queue, max_messages=max_messages, wait=wait, visibility_timeout=visibility_timeout
        )
