"""The event router: records that are not our envelope, bound to registered event types.

Contract:

- A rule is declared per kind of record (:meth:`EventRouter.s3`,
  :meth:`EventRouter.dynamodb`, :meth:`EventRouter.eventbridge`) with the event type it
  builds and what it matches; it decorates the builder, a function from the record's view
  (:class:`~messagebus.aws_lambda.S3Notification`,
  :class:`~messagebus.aws_lambda.DynamoDBChange`,
  :class:`~messagebus.aws_lambda.EventBridgeEvent`) to an instance of that type.
- Every criterion is a glob pattern (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[...]``),
  exact when it has no wildcard; a criterion left out matches anything. The first
  declared rule that matches a record wins.
- The built event gets a stable message id, derived from what a redelivery of the record
  repeats (see :mod:`messagebus.aws_lambda._views`), and the record's time as its
  timestamp; then it goes through the bus like any delivered envelope: routing,
  middleware, idempotency, retry policies, dead letters.
- A record no rule matches, or whose builder raises or returns something else than its
  rule's type, is a :class:`~messagebus.DecodeError` (the entry point records it as a
  dead letter with that reason): never a silent drop.
- Each rule's type must be a registered event type of the bus it serves:
  :meth:`EventRouter.check` raises :class:`~messagebus.InvalidMessageTypeError`
  otherwise (the entry point calls it at its first invocation).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from fnmatch import fnmatchcase
from typing import Any, Literal, TypeVar

import attrs

from messagebus._envelope import Envelope
from messagebus._errors import DecodeError, InvalidMessageTypeError
from messagebus._messages import Event, Message
from messagebus.aws_lambda._views import DynamoDBChange, EventBridgeEvent, S3Notification

__all__ = ["EventRouter", "Rule"]

E = TypeVar("E", bound=Event)
View = S3Notification | DynamoDBChange | EventBridgeEvent
Kind = Literal["s3", "dynamodb", "eventbridge"]

_IDS = uuid.UUID("5c1b0c57-8f3e-4a8e-9d0a-6f2a7d1e4b90")
"""The namespace of message ids derived from AWS events (UUIDv5)."""


@attrs.frozen
class Rule:
    """One declared binding: records of ``kind`` matching ``patterns`` build ``event_type``.

    Attributes:
        kind: which records it reads.
        event_type: the registered event type it builds.
        build: the builder, from the record's view to an ``event_type``.
        patterns: the view's attribute names and the glob each must match.
    """

    kind: Kind
    event_type: type[Event]
    build: Callable[[Any], Event]
    patterns: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        """The builder's qualified name, for errors and logs."""
        return str(getattr(self.build, "__qualname__", repr(self.build)))

    def matches(self, view: View) -> bool:
        """Whether every pattern matches its attribute of ``view``."""
        return all(fnmatchcase(str(getattr(view, field)), glob) for field, glob in self.patterns)


class EventRouter:
    """Rules binding foreign records to the application's events; see the module.

    ::

        router = EventRouter()

        @router.s3(ImageUploaded, bucket="blog-images", event_name="ObjectCreated:*")
        def image_uploaded(record: S3Notification) -> ImageUploaded:
            return ImageUploaded(key=record.key, size=record.size or 0)

        handler = lambda_handler(bus, router=router)
    """

    def __init__(self) -> None:
        self._rules: list[Rule] = []

    def s3(
        self,
        event_type: type[E],
        *,
        bucket: str | None = None,
        event_name: str | None = None,
        key: str | None = None,
    ) -> Callable[[Callable[[S3Notification], E]], Callable[[S3Notification], E]]:
        """Bind S3 notifications (direct, or inside SQS or SNS) to ``event_type``.

        Args:
            event_type: the event the decorated builder returns.
            bucket: the bucket's name.
            event_name: such as ``"ObjectCreated:*"`` (S3's own notation).
            key: the object's key (``"uploads/*.jpg"``).
        """
        return self._rule("s3", event_type, bucket=bucket, event_name=event_name, key=key)

    def dynamodb(
        self,
        event_type: type[E],
        *,
        table: str | None = None,
        event_name: str | None = None,
    ) -> Callable[[Callable[[DynamoDBChange], E]], Callable[[DynamoDBChange], E]]:
        """Bind DynamoDB Streams records to ``event_type``.

        Args:
            event_type: the event the decorated builder returns.
            table: the table's name.
            event_name: ``"INSERT"``, ``"MODIFY"``, ``"REMOVE"``.
        """
        return self._rule("dynamodb", event_type, table=table, event_name=event_name)

    def eventbridge(
        self,
        event_type: type[E],
        *,
        source: str | None = None,
        detail_type: str | None = None,
    ) -> Callable[[Callable[[EventBridgeEvent], E]], Callable[[EventBridgeEvent], E]]:
        """Bind EventBridge events (direct, or inside SQS) that are not our envelope.

        Args:
            event_type: the event the decorated builder returns.
            source: the event's ``source`` (``"aws.s3"``, ``"aws.*"``).
            detail_type: the event's ``detail-type``.
        """
        return self._rule("eventbridge", event_type, source=source, detail_type=detail_type)

    def check(self, registered: Collection[type[Message]]) -> None:
        """Raise :class:`~messagebus.InvalidMessageTypeError` for a rule's unregistered type."""
        for rule in self._rules:
            if rule.event_type not in registered:
                raise InvalidMessageTypeError(
                    f"rule {rule.name} builds {rule.event_type.__qualname__}, which the bus "
                    "does not know: subscribe to it (or bus.declare() it) first"
                )

    def envelope(self, view: View) -> Envelope[Message]:
        """Return the envelope of the event the first matching rule builds from ``view``.

        Raises:
            DecodeError: no rule matches, or the builder failed (the reason says which).
        """
        kind = _KINDS[type(view)]
        for rule in self._rules:
            if rule.kind == kind and rule.matches(view):
                return self._built(rule, view)
        raise DecodeError(f"no rule of the event router matches {view.describe()}")

    def _built(self, rule: Rule, view: View) -> Envelope[Message]:
        try:
            event = rule.build(view)
        except Exception as exc:  # fails the same way every time: a dead letter
            raise DecodeError(
                f"rule {rule.name} could not build {rule.event_type.__qualname__} from "
                f"{view.describe()}: {type(exc).__qualname__}: {exc}"
            ) from exc
        if type(event) is not rule.event_type:
            raise DecodeError(
                f"rule {rule.name} returned {type(event).__qualname__}, not "
                f"{rule.event_type.__qualname__}"
            )
        message_id = str(uuid.uuid5(_IDS, view.identity))
        return Envelope(event, message_id=message_id, timestamp=view.time)

    def _rule(
        self, kind: Kind, event_type: type[E], **criteria: str | None
    ) -> Callable[[Callable[[Any], E]], Callable[[Any], E]]:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise InvalidMessageTypeError(f"a rule builds an Event subclass, not {event_type!r}")
        patterns = tuple((field, glob) for field, glob in criteria.items() if glob is not None)

        def register(build: Callable[[Any], E]) -> Callable[[Any], E]:
            self._rules.append(Rule(kind, event_type, build, patterns))
            return build

        return register


_KINDS: dict[type[View], Kind] = {
    S3Notification: "s3",
    DynamoDBChange: "dynamodb",
    EventBridgeEvent: "eventbridge",
}
