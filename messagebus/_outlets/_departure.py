"""Leaving the process: the hooks, the destination and the encoding, in one place."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.transports._protocol import Outgoing, Transport
from messagebus.transports._routing import Destination, Router

__all__ = ["Departure", "Hook", "send_batch"]

Hook = Callable[[Envelope[Message]], Envelope[Message]]
"""``(envelope) -> envelope``, applied to every envelope as it leaves the process."""


class Departure:
    """Makes an envelope ready to leave: the bus's hooks, its destination, its body.

    Every envelope that leaves the process goes through :meth:`depart` exactly once,
    whether it is handed to the transport now or written to the outbox for later.

    Args:
        codec: encodes the envelope (CloudEvents JSON).
        hooks: ``(envelope) -> envelope`` functions applied in order first (a trace
            context header, say).
        router: the routing table on a transport; None: every message stays in this
            process (an outbox row's destination is ``local``).
        handles: the command types this service handles (they go to its own queue).
    """

    def __init__(
        self,
        codec: WireCodec,
        hooks: Sequence[Hook],
        router: Router | None,
        handles: Container[type[Message]],
    ) -> None:
        self.codec = codec
        self._hooks = tuple(hooks)
        self._router = router
        self._handles = handles

    def depart(self, envelope: Envelope[Message]) -> tuple[Destination, Outgoing]:
        """Return where ``envelope`` goes and its encoded form.

        Raises:
            EncodeError: the message cannot be encoded.
            NoHandlerError: a command nobody here handles and no route names.
        """
        for hook in self._hooks:
            envelope = hook(envelope)
        router = self._router
        if router is None:
            destination = Destination.local()
        else:
            destination = router.destination(
                envelope, local=type(envelope.message) in self._handles
            )
        # The FIFO deduplication id is the idempotency key when the sender set one (a
        # second send under one key is the same intention), else the message id.
        return destination, Outgoing(
            body=self.codec.encode(envelope),
            message_id=envelope.message_id,
            group_key=envelope.group_key,
            deduplication_id=envelope.idempotency_key,
        )


async def send_batch(transport: Transport, destination: Destination, batch: list[Outgoing]) -> None:
    """Hand ``batch`` to ``destination`` on ``transport``: a queue's send, a topic's publish."""
    if destination.kind == "queue":
        await transport.send(destination.name, batch)
    else:
        await transport.publish(destination.name, batch)
