"""An AsyncAPI 3.0 document of one service, and breaking changes between two of them.

:func:`asyncapi_document` describes a bus as its peers see it, from what the bus
already knows (nothing is declared twice):

- **channels**: the service's input queue; the topic of every event type it publishes
  or subscribes to (:meth:`~messagebus.MessageBus.topology`); the queue of every service
  its commands are routed to. Keys are ``queue.<name>`` and ``topic.<name>``; each
  ``address`` is the broker's name where the transport says it
  (:class:`~messagebus.extension.NamedTransport`: an SQS prefix, ``.fifo``), else the
  logical name.
- **operations**: ``receive.<type>`` for every command handled and event subscribed to
  (they arrive on the service's queue); ``send.<type>`` for every command routed to
  another service and every event type registered here, to its topic. A bus does not
  record which events its handlers publish, so an event type it only subscribes to
  shows as sent too, as :meth:`~messagebus.MessageBus.topology` provisions its topic.
- **messages**: every registered (or routed) type, keyed ``<wire name>.v<version>``:
  the payload is the JSON Schema (2020-12) of its data, exactly as
  :func:`~messagebus.contracts.export_schemas` makes it; the headers are the CloudEvents
  1.0 attributes the codec reads and writes. On every transport the attributes travel
  in the body beside ``data`` (CloudEvents structured mode); ``x-messagebus`` names the
  wire type, version and kind.

:func:`asyncapi_breaking_changes` compares a saved document with the current one: the
message payloads by the rules of :func:`~messagebus.contracts.breaking_changes` (the
same function, on the payloads taken back out), and an operation that is gone or whose
channel moved to another address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from messagebus._errors import InvalidArgumentError
from messagebus._messages import Message, message_kind
from messagebus._registry import MessageRegistry
from messagebus._schema import DIALECT, FORMAT, breaking_changes, export_schemas
from messagebus.transports._protocol import NamedTransport
from messagebus.transports._routing import topic_name

if TYPE_CHECKING:
    from messagebus._bus import MessageBus

__all__ = ["ASYNCAPI_VERSION", "PAYLOAD_FORMAT", "asyncapi_breaking_changes", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
"""The AsyncAPI version of the documents made here."""

PAYLOAD_FORMAT = "application/schema+json;version=draft-2020-12"
"""The ``schemaFormat`` of every payload: the JSON Schema dialect of the export."""

_KEY = re.compile(r"[^\w.\-]")
_MESSAGES = "#/components/messages/"


def _key(text: str) -> str:
    """Return ``text`` as an AsyncAPI component key (letters, digits, ``.``, ``-``, ``_``)."""
    return _KEY.sub("-", text)


def message_key(message_type: type[Message]) -> str:
    """Return the key of a message type in a document: ``<wire name>.v<version>``."""
    return _key(f"{message_type.__message_name__}.v{message_type.__message_version__}")


def asyncapi_document(
    bus: MessageBus, *, title: str | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of ``bus``'s service (see the module for the layout).

    Args:
        bus: the service, with its handlers, subscribers, declared types and routes.
        title: the document's title (default: the service's name).
        version: the version of the service's API (AsyncAPI's ``info.version``).

    Raises:
        InvalidMessageTypeError: a type's fields have no JSON form (as
            :func:`~messagebus.contracts.export_schemas`).
        DuplicateMessageTypeError: a routed command type shares its wire name and
            version with a registered class.
    """
    service = bus.router.service
    fifo = bus.router.queue.fifo
    transport: object = bus.transport  # a NamedTransport too, perhaps

    def address(name: str, *, topic: bool) -> str:
        if isinstance(transport, NamedTransport):
            return transport.address(name, fifo=fifo, topic=topic)
        return name

    registry = MessageRegistry()
    for message_type in [*bus.registry, *bus.router.routes]:
        registry.add(message_type)
    export = export_schemas(registry, bus.codec.custom_types)
    handled = bus.handled_types()
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, dict[str, Any]] = {}

    def channel(kind: str, name: str, description: str) -> str:
        key = _key(f"{kind}.{name}")
        where = address(name, topic=kind == "topic")
        channels.setdefault(key, {"address": where, "description": description, "messages": {}})
        return key

    def operation(action: str, key: str, message_type: type[Message]) -> None:
        message = message_key(message_type)
        channels[key]["messages"][message] = {"$ref": _MESSAGES + message}
        operations[f"{action}.{message}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
        }

    own = channel("queue", service, f"The input queue of service {service!r}.")
    for message_type in handled:
        operation("receive", own, message_type)
    for topic in bus.topology().topics:
        names = ", ".join(topic.message_types)
        channel("topic", topic.name, f"The topic of event type(s) {names}.")
    for message_type in registry:
        if message_kind(message_type) != "event":
            continue
        key = _key(f"topic.{topic_name(message_type)}")
        message = message_key(message_type)
        channels[key]["messages"][message] = {"$ref": _MESSAGES + message}
        operation("send", key, message_type)
    for command_type, owner in bus.router.routes.items():
        queue = channel("queue", owner, f"The input queue of service {owner!r}.")
        operation("send", queue, command_type)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or service,
            "version": version,
            "description": f"Messages of service {service!r} (CloudEvents 1.0 source "
            f"{bus.codec.source!r}), made by messagebus.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": _messages(registry, export)},
        "x-messagebus": {"format": FORMAT, "service": service},
    }


def _messages(registry: MessageRegistry, export: Mapping[str, Any]) -> dict[str, Any]:
    messages = {}
    for message_type in registry:
        name, version = message_type.__message_name__, message_type.__message_version__
        entry = export["types"][name][str(version)]
        doc = (message_type.__doc__ or "").strip().partition("\n")[0]
        message: dict[str, Any] = {
            "name": name,
            "title": message_type.__qualname__,
            "contentType": "application/json",
            "tags": [{"name": entry["kind"]}],
            "headers": _attributes(name, version),
            "payload": {
                "schemaFormat": PAYLOAD_FORMAT,
                "schema": _payload(name, version, entry["schema"], export["$defs"]),
            },
            "x-messagebus": {"type": name, "version": version, "kind": entry["kind"]},
        }
        if doc:
            message["summary"] = doc
        messages[message_key(message_type)] = message
    return messages


def _payload(
    name: str, version: int, schema: Mapping[str, Any], definitions: Mapping[str, Any]
) -> dict[str, Any]:
    """Return one type's schema as a resource of its own, with the definitions it uses."""
    used: dict[str, Any] = {}
    pending = list(_references(schema))
    while pending:
        reference = pending.pop()
        if reference not in used:
            used[reference] = definitions[reference]
            pending.extend(_references(used[reference]))
    # The $id makes the payload a schema resource: its "#/$defs/..." resolve inside it.
    return {
        "$schema": DIALECT,
        "$id": f"urn:messagebus:{_key(name)}:v{version}",
        **schema,
        "$defs": dict(sorted(used.items())),
    }


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str):
            yield reference.removeprefix("#/$defs/")
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _attributes(name: str, version: int) -> dict[str, Any]:
    """Return the CloudEvents attributes of one type, as the codec reads them (null: absent)."""
    text = {"type": "string", "minLength": 1}
    optional_text = {"type": ["string", "null"], "minLength": 1}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes; they travel in the JSON body beside "
        "'data' (structured mode). Other attributes are extensions named in lowercase "
        "letters and digits.",
        "required": ["specversion", "id", "source", "type", "time"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": text,
            "source": {**text, "format": "uri-reference"},
            "type": {"const": name},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {
                "type": ["string", "null"],
                "pattern": r"^\s*application/json\s*(;|$)",
            },
            "messageversion": {"const": version},
            "correlationid": optional_text,
            "causationid": optional_text,
            "attempt": {"type": "integer", "minimum": 1},
            "idempotencykey": {"type": ["string", "null"]},
            "groupkey": {"type": ["string", "null"]},
            "headers": {
                "type": ["string", "null"],
                "contentMediaType": "application/json",
                "description": "a JSON object of string values, encoded as a string",
            },
        },
        "propertyNames": {"pattern": "^[a-z0-9]+$"},
    }


def asyncapi_breaking_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return a sentence per breaking change from ``saved`` to ``current`` (empty: none).

    Messages break as in :func:`~messagebus.contracts.breaking_changes`; an operation
    breaks when it is gone (peers still send what the service no longer receives, or
    wait for what it no longer sends) or its channel's address changed.

    Raises:
        InvalidArgumentError: either document is not an AsyncAPI document made here.
    """
    for document in (saved, current):
        if document.get("asyncapi") != ASYNCAPI_VERSION or not isinstance(
            document.get("x-messagebus"), dict
        ):
            raise InvalidArgumentError(
                f"not an AsyncAPI {ASYNCAPI_VERSION} document made by messagebus"
            )
    changes = breaking_changes(_as_export(saved), _as_export(current))
    now = current.get("operations", {})
    for key, operation in sorted(saved.get("operations", {}).items()):
        if key not in now:
            changes.append(f"operation {key}: gone (the service no longer does it)")
            continue
        before, after = _address(saved, operation), _address(current, now[key])
        if before != after:
            changes.append(f"operation {key}: its channel moved from {before!r} to {after!r}")
    return changes


def _address(document: Mapping[str, Any], operation: Mapping[str, Any]) -> Any:
    key = str(operation["channel"]["$ref"]).removeprefix("#/channels/")
    return document["channels"][key]["address"]


def _as_export(document: Mapping[str, Any]) -> dict[str, Any]:
    """Take the payloads back out as a schema export, for :func:`breaking_changes`."""
    types: dict[str, dict[str, Any]] = {}
    definitions: dict[str, Any] = {}
    for message in document.get("components", {}).get("messages", {}).values():
        identity, schema = message["x-messagebus"], dict(message["payload"]["schema"])
        definitions.update(schema.pop("$defs", {}))
        schema.pop("$schema", None)
        schema.pop("$id", None)
        types.setdefault(identity["type"], {})[str(identity["version"])] = {
            "kind": identity["kind"],
            "schema": schema,
        }
    return {"$schema": DIALECT, "format": FORMAT, "types": types, "$defs": definitions}
