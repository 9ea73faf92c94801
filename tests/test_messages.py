from __future__ import annotations

import attrs
import pytest

from messagebus import (
    Command,
    DuplicateMessageTypeError,
    Event,
    InvalidMessageTypeError,
    MessageRegistry,
    wire_name,
    wire_version,
)
from tests.messages import ChargeCard, PostPublished, PublishPost


class TestWireIdentity:
    """Each message type has a stable wire name and an integer version."""

    def test_explicit_name_and_default_version(self) -> None:
        """name= is the wire name; version defaults to 1."""
        assert wire_name(PublishPost) == "blog.post.publish"
        assert wire_version(PublishPost) == 1

    def test_explicit_version(self) -> None:
        """version= sets the wire version."""

        @attrs.frozen
        class PostPublishedV2(Event, name="blog.post.published", version=2):
            post_id: int

        assert (wire_name(PostPublishedV2), wire_version(PostPublishedV2)) == (
            "blog.post.published",
            2,
        )

    def test_renaming_the_class_keeps_the_wire_name(self) -> None:
        """The wire name is declared, not taken from the class name."""

        @attrs.frozen
        class ChargeCreditCard(Command[None], name="payments.card.charge"):
            amount: int

        assert wire_name(ChargeCreditCard) == wire_name(ChargeCard)

    def test_derived_name_rule(self) -> None:
        """Without name=, the wire name is '<module>.<qualified class name>'."""

        @attrs.frozen
        class ArchivePost(Command[None]):
            post_id: int

        assert wire_name(ArchivePost) == (
            f"{__name__}.TestWireIdentity.test_derived_name_rule.ArchivePost"
        )
        assert wire_version(ArchivePost) == 1

    def test_attrs_slotted_rebuild_keeps_declared_identity(self) -> None:
        """attrs rebuilds slotted classes; the declared name and version survive it."""

        @attrs.frozen
        class Thing(Event, name="things.happened", version=3):
            x: int

        assert (wire_name(Thing), wire_version(Thing)) == ("things.happened", 3)
        assert attrs.has(Thing)

    def test_subclass_does_not_inherit_the_parent_name(self) -> None:
        """A subclass is another type, so it gets its own (derived) name."""

        class Special(PostPublished):
            pass

        assert wire_name(Special) != wire_name(PostPublished)

    @pytest.mark.parametrize("name", ["", "has space", "trailing.", ".leading", "a..b", "é"])
    def test_bad_names_are_refused(self, name: str) -> None:
        """Names are dotted words of letters, digits, '_' and '-'."""
        with pytest.raises(InvalidMessageTypeError, match="wire name"):

            class Bad(Event, name=name):
                pass

    @pytest.mark.parametrize("version", [0, -1, True, "2"])
    def test_bad_versions_are_refused(self, version: object) -> None:
        """Versions are integers from 1 up."""
        with pytest.raises(InvalidMessageTypeError, match="version"):

            class Bad(Event, name="bad.version", version=version):  # type: ignore[arg-type]
                pass


class TestMessageRegistry:
    """The registry maps name+version to exactly one class."""

    def test_resolves_registered_types(self) -> None:
        """A registered type resolves by name and version; others do not."""
        registry = MessageRegistry()
        registry.add(PublishPost)
        registry.add(PostPublished)
        assert registry.resolve("blog.post.publish", 1) is PublishPost
        assert registry.resolve("blog.post.publish", 2) is None
        assert registry.resolve("os.system", 1) is None
        assert PublishPost in registry
        assert ChargeCard not in registry
        assert "blog.post.publish" not in registry
        assert list(registry) == [PublishPost, PostPublished]
        assert len(registry) == 2

    def test_adding_the_same_class_twice_is_harmless(self) -> None:
        """Registration is idempotent for one class."""
        registry = MessageRegistry()
        registry.add(PublishPost)
        registry.add(PublishPost)
        assert len(registry) == 1

    def test_two_classes_with_one_identity_are_refused(self) -> None:
        """A second class claiming a taken name+version is a configuration error."""

        @attrs.frozen
        class Impostor(Command[None], name="blog.post.publish"):
            title: str

        registry = MessageRegistry()
        registry.add(PublishPost)
        with pytest.raises(DuplicateMessageTypeError, match=r"blog\.post\.publish"):
            registry.add(Impostor)
        assert registry.resolve("blog.post.publish", 1) is PublishPost

    def test_non_message_types_are_refused(self) -> None:
        """Only Command and Event subclasses can be registered."""
        registry = MessageRegistry()
        with pytest.raises(InvalidMessageTypeError):
            registry.add(int)  # type: ignore[arg-type]
