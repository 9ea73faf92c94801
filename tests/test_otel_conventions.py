"""OpenTelemetry's messaging conventions: links, attributes, client spans, histograms."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from importlib import metadata

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from messagebus import Context, DestinationNotFoundError, MessageBus
from messagebus.extension import Received, received_from
from messagebus.otel import TraceContextInjector, TracedTransport, TracingMiddleware
from messagebus.transports import Outgoing, QueueSpec, Topology, TransportWrapper
from messagebus.transports.eventbridge import EventBridgeTransport, MemoryEventBridge
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from messagebus.transports.sqs._transport import SQS_CAPABILITIES
from tests.messages import PostId, PostPublished, PublishPost
from tests.worker_support import working

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


class PaymentDeclinedError(Exception):
    """An application's own error: its error.type is its fully qualified name."""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meters(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def points(reader: InMemoryMetricReader, metric: str) -> Iterator[tuple[dict[str, object], object]]:
    """Yield (attributes, data point) for every point of ``metric`` read so far."""
    data = reader.get_metrics_data()
    if data is None:  # nothing was ever recorded
        return
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for found in scope.metrics:
                if found.name == metric:
                    for point in found.data.data_points:
                        yield dict(point.attributes or {}), point


def histogram_counts(
    reader: InMemoryMetricReader, metric: str
) -> list[tuple[dict[str, object], int]]:
    counts = []
    for attributes, point in points(reader, metric):
        assert isinstance(point, HistogramDataPoint)
        counts.append((attributes, point.count))
    return counts


class TestProcessSpans:
    """The process span links to the creation context; attributes follow the conventions."""

    async def test_it_links_to_the_creation_context_and_is_its_child(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        bus = MessageBus(middleware=[TracingMiddleware(tracer_provider=provider)])
        bus.subscriber(PostPublished, lambda event: None, name="notify")
        await bus.publish(PostPublished(1, "x"), headers={"traceparent": TRACEPARENT})
        (span,) = named(exporter, "process blog.post.published")
        assert [
            (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links
        ] == [(TRACE_ID, SPAN_ID)]
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == SPAN_ID

    async def test_without_continuing_the_trace_only_the_link_leads_back(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """continue_trace=False: the current span is the parent; the producer is a link."""
        bus = MessageBus(
            middleware=[TracingMiddleware(tracer_provider=provider, continue_trace=False)]
        )
        bus.subscriber(PostPublished, lambda event: None, name="notify")
        with provider.get_tracer("test").start_as_current_span("poll") as poll:
            await bus.publish(PostPublished(1, "x"), headers={"traceparent": TRACEPARENT})
        (span,) = named(exporter, "process blog.post.published")
        assert span.parent is not None
        assert span.parent.span_id == poll.get_span_context().span_id
        assert span.context is not None
        assert span.context.trace_id == poll.get_span_context().trace_id
        assert [f"{link.context.span_id:016x}" for link in span.links] == [SPAN_ID]

    async def test_a_message_without_a_creation_context_has_no_link(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        bus = MessageBus(middleware=[TracingMiddleware(tracer_provider=provider)])
        bus.handler(PublishPost, lambda command: PostId(1))
        await bus.send(PublishPost("Hello"))
        (span,) = named(exporter, "process blog.post.publish")
        assert list(span.links) == []

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            # An application's own error: its fully qualified name.
            (PaymentDeclinedError("card expired"), f"{__name__}.PaymentDeclinedError"),
            # messagebus's: where the package exports it, not its private module.
            (DestinationNotFoundError("no queue"), "messagebus.DestinationNotFoundError"),
            (ValueError("bare"), "ValueError"),  # builtins as tracebacks print them
        ],
    )
    async def test_error_type_is_the_qualified_class_name(
        self,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        error: Exception,
        expected: str,
    ) -> None:
        bus = MessageBus(middleware=[TracingMiddleware(tracer_provider=provider)])

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            raise error

        with pytest.raises(type(error)):
            await bus.send(PublishPost("x"))
        (span,) = named(exporter, "process blog.post.publish")
        assert span.attributes is not None
        assert span.attributes["error.type"] == expected

    async def test_the_scope_is_messagebus_at_the_installed_version(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        bus = MessageBus(middleware=[TracingMiddleware(tracer_provider=provider)])
        bus.handler(PublishPost, lambda command: PostId(1))
        await bus.send(PublishPost("Hello"))
        (span,) = named(exporter, "process blog.post.publish")
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "messagebus"
        assert span.instrumentation_scope.version == metadata.version("anyio-messagebus")

    async def test_a_configured_system_wins_over_the_transports(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        bus = MessageBus(
            transport=InMemoryTransport(MemoryBroker()),
            service="blog",
            middleware=[TracingMiddleware(tracer_provider=provider, system="kafka")],
        )
        await received_in_a_worker(bus)
        (span,) = named(exporter, "process blog")
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["messaging.destination.name"] == "blog"


class Resolving(TransportWrapper):
    """A named transport that finds its queues on first use, as SQS does.

    Queue ``name`` is ``prod-<name>`` on the broker, and ``prod-<name>.fifo`` once a call
    found it to be one of ``fifo`` (the transport's names before then are the standard
    ones, as :meth:`SQSTransport.address <messagebus.transports.sqs.SQSTransport.address>`
    says).
    """

    def __init__(self, inner: InMemoryTransport, fifo: frozenset[str] = frozenset()) -> None:
        super().__init__(inner)
        self._fifo = fifo
        self._found: set[str] = set()

    def address(self, name: str, *, fifo: bool | None = None, topic: bool = False) -> str:
        if fifo is None:
            fifo = name in self._found
        return f"prod-{name}" + (".fifo" if fifo else "")

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        await super().send(queue, messages)
        if queue in self._fifo:
            self._found.add(queue)


async def received_in_a_worker(bus: MessageBus) -> list[Received | None]:
    """Enqueue a PublishPost for a worker of ``bus``; return what its handler was told."""
    seen: list[Received | None] = []
    done = anyio.Event()

    @bus.handler(PublishPost)
    async def publish(command: PublishPost) -> PostId:
        seen.append(received_from())
        done.set()
        return PostId(1)

    async with bus:
        await bus.provision()
        async with working(bus):
            await bus.enqueue(PublishPost("Hello"))
            with anyio.fail_after(10):
                await done.wait()
    return seen


class TestBrokerNames:
    """messaging.destination.name is the broker's name of the queue or topic."""

    async def test_spans_and_metrics_name_the_queue_the_call_found(
        self,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        meters: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        traced = TracedTransport(
            Resolving(InMemoryTransport(MemoryBroker()), fifo=frozenset({"ledger"})),
            tracer_provider=provider,
            meter_provider=meters,
        )
        async with traced:
            await traced.provision(Topology(queues=(QueueSpec("ledger"),)))
            # The first send finds the queue FIFO: its span is renamed after the call.
            await traced.send("ledger", [Outgoing(b"{}", "m-1")])
            (delivery,) = await traced.receive("ledger", wait=0)
            await delivery.ack()
        for name in ("send", "receive", "ack"):
            (span,) = named(exporter, f"{name} prod-ledger.fifo")
            assert span.attributes is not None
            assert span.attributes["messaging.destination.name"] == "prod-ledger.fifo"
        assert [
            attributes["messaging.destination.name"]
            for attributes, _ in points(reader, "messaging.client.sent.messages")
        ] == ["prod-ledger.fifo"]
        assert {
            str(attributes["messaging.destination.name"])
            for attributes, _ in histogram_counts(reader, "messaging.client.operation.duration")
        } == {"prod-ledger.fifo"}

    async def test_a_process_span_names_the_queue_as_the_broker_does(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        bus = MessageBus(
            transport=Resolving(InMemoryTransport(MemoryBroker())),
            service="blog",
            middleware=[TracingMiddleware(tracer_provider=provider, metrics=False)],
        )
        seen = await received_in_a_worker(bus)
        assert seen == [Received(queue="prod-blog", system="messagebus_memory")]
        (span,) = named(exporter, "process prod-blog")
        assert span.attributes is not None
        assert span.attributes["messaging.destination.name"] == "prod-blog"

    def test_eventbridge_topics_are_its_bus_and_queues_the_queue_transports(self) -> None:
        broker = MemoryBroker()
        arn = "arn:aws:events:us-east-1:123456789012:event-bus/shop"
        bridge = EventBridgeTransport(
            Resolving(InMemoryTransport(broker)), MemoryEventBridge(broker), bus=arn
        )
        assert bridge.address("order-placed", topic=True) == "shop"
        assert bridge.address("orders") == "prod-orders"
        assert bridge.address("orders", fifo=True) == "prod-orders.fifo"
        plain = EventBridgeTransport(InMemoryTransport(broker), MemoryEventBridge(broker))
        assert (plain.address("orders"), plain.address("x", topic=True)) == ("orders", "default")


class TestReceivedFrom:
    """The worker tells handlers where their message came from."""

    async def test_in_a_worker_it_is_the_queue_and_the_transports_system(self) -> None:
        bus = MessageBus(transport=InMemoryTransport(MemoryBroker()), service="blog")
        seen = await received_in_a_worker(bus)
        assert seen == [Received(queue="blog", system="messagebus_memory", receive_count=1)]
        assert received_from() is None

    async def test_in_process_there_is_none(self) -> None:
        bus = MessageBus()
        seen: list[Received | None] = []

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            seen.append(received_from())
            return PostId(1)

        await bus.send(PublishPost("Hello"))
        assert seen == [None]

    def test_transports_name_their_messaging_systems(self) -> None:
        assert (SQS_CAPABILITIES.system, SQS_CAPABILITIES.topic_system) == ("aws_sqs", "aws_sns")
        broker = MemoryBroker()
        bridge = EventBridgeTransport(InMemoryTransport(broker), MemoryEventBridge(broker))
        assert bridge.capabilities.topic_system == "aws_eventbridge"
        assert InMemoryTransport().capabilities.system == "messagebus_memory"


class TestProcessDuration:
    """messaging.process.duration: a histogram of handler runs, with error.type on failure."""

    async def test_each_run_is_recorded_with_its_outcome(
        self, provider: TracerProvider, meters: MeterProvider, reader: InMemoryMetricReader
    ) -> None:
        bus = MessageBus(
            middleware=[TracingMiddleware(tracer_provider=provider, meter_provider=meters)]
        )

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            if not command.title:
                raise PaymentDeclinedError("no title")
            return PostId(1)

        await bus.send(PublishPost("a"))
        await bus.send(PublishPost("b"))
        with pytest.raises(PaymentDeclinedError):
            await bus.send(PublishPost(""))
        base = {
            "messaging.system": "messagebus",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": "blog.post.publish",
        }
        assert sorted(histogram_counts(reader, "messaging.process.duration"), key=repr) == sorted(
            [(base, 2), ({**base, "error.type": f"{__name__}.PaymentDeclinedError"}, 1)], key=repr
        )

    async def test_metrics_can_be_turned_off(
        self, provider: TracerProvider, meters: MeterProvider, reader: InMemoryMetricReader
    ) -> None:
        bus = MessageBus(
            middleware=[
                TracingMiddleware(tracer_provider=provider, meter_provider=meters, metrics=False)
            ]
        )
        bus.handler(PublishPost, lambda command: PostId(1))
        await bus.send(PublishPost("a"))
        assert histogram_counts(reader, "messaging.process.duration") == []


class TestTracedTransport:
    """Client spans around a transport, each linked to the messages it carries."""

    async def test_a_batch_publish_links_every_message_and_receive_and_ack_follow(
        self,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        meters: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        broker = MemoryBroker()
        traced = TracedTransport(
            InMemoryTransport(broker), tracer_provider=provider, meter_provider=meters
        )
        bus = MessageBus(
            transport=traced,
            service="blog",
            outgoing=[TraceContextInjector(tracer_provider=provider)],
            middleware=[TracingMiddleware(tracer_provider=provider)],
        )
        handled: list[int] = []
        all_three = anyio.Event()

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            for post in range(3):
                ctx.publish(PostPublished(post, command.title))
            return PostId(1)

        def notify(event: PostPublished) -> None:
            handled.append(event.post_id)
            if len(handled) == 3:
                all_three.set()

        bus.subscriber(PostPublished, notify, name="notify")
        async with bus:
            await bus.provision()
            async with working(bus):
                await bus.send(PublishPost("Hello"))
                with anyio.fail_after(10):
                    await all_three.wait()
        # Three create spans (the creation contexts, named after the message type), then
        # one CLIENT span for the batch, named after the topic.
        created = named(exporter, "publish blog.post.published")
        assert [span.kind for span in created] == [SpanKind.PRODUCER] * 3
        (batch,) = named(exporter, "publish blog-post-published")
        assert batch.kind is SpanKind.CLIENT
        assert batch.attributes is not None
        assert batch.attributes["messaging.system"] == "messagebus_memory"
        assert batch.attributes["messaging.operation.type"] == "send"
        assert batch.attributes["messaging.batch.message_count"] == 3
        created_ids = sorted(span.context.span_id for span in created if span.context)
        assert sorted(link.context.span_id for link in batch.links) == created_ids
        receives = [span for span in named(exporter, "receive blog") if span.links]
        assert sorted(link.context.span_id for span in receives for link in span.links) == (
            created_ids
        )
        assert {span.kind for span in receives} == {SpanKind.CONSUMER}
        acks = named(exporter, "ack blog")
        assert len(acks) == 3
        assert {str((span.attributes or {})["messaging.operation.type"]) for span in acks} == {
            "settle"
        }
        sent = {
            str(attributes["messaging.operation.name"]): point.value  # type: ignore[attr-defined]
            for attributes, point in points(reader, "messaging.client.sent.messages")
        }
        assert sent == {"publish": 3}
        consumed = sum(
            point.value  # type: ignore[attr-defined]
            for _, point in points(reader, "messaging.client.consumed.messages")
        )
        assert consumed == 3
        operations = {
            str(attributes["messaging.operation.name"])
            for attributes, _ in histogram_counts(reader, "messaging.client.operation.duration")
        }
        assert operations == {"publish", "receive", "ack"}

    async def test_a_failed_send_is_an_error_span_and_still_raises(
        self,
        provider: TracerProvider,
        exporter: InMemorySpanExporter,
        meters: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        traced = TracedTransport(
            InMemoryTransport(MemoryBroker()), tracer_provider=provider, meter_provider=meters
        )
        async with traced:
            with pytest.raises(DestinationNotFoundError):
                await traced.send("nowhere", [Outgoing(b"{}", "m-1")])
        (span,) = named(exporter, "send nowhere")
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "messagebus.DestinationNotFoundError"
        assert span.attributes["messaging.message.id"] == "m-1"
        assert list(span.links) == []  # a body that is not an envelope has no context
        assert [
            attributes.get("error.type")
            for attributes, _ in histogram_counts(reader, "messaging.client.operation.duration")
        ] == ["messagebus.DestinationNotFoundError"]

    async def test_a_nack_is_a_settle_span(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        broker = MemoryBroker()
        traced = TracedTransport(InMemoryTransport(broker), tracer_provider=provider, metrics=False)
        bus = MessageBus(transport=traced, service="blog")
        bus.handler(PublishPost, lambda command: PostId(1))
        async with bus:
            await bus.provision()
            await bus.enqueue(PublishPost("x"), headers={"traceparent": TRACEPARENT})
            (delivery,) = await traced.receive("blog", wait=0)
            await delivery.extend(30)
            await delivery.nack()
            (again,) = await traced.receive("blog", wait=0)
            assert again.receive_count == 2
            await again.ack()
        (nack,) = named(exporter, "nack blog")
        assert nack.attributes is not None
        assert nack.attributes["messaging.operation.type"] == "settle"
        assert [f"{link.context.span_id:016x}" for link in nack.links] == [SPAN_ID]
        assert len(named(exporter, "ack blog")) == 1
