"""Registration refuses message types the codec could never decode (unions of classes)."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest

from messagebus import Envelope, Event, InvalidMessageTypeError, MessageBus, MessageRegistry


@attrs.frozen
class Card:
    number: str


@attrs.frozen
class Transfer:
    iban: str


@attrs.frozen
class PaidByEither(Event, name="t.paid.either"):
    means: Card | Transfer


@attrs.frozen
class Wrapper:
    means: list[Card | Transfer | None]


@attrs.frozen
class PaidNested(Event, name="t.paid.nested"):
    wrapper: Wrapper


@attrs.frozen
class Means:
    kind: Literal["card", "transfer"]
    reference: str


@attrs.frozen
class PaidTagged(Event, name="t.paid.tagged"):
    means: Means | None
    note: str | int


class TestUnionsOfClasses:
    """A union of two attrs classes is refused when the type is registered."""

    def test_registry_refuses_with_the_field(self) -> None:
        """The typed error names the class, the field and what to do instead."""
        registry = MessageRegistry()
        with pytest.raises(InvalidMessageTypeError, match=r"PaidByEither\.means cannot be") as info:
            registry.add(PaidByEither)
        assert "Literal field" in str(info.value)
        assert PaidByEither not in registry

    def test_a_nested_union_names_the_outer_field(self) -> None:
        """The union inside a nested class (in a list) is found through the field holding it."""
        with pytest.raises(InvalidMessageTypeError, match=r"PaidNested\.wrapper cannot be"):
            MessageRegistry().add(PaidNested)

    @pytest.mark.anyio
    async def test_the_bus_refuses_at_subscription(self) -> None:
        """Subscribing a handler to such a type fails at once, not on the first body."""
        bus = MessageBus()

        async def on_paid(event: PaidByEither) -> None:
            raise AssertionError("never registered")

        with pytest.raises(InvalidMessageTypeError):
            bus.subscriber(PaidByEither)(on_paid)
        with pytest.raises(InvalidMessageTypeError):
            bus.declare(PaidByEither)

    def test_decodable_unions_pass(self) -> None:
        """One class or None, and unions of JSON types, register and round-trip."""
        bus = MessageBus()
        bus.declare(PaidTagged)
        envelope = Envelope(PaidTagged(Means("card", "4242"), 7))
        assert bus.codec.decode(bus.codec.encode(envelope)).message == envelope.message

    def test_unresolved_annotations_are_left_to_the_codec(self) -> None:
        """A type whose annotations do not resolve yet still registers (as before)."""

        @attrs.frozen
        class Later(Event, name="t.later"):
            value: NotDefinedYet  # type: ignore[name-defined]  # noqa: F821

        registry = MessageRegistry()
        registry.add(Later)
        assert Later in registry
