r"""The wire format: an envelope as CloudEvents 1.0 structured JSON.

One JSON object per message, the same for every transport and store::

    {
      "specversion": "1.0",
      "id": "<message_id>",
      "source": "<the producing service>",
      "type": "<wire name>",
      "time": "<RFC 3339 timestamp>",
      "datacontenttype": "application/json",
      "data": {...the message's fields...},
      "messageversion": 1,
      "correlationid": "...",
      "causationid": "...",          (absent for a root message)
      "attempt": 1,
      "idempotencykey": "...",       (absent unless set)
      "groupkey": "...",             (absent unless set)
      "headers": "{\"k\": \"v\"}"     (absent when empty)
    }

Extension attribute names follow the CloudEvents rule (lowercase letters and digits).
CloudEvents allows only simple values in extension attributes, so ``headers`` travels as
a JSON object encoded in a string. Decoding builds only types registered in the given
registry, by wire name and version: nothing is imported or unpickled because the data
names it.

Message data goes through msgspec (which reads attrs classes), strictly: a JSON value
is never converted to another JSON type on the way in (``"false"`` is not a bool,
``4.9`` not an int, ``"abc"`` not a list). What travels how:

=======================  ==================================================
``str int float bool``   JSON's own; a float NaN or Infinity is refused
``None`` / ``X | None``  ``null``
``UUID``                 canonical text
``Decimal``              a JSON string (``"10.50"``), never a number; finite
``datetime``             RFC 3339 with its offset; a naive one is refused
``date time timedelta``  ISO 8601 text (a duration such as ``"PT90S"``)
``bytes``                base64 text
enums, ``Literal``       their values
attrs classes            objects (nested classes too)
lists, tuples, sets      arrays
``dict[str, X]``         objects
=======================  ==================================================

Other types travel through hooks registered once on the codec, the one place for
them: :meth:`WireCodec.add_type`. Refusals on encode are :class:`EncodeError`; every
failure to decode, whatever the body, is a :class:`DecodeError` whose message names the
field (``payments.card.charge v1: data.amount: expected int, got str``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import attrs
import msgspec

from messagebus._envelope import Envelope, wire_envelope
from messagebus._errors import (
    ArgumentTypeError,
    DecodeError,
    EncodeError,
    InvalidArgumentError,
)
from messagebus._known_types import KnownTypes, TypedEvent
from messagebus._messages import Message
from messagebus._registry import MessageRegistry
from messagebus._wire_types import (
    Check,
    CustomType,
    Refused,
    check_untyped,
    decode_check,
    describe,
    encode_check,
)

if TYPE_CHECKING:
    import cattrs  # a converter is the caller's: cattrs costs a cold start ~60 ms

__all__ = ["WireCodec"]

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_EXTENSION = re.compile(r"[a-z0-9]+")
_JSON = "application/json"


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    """The CloudEvents attributes we read; any other attribute takes the slower path."""

    specversion: Literal["1.0"]
    id: _NonEmpty
    source: _NonEmpty
    type: _NonEmpty
    time: Annotated[datetime, msgspec.Meta(tz=True)]
    data: msgspec.Raw
    datacontenttype: str | None = None  # checked after: a pattern here costs 0.3 us a body
    messageversion: _Positive = 1
    correlationid: _NonEmpty | None = None
    causationid: _NonEmpty | None = None
    attempt: _Positive = 1
    idempotencykey: str | None = None
    groupkey: str | None = None
    headers: str | None = None


class _OpenEvent(_Event, forbid_unknown_fields=False):
    """The same, for a body that carries extension attributes of other producers."""


_EVENT = msgspec.json.Decoder(_Event)
_OPEN_EVENT = msgspec.json.Decoder(_OpenEvent)
_ATTRIBUTES = msgspec.json.Decoder(dict[str, msgspec.Raw])
_HEADERS = msgspec.json.Decoder(dict[str, str])
_ANY = msgspec.json.Decoder()
# What can leave msgspec on a hostile body besides its own errors: a nesting deeper than
# its recursion limit raises RecursionError.
_MALFORMED = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


@attrs.frozen
class _Plan:
    """What the codec made once for one message type."""

    decoder: msgspec.json.Decoder[Any]
    encode_check: Check | None
    decode_check: Check | None


class WireCodec:
    """Turns envelopes into CloudEvents JSON and back, for the types of one registry.

    Args:
        registry: the message types that may be decoded.
        source: the CloudEvents ``source`` written on encode: which service produced the
            message (a URI reference such as ``"/blog"``).
        converter: an explicit opt-in to cattrs for message data instead of the strict
            rules (the module says which): a ``cattrs`` converter builds primitives by
            calling the type, so it coerces. Use it to read bodies stored before the
            strict codec whose data holds ``bytes`` (written as base85 then), or types
            you already convert with cattrs hooks; ``cattrs.preconf.json``'s converter
            writes data exactly as this codec did before. Exported schemas do not
            describe what a converter writes.

    Task-safe once built: encoding and decoding keep no state but a cache per type. Add
    custom types (:meth:`add_type`) at start-up, before messages move.
    """

    def __init__(
        self,
        registry: MessageRegistry,
        *,
        source: str = "/messagebus",
        converter: cattrs.Converter | None = None,
    ) -> None:
        if not isinstance(source, str) or not source:
            raise InvalidArgumentError(f"source must be a non-empty string, not {source!r}")
        self.registry = registry
        self.source = source
        self._converter = converter
        self._custom: dict[type[Any], CustomType] = {}
        self._plans: dict[type[Any], _Plan] = {}
        self._known = KnownTypes(self._dec_hook)
        self._encoder = msgspec.json.Encoder(enc_hook=self._enc_hook, decimal_format="string")

    @property
    def converter(self) -> cattrs.Converter | None:
        """The cattrs converter given at construction, or None (the strict rules)."""
        return self._converter

    # -- custom types --------------------------------------------------------------------

    def add_type(
        self,
        python_type: type[Any],
        *,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        """Teach the codec a type it does not know: the one place for custom types.

        ``encode(instance)`` returns a JSON value (str, int, float, bool, None, or lists
        and dicts of those); ``decode(value)`` builds the instance from that value and
        raises ``ValueError`` or ``TypeError`` to refuse it (the body is then a
        :class:`DecodeError` naming the field). ``schema`` is the JSON Schema of the
        JSON value, used by the exported contracts (``{}`` if left out: any value)::

            bus.codec.add_type(
                Money, encode=str, decode=Money.parse,
                schema={"type": "string", "pattern": "^[A-Z]{3} -?[0-9]+[.][0-9]{2}$"},
            )

        Raises:
            InvalidArgumentError: ``python_type`` is not a class, or already added.
        """
        if not isinstance(python_type, type):
            raise InvalidArgumentError(f"add_type() takes a class, not {python_type!r}")
        if python_type in self._custom:
            raise InvalidArgumentError(f"{python_type.__qualname__} already has codec hooks")
        self._custom[python_type] = CustomType(python_type, encode, decode, dict(schema or {}))
        self._plans.clear()  # decoders built before did not know it
        self._known.forget()

    @property
    def custom_types(self) -> Mapping[type[Any], CustomType]:
        """The types added with :meth:`add_type`, by class."""
        return dict(self._custom)

    def _enc_hook(self, value: Any) -> Any:
        custom = self._custom.get(type(value))
        if custom is None:
            raise ArgumentTypeError(f"{type(value).__qualname__} has no JSON form (see add_type)")
        return custom.encode(value)

    def _dec_hook(self, python_type: type[Any], value: Any) -> Any:
        custom = self._custom.get(python_type)
        if custom is None:
            raise ArgumentTypeError(f"expected {python_type.__qualname__}, which has no JSON form")
        return custom.decode(value)

    def _plan(self, message_type: type[Any]) -> _Plan:
        plan = self._plans.get(message_type)
        if plan is None:
            plan = self._plans[message_type] = _Plan(
                msgspec.json.Decoder(message_type, dec_hook=self._dec_hook),
                encode_check(message_type),
                decode_check(message_type),
            )
        return plan

    # -- encode --------------------------------------------------------------------------

    def encode(self, envelope: Envelope[Message]) -> bytes:
        """Return ``envelope`` as UTF-8 CloudEvents JSON.

        Raises:
            EncodeError: the message has a field with no JSON form (a type without
                hooks, NaN or Infinity, a naive datetime); the message names the field.
        """
        message = envelope.message
        try:
            data = self._data(message)
            return self._encoder.encode(self._event(envelope, data))
        except Refused as exc:
            raise EncodeError(f"cannot encode {type(message).__qualname__}: {exc}") from exc
        except (TypeError, ValueError, OverflowError, NameError, msgspec.EncodeError) as exc:
            # NameError: annotations that do not resolve (a local class under
            # `from __future__ import annotations`), met when the plan is made.
            raise EncodeError(f"cannot encode {type(message).__qualname__} as JSON: {exc}") from exc

    def _data(self, message: Message) -> Any:
        converter = self._converter
        if converter is not None:
            try:
                data = converter.unstructure(message)
            except Exception as exc:  # a hook's failure is this message's
                raise EncodeError(f"cannot encode {type(message).__qualname__}: {exc}") from exc
            check_untyped(data, "data")
            return data
        check = self._plan(type(message)).encode_check
        if check is not None:
            check(message, "data")
        return message

    def _event(self, envelope: Envelope[Message], data: Any) -> dict[str, Any]:
        message_id = envelope.message_id
        if not message_id:
            raise Refused("id", "a message id must not be empty")
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": message_id,
            "source": self.source,
            "type": envelope.message_type,
            # isoformat() keeps the text exactly as bodies had it before ("+00:00").
            "time": envelope.timestamp.isoformat(),
            "datacontenttype": "application/json",
            "data": data,
            "messageversion": envelope.message_version,
            "correlationid": envelope.correlation_id,
            "attempt": envelope.attempt,
        }
        causation_id = envelope.causation_id
        if causation_id is not None:
            event["causationid"] = causation_id
        if envelope.idempotency_key is not None:
            event["idempotencykey"] = envelope.idempotency_key
        if envelope.group_key is not None:
            event["groupkey"] = envelope.group_key
        if envelope.headers:
            event["headers"] = json.dumps(dict(envelope.headers))
        return event

    def to_dict(self, envelope: Envelope[Message]) -> dict[str, Any]:
        """Return ``envelope`` as the CloudEvents JSON object (parsed, not text)."""
        event: dict[str, Any] = _ANY.decode(self.encode(envelope))
        return event

    # -- decode --------------------------------------------------------------------------

    def decode(self, body: bytes | str) -> Envelope[Message]:
        """Return the envelope encoded in ``body``.

        Raises:
            DecodeError: and nothing else, whatever the body: it is not JSON, not a
                CloudEvents 1.0 object, names a type or version this registry does not
                have, or its data does not fit the type. The message names the field.
        """
        known = self._known.decoder
        if known is not None:
            # One pass for a type seen before; on any refusal the full path below
            # decodes again and names the fault (messagebus/_known_types.py).
            try:
                typed: TypedEvent | None = known.decode(body)
            except Exception:  # noqa: BLE001 (not an error yet: the full path decides)
                typed = None
            if typed is not None:
                return self._finish(typed, typed.data)
        try:
            event = _EVENT.decode(body)
        except msgspec.ValidationError as exc:
            if not str(exc).startswith("Object contains unknown field"):
                raise DecodeError(f"not a CloudEvents 1.0 message: {describe(exc, '')}") from exc
            event = _with_extensions(body)
        except _MALFORMED as exc:
            raise DecodeError(f"message body is not JSON: {exc}") from exc
        return self._envelope(event)

    def from_dict(self, event: object) -> Envelope[Message]:
        """Return the envelope described by a parsed CloudEvents JSON object."""
        try:
            body = msgspec.json.encode(event)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise DecodeError(f"not a JSON object: {exc}") from exc
        return self.decode(body)

    def _envelope(self, event: _Event) -> Envelope[Message]:
        _check_content_type(event.datacontenttype)
        name, version = event.type, event.messageversion
        data: Any = event.data
        message_type = self.registry.resolve(name, version)
        if message_type is None:
            upcast = self._upcast(name, version, data)
            if upcast is not None:
                message_type, version, data = upcast
        if message_type is None:
            raise DecodeError(f"unknown message type {name!r} version {version!r}")
        try:
            message = self._message(message_type, data)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"{name} v{version}: {describe(exc, 'data')}") from exc
        except Refused as exc:
            raise DecodeError(f"{name} v{version}: {exc}") from exc
        except DecodeError:
            raise
        except Exception as exc:  # a validator's or hook's failure is the body's
            raise DecodeError(f"{name} v{version}: data does not fit the type: {exc!r}") from exc
        return self._finish(event, message)

    def _finish(self, event: _Event | TypedEvent, message: Message) -> Envelope[Message]:
        headers = None
        if event.headers is not None:
            try:
                headers = _HEADERS.decode(event.headers)
            except msgspec.ValidationError as exc:
                raise DecodeError(f"{describe(exc, 'headers')} (a JSON object of strings)") from exc
            except _MALFORMED as exc:
                raise DecodeError(f"headers: not JSON: {exc}") from exc
        return wire_envelope(
            message,
            message_id=event.id,
            correlation_id=event.correlationid,
            causation_id=event.causationid,
            timestamp=event.time,
            headers=headers,
            idempotency_key=event.idempotencykey,
            group_key=event.groupkey,
            attempt=event.attempt,
        )

    def _message(self, message_type: type[Message], data: msgspec.Raw | bytes) -> Message:
        converter = self._converter
        if converter is not None:
            try:
                untyped = _ANY.decode(data)
            except _MALFORMED as exc:
                raise DecodeError(f"data is not JSON: {exc}") from exc
            message: Message = converter.structure(untyped, message_type)
            return message
        try:
            plan = self._plans.get(message_type) or self._plan(message_type)
        except (TypeError, NameError) as exc:
            raise DecodeError(f"{message_type.__qualname__} cannot be decoded: {exc}") from exc
        message = plan.decoder.decode(data)
        if plan.decode_check is not None:
            plan.decode_check(_ANY.decode(data), "data")
        else:
            self._known.learn(message_type)  # its next bodies take one pass
        return message

    def _upcast(
        self, name: str, version: int, raw: msgspec.Raw
    ) -> tuple[type[Message], int, bytes] | None:
        try:
            data = _ANY.decode(raw)
        except _MALFORMED as exc:
            raise DecodeError(f"data is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            return None
        try:
            upcast = self.registry.upcast(name, version, data)
            if upcast is None:
                return None
            message_type, version, data = upcast
            return message_type, version, msgspec.json.encode(data)
        except Exception as exc:  # an upcaster's failure is this body's failure to decode
            raise DecodeError(f"{name} v{version}: upcasting failed: {exc!r}") from exc


def _check_content_type(content_type: str | None) -> None:
    if (
        content_type is not None
        and content_type != _JSON  # the usual value, told apart without parsing it
        and content_type.partition(";")[0].strip() != _JSON
    ):
        raise DecodeError(f"datacontenttype: expected {_JSON}, got {content_type[:60]!r}")


def _with_extensions(body: bytes | str) -> _Event:
    """Decode a body with attributes beyond ours, after checking their names."""
    try:
        names = _ATTRIBUTES.decode(body).keys()
        bad = sorted(name for name in names if _EXTENSION.fullmatch(name) is None)
        if bad:
            raise DecodeError(
                f"{bad[0][:40]!r}: a CloudEvents attribute name is lowercase letters and digits"
            )
        return _OPEN_EVENT.decode(body)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"not a CloudEvents 1.0 message: {describe(exc, '')}") from exc
    except _MALFORMED as exc:
        raise DecodeError(f"message body is not JSON: {exc}") from exc
