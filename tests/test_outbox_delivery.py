"""How the bus's relay delivers outbox rows: to the transport, or handled here."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from messagebus import (
    DestinationNotFoundError,
    Envelope,
    MessageBus,
    MessageTooLargeError,
    SendError,
    TransportError,
)
from messagebus._outlets import Departure, OutboxOutlet
from messagebus.outbox import DeliveryFailure, OutboxMessage
from messagebus.transports import Destination, Outgoing
from messagebus.transports.memory import InMemoryTransport
from tests.messages import PostPublished


async def deliver_rows(bus: MessageBus, rows: Sequence[OutboxMessage]) -> list[DeliveryFailure]:
    """Deliver ``rows`` as the relay of an outbox on ``bus`` would."""
    outlet = OutboxOutlet(
        bus,
        Departure(bus.codec, (), None, ()),
        transport=bus.running_transport,
        handle=bus.handle_delivered,
    )
    return await outlet.deliver(rows)


pytestmark = pytest.mark.anyio


class FailingTransport(InMemoryTransport):
    """Publishes fail with the error given; sends record what they get."""

    def __init__(self, error: TransportError) -> None:
        super().__init__()
        self.error = error
        self.sent: list[tuple[str, list[str]]] = []

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        raise self.error

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        self.sent.append((queue, [message.message_id for message in messages]))


def row(
    bus: MessageBus, number: int, destination: Destination, group: str | None = None
) -> OutboxMessage:
    envelope = Envelope(PostPublished(number, "t"), message_id=f"m{number}", group_key=group)
    return OutboxMessage.from_envelope(envelope, destination, bus.codec)


class TestToATransport:
    """Rows for a queue or topic go to the transport; its errors become failures."""

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (
                SendError([("m2", "throttled")]),
                [DeliveryFailure("m2", "throttled")],
            ),
            (
                MessageTooLargeError("m1", 2, 1),
                [
                    DeliveryFailure(
                        "m1", "message m1 is 2 bytes; the transport takes 1", retry=False
                    ),
                    DeliveryFailure("m2", "message m1 is 2 bytes; the transport takes 1"),
                ],
            ),
            (
                DestinationNotFoundError("no topic"),
                [
                    DeliveryFailure("m1", "DestinationNotFoundError: no topic"),
                    DeliveryFailure("m2", "DestinationNotFoundError: no topic"),
                ],
            ),
        ],
    )
    async def test_errors_become_failures(
        self, error: TransportError, expected: list[DeliveryFailure]
    ) -> None:
        """A partial send fails only its entries; a too-large one is parked; others retry."""
        transport = FailingTransport(error)
        bus = MessageBus(transport=transport)
        bus.declare(PostPublished)
        async with bus:
            topic = Destination.topic("blog-post-published")
            failures = await deliver_rows(bus, [row(bus, 1, topic), row(bus, 2, topic)])
        assert failures == expected

    async def test_a_failed_group_blocks_its_later_rows(self) -> None:
        """After a group's row fails, its rows bound elsewhere wait; other rows go."""
        transport = FailingTransport(DestinationNotFoundError("no topic"))
        bus = MessageBus(transport=transport)
        bus.declare(PostPublished)
        topic, queue = Destination.topic("blog-post-published"), Destination.queue("jobs")
        async with bus:
            failures = await deliver_rows(
                bus,
                [row(bus, 1, topic, "g"), row(bus, 2, queue, "g"), row(bus, 3, queue, "h")],
            )
        assert [failure.message_id for failure in failures] == ["m1", "m2"]
        assert failures[1].reason == "an earlier message failed"
        assert transport.sent == [("jobs", ["m3"])]


class TestHandledHere:
    """Rows written without a transport are decoded and handled in this process."""

    async def test_an_undecodable_row_is_parked(self) -> None:
        """A body this process cannot decode fails for good, and blocks its group."""
        bus = MessageBus()
        seen: list[int] = []
        bus.subscriber(PostPublished, lambda event: seen.append(event.post_id))
        local = Destination.local()
        bad = OutboxMessage(id="bad", destination=local, body=b"{}", group_key="g")
        failures = await deliver_rows(bus, [bad, row(bus, 2, local, "g"), row(bus, 3, local, "h")])
        assert [(f.message_id, f.retry) for f in failures] == [("bad", False), ("m2", True)]
        assert failures[0].reason.startswith("DecodeError: ")
        assert seen == [3]

    async def test_follow_ups_that_cannot_leave_retry_the_row(self) -> None:
        """Handled here, but its follow-ups found no topic: the row is retried."""
        transport = FailingTransport(DestinationNotFoundError("no topic"))
        bus = MessageBus(transport=transport)

        async def react(event: PostPublished, ctx: object) -> None:
            ctx.publish(PostPublished(event.post_id + 1, "next"))  # type: ignore[attr-defined]

        bus.subscriber(PostPublished, react)
        async with bus:
            failures = await deliver_rows(bus, [row(bus, 1, Destination.local())])
        assert failures == [DeliveryFailure("m1", "DestinationNotFoundError: no topic")]
