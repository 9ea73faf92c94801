"""Where messages go on a transport: commands to their owner's queue, events to a topic.

The rules, which every service of a system must share to find each other:

- Each service (one :class:`~messagebus.MessageBus` with ``service="blog"``) has one
  input queue, named after the service. It receives the commands the service handles
  and a copy of every event type it subscribes to.
- A command goes to the queue of the service that owns it: this service's own queue if
  it registered the handler, else the queue named for the command type in ``routes``.
  A command with neither has nowhere to go (:class:`~messagebus.NoHandlerError`).
- An event goes to its type's topic, named after its wire name with every character
  outside ``[A-Za-z0-9_-]`` replaced by ``-`` (``blog.post.published`` ->
  ``blog-post-published``); every version of a type shares the topic, and consumers
  upcast old versions on decode. Each subscribing service's queue is subscribed to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Command, Event, Message
from messagebus.transports._protocol import (
    Outgoing,
    QueueSpec,
    Subscription,
    TopicSpec,
    Topology,
)

__all__ = ["Destination", "Router", "topic_name"]

Destination = tuple[Literal["queue", "topic"], str]
"""``("queue", name)`` or ``("topic", name)``."""

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def topic_name(message_type: type[Message]) -> str:
    """Return the topic of an event type: its wire name with ``.`` (and the like) as ``-``."""
    return _NOT_IN_NAME.sub("-", message_type.__message_name__)


class Router:
    """The routing table of one service; see the module for the rules.

    Args:
        service: this service's name, which is also its input queue's name (letters,
            digits, ``-`` and ``_``, at most 64).
        routes: the owning service (queue) of command types handled elsewhere.
        queue: the settings of this service's input queue (its name is ``service``).
    """

    def __init__(
        self,
        service: str,
        routes: Mapping[type[Command[Any]], str],
        queue: QueueSpec | None = None,
    ) -> None:
        if not _SERVICE_NAME.fullmatch(service):
            raise ValueError(
                f"service must be 1-64 letters, digits, '-' or '_' (it names a queue): {service!r}"
            )
        self.service = service
        self.queue = QueueSpec(service) if queue is None else queue
        if self.queue.name != service:
            raise ValueError(f"the input queue is named after the service: {service!r}")
        self._routes: dict[type[Message], str] = {}
        for command_type, owner in routes.items():
            if not (isinstance(command_type, type) and issubclass(command_type, Command)):
                raise TypeError(f"routes map Command types to queues, not {command_type!r}")
            self._routes[command_type] = owner

    def remote_queue(self, command_type: type[Message]) -> str | None:
        """Return the queue of a command type handled by another service, if routed."""
        return self._routes.get(command_type)

    def destination(self, envelope: Envelope[Message], *, local: bool) -> Destination:
        """Return where ``envelope`` goes; ``local`` says this service handles it."""
        message_type = type(envelope.message)
        if isinstance(envelope.message, Event):
            return "topic", topic_name(message_type)
        queue = self.service if local else self.remote_queue(message_type)
        if queue is None:
            raise LookupError(message_type)
        return "queue", queue

    def topology(
        self, *, subscribed: Iterable[type[Message]], published: Iterable[type[Message]]
    ) -> Topology:
        """Return what this service needs: its queue, its topics, its subscriptions."""
        subscribed_topics = sorted({topic_name(event) for event in subscribed})
        topics = sorted({*subscribed_topics, *(topic_name(event) for event in published)})
        return Topology(
            queues=(self.queue,),
            topics=tuple(TopicSpec(topic, fifo=self.queue.fifo) for topic in topics),
            subscriptions=tuple(Subscription(topic, self.service) for topic in subscribed_topics),
        )


def outgoing(codec: WireCodec, envelope: Envelope[Message]) -> Outgoing:
    """Return ``envelope`` encoded for a transport.

    The FIFO deduplication id is the idempotency key when the sender set one (a second
    send under one key is the same intention), else the message id.
    """
    return Outgoing(
        body=codec.encode(envelope),
        message_id=envelope.message_id,
        group_key=envelope.group_key,
        deduplication_id=envelope.idempotency_key,
    )
