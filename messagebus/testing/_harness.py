"""What the transport checks need: the transport under test, and helpers they share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager

import anyio
import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Event, Message
from messagebus._registry import MessageRegistry
from messagebus.transports._protocol import Delivery, Outgoing, Transport

__all__ = [
    "CODEC",
    "NotApplicable",
    "OtherProbe",
    "Probe",
    "TransportHarness",
    "absent",
    "gather",
    "outgoing",
    "probe",
    "text_of",
]


class NotApplicable(Exception):  # a verdict, like pytest's Skipped
    """Raised by a check that the transport's capabilities make moot (report a skip)."""


@attrs.frozen
class Probe(Event, name="messagebus.testing.probe"):
    """The message the checks send: a text that names it and a number."""

    text: str
    number: int = 0


@attrs.frozen
class OtherProbe(Event, name="messagebus.testing.other-probe"):
    """A probe of another wire type, for a second topic (a transport may route by type)."""

    text: str
    number: int = 0


_registry = MessageRegistry()
_registry.add(Probe)
_registry.add(OtherProbe)
CODEC = WireCodec(_registry, source="/messagebus/testing")
"""Encodes and decodes the checks' messages, as the bus would."""


@attrs.frozen
class TransportHarness:
    """The transport under test, and how hard and how long to test it.

    Attributes:
        open: opens a transport on the backend under test; every call opens a new one
            on the same backend (a second one models a restart, so for memory share one
            :class:`~messagebus.transports.memory.MemoryBroker` between the transports made).
        prefix: starts every queue and topic name; each check adds a random part, so a
            backend that is never reset (a long-running SQS server) can be reused.
        messages: how many messages the concurrency check moves.
        concurrency: how many producers and how many consumers it runs.
        short: the short visibility timeout and delay (seconds) the timing checks use;
            keep it at 1 s for a server whose timers tick once a second, and above
            what the host's scheduling jitter could hide.
        patience: seconds within which anything that must happen does; waits end as
            soon as it has happened, so a generous value costs nothing when all is well.
    """

    open: Callable[[], AbstractAsyncContextManager[Transport]]
    prefix: str = "conformance"
    messages: int = 5000
    concurrency: int = 10
    short: float = 1.0
    patience: float = 30.0

    def name(self, purpose: str) -> str:
        """Return a queue or topic name for ``purpose`` that no other run uses."""
        return f"{self.prefix}-{uuid.uuid4().hex[:10]}-{purpose}"


def probe(
    text: str,
    number: int = 0,
    *,
    headers: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    group_key: str | None = None,
    attempt: int = 1,
    parent: Envelope[Message] | None = None,
    kind: type[Probe | OtherProbe] = Probe,
) -> Envelope[Message]:
    """Return an envelope of a :class:`Probe` (or of ``kind``) with the metadata given."""
    return Envelope(
        kind(text, number),
        headers=headers,
        idempotency_key=idempotency_key,
        group_key=group_key,
        attempt=attempt,
        parent=parent,
    )


def outgoing(envelope: Envelope[Message], *, delay: float = 0.0) -> Outgoing:
    """Return ``envelope`` encoded for a transport, as the bus sends it."""
    return Outgoing(
        CODEC.encode(envelope),
        envelope.message_id,
        group_key=envelope.group_key,
        deduplication_id=envelope.idempotency_key,
        delay=delay,
    )


def text_of(delivery: Delivery) -> str:
    """Return the text of the :class:`Probe` (or :class:`OtherProbe`) a delivery carries."""
    message = CODEC.decode(delivery.body).message
    assert isinstance(message, Probe | OtherProbe), f"not a probe: {message!r}"
    return message.text


async def gather(
    transport: Transport,
    queue: str,
    count: int,
    harness: TransportHarness,
    *,
    visibility_timeout: float | None = None,
    ack: bool = True,
) -> list[Delivery]:
    """Receive until ``count`` deliveries came from ``queue``, acking them unless told.

    Raises:
        AssertionError: fewer arrived within ``harness.patience`` (more: see callers).
    """
    deliveries: list[Delivery] = []
    deadline = anyio.current_time() + harness.patience
    while len(deliveries) < count:
        left = deadline - anyio.current_time()
        if left <= 0:
            raise AssertionError(
                f"{len(deliveries)} of {count} message(s) arrived on {queue!r} "
                f"within {harness.patience:g} s"
            )
        batch = await transport.receive(
            queue,
            max_messages=min(count - len(deliveries), transport.capabilities.max_batch_size),
            wait=min(left, 20.0),
            visibility_timeout=visibility_timeout,
        )
        if ack:
            for delivery in batch:
                await delivery.ack()
        deliveries.extend(batch)
    return deliveries


async def absent(transport: Transport, queues: Sequence[str], harness: TransportHarness) -> None:
    """Check that nothing arrives on any of ``queues`` for ``harness.short`` seconds.

    Raises:
        AssertionError: something did (it is acked, and named in the message).
    """
    for queue in queues:
        batch = await transport.receive(queue, wait=harness.short)
        for delivery in batch:
            await delivery.ack()
        if batch:
            texts = [text_of(delivery) for delivery in batch]
            raise AssertionError(f"queue {queue!r} got messages it should not have: {texts}")
