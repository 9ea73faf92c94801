"""The SQS transport's own behaviour, over real HTTP against LocalStack (asyncio only).

LocalStack delivers SNS -> SQS asynchronously and runs visibility and delay timers on a
1 s tick, so tests wait for effects by polling with a deadline, never by sleeping.
Every test gets a unique name prefix: LocalStack keeps state for the whole session.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from messagebus import (
    DeliveryExpiredError,
    DestinationNotFoundError,
    MessageTooLargeError,
    SendError,
    TransportError,
    TransportUnavailableError,
    UnsupportedBackendError,
)
from messagebus.extension import Delivery, Transport
from messagebus.transports import Outgoing, QueueSpec, TopicSpec, TopicSubscription, Topology
from messagebus.transports._batch_calls import BatchOutcome, Failures, call_batch
from messagebus.transports.sqs import SQSDelivery, SQSTransport
from messagebus.transports.sqs._batching import DeleteBatcher, plan_batches
from messagebus.transports.sqs._errors import client_error, translated, vendor_error
from messagebus.transports.sqs._names import Names

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

REGION = "us-east-1"
MIB = 1024 * 1024
NOWHERE = "http://127.0.0.1:1"  # never contacted by the tests that use it


def sqs_transport(endpoint_url: str = NOWHERE, **options: Any) -> SQSTransport:
    """A transport on LocalStack's fixed test credentials."""
    return SQSTransport(
        region=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


@attrs.define
class ApiCalls:
    """Counts the HTTP requests the transport's clients send, by operation."""

    counts: Counter[str] = attrs.field(factory=Counter)

    def record(self, event_name: str, **_: object) -> None:
        self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def __getitem__(self, operation: str) -> int:
        return self.counts[operation]


@pytest.fixture
def calls() -> ApiCalls:
    return ApiCalls()


@pytest.fixture
async def transport(localstack_endpoint: str, calls: ApiCalls) -> AsyncIterator[SQSTransport]:
    session = get_session()
    session.register("before-send", calls.record)
    prefix = f"t{secrets.token_hex(5)}-"
    async with sqs_transport(localstack_endpoint, prefix=prefix, session=session) as opened:
        assert isinstance(opened, SQSTransport)
        yield opened


def outgoing(
    count: int,
    size: int = 0,
    *,
    group_key: str | None = None,
    deduplication_id: str | None = None,
    delay: float = 0.0,
) -> list[Outgoing]:
    """``count`` messages with ids m0, m1, ...; bodies padded to ``size`` bytes if given."""
    return [
        Outgoing(
            body=json.dumps({"n": n}).encode().ljust(size, b" "),
            message_id=f"m{n}",
            group_key=group_key,
            deduplication_id=deduplication_id,
            delay=delay,
        )
        for n in range(count)
    ]


def numbers(deliveries: Sequence[Delivery]) -> list[int]:
    return [int(json.loads(delivery.body)["n"]) for delivery in deliveries]


async def receive_n(
    transport: SQSTransport, queue: str, count: int, *, ack: bool = True, within: float = 15
) -> list[SQSDelivery]:
    """Poll ``queue`` until ``count`` deliveries came (acked if asked), for ``within`` s."""
    got: list[SQSDelivery] = []
    with anyio.fail_after(within):
        while len(got) < count:
            batch = await transport.receive(queue, wait=1)
            got += batch
            if ack:
                for delivery in batch:
                    await delivery.ack()
    return got


@asyncio_only
class TestProvision:
    """provision() makes queues, dead-letter queues, topics and raw subscriptions, idempotently."""

    async def test_provisioning_twice_changes_nothing(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """A second provision() of the same topology succeeds and leaves one subscription."""
        topology = Topology(
            queues=(QueueSpec("orders", visibility_timeout=7, max_receives=4),),
            topics=(TopicSpec("placed"),),
            subscriptions=(TopicSubscription("placed", "orders"),),
        )
        await transport.provision(topology)
        await transport.provision(topology)
        sqs, sns = transport._clients()
        queue = await transport._queue("orders")
        attributes = (await sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"]))[
            "Attributes"
        ]
        assert attributes["VisibilityTimeout"] == "7"
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["maxReceiveCount"] in (4, "4")
        assert redrive["deadLetterTargetArn"].endswith(f"{transport._names.prefix}orders-dlq")
        topic = await transport._topic("placed")
        subscriptions = (await sns.list_subscriptions_by_topic(TopicArn=topic.arn))["Subscriptions"]
        assert len(subscriptions) == 1
        policy = json.loads(attributes["Policy"])
        assert [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in policy["Statement"]] == [
            topic.arn
        ]

    async def test_a_changed_spec_is_applied_to_the_existing_queue(
        self, transport: SQSTransport
    ) -> None:
        """Provisioning again with another visibility timeout updates the queue."""
        await transport.provision(Topology(queues=(QueueSpec("jobs", visibility_timeout=5),)))
        await transport.provision(Topology(queues=(QueueSpec("jobs", visibility_timeout=9),)))
        sqs, _ = transport._clients()
        queue = await transport._queue("jobs")
        answer = await sqs.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["VisibilityTimeout"]
        )
        assert answer["Attributes"]["VisibilityTimeout"] == "9"

    async def test_fifo_queues_and_their_dead_letter_queues_end_in_fifo(
        self, transport: SQSTransport
    ) -> None:
        """A FIFO queue is <prefix><name>.fifo, its DLQ <prefix><name>-dlq.fifo."""
        await transport.provision(Topology(queues=(QueueSpec("ledger", fifo=True),)))
        prefix = transport._names.prefix
        assert (await transport._queue("ledger")).url.endswith(f"/{prefix}ledger.fifo")
        assert (await transport._queue("ledger-dlq")).url.endswith(f"/{prefix}ledger-dlq.fifo")
        assert (await transport._queue("ledger")).fifo

    async def test_without_max_receives_there_is_no_dead_letter_queue(
        self, transport: SQSTransport
    ) -> None:
        """max_receives=None: no redrive policy and no DLQ."""
        await transport.provision(Topology(queues=(QueueSpec("forever", max_receives=None),)))
        with pytest.raises(DestinationNotFoundError):
            await transport.receive("forever-dlq", wait=0)

    async def test_queues_made_elsewhere_are_found_by_name(
        self, transport: SQSTransport, localstack_endpoint: str
    ) -> None:
        """A second transport with the same prefix finds queues and topics it did not make."""
        await transport.provision(
            Topology(
                queues=(QueueSpec("std"), QueueSpec("seq", fifo=True)),
                topics=(TopicSpec("news", fifo=True),),
            )
        )
        prefix = transport._names.prefix
        async with sqs_transport(localstack_endpoint, prefix=prefix) as other:
            assert isinstance(other, SQSTransport)
            # Its names before a call looked a queue up are the standard ones; after, the
            # ones found (what telemetry shows); explicit fifo= names either, always.
            assert other.address("seq") == f"{prefix}seq"
            assert other.address("seq", fifo=True) == f"{prefix}seq.fifo"
            assert not (await other._queue("std")).fifo
            assert (await other._queue("seq")).fifo
            assert (await other._topic("news")).fifo
            assert other.address("seq") == f"{prefix}seq.fifo"
            assert other.address("std") == f"{prefix}std"
            assert other.address("news", topic=True) == f"{prefix}news.fifo"
            assert other.address("news") == f"{prefix}news"  # no queue of that name found
            with pytest.raises(DestinationNotFoundError, match="no SNS topic"):
                await other.publish("olds", outgoing(1))


@asyncio_only
class TestSend:
    """send() batches by count and bytes, checks sizes first, reports entry failures."""

    async def test_25_small_messages_take_3_calls(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Batches of at most 10: 10 + 10 + 5, and every message arrives once."""
        await transport.provision(Topology(queues=(QueueSpec("q"),)))
        await transport.send("q", outgoing(25))
        assert calls["SendMessageBatch"] == 3
        assert sorted(numbers(await receive_n(transport, "q", 25))) == list(range(25))

    async def test_batches_are_split_by_bytes(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Five 300 KiB messages exceed 1 MiB per call together: 3 + 2, two calls."""
        await transport.provision(Topology(queues=(QueueSpec("big"),)))
        await transport.send("big", outgoing(5, size=300 * 1024))
        assert calls["SendMessageBatch"] == 2
        got = await receive_n(transport, "big", 5)
        assert sorted(numbers(got)) == list(range(5))
        assert {len(delivery.body) for delivery in got} == {300 * 1024}

    async def test_a_message_of_exactly_1_mib_is_sent(self, transport: SQSTransport) -> None:
        """The limit is inclusive and counted in bytes."""
        await transport.provision(Topology(queues=(QueueSpec("edge"),)))
        await transport.send("edge", outgoing(1, size=MIB))
        (delivery,) = await receive_n(transport, "edge", 1)
        assert len(delivery.body) == MIB

    async def test_an_oversize_message_is_refused_with_nothing_sent(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """One byte over 1 MiB: MessageTooLargeError naming it, and no call made at all."""
        await transport.provision(Topology(queues=(QueueSpec("small"),)))
        messages = [*outgoing(3), Outgoing(body=b"x" * (MIB + 1), message_id="huge")]
        with pytest.raises(MessageTooLargeError) as raised:
            await transport.send("small", messages)
        assert (raised.value.message_id, raised.value.size, raised.value.limit) == (
            "huge",
            MIB + 1,
            MIB,
        )
        assert calls["SendMessageBatch"] == 0
        assert await transport.receive("small", wait=0) == []

    async def test_refused_entries_raise_send_error_and_the_rest_arrive(
        self, transport: SQSTransport
    ) -> None:
        """A body SQS refuses (a NUL character) and one not UTF-8 are listed; others sent."""
        await transport.provision(Topology(queues=(QueueSpec("mixed"),)))
        messages = [
            *outgoing(2),
            Outgoing(body=b'{"bad": "\x00"}', message_id="nul"),
            Outgoing(body=b"\xff\xfe", message_id="binary"),
        ]
        with pytest.raises(SendError) as raised:
            await transport.send("mixed", messages)
        assert sorted(message_id for message_id, _ in raised.value.failed) == ["binary", "nul"]
        assert "InvalidMessageContents" in dict(raised.value.failed)["nul"]
        assert sorted(numbers(await receive_n(transport, "mixed", 2))) == [0, 1]

    async def test_a_delayed_message_appears_after_its_delay(self, transport: SQSTransport) -> None:
        """delay=2 keeps it invisible at first; it comes once the delay is over."""
        await transport.provision(Topology(queues=(QueueSpec("later"),)))
        sent = time.monotonic()
        await transport.send("later", outgoing(1, delay=2.0))
        assert await transport.receive("later", wait=0) == []
        await receive_n(transport, "later", 1)
        assert time.monotonic() - sent >= 1.5

    async def test_an_unknown_queue_is_destination_not_found(self, transport: SQSTransport) -> None:
        """Neither <prefix>nowhere nor <prefix>nowhere.fifo exists."""
        with pytest.raises(DestinationNotFoundError, match="nowhere"):
            await transport.send("nowhere", outgoing(1))

    async def test_a_queue_deleted_after_lookup_is_destination_not_found(
        self, transport: SQSTransport
    ) -> None:
        """The cached URL is dropped when SQS says the queue is gone."""
        await transport.provision(Topology(queues=(QueueSpec("gone", max_receives=None),)))
        sqs, _ = transport._clients()
        await sqs.delete_queue(QueueUrl=(await transport._queue("gone")).url)
        with pytest.raises(DestinationNotFoundError):
            await transport.send("gone", outgoing(1))
        assert "gone" not in transport._queues
        with pytest.raises(DestinationNotFoundError):
            await transport.receive("gone", wait=0)

    async def test_delays_outside_the_limit_are_refused(self, transport: SQSTransport) -> None:
        """SQS delays go to 900 s; more is a ValueError before anything is sent."""
        await transport.provision(Topology(queues=(QueueSpec("d"),)))
        with pytest.raises(ValueError, match="900"):
            await transport.send("d", outgoing(1, delay=901.0))

    async def test_sending_nothing_makes_no_call(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """An empty send (or publish) returns at once."""
        await transport.send("not-even-looked-up", [])
        await transport.publish("nor-this", [])
        assert sum(calls.counts.values()) == 0


@asyncio_only
class TestFifo:
    """FIFO queues keep each group's order and deduplicate."""

    async def test_each_group_arrives_in_send_order_across_batches(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Two groups interleaved over 3 calls come out in order per group."""
        await transport.provision(Topology(queues=(QueueSpec("seq", fifo=True),)))
        messages = [
            Outgoing(body=json.dumps({"n": n}).encode(), message_id=f"m{n}", group_key=f"g{n % 2}")
            for n in range(24)
        ]
        await transport.send("seq", messages)
        assert calls["SendMessageBatch"] == 3
        got = await receive_n(transport, "seq", 24)
        by_group: dict[int, list[int]] = {0: [], 1: []}
        for n in numbers(got):
            by_group[n % 2].append(n)
        assert by_group == {0: list(range(0, 24, 2)), 1: list(range(1, 24, 2))}

    async def test_a_repeated_deduplication_id_is_stored_once(
        self, transport: SQSTransport
    ) -> None:
        """Two sends with one deduplication id (and the default group) yield one message."""
        await transport.provision(Topology(queues=(QueueSpec("once", fifo=True),)))
        await transport.send("once", outgoing(1, deduplication_id="k1"))
        await transport.send("once", outgoing(1, deduplication_id="k1"))
        await transport.send("once", [Outgoing(body=b'{"n": 7}', message_id="m7")])
        got = await receive_n(transport, "once", 2)
        assert numbers(got) == [0, 7]
        assert await transport.receive("once", wait=1) == []

    async def test_fifo_queues_refuse_a_per_message_delay(self, transport: SQSTransport) -> None:
        """Capabilities say fifo_delay=False; asking anyway is a ValueError."""
        await transport.provision(Topology(queues=(QueueSpec("nodelay", fifo=True),)))
        assert not transport.capabilities.fifo_delay
        with pytest.raises(ValueError, match="FIFO"):
            await transport.send("nodelay", outgoing(1, delay=1.0))


@asyncio_only
class TestPublish:
    """publish() fans out through SNS with raw delivery, in PublishBatch calls."""

    async def test_fan_out_to_subscribed_queues_only(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Both subscribers get every message, byte for byte; the third queue none."""
        await transport.provision(
            Topology(
                queues=(QueueSpec("billing"), QueueSpec("shipping"), QueueSpec("audit")),
                topics=(TopicSpec("order-placed"), TopicSpec("other")),
                subscriptions=(
                    TopicSubscription("order-placed", "billing"),
                    TopicSubscription("order-placed", "shipping"),
                    TopicSubscription("other", "audit"),
                ),
            )
        )
        messages = outgoing(12)
        await transport.publish("order-placed", messages)
        assert calls["PublishBatch"] == 2
        for queue in ("billing", "shipping"):
            got = await receive_n(transport, queue, 12)
            assert sorted(delivery.body for delivery in got) == sorted(m.body for m in messages)
        assert await transport.receive("audit", wait=1) == []

    async def test_a_fifo_topic_keeps_group_order_into_a_fifo_queue(
        self, transport: SQSTransport
    ) -> None:
        """FIFO topic -> FIFO queue: one group's messages arrive in publish order."""
        await transport.provision(
            Topology(
                queues=(QueueSpec("ordered", fifo=True),),
                topics=(TopicSpec("ticks", fifo=True),),
                subscriptions=(TopicSubscription("ticks", "ordered"),),
            )
        )
        await transport.publish("ticks", outgoing(15, group_key="g"))
        assert numbers(await receive_n(transport, "ordered", 15)) == list(range(15))

    async def test_publish_takes_1_mib_and_packs_calls_to_256_kib(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Over 1 MiB is refused up front; two 200 KiB messages take two calls."""
        await transport.provision(
            Topology(
                queues=(QueueSpec("sink"),),
                topics=(TopicSpec("wide"),),
                subscriptions=(TopicSubscription("wide", "sink"),),
            )
        )
        _, sns = transport._clients()
        topic = await transport._topic("wide")
        attributes = (await sns.get_topic_attributes(TopicArn=topic.arn))["Attributes"]
        assert attributes["MaximumMessageSize"] == str(MIB)
        with pytest.raises(MessageTooLargeError) as raised:
            await transport.publish("wide", outgoing(1, size=MIB + 1))
        assert raised.value.limit == MIB
        assert calls["PublishBatch"] == 0
        await transport.publish("wide", outgoing(2, size=200 * 1024))
        assert calls["PublishBatch"] == 2
        assert sorted(numbers(await receive_n(transport, "sink", 2))) == [0, 1]

    async def test_a_topic_refusing_a_large_message_is_an_error(
        self, transport: SQSTransport
    ) -> None:
        """LocalStack keeps SNS's old 256 KiB limit: a 300 KiB publish raises, not drops."""
        await transport.provision(Topology(topics=(TopicSpec("narrow"),)))
        with pytest.raises(TransportError, match="BatchRequestTooLong"):
            await transport.publish("narrow", outgoing(1, size=300 * 1024))

    async def test_an_unknown_topic_is_destination_not_found(self, transport: SQSTransport) -> None:
        """No SNS topic of that name under the prefix."""
        with pytest.raises(DestinationNotFoundError, match="nowhere"):
            await transport.publish("nowhere", outgoing(1))

    async def test_sns_cannot_delay(self, transport: SQSTransport) -> None:
        """A delay on publish is a ValueError: SNS has no per-message delay."""
        with pytest.raises(ValueError, match="delay"):
            await transport.publish("any", outgoing(1, delay=1.0))


async def concurrently(*sends: Callable[[], Awaitable[object]]) -> dict[int, object]:
    """Run ``sends`` at once; return by position "ok" or the exception each one raised."""
    outcomes: dict[int, object] = {}

    async def one(position: int, send: Callable[[], Awaitable[object]]) -> None:
        try:
            await send()
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[position] = error
        else:
            outcomes[position] = "ok"

    async with anyio.create_task_group() as group:
        for position, send in enumerate(sends):
            group.start_soon(one, position, send)
    return outcomes


def single(n: int, **options: Any) -> list[Outgoing]:
    """Message ``n`` alone (id m<n>), as the bus sends one enqueued command."""
    return [Outgoing(body=json.dumps({"n": n}).encode(), message_id=f"m{n}", **options)]


@asyncio_only
class TestCoalescing:
    """Concurrent one-message sends and publishes share batch calls; each gets its own outcome."""

    async def test_25_concurrent_single_sends_take_3_calls(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """10 + 10 + 5 in three SendMessageBatch calls; every message arrives once."""
        await transport.provision(Topology(queues=(QueueSpec("q"),)))
        outcomes = await concurrently(*(partial(transport.send, "q", single(n)) for n in range(25)))
        assert set(outcomes.values()) == {"ok"}
        assert calls["SendMessageBatch"] == 3
        assert sorted(numbers(await receive_n(transport, "q", 25))) == list(range(25))
        assert await transport.receive("q", wait=0) == []

    async def test_25_concurrent_single_publishes_take_3_calls(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """PublishBatch coalesces the same way; the subscribed queue gets all 25."""
        await transport.provision(
            Topology(
                queues=(QueueSpec("sink"),),
                topics=(TopicSpec("news"),),
                subscriptions=(TopicSubscription("news", "sink"),),
            )
        )
        outcomes = await concurrently(
            *(partial(transport.publish, "news", single(n)) for n in range(25))
        )
        assert set(outcomes.values()) == {"ok"}
        assert calls["PublishBatch"] == 3
        assert sorted(numbers(await receive_n(transport, "sink", 25))) == list(range(25))

    async def test_without_a_window_each_send_is_its_own_call(
        self, localstack_endpoint: str, calls: ApiCalls
    ) -> None:
        """send_window=0 turns coalescing off: a call per send and publish; below 0 is refused."""
        session = get_session()
        session.register("before-send", calls.record)
        prefix = f"t{secrets.token_hex(5)}-"
        async with sqs_transport(
            localstack_endpoint, prefix=prefix, session=session, send_window=0
        ) as alone:
            await alone.provision(Topology(queues=(QueueSpec("q"),), topics=(TopicSpec("t"),)))
            await concurrently(*(partial(alone.send, "q", single(n)) for n in range(5)))
            await concurrently(*(partial(alone.publish, "t", single(n)) for n in range(2)))
        assert calls["SendMessageBatch"] == 5
        assert calls["PublishBatch"] == 2
        with pytest.raises(ValueError, match="send_window"):
            sqs_transport(send_window=-1)

    async def test_a_refused_message_fails_its_own_sender_only(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """A NUL body in a shared call: that sender's SendError names it; the others arrive."""
        await transport.provision(Topology(queues=(QueueSpec("mixed"),)))
        sqs, _ = transport._clients()
        sizes: list[int] = []

        def record(params: dict[str, Any], **_: object) -> None:
            sizes.append(len(params["Entries"]))

        sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", record)
        bad = Outgoing(body=b'{"n": "\x00"}', message_id="nul")
        outcomes = await concurrently(
            partial(transport.send, "mixed", single(0)),
            partial(transport.send, "mixed", [bad]),
            partial(transport.send, "mixed", single(2)),
        )
        # One shared call; LocalStack marks the refusal SenderFault false (AWS: true), so
        # the refused entry is tried again alone before it is reported.
        assert sizes[0] == 3
        assert set(sizes[1:]) <= {1}
        assert outcomes[0] == outcomes[2] == "ok"
        failed = outcomes[1]
        assert isinstance(failed, SendError)
        assert [message_id for message_id, _ in failed.failed] == ["nul"]
        assert sorted(numbers(await receive_n(transport, "mixed", 2))) == [0, 2]

    async def test_an_oversize_message_is_refused_before_it_joins(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """MessageTooLargeError for its sender before anything is queued; the rest go."""
        await transport.provision(Topology(queues=(QueueSpec("sizes"),)))
        huge = Outgoing(body=b"x" * (MIB + 1), message_id="huge")
        outcomes = await concurrently(
            partial(transport.send, "sizes", single(0)),
            partial(transport.send, "sizes", [huge]),
        )
        assert outcomes[0] == "ok"
        assert isinstance(outcomes[1], MessageTooLargeError)
        assert calls["SendMessageBatch"] == 1
        assert numbers(await receive_n(transport, "sizes", 1)) == [0]

    async def test_an_unreachable_endpoint_fails_every_sender_of_the_call(
        self, transport: SQSTransport
    ) -> None:
        """The shared call fails as a whole: each sender raises TransportUnavailableError."""
        await transport.provision(Topology(queues=(QueueSpec("down"),)))
        sqs, _ = transport._clients()

        def refuse(**_: object) -> None:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

        sqs.meta.events.register("before-send.sqs.SendMessageBatch", refuse)
        outcomes = await concurrently(
            *(partial(transport.send, "down", single(n)) for n in range(3))
        )
        assert all(isinstance(error, TransportUnavailableError) for error in outcomes.values())
        assert len({id(error) for error in outcomes.values()}) == 3

    async def test_a_deleted_queue_is_destination_not_found_for_every_sender(
        self, transport: SQSTransport
    ) -> None:
        """Every sender of the call gets DestinationNotFoundError; the stale URL is dropped."""
        await transport.provision(Topology(queues=(QueueSpec("gone", max_receives=None),)))
        sqs, _ = transport._clients()
        await sqs.delete_queue(QueueUrl=(await transport._queue("gone")).url)
        outcomes = await concurrently(
            *(partial(transport.send, "gone", single(n)) for n in range(3))
        )
        assert all(isinstance(error, DestinationNotFoundError) for error in outcomes.values())
        assert "gone" not in transport._queues

    async def test_fifo_sends_keep_their_arrival_order_across_calls(
        self, localstack_endpoint: str, calls: ApiCalls
    ) -> None:
        """25 single sends to one FIFO group, in order: 3 calls, received in that order."""
        session = get_session()
        session.register("before-send", calls.record)
        prefix = f"t{secrets.token_hex(5)}-"
        # A window of 1 s: starting the sends one by one must not outlast it.
        async with sqs_transport(
            localstack_endpoint, prefix=prefix, session=session, send_window=1.0
        ) as opened:
            assert isinstance(opened, SQSTransport)
            await opened.provision(Topology(queues=(QueueSpec("seq", fifo=True),)))
            async with anyio.create_task_group() as group:
                for n in range(25):
                    # Started in turn: each has joined the batch before the next starts.
                    await group.start(started_send, opened, "seq", single(n, group_key="g"))
            assert calls["SendMessageBatch"] == 3
            assert numbers(await receive_n(opened, "seq", 25)) == list(range(25))


async def started_send(
    transport: SQSTransport,
    queue: str,
    messages: Sequence[Outgoing],
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    """Report started, then send: the messages join the batch before the parent goes on."""
    task_status.started()
    await transport.send(queue, messages)


@asyncio_only
class TestDeliveries:
    """receive() long-polls; ack batches deletes; nack and extend change visibility."""

    async def test_acks_from_many_tasks_share_one_delete_call(
        self, transport: SQSTransport, calls: ApiCalls
    ) -> None:
        """Ten concurrent acks are one DeleteMessageBatch; acked messages never return."""
        await transport.provision(Topology(queues=(QueueSpec("acks", visibility_timeout=1),)))
        await transport.send("acks", outgoing(10))
        got = await receive_n(transport, "acks", 10, ack=False)
        async with anyio.create_task_group() as group:
            for delivery in got:
                group.start_soon(delivery.ack)
        assert calls["DeleteMessageBatch"] == 1
        assert await transport.receive("acks", wait=2) == []

    async def test_an_unsettled_message_returns_with_a_higher_receive_count(
        self, transport: SQSTransport
    ) -> None:
        """visibility_timeout=1 on receive: it comes back by itself, receive_count 2."""
        await transport.provision(Topology(queues=(QueueSpec("retry"),)))
        await transport.send("retry", outgoing(1))
        (first,) = await transport.receive("retry", wait=5, visibility_timeout=1)
        assert first.receive_count == 1
        (again,) = await receive_n(transport, "retry", 1)
        assert again.receive_count == 2
        assert again.body == first.body

    async def test_nack_with_a_delay_hides_the_message_that_long(
        self, transport: SQSTransport
    ) -> None:
        """nack(2): not there at once, there about 2 s later (LocalStack ticks each 1 s)."""
        await transport.provision(Topology(queues=(QueueSpec("nacks"),)))
        await transport.send("nacks", outgoing(1))
        (delivery,) = await receive_n(transport, "nacks", 1, ack=False)
        nacked = time.monotonic()
        await delivery.nack(2.0)
        assert await transport.receive("nacks", wait=0) == []
        (again,) = await receive_n(transport, "nacks", 1)
        assert time.monotonic() - nacked >= 1.5
        assert again.receive_count == 2

    async def test_nack_without_delay_redelivers_at_once(self, transport: SQSTransport) -> None:
        """nack() makes it visible now: the next receive gets it."""
        await transport.provision(Topology(queues=(QueueSpec("now"),)))
        await transport.send("now", outgoing(1))
        (delivery,) = await receive_n(transport, "now", 1, ack=False)
        await delivery.nack()
        (again,) = await receive_n(transport, "now", 1, within=5)
        assert again.receive_count == 2

    async def test_extend_keeps_the_message_past_the_queue_timeout(
        self, transport: SQSTransport
    ) -> None:
        """Timeout 1 s, extend(4): still invisible 2 s later, back after the extension."""
        await transport.provision(Topology(queues=(QueueSpec("slow", visibility_timeout=1),)))
        await transport.send("slow", outgoing(1))
        (delivery,) = await receive_n(transport, "slow", 1, ack=False)
        extended = time.monotonic()
        await delivery.extend(4.0)
        assert await transport.receive("slow", wait=2) == []
        (again,) = await receive_n(transport, "slow", 1)
        assert time.monotonic() - extended >= 3.5
        assert again.receive_count == 2

    async def test_settling_a_deleted_message_is_delivery_expired(
        self, transport: SQSTransport
    ) -> None:
        """After the ack, nack and extend on the old receipt raise DeliveryExpiredError."""
        await transport.provision(Topology(queues=(QueueSpec("done"),)))
        await transport.send("done", outgoing(1))
        (delivery,) = await receive_n(transport, "done", 1)
        with pytest.raises(DeliveryExpiredError):
            await delivery.nack(0)
        with pytest.raises(DeliveryExpiredError):
            await delivery.extend(10)

    async def test_an_invalid_receipt_on_ack_is_delivery_expired(
        self, transport: SQSTransport
    ) -> None:
        """DeleteMessageBatch fails the entry (ReceiptHandleIsInvalid): that ack raises."""
        await transport.provision(Topology(queues=(QueueSpec("bogus"),)))
        fake = SQSDelivery(
            body=b"{}",
            queue="bogus",
            receive_count=1,
            message_id="x",
            receipt_handle="not-a-receipt",
            transport=transport,
        )
        with pytest.raises(DeliveryExpiredError):
            await fake.ack()

    async def test_receive_waits_no_longer_than_asked(self, transport: SQSTransport) -> None:
        """An empty queue answers [] after about ``wait`` seconds."""
        await transport.provision(Topology(queues=(QueueSpec("empty"),)))
        started = time.monotonic()
        assert await transport.receive("empty", wait=1) == []
        assert 0.9 <= time.monotonic() - started < 3

    async def test_a_cancelled_receive_loses_no_message(self, transport: SQSTransport) -> None:
        """A long poll cut short by a timeout; the message sent after it is still received."""
        await transport.provision(Topology(queues=(QueueSpec("cut"),)))
        with anyio.move_on_after(0.3):
            await transport.receive("cut", wait=20)
        await transport.send("cut", outgoing(1))
        # LocalStack answers the abandoned poll with this message; the transport makes it
        # visible again at once instead of leaving it hidden for the 30 s timeout.
        assert numbers(await receive_n(transport, "cut", 1, within=5)) == [0]

    async def test_receive_takes_at_most_10_and_at_least_1(self, transport: SQSTransport) -> None:
        """max_messages above 10 is capped at SQS's 10; below 1 is a ValueError."""
        await transport.provision(Topology(queues=(QueueSpec("many"),)))
        await transport.send("many", outgoing(15))
        with anyio.fail_after(10):
            batch: Sequence[SQSDelivery] = []
            while len(batch) < 10:  # LocalStack may answer with fewer at first
                for delivery in batch:
                    await delivery.nack()
                batch = await transport.receive("many", max_messages=50, wait=1)
        assert len(batch) == 10
        with pytest.raises(ValueError, match="at least 1"):
            await transport.receive("many", max_messages=0)

    async def test_the_ack_window_closes_with_the_transport(
        self, localstack_endpoint: str, calls: ApiCalls
    ) -> None:
        """Leaving the transport sends pending acks at once, and waits for them."""
        session = get_session()
        session.register("before-send", calls.record)
        prefix = f"t{secrets.token_hex(5)}-"
        acked = 0

        async def ack(delivery: SQSDelivery) -> None:
            nonlocal acked
            await delivery.ack()
            acked += 1

        async with anyio.create_task_group() as group:
            async with sqs_transport(
                localstack_endpoint, prefix=prefix, session=session, ack_window=60
            ) as opened:
                assert isinstance(opened, SQSTransport)
                await opened.provision(
                    Topology(queues=(QueueSpec("closing", visibility_timeout=1),))
                )
                await opened.send("closing", outgoing(3))
                for delivery in await receive_n(opened, "closing", 3, ack=False):
                    group.start_soon(ack, delivery)
                await anyio.wait_all_tasks_blocked()
                assert calls["DeleteMessageBatch"] == 0
            assert calls["DeleteMessageBatch"] == 1
        assert acked == 3
        async with sqs_transport(localstack_endpoint, prefix=prefix) as again:
            assert await again.receive("closing", wait=2) == []

    async def test_closing_ends_a_waiting_receive(self, localstack_endpoint: str) -> None:
        """Closing does not wait out a long poll: the receive raises TransportError at once."""
        prefix = f"t{secrets.token_hex(5)}-"
        outcome: list[str] = []

        async def receive(opened: SQSTransport) -> None:
            try:
                await opened.receive("idle", wait=20)
            except TransportError as error:
                outcome.append(str(error))

        with anyio.fail_after(10):
            async with (
                anyio.create_task_group() as group,
                sqs_transport(localstack_endpoint, prefix=prefix) as opened,
            ):
                assert isinstance(opened, SQSTransport)
                await opened.provision(Topology(queues=(QueueSpec("idle"),)))
                group.start_soon(receive, opened)
                await anyio.wait_all_tasks_blocked()
                started = time.monotonic()
        assert time.monotonic() - started < 2
        assert outcome == ["the transport closed while this receive waited"]


@asyncio_only
class TestUnavailable:
    """Failures of the endpoint itself become TransportUnavailableError."""

    async def test_a_closed_port_is_unavailable_quickly(self) -> None:
        """Nothing listens: TransportUnavailableError within seconds, botocore's as cause."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = time.monotonic()
        async with sqs_transport(
            f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1
        ) as closed:
            with pytest.raises(TransportUnavailableError) as raised:
                await closed.send("q", outgoing(1))
        assert isinstance(raised.value.__cause__, EndpointConnectionError)
        assert time.monotonic() - started < 5

    async def test_unavailable_mid_send_is_raised_when_nothing_was_sent(
        self, transport: SQSTransport
    ) -> None:
        """Every batch failed for the same call-level reason: that error, not SendError."""
        await transport.provision(Topology(queues=(QueueSpec("q"),)))
        sqs, _ = transport._clients()

        def refuse(**_: object) -> None:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

        sqs.meta.events.register("before-send.sqs.SendMessageBatch", refuse)
        with pytest.raises(TransportUnavailableError):
            await transport.send("q", outgoing(15))

    async def test_some_batches_sent_is_send_error(self, transport: SQSTransport) -> None:
        """FIFO: first call sent, the second failed, the third not tried: SendError lists 15."""
        await transport.provision(Topology(queues=(QueueSpec("q", fifo=True),)))
        sqs, _ = transport._clients()
        seen = 0

        def refuse_after_first(**_: object) -> None:
            nonlocal seen
            seen += 1
            if seen > 1:
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

        sqs.meta.events.register("before-send.sqs.SendMessageBatch", refuse_after_first)
        with pytest.raises(SendError) as raised:
            await transport.send("q", outgoing(25, group_key="g"))
        assert [message_id for message_id, _ in raised.value.failed] == [
            f"m{n}" for n in range(10, 25)
        ]
        assert numbers(await receive_n(transport, "q", 10)) == list(range(10))
        assert seen == 1 + 3  # the second call's 3 attempts (bounded retries); no third call


class TestBackend:
    """The transport refuses trio with a clear error, entering or calling."""

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_entering_under_trio_is_refused(self) -> None:
        """UnsupportedBackendError names asyncio and the way out."""
        transport = sqs_transport()
        with pytest.raises(UnsupportedBackendError, match=r"asyncio only.*backend='asyncio'"):
            await transport.__aenter__()

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_calling_under_trio_is_refused(self) -> None:
        """Every call checks, not only entering."""
        transport = sqs_transport()
        with pytest.raises(UnsupportedBackendError):
            await transport.send("q", outgoing(1))
        with pytest.raises(UnsupportedBackendError):
            await transport.receive("q")

    @asyncio_only
    async def test_calls_before_entering_are_refused(self) -> None:
        """Not opened: TransportError saying to use it in 'async with'."""
        transport = sqs_transport()
        with pytest.raises(TransportError, match="async with"):
            await transport.provision(Topology())

    @asyncio_only
    async def test_entering_twice_is_refused(self) -> None:
        """One open at a time; it is a Transport and declares SQS's limits."""
        async with sqs_transport() as t:
            assert isinstance(t, Transport)
            assert t.capabilities.max_message_bytes == MIB
            with pytest.raises(TransportError, match="already open"):
                await t.__aenter__()


class TestPlanBatches:
    """plan_batches splits in order by count and by bytes, as few batches as possible."""

    def test_splits_by_count(self) -> None:
        """25 items of 1 byte, 10 per batch: 10 + 10 + 5."""
        assert plan_batches([1] * 25, 10, 100) == [range(10), range(10, 20), range(20, 25)]

    def test_splits_by_bytes(self) -> None:
        """A batch closes before the item that would pass the byte limit."""
        assert plan_batches([40, 40, 30, 60, 100], 10, 100) == [
            range(2),
            range(2, 4),
            range(4, 5),
        ]

    def test_items_at_or_over_the_limit_fill_a_batch_each(self) -> None:
        """An item of max_bytes or more is a batch of its own; nothing is a batch of nothing."""
        assert plan_batches([100, 100], 10, 100) == [range(1), range(1, 2)]
        assert plan_batches([10, 300, 10], 10, 100) == [range(1), range(1, 2), range(2, 3)]
        assert plan_batches([], 10, 100) == []


def failure(entry_id: str, *, sender: bool, code: str = "InternalError") -> dict[str, object]:
    return {"Id": entry_id, "SenderFault": sender, "Code": code, "Message": "boom"}


class TestCallBatch:
    """call_batch retries AWS-side entry failures and reports the rest."""

    async def test_server_faults_are_retried_until_they_pass(self) -> None:
        """An entry AWS failed on its side goes again, alone; then nothing is failed."""
        sent: list[list[str]] = []

        async def call(entries: list[dict[str, str]]) -> Failures:
            sent.append([entry["Id"] for entry in entries])
            return [failure("1", sender=False)] if len(sent) == 1 else []

        outcome = await call_batch(call, [{"Id": "0"}, {"Id": "1"}])
        assert outcome == BatchOutcome({})
        assert sent == [["0", "1"], ["1"]]

    async def test_sender_faults_are_final_at_once(self) -> None:
        """SenderFault entries are not sent again; the reason has AWS's code."""
        sent: list[list[str]] = []

        async def call(entries: list[dict[str, str]]) -> Failures:
            sent.append([entry["Id"] for entry in entries])
            return [failure("0", sender=True, code="InvalidMessageContents")]

        outcome = await call_batch(call, [{"Id": "0"}])
        assert outcome.failed == {"0": "InvalidMessageContents: boom"}
        assert sent == [["0"]]

    async def test_persistent_server_faults_fail_after_three_attempts(self) -> None:
        """Three attempts in all, then the entry is reported."""
        attempts = 0

        async def call(entries: list[dict[str, str]]) -> Failures:
            nonlocal attempts
            attempts += 1
            return [failure("0", sender=False)]

        outcome = await call_batch(call, [{"Id": "0"}])
        assert attempts == 3
        assert outcome.failed == {"0": "InternalError: boom"}

    async def test_a_failed_call_fails_every_pending_entry(self) -> None:
        """A call-level TransportError is the outcome's error; all its entries failed."""

        async def call(entries: list[dict[str, str]]) -> Failures:
            raise TransportUnavailableError("down")

        outcome = await call_batch(call, [{"Id": "0"}, {"Id": "1"}])
        assert isinstance(outcome.error, TransportUnavailableError)
        assert outcome.failed == {"0": "down", "1": "down"}


@attrs.define
class FakeDeletes:
    """Records delete calls; answers each handle with the error ``errors`` gives for it."""

    errors: dict[str, TransportError] = attrs.field(factory=dict)
    calls: list[list[str]] = attrs.field(factory=list)
    block: anyio.Event | None = None

    async def __call__(self, handles: Sequence[str]) -> Sequence[TransportError | None]:
        self.calls.append(list(handles))
        if self.block is not None:
            await self.block.wait()
        return [self.errors.get(handle) for handle in handles]


class TestDeleteBatcher:
    """Concurrent acks become batch calls; each ack gets its own entry's result."""

    async def test_a_full_batch_goes_at_once(self) -> None:
        """Ten acks fill a call without waiting for the window (an hour here)."""
        deletes = FakeDeletes()
        async with anyio.create_task_group() as group:
            batcher = DeleteBatcher(deletes, group, window=3600)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as acks:
                    for n in range(10):
                        acks.start_soon(batcher.ack, f"h{n}")
            group.cancel_scope.cancel()
        assert [sorted(call) for call in deletes.calls] == [sorted(f"h{n}" for n in range(10))]

    async def test_stragglers_go_after_the_window(self) -> None:
        """Twelve acks: ten at once, two when the window closes."""
        deletes = FakeDeletes()
        async with anyio.create_task_group() as group:
            batcher = DeleteBatcher(deletes, group, window=0.01)
            for n in range(12):
                group.start_soon(batcher.ack, f"h{n}")
        assert sorted(len(call) for call in deletes.calls) == [2, 10]

    async def test_each_ack_raises_only_its_own_error(self) -> None:
        """One entry's error reaches that ack; the others return."""
        deletes = FakeDeletes(errors={"bad": DeliveryExpiredError("stale")})
        results: dict[str, str] = {}

        async def ack(handle: str) -> None:
            try:
                await batcher.ack(handle)
                results[handle] = "ok"
            except DeliveryExpiredError:
                results[handle] = "expired"

        async with anyio.create_task_group() as group:
            batcher = DeleteBatcher(deletes, group, window=0.01)
            for handle in ("a", "bad", "c"):
                group.start_soon(ack, handle)
        assert results == {"a": "ok", "bad": "expired", "c": "ok"}
        assert len(deletes.calls) == 1

    async def test_an_ack_cut_off_by_closing_is_not_confirmed(self) -> None:
        """Cancelled mid-call, the waiting ack raises TransportError, never passes silently."""
        deletes = FakeDeletes(block=anyio.Event())
        outcome: list[str] = []

        async def ack() -> None:
            try:
                await batcher.ack("h")
            except TransportError as error:
                outcome.append(str(error))

        async with anyio.create_task_group() as outer, anyio.create_task_group() as group:
            batcher = DeleteBatcher(deletes, group, window=0)
            outer.start_soon(ack)
            await anyio.wait_all_tasks_blocked()
            assert deletes.calls == [["h"]]
            group.cancel_scope.cancel()
        assert outcome == ["the ack was not confirmed before the transport closed"]


def answer(code: str, message: str = "", status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "Op")


class TestErrorTranslation:
    """botocore's exceptions become the library's, with the original as __cause__."""

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (answer("AWS.SimpleQueueService.NonExistentQueue"), DestinationNotFoundError),
            (answer("QueueDoesNotExist"), DestinationNotFoundError),
            (answer("NotFound"), DestinationNotFoundError),
            (answer("ReceiptHandleIsInvalid"), DeliveryExpiredError),
            (answer("AWS.SimpleQueueService.MessageNotInflight"), DeliveryExpiredError),
            (
                answer("InvalidParameterValue", "Value x for parameter ReceiptHandle is invalid."),
                DeliveryExpiredError,
            ),
            (answer("InvalidParameterValue", "Value x for parameter DelaySeconds"), TransportError),
            (answer("ThrottlingException"), TransportUnavailableError),
            (answer("Whatever", status=503), TransportUnavailableError),
            (answer("AccessDenied", status=403), TransportError),
        ],
    )
    def test_client_errors(self, error: ClientError, expected: type[TransportError]) -> None:
        """AWS's code (either spelling) or HTTP status picks the library's class."""
        translated_error = client_error(error, "queue 'q'")
        assert type(translated_error) is expected
        assert str(translated_error).startswith("queue 'q'")

    @pytest.mark.parametrize(
        ("error", "expected", "text"),
        [
            (EndpointConnectionError(endpoint_url="http://x"), TransportUnavailableError, "reach"),
            (ReadTimeoutError(endpoint_url="http://x"), TransportUnavailableError, "reach"),
            (NoCredentialsError(), TransportError, "credentials"),
            (ParamValidationError(report="bad"), TransportError, "bad"),
        ],
    )
    def test_errors_below_the_answer(
        self, error: Exception, expected: type[TransportError], text: str
    ) -> None:
        """Network failures are unavailability; credentials and the rest TransportError."""
        with pytest.raises(expected, match=text) as raised, translated("queue 'q'"):
            raise error
        assert type(raised.value) is expected
        assert raised.value.__cause__ is error

    def test_vendor_error_is_what_translated_uses(self) -> None:
        """The function form gives the same class as the context manager."""
        assert type(vendor_error(NoCredentialsError(), "q")) is TransportError


class TestNames:
    """Logical names map to <prefix><name>[.fifo], within AWS's rules."""

    def test_physical_names(self) -> None:
        """FIFO adds .fifo after the prefixed name."""
        names = Names("dev-")
        assert names.physical("orders", fifo=False) == "dev-orders"
        assert names.physical("orders", fifo=True) == "dev-orders.fifo"

    @pytest.mark.parametrize("bad", ["", "a.b", "a b", "x" * 81])
    def test_bad_names_are_refused(self, bad: str) -> None:
        """Only letters, digits, - and _, at most 80 characters with the prefix."""
        with pytest.raises(ValueError, match=r"name|longer"):
            Names("").physical(bad, fifo=False)

    def test_a_bad_prefix_is_refused(self) -> None:
        """The prefix follows the same alphabet."""
        with pytest.raises(ValueError, match="prefix"):
            Names("dev.")
