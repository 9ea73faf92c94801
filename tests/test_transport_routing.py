"""The routing table: where a service's commands and events go, and what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from messagebus import ConfigurationError, Envelope, NoHandlerError
from messagebus._errors import ArgumentTypeError, InvalidArgumentError
from messagebus.transports import Destination, QueueSpec, Router, TopicSpec, topic_name
from tests.messages import IndexPost, PostPublished, PublishPost


class TestDestination:
    """One Destination type: the router's answer and the outbox's column."""

    def test_constructors_and_kinds(self) -> None:
        """queue(), topic() and local() name the kind; another kind is refused."""
        assert Destination.queue("blog") == Destination("queue", "blog")
        assert Destination.topic("t") == Destination("topic", "t")
        assert Destination.local() == Destination("local", "")
        with pytest.raises(ValueError, match="kind"):
            Destination("mailbox", "x")  # type: ignore[arg-type]


class TestRouterDestination:
    """Router.destination: events to their topic, commands to their owner's queue."""

    def test_an_event_goes_to_its_topic(self) -> None:
        """An event's destination is its type's topic, wherever it is handled."""
        router = Router("blog", {})
        destination = router.destination(Envelope(PostPublished(1, "hi")), local=False)
        assert destination == Destination.topic(topic_name(PostPublished))
        assert destination.name == "blog-post-published"

    def test_a_command_goes_to_its_owners_queue(self) -> None:
        """Handled here: this service's queue; routed: the owner's queue."""
        router = Router("blog", {IndexPost: "search"})
        here = router.destination(Envelope(PublishPost("hi")), local=True)
        there = router.destination(Envelope(IndexPost(1)), local=False)
        assert (here, there) == (Destination.queue("blog"), Destination.queue("search"))

    def test_an_unroutable_command_is_a_no_handler_error(self) -> None:
        """A command neither handled here nor routed has nowhere to go: NoHandlerError."""
        router = Router("blog", {})
        with pytest.raises(NoHandlerError, match=r"'blog\.post\.publish'.*'blog'"):
            router.destination(Envelope(PublishPost("hi")), local=False)


class TestRouterConfiguration:
    """A routing table that cannot work is refused at construction, with typed errors."""

    @pytest.mark.parametrize(
        ("arguments", "match"),
        [
            ({"service": "blog service"}, "service must be"),
            ({"service": "x" * 65}, "service must be"),
            ({"service": "blog", "queue": QueueSpec("other")}, "named after the service"),
        ],
    )
    def test_a_bad_service_name(self, arguments: dict[str, Any], match: str) -> None:
        """A name that cannot name the queue: a ConfigurationError, also a ValueError."""
        with pytest.raises(InvalidArgumentError, match=match) as caught:
            Router(routes={}, **arguments)
        assert isinstance(caught.value, ConfigurationError)
        assert isinstance(caught.value, ValueError)

    def test_a_route_for_a_non_command(self) -> None:
        """Routes take Command types: a ConfigurationError, also a TypeError."""
        with pytest.raises(ArgumentTypeError, match="routes map Command types") as caught:
            Router("blog", {PostPublished: "search"})  # type: ignore[dict-item]
        assert isinstance(caught.value, ConfigurationError)
        assert isinstance(caught.value, TypeError)


class TestRouterTopology:
    """What a service needs provisioned, topics carrying their wire types."""

    def test_topics_carry_their_wire_types_but_compare_by_name(self) -> None:
        """EventBridge rules match wire types; specs still compare by name and kind."""
        topology = Router("blog", {}).topology(subscribed=[PostPublished], published=[])
        (topic,) = topology.topics
        assert topic.name == "blog-post-published"
        assert topic.message_types == ("blog.post.published",)
        assert topic == TopicSpec("blog-post-published")
