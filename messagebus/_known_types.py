"""One-pass decoding of the message types a codec has decoded before.

The codec's full path reads a body twice: the CloudEvents attributes with ``data`` left
as raw JSON, then ``data`` into the class the ``type`` attribute names. That second
pass and the glue between them cost as much as decoding the whole body once, which is
what raw msgspec does when it knows the class in advance (benchmarks/codec.py).

:class:`KnownTypes` knows the class in advance for types already seen: it keeps one
msgspec Struct per wire name, tagged by the ``type`` attribute, with ``data`` typed as
the message class, and decodes a body against the union of them in one pass. msgspec
picks the member by the ``type`` value and applies the same strict rules to ``data``
as the codec's own decoder for the class (the same ``dec_hook``).

Contract: :attr:`KnownTypes.decoder` yields an event the codec uses only when the body
decodes cleanly into a known type at the version that type is registered with; for
anything else (another version, an unknown name, extension attributes, a repeated
``type`` key, any refusal at all) the codec takes its full path, which gives the same
result for the bodies accepted here and names the fault of every other body. So this
module never decides an error; it only skips work for bodies that have none. (The
codec calls the decoder itself: a method between them cost a tenth of a decode.)

Only types whose data needs no check beyond msgspec (no ``Decimal``, no ``datetime``:
see :mod:`messagebus._wire_types`) are learned, since those checks need the raw JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec

from messagebus._messages import Message

__all__ = ["KnownTypes", "TypedEvent"]

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]


_JSON = "application/json"
_NEVER = Annotated[int, msgspec.Meta(ge=1, le=0)]  # no JSON value fits


class TypedEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """The codec's CloudEvents attributes (``_Event`` in ``_codec``), ``type`` as the tag.

    Each known type subclasses it with ``data`` typed as its class, ``messageversion``
    as the one version registered for it, and ``datacontenttype`` as exactly
    ``application/json`` or absent: any other value (a charset parameter, another
    version) is a refusal here, which sends the body to the full path. The two
    definitions must agree (tests/test_known_types.py compares them).
    """

    message_type: ClassVar[type[Message]]

    specversion: Literal["1.0"]
    id: _NonEmpty
    source: _NonEmpty
    time: Annotated[datetime, msgspec.Meta(tz=True)]
    correlationid: _NonEmpty | None = None
    causationid: _NonEmpty | None = None
    attempt: _Positive = 1
    idempotencykey: str | None = None
    groupkey: str | None = None
    headers: str | None = None
    data: Any
    messageversion: int
    datacontenttype: str | None = None


class _Nothing(TypedEvent, tag=""):
    """A member no body can decode into: it makes the union a union.

    msgspec checks a struct's tag only inside a union; a lone tagged struct would take a
    body with no ``type`` at all.
    """

    data: _NEVER


class KnownTypes:
    """A one-pass decoder over the message types learned so far, by wire name.

    One class per wire name: a body of another version of that name takes the full
    path. Task-safe: a decoder, once built, is never changed; learning replaces it.
    """

    def __init__(self, dec_hook: Callable[[type[Any], Any], Any]) -> None:
        self._dec_hook = dec_hook
        self._events: dict[str, type[TypedEvent]] = {}
        self.decoder: msgspec.json.Decoder[Any] | None = None
        """Decodes a body of a known type in one pass into a :class:`TypedEvent`.

        None until a type is learned. It raises on anything but a body of a learned
        type at its version (the caller then takes the full path, which names the
        fault); what it returns needs no further check.
        """

    def __contains__(self, name: object) -> bool:
        return name in self._events

    def learn(self, message_type: type[Message]) -> None:
        """Decode bodies of ``message_type`` in one pass from now on (not twice for one name)."""
        name = message_type.__message_name__
        if name in self._events:
            return
        version = message_type.__message_version__
        event: type[TypedEvent] = msgspec.defstruct(  # type: ignore[assignment]
            f"{message_type.__qualname__}Event",
            [
                ("data", message_type),
                # Absent means version 1, so only a version-1 class may take a body without it.
                ("messageversion", Literal[version], 1)
                if version == 1
                else ("messageversion", Literal[version]),
                ("datacontenttype", Literal[_JSON] | None, None),
            ],
            bases=(TypedEvent,),
            tag=name,
            namespace={"message_type": message_type},
        )
        events = {**self._events, name: event}
        members = tuple(events.values())
        self.decoder = msgspec.json.Decoder(
            Union[(_Nothing, *members)],
            dec_hook=self._dec_hook,
        )
        self._events = events

    def forget(self) -> None:
        """Forget every type (the codec learned a custom type the decoders did not know)."""
        self._events = {}
        self.decoder = None
