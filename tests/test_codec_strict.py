"""The strict wire contract: what each field type travels as, and what is refused."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import attrs
import pytest
from cattrs.preconf.json import make_converter

from messagebus import (
    DecodeError,
    EncodeError,
    Envelope,
    Event,
    MessageRegistry,
    WireCodec,
)
from messagebus._errors import InvalidArgumentError
from tests.messages import ChargeCard


class Size(enum.Enum):
    S = "s"
    L = "l"


@attrs.frozen
class Line:
    sku: str
    price: Decimal


@attrs.frozen
class Everything(Event, name="test.everything"):
    order_id: uuid.UUID
    total: Decimal
    at: datetime
    day: date
    opens: time
    wait: timedelta
    blob: bytes
    size: Size
    mode: Literal["a", "b"]
    note: str | None
    either: int | str
    lines: list[Line]
    pair: tuple[int, str]
    tags: set[str]
    frozen: frozenset[int]
    by_name: dict[str, Line]
    ratio: float = 0.5


@attrs.frozen
class Order(Event, name="test.order"):
    order_id: int
    customer: str
    express: bool
    skus: list[str]
    counts: list[int] = attrs.field(factory=list)


@attrs.frozen
class Priced(Event, name="test.priced"):
    price: Decimal
    at: datetime | None = None
    ratio: float = 0.0


class Money:
    """A custom type: not attrs, not known to msgspec."""

    def __init__(self, text: str) -> None:
        if not text.startswith("EUR "):
            raise ValueError(f"not money: {text!r}")
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]


@attrs.frozen
class Paid(Event, name="test.paid"):
    amount: Money


def codec(*types: type[Any]) -> WireCodec:
    registry = MessageRegistry()
    for message_type in types or (Everything, Order, Priced, ChargeCard):
        registry.add(message_type)
    return WireCodec(registry, source="/test")


EVERYTHING = Everything(
    order_id=uuid.UUID("0193b1c4-1d2e-7f00-8a00-0000000000ff"),
    total=Decimal("10.50"),
    at=datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=-5))),
    day=date(2026, 3, 1),
    opens=time(9, 30),
    wait=timedelta(minutes=90, microseconds=3),
    blob=b"\x00\xffhi",
    size=Size.L,
    mode="b",
    note=None,
    either="x",
    lines=[Line("a", Decimal("1.25")), Line("b", Decimal("-0.5E+3"))],
    pair=(1, "a"),
    tags={"x", "y"},
    frozen=frozenset({3}),
    by_name={"a": Line("a", Decimal("1"))},
)


def body(message: Any, **data: Any) -> dict[str, Any]:
    event = codec().to_dict(Envelope(message))
    event["data"].update(data)
    return event


class TestFieldTypes:
    """Each supported type round-trips exactly, in the documented JSON form."""

    def test_round_trip(self) -> None:
        """Every field of a message with every supported type comes back equal."""
        wire = codec()
        envelope = Envelope(EVERYTHING, headers={"k": "v"})
        assert wire.decode(wire.encode(envelope)) == envelope

    def test_json_forms(self) -> None:
        """UUID as text, Decimal as a string, offsets kept, bytes as base64, ISO durations."""
        data = codec().to_dict(Envelope(EVERYTHING))["data"]
        assert data["order_id"] == "0193b1c4-1d2e-7f00-8a00-0000000000ff"
        assert data["total"] == "10.50"
        assert data["at"] == "2026-03-01T12:00:00.000005-05:00"
        assert (data["day"], data["opens"], data["wait"]) == (
            "2026-03-01",
            "09:30:00",
            "PT5400.000003S",
        )
        assert data["blob"] == "AP9oaQ=="
        assert (data["size"], data["mode"], data["either"]) == ("l", "b", "x")
        assert data["lines"][1] == {"sku": "b", "price": "-5E+2"}
        assert sorted(data["tags"]) == ["x", "y"]

    def test_envelope_bytes_unchanged(self) -> None:
        """The envelope's text is what the previous codec wrote (time with +00:00)."""
        envelope = Envelope(ChargeCard(5), timestamp=datetime(2026, 1, 1, tzinfo=UTC))
        text = codec().encode(envelope).decode()
        assert '"time":"2026-01-01T00:00:00+00:00"' in text
        assert text.startswith('{"specversion":"1.0","id":')


class TestNoCoercion:
    """A value of the wrong JSON type is refused with its path, never converted."""

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            ({"express": "false"}, r"data\.express: expected bool, got str"),
            ({"customer": None}, r"data\.customer: expected str, got null"),
            ({"order_id": 4.9}, r"data\.order_id: expected int, got float"),
            ({"skus": "abc"}, r"data\.skus: expected array, got str"),
            ({"skus": {"a-1": 1}}, r"data\.skus: expected array, got object"),
            ({"skus": ["a", 1]}, r"data\.skus\[1\]: expected str, got int"),
            ({"order_id": True}, r"data\.order_id: expected int, got bool"),
            ({"counts": [1, "2"]}, r"data\.counts\[1\]: expected int, got str"),
        ],
    )
    def test_issue_cases(self, data: dict[str, Any], reason: str) -> None:
        """Each coercion cattrs made silently is now a DecodeError naming the field."""
        event = body(Order(1, "ada", True, ["a"]), **data)
        with pytest.raises(DecodeError, match=reason):
            codec().from_dict(event)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            ({"price": 10.5}, r"data\.price: expected a decimal as a JSON string, got a number"),
            ({"price": "NaN"}, r"data\.price: 'NaN' is not a finite decimal"),
            ({"price": "1e5x"}, r"data\.price"),
            ({"at": "2026-01-01T00:00:00"}, r"data\.at: expected an RFC 3339 date-time with a UTC"),
        ],
    )
    def test_decimals_datetimes_floats(self, data: dict[str, Any], reason: str) -> None:
        """Decimals only as finite decimal strings; datetimes only with an offset."""
        event = body(Priced(Decimal(1)), **data)
        with pytest.raises(DecodeError, match=reason):
            codec().from_dict(event)

    def test_float_out_of_range(self) -> None:
        """A number too large for a float is refused, not read as Infinity."""
        text = codec().encode(Envelope(Priced(Decimal(1), ratio=2.5))).decode()
        with pytest.raises(DecodeError, match=r"data\.ratio: number out of range"):
            codec().decode(text.replace('"ratio":2.5', '"ratio":1e999'))

    def test_nested_paths(self) -> None:
        """A failure deep inside names the whole path."""
        event = codec().to_dict(Envelope(EVERYTHING))
        event["data"]["lines"][1]["price"] = 3
        with pytest.raises(DecodeError, match=r"data\.lines\[1\]\.price: expected a decimal"):
            codec().from_dict(event)


class TestEncodeRefusals:
    """What JSON cannot carry is refused at encode, with the field, as EncodeError."""

    @pytest.mark.parametrize(
        ("message", "reason"),
        [
            (Priced(Decimal(1), ratio=float("nan")), r"data\.ratio: NaN and Infinity"),
            (Priced(Decimal(1), ratio=float("-inf")), r"data\.ratio: NaN and Infinity"),
            (Priced(Decimal("NaN")), r"data\.price: a Decimal NaN"),
            (Priced(Decimal("Infinity")), r"data\.price: a Decimal NaN"),
            (Priced(Decimal(1), at=datetime(2026, 1, 1)), r"data\.at: a datetime without a UTC"),
        ],
    )
    def test_refused(self, message: Any, reason: str) -> None:
        """NaN, Infinity and naive datetimes never reach the wire."""
        with pytest.raises(EncodeError, match=reason):
            codec().encode(Envelope(message))

    def test_nested_naive_datetime(self) -> None:
        """A naive datetime inside a list of classes is found too, by path."""

        @attrs.frozen
        class Deep(Event, name="test.deep"):
            rows: list[dict[str, datetime]]

        with pytest.raises(EncodeError, match=r"data\.rows\[0\]\['k'\]: a datetime"):
            codec(Deep).encode(Envelope(Deep([{"k": datetime(2026, 1, 1)}])))

    def test_empty_id(self) -> None:
        """An envelope whose id is empty is refused: no reader would accept it."""
        with pytest.raises(EncodeError, match="id: a message id must not be empty"):
            codec().encode(Envelope(ChargeCard(1), message_id=""))

    def test_unsupported_union_is_an_encode_error(self) -> None:
        """A type msgspec cannot describe (a union of two classes) fails typed, both ways."""

        @attrs.frozen
        class A:
            a: int

        @attrs.frozen
        class B:
            b: int

        @attrs.frozen
        class Either(Event, name="test.either"):
            value: A | B

        wire = codec(Either)
        with pytest.raises(EncodeError, match="Either"):
            wire.encode(Envelope(Either(A(1))))
        event = {**codec().to_dict(Envelope(ChargeCard(1))), "type": "test.either"}
        with pytest.raises(DecodeError, match="cannot be decoded"):
            wire.from_dict(event)


class TestEnvelopeValidation:
    """CloudEvents 1.0 attributes are checked, each failure naming the attribute."""

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"id": None}, "id: expected str, got null"),
            ({"id": ""}, "id: expected str of length >= 1"),
            ({"id": 5}, "id: expected str, got int"),
            ({"source": ""}, "source: expected str of length >= 1"),
            ({"specversion": "1.1"}, "specversion: invalid enum value"),
            ({"time": "2026-01-01T00:00:00"}, "time: expected datetime with a timezone"),
            ({"attempt": 0}, "attempt: expected int >= 1"),
            ({"attempt": "2"}, "attempt: expected int, got str"),
            ({"datacontenttype": "text/xml"}, "datacontenttype: expected application/json"),
            ({"Bad-Name": 1}, "'Bad-Name': a CloudEvents attribute name"),
        ],
    )
    def test_refusals(self, changes: dict[str, Any], reason: str) -> None:
        """Each invalid attribute is a DecodeError naming it."""
        event = {**codec().to_dict(Envelope(ChargeCard(5))), **changes}
        with pytest.raises(DecodeError, match=reason):
            codec().from_dict(event)

    def test_other_extensions_are_read_past(self) -> None:
        """Well-named extension attributes of other producers are allowed and ignored."""
        envelope = Envelope(ChargeCard(5))
        event = {**codec().to_dict(envelope), "traceparent": "00-ab", "partitionkey": 3}
        assert codec().from_dict(event) == envelope

    def test_any_offset_is_accepted(self) -> None:
        """A time with any offset (or Z) is the same instant."""
        envelope = Envelope(ChargeCard(5), timestamp=datetime(2026, 1, 1, tzinfo=UTC))
        event = {**codec().to_dict(envelope), "time": "2026-01-01T02:00:00+02:00"}
        assert codec().from_dict(event) == envelope


class TestHostileBodies:
    """No body makes decode raise anything but DecodeError."""

    @pytest.mark.parametrize(
        "raw",
        [
            b"[" * 100_000,
            b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b"{" + b'"a":{' * 50_000,
            b'{"specversion": NaN}',
            b'{"attempt": 1e99999}',
            b"\xc3\x28",
            b'{"id": "\xff"}',
            b"",
            b"null",
            b'"just a string"',
            b'{"id": "\\ud800"}',
        ],
    )
    def test_envelopes(self, raw: bytes) -> None:
        """Deep nesting, NaN literals, huge numbers, invalid UTF-8: DecodeError."""
        with pytest.raises(DecodeError):
            codec().decode(raw)

    def test_deep_data(self) -> None:
        """Nesting inside data, of a registered type, is a DecodeError too."""
        text = json.dumps({**codec().to_dict(Envelope(ChargeCard(5))), "data": {}})
        deep = text.replace('"data":{}', '"data":' + "[" * 100_000 + "]" * 100_000)
        with pytest.raises(DecodeError):
            codec().decode(deep)

    def test_huge_int_and_big_string(self) -> None:
        """A 400-digit int for an int field decodes (Python ints); a 1 MiB string too."""
        event = body(Order(1, "x", True, []), order_id=10**400, customer="x" * 2**20)
        message = codec().from_dict(event).message
        assert isinstance(message, Order)
        assert (message.order_id, len(message.customer)) == (10**400, 2**20)

    def test_duplicate_keys(self) -> None:
        """Duplicate keys are not an exception: the last one wins (as in most parsers)."""
        text = codec().encode(Envelope(ChargeCard(5))).decode()
        twice = text.replace('"amount":5', '"amount":5,"amount":6')
        assert codec().decode(twice).message == ChargeCard(6)

    @pytest.mark.parametrize("headers", ["{", '{"a": {"b": 1}}', "[" * 100_000, "\\ud800"])
    def test_bad_headers(self, headers: str) -> None:
        """A headers attribute that is not a JSON object of strings is a DecodeError."""
        event = {**codec().to_dict(Envelope(ChargeCard(5))), "headers": headers}
        with pytest.raises(DecodeError, match="headers"):
            codec().decode(json.dumps(event))

    def test_a_validator_that_raises_anything(self) -> None:
        """A user's attrs validator raising any exception makes a DecodeError."""

        def refuse(instance: Any, attribute: Any, value: int) -> None:
            if value < 0:
                raise LookupError("negative")

        @attrs.frozen
        class Checked(Event, name="test.checked"):
            n: int = attrs.field(validator=refuse)

        wire = codec(Checked)
        event = {**wire.to_dict(Envelope(Checked(1))), "data": {"n": -1}}
        with pytest.raises(DecodeError, match="negative"):
            wire.from_dict(event)


class TestCustomTypes:
    """add_type(): the one place for types the codec does not know."""

    def custom(self) -> WireCodec:
        wire = codec(Paid)
        wire.add_type(Money, encode=lambda m: m.text, decode=Money, schema={"type": "string"})
        return wire

    def test_round_trip(self) -> None:
        """A registered type travels in the form its hooks give."""
        wire = self.custom()
        envelope = Envelope(Paid(Money("EUR 5.00")))
        assert wire.to_dict(envelope)["data"] == {"amount": "EUR 5.00"}
        assert wire.decode(wire.encode(envelope)) == envelope

    def test_hook_refusal_names_the_field(self) -> None:
        """A decode hook's ValueError is a DecodeError at the field's path."""
        wire = self.custom()
        event = {**wire.to_dict(Envelope(Paid(Money("EUR 1")))), "data": {"amount": "USD 1"}}
        with pytest.raises(DecodeError, match=r"data\.amount: not money"):
            wire.from_dict(event)

    def test_without_hooks(self) -> None:
        """An unknown type is an EncodeError that points at add_type."""
        with pytest.raises(EncodeError, match="add_type"):
            codec(Paid).encode(Envelope(Paid(Money("EUR 1"))))

    def test_added_once(self) -> None:
        """A type gets its hooks once; only classes take hooks."""
        wire = self.custom()
        with pytest.raises(InvalidArgumentError, match="already"):
            wire.add_type(Money, encode=str, decode=Money)
        with pytest.raises(InvalidArgumentError, match="class"):
            wire.add_type("Money", encode=str, decode=Money)  # type: ignore[arg-type]
        assert list(wire.custom_types) == [Money]


class TestCattrsOptIn:
    """converter=: cattrs' data rules, chosen explicitly, around the same envelope."""

    def test_reads_and_writes_as_before(self) -> None:
        """bytes as base85 and naive datetimes, as the previous codec did."""

        @attrs.frozen
        class Old(Event, name="test.old"):
            blob: bytes
            at: datetime

        registry = MessageRegistry()
        registry.add(Old)
        wire = WireCodec(registry, converter=make_converter())
        envelope = Envelope(Old(b"\x00\xffhi", datetime(2026, 1, 1)))
        assert wire.to_dict(envelope)["data"] == {"blob": "0RL!d", "at": "2026-01-01T00:00:00"}
        assert wire.decode(wire.encode(envelope)) == envelope

    def test_still_refuses_nan_and_bad_envelopes(self) -> None:
        """NaN is refused whatever the converter; the envelope is checked the same way."""
        wire = WireCodec(codec().registry, converter=make_converter())
        with pytest.raises(EncodeError, match=r"data\['ratio'\]: NaN"):
            wire.encode(Envelope(Priced(Decimal(1), ratio=float("nan"))))
        with pytest.raises(DecodeError, match="id"):
            wire.from_dict({**wire.to_dict(Envelope(ChargeCard(1))), "id": ""})
        with pytest.raises(DecodeError, match="does not fit"):
            wire.from_dict({**wire.to_dict(Envelope(ChargeCard(1))), "data": {"x": 1}})

    def test_a_failing_hook(self) -> None:
        """A converter that cannot unstructure a message raises EncodeError."""
        converter = make_converter()

        def boom(value: object) -> object:
            raise RuntimeError("no")

        converter.register_unstructure_hook(ChargeCard, boom)
        with pytest.raises(EncodeError, match="no"):
            WireCodec(codec().registry, converter=converter).encode(Envelope(ChargeCard(1)))


def test_source_must_be_given() -> None:
    """An empty source would make every body invalid CloudEvents."""
    with pytest.raises(InvalidArgumentError, match="source"):
        WireCodec(MessageRegistry(), source="")
