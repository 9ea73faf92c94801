"""The exported schemas and the codec agree, both ways (property-based)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC
from decimal import Decimal
from typing import Any

import attrs
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messagebus import DecodeError, Envelope, Message, MessageRegistry, WireCodec
from messagebus._schema import DIALECT, export_schemas, message_schema
from tests.test_codec_strict import Everything, Line, Money, Order, Paid, Priced

_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def is_date_time(value: object) -> bool:
    return not isinstance(value, str) or _DATE_TIME.match(value) is not None


@FORMATS.checks("uuid", raises=ValueError)
def is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


def wire() -> WireCodec:
    registry = MessageRegistry()
    for message_type in (Everything, Order, Priced, Paid):
        registry.add(message_type)
    codec = WireCodec(registry)
    codec.add_type(Money, encode=lambda m: m.text, decode=Money, schema={"type": "string"})
    return codec


CODEC = wire()
EXPORT = export_schemas(CODEC.registry, CODEC.custom_types)


def validator(message_type: type[Message]) -> jsonschema.Draft202012Validator:
    schema = message_schema(EXPORT, message_type.__message_name__, message_type.__message_version__)
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


for resolved in (Everything, Line, Order, Priced, Paid):
    attrs.resolve_types(resolved)  # string annotations, for st.builds to read

decimals = st.decimals(allow_nan=False, allow_infinity=False)
aware = st.datetimes(timezones=st.just(UTC))
finite = st.floats(allow_nan=False, allow_infinity=False)
lines = st.builds(Line, price=decimals)
messages = st.one_of(
    st.builds(
        Everything,
        total=decimals,
        at=aware,
        lines=st.lists(lines, max_size=3),
        by_name=st.dictionaries(st.text(max_size=5), lines, max_size=2),
        ratio=finite,
    ),
    st.builds(Order),
    st.builds(Priced, price=decimals, at=st.none() | aware, ratio=finite),
    st.builds(Paid, amount=st.text().map(lambda text: Money(f"EUR {text}"))),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | finite
    | st.text(max_size=8)
    | st.sampled_from(["1.5", "NaN", "2026-01-01T00:00:00", "2026-01-01T00:00:00Z", "AP9o"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,  # no timing limit: a loaded 2-core machine must not fail it
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestSchemaAgreesWithCodec:
    """Every encoded instance validates; what the schema rejects, the decoder rejects."""

    def test_export_declares_its_dialect(self) -> None:
        """The export and each standalone schema name JSON Schema 2020-12."""
        assert EXPORT["$schema"] == DIALECT
        schema = message_schema(EXPORT, "test.everything", 1)
        jsonschema.Draft202012Validator.check_schema(schema)
        properties = EXPORT["$defs"]["Everything"]["properties"]
        assert properties["at"] == {"type": "string", "format": "date-time"}
        assert properties["order_id"] == {"type": "string", "format": "uuid"}
        assert properties["total"]["type"] == "string"
        assert "pattern" in properties["total"]
        assert properties["blob"] == {"type": "string", "contentEncoding": "base64"}

    @SETTINGS
    @given(message=messages)
    def test_encoded_instances_validate(self, message: Message) -> None:
        """Whatever the codec writes, the schema of its type accepts."""
        data = json.loads(CODEC.encode(Envelope(message)))["data"]
        validator(type(message)).validate(data)

    @SETTINGS
    @given(message=messages, field=st.integers(min_value=0), value=json_values)
    def test_rejected_payloads_are_refused(self, message: Message, field: int, value: Any) -> None:
        """One field replaced by any JSON value: if the schema says no, so does decode."""
        event = CODEC.to_dict(Envelope(message))
        names = sorted(event["data"])
        event["data"][names[field % len(names)]] = value
        if validator(type(message)).is_valid(event["data"]):
            return
        with pytest.raises(DecodeError):
            CODEC.from_dict(event)

    def test_decimal_pattern_matches_the_decoder(self) -> None:
        """A number, NaN or garbage for a Decimal: the schema and decoder both refuse."""
        for value in (1.5, "NaN", "1e", "Infinity"):
            event = CODEC.to_dict(Envelope(Priced(Decimal(1))))
            event["data"]["price"] = value
            assert not validator(Priced).is_valid(event["data"])
            with pytest.raises(DecodeError):
                CODEC.from_dict(event)
