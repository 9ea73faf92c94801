"""The codec's one-pass decoding of known types: the same result as the full path, always."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messagebus import DecodeError, Envelope, Event, MessageRegistry, WireCodec
from messagebus._codec import _Event
from messagebus._known_types import TypedEvent


@attrs.frozen
class Order(Event, name="test.order"):
    order_id: int
    customer: str
    skus: list[str]
    express: bool = False


@attrs.frozen
class Renamed(Event, name="test.renamed", version=2):
    title: str


@attrs.frozen
class Priced(Event, name="test.priced"):
    price: Decimal


ORDER = Envelope(
    Order(7, "ada", ["a-1", "b-2"], express=True),
    message_id="m-1",
    timestamp=datetime(2026, 1, 1, 12, 0, 0, 3, tzinfo=UTC),
)


def cold() -> WireCodec:
    """A codec that has decoded nothing: every body takes the full path."""
    registry = MessageRegistry()
    for message_type in (Order, Renamed, Priced):
        registry.add(message_type)
    return WireCodec(registry, source="/test")


def warm() -> WireCodec:
    """A codec that has decoded each type once: bodies of known types take one pass."""
    codec = cold()
    codec.decode(codec.encode(ORDER))
    codec.decode(codec.encode(Envelope(Renamed("t"))))
    return codec


def outcome(codec: WireCodec, body: bytes | str) -> tuple[str, Any]:
    """What decoding ``body`` gives: the envelope's fields, or the DecodeError's text."""
    try:
        envelope = codec.decode(body)
    except DecodeError as exc:
        return "refused", str(exc)
    return "decoded", (envelope, envelope.timestamp, dict(envelope.headers))


ORDER_EVENT = cold().to_dict(ORDER)


class TestAgreement:
    """The one-pass struct reads the same attributes as the full path's."""

    def test_same_attributes(self) -> None:
        """TypedEvent plus its ``type`` tag has exactly the full path's attribute names."""
        names = set(TypedEvent.__struct_fields__) | {"type"}
        assert names == set(_Event.__struct_fields__)

    def test_same_rules(self) -> None:
        """Every attribute but the three typed per class has the same type and default."""
        full = {field.name: field for field in msgspec.structs.fields(_Event)}
        typed_per_class = {"data", "messageversion", "datacontenttype"}
        for field in msgspec.structs.fields(TypedEvent):
            if field.name in typed_per_class:
                continue
            assert (field.type, field.default) == (full[field.name].type, full[field.name].default)

    def test_learns_on_first_decode(self) -> None:
        """A type is learned by its first decode; a Decimal type never is (checked raw)."""
        codec = cold()
        assert codec._known.decoder is None
        codec.decode(codec.encode(Envelope(Priced(Decimal("1.5")))))
        assert codec._known.decoder is None
        codec.decode(codec.encode(ORDER))
        assert "test.order" in codec._known

    def test_a_converter_is_never_bypassed(self) -> None:
        """A codec with a cattrs converter decodes every body through it."""
        from cattrs.preconf.json import make_converter

        registry = MessageRegistry()
        registry.add(Order)
        codec = WireCodec(registry, converter=make_converter())
        assert codec.converter is not None
        for _ in range(2):
            assert codec.decode(codec.encode(ORDER)) == ORDER
        assert codec._known.decoder is None

    def test_add_type_forgets(self) -> None:
        """Adding a custom type drops the one-pass decoders built without it."""
        codec = warm()
        codec.add_type(complex, encode=str, decode=complex)
        assert codec._known.decoder is None
        assert codec.decode(codec.encode(ORDER)) == ORDER


class TestSameOutcome:
    """A warm codec decodes every body exactly as a cold one: same envelope or same error."""

    @pytest.mark.parametrize(
        "changes",
        [
            {},
            {"headers": json.dumps({"k": "v"})},
            {"headers": "{"},
            {"headers": '{"a": 1}'},
            {"datacontenttype": "application/json; charset=utf-8"},
            {"datacontenttype": "text/xml"},
            {"datacontenttype": None},
            {"messageversion": 2},
            {"messageversion": 1.0},
            {"messageversion": 0},
            {"type": "test.renamed", "messageversion": 2, "data": {"title": "x"}},
            {"type": "test.renamed", "data": {"title": "x"}},
            {"type": "test.unknown"},
            {"type": ""},
            {"type": None},
            {"id": ""},
            {"id": None},
            {"time": "2026-01-01T00:00:00"},
            {"time": "2026-01-01T02:00:00+02:00"},
            {"attempt": 0},
            {"attempt": 3},
            {"specversion": "1.1"},
            {"traceparent": "00-ab"},
            {"Bad-Name": 1},
            {"data": {"order_id": "7", "customer": "ada", "skus": [], "express": True}},
            {"data": {"order_id": 7, "customer": "ada", "skus": ["a", 1]}},
            {"data": {"order_id": 7, "customer": "ada", "skus": [], "extra": 1}},
            {"data": None},
            {"idempotencykey": "k", "groupkey": "g", "causationid": "c", "correlationid": "r"},
            {"causationid": ""},
        ],
    )
    def test_attribute_changes(self, changes: dict[str, Any]) -> None:
        """Valid and invalid attributes: the one pass never decides differently."""
        event = {**ORDER_EVENT, **changes}
        event = {key: value for key, value in event.items() if value is not None or key in changes}
        body = json.dumps(event)
        assert outcome(warm(), body) == outcome(cold(), body)

    @pytest.mark.parametrize(
        "body",
        [
            # the last "type" wins, as for every key; the one pass must not pick the first
            json.dumps(ORDER_EVENT)[:-1] + ', "type": "test.renamed"}',
            json.dumps(ORDER_EVENT)[:-1] + ', "data": {"title": "x"}, "type": "test.renamed"}',
            json.dumps(ORDER_EVENT).replace('"order_id": 7', '"order_id": 7, "order_id": 8'),
            json.dumps({key: ORDER_EVENT[key] for key in ORDER_EVENT if key != "type"}),
            b"[" * 100_000,
            b'{"type": "test.order", "data":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b"\xc3\x28",
            b"",
            b"null",
        ],
    )
    def test_odd_bodies(self, body: bytes | str) -> None:
        """Repeated keys, a missing type, deep nesting, invalid UTF-8: as the full path."""
        assert outcome(warm(), body) == outcome(cold(), body)

    def test_an_old_version_is_upcast(self) -> None:
        """A body of a version with an upcaster, for a learned name, is upcast as before."""
        codec = warm()
        codec.registry.add_upcaster("test.renamed", 1, lambda data: {"title": data["name"]})
        body = json.dumps(
            {**ORDER_EVENT, "type": "test.renamed", "messageversion": 1, "data": {"name": "n"}}
        )
        assert codec.decode(body).message == Renamed("n")

    def test_timestamp_is_the_constructors(self) -> None:
        """A decoded envelope's timestamp, read lazily, equals Envelope()'s to the ns."""
        for micro in range(0, 1_000_000, 99_991):
            at = datetime(2026, 5, 1, 9, 30, 1, micro, tzinfo=UTC)
            envelope = Envelope(Order(1, "a", []), message_id="m", timestamp=at)
            decoded = warm().decode(cold().encode(envelope))
            assert decoded._timestamp_ns == envelope._timestamp_ns
            assert decoded == envelope
            assert decoded.replace(attempt=2) == envelope.replace(attempt=2)
        decoded._timestamp_ns += 1000  # settable like any envelope's
        assert decoded.timestamp == envelope.timestamp + timedelta(microseconds=1)

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        changes=st.dictionaries(
            st.sampled_from([*ORDER_EVENT, "data.order_id", "data.skus", "headers", "x"]),
            json_values,
            max_size=3,
        )
    )
    def test_any_attribute_values(self, changes: dict[str, Any]) -> None:
        """Arbitrary JSON values in any attribute or data field: the same outcome."""
        event = {**ORDER_EVENT, "data": dict(ORDER_EVENT["data"])}
        for key, value in sorted(changes.items()):  # "data" before "data.x"
            if not key.startswith("data."):
                event[key] = value
            elif isinstance(event["data"], dict):
                event["data"][key.removeprefix("data.")] = value
        body = json.dumps(event)
        assert outcome(warm(), body) == outcome(cold(), body)
