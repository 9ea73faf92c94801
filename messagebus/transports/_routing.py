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

Where a message goes is a :class:`Destination`: a queue or a topic of the transport, or
(for the outbox, on a bus without a transport) this process's own dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, InvalidArgumentError, NoHandlerError
from messagebus._messages import Command, Event, Message
from messagebus.transports._protocol import (
    Outgoing,
    QueueSpec,
    TopicSpec,
    TopicSubscription,
    Topology,
)

__all__ = ["Destination", "DestinationKind", "Router", "outgoing", "topic_name"]

DestinationKind = Literal["queue", "topic", "local"]
"""``queue``: a transport's queue (a command); ``topic``: a transport's topic (an event);
``local``: this process's own dispatcher (the bus handles it in-process)."""

_KINDS = ("queue", "topic", "local")


@attrs.frozen
class Destination:
    """Where a message goes: a queue or a topic of the transport, or the local dispatcher.

    ``name`` is the queue's or topic's logical name; for ``local`` it is free (the bus
    may use the message type) and may be empty. :meth:`Router.destination` returns
    queues and topics; the outbox stores any of the three with each row.
    """

    kind: DestinationKind = attrs.field(validator=attrs.validators.in_(_KINDS))
    name: str = ""

    @classmethod
    def queue(cls, name: str) -> Destination:
        """Return the transport's queue ``name`` (point to point: commands)."""
        return cls("queue", name)

    @classmethod
    def topic(cls, name: str) -> Destination:
        """Return the transport's topic ``name`` (fan-out: events)."""
        return cls("topic", name)

    @classmethod
    def local(cls, name: str = "") -> Destination:
        """Return the dispatcher of this process."""
        return cls("local", name)


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

    Raises:
        InvalidArgumentError: ``service`` cannot name a queue, or ``queue`` is named
            otherwise (also a :class:`ValueError`).
        ArgumentTypeError: ``routes`` maps something other than a Command type (also a
            :class:`TypeError`).
    """

    def __init__(
        self,
        service: str,
        routes: Mapping[type[Command[Any]], str],
        queue: QueueSpec | None = None,
    ) -> None:
        if not _SERVICE_NAME.fullmatch(service):
            raise InvalidArgumentError(
                f"service must be 1-64 letters, digits, '-' or '_' (it names a queue): {service!r}"
            )
        self.service = service
        self.queue = QueueSpec(service) if queue is None else queue
        if self.queue.name != service:
            raise InvalidArgumentError(f"the input queue is named after the service: {service!r}")
        self._routes: dict[type[Message], str] = {}
        for command_type, owner in routes.items():
            if not (isinstance(command_type, type) and issubclass(command_type, Command)):
                raise ArgumentTypeError(f"routes map Command types to queues, not {command_type!r}")
            self._routes[command_type] = owner

    @property
    def routes(self) -> Mapping[type[Message], str]:
        """The queue (owning service) of each command type handled elsewhere."""
        return dict(self._routes)

    def remote_queue(self, command_type: type[Message]) -> str | None:
        """Return the queue of a command type handled by another service, if routed."""
        return self._routes.get(command_type)

    def destination(self, envelope: Envelope[Message], *, local: bool) -> Destination:
        """Return where ``envelope`` goes; ``local`` says this service handles it.

        Raises:
            NoHandlerError: a command not handled here (``local`` False) and not routed.
        """
        message_type = type(envelope.message)
        if isinstance(envelope.message, Event):
            return Destination.topic(topic_name(message_type))
        queue = self.service if local else self.remote_queue(message_type)
        if queue is None:
            raise NoHandlerError(
                f"command {message_type.__message_name__!r} ({message_type.__qualname__}) has "
                f"no handler in service {self.service!r} and no route to another's queue"
            )
        return Destination.queue(queue)

    def topology(
        self, *, subscribed: Iterable[type[Message]], published: Iterable[type[Message]]
    ) -> Topology:
        """Return what this service needs: its queue, its topics, its subscriptions."""
        subscribed = list(subscribed)
        subscribed_topics = sorted({topic_name(event) for event in subscribed})
        types: dict[str, set[str]] = {}
        for event in [*subscribed, *published]:
            types.setdefault(topic_name(event), set()).add(event.__message_name__)
        return Topology(
            queues=(self.queue,),
            topics=tuple(
                TopicSpec(topic, fifo=self.queue.fifo, message_types=tuple(sorted(names)))
                for topic, names in sorted(types.items())
            ),
            subscriptions=tuple(
                TopicSubscription(topic, self.service) for topic in subscribed_topics
            ),
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
