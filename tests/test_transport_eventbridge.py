"""The EventBridge transport on the in-memory double (any anyio backend).

The double (:class:`MemoryEventBridge`) keeps AWS's semantics for what the transport
uses: buses, rules with patterns, fan-out to queue targets, per-entry failures in a 200
reply. The queue side is an :class:`InMemoryTransport` on the same broker.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from messagebus import (
    ConfigurationError,
    DestinationNotFoundError,
    InvalidArgumentError,
    MessageBus,
    MessageTooLargeError,
    SendError,
    TransportError,
    TransportUnavailableError,
)
from messagebus.extension import Transport
from messagebus.transports import (
    Outgoing,
    QueueSpec,
    SQSSettings,
    TopicSpec,
    TopicSubscription,
    Topology,
    transport_from_url,
)
from messagebus.transports.eventbridge import (
    EventBridgeClientError,
    EventBridgeTransport,
    MemoryEventBridge,
    unwrap_event,
)
from messagebus.transports.eventbridge._errors import translated
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.messages import PostPublished
from tests.test_transport_bus import quiet, working

pytestmark = pytest.mark.anyio

PUBLISHED = "blog.post.published"
DELETED = "blog.post.deleted"


def envelope(n: int, wire_type: str = PUBLISHED, pad: int = 0) -> Outgoing:
    """A CloudEvents-shaped body (what the codec makes) with id ``m<n>``."""
    body = {
        "specversion": "1.0",
        "id": f"m{n}",
        "type": wire_type,
        "source": "blog",
        "data": {"n": n, "pad": "x" * pad},
    }
    return Outgoing(json.dumps(body).encode(), f"m{n}")


def topology(**subscribed: tuple[str, ...]) -> Topology:
    """Queues named by the keywords, each subscribed to topics carrying those wire types."""
    topics = {wire_type for types in subscribed.values() for wire_type in types}
    return Topology(
        queues=tuple(QueueSpec(queue) for queue in subscribed),
        topics=tuple(TopicSpec(t.replace(".", "-"), message_types=(t,)) for t in sorted(topics)),
        subscriptions=tuple(
            TopicSubscription(t.replace(".", "-"), queue)
            for queue, types in subscribed.items()
            for t in types
        ),
    )


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
def bridge(broker: MemoryBroker) -> MemoryEventBridge:
    return MemoryEventBridge(broker)


@pytest.fixture
async def transport(
    broker: MemoryBroker, bridge: MemoryEventBridge
) -> AsyncIterator[EventBridgeTransport]:
    made = EventBridgeTransport(InMemoryTransport(broker), bridge, bus="app", retry_delay=0)
    async with made:
        yield made


async def detail_ids(transport: EventBridgeTransport, queue: str) -> list[str]:
    """Receive and ack what ``queue`` holds now; return the envelope ids, sorted."""
    deliveries = await transport.receive(queue, wait=0)
    for delivery in deliveries:
        await delivery.ack()
    return sorted(json.loads(delivery.body)["id"] for delivery in deliveries)


class TestDouble:
    """The double as AWS behaves, called directly."""

    async def test_an_event_reaches_each_matching_rules_targets_as_an_aws_event(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """Fan-out: one copy per matching rule's target; the body has AWS's keys."""
        queues = InMemoryTransport(broker)
        await queues.provision(Topology(queues=(QueueSpec("a"), QueueSpec("b"), QueueSpec("c"))))
        for rule, queue, pattern in [
            ("ra", "a", {"detail-type": [{"prefix": "blog."}]}),
            ("rb", "b", {"source": [{"anything-but": "blog"}]}),
            ("rc", "c", {"detail": {"n": [{"numeric": [">", 0]}]}}),
        ]:
            await bridge.put_rule(Name=rule, EventPattern=json.dumps(pattern))
            await bridge.put_targets(
                Rule=rule, Targets=[{"Id": "q", "Arn": bridge.queue_arn(queue)}]
            )
        answer = await bridge.put_events(
            Entries=[{"Source": "blog", "DetailType": PUBLISHED, "Detail": '{"n": 1}'}]
        )
        assert answer["FailedEntryCount"] == 0
        (delivery,) = await queues.receive("a", wait=0)
        event = json.loads(delivery.body)
        assert sorted(event) == sorted(
            [
                "version",
                "id",
                "detail-type",
                "source",
                "account",
                "time",
                "region",
                "resources",
                "detail",
            ]
        )
        assert (event["detail-type"], event["source"], event["detail"]) == (
            PUBLISHED,
            "blog",
            {"n": 1},
        )
        assert event["id"] == answer["Entries"][0]["EventId"]
        assert await queues.receive("b", wait=0) == []
        assert len(await queues.receive("c", wait=0)) == 1

    async def test_entries_are_judged_one_by_one(self, bridge: MemoryEventBridge) -> None:
        """A malformed, an aws.* or an oversize entry fails alone, in a 200 reply."""
        good = {"Source": "blog", "DetailType": PUBLISHED, "Detail": "{}"}
        answer = await bridge.put_events(
            Entries=[
                good,
                {**good, "Detail": "[1]"},
                {**good, "Source": "aws.s3"},
                {**good, "Detail": json.dumps({"x": "y" * 256 * 1024})},
                {**good, "EventBusName": "nowhere"},
            ]
        )
        codes = [entry.get("ErrorCode") for entry in answer["Entries"]]
        assert codes == [
            None,
            "MalformedDetail",
            "NotAuthorizedForSourceException",
            "InvalidArgument",
            "ResourceNotFoundException",
        ]
        assert answer["FailedEntryCount"] == 4

    async def test_rules_and_targets_read_back_as_aws_shows_them(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """DescribeRule and ListTargetsByRule: ARN by bus, pattern, group; unknown: not found."""
        await InMemoryTransport(broker).provision(Topology(queues=(QueueSpec("f", fifo=True),)))
        await bridge.put_rule(Name="r", EventPattern='{"source": ["blog"]}')
        group = {"MessageGroupId": "g"}
        await bridge.put_targets(
            Rule="r", Targets=[{"Id": "q", "Arn": bridge.queue_arn("f"), "SqsParameters": group}]
        )
        rule = await bridge.describe_rule(Name="r")
        assert rule["Arn"] == "arn:aws:events:us-east-1:000000000000:rule/r"
        assert json.loads(rule["EventPattern"]) == {"source": ["blog"]}
        assert (await bridge.list_targets_by_rule(Rule="r"))["Targets"] == [
            {"Id": "q", "Arn": bridge.queue_arn("f"), "SqsParameters": group}
        ]
        with pytest.raises(EventBridgeClientError, match="ResourceNotFound"):
            await bridge.list_targets_by_rule(Rule="nothing")

    async def test_a_fifo_target_without_a_group_is_refused(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """As AWS: a FIFO queue target needs SqsParameters.MessageGroupId."""
        await InMemoryTransport(broker).provision(Topology(queues=(QueueSpec("f", fifo=True),)))
        await bridge.put_rule(Name="r", EventPattern='{"source": ["blog"]}')
        answer = await bridge.put_targets(
            Rule="r",
            Targets=[
                {"Id": "bare", "Arn": bridge.queue_arn("f")},
                {"Id": "named", "Arn": "arn:aws:sqs:us-east-1:000000000000:gone.fifo"},
                {"Id": "unknown", "Arn": bridge.queue_arn("not-yet")},  # AWS takes it too
                {
                    "Id": "grouped",
                    "Arn": bridge.queue_arn("f"),
                    "SqsParameters": {"MessageGroupId": "g"},
                },
            ],
        )
        assert [failed["TargetId"] for failed in answer["FailedEntries"]] == ["bare", "named"]
        assert answer["FailedEntryCount"] == 2

    async def test_more_than_10_entries_is_a_validation_error(
        self, bridge: MemoryEventBridge
    ) -> None:
        """AWS refuses the whole call, as LocalStack does."""
        entry = {"Source": "blog", "DetailType": PUBLISHED, "Detail": "{}"}
        with pytest.raises(EventBridgeClientError, match="ValidationException"):
            await bridge.put_events(Entries=[entry] * 11)

    async def test_a_bad_pattern_is_refused_by_put_rule(self, bridge: MemoryEventBridge) -> None:
        """InvalidEventPatternException, as AWS answers."""
        with pytest.raises(EventBridgeClientError, match="InvalidEventPattern"):
            await bridge.put_rule(Name="r", EventPattern='{"source": "blog"}')


class TestPublish:
    """publish() as PutEvents: entries, limits, partial failures."""

    async def test_subscribers_get_their_types_only(self, transport: EventBridgeTransport) -> None:
        """One rule per queue matching its wire types; our envelope comes out of ``detail``."""
        await transport.provision(topology(a=(PUBLISHED,), b=(PUBLISHED, DELETED)))
        await transport.publish("blog-post-published", [envelope(1)])
        await transport.publish("blog-post-deleted", [envelope(2, DELETED)])
        assert await detail_ids(transport, "a") == ["m1"]
        assert await detail_ids(transport, "b") == ["m1", "m2"]

    async def test_entries_carry_type_source_and_bus(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge, broker: MemoryBroker
    ) -> None:
        """DetailType is the wire type, Source the envelope's source, Detail the envelope."""
        await transport.provision(topology(a=(PUBLISHED,)))
        await transport.publish("t", [envelope(1)])
        (raw,) = await InMemoryTransport(broker).receive("a", wait=0)
        event = json.loads(raw.body)
        assert (event["detail-type"], event["source"]) == (PUBLISHED, "blog")
        assert event["detail"] == json.loads(envelope(1).body)

    async def test_25_events_take_3_calls(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """At most 10 entries per PutEvents."""
        await transport.provision(topology(a=(PUBLISHED,)))
        await transport.publish("t", [envelope(n) for n in range(25)])
        assert bridge.put_events_calls == 3
        assert (
            len(await detail_ids(transport, "a"))
            + len(await detail_ids(transport, "a"))
            + len(await detail_ids(transport, "a"))
            == 25
        )

    async def test_calls_are_split_by_bytes(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """Four 100 KB entries do not fit in one 256 KiB request: two calls."""
        await transport.provision(topology(a=(PUBLISHED,)))
        await transport.publish("t", [envelope(n, pad=100_000) for n in range(4)])
        assert bridge.put_events_calls == 2

    async def test_an_oversize_event_is_refused_before_any_call(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """MessageTooLargeError names the message; nothing was sent."""
        await transport.provision(topology(a=(PUBLISHED,)))
        with pytest.raises(MessageTooLargeError) as caught:
            await transport.publish("t", [envelope(1), envelope(2, pad=256 * 1024)])
        assert caught.value.message_id == "m2"
        assert bridge.put_events_calls == 0

    async def test_failed_entries_alone_are_retried(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """An InternalFailure entry is sent again, alone; each event arrives once."""
        await transport.provision(topology(a=(PUBLISHED,)))
        bridge.fail_entries(None, "InternalFailure", None, "ThrottlingException")
        await transport.publish("t", [envelope(n) for n in range(3)])
        assert bridge.put_events_calls == 3  # the 3, then m1 alone, then m1 once more
        assert await detail_ids(transport, "a") == ["m0", "m1", "m2"]

    async def test_what_cannot_be_sent_is_a_send_error_listing_it(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """Refused at once, or failing every attempt: SendError; the others arrive."""
        await transport.provision(topology(a=(PUBLISHED,)))
        bridge.fail_entries(
            "AccessDeniedException", None, "InternalFailure", "InternalFailure", "InternalFailure"
        )
        with pytest.raises(SendError) as caught:
            await transport.publish("t", [envelope(n) for n in range(3)])
        assert [message_id for message_id, _ in caught.value.failed] == ["m0", "m2"]
        assert "AccessDeniedException" in caught.value.failed[0][1]
        assert await detail_ids(transport, "a") == ["m1"]

    async def test_a_body_over_the_limit_is_refused_for_queues_too(
        self, transport: EventBridgeTransport, bridge: MemoryEventBridge
    ) -> None:
        """The declared body limit holds for send and publish alike, sized by the body."""
        await transport.provision(topology(a=(PUBLISHED,)))
        limit = transport.capabilities.max_message_bytes
        big = Outgoing(b"x" * (limit + 1), "big")
        for call in (transport.send, transport.publish):
            with pytest.raises(MessageTooLargeError) as caught:
                await call("a", [big])
            assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
        assert bridge.put_events_calls == 0
        assert await transport.receive("a", wait=0) == []

    async def test_an_entry_over_the_limit_is_refused_by_its_aws_size(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """A body within the limit whose source and type overflow the entry: its entry size."""
        body = {"specversion": "1.0", "id": "m1", "type": PUBLISHED, "source": "s" * 1500}
        message = Outgoing(json.dumps(body).encode(), "m1")
        async with EventBridgeTransport(
            InMemoryTransport(broker), bridge, max_entry_bytes=3000
        ) as made:
            assert len(message.body) <= made.capabilities.max_message_bytes
            with pytest.raises(MessageTooLargeError) as caught:
                await made.publish("t", [message])
        assert caught.value.size > caught.value.limit == 3000
        assert bridge.put_events_calls == 0

    async def test_a_delay_is_refused(self, transport: EventBridgeTransport) -> None:
        """EventBridge cannot delay an event."""
        with pytest.raises(InvalidArgumentError):
            await transport.publish("t", [Outgoing(envelope(1).body, "m1", delay=5)])

    async def test_an_unknown_bus_is_a_send_error(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """Never a silent drop (LocalStack drops it: this is AWS's per-entry answer)."""
        async with EventBridgeTransport(InMemoryTransport(broker), bridge, bus="nowhere") as made:
            with pytest.raises(SendError, match="ResourceNotFound"):
                await made.publish("t", [envelope(1)])

    async def test_a_refused_call_is_the_librarys_error(self) -> None:
        """A client exception leaves the transport as a TransportError, its cause kept."""

        class Refusing(MemoryEventBridge):
            async def put_events(self, *, Entries: Any) -> dict[str, Any]:
                raise EventBridgeClientError("ResourceNotFoundException", "gone")

        async with EventBridgeTransport(InMemoryTransport(), Refusing(MemoryBroker())) as refusing:
            with pytest.raises(DestinationNotFoundError) as caught:
                await refusing.publish("t", [envelope(1)])
        assert isinstance(caught.value.__cause__, EventBridgeClientError)
        assert isinstance(caught.value, TransportError)


class TestCoalescing:
    """Concurrent publishers share PutEvents calls, as the SQS transport's senders do."""

    @pytest.mark.parametrize("publishers", [1, 10, 25, 31])
    async def test_n_publishers_make_ceil_n_over_10_calls(
        self, broker: MemoryBroker, bridge: MemoryEventBridge, publishers: int
    ) -> None:
        """Full calls go at once; the rest waits for the window (here: for the close)."""
        made = EventBridgeTransport(InMemoryTransport(broker), bridge, publish_window=3600)
        done: list[int] = []

        async def publish(n: int) -> None:
            await made.publish("t", [envelope(n)])
            done.append(n)

        async with anyio.create_task_group() as group, made:
            await made.provision(topology(a=(PUBLISHED,)))
            for n in range(publishers):
                group.start_soon(publish, n)
            await anyio.wait_all_tasks_blocked()
            assert bridge.put_events_calls == publishers // 10
            assert len(done) == publishers // 10 * 10
        assert bridge.put_events_calls == -(-publishers // 10)
        assert sorted(done) == list(range(publishers))
        received: list[str] = []
        async with EventBridgeTransport(InMemoryTransport(broker), bridge) as reader:
            while batch := await detail_ids(reader, "a"):
                received += batch
        assert sorted(received) == sorted(f"m{n}" for n in range(publishers))

    async def test_each_publisher_gets_its_own_failure(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """A refused entry fails its publisher alone; the call's other events arrive."""
        made = EventBridgeTransport(InMemoryTransport(broker), bridge, publish_window=3600)
        outcomes: dict[int, str] = {}

        async def publish(n: int, message: Outgoing) -> None:
            try:
                await made.publish("t", [message])
            except SendError as error:
                outcomes[n] = error.failed[0][1]
            else:
                outcomes[n] = "sent"

        async with made:
            await made.provision(topology(a=(PUBLISHED,)))
            async with anyio.create_task_group() as group:
                for n in range(10):
                    body = json.loads(envelope(n).body)
                    if n == 3:
                        body["source"] = "aws.forbidden"
                    group.start_soon(publish, n, Outgoing(json.dumps(body).encode(), f"m{n}"))
        assert bridge.put_events_calls == 1
        assert outcomes.pop(3).startswith("NotAuthorizedForSourceException")
        assert set(outcomes.values()) == {"sent"}

    async def test_publishing_on_a_closed_transport_is_refused(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """Calls run in the transport's task group: outside ``async with`` there is none."""
        made = EventBridgeTransport(InMemoryTransport(broker), bridge)
        with pytest.raises(TransportError, match="not open"):
            await made.publish("t", [envelope(1)])

    @pytest.mark.parametrize("option", [{"publish_window": -1}, {"max_entry_bytes": 1024}])
    def test_impossible_options_are_refused(
        self, broker: MemoryBroker, option: dict[str, Any]
    ) -> None:
        """A negative window; an entry limit leaving no room for a body."""
        with pytest.raises(InvalidArgumentError):
            EventBridgeTransport(InMemoryTransport(broker), MemoryEventBridge(broker), **option)


class TestProvision:
    """The bus, the rules, the queues."""

    async def test_provisioning_twice_changes_nothing(
        self, transport: EventBridgeTransport
    ) -> None:
        """The bus exists already the second time: no error, one copy per event."""
        await transport.provision(topology(a=(PUBLISHED,)))
        await transport.provision(topology(a=(PUBLISHED,)))
        await transport.publish("t", [envelope(1)])
        assert await detail_ids(transport, "a") == ["m1"]

    async def test_a_topic_without_message_types_is_refused(
        self, transport: EventBridgeTransport
    ) -> None:
        """Rules match wire types: a topology that does not give them cannot be routed."""
        bare = Topology(
            queues=(QueueSpec("a"),),
            topics=(TopicSpec("t"),),
            subscriptions=(TopicSubscription("t", "a"),),
        )
        with pytest.raises(InvalidArgumentError, match="message_types"):
            await transport.provision(bare)

    async def test_a_fifo_queue_is_targeted_as_one_group(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """SqsParameters.MessageGroupId = the queue's name; events arrive in that group."""
        fifo = Topology(
            queues=(QueueSpec("f", fifo=True),),
            topics=(TopicSpec("t", message_types=(PUBLISHED,)),),
            subscriptions=(TopicSubscription("t", "f"),),
        )
        async with EventBridgeTransport(InMemoryTransport(broker), bridge, bus="app") as made:
            await made.provision(fifo)
            await made.publish("t", [envelope(1), envelope(2)])
            (first,) = await made.receive("f", wait=0)  # one group: one at a time
            assert await made.receive("f", wait=0) == []
            await first.ack()
            (second,) = await made.receive("f", wait=0)
        assert sorted(json.loads(each.body)["id"] for each in (first, second)) == ["m1", "m2"]

    async def test_a_target_eventbridge_refuses_is_a_transport_error(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """A FIFO queue this topology does not declare gets no group: the refusal surfaces."""
        await InMemoryTransport(broker).provision(Topology(queues=(QueueSpec("f", fifo=True),)))
        undeclared = Topology(
            topics=(TopicSpec("t", message_types=(PUBLISHED,)),),
            subscriptions=(TopicSubscription("t", "f"),),
        )
        async with EventBridgeTransport(InMemoryTransport(broker), bridge) as made:
            with pytest.raises(TransportError, match=r"target refused.*MessageGroupId"):
                await made.provision(undeclared)

    async def test_the_queue_transport_grants_each_rule_and_names_the_target(
        self, broker: MemoryBroker, bridge: MemoryEventBridge
    ) -> None:
        """A queue transport with allow_service (SQS) is asked once per rule, by its ARN."""
        granted: list[tuple[str, str, str]] = []

        class Granting(InMemoryTransport):
            async def allow_service(self, queue: str, *, service: str, source_arn: str) -> str:
                granted.append((queue, service, source_arn))
                return bridge.queue_arn(queue)

        async with EventBridgeTransport(Granting(broker), bridge, bus="app", prefix="p-") as made:
            await made.provision(topology(a=(PUBLISHED,), b=(DELETED,)))
            await made.publish("t", [envelope(1)])
            assert await detail_ids(made, "a") == ["m1"]
        rules = "arn:aws:events:us-east-1:000000000000:rule/app/p-"
        assert granted == [
            ("a", "events.amazonaws.com", f"{rules}a-events"),
            ("b", "events.amazonaws.com", f"{rules}b-events"),
        ]

    async def test_commands_go_to_the_queue_transport(
        self, transport: EventBridgeTransport
    ) -> None:
        """send() is the queue transport's: the body arrives as sent."""
        await transport.provision(topology(a=()))
        await transport.send("a", [envelope(7)])
        (delivery,) = await transport.receive("a", wait=0)
        assert delivery.body == envelope(7).body
        assert delivery.queue == "a"
        assert delivery.receive_count == 1
        await delivery.nack()
        (again,) = await transport.receive("a", wait=0)
        assert again.receive_count == 2
        await again.extend(5)
        await again.ack()

    async def test_it_is_a_transport(self, transport: EventBridgeTransport) -> None:
        """The protocol, with EventBridge's entry limit as the message limit."""
        assert isinstance(transport, Transport)
        assert transport.capabilities.max_message_bytes == 255 * 1024  # room for the rest


def test_unwrap_leaves_other_bodies_alone() -> None:
    """Only an AWS event with an object ``detail`` is unwrapped."""
    assert unwrap_event(b'{"id": "x"}') == b'{"id": "x"}'
    assert unwrap_event(b'{"detail-type": "x", "detail": "text"}') == (
        b'{"detail-type": "x", "detail": "text"}'
    )
    assert unwrap_event(b'not json "detail-type"') == b'not json "detail-type"'
    assert json.loads(unwrap_event(b'{"detail-type": "x", "detail": {"id": "m"}}')) == {"id": "m"}


async def test_two_services_through_eventbridge_with_a_worker() -> None:
    """The blog app's event crosses from one bus to another's worker via a rule."""
    broker = MemoryBroker()
    bridge = MemoryEventBridge(broker)

    def on_bridge(service: str) -> MessageBus:
        queues = InMemoryTransport(broker)
        transport = EventBridgeTransport(queues, bridge, bus="app")
        return MessageBus(transport=transport, service=service)

    seen: list[PostPublished] = []
    blog, notifier = on_bridge("blog"), on_bridge("notifier")

    @notifier.subscriber(PostPublished)
    async def notify(event: PostPublished) -> None:
        seen.append(event)

    async with blog, notifier:
        await blog.provision()
        await notifier.provision()
        await blog.publish(PostPublished(1, "Hello"))
        async with working(notifier) as worker:
            await quiet()
        assert worker.acked == 1
    assert seen == [PostPublished(1, "Hello")]
    assert bridge.put_events_calls == 1


class TestErrors:
    """Client exceptions become the library's errors, read by shape (no botocore import)."""

    @pytest.mark.parametrize(
        ("code", "status", "expected"),
        [
            ("ResourceNotFoundException", 400, DestinationNotFoundError),
            ("ThrottlingException", 400, TransportUnavailableError),
            ("Whatever", 503, TransportUnavailableError),
            ("AccessDeniedException", 403, TransportError),
        ],
    )
    def test_answers_by_code_and_status(
        self, code: str, status: int, expected: type[TransportError]
    ) -> None:
        """Not found, worth retrying later, or refused."""
        error = EventBridgeClientError(code, "no")
        error.response["ResponseMetadata"] = {"HTTPStatusCode": status}
        with pytest.raises(TransportError) as caught, translated("bus"):
            raise error
        assert type(caught.value) is expected
        assert caught.value.__cause__ is error

    def test_failures_below_the_answer(self) -> None:
        """A vendor's connection failure is unavailable; another vendor failure an error."""
        connection = type("EndpointConnectionError", (Exception,), {"__module__": "botocore.x"})
        other = type("ParamValidationError", (Exception,), {"__module__": "botocore.x"})
        with pytest.raises(TransportUnavailableError), translated("bus"):
            raise connection("down")
        with pytest.raises(TransportError) as caught, translated("bus"):
            raise other("bad")
        assert type(caught.value) is TransportError

    def test_our_errors_and_programming_errors_pass_through(self) -> None:
        """Only vendor exceptions are translated."""
        with pytest.raises(SendError), translated("bus"):
            raise SendError([("m", "x")])
        with pytest.raises(KeyError), translated("bus"):
            raise KeyError("bug")


async def test_a_client_it_opens_lives_as_long_as_the_transport() -> None:
    """open_events: entered with the transport, left with it; one of the two is required."""
    broker = MemoryBroker()
    opened: list[str] = []

    @contextlib.asynccontextmanager
    async def open_events() -> AsyncIterator[MemoryEventBridge]:
        opened.append("open")
        yield MemoryEventBridge(broker)
        opened.append("closed")

    transport = EventBridgeTransport(InMemoryTransport(broker), open_events=open_events)
    with pytest.raises(TransportError, match="not open"):
        transport.events  # noqa: B018 - the property raises
    async with transport:
        assert isinstance(transport.events, MemoryEventBridge)
    assert opened == ["open", "closed"]
    with pytest.raises(InvalidArgumentError):
        EventBridgeTransport(InMemoryTransport())


class TestURL:
    """eventbridge://REGION?bus=...: EventBridge for events, SQS (the rest of the URL) else."""

    def test_the_url_makes_the_transport_on_the_sqs_settings(self) -> None:
        """bus goes to EventBridge; every other parameter to the SQS transport."""
        given: list[SQSSettings] = []

        def sqs(settings: SQSSettings) -> Transport:
            given.append(settings)
            return InMemoryTransport()

        made = transport_from_url("eventbridge://eu-west-1?bus=app&prefix=p-", sqs=sqs)
        assert isinstance(made, EventBridgeTransport)
        assert made.bus == "app"
        assert isinstance(made.queues, InMemoryTransport)
        assert given == [SQSSettings(region="eu-west-1", prefix="p-")]
        default = transport_from_url("eventbridge://eu-west-1", sqs=sqs)
        assert isinstance(default, EventBridgeTransport)
        assert default.bus == "default"

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("eventbridge://eu-west-1?bus=a%20b", "parameter bus: must be"),
            ("eventbridge://eu-west-1?colour=red", "unknown parameter"),
            ("eventbridge://eu-west-1?bus=a&bus=b", "twice"),
        ],
    )
    def test_a_bad_url_says_why(self, url: str, reason: str) -> None:
        """ConfigurationError, nothing made."""
        with pytest.raises(ConfigurationError, match=reason):
            transport_from_url(url, sqs=lambda settings: InMemoryTransport())
