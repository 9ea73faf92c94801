"""The Lambda entry point: every record shape, partial batch responses, FIFO, the deadline.

The entry point is a plain function (Lambda calls it synchronously); each test calls it
as Lambda would, with events built from AWS's documented formats (tests/lambda_events.py)
and a context whose clock the test moves. Each runs with the bus on asyncio and on trio
(the entry point's ``backend``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from messagebus import (
    BatchFailedError,
    Command,
    Context,
    Envelope,
    Event,
    MessageBus,
    TransportError,
)
from messagebus.extension import Received, received_from
from messagebus.middleware import RetryMiddleware
from messagebus.retry import FixedBackoff, RetryPolicy
from messagebus.transports.memory import InMemoryTransport, MemoryBroker
from tests.lambda_events import (
    FakeContext,
    eventbridge_event,
    lambda_handler,
    sns_event,
    sns_notification,
    sqs_event,
    sqs_record,
)


@attrs.frozen
class PostPublished(Event, name="lambdatest.post.published"):
    post_id: int
    title: str = ""


@attrs.frozen
class IndexPost(Command[None], name="lambdatest.post.index"):
    post_id: int


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@attrs.define
class App:
    """A bus whose subscriber records posts and fails for the post ids it is told to."""

    bus: MessageBus
    seen: list[int] = attrs.field(factory=list)
    failing: set[int] = attrs.field(factory=set)
    context: FakeContext = attrs.field(factory=FakeContext)
    cost: float = 0.0
    """Seconds of the invocation each handled record takes (on the fake clock)."""

    def body(self, message: PostPublished | IndexPost, **options: Any) -> str:
        return self.bus.codec.encode(Envelope(message, **options)).decode()


def make_app(**bus_options: Any) -> App:
    app = App(MessageBus(service="blog", source="/blog", **bus_options))

    @app.bus.subscriber(PostPublished, name="index")
    async def index(event: PostPublished) -> None:
        app.context.advance(app.cost)
        if event.post_id in app.failing:
            raise RuntimeError(f"post {event.post_id} will not index")
        app.seen.append(event.post_id)

    return app


LATER = RetryMiddleware(events=RetryPolicy(max_attempts=3, backoff=FixedBackoff(60.0)))
"""A policy whose every retry is too long to wait for in an invocation: it is deferred."""


def failures(response: Any) -> list[str]:
    assert isinstance(response, dict)
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


class TestRecordShapes:
    """Each way an envelope reaches a function is read, and its handler runs."""

    def test_an_sqs_record_whose_body_is_the_envelope(self, backend: Any) -> None:
        """The body is our CloudEvents JSON: handled, and no failures reported."""
        app = make_app()
        handler = lambda_handler(app.bus, backend=backend)
        response = handler(sqs_event(sqs_record(app.body(PostPublished(1)))), app.context)
        assert response == {"batchItemFailures": []}
        assert app.seen == [1]

    def test_handlers_are_told_where_the_record_came_from(self, backend: Any) -> None:
        """received_from() names the queue, the service (aws_sqs) and the receive count."""
        app = make_app()
        seen: list[Received | None] = []
        app.bus.subscriber(PostPublished, lambda event: seen.append(received_from()), name="x")
        record = sqs_record(app.body(PostPublished(1)), queue="blog-events", receive_count=2)
        lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert seen == [Received("blog-events", "aws_sqs", 2)]

    def test_an_sns_notification_inside_an_sqs_body(self, backend: Any) -> None:
        """Raw message delivery off: the envelope is the notification's Message."""
        app = make_app()
        body = sns_notification(app.body(PostPublished(2)))
        response = lambda_handler(app.bus, backend=backend)(
            sqs_event(sqs_record(body)), app.context
        )
        assert failures(response) == []
        assert app.seen == [2]

    def test_an_eventbridge_event_inside_an_sqs_body(self, backend: Any) -> None:
        """A rule with an SQS target: the envelope is the event's detail."""
        app = make_app()
        detail = json.loads(app.body(PostPublished(3)))
        body = json.dumps(eventbridge_event(detail))
        response = lambda_handler(app.bus, backend=backend)(
            sqs_event(sqs_record(body)), app.context
        )
        assert failures(response) == []
        assert app.seen == [3]

    def test_a_fifo_record(self, backend: Any) -> None:
        """A FIFO queue's record (group, deduplication id, sequence number) is read alike."""
        app = make_app()
        record = sqs_record(app.body(PostPublished(4)), group="post-4")
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert failures(response) == []
        assert app.seen == [4]

    def test_a_direct_sns_invocation(self, backend: Any) -> None:
        """The function subscribed to the topic: handled; nothing to answer."""
        app = make_app()
        event = sns_event(app.body(PostPublished(5)))
        assert lambda_handler(app.bus, backend=backend)(event, app.context) is None
        assert app.seen == [5]

    def test_a_direct_eventbridge_invocation(self, backend: Any) -> None:
        """A rule targeting the function: the event's detail is the envelope."""
        app = make_app()
        event = eventbridge_event(json.loads(app.body(PostPublished(6))))
        assert lambda_handler(app.bus, backend=backend)(event, app.context) is None
        assert app.seen == [6]


class TestRecordsThatCanNeverSucceed:
    """They become dead letters with their reason and are not reported as failed."""

    def test_a_plain_text_body(self, backend: Any) -> None:
        """Not JSON: a dead letter naming the queue; the batch reports nothing failed."""
        app = make_app()
        record = sqs_record("Hello from SQS!", attributes={})
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert failures(response) == []
        (letter,) = anyio.run(app.bus.dead_letters.list, backend=backend)
        assert letter.handler == "<decode:blog>"
        assert "not JSON" in letter.error_message
        assert letter.body == "Hello from SQS!"

    def test_an_unknown_type_inside_an_sns_notification(self, backend: Any) -> None:
        """The innermost envelope is kept, with its id, type and the reason."""
        app = make_app()
        inner = json.loads(app.body(PostPublished(1)))
        inner["type"] = "lambdatest.post.retracted"
        body = sns_notification(json.dumps(inner))
        response = lambda_handler(app.bus, backend=backend)(
            sqs_event(sqs_record(body)), app.context
        )
        assert failures(response) == []
        (letter,) = anyio.run(app.bus.dead_letters.list, backend=backend)
        assert letter.message_type == "lambdatest.post.retracted"
        assert letter.message_id == inner["id"]
        assert "unknown message type" in letter.error_message

    def test_a_foreign_record_is_a_dead_letter_not_a_drop(self, backend: Any) -> None:
        """A record of a shape not read here (Kinesis) is kept with its reason."""
        app = make_app()
        event = {"Records": [{"eventSource": "aws:kinesis", "eventName": "aws:kinesis:record"}]}
        assert lambda_handler(app.bus, backend=backend)(event, app.context) is None
        (letter,) = anyio.run(app.bus.dead_letters.list, backend=backend)
        assert "not an SQS, SNS, EventBridge, S3 or DynamoDB record" in letter.error_message


class TestFailures:
    """What a failed handler means in Lambda."""

    def test_a_handler_that_fails_is_a_dead_letter_and_the_record_is_handled(
        self, backend: Any
    ) -> None:
        """As in a worker: the failure (after its policy) is a dead letter, not a retry."""
        app = make_app()
        app.failing.add(1)
        response = lambda_handler(app.bus, backend=backend)(
            sqs_event(sqs_record(app.body(PostPublished(1)))), app.context
        )
        assert failures(response) == []
        (letter,) = anyio.run(app.bus.dead_letters.list, backend=backend)
        assert letter.handler == "index"

    def test_a_deferred_retry_without_a_transport_is_a_failed_record(self, backend: Any) -> None:
        """A retry too long to wait for: the record comes back after its visibility timeout."""
        app = make_app(middleware=[LATER])
        app.failing.add(1)
        record = sqs_record(app.body(PostPublished(1)), message_id="m-1")
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert failures(response) == ["m-1"]
        assert list(anyio.run(app.bus.dead_letters.list, backend=backend)) == []

    def test_the_receive_count_spends_the_policy_s_attempts(self, backend: Any) -> None:
        """Received a third time under a 3-attempt policy: a dead letter, not a failure."""
        app = make_app(middleware=[LATER])
        app.failing.add(1)
        record = sqs_record(app.body(PostPublished(1)), message_id="m-1", receive_count=3)
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert failures(response) == []
        (letter,) = anyio.run(app.bus.dead_letters.list, backend=backend)
        assert letter.attempts == 3

    def test_a_deferred_retry_with_a_transport_is_a_delayed_copy(self, backend: Any) -> None:
        """As a worker does: a copy for the failed handler alone, delayed; the record is done."""
        # Each invocation is a new event loop: the broker keeps time on the process's clock.
        broker = MemoryBroker(clock=time.monotonic)
        app = make_app(middleware=[LATER], transport=InMemoryTransport(broker))
        broker.provision(app.bus.topology())
        app.failing.add(1)
        record = sqs_record(app.body(PostPublished(1)), message_id="m-1")
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert failures(response) == []
        depth = anyio.run(_depth, broker, "blog", backend=backend)
        assert (depth.visible, depth.delayed) == (0, 1)

    def test_only_the_failed_records_come_back(self, backend: Any) -> None:
        """Of three records, the one whose retry was deferred is reported; the others not."""
        app = make_app(middleware=[LATER])
        app.failing.add(2)
        event = sqs_event(
            *(sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 2, 3))
        )
        response = lambda_handler(app.bus, backend=backend)(event, app.context)
        assert failures(response) == ["m-2"]
        assert app.seen == [1, 3]

    def test_a_whole_failed_batch_is_reported_not_raised(self, backend: Any) -> None:
        """By default every record is listed; Lambda retries them without an error."""
        app = make_app(middleware=[LATER])
        app.failing |= {1, 2}
        event = sqs_event(
            *(sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 2))
        )
        response = lambda_handler(app.bus, backend=backend)(event, app.context)
        assert failures(response) == ["m-1", "m-2"]

    def test_a_whole_failed_batch_raises_when_asked(self, backend: Any) -> None:
        """raise_on_batch_failure: BatchFailedError lists them; a partial failure does not raise."""
        app = make_app(middleware=[LATER])
        app.failing |= {1, 2}
        handler = lambda_handler(app.bus, backend=backend, raise_on_batch_failure=True)
        event = sqs_event(
            *(sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 2))
        )
        with pytest.raises(BatchFailedError) as raised:
            handler(event, app.context)
        assert raised.value.failed == ("m-1", "m-2")
        partial = sqs_event(
            *(sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 3))
        )
        assert failures(handler(partial, app.context)) == ["m-1"]

    def test_a_failed_direct_invocation_raises(self, backend: Any) -> None:
        """SNS has no partial response: the error makes Lambda retry the event."""
        app = make_app()
        app.context.advance(29)  # one second left, under the two-second margin
        with pytest.raises(BatchFailedError):
            lambda_handler(app.bus, backend=backend)(
                sns_event(app.body(PostPublished(1))), app.context
            )
        assert app.seen == []


class TestFifo:
    """Records of one group in order; a failure holds back its group only."""

    def test_a_failure_fails_the_rest_of_its_group_and_others_carry_on(self, backend: Any) -> None:
        """a1 ok, a2 deferred, a3 not started (failed); group b runs through."""
        app = make_app(middleware=[LATER])
        app.failing.add(2)
        records = [
            sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}", group=group)
            for n, group in [(1, "a"), (10, "b"), (2, "a"), (11, "b"), (3, "a"), (12, "b")]
        ]
        response = lambda_handler(app.bus, backend=backend)(sqs_event(*records), app.context)
        assert failures(response) == ["m-2", "m-3"]
        assert [n for n in app.seen if n < 10] == [1]
        assert [n for n in app.seen if n >= 10] == [10, 11, 12]

    def test_sns_notifications_in_a_fifo_queue_keep_their_groups(self, backend: Any) -> None:
        """An SNS FIFO topic's notifications in a FIFO queue: read, and held per group."""
        app = make_app(middleware=[LATER])
        app.failing.add(2)
        records = [
            sqs_record(
                sns_notification(app.body(PostPublished(n)), topic="blog-events.fifo"),
                message_id=f"m-{n}",
                group=group,
            )
            for n, group in [(1, "a"), (10, "b"), (2, "a"), (11, "b"), (3, "a")]
        ]
        response = lambda_handler(app.bus, backend=backend)(sqs_event(*records), app.context)
        assert failures(response) == ["m-2", "m-3"]
        assert app.seen == [1, 10, 11]

    def test_concurrent_groups_keep_their_own_order(self, backend: Any) -> None:
        """With concurrency, each group still runs in order and fails the same way."""
        app = make_app(middleware=[LATER])
        app.failing.add(2)
        records = [
            sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}", group=group)
            for n, group in [(1, "a"), (10, "b"), (2, "a"), (11, "b"), (3, "a"), (12, "b")]
        ]
        handler = lambda_handler(app.bus, backend=backend, concurrency=4)
        assert failures(handler(sqs_event(*records), app.context)) == ["m-2", "m-3"]
        assert [n for n in app.seen if n < 10] == [1]
        assert [n for n in app.seen if n >= 10] == [10, 11, 12]


class TestConcurrency:
    """concurrency=N: at most N records at once, each lane under the deadline."""

    def test_at_most_n_records_run_at_once_and_n_do(self, backend: Any) -> None:
        """Each handler waits until a second one runs: with a bound of 2, never a third."""
        app = make_app()
        running = 0
        peak = 0
        pair = anyio.Event()

        @app.bus.subscriber(PostPublished, name="paired")
        async def paired(event: PostPublished) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 2:
                pair.set()
            await pair.wait()
            await anyio.lowlevel.checkpoint()  # let any other lane start, if it may
            running -= 1

        records = [sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in range(6)]
        handler = lambda_handler(app.bus, backend=backend, concurrency=2)
        assert failures(handler(sqs_event(*records), app.context)) == []
        assert peak == 2
        assert sorted(app.seen) == list(range(6))

    def test_lanes_start_no_record_under_the_margin(self, backend: Any) -> None:
        """Two records run together and use up the time: those waiting for a slot come back.

        Each waits until the other runs, then takes 10 s of a 30 s invocation with 15 s
        kept back: the next two would start with 10 s left.
        """
        app = make_app()
        running: list[int] = []
        pair = anyio.Event()

        @app.bus.subscriber(PostPublished, name="slow")
        async def slow(event: PostPublished) -> None:
            running.append(event.post_id)
            if len(running) == 2:
                pair.set()
            await pair.wait()
            app.context.advance(10.0)

        records = [sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in range(4)]
        handler = lambda_handler(app.bus, backend=backend, concurrency=2, margin=15.0)
        response = handler(sqs_event(*records), app.context)
        # Which two lanes get the slots first is the scheduler's choice (trio's varies).
        assert len(running) == 2
        assert failures(response) == [f"m-{n}" for n in range(4) if n not in running]


class Unpublishable(InMemoryTransport):
    """An in-memory transport whose topics cannot be reached."""

    async def publish(self, topic: str, messages: Any) -> None:
        raise TransportError(f"topic {topic!r} is unreachable")


class TestFollowUpsNotHandedOn:
    """A record whose follow-ups cannot leave fails, and comes back; the rest carry on."""

    def test_the_record_fails_with_a_warning(
        self, backend: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = make_app(transport=Unpublishable(MemoryBroker()))

        @app.bus.handler(IndexPost)
        async def index_post(command: IndexPost, ctx: Context[IndexPost]) -> None:
            if command.post_id == 1:
                ctx.publish(PostPublished(command.post_id))

        records = [sqs_record(app.body(IndexPost(n)), message_id=f"m-{n}") for n in (1, 2)]
        with caplog.at_level("WARNING", logger="messagebus"):
            response = lambda_handler(app.bus, backend=backend)(sqs_event(*records), app.context)
        assert failures(response) == ["m-1"]
        (line,) = [r for r in caplog.records if r.name == "messagebus.aws_lambda"]
        assert line.levelname == "WARNING"
        assert "follow-ups not handed on" in line.getMessage()
        assert "is unreachable" in line.getMessage()


class TestDeadline:
    """Records not started before the margin are failed; nothing is lost."""

    def test_records_not_started_in_time_come_back(self, backend: Any) -> None:
        """Each record takes 10 s of a 30 s invocation: the third would start under the margin."""
        app = make_app()
        app.cost = 10.0
        event = sqs_event(
            *(sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 2, 3, 4))
        )
        response = lambda_handler(app.bus, backend=backend, margin=15.0)(event, app.context)
        assert app.seen == [1, 2]
        assert failures(response) == ["m-3", "m-4"]

    def test_a_record_still_running_at_the_margin_is_cancelled_and_failed(
        self, backend: Any
    ) -> None:
        """A handler that would outlive the invocation is cancelled; its record comes back."""
        app = make_app()
        started: list[int] = []

        @app.bus.subscriber(PostPublished, name="stuck")
        async def stuck(event: PostPublished) -> None:
            started.append(event.post_id)
            await anyio.Event().wait()  # never set: only the deadline ends this

        context = FakeContext(timeout_ms=1_050)
        record = sqs_record(app.body(PostPublished(1)), message_id="m-1")
        response = lambda_handler(app.bus, backend=backend, margin=1.0)(sqs_event(record), context)
        assert started == [1]
        assert failures(response) == ["m-1"]


class TestFollowUps:
    """Everything a record causes is finished before the function returns."""

    def test_follow_ups_run_before_the_return(self, backend: Any) -> None:
        """A command's handler publishes an event; its subscriber has run on return."""
        app = make_app()

        @app.bus.handler(IndexPost)
        async def index_post(command: IndexPost, ctx: Context[IndexPost]) -> None:
            ctx.publish(PostPublished(command.post_id))

        response = lambda_handler(app.bus, backend=backend)(
            sqs_event(sqs_record(app.body(IndexPost(7)))), app.context
        )
        assert failures(response) == []
        assert app.seen == [7]

    def test_outbox_rows_committed_by_a_record_leave_before_the_return(
        self, backend: Any, tmp_path: Path
    ) -> None:
        """A unit of work commits an event to the outbox; the relay delivers it in time."""
        from messagebus.outbox import SQLiteOutbox

        app = make_app(outbox=SQLiteOutbox(tmp_path / "blog.db"))

        @app.bus.handler(IndexPost)
        async def index_post(command: IndexPost) -> None:
            async with app.bus.unit_of_work() as uow:
                uow.publish(PostPublished(command.post_id))

        event = sqs_event(*(sqs_record(app.body(IndexPost(n))) for n in (7, 8)))
        response = lambda_handler(app.bus, backend=backend)(event, app.context)
        assert failures(response) == []
        assert sorted(app.seen) == [7, 8]


class TestWarmInvocations:
    def test_the_bus_stays_entered_between_invocations_until_closed(self, backend: Any) -> None:
        """Entered at the first call, reused by the next (warm), left by close()."""
        app = make_app()
        function = lambda_handler(app.bus, backend=backend)
        assert not app.bus.running
        for post in (1, 2):
            function(sqs_event(sqs_record(app.body(PostPublished(post)))), app.context)
            assert app.bus.running
        function.close()
        assert not app.bus.running
        assert app.seen == [1, 2]


class RefusedOnce(InMemoryTransport):
    """An in-memory transport that cannot be opened the first time (a cold start's outage)."""

    refused = False

    async def __aenter__(self) -> InMemoryTransport:
        if not self.refused:
            self.refused = True
            raise TransportError("the broker is not there yet")
        return await super().__aenter__()


class TestTheLoop:
    """Where an invocation runs: the loop kept between calls, whoever calls."""

    def test_a_bus_that_cannot_be_entered_fails_the_call_and_the_next_enters_it(
        self, backend: Any
    ) -> None:
        """The error of entering reaches Lambda; the next invocation starts afresh."""
        app = make_app(transport=RefusedOnce(MemoryBroker()))
        function = lambda_handler(app.bus, backend=backend)
        event = sqs_event(sqs_record(app.body(PostPublished(1))))
        with pytest.raises(TransportError, match="not there yet"):
            function(event, app.context)
        assert not app.bus.running
        assert failures(function(event, app.context)) == []
        assert app.seen == [1]

    async def test_a_call_from_a_thread_running_an_event_loop_is_served(
        self, anyio_backend: str
    ) -> None:
        """An async caller that calls the function directly blocks, but is answered."""
        app = make_app()
        function = lambda_handler(app.bus)
        for post in (1, 2):
            response = function(sqs_event(sqs_record(app.body(PostPublished(post)))), app.context)
            assert failures(response) == []
        assert app.seen == [1, 2]

    def test_a_record_that_waits_is_still_cut_off_at_the_margin(self, backend: Any) -> None:
        """The first record waits (the deadline's timer starts then); the second hangs."""
        app = make_app()
        hung: list[int] = []

        @app.bus.subscriber(PostPublished, name="slow")
        async def slow(event: PostPublished) -> None:
            await anyio.lowlevel.checkpoint()
            if event.post_id == 2:
                hung.append(2)
                await anyio.Event().wait()  # never set: only the deadline ends this

        context = FakeContext(timeout_ms=1_050)
        records = [sqs_record(app.body(PostPublished(n)), message_id=f"m-{n}") for n in (1, 2)]
        response = lambda_handler(app.bus, backend=backend, margin=1.0)(
            sqs_event(*records), context
        )
        assert hung == [2]
        assert failures(response) == ["m-2"]
        assert app.seen == [1, 2]


class TestArguments:
    def test_a_negative_margin_or_no_concurrency_is_refused(self) -> None:
        """Made at import time, a wrong setting fails the cold start, not each invocation."""
        from messagebus import InvalidArgumentError

        bus = MessageBus()
        with pytest.raises(InvalidArgumentError):
            lambda_handler(bus, margin=-1)
        with pytest.raises(InvalidArgumentError):
            lambda_handler(bus, concurrency=0)


async def _depth(broker: MemoryBroker, queue: str) -> Any:
    async with InMemoryTransport(broker) as transport:
        return await transport.depth(queue)


class TestInProgressDuplicates:
    """A duplicate of a run still in progress elsewhere is a retryable failure of its record."""

    def test_the_record_comes_back_and_is_no_dead_letter(self, backend: Any) -> None:
        """Another invocation holds the key: this record is failed, not dead-lettered."""
        from messagebus.idempotency import InMemoryIdempotencyStore
        from messagebus.middleware import IdempotencyMiddleware

        store = InMemoryIdempotencyStore()
        idempotency = IdempotencyMiddleware(store, wait=0)
        app = make_app(middleware=[idempotency])
        body = app.body(PostPublished(1))
        envelope = app.bus.codec.decode(body)
        fingerprint = idempotency.fingerprint_of(envelope)
        claim = store.claim("index", envelope.message_id, fingerprint, 300.0)
        anyio.run(lambda: claim, backend=backend)
        record = sqs_record(body, message_id="m-1")
        response = lambda_handler(app.bus, backend=backend)(sqs_event(record), app.context)
        assert app.seen == []
        assert list(anyio.run(app.bus.dead_letters.list, backend=backend)) == []
        assert failures(response) == ["m-1"]


class TestIdempotencyLeases:
    """Claims made in an invocation never outlive it."""

    def test_leases_are_capped_at_the_remaining_time(self, backend: Any) -> None:
        """A 300 s lease in a 30 s invocation holds 30 s; 10 s later, 20 s."""
        from messagebus.middleware import IdempotencyMiddleware
        from tests.test_deadline import LeaseRecorder

        store = LeaseRecorder()
        app = make_app(middleware=[IdempotencyMiddleware(store, lease=300.0)])
        app.cost = 10.0
        event = sqs_event(*(sqs_record(app.body(PostPublished(n))) for n in (1, 2)))
        response = lambda_handler(app.bus, backend=backend)(event, app.context)
        assert failures(response) == []
        assert store.leases == [30.0, 20.0]
