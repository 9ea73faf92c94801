"""Message types and values of the golden bodies in ``tests/golden/`` (see its README).

The bodies were written by the codec of 0.1.0.dev0 before the strict codec (kept frozen
as ``benchmarks/old_codec.py``); the values here are what each body must decode to.
Never change a value or a type here without writing its body again with that codec.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Literal

import attrs

from messagebus import Envelope, Event, Message


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class Scalars(Event, name="golden.scalars"):
    text: str
    count: int
    ratio: float
    flag: bool
    nothing: str | None
    unicode: str


@attrs.frozen
class Times(Event, name="golden.times"):
    at_utc: datetime
    at_offset: datetime
    day: date


@attrs.frozen
class Choices(Event, name="golden.choices"):
    colour: Colour
    priority: Priority
    mode: Literal["fast", "slow"]
    either: int | str
    other: int | str
    maybe: int | None = None


@attrs.frozen
class Collections(Event, name="golden.collections", version=2):
    numbers: list[int]
    pair: tuple[int, str]
    many: tuple[int, ...]
    tags: set[str]
    frozen: frozenset[int]
    scores: dict[str, float]


@attrs.frozen
class Order(Event, name="golden.order"):
    lines: list[Line]
    first: Line
    gift: Line | None
    by_sku: dict[str, Line]


@attrs.frozen
class Blob(Event, name="golden.blob"):
    payload: bytes


@attrs.frozen
class Naive(Event, name="golden.naive"):
    at: datetime


GOLDEN_TYPES: tuple[type[Message], ...] = (
    Scalars,
    Times,
    Choices,
    Collections,
    Order,
    Blob,
    Naive,
)

_PARENT_ID = "01933b6e-5d2a-7c3e-8f00-000000000001"

MESSAGES: dict[str, Message] = {
    "scalars": Scalars("hello", -42, 0.25, True, None, 'ünïcødé ✓ "quoted"\n'),
    "times": Times(
        datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC),
        datetime(2026, 11, 26, 11, 30, tzinfo=timezone(timedelta(hours=2))),
        date(2026, 2, 28),
    ),
    "choices": Choices(Colour.GREEN, Priority.HIGH, "slow", 7, "seven", maybe=3),
    "collections": Collections(
        [3, 1, 2], (1, "a"), (4, 5, 6), {"x"}, frozenset({9}), {"math": 0.5, "art": 1.0}
    ),
    "order": Order(
        [Line("a-1", 2), Line("b-2", 1)],
        Line("c-3", 5),
        None,
        {"a-1": Line("a-1", 2)},
    ),
    # "0RL!d" in base85: not base64 (a "!"), so the strict codec refuses it. Not every
    # base85 text is invalid base64 (b"\x00\xff~" is "0RMg"): hence no guessing.
    "blob": Blob(b"\x00\xffhi"),
    "naive": Naive(datetime(2026, 1, 2, 3, 4, 5)),
}
"""What each ``tests/golden/v0/<name>.json`` decodes to (its ``data``)."""


def golden_envelope(message: Message) -> Envelope[Message]:
    """The envelope every golden body was written with: every attribute set."""
    return Envelope(
        message,
        message_id="01933b6e-5d2a-7c3e-8f00-0000000000aa",
        correlation_id=_PARENT_ID,
        causation_id=_PARENT_ID,
        timestamp=datetime(2026, 11, 26, 9, 30, 0, 250000, tzinfo=UTC),
        headers={"tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00"},
        idempotency_key="order-7",
        group_key="customer-3",
        attempt=2,
    )
