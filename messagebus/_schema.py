"""Message contracts: every registered type as JSON Schema, and breaking-change checks.

:func:`export_schemas` describes a registry as one JSON document (schemas made by
the type information the codec decodes with)::

    {"$schema": "https://json-schema.org/draft/2020-12/schema",
     "format": 1,
     "types": {"blog.post.published": {"1": {"kind": "event", "schema": {...}}}},
     "$defs": {...shared definitions of nested types...}}

:func:`breaking_changes` compares a saved export with the current one, type by type,
by wire name and version, with the usual rules for a message contract:

- a type (name + version) that disappeared breaks (renaming a type is removing one);
- a field that was required and is gone, or whose schema changed, breaks;
- a new required field breaks (messages written before it lack it);
- a new optional field, a removed optional field, or a new type does not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec.inspect as mi

from messagebus._errors import InvalidArgumentError, InvalidMessageTypeError
from messagebus._messages import message_kind
from messagebus._registry import MessageRegistry
from messagebus._wire_types import DECIMAL_PATTERN, CustomType

__all__ = ["DIALECT", "FORMAT", "breaking_changes", "export_schemas", "message_schema"]

FORMAT = 1
"""The layout of the export document; bumped if it ever changes."""

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect of every schema in an export (its ``$schema``)."""


def export_schemas(
    registry: MessageRegistry, custom_types: Mapping[type[Any], CustomType] | None = None
) -> dict[str, Any]:
    """Return every type in ``registry`` with its kind and JSON Schema (2020-12).

    The schemas describe exactly what :class:`~messagebus.WireCodec` writes and reads,
    from the type information it uses (:func:`msgspec.inspect.type_info`): ``format``
    ``date-time`` (with its offset), ``date``, ``time``, ``duration`` and ``uuid``;
    ``Decimal`` as a string with :data:`DECIMAL_PATTERN`; bytes as base64 text. Pass
    ``bus.codec.custom_types`` for types added with :meth:`WireCodec.add_type`. Objects
    allow properties they do not name (the decoder ignores them). A type's schema refers
    to nested classes as ``#/$defs/Name`` of the document: see :func:`message_schema`
    for one type alone.

    Raises:
        InvalidMessageTypeError: a type's field annotations do not resolve (a name
            defined inside a function, under ``from __future__ import annotations``)
            or have no JSON form.
    """
    message_types = list(registry)
    try:
        infos = mi.multi_type_info(message_types)
    except (NameError, TypeError) as exc:
        raise InvalidMessageTypeError(f"cannot describe the message types: {exc}") from exc
    builder = _Builder(custom_types or {})
    types: dict[str, dict[str, Any]] = {}
    for message_type, info in zip(message_types, infos, strict=True):
        reference = builder.schema(info)["$ref"]
        name = reference.removeprefix("#/$defs/")
        types.setdefault(message_type.__message_name__, {})[
            str(message_type.__message_version__)
        ] = {"kind": message_kind(message_type), "schema": builder.definitions[name]}
    return {
        "$schema": DIALECT,
        "format": FORMAT,
        "types": types,
        "$defs": builder.definitions,
    }


def message_schema(document: Mapping[str, Any], name: str, version: int) -> dict[str, Any]:
    """Return one type's schema from an export as a document of its own (with ``$defs``).

    Raises:
        InvalidArgumentError: the export has no such type and version.
    """
    entry = document.get("types", {}).get(name, {}).get(str(version))
    if entry is None:
        raise InvalidArgumentError(f"the export has no type {name!r} version {version}")
    return {"$schema": DIALECT, **entry["schema"], "$defs": document["$defs"]}


class _Builder:
    """Turns msgspec type information into JSON Schema; classes become ``$defs``."""

    def __init__(self, custom_types: Mapping[type[Any], CustomType]) -> None:
        self.custom_types = custom_types
        self.definitions: dict[str, Any] = {}
        self.names: dict[type[Any], str] = {}

    def schema(self, info: mi.Type) -> dict[str, Any]:  # one per kind
        if isinstance(info, mi.Metadata):
            return self.schema(info.type)
        simple = _SIMPLE.get(type(info))
        if simple is not None:
            return dict(simple)
        if isinstance(info, mi.EnumType):
            return {"enum": [member.value for member in info.cls]}
        if isinstance(info, mi.LiteralType):
            return {"enum": list(info.values)}
        if isinstance(info, mi.ListType | mi.VarTupleType):
            return {"type": "array", "items": self.schema(info.item_type)}
        if isinstance(info, mi.SetType | mi.FrozenSetType):
            # No uniqueItems: the decoder takes an array with repeats as the set it makes.
            return {"type": "array", "items": self.schema(info.item_type)}
        if isinstance(info, mi.TupleType):
            count = len(info.item_types)
            items = [self.schema(item) for item in info.item_types]
            return {"type": "array", "prefixItems": items, "minItems": count, "maxItems": count}
        if isinstance(info, mi.DictType):
            return {"type": "object", "additionalProperties": self.schema(info.value_type)}
        if isinstance(info, mi.UnionType):
            return {"anyOf": [self.schema(member) for member in info.types]}
        if isinstance(info, mi.DataclassType | mi.StructType):
            return {"$ref": f"#/$defs/{self.define(info)}"}
        if isinstance(info, mi.CustomType) and info.cls in self.custom_types:
            return dict(self.custom_types[info.cls].schema)
        raise InvalidMessageTypeError(f"{info!r} has no JSON form (see WireCodec.add_type)")

    def define(self, info: mi.DataclassType | mi.StructType) -> str:
        cls = info.cls
        name = self.names.get(cls)
        if name is not None:
            return name
        name = cls.__name__
        if name in self.definitions:  # another class of that name: qualify this one
            name = f"{cls.__module__}.{cls.__qualname__}".replace(".<locals>", "")
        self.names[cls] = name
        self.definitions[name] = {}  # reserved first: a class may refer to itself
        self.definitions[name] = {
            "title": cls.__name__,
            "type": "object",
            "properties": {field.encode_name: self.schema(field.type) for field in info.fields},
            "required": [field.encode_name for field in info.fields if field.required],
        }
        return name


_SIMPLE: dict[type[Any], dict[str, Any]] = {
    mi.AnyType: {},
    mi.NoneType: {"type": "null"},
    mi.BoolType: {"type": "boolean"},
    mi.IntType: {"type": "integer"},
    mi.FloatType: {"type": "number"},
    mi.StrType: {"type": "string"},
    mi.BytesType: {"type": "string", "contentEncoding": "base64"},
    mi.DateTimeType: {"type": "string", "format": "date-time"},
    mi.DateType: {"type": "string", "format": "date"},
    mi.TimeType: {"type": "string", "format": "time"},
    mi.TimeDeltaType: {"type": "string", "format": "duration"},
    mi.UUIDType: {"type": "string", "format": "uuid"},
    mi.DecimalType: {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN},
}


def breaking_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return a sentence per breaking change from ``saved`` to ``current`` (empty: none).

    Raises:
        InvalidArgumentError: either document is not an export of this format.
    """
    for document in (saved, current):
        if document.get("format") != FORMAT or not isinstance(document.get("types"), dict):
            raise InvalidArgumentError(f"not a messagebus schema export (format {FORMAT})")
    changes: list[str] = []
    for name, versions in saved["types"].items():
        for version, entry in versions.items():
            now = current["types"].get(name, {}).get(version)
            if now is None:
                changes.append(f"{name} v{version}: the type is gone (removed or renamed)")
                continue
            changes.extend(
                f"{name} v{version}: {change}"
                for change in _field_changes(entry["schema"], saved, now["schema"], current)
            )
    return changes


def _field_changes(
    before: Mapping[str, Any],
    saved: Mapping[str, Any],
    after: Mapping[str, Any],
    current: Mapping[str, Any],
) -> list[str]:
    """Compare one type's schema in the saved export with its schema in the current one."""
    old_fields, new_fields = before.get("properties", {}), after.get("properties", {})
    old_required, new_required = set(before.get("required", ())), set(after.get("required", ()))
    changes = []
    for field in sorted(old_fields):
        if field not in new_fields:
            if field in old_required:
                changes.append(f"required field {field!r} was removed")
        elif _canonical(old_fields[field], saved) != _canonical(new_fields[field], current):
            changes.append(f"field {field!r} changed type")
    changes.extend(f"new required field {field!r}" for field in sorted(new_required - old_required))
    return changes


def _resolve(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        return dict(document.get("$defs", {}).get(reference.removeprefix("#/$defs/"), {}))
    return schema


def _canonical(schema: Any, document: Mapping[str, Any]) -> str:
    """Return a field's schema as text, nested references expanded, defaults left out."""

    def expand(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference not in seen:
                return expand(_resolve(node, document), seen | {reference})
            return {
                key: expand(value, seen)
                for key, value in node.items()
                if key not in ("default", "title", "description")
            }
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        return node

    return json.dumps(expand(schema, frozenset()), sort_keys=True)
