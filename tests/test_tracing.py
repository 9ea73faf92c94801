"""OpenTelemetry tracing: a span per handler run, one trace across outbox and transport."""

from __future__ import annotations

import importlib
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from messagebus import CommandRejected, Context, Envelope, MessageBus
from messagebus.middleware import UnitOfWorkMiddleware
from messagebus.otel import (
    TraceContextInjector,
    TracingMiddleware,
    add_trace_context,
    carried_context,
    inject_trace_context,
    with_trace_context,
)
from messagebus.outbox import SQLiteOutbox
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.messages import PostId, PostPublished, PublishPost
from tests.worker_support import working

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """A provider of the test's own: OpenTelemetry's global one can be set only once."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    by_name = {span.name: span for span in finished}
    assert len(by_name) == len(finished), [span.name for span in finished]
    return by_name


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def traced(provider: TracerProvider, **options: object) -> MessageBus:
    return MessageBus(middleware=[TracingMiddleware(tracer_provider=provider, **options)])  # type: ignore[arg-type]


class TestHandlerSpans:
    """Each handler run is a CONSUMER span with the messaging attributes."""

    async def test_a_span_per_run_with_the_messaging_attributes(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """Name, kind, system, operation, destination, message and conversation ids."""
        bus = traced(provider)
        seen: list[Envelope[PublishPost]] = []

        @bus.handler(PublishPost, name="blog.publish")
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            seen.append(ctx.envelope)
            return PostId(1)

        assert await bus.send(PublishPost("Hello")) == PostId(1)
        span = spans(exporter)["process blog.post.publish"]
        assert span.kind is SpanKind.CONSUMER
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == {
            "messaging.system": "messagebus",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": "blog.post.publish",
            "messaging.message.id": seen[0].message_id,
            "messaging.message.conversation_id": seen[0].correlation_id,
            "cloudevents.event_id": seen[0].message_id,
            "cloudevents.event_type": "blog.post.publish",
            "cloudevents.event_spec_version": "1.0",
            "messagebus.handler": "blog.publish",
            "messagebus.message.kind": "command",
            "messagebus.attempt": 1,
            "messagebus.outcome": "processed",
        }

    async def test_the_parent_is_the_current_span(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """Sent from inside a span (a web request), the run is that span's child."""
        bus = traced(provider)
        bus.handler(PublishPost, lambda command: PostId(1))
        with provider.get_tracer("test").start_as_current_span("request"):
            await bus.send(PublishPost("Hello"))
        found = spans(exporter)
        assert parent_of(found["process blog.post.publish"]) == span_id(found["request"])
        assert trace_id(found["process blog.post.publish"]) == trace_id(found["request"])

    async def test_the_parent_is_the_trace_context_in_the_headers(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """A traceparent header wins over the current span."""
        bus = traced(provider, system="aws_sqs")
        bus.subscriber(PostPublished, lambda event: None, name="notify")
        with provider.get_tracer("test").start_as_current_span("request"):
            await bus.publish(PostPublished(1, "x"), headers={"traceparent": TRACEPARENT})
        span = spans(exporter)["process blog.post.published"]
        assert trace_id(span) == int(TRACE_ID, 16)
        assert parent_of(span) == int(SPAN_ID, 16)
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "aws_sqs"
        assert span.attributes["messaging.destination.subscription.name"] == "notify"
        assert span.attributes["messagebus.message.kind"] == "event"

    async def test_without_any_context_the_run_is_a_root(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """No header and no current span: the run starts a trace of its own."""
        bus = traced(provider)
        bus.handler(PublishPost, lambda command: PostId(1))
        await bus.send(PublishPost("Hello"), headers={"tenant": "a"})
        assert spans(exporter)["process blog.post.publish"].parent is None

    async def test_a_failure_is_recorded_with_error_status(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """The exception becomes a span event; the status is ERROR; the caller still sees it."""
        bus = traced(provider)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            raise ValueError("no title")

        with pytest.raises(ValueError, match="no title"):
            await bus.send(PublishPost(""))
        span = spans(exporter)["process blog.post.publish"]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: no title"
        assert [event.name for event in span.events] == ["exception"]
        assert span.attributes is not None
        assert span.attributes["error.type"] == "ValueError"
        assert span.attributes["messagebus.outcome"] == "failed"

    async def test_a_rejection_is_not_an_error(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """CommandRejected is a business outcome: status UNSET, outcome and reason recorded."""
        bus = traced(provider)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            raise CommandRejected("duplicate title")

        with pytest.raises(CommandRejected):
            await bus.send(PublishPost("Hello"))
        span = spans(exporter)["process blog.post.publish"]
        assert span.status.status_code is StatusCode.UNSET
        assert span.events == ()
        assert span.attributes is not None
        assert span.attributes["messagebus.outcome"] == "rejected"
        assert span.attributes["messagebus.rejection.reason"] == "duplicate title"

    async def test_a_cancelled_run_ends_its_span(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """Cancellation ends the span, marked cancelled, without an error status."""
        bus = traced(provider)

        with anyio.CancelScope() as scope:

            @bus.handler(PublishPost)
            async def publish(command: PublishPost) -> PostId:
                scope.cancel()
                await anyio.lowlevel.checkpoint()
                raise AssertionError("not reached")

            await bus.send(PublishPost("Hello"))
        span = spans(exporter)["process blog.post.publish"]
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["messagebus.outcome"] == "cancelled"

    async def test_it_is_bound_per_handler(self, provider: TracerProvider) -> None:
        """Called directly instead of through bind(), it refuses with a clear error."""
        envelope = Envelope(PublishPost("x"))
        with pytest.raises(TypeError, match="bound per handler"):
            await TracingMiddleware(tracer_provider=provider)(
                envelope, lambda e: anyio.lowlevel.checkpoint()
            )


class TestFollowUps:
    """Follow-ups leave after the handler's span ends, yet stay in its trace."""

    async def test_a_command_and_its_follow_up_event_make_one_trace(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """handler -> PRODUCER span of the follow-up -> each subscriber's run, one trace."""
        bus = traced(provider)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(1, command.title))
            return PostId(1)

        bus.subscriber(PostPublished, lambda event: None, name="notify")
        bus.subscriber(PostPublished, lambda event: None, name="index")
        with provider.get_tracer("test").start_as_current_span("request"):
            await bus.send(PublishPost("Hello"))
        finished = exporter.get_finished_spans()
        assert len({trace_id(span) for span in finished}) == 1
        by_name = {span.name: span for span in finished}
        handler = by_name["process blog.post.publish"]
        producer = by_name["publish blog.post.published"]
        assert producer.kind is SpanKind.PRODUCER
        assert producer.attributes is not None
        assert producer.attributes["messaging.operation.type"] == "create"
        assert producer.attributes["messaging.operation.name"] == "publish"
        assert parent_of(producer) == span_id(handler)
        subscribers = [span for span in finished if span.name == "process blog.post.published"]
        assert [span.attributes["messagebus.handler"] for span in subscribers] == [  # type: ignore[index]
            "notify",
            "index",
        ]
        assert {parent_of(span) for span in subscribers} == {span_id(producer)}

    async def test_without_producer_spans_the_handler_span_is_the_parent(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """producer_spans=False injects the handler span's own context."""
        bus = traced(provider, producer_spans=False)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(1, command.title))
            return PostId(1)

        bus.subscriber(PostPublished, lambda event: None, name="notify")
        await bus.send(PublishPost("Hello"))
        found = spans(exporter)
        assert set(found) == {"process blog.post.publish", "process blog.post.published"}
        handler = found["process blog.post.publish"]
        assert parent_of(found["process blog.post.published"]) == span_id(handler)

    async def test_a_follow_up_with_its_own_trace_context_keeps_it(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """A sender that put a traceparent on a follow-up chose its parent: it is kept."""
        bus = traced(provider)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(1, command.title), headers={"traceparent": TRACEPARENT})
            return PostId(1)

        bus.subscriber(PostPublished, lambda event: None, name="notify")
        await bus.send(PublishPost("Hello"))
        found = spans(exporter)
        assert "publish blog.post.published" not in found
        assert parent_of(found["process blog.post.published"]) == int(SPAN_ID, 16)

    async def test_a_failed_run_stamps_nothing(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """Follow-ups of a failed run are discarded: no producer span is recorded."""
        bus = traced(provider)

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            ctx.publish(PostPublished(1, command.title))
            raise ValueError("boom")

        bus.subscriber(PostPublished, lambda event: None, name="notify")
        with pytest.raises(ValueError, match="boom"):
            await bus.send(PublishPost("Hello"))
        assert set(spans(exporter)) == {"process blog.post.publish"}


class TestTraceContextInjector:
    """The outgoing hook: messages leaving without a trace context get one."""

    def test_a_message_leaving_gets_a_producer_span_of_the_current_one(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """Its headers carry the PRODUCER span's context, a child of the current span."""
        inject = TraceContextInjector(tracer_provider=provider)
        with provider.get_tracer("test").start_as_current_span("request"):
            envelope = inject(Envelope(PublishPost("x"), headers={"tenant": "a"}))
        found = spans(exporter)
        producer = found["send blog.post.publish"]
        assert producer.kind is SpanKind.PRODUCER
        assert parent_of(producer) == span_id(found["request"])
        assert envelope.headers["tenant"] == "a"
        assert envelope.headers["traceparent"].startswith(
            f"00-{trace_id(producer):032x}-{span_id(producer):016x}-"
        )

    def test_a_message_with_a_trace_context_passes_unchanged(
        self, provider: TracerProvider
    ) -> None:
        """Follow-ups stamped by the middleware are not stamped again."""
        envelope: Envelope[PublishPost] = Envelope(
            PublishPost("x"), headers={"traceparent": TRACEPARENT}
        )
        assert TraceContextInjector(tracer_provider=provider)(envelope) is envelope

    def test_without_producer_spans_the_current_context_is_injected(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """producer_spans=False: the current span's context, and no span of its own."""
        inject = TraceContextInjector(tracer_provider=provider, producer_spans=False)
        with provider.get_tracer("test").start_as_current_span("request") as request:
            envelope = inject(Envelope(PublishPost("x")))
        context = request.get_span_context()
        assert list(envelope.headers) == ["traceparent"]
        assert envelope.headers["traceparent"].startswith(
            f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        )
        assert list(spans(exporter)) == ["request"]

    def test_outside_any_span_there_is_nothing_to_inject(self) -> None:
        """No current span and no producer spans: the envelope comes back as it was."""
        envelope = Envelope(PublishPost("x"))
        assert TraceContextInjector(producer_spans=False)(envelope) is envelope
        # The default hook on the global provider (a no-op one here) injects nothing either.
        assert inject_trace_context(envelope).headers == {}

    def test_carried_context_reads_the_headers(self) -> None:
        """The helpers round-trip a context through an envelope's headers."""
        envelope = Envelope(PublishPost("x"), headers={"traceparent": TRACEPARENT})
        span = trace.get_current_span(carried_context(envelope))
        assert span.get_span_context().trace_id == int(TRACE_ID, 16)
        copy = with_trace_context(Envelope(PublishPost("y")), carried_context(envelope))
        assert copy.headers["traceparent"] == TRACEPARENT


class TestAddTraceContext:
    """The structlog processor joins log lines to spans."""

    async def test_a_line_logged_in_a_handler_names_its_span(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """trace_id and span_id of the handler's span, in hex; nothing outside spans."""
        bus = traced(provider)
        lines: list[dict[str, object]] = []

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            lines.append(dict(add_trace_context(None, "info", {"event": "publishing"})))
            return PostId(1)

        await bus.send(PublishPost("Hello"))
        span = spans(exporter)["process blog.post.publish"]
        assert lines == [
            {
                "event": "publishing",
                "trace_id": f"{trace_id(span):032x}",
                "span_id": f"{span_id(span):016x}",
            }
        ]
        assert add_trace_context(None, "info", {"event": "idle"}) == {"event": "idle"}


class TestOneTraceAcrossOutboxAndTransport:
    """A request's command goes through a queue, a unit of work, the outbox and a topic."""

    async def test_every_span_shares_one_trace_with_the_right_parents(
        self, provider: TracerProvider, exporter: InMemorySpanExporter, sqlite_path: Path
    ) -> None:
        """Six spans, one trace id, each the child of the one before it (subscribers siblings)."""
        with closing(sqlite3.connect(sqlite_path)) as connection, connection:
            connection.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        bus = MessageBus(
            outbox=SQLiteOutbox(sqlite_path),
            transport=InMemoryTransport(MemoryBroker()),
            service="blog",
            middleware=[TracingMiddleware(tracer_provider=provider)],
            outgoing=[TraceContextInjector(tracer_provider=provider)],
        )
        bus.add_middleware(UnitOfWorkMiddleware(bus))
        notified: list[str] = []
        both = anyio.Event()

        @bus.handler(PublishPost)
        async def publish(command: PublishPost, ctx: Context[PublishPost]) -> PostId:
            await ctx.unit_of_work.execute("INSERT INTO posts (title) VALUES (?)", [command.title])
            ctx.publish(PostPublished(1, command.title))
            return PostId(1)

        def subscriber(name: str) -> None:
            def notify(event: PostPublished) -> None:
                notified.append(name)
                if len(notified) == 2:
                    both.set()

            bus.subscriber(PostPublished, notify, name=name)

        subscriber("notify")
        subscriber("index")
        async with bus:
            await bus.provision()
            async with working(bus):
                with provider.get_tracer("test").start_as_current_span("request"):
                    await bus.enqueue(PublishPost("Hello"))
                with anyio.fail_after(10):
                    await both.wait()
        finished = exporter.get_finished_spans()
        assert sorted(notified) == ["index", "notify"]
        assert len({trace_id(span) for span in finished}) == 1
        by_name = {span.name: span for span in finished}
        request = by_name["request"]
        sent = by_name["send blog.post.publish"]
        published = by_name["publish blog.post.published"]
        # Received from the queue "blog": the process spans are named after it.
        processed = [span for span in finished if span.name == "process blog"]
        handled = next(
            span
            for span in processed
            if span.attributes is not None
            and span.attributes["messagebus.handler"] not in {"index", "notify"}
        )
        subscribers = [span for span in processed if span is not handled]
        assert len(finished) == 6
        for span in processed:
            assert span.attributes is not None
            assert span.attributes["messaging.destination.name"] == "blog"
            assert span.attributes["messaging.system"] == "messagebus_memory"
        # Each process span links to its message's creation context (the conventions'
        # SHOULD) besides being its child.
        assert [link.context.span_id for link in handled.links] == [span_id(sent)]
        assert [[link.context.span_id for link in span.links] for span in subscribers] == [
            [span_id(published)]
        ] * 2
        assert (sent.kind, published.kind) == (SpanKind.PRODUCER, SpanKind.PRODUCER)
        assert parent_of(sent) == span_id(request)
        assert parent_of(handled) == span_id(sent)
        assert parent_of(published) == span_id(handled)
        assert [parent_of(span) for span in subscribers] == [span_id(published)] * 2
        assert sorted(str(span.attributes["messagebus.handler"]) for span in subscribers) == [  # type: ignore[index]
            "index",
            "notify",
        ]


class TestOptionalDependency:
    """OpenTelemetry is an extra: messagebus works without it."""

    def test_messagebus_does_not_import_opentelemetry(self) -> None:
        """The core package, its middleware and the counters never import it."""
        code = (
            "import sys, messagebus, messagebus.middleware, messagebus.metrics;"
            "assert not [m for m in sys.modules if m.startswith('opentelemetry')]"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    def test_without_the_extra_the_import_error_names_the_remedy(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """import messagebus.otel without OpenTelemetry says which extra to install."""
        for name in [name for name in sys.modules if name.startswith("messagebus.otel")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
        with pytest.raises(ImportError, match=r"pip install 'anyio-messagebus\[otel\]'"):
            importlib.import_module("messagebus.otel")
