from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from messagebus import (
    ConfigurationError,
    DecodeError,
    EncodeError,
    Envelope,
    Event,
    MessageRegistry,
    SerializationError,
    WireCodec,
)
from tests.messages import ChargeCard, PostPublished, PublishPost


@attrs.frozen
class Scheduled(Event, name="calendar.scheduled", version=2):
    at: datetime
    tags: frozenset[str]
    note: str | None = None


@attrs.frozen
class Opaque(Event, name="test.opaque"):
    thing: object


def codec() -> WireCodec:
    registry = MessageRegistry()
    for message_type in (PublishPost, PostPublished, ChargeCard, Scheduled, Opaque):
        registry.add(message_type)
    return WireCodec(registry, source="/blog")


class TestEncode:
    """Envelopes become CloudEvents 1.0 structured JSON."""

    def test_cloudevents_attributes(self) -> None:
        """The required attributes, the data, and our extensions."""
        root = Envelope(PublishPost("hi"))
        envelope = Envelope(
            PostPublished(1, "hi"),
            parent=root,
            idempotency_key="k",
            group_key="post-1",
            headers={"tenant": "acme"},
            attempt=2,
        )
        event = json.loads(codec().encode(envelope))
        assert event == {
            "specversion": "1.0",
            "id": envelope.message_id,
            "source": "/blog",
            "type": "blog.post.published",
            "time": envelope.timestamp.isoformat(),
            "datacontenttype": "application/json",
            "data": {"post_id": 1, "title": "hi"},
            "messageversion": 1,
            "correlationid": root.message_id,
            "causationid": root.message_id,
            "attempt": 2,
            "idempotencykey": "k",
            "groupkey": "post-1",
            "headers": '{"tenant": "acme"}',
        }

    def test_absent_options_are_left_out(self) -> None:
        """A root message without options carries no empty extensions."""
        event = json.loads(codec().encode(Envelope(ChargeCard(5))))
        assert not {"causationid", "idempotencykey", "groupkey", "headers"} & event.keys()

    def test_extension_names_follow_cloudevents(self) -> None:
        """Attribute names are lowercase letters and digits, at most 20."""
        event = json.loads(codec().encode(Envelope(ChargeCard(5), idempotency_key="k")))
        for name in event:
            assert name.isalnum()
            assert name.islower()
            assert len(name) <= 20

    def test_unencodable_fields_are_a_typed_error(self) -> None:
        """A field with no JSON form raises EncodeError, a SerializationError."""
        with pytest.raises(EncodeError, match="Opaque") as caught:
            codec().encode(Envelope(Opaque(object())))
        assert isinstance(caught.value, SerializationError)


class TestRoundTrip:
    """What is encoded decodes to an equal envelope."""

    @pytest.mark.parametrize(
        "message",
        [
            PublishPost("hello"),
            ChargeCard(42),
            Scheduled(datetime(2026, 11, 26, 9, 30, tzinfo=UTC), frozenset({"a", "b"})),
            Scheduled(datetime(2026, 11, 26, 9, 30, tzinfo=UTC), frozenset(), note="n"),
        ],
    )
    def test_round_trip(self, message: Any) -> None:
        """Message, ids, time, metadata and attempt survive the trip."""
        original = Envelope(
            message,
            parent=Envelope(PublishPost("cause")),
            headers={"a": "b"},
            group_key="g",
            idempotency_key="i",
            attempt=3,
        )
        wire = codec()
        assert wire.decode(wire.encode(original)) == original
        assert wire.decode(wire.encode(original).decode()) == original


class TestDecode:
    """Only registered types, as CloudEvents JSON, decode; everything else is refused."""

    def event(self, **changes: Any) -> dict[str, Any]:
        event = codec().to_dict(Envelope(ChargeCard(5)))
        event.update(changes)
        return {key: value for key, value in event.items() if value is not None}

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"\xff\xfe", "not JSON"),
            (b"{not json", "not JSON"),
            (b"[1, 2]", "expected object, got array"),
            (b"{}", "missing required field specversion"),
        ],
    )
    def test_malformed_bodies(self, body: bytes, reason: str) -> None:
        """Garbage is a DecodeError that says what is wrong."""
        with pytest.raises(DecodeError, match=reason):
            codec().decode(body)

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"specversion": "0.3"}, "specversion"),
            ({"type": "os.system"}, "unknown message type 'os.system'"),
            ({"type": 42}, "type: expected str, got int"),
            ({"messageversion": 9}, "version 9"),
            ({"data": {"amount": "five"}}, r"charge v1: data\.amount: expected int, got str"),
            ({"data": {}}, "data: object missing required field amount"),
            ({"time": "yesterday"}, "time: invalid RFC3339"),
            ({"correlationid": 7}, "correlationid: expected str | null, got int"),
            ({"headers": "[1]"}, "headers: expected object, got array"),
            ({"headers": '{"a": 1}'}, r"headers\[\.\.\.\]: expected str, got int"),
            ({"time": None}, "missing required field time"),
        ],
    )
    def test_refusals(self, changes: dict[str, Any], reason: str) -> None:
        """Each way a body can fail names itself in the error."""
        with pytest.raises(DecodeError, match=reason):
            codec().from_dict(self.event(**changes))

    def test_registered_version_decides_the_class(self) -> None:
        """A type known at version 2 does not decode version 1 data."""
        event = codec().to_dict(Envelope(Scheduled(datetime(2026, 1, 1, tzinfo=UTC), frozenset())))
        assert codec().from_dict(event).message_version == 2
        event["messageversion"] = 1
        with pytest.raises(DecodeError, match="version 1"):
            codec().from_dict(event)


@attrs.frozen
class ArticleWritten(Event, name="blog.article.written", version=3):
    """Version 3: v1 had `writer` and no title; v2 added `title`; v3 renamed `writer`."""

    article_id: int
    title: str
    author: str


def add_title(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "title": data.get("title", "untitled")}


def rename_writer(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["author"] = data.pop("writer")
    return data


def evolving_codec(*steps: int) -> WireCodec:
    registry = MessageRegistry()
    registry.add(ArticleWritten)
    upcasters = {1: add_title, 2: rename_writer}
    for step in steps:
        registry.add_upcaster("blog.article.written", step, upcasters[step])
    return WireCodec(registry)


def written_at(version: int, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents body as a producer of `version` wrote it."""
    return {
        "specversion": "1.0",
        "id": "01a21999-0000-7000-8000-000000000001",
        "source": "/old-blog",
        "type": "blog.article.written",
        "time": "2024-01-01T00:00:00+00:00",
        "data": data,
        "messageversion": version,
        "correlationid": "c",
    }


class TestUpcasting:
    """Old versions decode as the registered version, through upcasters."""

    def test_v1_reads_as_v3(self) -> None:
        """v1 data goes through v1->v2->v3 and becomes the v3 class."""
        envelope = evolving_codec(1, 2).from_dict(written_at(1, {"article_id": 7, "writer": "ada"}))
        assert envelope.message == ArticleWritten(7, "untitled", "ada")
        assert envelope.message_version == 3
        assert envelope.message_id == "01a21999-0000-7000-8000-000000000001"

    def test_v2_reads_as_v3(self) -> None:
        """A chain can start in the middle."""
        envelope = evolving_codec(1, 2).from_dict(
            written_at(2, {"article_id": 7, "writer": "ada", "title": "Hi"})
        )
        assert envelope.message == ArticleWritten(7, "Hi", "ada")

    def test_a_gap_in_the_chain(self) -> None:
        """Without the v2->v3 step, v1 data is an unknown version."""
        with pytest.raises(DecodeError, match="version 1"):
            evolving_codec(1).from_dict(written_at(1, {"article_id": 7, "writer": "ada"}))

    def test_a_failing_upcaster(self) -> None:
        """An upcaster that raises makes the body undecodable, saying why."""
        with pytest.raises(DecodeError, match="upcasting failed: KeyError"):
            evolving_codec(1, 2).from_dict(written_at(1, {"article_id": 7}))

    def test_registration_refusals(self) -> None:
        """One upcaster per step, and none for a version a class describes."""
        registry = MessageRegistry()
        registry.add(ArticleWritten)
        registry.add_upcaster("blog.article.written", 1, add_title)
        with pytest.raises(ConfigurationError, match="already has an upcaster"):
            registry.add_upcaster("blog.article.written", 1, add_title)
        with pytest.raises(ConfigurationError, match="registered type"):
            registry.add_upcaster("blog.article.written", 3, add_title)

    def test_non_object_data_of_an_old_version(self) -> None:
        """Data that is not an object is never given to upcasters."""
        with pytest.raises(DecodeError, match="version 1"):
            evolving_codec(1, 2).from_dict(written_at(1, [1, 2]))  # type: ignore[arg-type]
