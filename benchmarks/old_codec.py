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
a JSON object encoded in a string. Messages are converted with cattrs (the attrs
ecosystem's converter); decoding builds only types registered in the given registry, by
wire name and version: nothing is imported or unpickled because the data names it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from messagebus._envelope import Envelope
from messagebus._errors import DecodeError, EncodeError
from messagebus._messages import Message
from messagebus._registry import MessageRegistry

__all__ = ["WireCodec"]

_REQUIRED = ("specversion", "id", "source", "type", "time", "data")


class WireCodec:
    """Turns envelopes into CloudEvents JSON and back, for the types of one registry.

    Args:
        registry: the message types that may be decoded.
        source: the CloudEvents ``source`` written on encode: which service produced the
            message (a URI reference such as ``"/blog"``).
        converter: a cattrs converter for message fields; ``cattrs.preconf.json``'s by
            default (datetimes as ISO text, sets as lists, ...).

    Thread- and task-safe once built: encoding and decoding keep no state.
    """

    def __init__(
        self,
        registry: MessageRegistry,
        *,
        source: str = "/messagebus",
        converter: cattrs.Converter | None = None,
    ) -> None:
        self.registry = registry
        self.source = source
        self.converter = make_converter() if converter is None else converter

    def encode(self, envelope: Envelope[Message]) -> bytes:
        """Return ``envelope`` as UTF-8 CloudEvents JSON.

        Raises:
            EncodeError: the message has a field the converter cannot express in JSON.
        """
        return json.dumps(self.to_dict(envelope), separators=(",", ":")).encode()

    def to_dict(self, envelope: Envelope[Message]) -> dict[str, Any]:
        """Return ``envelope`` as the CloudEvents JSON object (not yet text)."""
        message = envelope.message
        try:
            data = self.converter.unstructure(message)
            json.dumps(data)
        except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
            raise EncodeError(f"cannot encode {type(message).__qualname__} as JSON: {exc}") from exc
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": envelope.message_id,
            "source": self.source,
            "type": envelope.message_type,
            "time": envelope.timestamp.isoformat(),
            "datacontenttype": "application/json",
            "data": data,
            "messageversion": envelope.message_version,
            "correlationid": envelope.correlation_id,
            "attempt": envelope.attempt,
        }
        optional = {
            "causationid": envelope.causation_id,
            "idempotencykey": envelope.idempotency_key,
            "groupkey": envelope.group_key,
            "headers": json.dumps(dict(envelope.headers)) if envelope.headers else None,
        }
        event.update((key, value) for key, value in optional.items() if value is not None)
        return event

    def decode(self, body: bytes | str) -> Envelope[Message]:
        """Return the envelope encoded in ``body``.

        Raises:
            DecodeError: the body is not JSON, not a CloudEvents 1.0 object, names a type
                or version this registry does not have, or its data does not fit the type.
                The message says which.
        """
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"message body is not JSON: {exc}") from exc
        return self.from_dict(event)

    def from_dict(self, event: object) -> Envelope[Message]:
        """Return the envelope described by a decoded CloudEvents JSON object."""
        if not isinstance(event, dict):
            raise DecodeError("message body is not a JSON object")
        missing = [key for key in _REQUIRED if key not in event]
        if missing:
            raise DecodeError(f"not a CloudEvents message: missing {', '.join(missing)}")
        if event["specversion"] != "1.0":
            raise DecodeError(f"unsupported CloudEvents specversion {event['specversion']!r}")
        name, version = event["type"], event.get("messageversion", 1)
        if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
            raise DecodeError(f"unknown message type {name!r} version {version!r}")
        data = event["data"]
        message_type = self.registry.resolve(name, version)
        if message_type is None and isinstance(data, dict):
            try:
                upcast = self.registry.upcast(name, version, data)
            except Exception as exc:  # an upcaster's failure is this body's failure to decode
                raise DecodeError(f"{name} v{version}: upcasting failed: {exc!r}") from exc
            if upcast is not None:
                message_type, version, data = upcast
        if message_type is None:
            raise DecodeError(f"unknown message type {name!r} version {version!r}")
        # _text() and _headers() raise DecodeError without the type; the except names it.
        try:
            message = self.converter.structure(data, message_type)
            timestamp = datetime.fromisoformat(event["time"])
            headers = _headers(event["headers"]) if "headers" in event else None
            return Envelope(
                message,
                message_id=_text(event, "id"),
                correlation_id=_text(event, "correlationid"),
                causation_id=_text(event, "causationid"),
                timestamp=timestamp,
                headers=headers,
                idempotency_key=_text(event, "idempotencykey"),
                group_key=_text(event, "groupkey"),
                attempt=int(event.get("attempt", 1)),
            )
        except (cattrs.BaseValidationError, DecodeError, TypeError, ValueError, KeyError) as exc:
            raise DecodeError(f"{name} v{version}: data does not fit the type: {exc}") from exc


def _text(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"{key} must be text, not {value!r}")
    return value


def _headers(text: object) -> dict[str, str]:
    headers = json.loads(text) if isinstance(text, str) else None
    if not isinstance(headers, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        raise DecodeError(f"headers must be a JSON object of strings, not {text!r}")
    return headers
