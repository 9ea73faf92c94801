from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from messagebus import Command, Event, InvalidMessageTypeError, Message, MessageRegistry
from messagebus._schema import breaking_changes, export_schemas
from tests.conftest import Cli
from tests.messages import ChargeCard, PostPublished


@attrs.frozen
class Money:
    cents: int
    currency: str


@attrs.frozen
class Price:
    cents: int


def export(*message_types: type[Message]) -> dict[str, object]:
    registry = MessageRegistry()
    for message_type in message_types:
        registry.add(message_type)
    return export_schemas(registry)


class TestExport:
    """Every registered type, by wire name and version, with its kind and schema."""

    def test_layout(self) -> None:
        """Types are keyed by name then version; nested types land in $defs."""

        @attrs.frozen
        class Invoice(Command[None], name="billing.invoice.send", version=2):
            total: Money
            note: str | None = None

        document = export(Invoice, PostPublished)
        assert document["format"] == 1
        types = document["types"]
        assert isinstance(types, dict)
        invoice = types["billing.invoice.send"]["2"]
        assert invoice["kind"] == "command"
        assert invoice["schema"]["required"] == ["total"]
        assert invoice["schema"]["properties"]["total"] == {"$ref": "#/$defs/Money"}
        assert "Money" in document["$defs"]  # type: ignore[operator]
        assert types["blog.post.published"]["1"]["kind"] == "event"
        json.dumps(document)  # it is plain JSON

    def test_unresolvable_annotations_are_a_typed_error(self) -> None:
        """A field type that cannot be found says so, as a configuration error."""

        @attrs.frozen
        class Local:
            x: int

        @attrs.frozen
        class Uses(Event, name="t.uses"):
            local: Local

        with pytest.raises(InvalidMessageTypeError, match="Local"):
            export(Uses)


class TestBreakingChanges:
    """The usual contract rules, one test each."""

    def test_no_change(self) -> None:
        """The same types: nothing breaks."""
        assert breaking_changes(export(ChargeCard), export(ChargeCard)) == []

    def test_removed_or_renamed_type_breaks(self) -> None:
        """A wire name (or version) that disappeared breaks."""

        @attrs.frozen
        class Charge(Command[None], name="payments.card.charged"):
            amount: int

        assert breaking_changes(export(ChargeCard), export(Charge)) == [
            "payments.card.charge v1: the type is gone (removed or renamed)"
        ]

    def test_removed_required_field_breaks(self) -> None:
        """Consumers relying on a required field break when it goes."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            a: int
            b: int

        @attrs.frozen
        class After(Event, name="t.changed"):
            a: int

        assert breaking_changes(export(Before), export(After)) == [
            "t.changed v1: required field 'b' was removed"
        ]

    def test_retyped_field_breaks(self) -> None:
        """A field whose type changes breaks."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            a: int

        @attrs.frozen
        class After(Event, name="t.changed"):
            a: str

        assert breaking_changes(export(Before), export(After)) == [
            "t.changed v1: field 'a' changed type"
        ]

    def test_retyped_nested_field_breaks(self) -> None:
        """A change inside a nested type is a change of the field holding it."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            price: Money

        @attrs.frozen
        class After(Event, name="t.changed"):
            price: Price

        assert breaking_changes(export(Before), export(After)) == [
            "t.changed v1: field 'price' changed type"
        ]

    def test_new_required_field_breaks(self) -> None:
        """Messages written before it lack a new required field."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            a: int

        @attrs.frozen
        class After(Event, name="t.changed"):
            a: int
            b: int

        assert breaking_changes(export(Before), export(After)) == [
            "t.changed v1: new required field 'b'"
        ]

    def test_optional_changes_and_new_types_do_not_break(self) -> None:
        """Adding or removing an optional field, or adding a type, is compatible."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            a: int
            old: str | None = None

        @attrs.frozen
        class After(Event, name="t.changed"):
            a: int
            new: str = "default"

        assert breaking_changes(export(Before), export(After, ChargeCard)) == []

    def test_default_changes_do_not_break(self) -> None:
        """A new default value is not a new contract."""

        @attrs.frozen
        class Before(Event, name="t.changed"):
            a: int = 1

        @attrs.frozen
        class After(Event, name="t.changed"):
            a: int = 2

        assert breaking_changes(export(Before), export(After)) == []

    def test_not_an_export(self) -> None:
        """Anything but an export of this format is refused."""
        with pytest.raises(ValueError, match="not a messagebus schema export"):
            breaking_changes({"types": {}}, export(ChargeCard))


class TestSchemaCommand:
    """`messagebus schema`: print, write, check."""

    def test_print_write_and_check(self, cli: Cli, tmp_path: Path) -> None:
        """The export prints, writes to a file, and checks clean against itself."""
        status, out, _ = cli("schema", "--app", "tests.cli_app:bus")
        assert status == 0
        assert "blog.post.published" in json.loads(out)["types"]
        saved = tmp_path / "contracts.json"
        status, out, _ = cli("schema", "--app", "tests.cli_app:bus", "--output", str(saved))
        assert (status, out.strip()) == (0, f"wrote 1 type(s) to {saved}")
        status, out, _ = cli("schema", "--app", "tests.cli_app:bus", "--check", str(saved))
        assert (status, out.strip()) == (0, f"no breaking changes against {saved}")

    def test_check_fails_on_a_break(self, cli: Cli, tmp_path: Path) -> None:
        """A saved contract the app no longer meets exits 1, listing the breaks."""
        saved = tmp_path / "contracts.json"
        saved.write_text(json.dumps(export(ChargeCard, PostPublished)))
        status, out, err = cli("schema", "--app", "tests.cli_app:bus", "--check", str(saved))
        assert status == 1
        assert (
            out.strip()
            == "breaking: payments.card.charge v1: the type is gone (removed or renamed)"
        )
        assert "1 breaking change(s)" in err

    def test_check_refuses_other_files(self, cli: Cli, tmp_path: Path) -> None:
        """A file that is not an export is a one-line error."""
        saved = tmp_path / "other.json"
        saved.write_text("{}")
        status, _, err = cli("schema", "--app", "tests.cli_app:bus", "--check", str(saved))
        assert status == 1
        assert "not a messagebus schema export" in err
