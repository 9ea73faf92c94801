"""The event router: S3, DynamoDB Streams and EventBridge records as the application's events.

Each test calls the entry point as Lambda would, with events built from AWS's documented
formats (tests/lambda_events.py), on asyncio and on trio.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anyio
import attrs
import pytest

from messagebus import Command, Envelope, Event, InvalidMessageTypeError, MessageBus
from messagebus.aws_lambda import (
    DynamoDBChange,
    EventBridgeEvent,
    EventRouter,
    S3Notification,
)
from messagebus.dead_letters import DeadLetter
from messagebus.idempotency import InMemoryIdempotencyStore
from messagebus.middleware import IdempotencyMiddleware, RetryMiddleware
from messagebus.retry import FixedBackoff, RetryPolicy
from tests.lambda_events import (
    FakeContext,
    aws_event,
    dead_letter_queue_record,
    dynamodb_record,
    lambda_handler,
    post_image,
    s3_event,
    s3_record,
    s3_test_event,
    sns_notification,
    sqs_event,
    sqs_record,
)


@attrs.frozen
class ImageUploaded(Event, name="routertest.image.uploaded"):
    bucket: str
    key: str
    size: int


@attrs.frozen
class PostSaved(Event, name="routertest.post.saved"):
    post_id: int
    title: str
    tags: frozenset[str]
    author: str
    created: bool


@attrs.frozen
class InstanceChanged(Event, name="routertest.instance.changed"):
    instance_id: str
    state: str


@attrs.frozen
class Reindex(Command[None], name="routertest.reindex"):
    post_id: int


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Any:
    return request.param


LATER = RetryMiddleware(events=RetryPolicy(max_attempts=3, backoff=FixedBackoff(60.0)))
"""A policy whose every retry is too long to wait for in an invocation: the record fails."""


@attrs.define
class App:
    """A bus with subscribers for the three routed events, and the router binding them."""

    bus: MessageBus
    router: EventRouter
    seen: list[Event] = attrs.field(factory=list)
    envelopes: list[Envelope[Any]] = attrs.field(factory=list)
    failing: set[int] = attrs.field(factory=set)
    context: FakeContext = attrs.field(factory=FakeContext)

    def letters(self, backend: str) -> list[DeadLetter]:
        return list(anyio.run(self.bus.dead_letters.list, backend=backend))


def make_app(**bus_options: Any) -> App:
    app = App(MessageBus(service="blog", **bus_options), EventRouter())
    router = app.router

    @router.s3(ImageUploaded, bucket="blog-images", event_name="ObjectCreated:*")
    def uploaded(record: S3Notification) -> ImageUploaded:
        return ImageUploaded(record.bucket, record.key, record.size or 0)

    @router.dynamodb(PostSaved, table="posts", event_name="[IM]*")  # INSERT, MODIFY
    def saved(change: DynamoDBChange) -> PostSaved:
        image = change.new_image or {}
        return PostSaved(
            post_id=int(image["Id"]),
            title=image["Title"],
            tags=frozenset(image["Tags"]),
            author=image["Author"]["Name"],
            created=change.event_name == "INSERT",
        )

    @router.eventbridge(InstanceChanged, source="aws.ec2", detail_type="EC2 Instance *")
    def changed(event: EventBridgeEvent) -> InstanceChanged:
        return InstanceChanged(event.detail["instance-id"], event.detail["state"])

    async def record(event: Event, ctx: Any) -> None:
        if isinstance(event, PostSaved) and event.post_id in app.failing:
            raise RuntimeError(f"post {event.post_id} will not save")
        app.seen.append(event)
        app.envelopes.append(ctx.envelope)

    for event_type in (ImageUploaded, PostSaved, InstanceChanged):
        app.bus.subscriber(event_type, record, name=f"record-{event_type.__name__}")
    return app


def failures(response: Any) -> list[str]:
    assert isinstance(response, dict)
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


class TestS3:
    """S3 notifications, direct or through a queue, become ImageUploaded."""

    def test_a_direct_s3_invocation(self, backend: Any) -> None:
        """The key is URL-decoded; nothing to answer."""
        app = make_app()
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert handler(s3_event(s3_record("images/cat+photo.jpg")), app.context) is None
        assert app.seen == [ImageUploaded("blog-images", "images/cat photo.jpg", 1305107)]

    def test_s3_notifications_inside_an_sqs_body(self, backend: Any) -> None:
        """One SQS message may carry several S3 records: each is an event."""
        app = make_app()
        body = json.dumps(s3_event(s3_record("a.jpg", sequencer="01"), s3_record("b.jpg")))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(sqs_record(body)), app.context)) == []
        assert [event.key for event in app.seen if isinstance(event, ImageUploaded)] == [
            "a.jpg",
            "b.jpg",
        ]

    def test_s3_inside_sns_inside_sqs(self, backend: Any) -> None:
        """S3 to an SNS topic, the topic to a queue (raw delivery off)."""
        app = make_app()
        body = sns_notification(json.dumps(s3_event(s3_record("c.jpg"))))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(sqs_record(body)), app.context)) == []
        assert [event.key for event in app.seen if isinstance(event, ImageUploaded)] == ["c.jpg"]

    def test_the_s3_test_event_is_read_as_nothing(self, backend: Any) -> None:
        """Sent once when the notification is configured: no event, no dead letter, no failure."""
        app = make_app()
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        response = handler(sqs_event(sqs_record(json.dumps(s3_test_event()))), app.context)
        assert failures(response) == []
        assert app.seen == []
        assert app.letters(backend) == []

    def test_an_unmatched_s3_record_is_a_dead_letter_with_its_reason(self, backend: Any) -> None:
        """A removal (no rule for it) is kept, not dropped, and not reported failed."""
        app = make_app()
        body = json.dumps(s3_event(s3_record("d.jpg", event_name="ObjectRemoved:Delete")))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(sqs_record(body, queue="images")), app.context)) == []
        (letter,) = app.letters(backend)
        assert "no rule of the event router matches S3 ObjectRemoved:Delete" in letter.error_message
        assert "s3://blog-images/d.jpg" in letter.error_message
        assert letter.handler == "<decode:images>"
        assert json.loads(letter.body)["eventName"] == "ObjectRemoved:Delete"

    def test_one_unmatched_record_does_not_hold_back_its_neighbours(self, backend: Any) -> None:
        """In one body, the matched record is handled and the other dead-lettered."""
        app = make_app()
        body = json.dumps(s3_event(s3_record("e.jpg"), s3_record("f.jpg", bucket="other-bucket")))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(sqs_record(body)), app.context)) == []
        assert [event.key for event in app.seen if isinstance(event, ImageUploaded)] == ["e.jpg"]
        (letter,) = app.letters(backend)
        assert "s3://other-bucket/f.jpg" in letter.error_message

    def test_a_redelivered_notification_is_a_duplicate(self, backend: Any) -> None:
        """Its message id comes from the object's sequencer: idempotency runs it once."""
        app = make_app(middleware=[IdempotencyMiddleware(InMemoryIdempotencyStore())])
        body = json.dumps(s3_event(s3_record("g.jpg")))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        handler(sqs_event(sqs_record(body)), app.context)
        handler(sqs_event(sqs_record(body, receive_count=2)), app.context)
        assert len(app.seen) == 1


class TestDynamoDBStreams:
    """Stream records become PostSaved; batches stop at the first failure."""

    def test_typed_attribute_values_reach_the_builder_as_python_values(self, backend: Any) -> None:
        """N, S, SS, BOOL, NULL, L and M are read by boto3's TypeDeserializer."""
        app = make_app()
        seen: list[DynamoDBChange] = []

        @app.router.dynamodb(PostSaved, table="drafts")
        def draft(change: DynamoDBChange) -> PostSaved:
            seen.append(change)
            return PostSaved(1, "draft", frozenset(), "Ada", created=True)

        record = dynamodb_record(
            "MODIFY",
            table="drafts",
            new_image=post_image(1, "New"),
            old_image=post_image(1, "Old", tags=()),
        )
        record["dynamodb"]["OldImage"].pop("Tags")  # an empty set cannot be stored
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler({"Records": [record]}, app.context)) == []
        (change,) = seen
        assert change.table == "drafts"
        assert change.keys == {"Id": Decimal(101)}
        assert change.new_image == {
            "Id": Decimal(1),
            "Title": "New",
            "Tags": {"aws"},
            "Published": True,
            "Archived": None,
            "Scores": [Decimal("4.5"), Decimal(3)],
            "Author": {"Name": "Ada", "Karma": Decimal(42)},
        }
        assert change.old_image is not None
        assert change.old_image["Title"] == "Old"
        assert change.sequence_number == record["dynamodb"]["SequenceNumber"]

    def test_inserts_and_modifies_reach_the_subscriber_in_order(self, backend: Any) -> None:
        """The rule's event_name glob takes INSERT and MODIFY."""
        app = make_app()
        event = {
            "Records": [
                dynamodb_record("INSERT", new_image=post_image(1, "One")),
                dynamodb_record("MODIFY", new_image=post_image(1, "One, edited")),
            ]
        }
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(event, app.context)) == []
        assert [(e.title, e.created) for e in app.seen if isinstance(e, PostSaved)] == [
            ("One", True),
            ("One, edited", False),
        ]

    def test_a_batch_stops_at_the_first_failure_and_reports_its_sequence_number(
        self, backend: Any
    ) -> None:
        """Checkpoint semantics: the failed record and everything after it come back."""
        app = make_app(middleware=[LATER])
        app.failing.add(2)
        records = [dynamodb_record("INSERT", new_image=post_image(n, f"#{n}")) for n in (1, 2, 3)]
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        response = handler({"Records": records}, app.context)
        assert failures(response) == [records[1]["dynamodb"]["SequenceNumber"]]
        assert [e.post_id for e in app.seen if isinstance(e, PostSaved)] == [1]

    def test_an_unmatched_stream_record_is_a_dead_letter_and_the_stream_moves_on(
        self, backend: Any
    ) -> None:
        """A REMOVE has no rule: kept with its reason; the next record runs."""
        app = make_app()
        records = [
            dynamodb_record("REMOVE", old_image=post_image(1, "Gone")),
            dynamodb_record("INSERT", new_image=post_image(2, "Two")),
        ]
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler({"Records": records}, app.context)) == []
        assert [e.post_id for e in app.seen if isinstance(e, PostSaved)] == [2]
        (letter,) = app.letters(backend)
        assert "DynamoDB REMOVE on table posts" in letter.error_message
        assert letter.handler == "<decode:posts>"

    def test_a_malformed_stream_record_is_a_dead_letter(self, backend: Any) -> None:
        """An attribute value of an unknown type cannot be read: never retried."""
        app = make_app()
        record = dynamodb_record("INSERT", new_image={"Id": {"X": "1"}})
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler({"Records": [record]}, app.context)) == []
        (letter,) = app.letters(backend)
        assert "DynamoDB Streams record unreadable" in letter.error_message


class TestEventBridge:
    """Events of aws.* and other sources, direct or through a queue, become InstanceChanged."""

    def test_a_direct_aws_event(self, backend: Any) -> None:
        """A rule targeting the function with an EC2 state change."""
        app = make_app()
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert handler(aws_event(), app.context) is None
        assert app.seen == [InstanceChanged("i-abcd1111", "pending")]
        (envelope,) = app.envelopes
        assert envelope.timestamp.isoformat() == "2015-11-11T21:29:54+00:00"

    def test_an_aws_event_inside_an_sqs_body(self, backend: Any) -> None:
        """A rule with an SQS target: the body is the event."""
        app = make_app()
        body = json.dumps(aws_event(detail={"instance-id": "i-2", "state": "running"}))
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(sqs_record(body)), app.context)) == []
        assert app.seen == [InstanceChanged("i-2", "running")]

    def test_an_archive_replay_is_a_duplicate(self, backend: Any) -> None:
        """A replayed event (replay-name) keeps its id, so its message id: it runs once."""
        app = make_app(middleware=[IdempotencyMiddleware(InMemoryIdempotencyStore())])
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        original = aws_event(event_id="17793124-05d4-b198-2fde-7ededc63b103")
        handler(original, app.context)
        handler(aws_event(event_id=original["id"], replay_name="recovery-1"), app.context)
        handler(aws_event(), app.context)  # another event: another message
        assert len(app.seen) == 2
        first, other = app.envelopes
        assert first.message_id != other.message_id

    def test_a_producer_s_event_with_no_rule_is_a_dead_letter(self, backend: Any) -> None:
        """Another team's event this service has no rule for: kept, with the event's id."""
        app = make_app()
        event = aws_event("com.example.billing", "Invoice Paid", {"invoice": 7})
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        handler(event, app.context)
        (letter,) = app.letters(backend)
        assert "EventBridge 'Invoice Paid' from com.example.billing" in letter.error_message
        assert letter.message_id == event["id"]


class TestRules:
    """How rules are declared, chosen and checked."""

    def test_the_first_matching_rule_wins(self, backend: Any) -> None:
        """A catch-all declared after a specific rule only takes what the first leaves."""
        app = make_app()
        built: list[str] = []

        @app.router.s3(ImageUploaded)
        def anything(record: S3Notification) -> ImageUploaded:
            built.append(record.key)
            return ImageUploaded(record.bucket, record.key, 0)

        event = s3_event(s3_record("h.jpg"), s3_record("i.jpg", bucket="other-bucket"))
        lambda_handler(app.bus, backend=backend, router=app.router)(event, app.context)
        assert built == ["i.jpg"]
        assert len(app.seen) == 2

    def test_a_builder_that_fails_gives_a_dead_letter_naming_the_rule(self, backend: Any) -> None:
        """A KeyError on a record the builder did not expect: permanent, so a dead letter."""
        app = make_app()

        @app.router.eventbridge(InstanceChanged, source="aws.autoscaling")
        def scaled(event: EventBridgeEvent) -> InstanceChanged:
            return InstanceChanged(event.detail["EC2InstanceId"], "launched")

        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        handler(aws_event("aws.autoscaling", "EC2 Instance Launch Successful", {}), app.context)
        (letter,) = app.letters(backend)
        assert "scaled could not build InstanceChanged" in letter.error_message
        assert "KeyError" in letter.error_message

    def test_a_builder_returning_another_type_gives_a_dead_letter(self, backend: Any) -> None:
        """The rule's declared type is the contract."""
        app = make_app()

        @app.router.eventbridge(InstanceChanged, source="aws.health")
        def health(event: EventBridgeEvent) -> Any:
            return ImageUploaded("b", "k", 1)

        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        handler(aws_event("aws.health", "AWS Health Event", {}), app.context)
        (letter,) = app.letters(backend)
        assert "returned ImageUploaded, not InstanceChanged" in letter.error_message

    def test_a_rule_builds_events_only(self) -> None:
        """A command is an intention: no AWS record is one."""
        with pytest.raises(InvalidMessageTypeError):
            EventRouter().s3(Reindex)  # type: ignore[type-var]

    def test_a_rule_for_a_type_the_bus_does_not_know_fails_the_first_invocation(
        self, backend: Any
    ) -> None:
        """No subscriber and no declaration: the deploy is wrong, so the invocation fails."""

        @attrs.frozen
        class Orphan(Event, name="routertest.orphan"):
            key: str

        router = EventRouter()
        router.s3(Orphan)(lambda record: Orphan(record.key))
        bus = MessageBus()
        handler = lambda_handler(bus, backend=backend, router=router)
        with pytest.raises(InvalidMessageTypeError, match="Orphan"):
            handler(s3_event(s3_record()), FakeContext())

    def test_without_a_router_foreign_records_are_dead_letters(self, backend: Any) -> None:
        """The default: nothing bound, everything kept."""
        app = make_app()
        handler = lambda_handler(app.bus, backend=backend)
        handler(aws_event(), app.context)
        assert app.seen == []
        (letter,) = app.letters(backend)
        assert "no rule of the event router matches" in letter.error_message


class TestDeadLetterQueueTrigger:
    """A function fed by a dead-letter queue reads its records like any other."""

    def test_the_record_runs_with_the_attempts_it_spent(self, backend: Any) -> None:
        """Received five times before: the attempt number says so (a policy may give up)."""
        app = make_app()
        envelope = Envelope(InstanceChanged("i-9", "stopped"))
        body = app.bus.codec.encode(envelope).decode()
        record = dead_letter_queue_record(body, receive_count=5)
        handler = lambda_handler(app.bus, backend=backend, router=app.router)
        assert failures(handler(sqs_event(record), app.context)) == []
        assert app.seen == [InstanceChanged("i-9", "stopped")]
        assert app.envelopes[0].attempt == 5
